// The decode of the qgemv layout (qgemv.cuh): how one mma step's A registers are cut out of a
// tile's words and turned into fp16 (1024 + code * 2^L, then code - zero with one fp16 FMA).
// Shared by the GEMV kernels and their host emulation (qgemv.cu) and the tensor-core prefill
// GEMM (qgemm_prefill.cu), so both read the layout the same way. Everything is constexpr or
// forceinline: masks, shifts and register indices stay immediates.
#pragma once

#include <cstdint>
#include <utility>

namespace lieq {
namespace qgemv_decode {

// fp16 bit pattern of an integer |n| < 2048 (exact).
__host__ __device__ constexpr uint32_t f16_int_bits(int n) {
  if (n == 0) return 0;
  const uint32_t sign = n < 0 ? 0x8000u : 0u;
  const int m = n < 0 ? -n : n;
  int e = 0;
  while ((2 << e) <= m) ++e;
  return sign | static_cast<uint32_t>((e + 15) << 10) | static_cast<uint32_t>((m - (1 << e)) << (10 - e));
}
__host__ __device__ constexpr uint32_t f16x2_int(int n) { return f16_int_bits(n) * 0x00010001u; }
// fp16 pair of 2^-L (L = 0..6).
__host__ __device__ constexpr uint32_t f16x2_pow2_neg(int L) { return static_cast<uint32_t>((15 - L) << 10) * 0x00010001u; }

// Compile-time loop: f(std::integral_constant<int, 0>{}), ..., f(integral_constant<N-1>) so that
// masks, shifts and register indices stay constants (immediates, no local-memory arrays).
template <typename F, int... I>
__host__ __device__ __forceinline__ void static_for_impl(F&& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>{}), ...);
}
template <int N, typename F>
__host__ __device__ __forceinline__ void static_for(F&& f) {
  static_for_impl(f, std::make_integer_sequence<int, N>{});
}

// Where register i of step s finds its codes (the layout in qgemv.cuh). The fp16 value of
// (word >> shift) & mask | 0x6400 per half is 1024 + code * 2^L, L = decode_level.
template <int BITS>
__host__ __device__ constexpr int decode_level(int i) {
  return BITS == 8 ? 0 : BITS == 4 ? 4 * (i & 1) : 2 * i;
}
template <int BITS>
__host__ __device__ constexpr int field_word(int s, int i) {
  return BITS == 8 ? 2 * s + (i >> 1) : BITS == 4 ? s : s >> 1;
}
template <int BITS>
__host__ __device__ constexpr int field_shift(int s, int i) {
  return BITS == 4 ? (i >= 2 ? 8 : 0) : (s & 1) * 8;
}
template <int BITS>
__host__ __device__ constexpr uint32_t field_mask(int i) {
  return BITS == 4 ? 0x000F000Fu << (4 * (i & 1)) : 0x00030003u << (2 * i);
}
// 3-bit high bits of step s sit at {0,1,8,9}[s&3] + 2i (+16 for the upper half); a left shift
// (negative) or right shift moves them to 2i + 2, just above the low pair.
__host__ __device__ constexpr int high_word(int s) { return 4 + (s >> 2); }
__host__ __device__ constexpr int high_shift(int s) { return (s & 3) == 0 ? -2 : (s & 3) == 1 ? -1 : (s & 3) == 2 ? 6 : 7; }
__host__ __device__ constexpr uint32_t high_mask(int i) { return 0x00040004u << (2 * i); }
constexpr uint32_t kMagic = 0x64006400u;  // fp16 pair (1024, 1024)

// (a & MASK) | c as one LOP3 (the compiler emits two when both operands are immediates).
template <uint32_t MASK>
__host__ __device__ __forceinline__ uint32_t and_or(uint32_t a, uint32_t c) {
#ifdef __CUDA_ARCH__
  uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(d) : "r"(a), "n"(MASK), "r"(c));
  return d;
#else
  return (a & MASK) | c;
#endif
}
template <uint32_t MASK, uint32_t OR>
__host__ __device__ __forceinline__ uint32_t and_or_imm(uint32_t a) {
#ifdef __CUDA_ARCH__
  uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(d) : "r"(a), "n"(MASK), "n"(OR));
  return d;
#else
  return (a & MASK) | OR;
#endif
}

__host__ __device__ inline uint32_t byte_perm(uint32_t x, uint32_t y, uint32_t sel) {
#ifdef __CUDA_ARCH__
  return __byte_perm(x, y, sel);
#else
  const uint64_t bytes = static_cast<uint64_t>(y) << 32 | x;
  uint32_t r = 0;
  for (int j = 0; j < 4; ++j) r |= static_cast<uint32_t>((bytes >> (8 * ((sel >> (4 * j)) & 7))) & 0xFF) << (8 * j);
  return r;
#endif
}

// The four A registers of mma step S as fp16 pairs 1024 + code * 2^L.
template <int BITS, int S>
__host__ __device__ __forceinline__ void extract_step(const uint32_t* w, uint32_t (&t)[4]) {
  static_for<4>([&](auto ic) {
    constexpr int I = decltype(ic)::value;
    if constexpr (BITS == 8) {
      t[I] = byte_perm(w[field_word<8>(S, I)], 0x64u, (I & 1) ? 0x4341u : 0x4240u);
    } else {
      constexpr int sh = field_shift<BITS>(S, I);
      const uint32_t v = w[field_word<BITS>(S, I)] >> sh;
      uint32_t x = and_or_imm<field_mask<BITS>(I), kMagic>(v);
      if constexpr (BITS == 3) {
        constexpr int hs = high_shift(S);
        const uint32_t hw = w[high_word(S)];
        x = and_or<high_mask(I)>(hs < 0 ? hw << (-hs & 31) : hw >> (hs & 31), x);
      }
      t[I] = x;
    }
  });
}

// Bias constant of register i: the fp16 FMA  t * 2^-L + (C_L - (1024 + zero))  gives code - zero,
// with C_L = 1024 - 1024 * 2^-L.
template <int BITS>
__host__ __device__ constexpr int bias_const(int i) {
  return 1024 - (1024 >> decode_level<BITS>(i));
}

}  // namespace qgemv_decode
}  // namespace lieq
