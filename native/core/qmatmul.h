// Fused dequant-matmul with packed weights (packed_format.h): y = x · Wᵀ (+ bias).
// f32 activations, f32 accumulation. The path follows the batch size M:
//   M <= 4 (8 at 4 and 8 bits)  fused GEMV streaming W once; each unpacked block of codes is
//                used for every row of x (y_o = Σ_g s_g (dot(q_g, x_g) − z_g Σx_g))
//   up to M = 32 each row chunk of W is dequantized once into L1 and used for every row of x
//   M > 32       prefill: tiles of W are dequantized to f32 and multiplied with sgemm (gemm.h)
// Threaded over output rows (thread_pool.h).
#pragma once
#include <cstddef>

#include "packed_format.h"

namespace lieq {

// Largest batch on the fused GEMV path. Measured in cache (one core, 256x2048, g128): with two
// weight rows per step the fused kernel beats dequant + dot4x2 at 4 and 8 bits by 1.2-1.5x at
// 5-8 rows (1.0-1.1x at 12-16: not worth a third path), while the 2- and 3-bit units, with 16
// fields per word, are 0.7x at 8 rows and switch after 4.
constexpr size_t qgemv_batch_max(int bits) { return bits >= 4 ? 8 : 4; }
constexpr size_t kQmatmulSmallBatchMax = 32;

// x    f32 [M, W.in]
// bias f32 [W.out] or nullptr
// y    f32 [M, W.out]  (write-only)
// Throws std::invalid_argument on an invalid packed shape (before any work).
void qmatmul(const PackedMatrix& W, const float* x, size_t M, const float* bias, float* y);
// Same contract, scalar kernels only (the reference twin; the prefill path still calls sgemm).
void qmatmul_ref(const PackedMatrix& W, const float* x, size_t M, const float* bias, float* y);

}  // namespace lieq
