// AVX2/FMA/F16C kernels for the packed format: fused batch-1 GEMV and block dequantization.
// Compiled with -mavx2 -mfma -mf16c; reached only through linear_kernels(true).
//
// GEMV idea. A 32-bit word of the packed row holds 32/b whole codes of one block. Field k of the
// eight words of a 32-byte load, isolated with one AND, is q * 2^(b*k) as an integer; one convert
// and one FMA with x * 2^-(b*k) add eight products. So the activations are permuted and pre-scaled
// once per call (O(in)) into the order the words deliver codes in, and the weights cost 3
// instructions per 8 codes (AND, convert, FMA) with no shuffles. The top field is taken with a
// shift instead (its AND would set the sign bit). Zero points and scales enter once per group
// (groups of up to 128 codes) and word lane, with the lane sums of x per group prepared with x:
//   y = Σ_g (s_g · dot(q_g, x_g) − s_g z_g · Σx_g)
// A per-channel group wider than 128 codes is treated as groups of 128 sharing its scale and zero
// point (Grouping); the per-word path (a unit wider than a group) keeps the zero point per 32-byte
// unit: y = Σ_g s_g Σ_{u in g} (dot(q_u, x_u) − z_g Σx_u).
// Batches of up to 8 rows run here too: two weight rows per step and activation tiles of 4 share
// each extracted field (8 FMAs per AND + convert pair), 1.2-1.6x faster than dequantizing to L1.
// A single per-row correction z·Σx would be cheaper still, but it cancels against a sum of size
// z·Σ|x|: rows whose codes nearly all equal the zero point lost ~1e-5 relative accuracy.
// The natural-order unpack (nibbles to bytes, vpmovzxbd, convert; dequant_w4_blocks) needs about
// 4.5 instructions per 8 codes instead. Measured in cache on the dev VM (one core): ~18 G
// weights/s at 4 bits (g128), i.e. ~9 GB/s of packed weights per core.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

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

  // xs [units * 8]: per unit, the sum of x over the codes each word lane carries.
  static void lane_sums(const float* x, size_t in, size_t units, float* xs) {
    const Map& m = kMap;
    for (size_t u = 0; u < units; ++u) {
      float* o = xs + u * 8;
      for (int l = 0; l < 8; ++l) o[l] = 0.0f;
      for (int t = 0; t < kCodes; ++t) {
        const size_t c = u * kCodes + static_cast<size_t>(m.src[t]);
        if (c < in) o[t % 8] += x[c];
      }
    }
  }

  // Both of the above; the 4-bit layout is vectorised (per 64 codes two 4x4 transposes of
  // 128-bit rows give the eight field vectors), other widths and a partial last unit are scalar.
  static void prepare_all(const float* x, size_t in, size_t units, float* xp, float* xs) {
    size_t done = 0;
    if constexpr (B == 4) {
      const size_t full = std::min(units, in / kCodes);
      for (size_t u = 0; u < full; ++u) {
        const float* b = x + u * kCodes;
        float* o = xp + u * kXp;
        __m256 sum = _mm256_setzero_ps();
        for (int h = 0; h < 2; ++h) {  // h: codes 0..15 / 16..31 of each block (even / odd fields)
          const float* bh = b + 16 * h;
          __m256 r[4];
          for (int j = 0; j < 4; ++j) r[j] = _mm256_loadu2_m128(bh + 32 + 4 * j, bh + 4 * j);
          const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
          const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
          const __m256 c[4] = {_mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xEE),
                               _mm256_shuffle_ps(t1, t3, 0x44), _mm256_shuffle_ps(t1, t3, 0xEE)};
          for (int j = 0; j < 4; ++j) {
            const int k = 2 * j + h;
            _mm256_storeu_ps(o + 8 * k, _mm256_mul_ps(c[j], _mm256_set1_ps(kMap.mul[8 * k])));
            sum = _mm256_add_ps(sum, c[j]);
          }
        }
        _mm256_storeu_ps(xs + u * 8, sum);
      }
      done = full;
    }
    if (done < units) {
      prepare(x + done * kCodes, in - done * kCodes, units - done, xp + done * kXp);
      lane_sums(x + done * kCodes, in - done * kCodes, units - done, xs + done * 8);
    }
  }

  // a[m][c] += partial sums of Σ q * x_m over the unit at q (32 bytes readable), for MT activation
  // rows (xu[m]: their prepared activations for this unit); field k goes to chain k % C, so that
  // the FMA latency is hidden. Each field is extracted once and used for every activation row.
  template <int MT, int C>
  static inline void accumulate(const uint8_t* q, const float* const (&xu)[MT], __m256 (&a)[MT][C]) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
