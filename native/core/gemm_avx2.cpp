// AVX2/FMA micro-kernels and packing for gemm.cpp (compiled with -mavx2 -mfma; called only when
// simd_usable()). Each function has a portable twin in gemm.cpp with the same signature and
// packed layout: a panels are [kc][MR], b panels [kc][NR], 64-byte aligned.
#include <immintrin.h>

#include <algorithm>
#include <cstddef>

#include "simd_kernels.h"

namespace lieq::avx2 {
namespace {

// In-place transpose of 8 rows of 8 floats.
inline void transpose8(__m256& r0, __m256& r1, __m256& r2, __m256& r3, __m256& r4, __m256& r5, __m256& r6,
                       __m256& r7) {
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r0 = _mm256_permute2f128_ps(s0, s4, 0x20);
  r1 = _mm256_permute2f128_ps(s1, s5, 0x20);
  r2 = _mm256_permute2f128_ps(s2, s6, 0x20);
  r3 = _mm256_permute2f128_ps(s3, s7, 0x20);
  r4 = _mm256_permute2f128_ps(s0, s4, 0x31);
  r5 = _mm256_permute2f128_ps(s1, s5, 0x31);
  r6 = _mm256_permute2f128_ps(s2, s6, 0x31);
  r7 = _mm256_permute2f128_ps(s3, s7, 0x31);
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// c row (16 floats) = alpha·x + beta·c; beta == 0 never reads c.
inline void store_row16(float* c, __m256 x0, __m256 x1, __m256 va, __m256 vb, bool read_c) {
  x0 = _mm256_mul_ps(x0, va);
  x1 = _mm256_mul_ps(x1, va);
  if (read_c) {
    x0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c), x0);
    x1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c + 8), x1);
  }
  _mm256_storeu_ps(c, x0);
  _mm256_storeu_ps(c + 8, x1);
}

inline void store_row8d(double* c, __m256d x0, __m256d x1, __m256d va, __m256d vb, bool read_c) {
  x0 = _mm256_mul_pd(x0, va);
  x1 = _mm256_mul_pd(x1, va);
  if (read_c) {
    x0 = _mm256_fmadd_pd(vb, _mm256_loadu_pd(c), x0);
    x1 = _mm256_fmadd_pd(vb, _mm256_loadu_pd(c + 4), x1);
  }
  _mm256_storeu_pd(c, x0);
  _mm256_storeu_pd(c + 4, x1);
}

template <int MA>
void dot_tile(int K, const float* a, size_t lda, const float* const* bj, float* out) {
  __m256 acc[MA][4];
  for (int i = 0; i < MA; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = _mm256_setzero_ps();
  int k = 0;
  for (; k + 8 <= K; k += 8) {
    __m256 av[MA];
    for (int i = 0; i < MA; ++i) av[i] = _mm256_loadu_ps(a + i * lda + k);
    for (int j = 0; j < 4; ++j) {
      const __m256 bv = _mm256_loadu_ps(bj[j] + k);
      for (int i = 0; i < MA; ++i) acc[i][j] = _mm256_fmadd_ps(av[i], bv, acc[i][j]);
    }
  }
  for (int i = 0; i < MA; ++i)
    for (int j = 0; j < 4; ++j) {
      float s = hsum(acc[i][j]);
      for (int kk = k; kk < K; ++kk) s += a[i * lda + kk] * bj[j][kk];
      out[i * 4 + j] = s;
    }
}

template <int MA>
void axpy_tile(int K, const float* a, size_t a_rs, size_t a_cs, const float* b, size_t ldb, float* out) {
  __m256 acc[MA][2];
  for (int i = 0; i < MA; ++i) acc[i][0] = _mm256_loadu_ps(out + i * 16), acc[i][1] = _mm256_loadu_ps(out + i * 16 + 8);
  for (int k = 0; k < K; ++k) {
    const float* bk = b + static_cast<size_t>(k) * ldb;
    const __m256 b0 = _mm256_loadu_ps(bk), b1 = _mm256_loadu_ps(bk + 8);
    for (int i = 0; i < MA; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + i * a_rs + k * a_cs);
      acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
    }
  }
  for (int i = 0; i < MA; ++i) _mm256_storeu_ps(out + i * 16, acc[i][0]), _mm256_storeu_ps(out + i * 16 + 8, acc[i][1]);
}

}  // namespace

