// One linear through the prefill GEMM (qgemm_prefill.cuh) on its own, for the kernel checks and
// the kernel benchmark (test/cuda/prefill-checks.ts, bench/cuda/bench-prefill.ts). The weights
// are uploaded the way the GPU model uploads them (packed -> qgemv layout; dense -> fp16 rows
// padded to a multiple of 8), so the kernels see exactly the model's layout.
//
// Plain C++ (no CUDA types): prefill_linear.cu implements it, prefill_linear_stub.cpp throws
// "built without CUDA" in CPU-only builds.
#pragma once
#include "gpu_model.h"

namespace lieq {

// y f32 [rows, out] = fp16(x) [rows, in] · Wᵀ (+ bias), rows >= 1. tile: 0 = the launcher's
// choice, 1..4 = a forced CTA tile (QgemmTile). y is NaN-poisoned on the device before the
// launch. Returns the tile used.
int gpu_prefill_linear_apply(const GpuLinearHost& lin, const float* x, int rows, float* y, int tile);

struct GpuPrefillTiming {
  double ms_median = 0, ms_min = 0;  // per launch: median / min over 5 batches of the batch mean
  int tile = 0;                      // the tile used
};
// Times 5 batches of `iters` back-to-back launches (after 3 warm-ups) on random fp16 rows.
GpuPrefillTiming gpu_prefill_linear_time(const GpuLinearHost& lin, int rows, int iters, int tile);

}  // namespace lieq
