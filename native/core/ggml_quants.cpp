// Quantizers for the ggml block formats of ggml_quants.h. The K-quant searches follow the
// approach the ggml reference quantizers describe (fit each sub-block, quantize the sub-block
// scales against one fp16 super-block scale, then re-quantize every weight with the scales
// the decoder will actually see), written here from that description.
#include "ggml_quants.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "convert.h"
#include "thread_pool.h"

namespace lieq::ggml {

const int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

namespace {

constexpr float kGroupEps = 1e-15f;  // a group whose max |w| is below this is all-zero

const TypeTraits kTraits[] = {
    {GgmlType::F32, "F32", 1, 4},
    {GgmlType::F16, "F16", 1, 2},
    {GgmlType::Q5_0, "Q5_0", QK32, sizeof(block_q5_0)},
    {GgmlType::Q8_0, "Q8_0", QK32, sizeof(block_q8_0)},
    {GgmlType::Q2_K, "Q2_K", QK_K, sizeof(block_q2_K)},
    {GgmlType::Q3_K, "Q3_K", QK_K, sizeof(block_q3_K)},
    {GgmlType::Q4_K, "Q4_K", QK_K, sizeof(block_q4_K)},
    {GgmlType::IQ4_NL, "IQ4_NL", QK32, sizeof(block_iq4_nl)},
};

// Round half to even (the FPU default), as an int.
inline int round_int(float v) { return static_cast<int>(std::lrintf(v)); }
inline int clamp_int(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }
inline float fp16_round(float v) { return f16_to_f32(f32_to_f16(v)); }

// Value of the largest magnitude (with its sign).
float signed_absmax(const float* x, int n) {
  float amax = 0.f, v = 0.f;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      v = x[i];
    }
  return v;
}

// Affine fit x ≈ scale·q + offset, q ∈ [0, nmax], offset ≤ 0 (the formats store -offset as an
// unsigned min). Starts from the min/max grid, then tries nstep+1 stretched grids
// ((nmax + rmin + rdelta·k) steps over the range); for each assignment, the weighted
// least-squares scale/offset is computed and kept when its weighted error (|e| or e²) is lower.
// Returns the scale; *neg_offset = -offset ≥ 0. q gets the chosen codes.
float fit_affine(const float* x, const float* w, int n, int nmax, uint8_t* q, uint8_t* tmp, float rmin, float rdelta,
                 int nstep, bool abs_err, float* neg_offset) {
  float lo = x[0], hi = x[0], sw = 0.f, swx = 0.f;
  for (int i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
    sw += w[i];
    swx += w[i] * x[i];
  }
  lo = std::min(lo, 0.f);
  if (hi == lo) {
    std::memset(q, 0, n);
    *neg_offset = -lo;
    return 0.f;
  }
  auto error_of = [&](float s, float o, const uint8_t* codes) {
    float e = 0.f;
    for (int i = 0; i < n; ++i) {
      const float diff = s * codes[i] + o - x[i];
      e += w[i] * (abs_err ? std::fabs(diff) : diff * diff);
    }
    return e;
  };
  float scale = (hi - lo) / nmax, offset = lo;
  for (int i = 0; i < n; ++i) q[i] = static_cast<uint8_t>(clamp_int(round_int((x[i] - lo) / scale), 0, nmax));
  float best = error_of(scale, offset, q);
  for (int k = 0; k <= nstep; ++k) {
    const float inv = (rmin + rdelta * k + nmax) / (hi - lo);
    float sq = 0.f, sqq = 0.f, sxq = 0.f;
    for (int i = 0; i < n; ++i) {
      const int c = clamp_int(round_int(inv * (x[i] - lo)), 0, nmax);
      tmp[i] = static_cast<uint8_t>(c);
      sq += w[i] * c;
      sqq += w[i] * c * c;
      sxq += w[i] * c * x[i];
    }
    const float det = sw * sqq - sq * sq;
    if (!(det > 0.f)) continue;
    float s = (sw * sxq - swx * sq) / det;
    float o = (sqq * swx - sq * sxq) / det;
    if (o > 0.f) {  // the format cannot add a positive offset: refit the scale alone
      o = 0.f;
      s = sxq / sqq;
    }
    const float e = error_of(s, o, tmp);
    if (e < best) {
      best = e;
      scale = s;
      offset = o;
      std::memcpy(q, tmp, n);
    }
  }
  *neg_offset = -offset;
  return scale;
}

// Symmetric fit x ≈ scale·l, l ∈ [-nmax, nmax-1], weights x² (large weights matter most).
// Starts with the extreme value on -nmax, then improves single codes while
// (Σ w·x·l)² / Σ w·l² (the explained energy at the optimal scale) grows.
float fit_symmetric(const float* x, int n, int nmax, int8_t* l) {
  const float vmax = signed_absmax(x, n);
  if (std::fabs(vmax) < kGroupEps) {
    std::memset(l, 0, n);
    return 0.f;
  }
  const float inv = -nmax / vmax;
  float sxl = 0.f, sll = 0.f;
  for (int i = 0; i < n; ++i) {
    l[i] = static_cast<int8_t>(clamp_int(round_int(inv * x[i]), -nmax, nmax - 1));
    const float wi = x[i] * x[i];
    sxl += wi * x[i] * l[i];
    sll += wi * l[i] * l[i];
  }
  for (int pass = 0; pass < 5; ++pass) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      const float wi = x[i] * x[i];
      float sxl_i = sxl - wi * x[i] * l[i];
      float sll_i = sll - wi * l[i] * l[i];
      if (!(sxl_i > 0.f)) continue;
      const int cand = clamp_int(round_int(x[i] * sll_i / sxl_i), -nmax, nmax - 1);
      if (cand == l[i]) continue;
      sxl_i += wi * x[i] * cand;
      sll_i += wi * cand * cand;
      if (sll_i > 0.f && sxl_i * sxl_i * sll > sxl * sxl * sll_i) {
        l[i] = static_cast<int8_t>(cand);
        sxl = sxl_i;
        sll = sll_i;
        ++changed;
      }
    }
    if (!changed) break;
  }
  return sll > 0.f ? sxl / sll : 0.f;
}