#pragma GCC unroll 16
    for (int k = 0; k < kFields; ++k) {
      const __m256 c = k == kFields - 1
                           ? _mm256_cvtepi32_ps(_mm256_srli_epi32(v, 32 - B))
                           : _mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_set1_epi32(((1 << B) - 1) << (B * k))));
      for (int m = 0; m < MT; ++m) a[m][k % C] = _mm256_fmadd_ps(c, _mm256_loadu_ps(xu[m] + 8 * k), a[m][k % C]);
    }
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

  // Lane sums over the low plane's code sets (they cover each code once).
  static void lane_sums(const float* x, size_t, size_t units, float* xs) {
    const Map& m = kMap;
    for (size_t u = 0; u < units; ++u) {
      float* o = xs + u * 8;
      for (int l = 0; l < 8; ++l) o[l] = 0.0f;
      for (int t = 0; t < 32; ++t) o[t % 8] += x[u * kCodes + static_cast<size_t>(m.src[t])];
    }
  }

  static void prepare_all(const float* x, size_t in, size_t units, float* xp, float* xs) {
    prepare(x, in, units, xp);
    lane_sums(x, in, units, xs);
  }

  template <int MT, int C>
  static inline void accumulate(const uint8_t* q, const float* const (&xu)[MT], __m256 (&a)[MT][C]) {
    const Map& mp = kMap;
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
#pragma GCC unroll 8
    for (int f = 0; f < 8; ++f) {  // f < 4: low plane vector f; f >= 4: high plane vector f - 4
      const int j = f % 4;
      const __m256 c = f < 4 ? field(j == 3 ? lo3 : lo, mp.lo_mask[j]) : field(j == 3 ? hi3 : hi, mp.hi_mask[j]);
      for (int m = 0; m < MT; ++m) a[m][f % C] = _mm256_fmadd_ps(c, _mm256_loadu_ps(xu[m] + 8 * f), a[m][f % C]);
    }
  }
  static constexpr int word_block(int) { return 0; }
  static constexpr int kBlocks = 1;
};

// Software prefetch 4 KiB ahead in the weight stream. Measured on the 2-core EPYC dev VM: 4-bit
// batch-1 GEMV from memory went from ~1.7-2.0 ms to ~1.1 ms (4096 x 4096, one thread); the
// hardware prefetcher alone did not keep two interleaved row streams ahead of the kernel.
// (1 KiB helped less; 8-16 KiB no better.) Prefetching past the end of the buffer is harmless.
constexpr size_t kPrefetchBytes = 4096;
inline void prefetch_ahead(const uint8_t* p) {
  _mm_prefetch(reinterpret_cast<const char*>(p) + kPrefetchBytes, _MM_HINT_T0);
}

constexpr size_t kGroupZMax = 128;  // widest group whose zero point is applied once per group

// The groups the GEMV applies scales and zero points over: the packed groups, except that a
// per-channel group wider than kGroupZMax is split into groups of kGroupZMax codes sharing its
// scale and zero point (the last one may be shorter). So z·Σx is always taken over at most 128
// codes, and partial sums are scaled into the row total at least every 128 codes: one chain per
// lane over a 4096-code row (2 x 3 rows, C = 1) lost the 1e-5 accuracy contract.
struct Grouping {
  size_t g, ng;
  explicit Grouping(const PackedMatrix& W)
      : g(static_cast<size_t>(W.group) > kGroupZMax ? kGroupZMax : static_cast<size_t>(W.group)),
        ng((W.in + g - 1) / g) {}
  size_t scale_stride() const { return (ng + 7) / 8 * 8 + 8; }
};

// Per-call scratch of one worker.
struct GemvScratch {
  AlignedScratch<float> xp, xs, xg, scales;
};