// 6×16 f32 tile: 12 accumulators, per k two B loads and six A broadcasts feed 12 FMAs.
void sgemm_tile_6x16(int kc, const float* a, const float* b, float* c, size_t ldc, int mr, int nr, float alpha,
                     float beta) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  const bool full = mr == 6 && nr == 16;
  if (full)
    for (int i = 0; i < 6; ++i) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
#pragma GCC unroll 4
  for (int k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    __m256 ai = _mm256_broadcast_ss(a);
    c00 = _mm256_fmadd_ps(ai, b0, c00);
    c01 = _mm256_fmadd_ps(ai, b1, c01);
    ai = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(ai, b0, c10);
    c11 = _mm256_fmadd_ps(ai, b1, c11);
    ai = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(ai, b0, c20);
    c21 = _mm256_fmadd_ps(ai, b1, c21);
    ai = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(ai, b0, c30);
    c31 = _mm256_fmadd_ps(ai, b1, c31);
    ai = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(ai, b0, c40);
    c41 = _mm256_fmadd_ps(ai, b1, c41);
    ai = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(ai, b0, c50);
    c51 = _mm256_fmadd_ps(ai, b1, c51);
    a += 6;
    b += 16;
  }
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  const bool read_c = beta != 0.0f;
  if (full) {
    store_row16(c, c00, c01, va, vb, read_c);
    store_row16(c + ldc, c10, c11, va, vb, read_c);
    store_row16(c + 2 * ldc, c20, c21, va, vb, read_c);
    store_row16(c + 3 * ldc, c30, c31, va, vb, read_c);
    store_row16(c + 4 * ldc, c40, c41, va, vb, read_c);
    store_row16(c + 5 * ldc, c50, c51, va, vb, read_c);
    return;
  }
  alignas(32) float t[6][16];
  store_row16(t[0], c00, c01, va, vb, false);
  store_row16(t[1], c10, c11, va, vb, false);
  store_row16(t[2], c20, c21, va, vb, false);
  store_row16(t[3], c30, c31, va, vb, false);
  store_row16(t[4], c40, c41, va, vb, false);
  store_row16(t[5], c50, c51, va, vb, false);
  for (int i = 0; i < mr; ++i) {
    float* ci = c + i * ldc;
    if (read_c)
      for (int j = 0; j < nr; ++j) ci[j] = t[i][j] + beta * ci[j];
    else
      for (int j = 0; j < nr; ++j) ci[j] = t[i][j];
  }
}

