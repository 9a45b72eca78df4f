// The packed low-bit weight format of a linear layer (docs/format.md is the long version).
//
// W [out, in] row-major (PyTorch layout), quantized group-wise along `in`:
//   w[o][k] ≈ scale[o][k/g] * (q[o][k] - zero[o][k/g]),   q in [0, 2^bits - 1]
// bits in {2, 3, 4, 8}; g in {32, 64, 128} or g = in (per-channel); in % 32 == 0 and in % g == 0.
//
//   qweight  u8  [out, in/32 * block_bytes(bits)]   rows contiguous, blocks of 32 codes
//   scales   f16 [out, in/g]
//   zeros    u8  [out, in/g]   asymmetric mode only (GPTQ convention, zero in [0, 2^bits-1]);
//                              symmetric mode stores none: zero = 2^(bits-1), scale = 2*max|w| / (2^bits - 1)
//
// Effective bits per weight = bits + 16/g (scales) + 8/g (zeros, asymmetric only);
// e.g. 4-bit g128 asymmetric: 4 + 0.125 + 0.0625 = 4.1875.
//
// In-block layouts (one block = 32 codes c[0..31], 4*bits bytes, no padding):
//   2-bit  8 B: byte i (0..7) = c[i] | c[i+8] << 2 | c[i+16] << 4 | c[i+24] << 6
//   3-bit 12 B: bytes 0..7 = the 2-bit block of (c & 3); bytes 8..11 = little-endian u32 whose
//               bit i is bit 2 of c[i]  (dense: 96 bits for 32 codes)
//   4-bit 16 B: byte i (0..15) = c[i] | c[i+16] << 4
//   8-bit 32 B: byte i = c[i]
// Each 32-bit word of a block holds codes of that block only, and a code never straddles a word,
// so AVX2 kernels extract any field of eight words with one AND (or shift) and no shuffles.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace lieq {

constexpr int kPackBlockCodes = 32;  // codes per block; `in` must be a multiple of it

constexpr bool packed_bits_supported(int bits) { return bits == 2 || bits == 3 || bits == 4 || bits == 8; }
constexpr int packed_block_bytes(int bits) { return kPackBlockCodes * bits / 8; }
constexpr int packed_max_code(int bits) { return (1 << bits) - 1; }
// Implicit zero point of the symmetric mode.
constexpr int packed_symmetric_zero(int bits) { return 1 << (bits - 1); }

struct BlockW2 { uint8_t qs[8]; };                   // 2.0 bits per weight of payload
struct BlockW3 { uint8_t qs[8]; uint8_t hmask[4]; };  // 3.0: 2-bit plane + high-bit plane
struct BlockW4 { uint8_t qs[16]; };                  // 4.0
struct BlockW8 { uint8_t qs[32]; };                  // 8.0
static_assert(sizeof(BlockW2) == packed_block_bytes(2), "2-bit block is 8 bytes");
static_assert(sizeof(BlockW3) == packed_block_bytes(3), "3-bit block is 12 bytes (dense)");
static_assert(sizeof(BlockW4) == packed_block_bytes(4), "4-bit block is 16 bytes");
static_assert(sizeof(BlockW8) == packed_block_bytes(8), "8-bit block is 32 bytes");

// Storage cost per weight in bits: payload + fp16 scale + u8 zero (asymmetric), spread over a group.
constexpr double packed_bits_per_weight(int bits, int group, bool symmetric) {
  return bits + 16.0 / group + (symmetric ? 0.0 : 8.0 / group);
}

// Empty when (out, in, bits, group) describe a valid packed matrix, else a message that names
// the parameter (same wording as lib/kernels/packed-format.ts).
inline std::string packed_shape_error(size_t out, size_t in, int bits, int group) {
  if (!packed_bits_supported(bits)) return "bits: expected 2, 3, 4 or 8, got " + std::to_string(bits);
  if (out == 0) return "outFeatures: must be positive";
  if (in == 0 || in % kPackBlockCodes != 0)
    return "inFeatures: must be a positive multiple of 32 (the packed block size), got " + std::to_string(in);
  if (!(group == 32 || group == 64 || group == 128 || static_cast<size_t>(group) == in))
    return "groupSize: expected 32, 64, 128 or inFeatures (" + std::to_string(in) + ", per-channel), got " +
           std::to_string(group);
  if (in % static_cast<size_t>(group) != 0)
    return "inFeatures: must be a multiple of groupSize " + std::to_string(group) + ", got " + std::to_string(in);
  return {};
}

// Empty when buffers of these lengths hold a packed matrix of this shape, else a message naming the
// first bad parameter or buffer. Lengths are in elements (qweight and zeros bytes, scales fp16
// values); `zeros_len` is ignored when symmetric. Products are overflow-checked, so any sizes from a
// file or from JS may be passed. Every entry point that takes packed bytes from outside calls it.
inline std::string packed_matrix_error(size_t out, size_t in, int bits, int group, bool symmetric,
                                       size_t qweight_len, size_t scales_len, size_t zeros_len) {
  std::string err = packed_shape_error(out, in, bits, group);
  if (!err.empty()) return err;
  const size_t row_bytes = in / kPackBlockCodes * static_cast<size_t>(packed_block_bytes(bits));
  const size_t groups = in / static_cast<size_t>(group);
  size_t want_qweight = 0, want_groups = 0;
  if (__builtin_mul_overflow(out, row_bytes, &want_qweight) || __builtin_mul_overflow(out, groups, &want_groups))
    return "outFeatures × inFeatures: " + std::to_string(out) + " × " + std::to_string(in) + " is too large";
  auto mismatch = [](const char* what, size_t want, size_t have) {
    return std::string(what) + ": expected " + std::to_string(want) + " elements, got " + std::to_string(have);
  };
  if (qweight_len != want_qweight) return mismatch("qweight", want_qweight, qweight_len);
  if (scales_len != want_groups) return mismatch("scales", want_groups, scales_len);
  if (!symmetric && zeros_len != want_groups) return mismatch("zeros", want_groups, zeros_len);
  return {};
}

// A read-only view of one packed matrix. Kernels trust it (the binding validates).
struct PackedMatrix {
  const uint8_t* qweight = nullptr;  // [out, row_bytes()]
  const uint16_t* scales = nullptr;  // [out, groups_per_row()] fp16 bits
  const uint8_t* zeros = nullptr;    // [out, groups_per_row()]; nullptr when symmetric
  size_t out = 0, in = 0;
  int bits = 4;
  int group = 128;
  bool symmetric = false;

  size_t blocks_per_row() const { return in / kPackBlockCodes; }
  size_t row_bytes() const { return blocks_per_row() * static_cast<size_t>(packed_block_bytes(bits)); }
  size_t groups_per_row() const { return in / static_cast<size_t>(group); }
  int zero(size_t row, size_t g) const {
    return symmetric ? packed_symmetric_zero(bits) : zeros[row * groups_per_row() + g];
  }
};

}  // namespace lieq
