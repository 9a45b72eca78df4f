// NEON kernels of the runtime operators (twins of ops_avx2.cpp; scalar references in ops.cpp):
// the attention block kernel (head_dim % 4 == 0), SwiGLU and the exp-sum of the perplexity NLL.
// Compiled only for aarch64 (LIEQ_NEON). Same scheme as the AVX2 file: keys stored transposed so
// 4 consecutive keys' scores are one FMA per dimension, a vectorised exp, value sums of all rows
// of a block in registers.
#include <arm_neon.h>

#include <algorithm>
#include <cmath>

#include "simd_kernels.h"

namespace lieq::neon {
namespace {

// exp(x) for x <= 88: 2^n · p(r), n = round(x/ln2), r = x − n·ln2 (Cephes expf polynomial, ~1 ulp);
// x below −87.3 gives exactly 0.
inline float32x4_t exp4(float32x4_t x) {
  const float32x4_t lo = vdupq_n_f32(-87.33654f);
  const uint32x4_t underflow = vcltq_f32(x, lo);
  x = vmaxq_f32(vminq_f32(x, vdupq_n_f32(88.0f)), lo);
  const float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
  float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
  r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
  float32x4_t y = vdupq_n_f32(1.9875691500e-4f);
  y = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), y, r);
  y = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), y, r);
  y = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), y, r);
  y = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), y, r);
  y = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), y, r);
  y = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), y, vmulq_f32(r, r));
  const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127)), 23);
  y = vmulq_f32(y, vreinterpretq_f32_s32(e));
  return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(y), underflow));
}

