// NEON (AArch64 ASIMD) kernels for the packed format: fused GEMV over packed rows and block
// dequantization. Compiled only for aarch64 (LIEQ_NEON); reached only through linear_kernels(true).
//
// Scheme. Each 32-code block is decoded in natural order into two 16-byte vectors of codes
// (codes 0..15 and 16..31: one AND/shift per plane, no table lookups), the zero point is
// subtracted while widening to 16 bits (vsubl_u8 — exact: q − z fits in an int16), and the
// differences are widened to int32 and converted to f32, then FMA'd with x. So the kernel sums
// (q − z)·x exactly as the scalar reference does (no z·Σx correction to cancel), with one
// multiply by the group's scale per group. A decoded block is used for every activation row
// (M <= 4 per pass), so small batches decode each block once per pass.
#include <arm_neon.h>

#include <algorithm>
#include <cstring>

#include "convert.h"
#include "linear_kernels.h"

namespace lieq::neon {
namespace {

// Codes 0..15 (lo) and 16..31 (hi) of one block, natural order. The layouts (packed_format.h):
//   2-bit: byte i = c[i] | c[i+8] << 2 | c[i+16] << 4 | c[i+24] << 6
//   3-bit: bytes 0..7 the 2-bit plane of (c & 3); u32 at byte 8: bit i = bit 2 of c[i]
//   4-bit: byte i = c[i] | c[i+16] << 4
//   8-bit: byte i = c[i]
template <int B>
inline void decode_block(const uint8_t* q, uint8x16_t& lo, uint8x16_t& hi) {
  if constexpr (B == 8) {
    lo = vld1q_u8(q);
    hi = vld1q_u8(q + 16);
  } else if constexpr (B == 4) {
    const uint8x16_t v = vld1q_u8(q);
    lo = vandq_u8(v, vdupq_n_u8(15));
    hi = vshrq_n_u8(v, 4);
  } else {
    const uint8x8_t v = vld1_u8(q);
    const uint8x8_t three = vdup_n_u8(3);
    lo = vcombine_u8(vand_u8(v, three), vand_u8(vshr_n_u8(v, 2), three));
    hi = vcombine_u8(vand_u8(vshr_n_u8(v, 4), three), vshr_n_u8(v, 6));
    if constexpr (B == 3) {
      // High bit of code 8j + l is bit l of byte j of the mask: test each byte against 1 << l.
      static const uint8_t kBit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
      const uint8x16_t bit = vld1q_u8(kBit);
      const uint8x16_t four = vdupq_n_u8(4);
      const uint8x16_t h01 = vcombine_u8(vdup_n_u8(q[8]), vdup_n_u8(q[9]));
      const uint8x16_t h23 = vcombine_u8(vdup_n_u8(q[10]), vdup_n_u8(q[11]));
      lo = vorrq_u8(lo, vandq_u8(vtstq_u8(h01, bit), four));
      hi = vorrq_u8(hi, vandq_u8(vtstq_u8(h23, bit), four));
    }
  }
}

// d[0..3] = f32(codes[0..15] − z), exact.
inline void codes_minus_zero(uint8x16_t c, uint8x8_t z, float32x4_t (&d)[4]) {
  const int16x8_t a = vreinterpretq_s16_u16(vsubl_u8(vget_low_u8(c), z));
  const int16x8_t b = vreinterpretq_s16_u16(vsubl_u8(vget_high_u8(c), z));
  d[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(a)));
  d[1] = vcvtq_f32_s32(vmovl_s16(vget_high_s16(a)));
  d[2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(b)));
  d[3] = vcvtq_f32_s32(vmovl_s16(vget_high_s16(b)));
}

// The block's 32 values q − z as eight f32 vectors (codes 4i..4i+3 in w[i]).
template <int B>
inline void block_values(const uint8_t* q, uint8x8_t z, float32x4_t (&w)[8]) {
  uint8x16_t lo, hi;
  decode_block<B>(q, lo, hi);
  float32x4_t a[4], b[4];
  codes_minus_zero(lo, z, a);
  codes_minus_zero(hi, z, b);
  for (int i = 0; i < 4; ++i) w[i] = a[i], w[4 + i] = b[i];
}

