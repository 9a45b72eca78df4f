// Fused dequant-GEMV / small-batch GEMM over lieq's packed low-bit weights, on the GPU.
//
//   y [batch, out] = x [batch, in] · dequant(W)^T,   W packed as in core/packed_format.h
//   bits 2, 3, 4, 8; group 32, 64, 128 or per-channel; batch 1..16; fp16 x, fp32 accumulate,
//   fp16 or fp32 y. One kernel family (templated on bits, group, batch tile and output type)
//   built on the tensor-core instruction mma.sync m16n8k16 (sm_80 and later).
//
// The packed format is repacked once, at load time, on the host (qgemv_repack), into the
// "qgemv layout" below; the kernels read only that layout. docs/gpu.md is the long version.
//
// ---- qgemv layout ------------------------------------------------------------------------
// Rows are cut into stripes of 16 (the mma's M), `in` into chunks of 128 (8 mma k-steps of 16);
// both are zero-padded. One warp consumes one (stripe, chunk) tile at a time:
//
//   qweight  [stripes][chunks][256*bits bytes]       one tile = 16 rows x 128 codes
//   meta     [stripes][chunks][48 * 128/kg bytes]     kg = kernel group (32/64/128)
//
// Inside a tile, lane l (r = l/4, q = l%4) owns rows r and r+8 and the 32 columns
// {32m + 8q + j : m = 0..3, j = 0..7}; that is 64 codes = 8*bits bytes = 2*bits u32 words,
// exactly the A fragments of its 8 mma steps (the k order inside a step is permuted
// consistently for the weights and for x, so each lane reads x with one 16-byte load per
// two steps). A tile is stored as "parts" of 32 lanes x 16 bytes (3-bit: 16 + 8 bytes), so
// every weight load of a warp is one fully coalesced 512-byte (or 256-byte) access.
// Step s = 0..7, register i = 0..3 (rows r, r+8, r, r+8), half h = 0..1 hold the code of
//   row r + 8*(i&1), column 32*(s/2) + 8q + 4*(s&1) + 2*(i/2) + h, at
//   2-bit  word s/2,          bits 16h + 8(s&1) + 2i .. +1
//   3-bit  low 2 bits as 2-bit in words 0..3; high bit in word 4 + s/4, bit 16h + {0,1,8,9}[s&3] + 2i
//   4-bit  word s,            bits 16h + 4i .. +3
//   8-bit  word 2s + i/2,     byte 2h + (i&1)
// so that one AND/OR with 0x6400 (one LOP3) per register turns two codes into the fp16 values
// 1024 + code * 2^L (plus one shift per word; 3-bit: a second LOP3 ORs in the high bit, moved
// into place by one shift per step), and one fp16 FMA with scale 2^-L and bias
// -(1024*2^-L + zero) yields code - zero exactly (small integers are exact in fp16).
//
// Meta per tile: for each of its 128/kg groups, scales as u32 [8 r][groups] = half2(s_r, s_r+8)
// then zeros as u16 [8 r][groups] = z_r | z_r+8 << 8: 3 bytes per row and group, as in the
// packed format (symmetric matrices store their implicit zero 2^(bits-1) explicitly; padded
// rows and groups have scale 0). Per-channel matrices are repacked with kg = 128, 64 or 32
// (the largest that divides `in`), repeating the row's scale and zero in every group.
//
// Arithmetic: each group's mma accumulates sum (code - zero) * x in fp32 (exact products),
// then acc += scale * group_sum in fp32. Nothing is rounded to fp16 but x itself and, for fp16
// output, y (measured: relative error <= 3.2e-4 against float64 over all checked shapes).
// Folding the zero into a per-group fp16 bias -scale*zero instead would round that bias.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/packed_format.h"

namespace lieq {

constexpr int kQgemvStripeRows = 16;   // rows per stripe (mma M)
constexpr int kQgemvChunkCols = 128;   // codes per row in one tile (8 mma k-steps)
constexpr int kQgemvMaxBatch = 16;     // two mma n-tiles of 8

// Sizes of one matrix in the qgemv layout.
struct QgemvLayout {
  size_t out = 0, in = 0;
  int bits = 4;
  int group = 128;         // the packed matrix's group (32, 64, 128 or in)
  int kernel_group = 128;  // 32, 64 or 128: `group`, or the per-channel expansion
  bool symmetric = false;
  size_t stripes = 0;      // ceil(out / 16)
  size_t chunks = 0;       // ceil(in / 128)

  size_t tile_bytes() const { return static_cast<size_t>(256 * bits); }
  size_t tile_meta_bytes() const { return static_cast<size_t>(48 * (kQgemvChunkCols / kernel_group)); }
  size_t qweight_bytes() const { return stripes * chunks * tile_bytes(); }
  size_t meta_bytes() const { return stripes * chunks * tile_meta_bytes(); }
};

// Fills *layout for a packed matrix of this shape; returns "" or a message naming the bad
// parameter (packed_shape_error's wording).
std::string qgemv_layout(size_t out, size_t in, int bits, int group, bool symmetric, QgemvLayout* layout);

// Host-side, one-time repack of a packed matrix (host pointers) into the qgemv layout.
// qweight_out [layout.qweight_bytes()], meta_out [layout.meta_bytes()], both host memory
// (the caller copies them to the device). Writes stripes [stripe_begin, stripe_end) only, so
// callers can split the work over threads; one thread repacks ~35-140 M codes/s.
void qgemv_repack(const PackedMatrix& W, const QgemvLayout& layout, uint8_t* qweight_out, uint8_t* meta_out,
                  size_t stripe_begin = 0, size_t stripe_end = SIZE_MAX);

// Host emulation of the kernel's decode path (same masks, levels and biases, fp16 arithmetic
// emulated exactly): w f32 [out, in] = scale * (code - zero) read back from the qgemv layout.
// For tests of the repack without a GPU.
void qgemv_decode_host(const QgemvLayout& layout, const uint8_t* qweight, const uint8_t* meta, float* w);

// y [batch, out] (fp16, or fp32 when y_fp32) = x [batch, in] fp16 · W^T, W in the qgemv
// layout on the device (qweight and meta from qgemv_repack, copied as they are). x, y and
// qweight 16-byte aligned; 1 <= batch <= 16. warps_per_block: 0 picks one from the shape
// and the device; else 1..16 (for tuning). programmatic: launch with programmatic
// stream serialization (sm_90; ignored before): the kernel starts its weight loads while the
// previous kernel in the stream finishes, and waits for it before reading x. Asynchronous on
// `stream`; returns the launch error (cudaErrorInvalidValue for a bad argument).
cudaError_t qgemv_launch(const QgemvLayout& layout, const uint8_t* qweight, const uint8_t* meta, const __half* x,
                         int batch, void* y, bool y_fp32, cudaStream_t stream, int warps_per_block = 0,
                         bool programmatic = false);

// The warps per block qgemv_launch(…, 0) would use on the current device.
int qgemv_auto_warps(const QgemvLayout& layout, int batch);

}  // namespace lieq