// Row r's scales as f32 into s[0..ng), zero points into z[0..ng) and s*z into sz[0..ng) for the
// ng groups of Grouping(W); each buffer zero-padded to Grouping::scale_stride() floats (the
// per-word path loads 8 at a time).
void row_scales(const PackedMatrix& W, const Grouping& grp, size_t r, float* s, float* z, float* sz) {
  const size_t ng = W.groups_per_row();
  const uint16_t* sh = W.scales + r * ng;
  const uint8_t* zr = W.symmetric ? nullptr : W.zeros + r * ng;
  const __m256 symz = _mm256_set1_ps(static_cast<float>(packed_symmetric_zero(W.bits)));
  size_t g = 0;
  for (; g + 8 <= ng; g += 8) {
    const __m256 sv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sh + g)));
    const __m256 zv =
        zr ? _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(zr + g))))
           : symz;
    _mm256_storeu_ps(s + g, sv);
    _mm256_storeu_ps(z + g, zv);
    _mm256_storeu_ps(sz + g, _mm256_mul_ps(sv, zv));  // exact: 11-bit scale x 8-bit integer
  }
  for (; g < ng; ++g) {
    s[g] = _cvtsh_ss(sh[g]);
    z[g] = static_cast<float>(W.zero(r, g));
    sz[g] = s[g] * z[g];
  }
  if (grp.ng > ng)  // per-channel, split (ng == 1)
    for (size_t i = 1; i < grp.ng; ++i) s[i] = s[0], z[i] = z[0], sz[i] = sz[0];
  const size_t used = std::max(ng, grp.ng);
  for (size_t i = used; i < grp.scale_stride(); ++i) s[i] = z[i] = sz[i] = 0.0f;
}

