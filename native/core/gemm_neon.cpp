// NEON micro-kernels of the blocked GEMM and the skinny streaming path (twins of the portable
// kernels in gemm.cpp, whose packed layouts they read: A panels [kc][6], B panels [kc][16] for
// f32, [kc][6] / [kc][8] for f64). Compiled only for aarch64 (LIEQ_NEON).
#include <arm_neon.h>

#include <algorithm>

#include "simd_kernels.h"

namespace lieq::neon {
namespace {

// c[mr, nr] = alpha * acc + beta * c (beta == 0: c not read), from a full MR x NR tile.
template <typename T, int MR, int NR>
inline void write_tile(const T (&t)[MR][NR], T* c, size_t ldc, int mr, int nr, T alpha, T beta) {
  for (int i = 0; i < mr; ++i) {
    T* ci = c + static_cast<size_t>(i) * ldc;
    if (beta == T(0))
      for (int j = 0; j < nr; ++j) ci[j] = alpha * t[i][j];
    else
      for (int j = 0; j < nr; ++j) ci[j] = alpha * t[i][j] + beta * ci[j];
  }
}

}  // namespace

// 6 x 16 f32 tile: 24 accumulators + 4 B vectors + 2 A vectors of the 32 q-registers.
void sgemm_tile_6x16(int kc, const float* a, const float* b, float* c, size_t ldc, int mr, int nr, float alpha,
                     float beta) {
  float32x4_t acc[6][4];
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = vdupq_n_f32(0.0f);
  for (int k = 0; k < kc; ++k, a += 6, b += 16) {
    const float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), b2 = vld1q_f32(b + 8), b3 = vld1q_f32(b + 12);
    const float32x4_t a03 = vld1q_f32(a);
    const float32x2_t a45 = vld1_f32(a + 4);
    for (int j = 0; j < 4; ++j) {
      const float32x4_t bj = j == 0 ? b0 : j == 1 ? b1 : j == 2 ? b2 : b3;
      acc[0][j] = vfmaq_laneq_f32(acc[0][j], bj, a03, 0);
      acc[1][j] = vfmaq_laneq_f32(acc[1][j], bj, a03, 1);
      acc[2][j] = vfmaq_laneq_f32(acc[2][j], bj, a03, 2);
      acc[3][j] = vfmaq_laneq_f32(acc[3][j], bj, a03, 3);
      acc[4][j] = vfmaq_lane_f32(acc[4][j], bj, a45, 0);
      acc[5][j] = vfmaq_lane_f32(acc[5][j], bj, a45, 1);
    }
  }
  float t[6][16];
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 4; ++j) vst1q_f32(&t[i][4 * j], acc[i][j]);
  write_tile<float, 6, 16>(t, c, ldc, mr, nr, alpha, beta);
}

// 6 x 8 f64 tile: 24 accumulators (float64x2) + 4 B vectors + 3 A vectors.
void dgemm_tile_6x8(int kc, const double* a, const double* b, double* c, size_t ldc, int mr, int nr, double alpha,
                    double beta) {
  float64x2_t acc[6][4];
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = vdupq_n_f64(0.0);
  for (int k = 0; k < kc; ++k, a += 6, b += 8) {
    float64x2_t bv[4];
    for (int j = 0; j < 4; ++j) bv[j] = vld1q_f64(b + 2 * j);
    const float64x2_t a01 = vld1q_f64(a), a23 = vld1q_f64(a + 2), a45 = vld1q_f64(a + 4);
    for (int j = 0; j < 4; ++j) {
      acc[0][j] = vfmaq_laneq_f64(acc[0][j], bv[j], a01, 0);
      acc[1][j] = vfmaq_laneq_f64(acc[1][j], bv[j], a01, 1);
      acc[2][j] = vfmaq_laneq_f64(acc[2][j], bv[j], a23, 0);
      acc[3][j] = vfmaq_laneq_f64(acc[3][j], bv[j], a23, 1);
      acc[4][j] = vfmaq_laneq_f64(acc[4][j], bv[j], a45, 0);
      acc[5][j] = vfmaq_laneq_f64(acc[5][j], bv[j], a45, 1);
    }
  }
  double t[6][8];
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 4; ++j) vst1q_f64(&t[i][2 * j], acc[i][j]);
  write_tile<double, 6, 8>(t, c, ldc, mr, nr, alpha, beta);
}

// out[i*4 + j] = Σ_k a[i*lda + k] · b_j[k] for i < ma (<= 2), j < 4; b_j = b + min(j, nb-1)*ldb.
void sdot_rows(int K, int ma, const float* a, size_t lda, int nb, const float* b, size_t ldb, float* out) {
  const float* bj[4];
  for (int j = 0; j < 4; ++j) bj[j] = b + static_cast<size_t>(std::min(j, nb - 1)) * ldb;
  const float* a0 = a;
  const float* a1 = ma > 1 ? a + lda : a;
  float32x4_t acc[2][4];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = vdupq_n_f32(0.0f);
  int k = 0;
  for (; k + 4 <= K; k += 4) {
    const float32x4_t x0 = vld1q_f32(a0 + k), x1 = vld1q_f32(a1 + k);
    for (int j = 0; j < 4; ++j) {
      const float32x4_t w = vld1q_f32(bj[j] + k);
      acc[0][j] = vfmaq_f32(acc[0][j], x0, w);
      acc[1][j] = vfmaq_f32(acc[1][j], x1, w);
    }
  }
  for (int i = 0; i < ma; ++i) {
    const float* ai = i == 0 ? a0 : a1;
    for (int j = 0; j < 4; ++j) {
      float s = vaddvq_f32(acc[i][j]);
      for (int kk = k; kk < K; ++kk) s += ai[kk] * bj[j][kk];
      out[i * 4 + j] = s;
    }
  }
}

// out[i*16 + j] += Σ_k a[i*a_rs + k*a_cs] · b[k*ldb + j] for i < ma (<= 4), j < 16.
void saxpy_strip16(int K, int ma, const float* a, size_t a_rs, size_t a_cs, const float* b, size_t ldb, float* out) {
  float32x4_t acc[4][4];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = i < ma ? vld1q_f32(out + i * 16 + 4 * j) : vdupq_n_f32(0.0f);
  for (int k = 0; k < K; ++k) {
    const float* bk = b + static_cast<size_t>(k) * ldb;
    const float32x4_t b0 = vld1q_f32(bk), b1 = vld1q_f32(bk + 4), b2 = vld1q_f32(bk + 8), b3 = vld1q_f32(bk + 12);
    for (int i = 0; i < ma; ++i) {
      const float aik = a[i * a_rs + static_cast<size_t>(k) * a_cs];
      acc[i][0] = vfmaq_n_f32(acc[i][0], b0, aik);
      acc[i][1] = vfmaq_n_f32(acc[i][1], b1, aik);
      acc[i][2] = vfmaq_n_f32(acc[i][2], b2, aik);
      acc[i][3] = vfmaq_n_f32(acc[i][3], b3, aik);
    }
  }
  for (int i = 0; i < ma; ++i)
    for (int j = 0; j < 4; ++j) vst1q_f32(out + i * 16 + 4 * j, acc[i][j]);
}

}  // namespace lieq::neon