// Two-bit codes of 256 weights into 64 bytes: per 128 weights, byte l holds l, l+32, l+64, l+96.
void pack_2bit(const uint8_t* codes, uint8_t* qs) {
  for (int half = 0; half < QK_K; half += 128)
    for (int l = 0; l < 32; ++l)
      qs[half / 4 + l] = static_cast<uint8_t>(codes[half + l] | (codes[half + l + 32] << 2) |
                                              (codes[half + l + 64] << 4) | (codes[half + l + 96] << 6));
}

// ---- Q8_0 ----------------------------------------------------------------------------------
void quantize_q8_0(const float* x, block_q8_0* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += QK32) {
    float amax = 0.f;
    for (int j = 0; j < QK32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    y[b].d = f32_to_f16(d);
    for (int j = 0; j < QK32; ++j) y[b].qs[j] = static_cast<int8_t>(std::round(x[j] * id));  // ties away from zero
  }
}

// ---- Q5_0 ----------------------------------------------------------------------------------
void quantize_q5_0(const float* x, block_q5_0* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += QK32) {
    // The extreme weight maps to code 0 (-16·d); the other side reaches +15·d.
    const float vmax = signed_absmax(x, QK32);
    const float d = vmax / -16.f;
    y[b].d = f32_to_f16(d);
    const float dd = f16_to_f32(y[b].d);
    const float id = dd != 0.f ? 1.f / dd : 0.f;
    uint32_t qh = 0;
    for (int j = 0; j < QK32 / 2; ++j) {
      const int q0 = clamp_int(round_int(x[j] * id) + 16, 0, 31);
      const int q1 = clamp_int(round_int(x[j + 16] * id) + 16, 0, 31);
      y[b].qs[j] = static_cast<uint8_t>((q0 & 0xF) | ((q1 & 0xF) << 4));
      qh |= static_cast<uint32_t>(q0 >> 4) << j;
      qh |= static_cast<uint32_t>(q1 >> 4) << (j + 16);
    }
    for (int k = 0; k < 4; ++k) y[b].qh[k] = static_cast<uint8_t>(qh >> (8 * k));
  }
}

