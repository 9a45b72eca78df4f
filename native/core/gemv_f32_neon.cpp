// NEON kernels of the f32 / fp16-weight baselines and the small-batch micro-kernel that the
// packed path shares (the twins of gemv_f32_avx2.cpp). Compiled only for aarch64 (LIEQ_NEON);
// reached through linear_kernels(true).
#include <arm_neon.h>

#include "convert.h"
#include "linear_kernels.h"

namespace lieq::neon {
namespace {

inline float32x4_t load_f16x4(const uint16_t* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }

}  // namespace

// 4 weight rows x 2 activation rows; acc keeps the reference's 8 lanes per pair (k % 8) as two
// q-registers, so 16 accumulators stay live and every weight load serves both rows.
void dot4x2(const float* const w[4], const float* x0, const float* x1, size_t n, float* acc) {
  float32x4_t a[16];
  for (int i = 0; i < 16; ++i) a[i] = vld1q_f32(acc + 4 * i);
  size_t k = 0;
  for (; k + 8 <= n; k += 8) {
    const float32x4_t xa0 = vld1q_f32(x0 + k), xa1 = vld1q_f32(x0 + k + 4);
    const float32x4_t xb0 = vld1q_f32(x1 + k), xb1 = vld1q_f32(x1 + k + 4);
    for (int r = 0; r < 4; ++r) {
      const float32x4_t v0 = vld1q_f32(w[r] + k), v1 = vld1q_f32(w[r] + k + 4);
      a[4 * r + 0] = vfmaq_f32(a[4 * r + 0], v0, xa0);
      a[4 * r + 1] = vfmaq_f32(a[4 * r + 1], v1, xa1);
      a[4 * r + 2] = vfmaq_f32(a[4 * r + 2], v0, xb0);
      a[4 * r + 3] = vfmaq_f32(a[4 * r + 3], v1, xb1);
    }
  }
  for (int i = 0; i < 16; ++i) vst1q_f32(acc + 4 * i, a[i]);
  for (; k < n; ++k)
    for (int r = 0; r < 4; ++r) {
      acc[(r * 2) * 8 + k % 8] += w[r][k] * x0[k];
      acc[(r * 2 + 1) * 8 + k % 8] += w[r][k] * x1[k];
    }
}

// Batch 1, f32 weights: memory-bound; four accumulators hide the FMA latency.
void gemv_f32_rows(const float* W, size_t in, const float* x, size_t r0, size_t r1, float* y) {
  for (size_t r = r0; r < r1; ++r) {
    const float* w = W + r * in;
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    size_t k = 0;
    for (; k + 16 <= in; k += 16) {
      a0 = vfmaq_f32(a0, vld1q_f32(w + k), vld1q_f32(x + k));
      a1 = vfmaq_f32(a1, vld1q_f32(w + k + 4), vld1q_f32(x + k + 4));
      a2 = vfmaq_f32(a2, vld1q_f32(w + k + 8), vld1q_f32(x + k + 8));
      a3 = vfmaq_f32(a3, vld1q_f32(w + k + 12), vld1q_f32(x + k + 12));
    }
    for (; k + 4 <= in; k += 4) a0 = vfmaq_f32(a0, vld1q_f32(w + k), vld1q_f32(x + k));
    float tail = 0.0f;
    for (; k < in; ++k) tail += w[k] * x[k];
    y[r] = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3))) + tail;
  }
}

// Batch 1, fp16 weights converted on the fly (FCVTL: base ARMv8-A, no +fp16 needed).
void gemv_f16_rows(const uint16_t* W, size_t in, const float* x, size_t r0, size_t r1, float* y) {
  for (size_t r = r0; r < r1; ++r) {
    const uint16_t* w = W + r * in;
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    size_t k = 0;
    for (; k + 16 <= in; k += 16) {
      a0 = vfmaq_f32(a0, load_f16x4(w + k), vld1q_f32(x + k));
      a1 = vfmaq_f32(a1, load_f16x4(w + k + 4), vld1q_f32(x + k + 4));
      a2 = vfmaq_f32(a2, load_f16x4(w + k + 8), vld1q_f32(x + k + 8));
      a3 = vfmaq_f32(a3, load_f16x4(w + k + 12), vld1q_f32(x + k + 12));
    }
    for (; k + 4 <= in; k += 4) a0 = vfmaq_f32(a0, load_f16x4(w + k), vld1q_f32(x + k));
    float tail = 0.0f;
    for (; k < in; ++k) tail += lieq::f16_to_f32(w[k]) * x[k];
    y[r] = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3))) + tail;
  }
}

void f16_row(const uint16_t* src, size_t n, float* dst) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, load_f16x4(src + i));
  for (; i < n; ++i) dst[i] = lieq::f16_to_f32(src[i]);
}

}  // namespace lieq::neon
