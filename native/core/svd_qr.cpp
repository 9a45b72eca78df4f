#include "svd_qr.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "gemm.h"
#include "svd_householder.h"
#include "thread_pool.h"

namespace lieq {
namespace {

constexpr int kRowBlock = 256;  // fixed reduction blocks: results independent of thread count

// M[i][c] −= tau·v_i·(Σ_r v_r M[r][c]) for rows i ≥ r0 and columns [c0, n), where v_{r0} = 1
// and v_i = V[i·ld + vcol] below it. M and V are [m, ld] f64 (they may be the same matrix
// when vcol < c0).
void apply_reflector(int m, int n, size_t ld, double* M, const double* V, int vcol, double tau, int r0, int c0,
                     std::vector<double>& partial) {
  if (tau == 0.0 || c0 >= n) return;
  const int b0 = r0 / kRowBlock, nblk = (m + kRowBlock - 1) / kRowBlock - b0;
  const size_t w = static_cast<size_t>(n - c0);
  partial.assign(static_cast<size_t>(nblk) * w, 0.0);
  auto v_at = [&](int i) { return i == r0 ? 1.0 : V[i * ld + vcol]; };
  auto rows_of = [&](int b, int& lo, int& hi) {
    lo = std::max(r0, (b0 + b) * kRowBlock);
    hi = std::min(m, (b0 + b + 1) * kRowBlock);
  };
  const bool threaded = static_cast<double>(m - r0) * static_cast<double>(w) > 32768.0;
  auto for_blocks = [&](auto&& body) {
    if (!threaded) {
      for (int b = 0; b < nblk; ++b) body(b);
      return;
    }
    parallel_for(static_cast<size_t>(nblk), 1, [&](size_t x0, size_t x1, int) {
      for (size_t b = x0; b < x1; ++b) body(static_cast<int>(b));
    });
  };
  for_blocks([&](int b) {
    int lo, hi;
    rows_of(b, lo, hi);
    double* u = partial.data() + static_cast<size_t>(b) * w;
    for (int i = lo; i < hi; ++i) {
      const double vi = v_at(i);
      const double* Mi = M + i * ld + c0;
      for (size_t c = 0; c < w; ++c) u[c] += vi * Mi[c];
    }
  });
  for (int b = 1; b < nblk; ++b)
    for (size_t c = 0; c < w; ++c) partial[c] += partial[static_cast<size_t>(b) * w + c];
  const double* u = partial.data();
  for_blocks([&](int b) {
    int lo, hi;
    rows_of(b, lo, hi);
    for (int i = lo; i < hi; ++i) {
      const double f = tau * v_at(i);
      double* Mi = M + i * ld + c0;
      for (size_t c = 0; c < w; ++c) Mi[c] -= f * u[c];
    }
  });
}

// Householder QR in f64, level-2: robust to any rank, ~4·m·n² flops at memory speed.
void householder_orthonormalize(int m, int n, float* Y, int ldy) {
  if (m <= 0 || n <= 0) return;
  const size_t L = static_cast<size_t>(n), ly = static_cast<size_t>(ldy);
  std::vector<double> W(static_cast<size_t>(m) * L), Q(static_cast<size_t>(m) * L, 0.0), partial;
  for (size_t i = 0; i < static_cast<size_t>(m); ++i)
    for (size_t c = 0; c < L; ++c) W[i * L + c] = Y[i * ly + c];
  std::vector<double> tau(L, 0.0), rdiag(L, 0.0);
  for (int j = 0; j < n; ++j) {
    const Reflector h = make_reflector(W[j * L + j], W.data() + (j + 1) * L + j, static_cast<size_t>(m - j - 1), L);
    tau[j] = h.tau;
    rdiag[j] = h.beta;
    apply_reflector(m, n, L, W.data(), W.data(), j, tau[j], j, j + 1, partial);
  }
  // Thin Q = H_0 ⋯ H_{n-1} [I; 0], backward so that each reflector meets a trailing block only.
  for (int j = 0; j < n; ++j) Q[j * L + j] = 1.0;
  for (int j = n - 1; j >= 0; --j) apply_reflector(m, n, L, Q.data(), W.data(), j, tau[j], j, j, partial);
  // A rank-deficient column has rdiag = 0: keep the sign of Q's column (still orthonormal).
  for (size_t i = 0; i < static_cast<size_t>(m); ++i)
    for (size_t c = 0; c < L; ++c) Y[i * ly + c] = static_cast<float>(rdiag[c] < 0 ? -Q[i * L + c] : Q[i * L + c]);
}


// One CholeskyQR pass in f64: G = YᵀY (f64 products of the f32 entries), G = RᵀR, Y ← Y·R⁻¹.
// Returns false when G is not numerically positive definite (a pivot below 1e-14 of its
// diagonal entry: a column within ~1e-7 of the span of the previous ones). max_dev gets
// max|G − I|, i.e. how far Y was from orthonormal.
bool cholesky_qr_pass(int m, int n, float* Y, int ldy, double& max_dev) {
  const size_t N = static_cast<size_t>(n);
  std::vector<double> G(N * N), R(N * N, 0.0), Rinv(N * N, 0.0);
  dsyrk(true, n, m, 1.0, Y, ldy, 0.0, G.data(), n);
  max_dev = 0;
  for (size_t i = 0; i < N; ++i)
    for (size_t j = 0; j < N; ++j) max_dev = std::max(max_dev, std::fabs(G[i * N + j] - (i == j ? 1.0 : 0.0)));
  for (size_t j = 0; j < N; ++j) {  // upper R, row-major
    double d = G[j * N + j];
    for (size_t p = 0; p < j; ++p) d -= R[p * N + j] * R[p * N + j];
    if (!(d > 1e-14 * G[j * N + j])) return false;
    const double rjj = std::sqrt(d);
    R[j * N + j] = rjj;
    for (size_t c = j + 1; c < N; ++c) {
      double x = G[j * N + c];
      for (size_t p = 0; p < j; ++p) x -= R[p * N + j] * R[p * N + c];
      R[j * N + c] = x / rjj;
    }
  }
  for (size_t c = 0; c < N; ++c) {  // R⁻¹ column by column (back substitution)
    for (size_t i = c + 1; i-- > 0;) {
      double x = i == c ? 1.0 : 0.0;
      for (size_t p = i + 1; p <= c; ++p) x -= R[i * N + p] * Rinv[p * N + c];
      Rinv[i * N + c] = x / R[i * N + i];
    }
  }
  std::vector<double> Q(static_cast<size_t>(m) * N);
  dgemm(false, false, m, n, n, 1.0, Y, ldy, Rinv.data(), n, 0.0, Q.data(), n);
  const size_t ly = static_cast<size_t>(ldy);
  for (size_t i = 0; i < static_cast<size_t>(m); ++i)
    for (size_t c = 0; c < N; ++c) Y[i * ly + c] = static_cast<float>(Q[i * N + c]);
  return true;
}

}  // namespace

void orthonormalize_columns(int m, int n, float* Y, int ldy) {
  if (m <= 0 || n <= 0) return;
  // CholeskyQR2: two passes, all in sgemm-class kernels (about 10× faster than Householder at
  // 14336×266). The second pass starts from nearly orthonormal columns; if the first left
  // them far from it (cond(Y) beyond ~1e6) or Cholesky broke down (rank deficiency), redo
  // the whole thing with Householder from the original columns.
  const size_t ly = static_cast<size_t>(ldy);
  std::vector<float> original(static_cast<size_t>(m) * ly);
  std::copy(Y, Y + (static_cast<size_t>(m) - 1) * ly + static_cast<size_t>(n), original.begin());
  double dev1 = 0, dev2 = 0;
  if (cholesky_qr_pass(m, n, Y, ldy, dev1) && cholesky_qr_pass(m, n, Y, ldy, dev2) && dev2 < 0.5) return;
  std::copy(original.begin(), original.begin() + static_cast<ptrdiff_t>((static_cast<size_t>(m) - 1) * ly + n), Y);
  householder_orthonormalize(m, n, Y, ldy);
}

}  // namespace lieq