// 6×8 f64 tile, same shape of loop as the f32 one.
void dgemm_tile_6x8(int kc, const double* a, const double* b, double* c, size_t ldc, int mr, int nr, double alpha,
                    double beta) {
  __m256d c00 = _mm256_setzero_pd(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256d c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
#pragma GCC unroll 4
  for (int k = 0; k < kc; ++k) {
    const __m256d b0 = _mm256_load_pd(b), b1 = _mm256_load_pd(b + 4);
    __m256d ai = _mm256_broadcast_sd(a);
    c00 = _mm256_fmadd_pd(ai, b0, c00);
    c01 = _mm256_fmadd_pd(ai, b1, c01);
    ai = _mm256_broadcast_sd(a + 1);
    c10 = _mm256_fmadd_pd(ai, b0, c10);
    c11 = _mm256_fmadd_pd(ai, b1, c11);
    ai = _mm256_broadcast_sd(a + 2);
    c20 = _mm256_fmadd_pd(ai, b0, c20);
    c21 = _mm256_fmadd_pd(ai, b1, c21);
    ai = _mm256_broadcast_sd(a + 3);
    c30 = _mm256_fmadd_pd(ai, b0, c30);
    c31 = _mm256_fmadd_pd(ai, b1, c31);
    ai = _mm256_broadcast_sd(a + 4);
    c40 = _mm256_fmadd_pd(ai, b0, c40);
    c41 = _mm256_fmadd_pd(ai, b1, c41);
    ai = _mm256_broadcast_sd(a + 5);
    c50 = _mm256_fmadd_pd(ai, b0, c50);
    c51 = _mm256_fmadd_pd(ai, b1, c51);
    a += 6;
    b += 8;
  }
  const __m256d va = _mm256_set1_pd(alpha), vb = _mm256_set1_pd(beta);
  const bool read_c = beta != 0.0;
  if (mr == 6 && nr == 8) {
    store_row8d(c, c00, c01, va, vb, read_c);
    store_row8d(c + ldc, c10, c11, va, vb, read_c);
    store_row8d(c + 2 * ldc, c20, c21, va, vb, read_c);
    store_row8d(c + 3 * ldc, c30, c31, va, vb, read_c);
    store_row8d(c + 4 * ldc, c40, c41, va, vb, read_c);
    store_row8d(c + 5 * ldc, c50, c51, va, vb, read_c);
    return;
  }
  alignas(32) double t[6][8];
  store_row8d(t[0], c00, c01, va, vb, false);
  store_row8d(t[1], c10, c11, va, vb, false);
  store_row8d(t[2], c20, c21, va, vb, false);
  store_row8d(t[3], c30, c31, va, vb, false);
  store_row8d(t[4], c40, c41, va, vb, false);
  store_row8d(t[5], c50, c51, va, vb, false);
  for (int i = 0; i < mr; ++i) {
    double* ci = c + i * ldc;
    if (read_c)
      for (int j = 0; j < nr; ++j) ci[j] = t[i][j] + beta * ci[j];
    else
      for (int j = 0; j < nr; ++j) ci[j] = t[i][j];
  }
}

// 6-tall A panels. k_contig (A not transposed): 8×8 transposes of 6 real rows + 2 zero rows;
// each k row is stored as 8 floats of which the next row overwrites the last 2 (the scratch
// buffer has 64 bytes of slack for the final one).
void sgemm_pack_a6(bool k_contig, const float* src, size_t ld, int rows, int kc, float* dst) {
  for (int r0 = 0; r0 < rows; r0 += 6, dst += static_cast<size_t>(6) * kc) {
    const int w = std::min(6, rows - r0);
    const float* s = src + (k_contig ? static_cast<size_t>(r0) * ld : static_cast<size_t>(r0));
    int k = 0;
    if (!k_contig && w == 6) {  // 6 contiguous floats per k (masked load: never past the row)
      const __m256i six = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
      for (; k < kc; ++k) _mm256_storeu_ps(dst + static_cast<size_t>(k) * 6, _mm256_maskload_ps(s + k * ld, six));
    }
    if (k_contig && w == 6) {
      for (; k + 8 <= kc; k += 8) {
        __m256 x0 = _mm256_loadu_ps(s + k), x1 = _mm256_loadu_ps(s + ld + k), x2 = _mm256_loadu_ps(s + 2 * ld + k);
        __m256 x3 = _mm256_loadu_ps(s + 3 * ld + k), x4 = _mm256_loadu_ps(s + 4 * ld + k);
        __m256 x5 = _mm256_loadu_ps(s + 5 * ld + k), x6 = _mm256_setzero_ps(), x7 = x6;
        transpose8(x0, x1, x2, x3, x4, x5, x6, x7);
        float* d = dst + static_cast<size_t>(k) * 6;
        _mm256_storeu_ps(d, x0);
        _mm256_storeu_ps(d + 6, x1);
        _mm256_storeu_ps(d + 12, x2);
        _mm256_storeu_ps(d + 18, x3);
        _mm256_storeu_ps(d + 24, x4);
        _mm256_storeu_ps(d + 30, x5);
        _mm256_storeu_ps(d + 36, x6);
        _mm256_storeu_ps(d + 42, x7);
      }
    }
    for (; k < kc; ++k) {
      float* d = dst + static_cast<size_t>(k) * 6;
      if (k_contig)
        for (int i = 0; i < w; ++i) d[i] = s[i * ld + k];
      else
        for (int i = 0; i < w; ++i) d[i] = s[k * ld + i];
      for (int i = w; i < 6; ++i) d[i] = 0.0f;
    }
  }
}

// 16-wide B panels. k_contig (B transposed, the y = x·Wᵀ case): two 8×8 transposes per 8 k.
// Otherwise each k row of the panel is a 64-byte copy.
void sgemm_pack_b16(bool k_contig, const float* src, size_t ld, int rows, int kc, float* dst) {
  for (int r0 = 0; r0 < rows; r0 += 16, dst += static_cast<size_t>(16) * kc) {
    const int w = std::min(16, rows - r0);
    if (w == 16 && !k_contig) {
      const float* s = src + r0;
      for (int k = 0; k < kc; ++k) {
        const float* sk = s + static_cast<size_t>(k) * ld;
        _mm256_store_ps(dst + k * 16, _mm256_loadu_ps(sk));
        _mm256_store_ps(dst + k * 16 + 8, _mm256_loadu_ps(sk + 8));
      }
      continue;
    }
    int k = 0;
    const float* s = src + (k_contig ? static_cast<size_t>(r0) * ld : static_cast<size_t>(r0));
    if (w == 16) {
      for (; k + 8 <= kc; k += 8) {
        for (int h = 0; h < 2; ++h) {
          const float* sh = s + static_cast<size_t>(8 * h) * ld + k;
          __m256 x0 = _mm256_loadu_ps(sh), x1 = _mm256_loadu_ps(sh + ld), x2 = _mm256_loadu_ps(sh + 2 * ld);
          __m256 x3 = _mm256_loadu_ps(sh + 3 * ld), x4 = _mm256_loadu_ps(sh + 4 * ld);
          __m256 x5 = _mm256_loadu_ps(sh + 5 * ld), x6 = _mm256_loadu_ps(sh + 6 * ld);
          __m256 x7 = _mm256_loadu_ps(sh + 7 * ld);
          transpose8(x0, x1, x2, x3, x4, x5, x6, x7);
          float* d = dst + static_cast<size_t>(k) * 16 + 8 * h;
          _mm256_store_ps(d, x0);
          _mm256_store_ps(d + 16, x1);
          _mm256_store_ps(d + 32, x2);
          _mm256_store_ps(d + 48, x3);
          _mm256_store_ps(d + 64, x4);
          _mm256_store_ps(d + 80, x5);
          _mm256_store_ps(d + 96, x6);
          _mm256_store_ps(d + 112, x7);
        }
      }
    }
    for (; k < kc; ++k) {
      float* d = dst + static_cast<size_t>(k) * 16;
      if (k_contig)
        for (int i = 0; i < w; ++i) d[i] = s[i * ld + k];
      else
        for (int i = 0; i < w; ++i) d[i] = s[k * ld + i];
      for (int i = w; i < 16; ++i) d[i] = 0.0f;
    }
  }
}

// f32 -> f64 packing for dgemm: 6-tall A panels and 8-wide B panels (same layouts as the
// portable pack_ref<6|8, float, double>). Eight floats become two ymm of doubles.
void dgemm_pack_a6_f32(bool k_contig, const float* src, size_t ld, int rows, int kc, double* dst) {
  const __m256i six = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
  for (int r0 = 0; r0 < rows; r0 += 6, dst += static_cast<size_t>(6) * kc) {
    const int w = std::min(6, rows - r0);
    const float* s = src + (k_contig ? static_cast<size_t>(r0) * ld : static_cast<size_t>(r0));
    int k = 0;
    if (w == 6 && !k_contig) {
      for (; k < kc; ++k) {
        const __m256 x = _mm256_maskload_ps(s + k * ld, six);
        double* d = dst + static_cast<size_t>(k) * 6;
        _mm256_storeu_pd(d, _mm256_cvtps_pd(_mm256_castps256_ps128(x)));
        _mm_storeu_pd(d + 4, _mm_cvtps_pd(_mm256_extractf128_ps(x, 1)));
      }
    } else if (w == 6) {
      for (; k + 8 <= kc; k += 8) {
        __m256 x[8] = {_mm256_loadu_ps(s + k),          _mm256_loadu_ps(s + ld + k),
                       _mm256_loadu_ps(s + 2 * ld + k), _mm256_loadu_ps(s + 3 * ld + k),
                       _mm256_loadu_ps(s + 4 * ld + k), _mm256_loadu_ps(s + 5 * ld + k),
                       _mm256_setzero_ps(),             _mm256_setzero_ps()};
        transpose8(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]);
        for (int kk = 0; kk < 8; ++kk) {
          double* d = dst + static_cast<size_t>(k + kk) * 6;
          _mm256_storeu_pd(d, _mm256_cvtps_pd(_mm256_castps256_ps128(x[kk])));
          _mm_storeu_pd(d + 4, _mm_cvtps_pd(_mm256_extractf128_ps(x[kk], 1)));
        }
      }
    }
    for (; k < kc; ++k) {
      double* d = dst + static_cast<size_t>(k) * 6;
      for (int i = 0; i < w; ++i) d[i] = k_contig ? s[i * ld + k] : s[k * ld + i];
      for (int i = w; i < 6; ++i) d[i] = 0.0;
    }
  }
}

