// Fused dequant-matmul with packed weights (packed_format.h): y = x · Wᵀ (+ bias).
// f32 activations, f32 accumulation. The path follows the batch size M:
//   M <= 4       fused GEMV streaming W once; each unpacked block of codes is used for every
//                row of x (y_o = Σ_g s_g (dot(q_g, x_g) − z_g Σx_g))
//   5 <= M <= 32 each row chunk of W is dequantized once into L1 and used for every row of x
//   M > 32       prefill: tiles of W are dequantized to f32 and multiplied with sgemm (gemm.h)
// Threaded over output rows (thread_pool.h).
#pragma once
#include <cstddef>

#include "packed_format.h"

namespace lieq {

constexpr size_t kQgemvBatchMax = 4;  // measured: fused GEMV faster up to 4 rows, dequant + dot4x2 from 6
constexpr size_t kQmatmulSmallBatchMax = 32;

// x    f32 [M, W.in]
// bias f32 [W.out] or nullptr
// y    f32 [M, W.out]  (write-only)
// Throws std::invalid_argument on an invalid packed shape (before any work).
void qmatmul(const PackedMatrix& W, const float* x, size_t M, const float* bias, float* y);
// Same contract, scalar kernels only (the reference twin; the prefill path still calls sgemm).
void qmatmul_ref(const PackedMatrix& W, const float* x, size_t M, const float* bias, float* y);

}  // namespace lieq
