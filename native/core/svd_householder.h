// The Householder reflector shared by the QR (svd_qr.cpp) and the tridiagonalisation
// (svd_eigen.cpp).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>

namespace lieq {

struct Reflector {
  double tau, beta;
};

// H = I − tau·v·vᵀ with v = [1; x'] and H·[alpha; x] = [beta; 0]; x (count elements, `stride`
// apart) is overwritten by x'. tau·vᵀv = 2 holds to rounding, so H is orthogonal. Norms are
// taken on values scaled by max|·|: in rank-deficient inputs the columns shrink to rounding
// noise of rounding noise, whose squares would underflow and break that identity. x = 0 (or
// a column too small to scale) gives tau = 0, H = I.
inline Reflector make_reflector(double alpha, double* x, size_t count, size_t stride) {
  double xmax = 0;
  for (size_t i = 0; i < count; ++i) xmax = std::max(xmax, std::fabs(x[i * stride]));
  if (xmax == 0) return {0.0, alpha};
  const double s = std::max(xmax, std::fabs(alpha));
  double sum = (alpha / s) * (alpha / s);
  for (size_t i = 0; i < count; ++i) sum += (x[i * stride] / s) * (x[i * stride] / s);
  const double beta = -std::copysign(s * std::sqrt(sum), alpha);
  const double scale = 1.0 / (alpha - beta);
  if (!std::isfinite(scale)) return {0.0, alpha};
  for (size_t i = 0; i < count; ++i) x[i * stride] *= scale;
  return {(beta - alpha) / beta, beta};
}

}  // namespace lieq
