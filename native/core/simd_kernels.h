// Declarations of the AVX2/FMA/F16C kernels (files *_avx2.cpp, compiled with those flags).
// Call them only when LIEQ_AVX2 is defined and simd_usable() is true; each has a scalar
// reference with the same signature that the tests compare it with.
#pragma once
#include <cstddef>
#include <cstdint>

namespace lieq::avx2 {

void f16_to_f32(const uint8_t* src, float* dst, size_t n);
void bf16_to_f32(const uint8_t* src, float* dst, size_t n);

}  // namespace lieq::avx2
