// Row-range kernels behind pack.h (dequantize), qmatmul.h and gemv_f32.h. Each one exists as a
// scalar reference (lieq::ref, always compiled) and an AVX2/FMA/F16C twin with the same signature
// (lieq::avx2, in *_avx2.cpp; called only when LIEQ_AVX2 is defined and simd_usable()).
// The drivers pick a whole table with linear_kernels(simd), so one switch selects every kernel.
#pragma once
#include <cstddef>
#include <cstdint>

#include "packed_format.h"

namespace lieq {

// dst f32 [nb*32] = dequantized blocks [b0, b0+nb) of row `row`, natural order.
using DequantBlocksFn = void (*)(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst);
// Batch-1 fused GEMV over rows [r0, r1): y[r] = dot(x, dequant(W[r])), x f32 [W.in], no bias.
using QGemvRowsFn = void (*)(const PackedMatrix& W, const float* x, size_t r0, size_t r1, float* y);
// Small-batch micro-kernel, 4 weight rows x 2 activation rows:
//   acc[(r*2 + m)*8 + k%8] += w[r][k] * x_m[k]   for r < 4, m < 2, k < n
// (8 partial sums per pair in lane order, so the reference and AVX2 sum in the same pattern).
using Dot4x2Fn = void (*)(const float* const w[4], const float* x0, const float* x1, size_t n, float* acc);
// Batch-1 GEMV with f32 / fp16 weights W [*, in]: y[r] = dot(W[r], x) for r in [r0, r1).
using GemvF32RowsFn = void (*)(const float* W, size_t in, const float* x, size_t r0, size_t r1, float* y);
using GemvF16RowsFn = void (*)(const uint16_t* W, size_t in, const float* x, size_t r0, size_t r1, float* y);
// dst f32 [n] = fp16 src [n].
using F16RowFn = void (*)(const uint16_t* src, size_t n, float* dst);

struct LinearKernels {
  DequantBlocksFn dequant[9];  // indexed by bits: 2, 3, 4, 8 (others null)
  QGemvRowsFn qgemv[9];
  Dot4x2Fn dot4x2;
  GemvF32RowsFn gemv_f32;
  GemvF16RowsFn gemv_f16;
  F16RowFn f16_row;
};

// The scalar table (simd = false) or the AVX2 table when compiled in and usable on this CPU.
const LinearKernels& linear_kernels(bool simd);
// True when linear_kernels(true) is the AVX2 table.
bool linear_kernels_simd();

namespace ref {
void dequant_w2_blocks(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst);
void dequant_w3_blocks(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst);
void dequant_w4_blocks(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst);
void dequant_w8_blocks(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst);
void qgemv_rows(const PackedMatrix& W, const float* x, size_t r0, size_t r1, float* y);  // any bits
void dot4x2(const float* const w[4], const float* x0, const float* x1, size_t n, float* acc);
void gemv_f32_rows(const float* W, size_t in, const float* x, size_t r0, size_t r1, float* y);
void gemv_f16_rows(const uint16_t* W, size_t in, const float* x, size_t r0, size_t r1, float* y);
void f16_row(const uint16_t* src, size_t n, float* dst);
}  // namespace ref

namespace avx2 {
void dequant_w2_blocks(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst);
void dequant_w3_blocks(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst);
void dequant_w4_blocks(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst);
void dequant_w8_blocks(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst);
void qgemv_w2_rows(const PackedMatrix& W, const float* x, size_t r0, size_t r1, float* y);
void qgemv_w3_rows(const PackedMatrix& W, const float* x, size_t r0, size_t r1, float* y);
void qgemv_w4_rows(const PackedMatrix& W, const float* x, size_t r0, size_t r1, float* y);
void qgemv_w8_rows(const PackedMatrix& W, const float* x, size_t r0, size_t r1, float* y);
void dot4x2(const float* const w[4], const float* x0, const float* x1, size_t n, float* acc);
void gemv_f32_rows(const float* W, size_t in, const float* x, size_t r0, size_t r1, float* y);
void gemv_f16_rows(const uint16_t* W, size_t in, const float* x, size_t r0, size_t r1, float* y);
void f16_row(const uint16_t* src, size_t n, float* dst);
}  // namespace avx2

}  // namespace lieq