// Scores of R query rows against keys [j0, j1): acc over dimensions, B vectors of 4 keys per step.
template <int R, int B>
void block_scores(const float* q, size_t ld_q, const float* kt, size_t ld_k, size_t hd, size_t j0, size_t j1,
                  float scale, float* scores, size_t ld_s) {
  size_t j = j0;
  for (; j + 4 * B <= j1; j += 4 * B) {
    float32x4_t acc[R][B];
    for (int r = 0; r < R; ++r)
      for (int b = 0; b < B; ++b) acc[r][b] = vdupq_n_f32(0.0f);
    for (size_t d = 0; d < hd; ++d) {
      const float* kd = kt + d * ld_k + j;
      float32x4_t kv[B];
      for (int b = 0; b < B; ++b) kv[b] = vld1q_f32(kd + 4 * b);
      for (int r = 0; r < R; ++r) {
        const float qd = q[r * ld_q + d];
        for (int b = 0; b < B; ++b) acc[r][b] = vfmaq_n_f32(acc[r][b], kv[b], qd);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int b = 0; b < B; ++b) vst1q_f32(scores + r * ld_s + j + 4 * b, vmulq_n_f32(acc[r][b], scale));
  }
  for (; j + 4 <= j1; j += 4) {
    float32x4_t acc[R];
    for (int r = 0; r < R; ++r) acc[r] = vdupq_n_f32(0.0f);
    for (size_t d = 0; d < hd; ++d) {
      const float32x4_t kv = vld1q_f32(kt + d * ld_k + j);
      for (int r = 0; r < R; ++r) acc[r] = vfmaq_n_f32(acc[r], kv, q[r * ld_q + d]);
    }
    for (int r = 0; r < R; ++r) vst1q_f32(scores + r * ld_s + j, vmulq_n_f32(acc[r], scale));
  }
  for (; j < j1; ++j)
    for (int r = 0; r < R; ++r) {
      float dot = 0;
      for (size_t d = 0; d < hd; ++d) dot += q[r * ld_q + d] * kt[d * ld_k + j];
      scores[r * ld_s + j] = dot * scale;
    }
}

// out_r[4*c0 .. 4*(c0+C)) = inv_r · Σ_j w_r[j] · v_j[...] for R rows.
template <int R, int C>
void block_values(const float* w, size_t ld_s, const float* v, size_t hd, size_t j0, size_t j1, const float* inv,
                  float* out, size_t ld_out, size_t c0) {
  float32x4_t acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = vdupq_n_f32(0.0f);
  for (size_t j = j0; j < j1; ++j) {
    const float* vj = v + j * hd + 4 * c0;
    float32x4_t vv[C];
    for (int c = 0; c < C; ++c) vv[c] = vld1q_f32(vj + 4 * c);
    for (int r = 0; r < R; ++r) {
      const float wr = w[r * ld_s + j];
      for (int c = 0; c < C; ++c) acc[r][c] = vfmaq_n_f32(acc[r][c], vv[c], wr);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) vst1q_f32(out + r * ld_out + 4 * (c0 + c), vmulq_n_f32(acc[r][c], inv[r]));
}

template <int R>
void block_values_all(const float* w, size_t ld_s, const float* v, size_t hd, size_t j0, size_t j1, const float* inv,
                      float* out, size_t ld_out) {
  constexpr int C = R <= 2 ? 8 : 4;  // R*C accumulators + C value vectors within 32 registers
  const size_t nc = hd / 4;
  size_t c0 = 0;
  for (; c0 + C <= nc; c0 += C) block_values<R, C>(w, ld_s, v, hd, j0, j1, inv, out, ld_out, c0);
  for (; c0 < nc; ++c0) block_values<R, 1>(w, ld_s, v, hd, j0, j1, inv, out, ld_out, c0);
}

// In place: s[lo, hi) = exp(s − max); returns the sum.
float exp_shifted_inplace(float* s, size_t lo, size_t hi) {
  float mx = -INFINITY;
  size_t j = lo;
  if (j + 4 <= hi) {
    float32x4_t vmax = vdupq_n_f32(-INFINITY);
    for (; j + 4 <= hi; j += 4) vmax = vmaxq_f32(vmax, vld1q_f32(s + j));
    mx = vmaxvq_f32(vmax);
  }
  for (; j < hi; ++j) mx = std::max(mx, s[j]);
  float32x4_t vsum = vdupq_n_f32(0.0f);
  const float32x4_t vm = vdupq_n_f32(mx);
  j = lo;
  for (; j + 4 <= hi; j += 4) {
    const float32x4_t e = exp4(vsubq_f32(vld1q_f32(s + j), vm));
    vst1q_f32(s + j, e);
    vsum = vaddq_f32(vsum, e);
  }
  if (j < hi) {
    float tail[4];
    for (size_t i = 0; i < 4; ++i) tail[i] = j + i < hi ? s[j + i] - mx : -INFINITY;
    const float32x4_t e = exp4(vld1q_f32(tail));
    vst1q_f32(tail, e);
    vsum = vaddq_f32(vsum, e);
    for (size_t i = 0; j + i < hi; ++i) s[j + i] = tail[i];
  }
  return vaddvq_f32(vsum);
}

template <int R>
void block_kernel(const float* q, size_t ld_q, const float* kt, size_t ld_k, const float* v, float* out,
                  size_t ld_out, size_t pos0, size_t window, size_t hd, float scale, float* scores) {
  const size_t ld_s = pos0 + R;
  auto lo_of = [&](size_t r) {
    const size_t pos = pos0 + r;
    return (window > 0 && pos + 1 > window) ? pos + 1 - window : size_t{0};
  };
  // every row is scored over the union [lo_0, pos0 + R) of the rows' visible keys ...
  const size_t j0 = lo_of(0), j1 = pos0 + R;
  block_scores<R, 16 / R>(q, ld_q, kt, ld_k, hd, j0, j1, scale, scores, ld_s);
  // ... then each row's softmax runs over its own keys and the others get weight 0
  float inv[R];
  for (int r = 0; r < R; ++r) {
    float* s = scores + r * ld_s;
    const size_t lo = lo_of(r), hi = pos0 + r + 1;
    inv[r] = 1.0f / exp_shifted_inplace(s, lo, hi);
    for (size_t j = j0; j < lo; ++j) s[j] = 0;
    for (size_t j = hi; j < j1; ++j) s[j] = 0;
  }
  block_values_all<R>(scores, ld_s, v, hd, j0, j1, inv, out, ld_out);
}

}  // namespace

void attention_block(const float* q, size_t ld_q, size_t n_rows, const float* kt, size_t ld_k, const float* v,
                     float* out, size_t ld_out, size_t pos0, size_t window, size_t hd, float scale, float* scores) {
  switch (n_rows) {
    case 1: return block_kernel<1>(q, ld_q, kt, ld_k, v, out, ld_out, pos0, window, hd, scale, scores);
    case 2: return block_kernel<2>(q, ld_q, kt, ld_k, v, out, ld_out, pos0, window, hd, scale, scores);
    case 3: return block_kernel<3>(q, ld_q, kt, ld_k, v, out, ld_out, pos0, window, hd, scale, scores);
    default: return block_kernel<4>(q, ld_q, kt, ld_k, v, out, ld_out, pos0, window, hd, scale, scores);
  }
}

void silu_mul(const float* gate, const float* up, float* out, size_t n) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t g = vld1q_f32(gate + i);
    // g / (1 + exp(−g)); exp4 clamps at 88 so a very negative g gives g / huge -> −0
    const float32x4_t e = exp4(vnegq_f32(g));
    vst1q_f32(out + i, vmulq_f32(vdivq_f32(g, vaddq_f32(vdupq_n_f32(1.0f), e)), vld1q_f32(up + i)));
  }
  for (; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

double sum_exp_shifted(const float* z, size_t n, float shift) {
  const float32x4_t s = vdupq_n_f32(shift);
  float64x2_t acc0 = vdupq_n_f64(0.0), acc1 = vdupq_n_f64(0.0);
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t e = exp4(vsubq_f32(vld1q_f32(z + i), s));
    acc0 = vaddq_f64(acc0, vcvt_f64_f32(vget_low_f32(e)));
    acc1 = vaddq_f64(acc1, vcvt_high_f64_f32(e));
  }
  double sum = vaddvq_f64(vaddq_f64(acc0, acc1));
  for (; i < n; ++i) sum += std::exp(z[i] - shift);
  return sum;
}

}  // namespace lieq::neon
