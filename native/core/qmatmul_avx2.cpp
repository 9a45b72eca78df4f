// AVX2/FMA/F16C kernels for the packed format: fused batch-1 GEMV and block dequantization.
// Compiled with -mavx2 -mfma -mf16c; reached only through linear_kernels(true).
//
// GEMV idea. A 32-bit word of the packed row holds 32/b whole codes of one block. Field k of the
// eight words of a 32-byte load, isolated with one AND, is q * 2^(b*k) as an integer; one convert
// and one FMA with x * 2^-(b*k) add eight products. So the activations are permuted and pre-scaled
// once per call (O(in)) into the order the words deliver codes in, and the weights cost 3
// instructions per 8 codes (AND, convert, FMA) with no shuffles. The top field is taken with a
// shift instead (its AND would set the sign bit). Scales and zero points enter once per group:
//   y = Σ_g s_g · dot(q_g, x_g) − Σ_g s_g z_g Σx_g.
// Tried first: nibble AND/shift to bytes, vpmovzxbd, convert, FMA (the natural-order unpack that
// dequant_w4_blocks uses) — about 4.5 instructions per 8 codes, slower than the above.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

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

// ---- word-field layouts of the 32-byte units (b = 2, 4, 8) --------------------------------

// Code index (within the 32-byte unit) delivered by field k of 32-bit word l.
template <int B>
constexpr int unit_code(int k, int l) {
  if constexpr (B == 4) {
    return 32 * (l / 4) + 4 * (l % 4) + k / 2 + 16 * (k % 2);  // byte i: c[i] | c[i+16] << 4
  } else if constexpr (B == 2) {
    return 32 * (l / 2) + 4 * (l % 2) + k / 4 + 8 * (k % 4);  // byte i: c[i], c[i+8], c[i+16], c[i+24]
  } else {
    return 4 * l + k;  // plain bytes
  }
}

template <int B>
struct WordUnit {
  static constexpr int kFields = 32 / B;        // codes per 32-bit word
  static constexpr int kCodes = 8 * kFields;    // codes per 32-byte unit
  static constexpr int kBlocks = kCodes / 32;   // blocks per unit
  static constexpr int kBytes = 32;
  static constexpr int kXp = kCodes;            // permuted activations per unit

  struct Map {
    int src[kCodes];
    float mul[kCodes];
  };
  static constexpr Map build() {
    Map t{};
    for (int k = 0; k < kFields; ++k)
      for (int l = 0; l < 8; ++l) {
        t.src[k * 8 + l] = unit_code<B>(k, l);
        t.mul[k * 8 + l] = k == kFields - 1 ? 1.0f : 1.0f / static_cast<float>(1u << (B * k));
      }
    return t;
  }
  static constexpr Map kMap = build();

  // xp [units * kXp]: x permuted to field order and pre-scaled; zero past `in`.
  static void prepare(const float* x, size_t in, size_t units, float* xp) {
    const Map& m = kMap;
    for (size_t u = 0; u < units; ++u) {
      const size_t base = u * kCodes;
      for (int t = 0; t < kCodes; ++t) {
        const size_t c = base + static_cast<size_t>(m.src[t]);
        xp[base + t] = c < in ? x[c] * m.mul[t] : 0.0f;
      }
    }
  }

  // Eight partial sums of Σ q * x over the unit at q (32 bytes readable).
  static inline __m256 dot(const uint8_t* q, const float* xp) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
    const __m256i lowmask = _mm256_set1_epi32((1 << B) - 1);
    __m256 a0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v, lowmask)), _mm256_loadu_ps(xp));
    __m256 a1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_slli_epi32(lowmask, B))),
                              _mm256_loadu_ps(xp + 8));
