// dtype conversions between the checkpoint formats and f32 (the compute type on CPU).
#pragma once
#include <cstddef>
#include <cstdint>

#include "common.h"

namespace lieq {

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);  // round to nearest even; overflow -> inf, NaN kept
inline float bf16_to_f32(uint16_t h) {
  union { uint32_t u; float f; } v{static_cast<uint32_t>(h) << 16};
  return v.f;
}
uint16_t f32_to_bf16(float f);  // round to nearest even, NaN kept

// src holds n elements of `type` (unaligned allowed); dst gets n f32. Multi-threaded.
void convert_to_f32(const void* src, DType type, float* dst, size_t n);
// f32 -> f16 / bf16 for writers.
void convert_from_f32(const float* src, DType type, void* dst, size_t n);
// Count of non-finite values in an f32 buffer (NaN/Inf guard for loaders).
size_t count_nonfinite(const float* x, size_t n);

}  // namespace lieq
