// Truncated SVD and spectra with the matrix products on a CUDA GPU. Plain C++ interface (no
// CUDA types): compiled from svd_gpu.cu when the build has CUDA, from svd_gpu_stub.cpp
// otherwise (every function but the reason throws "built without CUDA").
//
// Same contracts, algorithms and parameters as the CPU versions in native/core/svd.h, so the
// results agree to rounding:
//   * svd_topk_gpu: the randomised SVD (Ω from gaussian_matrix with the same seed, same
//     oversampling and power iterations, CholeskyQR2 re-orthonormalisation with the same
//     Householder fallback) or, where svd_topk would pick it, the exact Gram method.
//     Products with A are fp32 FFMA on the GPU (like the CPU sgemm); the Gram matrices of the
//     QR, Bᵀ = AᵀQ and BBᵀ are f64 sums of f32 products on the GPU (like the CPU dgemm/dsyrk).
//     The small (k+p)×(k+p) Cholesky, eigen-decomposition and the vectors' final small
//     products run on the host with the CPU code.
//   * gram_eigenvalues_gpu / singular_values_gpu: the Gram matrix (f64 sums of the exact f64
//     products of the f32 entries, as the CPU dsyrk) on the GPU, its eigenvalues on the host
//     (sym_eigen). Only the summation order differs from the CPU, so the values agree to
//     ~1e-13 relative — the LieQ metrics (lib/lieq/analyze.ts) do not depend on the device.
// Sums on the GPU are in a fixed order (fixed tiles and split-K partials added in order): a
// given input gives the same bits on every run on the same GPU model.
// All functions throw std::runtime_error on non-finite input (like the CPU ones), on CUDA
// errors and when no device is usable; std::invalid_argument on bad sizes.
#pragma once
#include <string>

#include "../core/svd.h"

namespace lieq {

// '' when a CUDA device can run these functions, else why not (CPU-only build, no driver,
// no device).
std::string svd_gpu_unavailable_reason();

// svd_topk (native/core/svd.h) with the products on the GPU. Returns the method that ran.
SvdMethod svd_topk_gpu(int m, int n, const float* A, int lda, int k, const SvdOptions& opt, double* S, float* U,
                       float* V);

// gram_eigenvalues (svd.h): all d eigenvalues of ZᵀZ, descending; Gram matrix on the GPU.
void gram_eigenvalues_gpu(int t, int d, const float* Z, int ldz, double* out);

// singular_values (svd.h): all min(m,n) singular values of A, descending; Gram on the GPU.
void singular_values_gpu(int m, int n, const float* A, int lda, double* S);

}  // namespace lieq