#pragma GCC unroll 16
    for (int k = 2; k < kFields - 1; ++k) {
      const __m256i mk = _mm256_set1_epi32(((1 << B) - 1) << (B * k));
      const __m256 c = _mm256_cvtepi32_ps(_mm256_and_si256(v, mk));
      if (k % 2 == 0)
        a0 = _mm256_fmadd_ps(c, _mm256_loadu_ps(xp + 8 * k), a0);
      else
        a1 = _mm256_fmadd_ps(c, _mm256_loadu_ps(xp + 8 * k), a1);
    }
    const __m256 top = _mm256_cvtepi32_ps(_mm256_srli_epi32(v, 32 - B));
    if ((kFields - 1) % 2 == 0)
      a0 = _mm256_fmadd_ps(top, _mm256_loadu_ps(xp + 8 * (kFields - 1)), a0);
    else
      a1 = _mm256_fmadd_ps(top, _mm256_loadu_ps(xp + 8 * (kFields - 1)), a1);
    return _mm256_add_ps(a0, a1);
  }

  // Block (0..kBlocks-1) that word l belongs to.
  static constexpr int word_block(int l) { return l * kBlocks / 8; }
};

// ---- 3-bit: one 12-byte block per unit, two broadcasts ----------------------------------
// Low plane (bytes 0..7, the 2-bit layout) broadcast as a 64-bit value: words alternate L0, L1.
// Vector j (0..3), word l = 2p + h: field 4j + p of L_h = code (4h + j) + 8p.
// High plane (u32) broadcast: vector j, word l: bit 8j + l = high bit of code 8j + l (x 4).
// The last vector of each plane is shifted first so that no field reaches the sign bit.
struct W3Map {
  int src[64];
  float mul[64];
  alignas(32) uint32_t lo_mask[4][8];
  alignas(32) uint32_t hi_mask[4][8];
};
constexpr W3Map build_w3_map() {
  W3Map t{};
  for (int j = 0; j < 4; ++j)
    for (int l = 0; l < 8; ++l) {
      const int p = l / 2, h = l % 2;
      const int lo_shift = j < 3 ? 2 * (4 * j + p) : 2 * (4 * j + p) - 2;  // after v >> 2 for j == 3
      t.src[j * 8 + l] = 4 * h + j + 8 * p;
      t.mul[j * 8 + l] = 1.0f / static_cast<float>(1u << lo_shift);
      t.lo_mask[j][l] = 3u << lo_shift;
      const int hi_shift = j < 3 ? 8 * j + l : 8 * j + l - 8;  // after H >> 8 for j == 3
      t.src[32 + j * 8 + l] = 8 * j + l;
      t.mul[32 + j * 8 + l] = 4.0f / static_cast<float>(1u << hi_shift);
      t.hi_mask[j][l] = 1u << hi_shift;
    }
  return t;
}

struct W3Unit {
  static constexpr int kCodes = 32;
  static constexpr int kXp = 64;
  static constexpr int kBytes = 12;

  using Map = W3Map;
  static constexpr Map kMap = build_w3_map();

  static void prepare(const float* x, size_t in, size_t units, float* xp) {
    const Map& m = kMap;
    for (size_t u = 0; u < units; ++u)
      for (int t = 0; t < kXp; ++t) xp[u * kXp + t] = x[u * kCodes + static_cast<size_t>(m.src[t])] * m.mul[t];
    (void)in;
  }

  static inline __m256 dot(const uint8_t* q, const float* xp) {
    const Map& m = kMap;
    int64_t lo64;
    int32_t hi32;
    std::memcpy(&lo64, q, 8);
    std::memcpy(&hi32, q + 8, 4);
    const __m256i lo = _mm256_set1_epi64x(lo64);
    const __m256i hi = _mm256_set1_epi32(hi32);
    const __m256i lo3 = _mm256_srli_epi32(lo, 2);
    const __m256i hi3 = _mm256_srli_epi32(hi, 8);
    auto field = [](__m256i v, const uint32_t* mask) {
      return _mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_load_si256(reinterpret_cast<const __m256i*>(mask))));
    };
    __m256 a0 = _mm256_mul_ps(field(lo, m.lo_mask[0]), _mm256_loadu_ps(xp));
    __m256 a1 = _mm256_mul_ps(field(hi, m.hi_mask[0]), _mm256_loadu_ps(xp + 32));
    a0 = _mm256_fmadd_ps(field(lo, m.lo_mask[1]), _mm256_loadu_ps(xp + 8), a0);
    a1 = _mm256_fmadd_ps(field(hi, m.hi_mask[1]), _mm256_loadu_ps(xp + 40), a1);
    a0 = _mm256_fmadd_ps(field(lo, m.lo_mask[2]), _mm256_loadu_ps(xp + 16), a0);
    a1 = _mm256_fmadd_ps(field(hi, m.hi_mask[2]), _mm256_loadu_ps(xp + 48), a1);
    a0 = _mm256_fmadd_ps(field(lo3, m.lo_mask[3]), _mm256_loadu_ps(xp + 24), a0);
    a1 = _mm256_fmadd_ps(field(hi3, m.hi_mask[3]), _mm256_loadu_ps(xp + 56), a1);
    return _mm256_add_ps(a0, a1);
  }
  static constexpr int word_block(int) { return 0; }
  static constexpr int kBlocks = 1;
};

