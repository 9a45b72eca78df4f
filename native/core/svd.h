// Truncated SVD and spectra of f32 matrices (row-major).
//
// Randomised SVD (Halko, Martinsson & Tropp 2011, Alg. 4.4 + 5.1): with l = k + oversample,
//   Y = A·Ω (Ω [n,l] Gaussian), Q = orth(Y);
//   power_iters times: Q = orth(A·orth(Aᵀ·Q));
//   Bᵀ = Aᵀ·Q in f64, eigen-decompose B·Bᵀ = W Λ Wᵀ (f64), S = sqrt(Λ),
//   U = Q·W, V = Bᵀ·W·S⁻¹ (then re-orthonormalised).
// orth() is a QR in f64 (CholeskyQR2, Householder for dependent columns; svd_qr.h); the big
// products run on sgemm, Bᵀ and the Gram matrices on the f64-accumulating dgemm/dsyrk.
// Exact method: eigen-decomposition in f64 of the smaller Gram matrix (AᵀA or AAᵀ, f64
// products of the f32 entries), the other side's vectors as A·v/σ re-orthonormalised.
// Singular values below ~1e-7·σ₁ are at the f64 Gram's resolution (σ² ~ 1e-16·σ₁²).
//
// Determinism: Ω comes from the seed alone (row r of Ω uses xoshiro256** seeded through
// splitmix64 with seed + (r+1)·0x9E3779B97F4A7C15; normals by Box–Muller), and every kernel
// used sums in an order independent of the thread count, so a seed gives bit-identical output
// on any thread count (same build, same CPU path).
#pragma once
#include <cstdint>

namespace lieq {

enum class SvdMethod : int32_t { Auto = 0, Exact = 1, Randomized = 2 };

struct SvdOptions {
  int oversample = 10;   // p: extra sketch columns
  int power_iters = 2;   // q: subspace iterations
  uint64_t seed = 0;
  bool vectors = true;   // false: singular values only (U and V are not touched)
  SvdMethod method = SvdMethod::Auto;  // Auto: exact when 2·(k+p) ≥ min(m,n)
};

// Top-k SVD of A [m, lda] (m×n used), 1 ≤ k ≤ min(m,n): A ≈ U·diag(S)·Vᵀ.
// S[k] f64 descending; U [m,k] and V [n,k] row-major (column i is the i-th singular vector),
// written only when opt.vectors. Returns the method that ran (Exact or Randomized).
// Throws std::runtime_error on non-finite input.
SvdMethod svd_topk(int m, int n, const float* A, int lda, int k, const SvdOptions& opt, double* S, float* U,
                   float* V);

// All eigenvalues of ZᵀZ for Z [t, ldz] (t×d used), descending, f64: the spectrum of a batch
// of d-dimensional activations. Uses the smaller Gram matrix (d×d, or t×t when t < d, in
// which case the trailing d−t values are exactly 0). out has d entries.
void gram_eigenvalues(int t, int d, const float* Z, int ldz, double* out);

// All min(m,n) singular values of A [m, lda], descending: sqrt of the Gram eigenvalues
// (negative round-off clamped to 0).
void singular_values(int m, int n, const float* A, int lda, double* S);

// The Gaussian test matrix of the randomised SVD: out [rows, cols] f32, N(0,1) (see above).
void gaussian_matrix(int rows, int cols, uint64_t seed, float* out);

}  // namespace lieq
