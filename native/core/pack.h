// Packing codes into the packed layout (packed_format.h), unpacking, and dequantizing to f32.
#pragma once
#include <cstddef>
#include <cstdint>

#include "packed_format.h"

namespace lieq {

// One row: codes u8 [cols] (natural order, each < 2^bits) <-> packed bytes [cols/32 * 4*bits].
// cols % 32 == 0 (callers check). Scalar: offline work.
void pack_row(const uint8_t* codes, size_t cols, int bits, uint8_t* dst);
void unpack_row(const uint8_t* src, size_t cols, int bits, uint8_t* codes);

// Whole matrices, threaded over rows. Throw std::invalid_argument on a bad shape, and pack_codes
// on a code >= 2^bits (checked before anything is written).
void pack_codes(const uint8_t* codes, size_t rows, size_t cols, int bits, uint8_t* qweight);
void unpack_codes(const uint8_t* qweight, size_t rows, size_t cols, int bits, uint8_t* codes);

// w f32 [W.out, W.in] = scale * (q - zero), exact in f32. Threaded; AVX2 path when usable.
void dequantize(const PackedMatrix& W, float* w);
// Same result, scalar kernels only (the reference twin).
void dequantize_ref(const PackedMatrix& W, float* w);

}  // namespace lieq