// One weight row, MT activation rows (x[m] at x + m * in): y[m] = Σ_g s_g Σ_{k in g} (q_k − z_g) x_k.
// Two accumulators per activation row alternate between the block's halves (FMA latency).
template <int B, int MT>
inline void row_dot(const PackedMatrix& W, size_t r, const float* x, size_t in, float* y, size_t ldy) {
  const size_t g = static_cast<size_t>(W.group), ng = W.groups_per_row();
  const size_t bb = static_cast<size_t>(packed_block_bytes(B));
  const size_t blocks_per_group = g / kPackBlockCodes;
  const uint8_t* q = W.qweight + r * W.row_bytes();
  const uint16_t* sr = W.scales + r * ng;
  float32x4_t total[MT];
  for (int m = 0; m < MT; ++m) total[m] = vdupq_n_f32(0.0f);
  for (size_t gi = 0; gi < ng; ++gi) {
    const uint8x8_t z = vdup_n_u8(static_cast<uint8_t>(W.zero(r, gi)));
    float32x4_t acc[MT][2];
    for (int m = 0; m < MT; ++m) acc[m][0] = acc[m][1] = vdupq_n_f32(0.0f);
    for (size_t b = gi * blocks_per_group; b < (gi + 1) * blocks_per_group; ++b) {
      float32x4_t w[8];
      block_values<B>(q + b * bb, z, w);
      const size_t k0 = b * kPackBlockCodes;
      for (int m = 0; m < MT; ++m) {
        const float* xm = x + m * in + k0;
        for (int i = 0; i < 8; ++i) acc[m][i & 1] = vfmaq_f32(acc[m][i & 1], w[i], vld1q_f32(xm + 4 * i));
      }
    }
    const float s = f16_to_f32(sr[gi]);
    for (int m = 0; m < MT; ++m) total[m] = vfmaq_n_f32(total[m], vaddq_f32(acc[m][0], acc[m][1]), s);
  }
  for (int m = 0; m < MT; ++m) y[m * ldy + r] = vaddvq_f32(total[m]);
}

template <int B>
void qgemv_rows_t(const PackedMatrix& W, const float* x, size_t M, size_t r0, size_t r1, float* y) {
  const size_t in = W.in, ldy = W.out;
  for (size_t m0 = 0; m0 < M; m0 += 4) {  // activation rows in tiles of up to 4 (x tile stays in L1)
    const float* xm = x + m0 * in;
    float* ym = y + m0 * ldy;
    switch (std::min<size_t>(4, M - m0)) {
      case 1: for (size_t r = r0; r < r1; ++r) row_dot<B, 1>(W, r, xm, in, ym, ldy); break;
      case 2: for (size_t r = r0; r < r1; ++r) row_dot<B, 2>(W, r, xm, in, ym, ldy); break;
      case 3: for (size_t r = r0; r < r1; ++r) row_dot<B, 3>(W, r, xm, in, ym, ldy); break;
      default: for (size_t r = r0; r < r1; ++r) row_dot<B, 4>(W, r, xm, in, ym, ldy); break;
    }
  }
}

// dst[32 * (b − b0) ..] = s_g · (q − z_g) for blocks [b0, b0 + nb) of row `row` (exact in f32).
template <int B>
void dequant_blocks_t(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst) {
  const size_t bb = static_cast<size_t>(packed_block_bytes(B));
  const size_t blocks_per_group = static_cast<size_t>(W.group) / kPackBlockCodes;
  const uint8_t* q = W.qweight + row * W.row_bytes();
  const uint16_t* sr = W.scales + row * W.groups_per_row();
  size_t cur = ~size_t{0};
  float s = 0.0f;
  uint8x8_t z = vdup_n_u8(0);
  for (size_t b = b0; b < b0 + nb; ++b, dst += kPackBlockCodes) {
    const size_t gi = b / blocks_per_group;
    if (gi != cur) {
      cur = gi;
      s = f16_to_f32(sr[gi]);
      z = vdup_n_u8(static_cast<uint8_t>(W.zero(row, gi)));
    }
    float32x4_t w[8];
    block_values<B>(q + b * bb, z, w);
    for (int i = 0; i < 8; ++i) vst1q_f32(dst + 4 * i, vmulq_n_f32(w[i], s));
  }
}

}  // namespace

void qgemv_w2_rows(const PackedMatrix& W, const float* x, size_t M, size_t r0, size_t r1, float* y) {
  qgemv_rows_t<2>(W, x, M, r0, r1, y);
}
void qgemv_w3_rows(const PackedMatrix& W, const float* x, size_t M, size_t r0, size_t r1, float* y) {
  qgemv_rows_t<3>(W, x, M, r0, r1, y);
}
void qgemv_w4_rows(const PackedMatrix& W, const float* x, size_t M, size_t r0, size_t r1, float* y) {
  qgemv_rows_t<4>(W, x, M, r0, r1, y);
}
void qgemv_w8_rows(const PackedMatrix& W, const float* x, size_t M, size_t r0, size_t r1, float* y) {
  qgemv_rows_t<8>(W, x, M, r0, r1, y);
}

void dequant_w2_blocks(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst) {
  dequant_blocks_t<2>(W, row, b0, nb, dst);
}
void dequant_w3_blocks(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst) {
  dequant_blocks_t<3>(W, row, b0, nb, dst);
}
void dequant_w4_blocks(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst) {
  dequant_blocks_t<4>(W, row, b0, nb, dst);
}
void dequant_w8_blocks(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst) {
  dequant_blocks_t<8>(W, row, b0, nb, dst);
}

}  // namespace lieq::neon
