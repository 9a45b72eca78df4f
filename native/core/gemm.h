// f32 matrix products of the native core. Row-major everywhere.
// Owner: the GEMM/SVD kernels (gemm.cpp scalar reference + blocked driver, gemm_avx2.cpp AVX2/FMA
// micro-kernels and packing).
//
// How sgemm works (BLIS/GotoBLAS style): op(B) is packed into KC×NC blocks of 16-wide panels
// (kept in L3), op(A) into MC×KC blocks of 6-tall panels (kept in L2), and a 6×16 register tile
// (12 ymm accumulators) runs over them. Threads split C into a grid of independent blocks
// (each packs its own panels, no barriers). Products with M or N <= 8 (GEMV and small batches)
// take a streaming path instead, so the weights are read once and never packed.
// Results are bitwise independent of the thread count: every element of C is summed in the
// same order whatever the split.
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

// The blocked/streaming sgemm with the portable C++ micro-kernels instead of AVX2: what sgemm
// runs on CPUs without AVX2/FMA. Same semantics; tests compare it with sgemm_ref.
void sgemm_portable(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
                    const float* B, int ldb, float beta, float* C, int ldc);

// C (f64) = alpha * op(A) * op(B) + beta * C with A and B in f32 or f64: elements are widened
// while packing, products and sums are f64 (f32×f32 products are exact in f64). For Gram
// matrices and the small dense factors of the SVD, where f32 sums lose the small eigenvalues.
void dgemm(bool transA, bool transB, int M, int N, int K, double alpha, const float* A, int lda,
           const float* B, int ldb, double beta, double* C, int ldc);
void dgemm(bool transA, bool transB, int M, int N, int K, double alpha, const float* A, int lda,
           const double* B, int ldb, double beta, double* C, int ldc);
void dgemm(bool transA, bool transB, int M, int N, int K, double alpha, const double* A, int lda,
           const float* B, int ldb, double beta, double* C, int ldc);
void dgemm(bool transA, bool transB, int M, int N, int K, double alpha, const double* A, int lda,
           const double* B, int ldb, double beta, double* C, int ldc);

// Symmetric rank-k update, full symmetric result (BLAS syrk convention):
//   trans=false: C[n,n] = alpha * A · Aᵀ + beta * C, A stored [n,lda] (k columns used);
//   trans=true:  C[n,n] = alpha * Aᵀ · A + beta * C, A stored [k,lda] (n columns used) — the
//                Gram matrix / GPTQ Hessian XᵀX of k samples.
// Only the upper block triangle is computed (about half of sgemm's flops) and mirrored into the
// lower one, so C is exactly symmetric. With beta != 0 C must be symmetric on entry.
void ssyrk(bool trans, int n, int k, float alpha, const float* A, int lda, float beta, float* C, int ldc);
// The same with f64 products and sums (A in f32 or f64).
void dsyrk(bool trans, int n, int k, double alpha, const float* A, int lda, double beta, double* C, int ldc);
void dsyrk(bool trans, int n, int k, double alpha, const double* A, int lda, double beta, double* C, int ldc);

}  // namespace lieq