// Per-call scratch of one worker.
struct GemvScratch {
  std::vector<float> xp, xsum, scales;
};

// f32 scales of row r into s[0..ng) (zero-padded to a multiple of 8, plus 8) and the zero-point
// correction Σ_g s_g z_g Σx_g.
float row_scales(const PackedMatrix& W, size_t r, const float* xsum, float* s) {
  const size_t ng = W.groups_per_row();
  const uint16_t* sh = W.scales + r * ng;
  const uint8_t* zr = W.symmetric ? nullptr : W.zeros + r * ng;
  const __m256 symz = _mm256_set1_ps(static_cast<float>(packed_symmetric_zero(W.bits)));
  __m256 corr = _mm256_setzero_ps();
  size_t g = 0;
  for (; g + 8 <= ng; g += 8) {
    const __m256 sv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sh + g)));
    _mm256_storeu_ps(s + g, sv);
    const __m256 zv =
        zr ? _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(zr + g))))
           : symz;
    corr = _mm256_fmadd_ps(_mm256_mul_ps(sv, zv), _mm256_loadu_ps(xsum + g), corr);
  }
  float c = hsum(corr);
  for (; g < ng; ++g) {
    s[g] = _cvtsh_ss(sh[g]);
    c += s[g] * static_cast<float>(W.zero(r, g)) * xsum[g];
  }
  const size_t padded = (ng + 7) / 8 * 8 + 8;
  for (size_t i = ng; i < padded; ++i) s[i] = 0.0f;
  return c;
}

// R rows at once (independent FMA chains for the out-of-order core; shared activation loads).
template <class Unit, int R>
inline void qgemv_row_block(const PackedMatrix& W, size_t r, const float* xp, const float* xsum, float* sbuf,
                            size_t s_stride, const __m256i* word_idx, size_t groups_per_unit, float* y) {
  const size_t g = static_cast<size_t>(W.group), ng = W.groups_per_row();
  const size_t nblocks = W.blocks_per_row();
  const size_t units = (nblocks + Unit::kBlocks - 1) / Unit::kBlocks;
  const size_t full_units = nblocks / Unit::kBlocks;
  const size_t tail_bytes = (nblocks - full_units * Unit::kBlocks) * static_cast<size_t>(packed_block_bytes(W.bits));
  const uint8_t* q[R];
  const float* s[R];
  float corr[R];
  alignas(32) uint8_t tail[R][32];
  for (int i = 0; i < R; ++i) {
    q[i] = W.qweight + (r + i) * W.row_bytes();
    float* si = sbuf + i * s_stride;
    corr[i] = row_scales(W, r + i, xsum, si);
    s[i] = si;
    if (tail_bytes) {  // a partial last unit: copy it so that the 32-byte load stays in bounds
      std::memset(tail[i], 0, 32);
      std::memcpy(tail[i], q[i] + full_units * Unit::kBytes, tail_bytes);
    }
  }
  auto unit = [&](int i, size_t u) -> const uint8_t* { return u < full_units ? q[i] + u * Unit::kBytes : tail[i]; };
  __m256 total[R];
  for (int i = 0; i < R; ++i) total[i] = _mm256_setzero_ps();
  if (word_idx) {
    // A unit wider than a group (b = 4 with g = 32; b = 2 with g = 32 or 64): one scale per word,
    // 8 loaded scales permuted with a fixed index pattern per unit position.
    for (size_t u = 0; u < units; ++u) {
      const size_t g0 = u * groups_per_unit;
      const __m256i idx = word_idx[(g0 % 8) / groups_per_unit];
      const float* xu = xp + u * Unit::kXp;
      for (int i = 0; i < R; ++i) {
        const __m256 sv = _mm256_permutevar8x32_ps(_mm256_loadu_ps(s[i] + (g0 & ~size_t{7})), idx);
        total[i] = _mm256_fmadd_ps(Unit::dot(unit(i, u), xu), sv, total[i]);
      }
    }
  } else {
    const size_t units_per_group = g / Unit::kCodes;
    for (size_t gi = 0; gi < ng; ++gi) {
      const size_t u0 = gi * units_per_group, u1 = gi + 1 == ng ? units : u0 + units_per_group;
      __m256 acc[R];
      for (int i = 0; i < R; ++i) acc[i] = _mm256_setzero_ps();
      for (size_t u = u0; u < u1; ++u) {
        const float* xu = xp + u * Unit::kXp;
        for (int i = 0; i < R; ++i) acc[i] = _mm256_add_ps(acc[i], Unit::dot(unit(i, u), xu));
      }
      for (int i = 0; i < R; ++i) total[i] = _mm256_fmadd_ps(acc[i], _mm256_set1_ps(s[i][gi]), total[i]);
    }
  }
  for (int i = 0; i < R; ++i) y[r + i] = hsum(total[i]) - corr[i];
}