// One step of the GEMV: R weight rows from row r, MT activation rows m0...
// xp/xs hold every activation row's prepared values (stride xp_stride / xs_stride floats; xs the
// per-group lane sums, or per-unit ones on the per-word path). Per group of at most 128 codes and
// word lane the kernel adds s·(dot − z·xs), so the sums never carry the large z·Σx that a
// per-row correction would have to cancel.
template <class Unit, int R, int MT>
inline void qgemv_block(const PackedMatrix& W, size_t r, size_t m0, const float* xp, size_t xp_stride, const float* xs,
                        size_t xs_stride, const Grouping& grp, const float* const* scales, const __m256i* word_idx,
                        size_t groups_per_unit, float* y, size_t ldy) {
  // chains per (row, activation row): 4-8 accumulators in all, so that 16 ymm registers suffice
  constexpr int C = R * MT >= 6 ? 1 : R * MT >= 4 ? 2 : 4;
  const size_t g = grp.g, ng = grp.ng;
  const size_t s_stride = grp.scale_stride();
  const size_t nblocks = W.blocks_per_row();
  const size_t units = (nblocks + Unit::kBlocks - 1) / Unit::kBlocks;
  const size_t full_units = nblocks / Unit::kBlocks;
  const size_t tail_bytes = (nblocks - full_units * Unit::kBlocks) * static_cast<size_t>(packed_block_bytes(W.bits));
  const uint8_t* q[R];
  const float *s[R], *sz[R];
  alignas(32) uint8_t tail[R][32] = {};
  for (int i = 0; i < R; ++i) {
    q[i] = W.qweight + (r + i) * W.row_bytes();
    s[i] = scales[i];

    sz[i] = scales[i] + 2 * s_stride;
    if (tail_bytes) std::memcpy(tail[i], q[i] + full_units * Unit::kBytes, tail_bytes);  // keep loads in bounds
  }
  const float* xpm[MT];
  const float* xsm[MT];
  for (int m = 0; m < MT; ++m) {
    xpm[m] = xp + (m0 + m) * xp_stride;
    xsm[m] = xs + (m0 + m) * xs_stride;
  }
  auto unit_x = [&](size_t u, const float* (&xu)[MT]) {
    for (int m = 0; m < MT; ++m) xu[m] = xpm[m] + u * Unit::kXp;
  };
  __m256 total[R][MT];
  for (int i = 0; i < R; ++i)
    for (int m = 0; m < MT; ++m) total[i][m] = _mm256_setzero_ps();
  auto sum_chains = [](const __m256 (&a)[C]) {
    __m256 t = a[0];
    for (int c = 1; c < C; ++c) t = _mm256_add_ps(t, a[c]);
    return t;
  };

  if (word_idx) {
    // A unit wider than a group (b = 4 with g = 32; b = 2 with g = 32 or 64): one scale per word,
    // 8 loaded scales permuted with a fixed index pattern per unit position (8/gpu units share them).
    const size_t per8_shift = groups_per_unit == 2 ? 2 : 1;  // log2(8 / groups_per_unit)
    for (size_t u = 0; u < units; ++u) {
      const size_t base = (u >> per8_shift) << 3;
      const __m256i idx = word_idx[u & ((size_t{1} << per8_shift) - 1)];
      const float* xu[MT];
      unit_x(u, xu);
      for (int i = 0; i < R; ++i) {
        const uint8_t* src = u < full_units ? q[i] + u * Unit::kBytes : tail[i];
        prefetch_ahead(src);
        __m256 a[MT][C];
        for (int m = 0; m < MT; ++m)
          for (int c = 0; c < C; ++c) a[m][c] = _mm256_setzero_ps();
        Unit::template accumulate<MT, C>(src, xu, a);
        const __m256 sv = _mm256_permutevar8x32_ps(_mm256_loadu_ps(s[i] + base), idx);
        const __m256 szv = _mm256_permutevar8x32_ps(_mm256_loadu_ps(sz[i] + base), idx);
        for (int m = 0; m < MT; ++m)
          total[i][m] = _mm256_fnmadd_ps(szv, _mm256_loadu_ps(xsm[m] + u * 8),
                                         _mm256_fmadd_ps(sum_chains(a[m]), sv, total[i][m]));
      }
    }
  } else {
    // Per group (Grouping: at most 128 codes) xs holds the lane sums of x, and the zero point
    // enters once: s·(dot − z·Σx).
    const size_t units_per_group = g / Unit::kCodes;
    for (size_t gi = 0; gi < ng; ++gi) {
      const size_t u0 = gi * units_per_group, u1 = gi + 1 == ng ? units : u0 + units_per_group;
      __m256 acc[R][MT][C];
      for (int i = 0; i < R; ++i)
        for (int m = 0; m < MT; ++m)
          for (int c = 0; c < C; ++c) acc[i][m][c] = _mm256_setzero_ps();
      for (size_t u = u0; u < u1; ++u) {
        const float* xu[MT];
        unit_x(u, xu);
        for (int i = 0; i < R; ++i) {
          const uint8_t* src = u < full_units ? q[i] + u * Unit::kBytes : tail[i];
          prefetch_ahead(src);
          Unit::template accumulate<MT, C>(src, xu, acc[i]);
        }
      }
      for (int i = 0; i < R; ++i) {
        const __m256 sv = _mm256_set1_ps(s[i][gi]), szv = _mm256_set1_ps(sz[i][gi]);
        for (int m = 0; m < MT; ++m)
          total[i][m] = _mm256_fnmadd_ps(szv, _mm256_loadu_ps(xsm[m] + gi * 8),
                                         _mm256_fmadd_ps(sum_chains(acc[i][m]), sv, total[i][m]));
      }
    }
  }
  for (int i = 0; i < R; ++i)
    for (int m = 0; m < MT; ++m) y[(m0 + m) * ldy + r + i] = hsum(total[i][m]);
}

constexpr size_t kGemvTile = 4;  // activation rows per pass over a weight row
// Weight rows per step, for every batch size: two rows share each activation load (4 rows measured
// no faster at batch 1 and slower at 2 bits: the extra fields and accumulators spill).
constexpr int kGemvRowsMax = 2;