// ---- IQ4_NL ----------------------------------------------------------------------------------
// Index of the codebook value nearest to v: the number of midpoints between neighbouring
// (sorted) values that lie below v. Branch-free, 15 compares.
int nearest_iq4nl(float v) {
  static const float kMid[15] = {-115.5f, -93.5f, -74.f, -57.f, -42.f, -28.5f, -16.f, -4.5f, 7.f, 19.f, 31.5f, 45.5f, 61.f, 79.f, 101.f};
  int k = 0;
  for (float m : kMid) k += v > m;
  return k;
}

void quantize_iq4_nl(const float* x, block_iq4_nl* y, int64_t nb) {
  uint8_t codes[QK32];
  for (int64_t b = 0; b < nb; ++b, x += QK32) {
    const float vmax = signed_absmax(x, QK32);
    if (std::fabs(vmax) < kGroupEps) {
      y[b].d = 0;
      std::memset(y[b].qs, 0, sizeof y[b].qs);
      continue;
    }
    // Candidate grids put the extreme weight near codebook entry 0 (-127) stretched by ±7
    // units; each assignment gets its least-squares scale; the lowest squared error wins.
    float best_err = INFINITY, best_d = vmax / kIq4nlValues[0];
    for (int t = -7; t <= 7; ++t) {
      const float inv = (kIq4nlValues[0] + t) / vmax;
      float sxk = 0.f, skk = 0.f, sxx = 0.f;
      for (int j = 0; j < QK32; ++j) {
        const float k = kIq4nlValues[nearest_iq4nl(inv * x[j])];
        sxk += x[j] * k;
        skk += k * k;
        sxx += x[j] * x[j];
      }
      if (!(skk > 0.f)) continue;
      // At the least-squares scale d = Σxk/Σk², the squared error is Σx² - (Σxk)²/Σk².
      const float err = sxx - sxk * sxk / skk;
      if (err < best_err) {
        best_err = err;
        best_d = sxk / skk;
      }
    }
    y[b].d = f32_to_f16(best_d);
    const float dd = f16_to_f32(y[b].d);
    const float id = dd != 0.f ? 1.f / dd : 0.f;
    for (int j = 0; j < QK32; ++j) codes[j] = static_cast<uint8_t>(nearest_iq4nl(x[j] * id));
    for (int j = 0; j < QK32 / 2; ++j) y[b].qs[j] = static_cast<uint8_t>(codes[j] | (codes[j + 16] << 4));
  }
}

