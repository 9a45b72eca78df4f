// The non-GEMV kernels of a decoder step on the GPU (gpu_model.cu launches them): embedding
// lookup, RMSNorm (fused with the residual add), bias add, q/k per-head norm + RoPE + KV store,
// attention over the KV cache, SwiGLU, and the fp16 dense GEMV for unpacked linears.
//
// Activations that feed a linear are fp16 rows of that linear's `x_stride` (its packed width,
// or the dense width rounded up to 8) with zeros past the logical width; everything else is f32.
// Each launcher returns the launch error.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace lieq {

// Per-row step inputs on the device: token id, sequence (KV cache slot) and position.
struct StepRows {
  const int32_t* ids;
  const int32_t* seqs;
  const int32_t* pos;
};

// x f32 [rows, hidden] = embedding fp16 [vocab, hidden] rows ids[r].
cudaError_t launch_embed(const __half* table, int hidden, StepRows in, int rows, float* x, cudaStream_t s);

// If add: x += add (f32 [rows, dim], the previous linear's output) first. Then
// out fp16 [rows, out_stride] = w * x / sqrt(mean(x²) + eps), zeros in [dim, out_stride).
cudaError_t launch_add_rmsnorm(float* x, const float* add, const float* w, int rows, int dim, float eps, __half* out,
                               int out_stride, cudaStream_t s,
    bool pdl = false);

// y [rows, n] += bias [n].
cudaError_t launch_add_bias(float* y, const float* bias, int rows, int n, cudaStream_t s,
    bool pdl = false);

// q, k, v: f32 rows (row strides ldq, ldk, ldv) of heads*head_dim / kv_heads*head_dim values.
// Optional per-head RMSNorm (q_norm/k_norm [head_dim], Qwen3), then rotate-half RoPE at each
// row's position (cos/sin f32 [positions, head_dim/2]); q_out f32 [rows, heads*head_dim];
// k and v go into the caches fp16 [seqs][kv_heads][max_context][head_dim] of this layer.
struct QkvPostArgs {
  const float *q, *k, *v;
  int ldq, ldk, ldv;
  const float *q_norm, *k_norm;
  float eps;
  const float *cos, *sin;
  float* q_out;
  __half *k_cache, *v_cache;
  int heads, kv_heads, head_dim, max_context;
};
cudaError_t launch_qkv_post(const QkvPostArgs& a, StepRows in, int rows, cudaStream_t s,
    bool pdl = false);

// Causal GQA attention of each row's q against positions lo..pos[r] of its sequence
// (lo = pos - window + 1 with a sliding window, else 0), scale 1/sqrt(head_dim); out fp16
// [rows, out_stride] (zeros past heads*head_dim).
struct AttentionArgs {
  const float* q;
  const __half *k_cache, *v_cache;
  __half* out;
  int out_stride;
  int heads, kv_heads, head_dim, max_context, window;
  // Optional (decode steps of <= kAttentionSplitMaxRows rows): a workspace of
  // attention_split_workspace_floats(heads, head_dim) floats and kAttentionSplitMaxRows * heads
  // counters, zeroed once at allocation (each launch leaves them zero). With them,
  // launch_attention splits each row's keys over several blocks (flash-decoding) so the grid
  // fills the GPU at batch 1; results do not depend on launch timing (fixed split boundaries,
  // fixed combine order). Null: one block per (row, head).
  float* split_ws = nullptr;
  unsigned* split_counters = nullptr;
};
constexpr int kAttentionSplitMaxRows = 16;
constexpr int kAttentionMaxSplits = 16;
size_t attention_split_workspace_floats(int heads, int head_dim);
cudaError_t launch_attention(const AttentionArgs& a, StepRows in, int rows, cudaStream_t s,
    bool pdl = false);
// Decode steps of one row (with the split workspace): one launch does launch_qkv_post's and
// launch_attention's work (the kernel normalizes and rotates q and the new key itself and
// stores the new key and value). launch_qkv_post_attention requires attention_fuses_qkv_post
// and p's caches and sizes equal to a's (else cudaErrorInvalidValue); p.q_out is not written.
bool attention_fuses_qkv_post(const AttentionArgs& a, int rows);
cudaError_t launch_qkv_post_attention(const QkvPostArgs& p, const AttentionArgs& a, StepRows in, int rows,
                                      cudaStream_t s, bool pdl = false);
// Dynamic shared memory the attention kernel needs for `max_context` (and the opt-in it sets).
size_t attention_smem_bytes(int max_context, int head_dim);
cudaError_t attention_prepare(int max_context, int head_dim);

// out fp16 [rows, out_stride] = silu(gate) * up over n columns (gate/up f32, row strides ldg/ldu).
cudaError_t launch_silu_mul(const float* gate, int ldg, const float* up, int ldu, int rows, int n, __half* out,
                            int out_stride, cudaStream_t s,
    bool pdl = false);

// y f32 [rows, out] = x fp16 [rows, stride] · W fp16 [out, stride]ᵀ; rows 1..16, stride % 8 == 0.
cudaError_t launch_dense_gemv(const __half* w, int out, int stride, const __half* x, int rows, float* y,
                              cudaStream_t s,
    bool pdl = false);

}  // namespace lieq
