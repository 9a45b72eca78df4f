// Baselines for the packed kernels: y = x · Wᵀ (+ bias) with f32 or fp16 weights, the same
// threading and batching as qmatmul (batch-1 rows streamed; small batches reuse each row chunk).
#pragma once
#include <cstddef>
#include <cstdint>

namespace lieq {

// W    f32 [out, in] (gemv_f32) or fp16 bits [out, in] (gemv_f16)
// x    f32 [M, in];  bias f32 [out] or nullptr;  y f32 [M, out] (write-only)
void gemv_f32(const float* W, size_t out, size_t in, const float* x, size_t M, const float* bias, float* y);
void gemv_f16(const uint16_t* W, size_t out, size_t in, const float* x, size_t M, const float* bias, float* y);
// Scalar reference twins.
void gemv_f32_ref(const float* W, size_t out, size_t in, const float* x, size_t M, const float* bias, float* y);
void gemv_f16_ref(const uint16_t* W, size_t out, size_t in, const float* x, size_t M, const float* bias, float* y);

// Small-batch driver shared by qmatmul and the baselines:
//   y[m * ldy + r] = dot(x[m * ldx : m * ldx + in], row r)   for r in [r0, r1), m < M
// `load` returns row r's values [k0, k0 + kn) (kn <= chunk): a pointer into W, or `buf` filled.
// chunk is a multiple of 16; x is best 64-byte aligned with ldx a multiple of 16 (see
// aligned_stride in linear_kernels.h).
using RowChunkLoader = const float* (*)(const void* ctx, size_t row, size_t k0, size_t kn, float* buf);
void batched_rows(const void* ctx, RowChunkLoader load, size_t in, size_t chunk, const float* x, size_t ldx,
                  size_t M, size_t r0, size_t r1, float* y, size_t ldy, bool simd);

// x [M, in] copied to 64-byte-aligned rows of stride aligned_stride(in) in the calling thread's
// scratch (valid until its next call); what batched_rows reads best.
const float* aligned_rows_copy(const float* x, size_t M, size_t in);

}  // namespace lieq
