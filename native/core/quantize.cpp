#include "quantize.h"

#include <algorithm>
#include <cmath>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <stdexcept>
#include <vector>

#include "convert.h"
#include "pack.h"
#include "packed_format.h"
#include "thread_pool.h"

namespace lieq {
namespace {

// Round half to even for |v| < 2^22 without a libm call, so the error loops vectorise.
// (Compiled without -ffast-math, the add and subtract are not folded away.)
inline float round_half_even(float v) {
  const float magic = 12582912.0f;  // 1.5 * 2^23
  return (v + magic) - magic;
}

// A candidate quantizer of one group: fp16 scale (bits and value) and integer zero point.
struct GroupFit {
  uint16_t scale_bits;
  float scale;
  float zero;
};

// Range [lo, hi] (asymmetric: lo <= 0 <= hi) or max|w| = hi (symmetric) -> scale and zero.
// The scale is rounded to fp16 first and the zero point is chosen for the rounded scale.
GroupFit fit_range(float lo, float hi, int bits, bool symmetric) {
  const float maxq = static_cast<float>(packed_max_code(bits));
  float s = symmetric ? 2.0f * hi / maxq : (hi - lo) / maxq;
  if (!(s > 0.0f)) s = 1.0f;  // an all-zero group: any scale represents it exactly
  uint16_t h = f32_to_f16(s);
  if ((h & 0x7fff) == 0) h = 0x0001;       // below the smallest fp16 subnormal
  if ((h & 0x7fff) >= 0x7c00) h = 0x7bff;  // beyond fp16's range: saturate at 65504
  const float sf = f16_to_f32(h);
  float z;
  if (symmetric) {
    z = static_cast<float>(packed_symmetric_zero(bits));
  } else {
    z = std::min(std::max(round_half_even(-lo / sf), 0.0f), maxq);
  }
  return {h, sf, z};
}

// Branch-free clamp by value (std::min/max return references, which kept the loops scalar).
inline float clampf(float v, float lo, float hi) {
  v = v < lo ? lo : v;
  return v > hi ? hi : v;
}

// Code of w under fit f (round to nearest level, clamp to [0, maxq]).
inline float code_of(float w, float inv, float z, float maxq) {
  const float a = clampf(w * inv, -z - 1.0f, maxq - z + 1.0f);  // keeps round_half_even in range
  return clampf(round_half_even(a) + z, 0.0f, maxq);
}

// Sum of squared errors of group w[n] under f, in eight partial sums acc[i % 8] combined in a
// fixed order: deterministic. The SSE2 path (every x86-64 CPU) does exactly the same IEEE
// operations in the same order as the scalar one, four lanes at a time, so both give the same bits.
float group_sse(const float* w, size_t n, const GroupFit& f, float maxq) {
  const float inv = 1.0f / f.scale;
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t i = 0;
#if defined(__SSE2__)
  {
    const __m128 vinv = _mm_set1_ps(inv), vz = _mm_set1_ps(f.zero), vs = _mm_set1_ps(f.scale);
    const __m128 lo_a = _mm_set1_ps(-f.zero - 1.0f), hi_a = _mm_set1_ps(maxq - f.zero + 1.0f);
    const __m128 zero = _mm_setzero_ps(), vmaxq = _mm_set1_ps(maxq), magic = _mm_set1_ps(12582912.0f);
    __m128 a0 = zero, a1 = zero;
    auto lane4 = [&](const float* p) {
      const __m128 x = _mm_loadu_ps(p);
      __m128 a = _mm_max_ps(lo_a, _mm_mul_ps(x, vinv));  // clampf: max(lo, v) then min(hi, v)
      a = _mm_min_ps(hi_a, a);
      __m128 q = _mm_add_ps(_mm_sub_ps(_mm_add_ps(a, magic), magic), vz);
      q = _mm_min_ps(vmaxq, _mm_max_ps(zero, q));
      const __m128 d = _mm_sub_ps(_mm_mul_ps(vs, _mm_sub_ps(q, vz)), x);
      return _mm_mul_ps(d, d);
    };
    for (; i + 8 <= n; i += 8) {
      a0 = _mm_add_ps(a0, lane4(w + i));
      a1 = _mm_add_ps(a1, lane4(w + i + 4));
    }
    _mm_storeu_ps(acc, a0);
    _mm_storeu_ps(acc + 4, a1);
  }
#endif
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) {
      const float d = f.scale * (code_of(w[i + l], inv, f.zero, maxq) - f.zero) - w[i + l];
      acc[l] += d * d;
    }
  for (; i < n; ++i) {
    const float d = f.scale * (code_of(w[i], inv, f.zero, maxq) - f.zero) - w[i];
    acc[i % 8] += d * d;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

void check_params(size_t rows, size_t cols, const QuantizeParams& p) {
  const std::string err = packed_shape_error(rows, cols, p.bits, p.group);
  if (!err.empty()) throw std::invalid_argument(err);
  if (p.method != QuantMethod::MinMax && p.method != QuantMethod::MseClip)
    throw std::invalid_argument("method: expected 0 (minmax) or 1 (mse)");
  if (p.method == QuantMethod::MseClip) {
    if (p.clip_grid < 1 || p.clip_grid > 10000)
      throw std::invalid_argument("clipGrid: expected an integer in [1, 10000], got " + std::to_string(p.clip_grid));
    if (!(p.clip_max_shrink >= 0.0f && p.clip_max_shrink < 1.0f))
      throw std::invalid_argument("clipMaxShrink: expected a number in [0, 1)");
  }
}

void check_finite(const float* w, size_t n) {
  if (count_nonfinite(w, n) != 0) throw std::invalid_argument("weights: contain NaN or Inf");
}

}  // namespace

void quantize_group(const float* w, size_t n, const QuantizeParams& p, uint8_t* codes, uint16_t* scale,
                    uint8_t* zero) {
  const float maxq = static_cast<float>(packed_max_code(p.bits));
  float mn = 0.0f, mx = 0.0f;  // the range always contains 0 (GPTQ): zero stays in [0, maxq]
  for (size_t i = 0; i < n; ++i) {
    mn = std::min(mn, w[i]);
    mx = std::max(mx, w[i]);
  }
  const float amax = std::max(-mn, mx);
  auto candidate = [&](float shrink) {
    return p.symmetric ? fit_range(0.0f, amax * shrink, p.bits, true)
                       : fit_range(mn * shrink, mx * shrink, p.bits, false);
  };
  GroupFit best = candidate(1.0f);
  if (p.method == QuantMethod::MseClip) {
    float best_err = group_sse(w, n, best, maxq);
    const int steps = static_cast<int>(static_cast<float>(p.clip_grid) * p.clip_max_shrink);
    for (int i = 1; i < steps; ++i) {
      const GroupFit f = candidate(1.0f - static_cast<float>(i) / static_cast<float>(p.clip_grid));
      const float err = group_sse(w, n, f, maxq);
      if (err < best_err) {  // strict: ties keep the wider range
        best_err = err;
        best = f;
      }
    }
  }
  const float inv = 1.0f / best.scale;
  for (size_t i = 0; i < n; ++i) codes[i] = static_cast<uint8_t>(code_of(w[i], inv, best.zero, maxq));
  *scale = best.scale_bits;
  if (zero) *zero = static_cast<uint8_t>(best.zero);
}

namespace {

void quantize_row(const float* w, size_t cols, const QuantizeParams& p, uint8_t* codes, uint16_t* scales,
                  uint8_t* zeros) {
  const size_t g = static_cast<size_t>(p.group);
  for (size_t k = 0, gi = 0; k < cols; k += g, ++gi)
    quantize_group(w + k, g, p, codes + k, scales + gi, zeros ? zeros + gi : nullptr);
}

// Rows per task: enough work per chunk that the pool's wake-up cost does not dominate.
size_t row_grain(size_t cols, const QuantizeParams& p) {
  const size_t per_row = cols * (p.method == QuantMethod::MseClip ? 64 : 1);
  return std::max<size_t>(1, (1u << 16) / std::max<size_t>(per_row, 1));
}

}  // namespace

void quantize(const float* w, size_t rows, size_t cols, const QuantizeParams& p, uint8_t* codes,
              uint16_t* scales, uint8_t* zeros) {
  check_params(rows, cols, p);
  check_finite(w, rows * cols);
  const size_t ng = cols / static_cast<size_t>(p.group);
  uint8_t* z = p.symmetric ? nullptr : zeros;
  parallel_for(rows, row_grain(cols, p), [&](size_t b, size_t e, int) {
    for (size_t r = b; r < e; ++r)
      quantize_row(w + r * cols, cols, p, codes + r * cols, scales + r * ng, z ? z + r * ng : nullptr);
  });
}

void quantize_packed(const float* w, size_t rows, size_t cols, const QuantizeParams& p, uint8_t* qweight,
                     uint16_t* scales, uint8_t* zeros) {
  check_params(rows, cols, p);
  check_finite(w, rows * cols);
  const size_t ng = cols / static_cast<size_t>(p.group);
  const size_t row_bytes = cols / kPackBlockCodes * static_cast<size_t>(packed_block_bytes(p.bits));
  uint8_t* z = p.symmetric ? nullptr : zeros;
  parallel_for(rows, row_grain(cols, p), [&](size_t b, size_t e, int) {
    std::vector<uint8_t> codes(cols);
    for (size_t r = b; r < e; ++r) {
      quantize_row(w + r * cols, cols, p, codes.data(), scales + r * ng, z ? z + r * ng : nullptr);
      pack_row(codes.data(), cols, p.bits, qweight + r * row_bytes);
    }
  });
}

}  // namespace lieq
