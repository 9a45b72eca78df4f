// ggml block formats for GGUF export (written from the public format description: ggml
// docs/gguf.md and the block layouts of ggml-common.h). Only quantizers live here; the
// independent dequantizers are TypeScript (lib/export/ggml-dequant.ts), so a layout mistake
// on one side shows up as a round-trip error in the tests instead of cancelling out.
//
// Each block is a plain struct; sizes are asserted and mirrored in lib/export/ggml-types.ts.
// Notation: d, dmin are fp16 super-block scales; sc, m the per-sub-block 4/6-bit scale/min.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace lieq::ggml {

// GGML type ids as they appear in a GGUF tensor table (stable, part of the file format).
enum class GgmlType : int32_t {
  F32 = 0,
  F16 = 1,
  Q5_0 = 6,
  Q8_0 = 8,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  IQ4_NL = 20,
};

constexpr int QK_K = 256;  // K-quant super-block
constexpr int QK32 = 32;   // block of the legacy formats (Q5_0, Q8_0, IQ4_NL)

// Q8_0: w = d·q, q ∈ [-127, 127]. 8.5 bits/weight.
struct block_q8_0 {
  uint16_t d;
  int8_t qs[QK32];
};
static_assert(sizeof(block_q8_0) == 34, "block_q8_0 is 34 bytes");

// Q5_0: w = d·(q - 16), q ∈ [0, 31]; low 4 bits in qs (element j low nibble, j+16 high
// nibble), the 5th bit of element j in bit j of qh (little-endian u32). 5.5 bits/weight.
struct block_q5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[QK32 / 2];
};
static_assert(sizeof(block_q5_0) == 22, "block_q5_0 is 22 bytes");

// IQ4_NL: w = d·K[q] with the fixed non-linear codebook K (16 values in [-127, 113]);
// nibbles laid out like Q5_0's low bits. 4.5 bits/weight.
struct block_iq4_nl {
  uint16_t d;
  uint8_t qs[QK32 / 2];
};
static_assert(sizeof(block_iq4_nl) == 18, "block_iq4_nl is 18 bytes");
extern const int8_t kIq4nlValues[16];

// Q2_K: 16 sub-blocks of 16; w = d·sc·q - dmin·m, q ∈ [0, 3], sc/m 4-bit (scales[j] = sc | m<<4).
// qs: per 128 weights 32 bytes; byte l holds weights l, l+32, l+64, l+96 at bit 0, 2, 4, 6.
// 2.625 bits/weight.
struct block_q2_K {
  uint8_t scales[QK_K / 16];
  uint8_t qs[QK_K / 4];
  uint16_t d;
  uint16_t dmin;
};
static_assert(sizeof(block_q2_K) == 84, "block_q2_K is 84 bytes");

// Q3_K: 16 sub-blocks of 16; w = d·(sc - 32)·q, q ∈ [-4, 3] stored as 2 low bits (qs, Q2_K
// order) + a high bit (hmask: weight j → bit j/32 of hmask[j%32], set when q ≥ 0).
// sc 6-bit in 12 bytes: low nibbles of sub-blocks 0..7 in scales[0..7] bits 0-3, of 8..15 in
// scales[0..7] bits 4-7; the 2 high bits of sub-block j in scales[8 + j%4] at bit 2·(j/4).
// 3.4375 bits/weight.
struct block_q3_K {
  uint8_t hmask[QK_K / 8];
  uint8_t qs[QK_K / 4];
  uint8_t scales[12];
  uint16_t d;
};
static_assert(sizeof(block_q3_K) == 110, "block_q3_K is 110 bytes");

// Q4_K: 8 sub-blocks of 32; w = d·sc·q - dmin·m, q ∈ [0, 15], sc/m 6-bit in 12 bytes:
// j < 4: sc in scales[j] bits 0-5, m in scales[j+4] bits 0-5; j ≥ 4: low nibbles in
// scales[j+4] (sc bits 0-3, m bits 4-7), high 2 bits in bits 6-7 of scales[j-4] (sc) and
// scales[j] (m). qs: per 64 weights 32 bytes, weight l low nibble, weight l+32 high nibble.
// 4.5 bits/weight.
struct block_q4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qs[QK_K / 2];
};
static_assert(sizeof(block_q4_K) == 144, "block_q4_K is 144 bytes");

struct TypeTraits {
  GgmlType type;
  const char* name;
  int block_size;   // weights per block
  int block_bytes;  // bytes per block
};

// Traits of a supported type, or nullptr.
const TypeTraits* type_traits(int32_t type);
// Bytes of one row of `n` weights; throws std::invalid_argument when n is not a multiple of the block.
size_t row_bytes(GgmlType type, int64_t n);

// One row of n weights (n a multiple of the block size) -> blocks at dst.
void quantize_row(GgmlType type, const float* x, void* dst, int64_t n);

// rows × cols f32 (row-major) -> rows × row_bytes(cols), rows in parallel on the pool.
void quantize_rows(GgmlType type, const float* src, void* dst, int64_t rows, int64_t cols);

}  // namespace lieq::ggml