template <class Unit>
void qgemv_rows_t(const PackedMatrix& W, const float* x, size_t M, size_t r0, size_t r1, float* y) {
  const size_t in = W.in, g = static_cast<size_t>(W.group);
  const Grouping grp(W);
  const size_t units = (W.blocks_per_row() + Unit::kBlocks - 1) / Unit::kBlocks;
  const size_t s_stride = grp.scale_stride();
  const size_t xp_stride = aligned_stride(units * Unit::kXp), xs_stride0 = aligned_stride(units * 8);
  size_t xs_stride_v = xs_stride0;

  thread_local GemvScratch sc;
  float* xp = sc.xp.get(M * xp_stride);
  float* xs = sc.xs.get(M * xs_stride0);
  float* sbuf = sc.scales.get(kGemvRowsMax * 3 * s_stride);
  for (size_t m = 0; m < M; ++m) Unit::prepare_all(x + m * in, in, units, xp + m * xp_stride, xs + m * xs_stride0);

  const bool per_word = g < static_cast<size_t>(Unit::kCodes);
  const size_t gpu = per_word ? Unit::kCodes / g : 1;
  if (!per_word) {  // z·Σx once per group: sum the unit lane sums per group
    const size_t ng = grp.ng, upg = grp.g / Unit::kCodes, xg_stride = aligned_stride(ng * 8);
    float* xg = sc.xg.get(M * xg_stride);
    for (size_t m = 0; m < M; ++m)
      for (size_t gi = 0; gi < ng; ++gi) {
        const size_t u0 = gi * upg, u1 = gi + 1 == ng ? units : u0 + upg;
        __m256 t = _mm256_setzero_ps();
        for (size_t u = u0; u < u1; ++u) t = _mm256_add_ps(t, _mm256_loadu_ps(xs + m * xs_stride0 + u * 8));
        _mm256_storeu_ps(xg + m * xg_stride + gi * 8, t);
      }
    xs = xg;
    xs_stride_v = xg_stride;
  }
  __m256i word_idx[8];
  if (per_word) {
    for (size_t t = 0; t < 8 / gpu; ++t) {
      alignas(32) int32_t idx[8];
      for (int l = 0; l < 8; ++l)
        idx[l] = static_cast<int32_t>(t * gpu + static_cast<size_t>(Unit::word_block(l)) * 32 / g);
      word_idx[t] = _mm256_load_si256(reinterpret_cast<const __m256i*>(idx));
    }
  }
  const __m256i* wi = per_word ? word_idx : nullptr;
  const float* row_sc[kGemvRowsMax];
  for (int i = 0; i < kGemvRowsMax; ++i) row_sc[i] = sbuf + 3 * static_cast<size_t>(i) * s_stride;
  const size_t ldy = W.out;
  // R weight rows per step share every activation load; each activation tile of up to 4 rows
  // reuses the unit's extracted fields (the weight rows stay in L1 between tiles).
  auto step = [&](auto rows, size_t r) {
    constexpr int R = decltype(rows)::value;
    for (int i = 0; i < R; ++i) {
      float* b = sbuf + 3 * static_cast<size_t>(i) * s_stride;
      row_scales(W, grp, r + i, b, b + s_stride, b + 2 * s_stride);
    }
    for (size_t m0 = 0; m0 < M; m0 += kGemvTile) {
      switch (std::min(kGemvTile, M - m0)) {
        case 1: qgemv_block<Unit, R, 1>(W, r, m0, xp, xp_stride, xs, xs_stride_v, grp, row_sc, wi, gpu, y, ldy); break;
        case 2: qgemv_block<Unit, R, 2>(W, r, m0, xp, xp_stride, xs, xs_stride_v, grp, row_sc, wi, gpu, y, ldy); break;
        case 3: qgemv_block<Unit, R, 3>(W, r, m0, xp, xp_stride, xs, xs_stride_v, grp, row_sc, wi, gpu, y, ldy); break;
        default: qgemv_block<Unit, R, 4>(W, r, m0, xp, xp_stride, xs, xs_stride_v, grp, row_sc, wi, gpu, y, ldy); break;
      }
    }
  };
  size_t r = r0;
  for (; r + kGemvRowsMax <= r1; r += kGemvRowsMax) step(std::integral_constant<int, kGemvRowsMax>{}, r);
  for (; r < r1; ++r) step(std::integral_constant<int, 1>{}, r);
}

}  // namespace

void qgemv_w2_rows(const PackedMatrix& W, const float* x, size_t M, size_t r0, size_t r1, float* y) {
  qgemv_rows_t<WordUnit<2>>(W, x, M, r0, r1, y);
}
void qgemv_w3_rows(const PackedMatrix& W, const float* x, size_t M, size_t r0, size_t r1, float* y) {
  qgemv_rows_t<W3Unit>(W, x, M, r0, r1, y);
}
void qgemv_w4_rows(const PackedMatrix& W, const float* x, size_t M, size_t r0, size_t r1, float* y) {
  qgemv_rows_t<WordUnit<4>>(W, x, M, r0, r1, y);
}
void qgemv_w8_rows(const PackedMatrix& W, const float* x, size_t M, size_t r0, size_t r1, float* y) {
  qgemv_rows_t<WordUnit<8>>(W, x, M, r0, r1, y);
}

