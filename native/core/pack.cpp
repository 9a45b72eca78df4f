#include "pack.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "convert.h"
#include "linear_kernels.h"
#include "thread_pool.h"

namespace lieq {
namespace {

// ---- one block of 32 codes <-> 4*bits bytes (layouts in packed_format.h) -----------------

void pack_block_w2(const uint8_t* c, uint8_t* dst) {
  for (int i = 0; i < 8; ++i)
    dst[i] = static_cast<uint8_t>(c[i] | c[i + 8] << 2 | c[i + 16] << 4 | c[i + 24] << 6);
}
void unpack_block_w2(const uint8_t* src, uint8_t* c) {
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 4; ++j) c[i + 8 * j] = (src[i] >> (2 * j)) & 3;
}

void pack_block_w3(const uint8_t* c, uint8_t* dst) {
  uint8_t lo[32];
  uint32_t high = 0;
  for (int i = 0; i < 32; ++i) {
    lo[i] = c[i] & 3;
    high |= static_cast<uint32_t>((c[i] >> 2) & 1) << i;
  }
  pack_block_w2(lo, dst);
  for (int b = 0; b < 4; ++b) dst[8 + b] = static_cast<uint8_t>(high >> (8 * b));  // little-endian
}
void unpack_block_w3(const uint8_t* src, uint8_t* c) {
  unpack_block_w2(src, c);
  for (int i = 0; i < 32; ++i) c[i] |= static_cast<uint8_t>(((src[8 + i / 8] >> (i % 8)) & 1) << 2);
}

void pack_block_w4(const uint8_t* c, uint8_t* dst) {
  for (int i = 0; i < 16; ++i) dst[i] = static_cast<uint8_t>(c[i] | c[i + 16] << 4);
}
void unpack_block_w4(const uint8_t* src, uint8_t* c) {
  for (int i = 0; i < 16; ++i) {
    c[i] = src[i] & 15;
    c[i + 16] = src[i] >> 4;
  }
}

void pack_block_w8(const uint8_t* c, uint8_t* dst) { std::memcpy(dst, c, 32); }
void unpack_block_w8(const uint8_t* src, uint8_t* c) { std::memcpy(c, src, 32); }

struct BlockCodec {
  void (*pack)(const uint8_t* codes, uint8_t* dst);
  void (*unpack)(const uint8_t* src, uint8_t* codes);
};

const BlockCodec& codec(int bits) {
  static const BlockCodec table[9] = {
      {nullptr, nullptr},         {nullptr, nullptr},         {pack_block_w2, unpack_block_w2},
      {pack_block_w3, unpack_block_w3}, {pack_block_w4, unpack_block_w4}, {nullptr, nullptr},
      {nullptr, nullptr},         {nullptr, nullptr},         {pack_block_w8, unpack_block_w8},
  };
  return table[bits];
}

void check_shape(size_t rows, size_t cols, int bits) {
  if (!packed_bits_supported(bits)) throw std::invalid_argument("bits: expected 2, 3, 4 or 8, got " + std::to_string(bits));
  if (cols == 0 || cols % kPackBlockCodes != 0)
    throw std::invalid_argument("cols: must be a positive multiple of 32 (the packed block size), got " +
                                std::to_string(cols));
}

// Reference dequantization of blocks of one row, any bit width.
void dequant_blocks_ref(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst) {
  const BlockCodec& c = codec(W.bits);
  const size_t bb = static_cast<size_t>(packed_block_bytes(W.bits));
  const uint8_t* q = W.qweight + row * W.row_bytes();
  const uint16_t* s = W.scales + row * W.groups_per_row();
  uint8_t codes[kPackBlockCodes];
  for (size_t b = b0; b < b0 + nb; ++b) {
    c.unpack(q + b * bb, codes);
    const size_t g = b * kPackBlockCodes / static_cast<size_t>(W.group);
    const float scale = f16_to_f32(s[g]);
    const int zero = W.zero(row, g);
    for (int i = 0; i < kPackBlockCodes; ++i) dst[i] = scale * static_cast<float>(codes[i] - zero);
    dst += kPackBlockCodes;
  }
}

void dequantize_with(const PackedMatrix& W, float* w, bool simd) {
  const std::string err = packed_shape_error(W.out, W.in, W.bits, W.group);
  if (!err.empty()) throw std::invalid_argument(err);
  const DequantBlocksFn fn = linear_kernels(simd).dequant[W.bits];
  const size_t nb = W.blocks_per_row();
  parallel_for(W.out, std::max<size_t>(1, (1u << 15) / W.in), [&](size_t b, size_t e, int) {
    for (size_t r = b; r < e; ++r) fn(W, r, 0, nb, w + r * W.in);
  });
}

}  // namespace

namespace ref {
void dequant_w2_blocks(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst) {
  dequant_blocks_ref(W, row, b0, nb, dst);
}
void dequant_w3_blocks(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst) {
  dequant_blocks_ref(W, row, b0, nb, dst);
}
void dequant_w4_blocks(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst) {
  dequant_blocks_ref(W, row, b0, nb, dst);
}
void dequant_w8_blocks(const PackedMatrix& W, size_t row, size_t b0, size_t nb, float* dst) {
  dequant_blocks_ref(W, row, b0, nb, dst);
}
}  // namespace ref

void pack_row(const uint8_t* codes, size_t cols, int bits, uint8_t* dst) {
  const BlockCodec& c = codec(bits);
  const size_t bb = static_cast<size_t>(packed_block_bytes(bits));
  for (size_t b = 0; b < cols / kPackBlockCodes; ++b) c.pack(codes + b * kPackBlockCodes, dst + b * bb);
}

void unpack_row(const uint8_t* src, size_t cols, int bits, uint8_t* codes) {
  const BlockCodec& c = codec(bits);
  const size_t bb = static_cast<size_t>(packed_block_bytes(bits));
  for (size_t b = 0; b < cols / kPackBlockCodes; ++b) c.unpack(src + b * bb, codes + b * kPackBlockCodes);
}

void pack_codes(const uint8_t* codes, size_t rows, size_t cols, int bits, uint8_t* qweight) {
  check_shape(rows, cols, bits);
  const size_t n = rows * cols;
  const uint8_t top = n ? *std::max_element(codes, codes + n) : 0;
  if (top > packed_max_code(bits))
    throw std::invalid_argument("codes: value " + std::to_string(top) + " does not fit in " + std::to_string(bits) +
                                " bits");
  const size_t row_bytes = cols / kPackBlockCodes * static_cast<size_t>(packed_block_bytes(bits));
  parallel_for(rows, std::max<size_t>(1, (1u << 16) / cols), [&](size_t b, size_t e, int) {
    for (size_t r = b; r < e; ++r) pack_row(codes + r * cols, cols, bits, qweight + r * row_bytes);
  });
}

void unpack_codes(const uint8_t* qweight, size_t rows, size_t cols, int bits, uint8_t* codes) {
  check_shape(rows, cols, bits);
  const size_t row_bytes = cols / kPackBlockCodes * static_cast<size_t>(packed_block_bytes(bits));
  parallel_for(rows, std::max<size_t>(1, (1u << 16) / cols), [&](size_t b, size_t e, int) {
    for (size_t r = b; r < e; ++r) unpack_row(qweight + r * row_bytes, cols, bits, codes + r * cols);
  });
}

void dequantize(const PackedMatrix& W, float* w) { dequantize_with(W, w, true); }
void dequantize_ref(const PackedMatrix& W, float* w) { dequantize_with(W, w, false); }

}  // namespace lieq
