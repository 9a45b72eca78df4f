#include "svd.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include "gemm.h"
#include "svd_eigen.h"
#include "svd_qr.h"
#include "thread_pool.h"

namespace lieq {
namespace {

uint64_t splitmix64_next(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// xoshiro256** (Blackman & Vigna), state filled from splitmix64 as its authors recommend.
class Xoshiro256 {
 public:
  explicit Xoshiro256(uint64_t seed) {
    for (auto& w : s_) w = splitmix64_next(seed);
  }
  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

void check_finite(int m, int n, const float* A, size_t lda, const char* what) {
  std::atomic<bool> bad{false};
  parallel_for(static_cast<size_t>(m), std::max<size_t>(1, 65536 / static_cast<size_t>(n)), [&](size_t r0, size_t r1, int) {
    for (size_t i = r0; i < r1 && !bad.load(std::memory_order_relaxed); ++i) {
      bool row_bad = false;
      for (size_t j = 0; j < static_cast<size_t>(n); ++j) row_bad |= !std::isfinite(A[i * lda + j]);
      if (row_bad) bad = true;
    }
  });
  if (bad) throw std::runtime_error(std::string(what) + ": the matrix has NaN or Inf entries");
}

// Below this fraction of σ₁ a singular value is at the f64 Gram's noise floor: its vector on
// the derived side is replaced by one orthogonal to the others.
constexpr double kNullTol = 1e-6;

// X [o,k] f64 holds A·v_i (or Aᵀ·u_i) for the known side's vectors: divide by σ_i, drop the
// null columns, and re-orthonormalise (σ-ordered Gram–Schmidt basis, so good columns barely
// move while the vectors of small σ_i regain orthogonality).
void derived_side(int o, int k, const std::vector<double>& X, const double* S, float* out) {
  const double tol = S[0] * kNullTol;
  for (size_t r = 0; r < static_cast<size_t>(o); ++r)
    for (size_t i = 0; i < static_cast<size_t>(k); ++i)
      out[r * k + i] = S[i] > tol ? static_cast<float>(X[r * k + i] / S[i]) : 0.0f;
  orthonormalize_columns(o, k, out, k);
}

// Eigenvector rows [k of them, length r] of `vecs` as the columns of a [r,k] matrix.
std::vector<double> leading_columns(const std::vector<double>& vecs, int r, int k) {
  std::vector<double> W(static_cast<size_t>(r) * k);
  for (size_t i = 0; i < static_cast<size_t>(k); ++i)
    for (size_t row = 0; row < static_cast<size_t>(r); ++row) W[row * k + i] = vecs[i * r + row];
  return W;
}

void svd_exact(int m, int n, const float* A, int lda, int k, bool vectors, double* S, float* U, float* V) {
  const bool tall = m >= n;
  const int r = tall ? n : m;  // Gram size
  std::vector<double> G(static_cast<size_t>(r) * r), w(static_cast<size_t>(r));
  std::vector<double> vecs(vectors ? static_cast<size_t>(r) * r : 0);
  dsyrk(tall, r, tall ? m : n, 1.0, A, lda, 0.0, G.data(), r);
  sym_eigen(r, G.data(), w.data(), vectors ? vecs.data() : nullptr);
  for (int i = 0; i < k; ++i) S[i] = std::sqrt(std::max(w[i], 0.0));
  if (!vectors) return;
  const std::vector<double> Wk = leading_columns(vecs, r, k);
  float* known = tall ? V : U;
  for (size_t x = 0; x < Wk.size(); ++x) known[x] = static_cast<float>(Wk[x]);
  const int o = tall ? m : n;
  std::vector<double> X(static_cast<size_t>(o) * k);
  dgemm(!tall, false, o, k, r, 1.0, A, lda, Wk.data(), k, 0.0, X.data(), k);
  derived_side(o, k, X, S, tall ? U : V);
}

void svd_randomized(int m, int n, const float* A, int lda, int k, const SvdOptions& opt, double* S, float* U,
                    float* V) {
  const int l = std::min(k + std::max(opt.oversample, 0), std::min(m, n));
  std::vector<float> omega(static_cast<size_t>(n) * l), Y(static_cast<size_t>(m) * l), Z(static_cast<size_t>(n) * l);
  gaussian_matrix(n, l, opt.seed, omega.data());
  sgemm(false, false, m, l, n, 1.0f, A, lda, omega.data(), l, 0.0f, Y.data(), l);
  orthonormalize_columns(m, l, Y.data(), l);
  for (int it = 0; it < opt.power_iters; ++it) {
    sgemm(true, false, n, l, m, 1.0f, A, lda, Y.data(), l, 0.0f, Z.data(), l);
    orthonormalize_columns(n, l, Z.data(), l);
    sgemm(false, false, m, l, n, 1.0f, A, lda, Z.data(), l, 0.0f, Y.data(), l);
    orthonormalize_columns(m, l, Y.data(), l);
  }
  // B = QᵀA, kept as Bᵀ = AᵀQ [n,l] in f64 so that the small problem loses nothing.
  std::vector<double> Bt(static_cast<size_t>(n) * l), G(static_cast<size_t>(l) * l), w(static_cast<size_t>(l));
  dgemm(true, false, n, l, m, 1.0, A, lda, Y.data(), l, 0.0, Bt.data(), l);
  dsyrk(true, l, n, 1.0, Bt.data(), l, 0.0, G.data(), l);  // B·Bᵀ
  std::vector<double> vecs(opt.vectors ? static_cast<size_t>(l) * l : 0);
  sym_eigen(l, G.data(), w.data(), opt.vectors ? vecs.data() : nullptr);
  for (int i = 0; i < k; ++i) S[i] = std::sqrt(std::max(w[i], 0.0));
  if (!opt.vectors) return;
  const std::vector<double> Wk = leading_columns(vecs, l, k);
  std::vector<double> X(static_cast<size_t>(std::max(m, n)) * k);
  dgemm(false, false, m, k, l, 1.0, Y.data(), l, Wk.data(), k, 0.0, X.data(), k);  // U = Q·W
  for (size_t x = 0; x < static_cast<size_t>(m) * k; ++x) U[x] = static_cast<float>(X[x]);
  dgemm(false, false, n, k, l, 1.0, Bt.data(), l, Wk.data(), k, 0.0, X.data(), k);  // V·S = Bᵀ·W
  derived_side(n, k, X, S, V);
}

// Eigenvalues (descending) of the smaller Gram matrix of A [m,n]; returns its size.
int gram_spectrum(int m, int n, const float* A, int lda, std::vector<double>& w) {
  const bool tall = m >= n;
  const int r = tall ? n : m;
  std::vector<double> G(static_cast<size_t>(r) * r);
  dsyrk(tall, r, tall ? m : n, 1.0, A, lda, 0.0, G.data(), r);
  w.resize(static_cast<size_t>(r));
  sym_eigen(r, G.data(), w.data(), nullptr);
  return r;
}

}  // namespace

void gaussian_matrix(int rows, int cols, uint64_t seed, float* out) {
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  parallel_for(static_cast<size_t>(rows), 64, [&](size_t r0, size_t r1, int) {
    for (size_t r = r0; r < r1; ++r) {
      Xoshiro256 rng(seed + (r + 1) * 0x9E3779B97F4A7C15ull);
      float* row = out + r * static_cast<size_t>(cols);
      for (int c = 0; c < cols; c += 2) {
        const double u1 = 1.0 - rng.uniform();  // (0, 1]: log is finite
        const double u2 = rng.uniform();
        const double radius = std::sqrt(-2.0 * std::log(u1));
        row[c] = static_cast<float>(radius * std::cos(kTwoPi * u2));
        if (c + 1 < cols) row[c + 1] = static_cast<float>(radius * std::sin(kTwoPi * u2));
      }
    }
  });
}

SvdMethod svd_topk(int m, int n, const float* A, int lda, int k, const SvdOptions& opt, double* S, float* U,
                   float* V) {
  if (m <= 0 || n <= 0 || k <= 0 || k > std::min(m, n)) throw std::invalid_argument("svd: need 1 <= k <= min(m, n)");
  check_finite(m, n, A, static_cast<size_t>(lda), "svd");
  const int l = k + std::max(opt.oversample, 0);
  const bool exact =
      opt.method == SvdMethod::Exact || (opt.method == SvdMethod::Auto && 2 * static_cast<int64_t>(l) >= std::min(m, n));
  if (exact) {
    svd_exact(m, n, A, lda, k, opt.vectors, S, U, V);
    return SvdMethod::Exact;
  }
  svd_randomized(m, n, A, lda, k, opt, S, U, V);
  return SvdMethod::Randomized;
}

void gram_eigenvalues(int t, int d, const float* Z, int ldz, double* out) {
  if (t <= 0 || d <= 0) {
    std::fill(out, out + std::max(d, 0), 0.0);
    return;
  }
  check_finite(t, d, Z, static_cast<size_t>(ldz), "gram_eigenvalues");
  std::vector<double> w;
  const int r = gram_spectrum(t, d, Z, ldz, w);
  std::copy(w.begin(), w.end(), out);
  std::fill(out + r, out + d, 0.0);
}

void singular_values(int m, int n, const float* A, int lda, double* S) {
  if (m <= 0 || n <= 0) return;
  check_finite(m, n, A, static_cast<size_t>(lda), "singular_values");
  std::vector<double> w;
  const int r = gram_spectrum(m, n, A, lda, w);
  for (int i = 0; i < r; ++i) S[i] = std::sqrt(std::max(w[i], 0.0));
}

}  // namespace lieq
