// Row-range kernels behind pack.h (dequantize), qmatmul.h and gemv_f32.h. Each one exists as a
// scalar reference (lieq::ref, always compiled) and an AVX2/FMA/F16C twin with the same signature
// (lieq::avx2, in *_avx2.cpp; called only when LIEQ_AVX2 is defined and simd_usable()).
// The drivers pick a whole table with linear_kernels(simd), so one switch selects every kernel.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

#include "packed_format.h"

namespace lieq {

// Growable scratch memory aligned to 64 bytes: 32-byte loads from it never straddle a cache line
// (a 16-byte-aligned std::vector made a quarter of the kernel's loads split, ~20% slower).
template <typename T>
class AlignedScratch {
 public:
  AlignedScratch() = default;
  AlignedScratch(const AlignedScratch&) = delete;
  AlignedScratch& operator=(const AlignedScratch&) = delete;
  ~AlignedScratch() { std::free(data_); }
  // At least n elements; contents are not preserved when it grows.
  T* get(size_t n) {
    if (n > cap_) {
      std::free(data_);
      const size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
      data_ = static_cast<T*>(std::aligned_alloc(64, bytes));
      if (!data_) throw std::bad_alloc();
      cap_ = n;
    }
    return data_;
  }

 private:
  T* data_ = nullptr;
  size_t cap_ = 0;
};

// Row stride (in floats) of an aligned copy of rows of `n` floats: a multiple of 16 (64 bytes).
inline size_t aligned_stride(size_t n) { return (n + 15) / 16 * 16; }

// Kernel signatures as function types, so each ISA's list below declares its kernels by type
// (one line a kind) and the signatures are written once.
// dst f32 [nb*32] = dequantized blocks [b0, b0+nb) of row `row`, natural order.
using DequantBlocks = void(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst);
// Fused GEMV over weight rows [r0, r1) for M activation rows (M small; each weight block is
// unpacked once for all of them): y[m * W.out + r] = dot(x[m * W.in ..], dequant(W[r])), no bias.
using QGemvRows = void(const PackedMatrix& W, const float* x, size_t M, size_t r0, size_t r1, float* y);
// Small-batch micro-kernel, 4 weight rows x 2 activation rows:
//   acc[(r*2 + m)*8 + k%8] += w[r][k] * x_m[k]   for r < 4, m < 2, k < n
// (8 partial sums per pair in lane order, so the reference and AVX2 sum in the same pattern).
using Dot4x2 = void(const float* const w[4], const float* x0, const float* x1, size_t n, float* acc);
// Batch-1 GEMV with f32 / fp16 weights W [*, in]: y[r] = dot(W[r], x) for r in [r0, r1).
using GemvF32Rows = void(const float* W, size_t in, const float* x, size_t r0, size_t r1, float* y);
using GemvF16Rows = void(const uint16_t* W, size_t in, const float* x, size_t r0, size_t r1, float* y);
// dst f32 [n] = fp16 src [n].
using F16Row = void(const uint16_t* src, size_t n, float* dst);

using DequantBlocksFn = DequantBlocks*;
using QGemvRowsFn = QGemvRows*;
using Dot4x2Fn = Dot4x2*;
using GemvF32RowsFn = GemvF32Rows*;
using GemvF16RowsFn = GemvF16Rows*;
using F16RowFn = F16Row*;

struct LinearKernels {
  DequantBlocksFn dequant[9];  // indexed by bits: 2, 3, 4, 8 (others null)
  QGemvRowsFn qgemv[9];
  Dot4x2Fn dot4x2;
  GemvF32RowsFn gemv_f32;
  GemvF16RowsFn gemv_f16;
  F16RowFn f16_row;
};

// The scalar table (simd = false) or the AVX2 / NEON table when compiled in and usable on this CPU.
const LinearKernels& linear_kernels(bool simd);
// True when linear_kernels(true) is the AVX2 or NEON table.
bool linear_kernels_simd();

namespace ref {
DequantBlocks dequant_w2_blocks, dequant_w3_blocks, dequant_w4_blocks, dequant_w8_blocks;
QGemvRows qgemv_rows;  // any bits
Dot4x2 dot4x2;
GemvF32Rows gemv_f32_rows;
GemvF16Rows gemv_f16_rows;
F16Row f16_row;
}  // namespace ref

// The SIMD twins: one function per bit width where the scalar reference handles all of them.
namespace avx2 {
DequantBlocks dequant_w2_blocks, dequant_w3_blocks, dequant_w4_blocks, dequant_w8_blocks;
QGemvRows qgemv_w2_rows, qgemv_w3_rows, qgemv_w4_rows, qgemv_w8_rows;
Dot4x2 dot4x2;
GemvF32Rows gemv_f32_rows;
GemvF16Rows gemv_f16_rows;
F16Row f16_row;
}  // namespace avx2

// NEON twins (files *_neon.cpp, compiled only for aarch64 where LIEQ_NEON is defined).
namespace neon {
DequantBlocks dequant_w2_blocks, dequant_w3_blocks, dequant_w4_blocks, dequant_w8_blocks;
QGemvRows qgemv_w2_rows, qgemv_w3_rows, qgemv_w4_rows, qgemv_w8_rows;
Dot4x2 dot4x2;
GemvF32Rows gemv_f32_rows;
GemvF16Rows gemv_f16_rows;
F16Row f16_row;
}  // namespace neon

}  // namespace lieq