// ---- Q2_K ----------------------------------------------------------------------------------
void quantize_q2_K(const float* x, block_q2_K* y, int64_t nb) {
  uint8_t codes[QK_K], tmp[16];
  float w[16], scales[16], mins[16];
  for (int64_t b = 0; b < nb; ++b, x += QK_K) {
    float max_scale = 0.f, max_min = 0.f;
    for (int j = 0; j < 16; ++j) {
      // |w| weights with absolute error: 2-bit grids are coarse, a robust fit works better.
      for (int l = 0; l < 16; ++l) w[l] = std::fabs(x[16 * j + l]);
      scales[j] = fit_affine(x + 16 * j, w, 16, 3, codes + 16 * j, tmp, -0.5f, 0.1f, 15, true, &mins[j]);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    const float inv_s = max_scale > 0.f ? 15.f / max_scale : 0.f;
    const float inv_m = max_min > 0.f ? 15.f / max_min : 0.f;
    for (int j = 0; j < 16; ++j) {
      const int ls = clamp_int(round_int(inv_s * scales[j]), 0, 15);
      const int lm = clamp_int(round_int(inv_m * mins[j]), 0, 15);
      y[b].scales[j] = static_cast<uint8_t>(ls | (lm << 4));
    }
    y[b].d = f32_to_f16(max_scale / 15.f);
    y[b].dmin = f32_to_f16(max_min / 15.f);
    const float d = f16_to_f32(y[b].d), dmin = f16_to_f32(y[b].dmin);
    for (int j = 0; j < 16; ++j) {
      const float dl = d * (y[b].scales[j] & 0xF);
      const float ml = dmin * (y[b].scales[j] >> 4);
      for (int l = 0; l < 16; ++l)
        codes[16 * j + l] = dl != 0.f ? static_cast<uint8_t>(clamp_int(round_int((x[16 * j + l] + ml) / dl), 0, 3)) : 0;
    }
    pack_2bit(codes, y[b].qs);
  }
}

// ---- Q3_K ----------------------------------------------------------------------------------
void quantize_q3_K(const float* x, block_q3_K* y, int64_t nb) {
  int8_t l[QK_K];
  uint8_t codes[QK_K];
  float scales[16];
  for (int64_t b = 0; b < nb; ++b, x += QK_K) {
    float max_scale = 0.f;
    for (int j = 0; j < 16; ++j) {
      scales[j] = fit_symmetric(x + 16 * j, 16, 4, l + 16 * j);
      if (std::fabs(scales[j]) > std::fabs(max_scale)) max_scale = scales[j];
    }
    std::memset(y[b].scales, 0, sizeof y[b].scales);
    int sc6[16] = {};
    if (max_scale != 0.f) {
      // The largest-magnitude sub-block scale maps to -32 (the 6-bit signed range is [-32, 31]).
      const float inv = -32.f / max_scale;
      for (int j = 0; j < 16; ++j) sc6[j] = clamp_int(round_int(inv * scales[j]), -32, 31) + 32;
      y[b].d = f32_to_f16(1.f / inv);
    } else {
      for (int j = 0; j < 16; ++j) sc6[j] = 32;
      y[b].d = f32_to_f16(0.f);
    }
    for (int j = 0; j < 16; ++j) {
      const int lo = sc6[j] & 0xF, hi = sc6[j] >> 4;
      y[b].scales[j % 8] |= static_cast<uint8_t>(j < 8 ? lo : lo << 4);
      y[b].scales[8 + j % 4] |= static_cast<uint8_t>(hi << (2 * (j / 4)));
    }
    const float d = f16_to_f32(y[b].d);
    for (int j = 0; j < 16; ++j) {
      const float dl = d * (sc6[j] - 32);
      for (int i = 0; i < 16; ++i) {
        const int q = dl != 0.f ? clamp_int(round_int(x[16 * j + i] / dl), -4, 3) : 0;
        codes[16 * j + i] = static_cast<uint8_t>(q + 4);  // 0..7
      }
    }
    std::memset(y[b].hmask, 0, sizeof y[b].hmask);
    for (int j = 0; j < QK_K; ++j) {
      if (codes[j] > 3) {
        y[b].hmask[j % 32] |= static_cast<uint8_t>(1u << (j / 32));
        codes[j] -= 4;
      }
    }
    pack_2bit(codes, y[b].qs);
  }
}

// ---- Q4_K ----------------------------------------------------------------------------------
void quantize_q4_K(const float* x, block_q4_K* y, int64_t nb) {
  uint8_t codes[QK_K], tmp[32];
  float w[32], scales[8], mins[8];
  for (int64_t b = 0; b < nb; ++b, x += QK_K) {
    float max_scale = 0.f, max_min = 0.f;
    for (int j = 0; j < 8; ++j) {
      // Weights rms + |w|: squared error, leaning towards the larger weights.
      float s2 = 0.f;
      for (int l = 0; l < 32; ++l) s2 += x[32 * j + l] * x[32 * j + l];
      const float rms = std::sqrt(s2 / 32.f);
      for (int l = 0; l < 32; ++l) w[l] = rms + std::fabs(x[32 * j + l]);
      scales[j] = fit_affine(x + 32 * j, w, 32, 15, codes + 32 * j, tmp, -1.f, 0.1f, 20, false, &mins[j]);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    const float inv_s = max_scale > 0.f ? 63.f / max_scale : 0.f;
    const float inv_m = max_min > 0.f ? 63.f / max_min : 0.f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; ++j) {
      ls[j] = static_cast<uint8_t>(clamp_int(round_int(inv_s * scales[j]), 0, 63));
      lm[j] = static_cast<uint8_t>(clamp_int(round_int(inv_m * mins[j]), 0, 63));
    }
    for (int j = 0; j < 4; ++j) {
      y[b].scales[j] = static_cast<uint8_t>(ls[j] | ((ls[j + 4] >> 4) << 6));
      y[b].scales[j + 4] = static_cast<uint8_t>(lm[j] | ((lm[j + 4] >> 4) << 6));
      y[b].scales[j + 8] = static_cast<uint8_t>((ls[j + 4] & 0xF) | ((lm[j + 4] & 0xF) << 4));
    }
    y[b].d = f32_to_f16(max_scale / 63.f);
    y[b].dmin = f32_to_f16(max_min / 63.f);
    const float d = f16_to_f32(y[b].d), dmin = f16_to_f32(y[b].dmin);
    for (int j = 0; j < 8; ++j) {
      const float dl = d * ls[j], ml = dmin * lm[j];
      for (int l = 0; l < 32; ++l)
        codes[32 * j + l] = dl != 0.f ? static_cast<uint8_t>(clamp_int(round_int((x[32 * j + l] + ml) / dl), 0, 15)) : 0;
    }
    for (int c = 0; c < QK_K / 64; ++c)
      for (int l = 0; l < 32; ++l)
        y[b].qs[32 * c + l] = static_cast<uint8_t>(codes[64 * c + l] | (codes[64 * c + l + 32] << 4));
  }
}

}  // namespace

