// AVX2/FMA row kernel of the fused tridiagonalisation pass (svd_eigen.cpp; scalar twin
// tridiag_row_ref there). Four lanes of partial sums, added in a fixed order: deterministic.
#include <immintrin.h>

#include "simd_kernels.h"

namespace lieq::avx2 {

double tridiag_row(int c0, int c1, const double* vp, const double* wp, const double* v, double vpi, double wpi,
                   double vi, double* row, double* q) {
  const __m256d vvpi = _mm256_set1_pd(vpi), vwpi = _mm256_set1_pd(wpi), vvi = _mm256_set1_pd(vi);
  __m256d acc = _mm256_setzero_pd();
  int c = c0;
  for (; c + 4 <= c1; c += 4) {
    const __m256d upd = _mm256_fmadd_pd(vwpi, _mm256_loadu_pd(vp + c), _mm256_mul_pd(vvpi, _mm256_loadu_pd(wp + c)));
    const __m256d a = _mm256_sub_pd(_mm256_loadu_pd(row + c), upd);
    _mm256_storeu_pd(row + c, a);
    acc = _mm256_fmadd_pd(a, _mm256_loadu_pd(v + c), acc);
    _mm256_storeu_pd(q + c, _mm256_fmadd_pd(a, vvi, _mm256_loadu_pd(q + c)));
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, acc);
  double sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  for (; c < c1; ++c) {
    const double a = row[c] - (vpi * wp[c] + wpi * vp[c]);
    row[c] = a;
    sum += a * v[c];
    q[c] += a * vi;
  }
  return sum;
}

}  // namespace lieq::avx2
