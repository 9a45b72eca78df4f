// GPTQ on the CPU (see gptq.h). f64 throughout after the Hessian; the O(n³) and O(rows·cols²)
// parts run on the project's blocked dsyrk/dgemm, the rest is row-parallel scalar code.
//
// This TU is compiled without -mfma, so `a - b*c` is two roundings as in the float64
// reference (test/reference/gptq-reference.ts); only the trailing dgemm updates (AVX2 FMA,
// blocked sums) round differently, at ~1e-16 relative.
#include "gptq.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "convert.h"
#include "gemm.h"
#include "pack.h"
#include "packed_format.h"
#include "thread_pool.h"

namespace lieq {
namespace {

constexpr size_t kFactorBlock = 128;  // Cholesky / triangular-inverse panel width

// Round half to even for |v| < 2^51 (f64 analogue of quantize.cpp's f32 trick).
inline double round_half_even(double v) {
  const double magic = 6755399441055744.0;  // 1.5 * 2^52
  return (v + magic) - magic;
}

inline double clampd(double v, double lo, double hi) {
  v = v < lo ? lo : v;
  return v > hi ? hi : v;
}

// The quantization grid of one group: the rule of quantize.cpp (range always contains 0,
// scale rounded to fp16 before the zero point is chosen), evaluated in f64: the scale
// (hi − lo)/maxq or 2·max|w|/maxq is rounded to f32, then to fp16 (round to nearest even).
struct Grid {
  uint16_t scale_bits;
  double scale;
  double zero;
};

Grid fit_range(double lo, double hi, int bits, bool symmetric) {
  const double maxq = packed_max_code(bits);
  double s = symmetric ? 2.0 * hi / maxq : (hi - lo) / maxq;
  if (!(s > 0.0)) s = 1.0;  // all-zero group: any scale represents it exactly
  uint16_t h = f32_to_f16(static_cast<float>(s));
  if ((h & 0x7fff) == 0) h = 0x0001;       // below the smallest fp16 subnormal
  if ((h & 0x7fff) >= 0x7c00) h = 0x7bff;  // beyond fp16's range: saturate at 65504
  const double sf = f16_to_f32(h);
  const double z = symmetric ? static_cast<double>(packed_symmetric_zero(bits))
                             : clampd(round_half_even(-lo / sf), 0.0, maxq);
  return {h, sf, z};
}

inline double code_of(double w, const Grid& g, double maxq) {
  const double a = clampd(w / g.scale, -g.zero - 1.0, maxq - g.zero + 1.0);  // keeps the round in range
  return clampd(round_half_even(a) + g.zero, 0.0, maxq);
}

// Grid of n values (stride 1): min/max, or the MSE clipping search of quantize.cpp.
Grid fit_group(const double* w, size_t n, const QuantizeParams& p) {
  const double maxq = packed_max_code(p.bits);
  double mn = 0.0, mx = 0.0;
  for (size_t i = 0; i < n; ++i) {
    mn = std::min(mn, w[i]);
    mx = std::max(mx, w[i]);
  }
  const double amax = std::max(-mn, mx);
  auto candidate = [&](double shrink) {
    return p.symmetric ? fit_range(0.0, amax * shrink, p.bits, true) : fit_range(mn * shrink, mx * shrink, p.bits, false);
  };
  Grid best = candidate(1.0);
  if (p.method != QuantMethod::MseClip) return best;
  auto sse = [&](const Grid& g) {
    double e = 0.0;
    for (size_t i = 0; i < n; ++i) {
      const double d = g.scale * (code_of(w[i], g, maxq) - g.zero) - w[i];
      e += d * d;
    }
    return e;
  };
  double best_err = sse(best);
  const int steps = static_cast<int>(static_cast<double>(p.clip_grid) * static_cast<double>(p.clip_max_shrink));
  for (int i = 1; i < steps; ++i) {
    const Grid g = candidate(1.0 - static_cast<double>(i) / static_cast<double>(p.clip_grid));
    const double err = sse(g);
    if (err < best_err) {  // strict: ties keep the wider range
      best_err = err;
      best = g;
    }
  }
  return best;
}

void check_finite(const double* H, size_t n) {
  for (size_t i = 0; i < n * n; ++i)
    if (!std::isfinite(H[i])) throw std::invalid_argument("hessian: contains NaN or Inf");
}

// new H[i][j] = old H[perm[i]][perm[j]], in place (one row of scratch per thread + one).
void permute_symmetric(double* H, size_t n, const int32_t* perm) {
  parallel_for(n, 16, [&](size_t b, size_t e, int) {
    std::vector<double> row(n);
    for (size_t r = b; r < e; ++r) {
      double* h = H + r * n;
      for (size_t j = 0; j < n; ++j) row[j] = h[perm[j]];
      std::copy(row.begin(), row.end(), h);
    }
  });
  std::vector<double> buf(n);
  std::vector<uint8_t> done(n, 0);
  for (size_t s = 0; s < n; ++s) {  // rows by cycles: row i <- row perm[i]
    if (done[s]) continue;
    std::copy(H + s * n, H + (s + 1) * n, buf.begin());
    size_t i = s;
    for (;;) {
      done[i] = 1;
      const auto j = static_cast<size_t>(perm[i]);
      if (j == s) {
        std::copy(buf.begin(), buf.end(), H + i * n);
        break;
      }
      std::copy(H + j * n, H + (j + 1) * n, H + i * n);
      i = j;
    }
  }
}

// Lower Cholesky A = L Lᵀ in place (lower triangle; the strict upper is left stale), right-
// looking with kFactorBlock panels: unblocked diagonal block, row-parallel panel solve, and the
// trailing update as one dsyrk (which keeps the trailing block symmetric, as dsyrk requires).
void cholesky_lower(double* A, size_t n) {
  for (size_t k0 = 0; k0 < n; k0 += kFactorBlock) {
    const size_t k1 = std::min(n, k0 + kFactorBlock);
    for (size_t j = k0; j < k1; ++j) {
      double* aj = A + j * n;
      double d = aj[j];
      for (size_t p = k0; p < j; ++p) d -= aj[p] * aj[p];
      if (!(d > 0.0) || !std::isfinite(d))
        throw std::runtime_error("hessian: not positive definite after damping (pivot " + std::to_string(j) +
                                 "); raise the damping fraction");
      aj[j] = std::sqrt(d);
      for (size_t i = j + 1; i < k1; ++i) {
        double* ai = A + i * n;
        double s = ai[j];
        for (size_t p = k0; p < j; ++p) s -= ai[p] * aj[p];
        ai[j] = s / aj[j];
      }
    }
    if (k1 == n) break;
    parallel_for(n - k1, 32, [&](size_t b, size_t e, int) {
      for (size_t i = k1 + b; i < k1 + e; ++i) {
        double* ai = A + i * n;
        for (size_t j = k0; j < k1; ++j) {
          const double* aj = A + j * n;
          double s = ai[j];
          for (size_t p = k0; p < j; ++p) s -= ai[p] * aj[p];
          ai[j] = s / aj[j];
        }
      }
    });
    const int m = static_cast<int>(n - k1), kb = static_cast<int>(k1 - k0), ld = static_cast<int>(n);
    dsyrk(false, m, kb, -1.0, A + k1 * n + k0, ld, 1.0, A + k1 * n + k1, ld);
  }
}

// X = L⁻¹ in place for L lower triangular with a zero strict upper triangle. By block rows:
// X[Ri, Ri] = L_ii⁻¹ and X[Ri, :i0] = −L_ii⁻¹ · (L[Ri, :i0] · X[:i0, :i0]), the product a
// dense dgemm (X[:i0, :i0] holds zeros above its diagonal).
void invert_lower(double* A, size_t n) {
  std::vector<double> dinv(kFactorBlock * kFactorBlock), t;
  const int ld = static_cast<int>(n);
  for (size_t i0 = 0; i0 < n; i0 += kFactorBlock) {
    const size_t ib = std::min(kFactorBlock, n - i0);
    std::fill(dinv.begin(), dinv.end(), 0.0);
    for (size_t j = 0; j < ib; ++j) {  // unblocked inverse of the diagonal block, column by column
      dinv[j * ib + j] = 1.0 / A[(i0 + j) * n + i0 + j];
      for (size_t i = j + 1; i < ib; ++i) {
        const double* li = A + (i0 + i) * n + i0;
        double s = 0.0;
        for (size_t p = j; p < i; ++p) s += li[p] * dinv[p * ib + j];
        dinv[i * ib + j] = -s / li[i];
      }
    }
    if (i0 > 0) {
      t.resize(ib * i0);
      const int m = static_cast<int>(ib), k = static_cast<int>(i0);
      dgemm(false, false, m, k, k, 1.0, A + i0 * n, ld, A, ld, 0.0, t.data(), k);
      dgemm(false, false, m, k, m, -1.0, dinv.data(), m, t.data(), k, 0.0, A + i0 * n, ld);
    }
    for (size_t i = 0; i < ib; ++i)
      std::copy(dinv.begin() + i * ib, dinv.begin() + i * ib + i + 1, A + (i0 + i) * n + i0);
  }
}

}  // namespace

void gptq_accumulate(double* H, size_t n, const float* X, size_t tokens) {
  if (n == 0 || n > static_cast<size_t>(std::numeric_limits<int>::max()) ||
      tokens > static_cast<size_t>(std::numeric_limits<int>::max()))
    throw std::invalid_argument("hessian: bad size");
  if (tokens == 0) return;
  const int ni = static_cast<int>(n);
  dsyrk(true, ni, static_cast<int>(tokens), 1.0, X, ni, 1.0, H, ni);
}

GptqPrepared gptq_prepare(double* H, size_t n, double damp_frac, bool act_order, int32_t* perm, uint8_t* dead) {
  if (n == 0 || n > (size_t{1} << 20)) throw std::invalid_argument("hessian: bad size");
  if (!(damp_frac >= 0.0) || !std::isfinite(damp_frac)) throw std::invalid_argument("damp: expected a finite number >= 0");
  check_finite(H, n);
  GptqPrepared r;
  for (size_t j = 0; j < n; ++j) {
    double& d = H[j * n + j];
    dead[j] = d == 0.0;
    if (dead[j]) {
      d = 1.0;
      ++r.dead;
    }
  }
  std::iota(perm, perm + n, 0);
  if (act_order) {
    std::stable_sort(perm, perm + n, [&](int32_t a, int32_t b) {
      return H[static_cast<size_t>(a) * n + a] > H[static_cast<size_t>(b) * n + b];
    });
    permute_symmetric(H, n, perm);
  }
  double mean = 0.0;
  for (size_t j = 0; j < n; ++j) mean += H[j * n + j];
  mean /= static_cast<double>(n);
  r.damp = damp_frac * mean;
  for (size_t j = 0; j < n; ++j) H[j * n + j] += r.damp;

  std::reverse(H, H + n * n);  // J H J
  cholesky_lower(H, n);
  for (size_t i = 0; i < n; ++i) std::fill(H + i * n + i + 1, H + (i + 1) * n, 0.0);
  invert_lower(H, n);
  std::reverse(H, H + n * n);  // U = J L⁻¹ J
  return r;
}

double gptq_quantize(const float* W, size_t rows, size_t cols, const double* U, const int32_t* perm,
                     const uint8_t* dead, const GptqParams& p, uint8_t* codes, uint8_t* qweight, uint16_t* scales,
                     uint8_t* zeros) {
  const QuantizeParams& q = p.q;
  {
    const std::string err = packed_shape_error(rows, cols, q.bits, q.group);
    if (!err.empty()) throw std::invalid_argument(err);
  }
  if (p.block < 1) throw std::invalid_argument("blockSize: must be positive");
  if (q.method == QuantMethod::MseClip && (q.clip_grid < 1 || !(q.clip_max_shrink >= 0.0f && q.clip_max_shrink < 1.0f)))
    throw std::invalid_argument("clip settings out of range");
  if (count_nonfinite(W, rows * cols) != 0) throw std::invalid_argument("weights: contain NaN or Inf");
  const size_t g = static_cast<size_t>(q.group), ng = cols / g, B = static_cast<size_t>(p.block);
  bool identity = true;
  for (size_t i = 0; i < cols; ++i) {
    if (perm[i] < 0 || static_cast<size_t>(perm[i]) >= cols) throw std::invalid_argument("perm: index out of range");
    identity = identity && static_cast<size_t>(perm[i]) == i;
  }
  if (!identity && !p.static_groups)
    throw std::invalid_argument("act-order needs static groups (the packed format keeps groups contiguous)");
  // A group fitted at its first column must see every update from earlier columns: true at a
  // block start (all pending updates applied) or when the group ends inside the block.
  if (!p.static_groups)
    for (size_t k = 0; k < cols; k += g)
      if (k % B != 0 && (k / B) * B + B < k + g && k + g <= cols)
        throw std::invalid_argument("blockSize " + std::to_string(B) + " and groupSize " + std::to_string(g) +
                                    ": a group would start inside a block and end beyond it");

  const double maxq = packed_max_code(q.bits);
  // Working copy in permuted column order, dead columns zeroed (GPTQ).
  std::vector<double> Wd(rows * cols);
  parallel_for(rows, 64, [&](size_t b, size_t e, int) {
    for (size_t r = b; r < e; ++r)
      for (size_t i = 0; i < cols; ++i) {
        const size_t c = static_cast<size_t>(perm[i]);
        Wd[r * cols + i] = dead[c] ? 0.0 : static_cast<double>(W[r * cols + c]);
      }
  });
  std::vector<uint8_t> own_codes;
  if (!codes) {
    own_codes.resize(rows * cols);
    codes = own_codes.data();
  }
  uint8_t* z_out = q.symmetric ? nullptr : zeros;
  std::vector<Grid> grids(p.static_groups ? rows * ng : rows);
  if (p.static_groups) {  // fitted up front on the original weights, natural order
    parallel_for(rows, 16, [&](size_t b, size_t e, int) {
      std::vector<double> orig(g);
      for (size_t r = b; r < e; ++r)
        for (size_t gi = 0; gi < ng; ++gi) {
          for (size_t k = 0; k < g; ++k) {
            const size_t c = gi * g + k;
            orig[k] = dead[c] ? 0.0 : static_cast<double>(W[r * cols + c]);
          }
          const Grid fit = fit_group(orig.data(), g, q);
          grids[r * ng + gi] = fit;
          scales[r * ng + gi] = fit.scale_bits;
          if (z_out) z_out[r * ng + gi] = static_cast<uint8_t>(fit.zero);
        }
    });
  }

  std::vector<double> err(rows * B);
  std::vector<double> row_loss(rows, 0.0);
  const int ldw = static_cast<int>(cols);
  for (size_t i1 = 0; i1 < cols; i1 += B) {
    const size_t i2 = std::min(cols, i1 + B), bw = i2 - i1;
    parallel_for(rows, std::max<size_t>(1, 8192 / (bw * bw + 1)), [&](size_t b, size_t e, int) {
      for (size_t r = b; r < e; ++r) {
        double* w = Wd.data() + r * cols;
        double* er = err.data() + r * B;
        double loss = 0.0;
        for (size_t i = i1; i < i2; ++i) {
          const size_t c = static_cast<size_t>(perm[i]);
          const Grid* grid;
          if (p.static_groups) {
            grid = &grids[r * ng + c / g];
          } else {
            if (i % g == 0) {  // group start: fit on the current, error-updated weights
              const Grid fit = fit_group(w + i, std::min(g, cols - i), q);
              grids[r] = fit;
              scales[r * ng + i / g] = fit.scale_bits;
              if (z_out) z_out[r * ng + i / g] = static_cast<uint8_t>(fit.zero);
            }
            grid = &grids[r];
          }
          const double x = w[i];
          const double code = code_of(x, *grid, maxq);
          codes[r * cols + c] = static_cast<uint8_t>(code);
          const double d = U[i * cols + i];
          const double diff = x - grid->scale * (code - grid->zero);
          loss += diff * diff / (d * d);
          const double e1 = diff / d;
          er[i - i1] = e1;
          const double* u = U + i * cols;
          for (size_t j = i + 1; j < i2; ++j) w[j] -= e1 * u[j];
        }
        row_loss[r] += loss;
      }
    });
    if (i2 < cols)  // lazy batch: the whole block's error reaches the later columns at once
      dgemm(false, false, static_cast<int>(rows), static_cast<int>(cols - i2), static_cast<int>(bw), -1.0, err.data(),
            static_cast<int>(B), U + i1 * cols + i2, ldw, 1.0, Wd.data() + i2, ldw);
  }
  if (qweight) {
    const size_t row_bytes = cols / kPackBlockCodes * static_cast<size_t>(packed_block_bytes(q.bits));
    parallel_for(rows, 64, [&](size_t b, size_t e, int) {
      for (size_t r = b; r < e; ++r) pack_row(codes + r * cols, cols, q.bits, qweight + r * row_bytes);
    });
  }
  double total = 0.0;
  for (double l : row_loss) total += l;
  return total;
}

}  // namespace lieq