const TypeTraits* type_traits(int32_t type) {
  for (const auto& t : kTraits)
    if (static_cast<int32_t>(t.type) == type) return &t;
  return nullptr;
}

size_t row_bytes(GgmlType type, int64_t n) {
  const TypeTraits* t = type_traits(static_cast<int32_t>(type));
  if (!t) throw std::invalid_argument("unsupported ggml type " + std::to_string(static_cast<int>(type)));
  if (n <= 0 || n % t->block_size != 0)
    throw std::invalid_argument(std::string(t->name) + " rows need a multiple of " + std::to_string(t->block_size) +
                                " weights, got " + std::to_string(n));
  return static_cast<size_t>(n / t->block_size) * t->block_bytes;
}

void quantize_row(GgmlType type, const float* x, void* dst, int64_t n) {
  const TypeTraits* t = type_traits(static_cast<int32_t>(type));
  (void)row_bytes(type, n);  // validates n
  const int64_t nb = n / t->block_size;
  switch (type) {
    case GgmlType::F32: std::memcpy(dst, x, static_cast<size_t>(n) * 4); break;
    case GgmlType::F16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = f32_to_f16(x[i]);
      break;
    }
    case GgmlType::Q5_0: quantize_q5_0(x, static_cast<block_q5_0*>(dst), nb); break;
    case GgmlType::Q8_0: quantize_q8_0(x, static_cast<block_q8_0*>(dst), nb); break;
    case GgmlType::Q2_K: quantize_q2_K(x, static_cast<block_q2_K*>(dst), nb); break;
    case GgmlType::Q3_K: quantize_q3_K(x, static_cast<block_q3_K*>(dst), nb); break;
    case GgmlType::Q4_K: quantize_q4_K(x, static_cast<block_q4_K*>(dst), nb); break;
    case GgmlType::IQ4_NL: quantize_iq4_nl(x, static_cast<block_iq4_nl*>(dst), nb); break;
  }
}

void quantize_rows(GgmlType type, const float* src, void* dst, int64_t rows, int64_t cols) {
  const size_t rb = row_bytes(type, cols);
  auto* out = static_cast<uint8_t*>(dst);
  // ~64K weights per task: enough work to amortise scheduling, small enough to balance.
  const size_t grain = std::max<size_t>(1, static_cast<size_t>(65536 / cols));
  parallel_for(static_cast<size_t>(rows), grain, [&](size_t r0, size_t r1, int) {
    for (size_t r = r0; r < r1; ++r) quantize_row(type, src + r * cols, out + r * rb, cols);
  });
}

}  // namespace lieq::ggml