constexpr int kGemvRows = 2;  // rows per step

template <class Unit>
void qgemv_rows_t(const PackedMatrix& W, const float* x, size_t r0, size_t r1, float* y) {
  const size_t in = W.in, g = static_cast<size_t>(W.group), ng = W.groups_per_row();
  const size_t units = (W.blocks_per_row() + Unit::kBlocks - 1) / Unit::kBlocks;
  const size_t s_stride = (ng + 7) / 8 * 8 + 8;

  thread_local GemvScratch sc;
  sc.xp.resize(units * Unit::kXp);
  sc.xsum.assign(ng, 0.0f);
  sc.scales.resize(kGemvRows * s_stride);
  Unit::prepare(x, in, units, sc.xp.data());
  for (size_t gi = 0; gi < ng; ++gi) {
    const float* xg = x + gi * g;
    __m256 a = _mm256_setzero_ps();
    for (size_t k = 0; k < g; k += 8) a = _mm256_add_ps(a, _mm256_loadu_ps(xg + k));
    sc.xsum[gi] = hsum(a);
  }

  const bool per_word = g < static_cast<size_t>(Unit::kCodes);
  const size_t groups_per_unit = per_word ? Unit::kCodes / g : 1;
  __m256i word_idx[8];
  if (per_word) {
    for (size_t t = 0; t < 8 / groups_per_unit; ++t) {
      alignas(32) int32_t idx[8];
      for (int l = 0; l < 8; ++l)
        idx[l] = static_cast<int32_t>(t * groups_per_unit + static_cast<size_t>(Unit::word_block(l)) * 32 / g);
      word_idx[t] = _mm256_load_si256(reinterpret_cast<const __m256i*>(idx));
    }
  }
  const __m256i* wi = per_word ? word_idx : nullptr;
  size_t r = r0;
  for (; r + kGemvRows <= r1; r += kGemvRows)
    qgemv_row_block<Unit, kGemvRows>(W, r, sc.xp.data(), sc.xsum.data(), sc.scales.data(), s_stride, wi,
                                     groups_per_unit, y);
  for (; r < r1; ++r)
    qgemv_row_block<Unit, 1>(W, r, sc.xp.data(), sc.xsum.data(), sc.scales.data(), s_stride, wi, groups_per_unit, y);
}

// ---- natural-order dequantization of blocks ---------------------------------------------

inline void store_dequant(__m256i codes, __m256 scale, __m256 neg_sz, float* dst) {
  // s * q - s * z: both products are exact (11-bit scale x 8-bit integers), so is the result.
  _mm256_storeu_ps(dst, _mm256_fmadd_ps(_mm256_cvtepi32_ps(codes), scale, neg_sz));
}