void dgemm_pack_b8_f32(bool k_contig, const float* src, size_t ld, int rows, int kc, double* dst) {
  for (int r0 = 0; r0 < rows; r0 += 8, dst += static_cast<size_t>(8) * kc) {
    const int w = std::min(8, rows - r0);
    const float* s = src + (k_contig ? static_cast<size_t>(r0) * ld : static_cast<size_t>(r0));
    int k = 0;
    if (w == 8 && !k_contig) {
      for (; k < kc; ++k) {
        const __m256 x = _mm256_loadu_ps(s + k * ld);
        _mm256_store_pd(dst + k * 8, _mm256_cvtps_pd(_mm256_castps256_ps128(x)));
        _mm256_store_pd(dst + k * 8 + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)));
      }
    } else if (w == 8) {
      for (; k + 8 <= kc; k += 8) {
        __m256 x[8];
        for (int i = 0; i < 8; ++i) x[i] = _mm256_loadu_ps(s + i * ld + k);
        transpose8(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]);
        for (int kk = 0; kk < 8; ++kk) {
          double* d = dst + static_cast<size_t>(k + kk) * 8;
          _mm256_store_pd(d, _mm256_cvtps_pd(_mm256_castps256_ps128(x[kk])));
          _mm256_store_pd(d + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(x[kk], 1)));
        }
      }
    }
    for (; k < kc; ++k) {
      double* d = dst + static_cast<size_t>(k) * 8;
      for (int i = 0; i < w; ++i) d[i] = k_contig ? s[i * ld + k] : s[k * ld + i];
      for (int i = w; i < 8; ++i) d[i] = 0.0;
    }
  }
}

void sdot_rows(int K, int ma, const float* a, size_t lda, int nb, const float* b, size_t ldb, float* out) {
  const float* bj[4];
  for (int j = 0; j < 4; ++j) bj[j] = b + static_cast<size_t>(std::min(j, nb - 1)) * ldb;
  if (ma == 2)
    dot_tile<2>(K, a, lda, bj, out);
  else
    dot_tile<1>(K, a, lda, bj, out);
}

void saxpy_strip16(int K, int ma, const float* a, size_t a_rs, size_t a_cs, const float* b, size_t ldb, float* out) {
  switch (ma) {
    case 4: axpy_tile<4>(K, a, a_rs, a_cs, b, ldb, out); break;
    case 3: axpy_tile<3>(K, a, a_rs, a_cs, b, ldb, out); break;
    case 2: axpy_tile<2>(K, a, a_rs, a_cs, b, ldb, out); break;
    default: axpy_tile<1>(K, a, a_rs, a_cs, b, ldb, out); break;
  }
}

}  // namespace lieq::avx2
