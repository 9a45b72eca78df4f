#include "svd_eigen.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "cpu_features.h"
#include "simd_kernels.h"
#include "svd_householder.h"
#include "thread_pool.h"

namespace lieq {
namespace {

// Boundaries of `blocks` row ranges of [r0, n) with equal lower-triangle area
// (row i holds i - r0 + 1 elements of the trailing triangle).
void area_bounds(int r0, int n, int blocks, std::vector<int>& bounds) {
  bounds.assign(static_cast<size_t>(blocks) + 1, n);
  const double s = n - r0;
  for (int b = 0; b < blocks; ++b)
    bounds[static_cast<size_t>(b)] = r0 + static_cast<int>(std::lround(s * std::sqrt(static_cast<double>(b) / blocks)));
}

// One row i of the fused pass, columns [c0, c1): row[c] −= vpi·wp[c] + wpi·vp[c] (step j−1's
// rank-2 update), q[c] += row[c]·vi, and returns Σ row[c]·v[c] (q's entry i, off-diagonal part).
double tridiag_row_ref(int c0, int c1, const double* vp, const double* wp, const double* v, double vpi, double wpi,
                       double vi, double* row, double* q) {
  double acc = 0;
  for (int c = c0; c < c1; ++c) {
    const double a = row[c] - (vpi * wp[c] + wpi * vp[c]);
    row[c] = a;
    acc += a * v[c];
    q[c] += a * vi;
  }
  return acc;
}

// Householder tridiagonalisation of the lower triangle of A (n ≥ 1). Outputs the diagonal d[n],
// the subdiagonal e[n-1] and, for each column j ≤ n-3, the reflector H_j = I − tau[j]·v vᵀ with
// v[j+1] = 1 and v[i] = A[i][j] for i ≥ j+2 (so that A = Q T Qᵀ, Q = H_0 H_1 ⋯ H_{n-3}).
//
// Per column j the trailing matrix is touched once: the rank-2 update of step j-1 and the
// product q = A22·v_j of step j share one pass over the lower triangle (column j is brought up
// to date first, since v_j comes from it). Rows are cut into fixed equal-area blocks with their
// own partial q, summed in block order, so the result does not depend on the thread count.
void tridiagonalize(int n, double* A, double* d, double* e, double* tau) {
  const size_t N = static_cast<size_t>(n);
  if (n == 1) {
    d[0] = A[0];
    return;
  }
  std::vector<double> vp(N, 0.0), wp(N, 0.0), v(N, 0.0), q(N, 0.0);
  constexpr int kMaxBlocks = 16;
  std::vector<double> partial(kMaxBlocks * N);
  std::vector<int> bounds;
  bool have_prev = false;  // vp = wp = 0 before the first step, so its pass changes nothing
  auto row = tridiag_row_ref;
#if defined(LIEQ_AVX2)
  if (simd_usable()) row = avx2::tridiag_row;
#endif
  for (int j = 0; j + 2 < n; ++j) {
    if (have_prev)
      for (int i = j; i < n; ++i) A[i * N + j] -= vp[i] * wp[j] + wp[i] * vp[j];
    d[j] = A[j * N + j];
    // Reflector for x = A[j+1.., j]: H x = beta e1.
    const Reflector h = make_reflector(A[(j + 1) * N + j], A + (j + 2) * N + j, N - (j + 2), N);
    const double t = h.tau;
    for (int i = j + 2; i < n; ++i) v[i] = A[i * N + j];
    v[j] = 0.0;
    v[j + 1] = 1.0;
    e[j] = h.beta;
    tau[j] = t;

    // Fused pass over rows [r0, n): apply step j-1's update, accumulate q = A22·v.
    const int r0 = j + 1, s = n - r0;
    const int blocks = s >= 192 ? kMaxBlocks : 1;
    area_bounds(r0, n, blocks, bounds);
    auto run_block = [&](int b) {
      const int lo = bounds[b], hi = bounds[b + 1];
      double* qb = partial.data() + static_cast<size_t>(b) * N;
      std::fill(qb + r0, qb + hi, 0.0);
      for (int i = lo; i < hi; ++i) {
        double* Ai = A + i * N;
        const double vpi = vp[i], wpi = wp[i], vi = v[i];
        const double acc = row(r0, i, vp.data(), wp.data(), v.data(), vpi, wpi, vi, Ai, qb);
        Ai[i] -= 2.0 * vpi * wpi;
        qb[i] += acc + Ai[i] * vi;
      }
    };
    if (blocks == 1) {
      run_block(0);
    } else {
      parallel_for(static_cast<size_t>(blocks), 1, [&](size_t b0, size_t b1, int) {
        for (size_t b = b0; b < b1; ++b) run_block(static_cast<int>(b));
      });
    }
    for (int c = r0; c < n; ++c) {
      double sum = 0;
      for (int b = 0; b < blocks; ++b)
        if (bounds[b + 1] > c) sum += partial[static_cast<size_t>(b) * N + c];
      q[c] = sum;
    }
    // w = p − (tau/2)(pᵀv) v with p = tau·q; A22 ← A22 − v wᵀ − w vᵀ (applied in the next pass).
    double pv = 0;
    for (int c = r0; c < n; ++c) pv += t * q[c] * v[c];
    const double kfac = 0.5 * t * pv;
    for (int c = r0; c < n; ++c) {
      wp[c] = t * q[c] - kfac * v[c];
      vp[c] = v[c];
    }
    have_prev = true;
  }
  const int j = n - 2;
  if (have_prev)
    for (int i = j; i < n; ++i)
      for (int c = j; c <= i; ++c) A[i * N + c] -= vp[i] * wp[c] + wp[i] * vp[c];
  d[j] = A[j * N + j];
  d[j + 1] = A[(j + 1) * N + j + 1];
  e[j] = A[(j + 1) * N + j];
}

// Q = H_0 ⋯ H_{n-3} by backward accumulation, written transposed into qt ([n,n], row i = Q's
// column i). Column chunks are independent (no reductions).
void form_q_transposed(int n, const double* A, const double* tau, double* qt) {
  const size_t N = static_cast<size_t>(n);
  std::vector<double> Q(N * N, 0.0);
  for (size_t i = 0; i < N; ++i) Q[i * N + i] = 1.0;
  std::vector<double> v(N);
  for (int j = n - 3; j >= 0; --j) {
    const double t = tau[j];
    if (t == 0.0) continue;
    const int r0 = j + 1;
    v[r0] = 1.0;
    for (int i = r0 + 1; i < n; ++i) v[i] = A[i * N + j];
    parallel_for(static_cast<size_t>(n - r0), 128, [&](size_t cb, size_t ce, int) {
      const int c0 = r0 + static_cast<int>(cb), c1 = r0 + static_cast<int>(ce);
      std::vector<double> u(static_cast<size_t>(c1 - c0), 0.0);
      for (int i = r0; i < n; ++i) {
        const double vi = v[i];
        const double* Qi = Q.data() + i * N;
        for (int c = c0; c < c1; ++c) u[c - c0] += vi * Qi[c];
      }
      for (int i = r0; i < n; ++i) {
        const double f = t * v[i];
        double* Qi = Q.data() + i * N;
        for (int c = c0; c < c1; ++c) Qi[c] -= f * u[c - c0];
      }
    });
  }
  for (size_t i = 0; i < N; ++i)
    for (size_t c = 0; c < N; ++c) qt[c * N + i] = Q[i * N + c];
}

struct Rotation {
  int i;
  double c, s;
};

// Implicit QL with Wilkinson shifts on the symmetric tridiagonal (d[n], e[n], e[i] couples i
// and i+1; e[n-1] is scratch). zt (may be null): [n,n] whose rows are rotated along with it.
// The rotations of one sweep are recorded and then applied to column chunks of zt in parallel.
void tridiagonal_ql(int n, double* d, double* e, double* zt) {
  const size_t N = static_cast<size_t>(n);
  e[n - 1] = 0.0;
  std::vector<Rotation> rot;
  auto apply = [&] {
    if (!zt || rot.empty()) return;
    parallel_for(N, 256, [&](size_t k0, size_t k1, int) {
      for (const Rotation& r : rot) {
        double* zi = zt + static_cast<size_t>(r.i) * N;
        double* zn = zi + N;
        for (size_t k = k0; k < k1; ++k) {
          const double f = zn[k];
          zn[k] = r.s * zi[k] + r.c * f;
          zi[k] = r.c * zi[k] - r.s * f;
        }
      }
    });
    rot.clear();
  };
  // An off-diagonal element is negligible next to its two diagonal neighbours, or next to the
  // whole matrix: the second test deflates clusters of (near-)zero eigenvalues (rank-deficient
  // Gram matrices), where the first alone never fires. Accuracy is then eps·‖T‖ absolute,
  // which is what a Gram matrix's eigenvalues carry anyway.
  const double eps = std::numeric_limits<double>::epsilon();
  double tnorm = 0;
  for (int i = 0; i < n; ++i) tnorm = std::max(tnorm, std::fabs(d[i]) + std::fabs(e[i]));
  const double abs_tol = eps * tnorm;
  for (int l = 0; l < n; ++l) {
    for (int iter = 0;; ++iter) {
      int m = l;
      for (; m < n - 1; ++m)
        if (std::fabs(e[m]) <= eps * (std::fabs(d[m]) + std::fabs(d[m + 1])) || std::fabs(e[m]) <= abs_tol) break;
      if (m == l) break;
      if (iter >= 60) throw std::runtime_error("sym_eigen: QL iteration did not converge");
      double g = (d[l + 1] - d[l]) / (2.0 * e[l]);
      double r = std::hypot(g, 1.0);
      g = d[m] - d[l] + e[l] / (g + std::copysign(r, g));
      double s = 1.0, c = 1.0, p = 0.0;
      bool deflated = false;
      for (int i = m - 1; i >= l; --i) {
        const double f = s * e[i], b = c * e[i];
        r = std::hypot(f, g);
        e[i + 1] = r;
        if (r == 0.0) {  // exact deflation in the middle of the sweep
          d[i + 1] -= p;
          e[m] = 0.0;
          deflated = true;
          break;
        }
        s = f / r;
        c = g / r;
        g = d[i + 1] - p;
        r = (d[i] - g) * s + 2.0 * c * b;
        p = s * r;
        d[i + 1] = g + p;
        g = c * r - b;
        if (zt) rot.push_back({i, c, s});
      }
      apply();
      if (deflated) continue;
      d[l] -= p;
      e[l] = g;
      e[m] = 0.0;
    }
  }
}

}  // namespace

void sym_eigen(int n, double* A, double* values, double* vectors) {
  if (n <= 0) return;
  const size_t N = static_cast<size_t>(n);
  for (size_t i = 0; i < N; ++i)
    for (size_t c = 0; c <= i; ++c)
      if (!std::isfinite(A[i * N + c])) throw std::runtime_error("sym_eigen: the matrix has NaN or Inf entries");
  std::vector<double> d(N), e(N, 0.0), tau(N, 0.0);
  tridiagonalize(n, A, d.data(), e.data(), tau.data());
  std::vector<double> zt;
  if (vectors) {
    zt.resize(N * N);
    form_q_transposed(n, A, tau.data(), zt.data());
  }
  tridiagonal_ql(n, d.data(), e.data(), vectors ? zt.data() : nullptr);
  std::vector<int> order(N);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return d[a] > d[b]; });
  for (size_t k = 0; k < N; ++k) {
    values[k] = d[order[k]];
    if (vectors) std::copy_n(zt.data() + static_cast<size_t>(order[k]) * N, N, vectors + k * N);
  }
}

}  // namespace lieq
