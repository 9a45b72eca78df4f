// Group-wise quantization of f32 weights to the codes, fp16 scales and zero points of the
// packed format (packed_format.h). Offline work: one scalar implementation, threaded over rows.
#pragma once
#include <cstddef>
#include <cstdint>

namespace lieq {

enum class QuantMethod : int32_t {
  MinMax = 0,   // round-to-nearest over the group's full range
  MseClip = 1,  // grid search over shrunk ranges, keep the lowest squared error
};

struct QuantizeParams {
  int bits = 4;
  int group = 128;          // 32, 64, 128 or cols (per-channel)
  bool symmetric = false;
  QuantMethod method = QuantMethod::MinMax;
  int clip_grid = 100;      // MseClip: shrink factors 1 - i/clip_grid ...
  float clip_max_shrink = 0.8f;  // ... for i < clip_grid * clip_max_shrink (GPTQ's defaults)
};

// w      f32 [rows, cols]           (finite; cols % 32 == 0 and cols % group == 0: checked)
// codes  u8  [rows, cols]           one code per byte, natural order
// scales f16 [rows, cols/group]     rounded to fp16 before the codes are chosen
// zeros  u8  [rows, cols/group]     asymmetric only (may be nullptr when symmetric)
// Throws std::invalid_argument on a bad shape or a non-finite weight (before any work).
void quantize(const float* w, size_t rows, size_t cols, const QuantizeParams& p, uint8_t* codes,
              uint16_t* scales, uint8_t* zeros);

// One group of n values (the unit the tests reason about). Not threaded.
void quantize_group(const float* w, size_t n, const QuantizeParams& p, uint8_t* codes, uint16_t* scale,
                    uint8_t* zero);

// quantize() straight into the packed layout (codes never leave a per-row scratch buffer).
void quantize_packed(const float* w, size_t rows, size_t cols, const QuantizeParams& p, uint8_t* qweight,
                     uint16_t* scales, uint8_t* zeros);

}  // namespace lieq
