// AVX2/FMA/F16C kernels of the f32 / fp16-weight baselines and the small-batch micro-kernel that
// the packed path shares. Compiled with -mavx2 -mfma -mf16c; reached through linear_kernels(true).
#include <immintrin.h>

#include "convert.h"
#include "linear_kernels.h"
#include "simd_kernels.h"

namespace lieq::avx2 {
namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Lanes [0, n) set, n in [0, 8].
inline __m256i tail_mask(size_t n) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), lane);
}

inline __m256 load_f16x8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

}  // namespace

// 4 weight rows x 2 activation rows: 8 independent FMA chains, 6 loads per 8 FMAs.
void dot4x2(const float* const w[4], const float* x0, const float* x1, size_t n, float* acc) {
  __m256 a[8];
  for (int i = 0; i < 8; ++i) a[i] = _mm256_loadu_ps(acc + 8 * i);
  const float *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3];
  size_t k = 0;
  for (; k + 8 <= n; k += 8) {
    const __m256 xa = _mm256_loadu_ps(x0 + k), xb = _mm256_loadu_ps(x1 + k);
    __m256 v = _mm256_loadu_ps(w0 + k);
    a[0] = _mm256_fmadd_ps(v, xa, a[0]);
    a[1] = _mm256_fmadd_ps(v, xb, a[1]);
    v = _mm256_loadu_ps(w1 + k);
    a[2] = _mm256_fmadd_ps(v, xa, a[2]);
    a[3] = _mm256_fmadd_ps(v, xb, a[3]);
    v = _mm256_loadu_ps(w2 + k);
    a[4] = _mm256_fmadd_ps(v, xa, a[4]);
    a[5] = _mm256_fmadd_ps(v, xb, a[5]);
    v = _mm256_loadu_ps(w3 + k);
    a[6] = _mm256_fmadd_ps(v, xa, a[6]);
    a[7] = _mm256_fmadd_ps(v, xb, a[7]);
  }
  if (k < n) {
    const __m256i m = tail_mask(n - k);
    const __m256 xa = _mm256_maskload_ps(x0 + k, m), xb = _mm256_maskload_ps(x1 + k, m);
    for (int r = 0; r < 4; ++r) {
      const __m256 v = _mm256_maskload_ps(w[r] + k, m);
      a[2 * r] = _mm256_fmadd_ps(v, xa, a[2 * r]);
      a[2 * r + 1] = _mm256_fmadd_ps(v, xb, a[2 * r + 1]);
    }
  }
  for (int i = 0; i < 8; ++i) _mm256_storeu_ps(acc + 8 * i, a[i]);
}

// Batch 1, f32 weights: memory-bound, four accumulators hide the FMA latency.
void gemv_f32_rows(const float* W, size_t in, const float* x, size_t r0, size_t r1, float* y) {
  for (size_t r = r0; r < r1; ++r) {
    const float* w = W + r * in;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t k = 0;
    for (; k + 32 <= in; k += 32) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k), _mm256_loadu_ps(x + k), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k + 8), _mm256_loadu_ps(x + k + 8), a1);
      a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k + 16), _mm256_loadu_ps(x + k + 16), a2);
      a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k + 24), _mm256_loadu_ps(x + k + 24), a3);
    }
    for (; k + 8 <= in; k += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k), _mm256_loadu_ps(x + k), a0);
    if (k < in) {
      const __m256i m = tail_mask(in - k);
      a1 = _mm256_fmadd_ps(_mm256_maskload_ps(w + k, m), _mm256_maskload_ps(x + k, m), a1);
    }
    y[r] = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  }
}

// Batch 1, fp16 weights converted with F16C on the fly.
void gemv_f16_rows(const uint16_t* W, size_t in, const float* x, size_t r0, size_t r1, float* y) {
  for (size_t r = r0; r < r1; ++r) {
    const uint16_t* w = W + r * in;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t k = 0;
    for (; k + 32 <= in; k += 32) {
      a0 = _mm256_fmadd_ps(load_f16x8(w + k), _mm256_loadu_ps(x + k), a0);
      a1 = _mm256_fmadd_ps(load_f16x8(w + k + 8), _mm256_loadu_ps(x + k + 8), a1);
      a2 = _mm256_fmadd_ps(load_f16x8(w + k + 16), _mm256_loadu_ps(x + k + 16), a2);
      a3 = _mm256_fmadd_ps(load_f16x8(w + k + 24), _mm256_loadu_ps(x + k + 24), a3);
    }
    for (; k + 8 <= in; k += 8) a0 = _mm256_fmadd_ps(load_f16x8(w + k), _mm256_loadu_ps(x + k), a0);
    float tail = 0.0f;
    for (; k < in; ++k) tail += lieq::f16_to_f32(w[k]) * x[k];
    y[r] = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3))) + tail;
  }
}

void f16_row(const uint16_t* src, size_t n, float* dst) {
  f16_to_f32(reinterpret_cast<const uint8_t*>(src), dst, n);  // convert_avx2.cpp's F16C loop
}

}  // namespace lieq::avx2
