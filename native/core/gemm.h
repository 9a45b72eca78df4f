// f32 matrix products of the native core. Row-major everywhere.
// Owner: the GEMM/SVD kernels (gemm.cpp scalar reference + gemm_avx2.cpp blocked AVX2/FMA path).
#pragma once
#include <cstddef>

namespace lieq {

// C[M,N] = alpha * op(A) * op(B) + beta * C.
//   op(A) is [M,K]: A stored [M,lda] (transA=false) or [K,lda] read transposed (transA=true).
//   op(B) is [K,N]: B stored [K,ldb] (transB=false) or [N,ldb] read transposed (transB=true).
// beta == 0 means C is write-only (never read; NaN in C does not propagate). Multi-threaded.
void sgemm(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc);

// The linear-layer case y = x · Wᵀ: x [M,K], W [N,K] (PyTorch weight layout), y [M,N].
inline void sgemm_nt(int M, int N, int K, const float* x, const float* W, float* y) {
  sgemm(false, true, M, N, K, 1.0f, x, K, W, K, 0.0f, y, N);
}

// Plain triple-loop reference (double accumulation), always compiled; tests compare with it.
void sgemm_ref(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
               const float* B, int ldb, float beta, float* C, int ldc);

}  // namespace lieq
