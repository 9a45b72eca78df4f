// Argument parsing shared by the CPU linear-algebra binding (linalg_binding.cpp) and the GPU SVD
// binding (svd_gpu_binding.cpp): dimensions, matrices checked against their buffers, seeds, and
// the whole truncated-SVD call (A, m, n, k, options?), so both devices accept the same calls and
// refuse bad ones with the same messages.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>

#include "../core/svd.h"

namespace lieq::napi {

constexpr int64_t kMaxDim = 1 << 30;

// Argument i as a dimension in [lo, 2^30].
int dim(const Napi::CallbackInfo& info, size_t i, const char* what, int64_t lo = 0);

// A row-major [rows, ld] matrix with `cols` used columns must fit in `have` elements; ld ≥ cols.
void need_matrix(Napi::Env env, const char* what, size_t have, int rows, int cols, int ld, const char* ld_name);

// A seed: a Number in [0, 2^53) or a BigInt that fits in 64 unsigned bits.
uint64_t seed_arg(Napi::Env env, Napi::Value v);

// (A, m, n, k, options?: {oversample, powerIters, seed, vectors, method, lda}), checked: k ≤ min(m, n),
// A holds the [m, lda] matrix.
struct SvdArgs {
  const float* A = nullptr;
  int m = 0, n = 0, k = 0, lda = 0;
  SvdOptions opt;
};
SvdArgs svd_args(const Napi::CallbackInfo& info);

}  // namespace lieq::napi
