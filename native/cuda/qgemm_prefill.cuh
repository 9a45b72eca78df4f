// Tensor-core GEMM for prefill: Y [rows, out] f32 = X [rows, in] fp16 · dequant(W)ᵀ (+ bias),
// rows >= 17 (prompt chunks, typically 64..2048 rows), over the SAME device weights the decode
// GEMV reads: the qgemv layout (qgemv.cuh: bits 2/3/4/8, kernel group 32/64/128) or the dense
// fp16 rows [out][stride] of unpacked linears. No second weight copy.
//
// One CTA computes a (BM weight rows) x (BN tokens) tile: weight rows are the mma's M (so a
// qgemv tile's per-lane words are already the A fragments), tokens its N (X rows are the B
// fragments, one 16-byte shared-memory load per lane and two k-steps, in the qgemv k order).
// K advances by one 128-column chunk per stage through a 3-stage cp.async pipeline that stages
// X, the packed tiles + meta (or the dense W rows) in shared memory; packed codes are decoded
// in registers into fp16 scale·(code − zero) (the dense fp16 value of the dequantized weight),
// then mma.sync m16n8k16 with fp32 accumulation. qgemm_prefill.cu has the details.
//
// Numerics: unlike the GEMV (which scales each group's fp32 sum), each dequantized weight is
// rounded once to fp16, as a dense fp16 copy of dequant(W) would hold it (relative error of
// that rounding <= 2^-11 per weight); accumulation is fp32.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "qgemv.cuh"

namespace lieq {

// CTA tile shapes (BM weight rows x BN tokens); 0 = pick one from the shape and the device.
enum QgemmTile : int {
  kQgemmTileAuto = 0,
  kQgemmTile128x128 = 1,  // 8 warps, 2 stripes x 64 tokens each
  kQgemmTile128x64 = 2,   // 8 warps, 2 stripes x 32 tokens each
  kQgemmTile64x64 = 3,    // 4 warps, 2 stripes x 32 tokens each
  kQgemmTile128x256 = 4,  // 8 warps, 4 stripes x 64 tokens each (half the shared-memory reads per mma), 2 stages
};
constexpr int kQgemmTiles = 4;

// Packed W (qgemv layout on the device). x [rows][x_stride] fp16, x_stride >= layout.in,
// x_stride % 8 == 0, 16-byte aligned; y [rows][layout.out] f32; bias [out] f32 or null.
cudaError_t qgemm_prefill_launch(const QgemvLayout& layout, const uint8_t* qweight, const uint8_t* meta,
                                 const __half* x, int x_stride, int rows, float* y, const float* bias,
                                 cudaStream_t stream, int tile = kQgemmTileAuto);

// Dense fp16 W [out][stride] (stride % 8 == 0, zeros past the logical width); x [rows][stride].
cudaError_t dense_gemm_prefill_launch(const __half* w, int out, int stride, const __half* x, int rows, float* y,
                                      const float* bias, cudaStream_t stream, int tile = kQgemmTileAuto);

// The tile qgemm_prefill_launch / dense_gemm_prefill_launch pick for this shape (for reports).
int qgemm_auto_tile(int out, int rows, bool packed);

// Opts `kernel` into `bytes` of dynamic shared memory (> 48 KB) once per device, so launches do
// not pay a driver call each (the prefill kernels here and in prefill_attention.cu).
cudaError_t prefill_allow_smem(const void* kernel, int bytes);

}  // namespace lieq