struct BlockScale {
  __m256 s, neg_sz;
};
inline BlockScale block_scale(const PackedMatrix& W, size_t row, size_t b) {
  const size_t g = b * kPackBlockCodes / static_cast<size_t>(W.group);
  const float s = _cvtsh_ss(W.scales[row * W.groups_per_row() + g]);
  return {_mm256_set1_ps(s), _mm256_set1_ps(-s * static_cast<float>(W.zero(row, g)))};
}

// Codes 8j..8j+7 of a 2-bit block (byte i holds c[i + 8j] at bits 2j..2j+1) as 32-bit integers.
inline __m256i crumbs(__m128i v8, int j) {
  const __m128i c = _mm_and_si128(_mm_srli_epi16(v8, 2 * j), _mm_set1_epi8(3));
  return _mm256_cvtepu8_epi32(c);
}

}  // namespace

void qgemv_w2_rows(const PackedMatrix& W, const float* x, size_t r0, size_t r1, float* y) {
  qgemv_rows_t<WordUnit<2>>(W, x, r0, r1, y);
}
void qgemv_w3_rows(const PackedMatrix& W, const float* x, size_t r0, size_t r1, float* y) {
  qgemv_rows_t<W3Unit>(W, x, r0, r1, y);
}
void qgemv_w4_rows(const PackedMatrix& W, const float* x, size_t r0, size_t r1, float* y) {
  qgemv_rows_t<WordUnit<4>>(W, x, r0, r1, y);
}
void qgemv_w8_rows(const PackedMatrix& W, const float* x, size_t r0, size_t r1, float* y) {
  qgemv_rows_t<WordUnit<8>>(W, x, r0, r1, y);
}

void dequant_w2_blocks(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst) {
  const uint8_t* q = W.qweight + row * W.row_bytes() + b0 * 8;
  for (size_t b = 0; b < nb; ++b, q += 8, dst += 32) {
    const BlockScale bs = block_scale(W, row, b0 + b);
    const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q));
    for (int j = 0; j < 4; ++j) store_dequant(crumbs(v, j), bs.s, bs.neg_sz, dst + 8 * j);
  }
}

void dequant_w3_blocks(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst) {
  const uint8_t* q = W.qweight + row * W.row_bytes() + b0 * 12;
  const __m256i bit_shift = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i one = _mm256_set1_epi32(1);
  for (size_t b = 0; b < nb; ++b, q += 12, dst += 32) {
    const BlockScale bs = block_scale(W, row, b0 + b);
    const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q));
    int32_t high;
    std::memcpy(&high, q + 8, 4);
    for (int j = 0; j < 4; ++j) {
      const __m256i h = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(high >> (8 * j)), bit_shift), one);
      store_dequant(_mm256_or_si256(crumbs(v, j), _mm256_slli_epi32(h, 2)), bs.s, bs.neg_sz, dst + 8 * j);
    }
  }
}

void dequant_w4_blocks(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst) {
  const uint8_t* q = W.qweight + row * W.row_bytes() + b0 * 16;
  const __m128i low4 = _mm_set1_epi8(15);
  for (size_t b = 0; b < nb; ++b, q += 16, dst += 32) {
    const BlockScale bs = block_scale(W, row, b0 + b);
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
    const __m128i lo = _mm_and_si128(v, low4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), low4);
    store_dequant(_mm256_cvtepu8_epi32(lo), bs.s, bs.neg_sz, dst);
    store_dequant(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)), bs.s, bs.neg_sz, dst + 8);
    store_dequant(_mm256_cvtepu8_epi32(hi), bs.s, bs.neg_sz, dst + 16);
    store_dequant(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)), bs.s, bs.neg_sz, dst + 24);
  }
}

void dequant_w8_blocks(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst) {
  const uint8_t* q = W.qweight + row * W.row_bytes() + b0 * 32;
  for (size_t b = 0; b < nb; ++b, q += 32, dst += 32) {
    const BlockScale bs = block_scale(W, row, b0 + b);
    for (int j = 0; j < 4; ++j)
      store_dequant(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 8 * j))), bs.s,
                    bs.neg_sz, dst + 8 * j);
  }
}

}  // namespace lieq::avx2