namespace {

// ---- natural-order dequantization of blocks ---------------------------------------------

inline void store_dequant(__m256i codes, __m256 scale, __m256 neg_sz, float* dst) {
  // s * q - s * z: both products are exact (11-bit scale x 8-bit integers), so is the result.
  _mm256_storeu_ps(dst, _mm256_fmadd_ps(_mm256_cvtepi32_ps(codes), scale, neg_sz));
}

// Calls block(src, scale, -scale*zero, dst) for blocks [b0, b0+nb) of row `row`, 32 floats each;
// the scale and zero point are converted once per group (a division and an fp16 conversion per
// block cost as much as the unpacking).
template <class BlockFn>
inline void for_blocks(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst, BlockFn block) {
  const size_t bb = static_cast<size_t>(packed_block_bytes(W.bits));
  const size_t blocks_per_group = static_cast<size_t>(W.group) / kPackBlockCodes;
  const uint8_t* q = W.qweight + row * W.row_bytes() + b0 * bb;
  size_t g = b0 / blocks_per_group, left = blocks_per_group - b0 % blocks_per_group;
  for (size_t b = 0; b < nb; ++g) {
    const float sc = _cvtsh_ss(W.scales[row * W.groups_per_row() + g]);
    const __m256 s = _mm256_set1_ps(sc), neg_sz = _mm256_set1_ps(-sc * static_cast<float>(W.zero(row, g)));
    for (const size_t end = std::min(nb, b + left); b < end; ++b, q += bb, dst += kPackBlockCodes) block(q, s, neg_sz, dst);
    left = blocks_per_group;
  }
}

// Codes 8j..8j+7 of a 2-bit block (byte i holds c[i + 8j] at bits 2j..2j+1) as 32-bit integers.
inline __m256i crumbs(__m128i v8, int j) {
  const __m128i c = _mm_and_si128(_mm_srli_epi16(v8, 2 * j), _mm_set1_epi8(3));
  return _mm256_cvtepu8_epi32(c);
}

}  // namespace

void dequant_w2_blocks(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst) {
  for_blocks(W, row, b0, nb, dst, [](const uint8_t* q, __m256 s, __m256 neg_sz, float* d) {
    const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q));
    for (int j = 0; j < 4; ++j) store_dequant(crumbs(v, j), s, neg_sz, d + 8 * j);
  });
}

void dequant_w3_blocks(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst) {
  const __m256i bit_shift = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i one = _mm256_set1_epi32(1);
  for_blocks(W, row, b0, nb, dst, [&](const uint8_t* q, __m256 s, __m256 neg_sz, float* d) {
    const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q));
    int32_t high;
    std::memcpy(&high, q + 8, 4);
    for (int j = 0; j < 4; ++j) {
      const __m256i h = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(high >> (8 * j)), bit_shift), one);
      store_dequant(_mm256_or_si256(crumbs(v, j), _mm256_slli_epi32(h, 2)), s, neg_sz, d + 8 * j);
    }
  });
}

void dequant_w4_blocks(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst) {
  const __m128i low4 = _mm_set1_epi8(15);
  for_blocks(W, row, b0, nb, dst, [&](const uint8_t* q, __m256 s, __m256 neg_sz, float* d) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
    const __m128i lo = _mm_and_si128(v, low4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), low4);
    store_dequant(_mm256_cvtepu8_epi32(lo), s, neg_sz, d);
    store_dequant(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)), s, neg_sz, d + 8);
    store_dequant(_mm256_cvtepu8_epi32(hi), s, neg_sz, d + 16);
    store_dequant(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)), s, neg_sz, d + 24);
  });
}

void dequant_w8_blocks(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst) {
  for_blocks(W, row, b0, nb, dst, [](const uint8_t* q, __m256 s, __m256 neg_sz, float* d) {
    for (int j = 0; j < 4; ++j)
      store_dequant(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 8 * j))), s, neg_sz,
                    d + 8 * j);
  });
}

}  // namespace lieq::avx2
