#include "convert.h"

#include <cmath>
#include <cstring>

#include "cpu_features.h"
#include "simd_kernels.h"
#include "thread_pool.h"

namespace lieq {

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while (!(man & 0x400)) { man <<= 1; --exp; }
      bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  const uint32_t absx = x & 0x7fffffffu;
  if (absx > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00);  // NaN
  if (absx >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00);  // rounds to inf
  if (absx < 0x38800000u) {  // result is subnormal or zero
    if (absx < 0x33000000u) return static_cast<uint16_t>(sign);
    const int e = static_cast<int>(absx >> 23);
    const uint32_t man = (absx & 0x7fffff) | 0x800000;
    const int shift = 126 - e;  // value = man·2^(e-150); in units of 2^-24 that is man >> (126-e)
    uint32_t r = man >> shift;
    const uint32_t rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) ++r;
    return static_cast<uint16_t>(sign | r);
  }
  uint32_t r = absx - 0x38000000u;  // rebias exponent 127 -> 15
  const uint32_t rem = r & 0x1fff;
  r >>= 13;
  if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) ++r;
  return static_cast<uint16_t>(sign | r);
}

uint16_t f32_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40);
  x += 0x7fff + ((x >> 16) & 1);
  return static_cast<uint16_t>(x >> 16);
}

void convert_to_f32(const void* src, DType type, float* dst, size_t n) {
  if (n == 0) return;  // empty arrays may come with null pointers: memcpy(nullptr, ...) is UB
  const auto* bytes = static_cast<const uint8_t*>(src);
  if (type == DType::F32) {
    std::memcpy(dst, src, n * 4);
    return;
  }
  parallel_for(n, 1 << 16, [&](size_t b, size_t e, int) {
#if defined(LIEQ_AVX2)
    if (simd_usable()) {
      (type == DType::F16 ? avx2::f16_to_f32 : avx2::bf16_to_f32)(bytes + 2 * b, dst + b, e - b);
      return;
    }
#endif
#if defined(LIEQ_NEON)
    (type == DType::F16 ? neon::f16_to_f32 : neon::bf16_to_f32)(bytes + 2 * b, dst + b, e - b);
    return;
#endif
    for (size_t i = b; i < e; ++i) {
      uint16_t h;
      std::memcpy(&h, bytes + 2 * i, 2);
      dst[i] = type == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
  });
}

void convert_from_f32(const float* src, DType type, void* dst, size_t n) {
  if (n == 0) return;
  auto* bytes = static_cast<uint8_t*>(dst);
  if (type == DType::F32) {
    std::memcpy(dst, src, n * 4);
    return;
  }
  parallel_for(n, 1 << 16, [&](size_t b, size_t e, int) {
    for (size_t i = b; i < e; ++i) {
      const uint16_t h = type == DType::F16 ? f32_to_f16(src[i]) : f32_to_bf16(src[i]);
      std::memcpy(bytes + 2 * i, &h, 2);
    }
  });
}

size_t count_nonfinite(const float* x, size_t n) {
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) bad += !std::isfinite(x[i]);
  return bad;
}

}  // namespace lieq
