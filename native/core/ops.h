// Element-wise and attention operators of the decoder runtime (everything in a LLaMA/Qwen
// layer that is not a matmul). Plain C++17, f32 tensors, row-major, no Node types.
// The binding checks sizes; these functions trust their arguments.
//
// Each operator with a SIMD twin has a scalar `*_ref` that is always compiled; the plain name
// dispatches to the AVX2 version when it is compiled in (LIEQ_AVX2) and the CPU has it.
#pragma once
#include <cstddef>
#include <cstdint>

namespace lieq::ops {

// RMSNorm of each row: y[r,:] = x[r,:] / sqrt(mean(x[r,:]^2) + eps) * w.
//   x, y [rows, dim] (y may alias x); w [dim]. The mean is accumulated in double.
//   Also used per head (rows = tokens*heads, dim = head_dim) for Qwen3's q/k norm.
void rmsnorm(const float* x, const float* w, float* y, size_t rows, size_t dim, float eps);

// Rotary position embedding, Hugging Face "rotate_half" layout, in place.
//   x [rows, heads*head_dim]; row t holds position pos0 + t. Inside each head the rotary
//   pairs are (i, i + head_dim/2):  x'_i = x_i c - x_{i+h} s,  x'_{i+h} = x_{i+h} c + x_i s,
//   with c = cos[pos, i], s = sin[pos, i] from tables [n_positions, head_dim/2].
void rope_rotate_half(float* x, size_t rows, size_t heads, size_t head_dim, size_t pos0, const float* cos_table,
                      const float* sin_table);

// Copy the projected values of `rows` new tokens into a cache laid out head-major.
//   src [rows, kv_heads*head_dim]; cache [kv_heads, capacity, head_dim]; token t goes to slot pos0+t.
void kv_store(const float* src, float* cache, size_t rows, size_t kv_heads, size_t head_dim, size_t capacity,
              size_t pos0);
// The same for keys, stored transposed: cache [kv_heads, head_dim, capacity], so that the
// scores of consecutive keys are one vector FMA per dimension (no horizontal sums).
void k_store_transposed(const float* src, float* cache, size_t rows, size_t kv_heads, size_t head_dim,
                        size_t capacity, size_t pos0);

// Causal grouped-query attention of n_q new tokens against a KV cache.
struct AttentionParams {
  const float* q = nullptr;  // input  [n_q, n_heads*head_dim], RoPE applied
  const float* k = nullptr;  // input  [n_kv_heads, head_dim, capacity] (transposed keys), slots 0..pos0+n_q-1 valid
  const float* v = nullptr;  // input  [n_kv_heads, capacity, head_dim]
  float* out = nullptr;      // output [n_q, n_heads*head_dim]
  size_t n_q = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, capacity = 0;
  size_t pos0 = 0;    // position of q row 0
  size_t window = 0;  // 0: full causal; else a query at p sees keys j with p - j < window (Mistral)
  float scale = 1.0f; // score scale, 1/sqrt(head_dim)
};
// Query head h reads KV head h / (n_heads / n_kv_heads). Softmax is max-subtracted in f32.
// Threaded over (head, block of kAttentionRows query rows); attention() uses the AVX2 block
// kernel when head_dim % 8 == 0.
void attention(const AttentionParams& p);
void attention_ref(const AttentionParams& p);

// Query rows per block kernel call: the rows share every load of K and V.
constexpr size_t kAttentionRows = 4;

// The block kernel of attention: n_rows (<= kAttentionRows) consecutive query rows of one head.
//   q      row r at q + r*ld_q [head_dim];  out row r at out + r*ld_out [head_dim]
//   kt     this head's transposed keys: key j, dim d at kt[d*ld_k + j]
//   v      this head's values: key j at v + j*head_dim
//   row r is at position pos0 + r and sees keys j in [lo_r, pos0 + r] with
//          lo_r = window ? max(0, pos0 + r + 1 - window) : 0
//   scores scratch, n_rows * (pos0 + n_rows) floats
// avx2::attention_block (simd_kernels.h) has the same signature and needs head_dim % 8 == 0.
void attention_block_ref(const float* q, size_t ld_q, size_t n_rows, const float* kt, size_t ld_k, const float* v,
                         float* out, size_t ld_out, size_t pos0, size_t window, size_t head_dim, float scale,
                         float* scores);

// out = silu(gate) * up = gate / (1 + exp(-gate)) * up (SwiGLU); out may alias gate or up.
void silu_mul(const float* gate, const float* up, float* out, size_t n);
void silu_mul_ref(const float* gate, const float* up, float* out, size_t n);

// x += y (residual stream).
void add_inplace(float* x, const float* y, size_t n);

// y[r,:] += b for each of `rows` rows of width n (linear bias).
void add_bias_rows(float* y, const float* b, size_t rows, size_t n);

// out[t,:] = table[ids[t],:]; table [vocab, dim]. ids are checked by the caller.
void embedding_gather(const float* table, size_t dim, const int32_t* ids, size_t n, float* out);

// Negative log-likelihood of target ids under log-softmax of each logits row:
//   nll[r] = logsumexp(logits[r,:]) - logits[r, targets[r]], sum of exps in double.
//   logits [rows, vocab]; targets [rows] in [0, vocab).
void log_softmax_nll(const float* logits, size_t rows, size_t vocab, const int32_t* targets, double* nll);
void log_softmax_nll_ref(const float* logits, size_t rows, size_t vocab, const int32_t* targets, double* nll);

// Σ_i exp(z[i] - shift), f32 exps summed in double: the row kernel of log_softmax_nll
// (avx2::sum_exp_shifted has the same signature).
double sum_exp_shifted_ref(const float* z, size_t n, float shift);

}  // namespace lieq::ops
