// Kernels of a decoder step other than the packed GEMV (decoder_kernels.cuh says what each does).
// Simple, one block per row (or row × head); they move a few hundred KB per step against the
// weights' hundreds of MB, so they are written for clarity first.
#include "decoder_kernels.cuh"

#include <algorithm>
#include <cmath>
#include <utility>

namespace lieq {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum (or max) over the block; every thread gets the result. `red` holds 33 floats.
template <bool MAX>
__device__ float block_reduce(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = MAX ? warp_max(v) : warp_sum(v);
  __syncthreads();  // red may still be read from a previous reduction
  if (lane == 0) red[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float t = lane < warps ? red[lane] : (MAX ? -INFINITY : 0.f);
    t = MAX ? warp_max(t) : warp_sum(t);
    if (lane == 0) red[32] = t;
  }
  __syncthreads();
  return red[32];
}

// Programmatic dependent launch (sm_90; no-ops without the launch attribute): each kernel waits
// for the one before it (whose output it reads) before touching memory, then lets the next
// kernel start launching, so launch latency overlaps this kernel instead of following it. The
// wait covers the whole chain: the previous kernel itself finished only after its own wait.
__device__ __forceinline__ void chain_to_previous_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__global__ void embed_kernel(const __half* table, int hidden, const int32_t* ids, float* x) {
  const int r = blockIdx.x;
  const __half* src = table + static_cast<size_t>(ids[r]) * hidden;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) x[static_cast<size_t>(r) * hidden + i] = __half2float(src[i]);
}

__global__ void add_rmsnorm_kernel(float* x, const float* add, const float* w, int dim, float eps, __half* out,
                                   int out_stride) {
  chain_to_previous_kernel();
  __shared__ float red[33];
  const int r = blockIdx.x;
  float* xr = x + static_cast<size_t>(r) * dim;
  float ss = 0.f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    float v = xr[i];
    if (add) {
      v += add[static_cast<size_t>(r) * dim + i];
      xr[i] = v;
    }
    ss += v * v;
  }
  ss = block_reduce<false>(ss, red);
  const float inv = 1.f / sqrtf(ss / static_cast<float>(dim) + eps);
  __half* o = out + static_cast<size_t>(r) * out_stride;
  for (int i = threadIdx.x; i < out_stride; i += blockDim.x) o[i] = __float2half_rn(i < dim ? w[i] * (xr[i] * inv) : 0.f);
}

// The same with 16-byte loads (dim and out_stride multiples of 4): each thread keeps its float4s
// in registers between the two passes, so a row costs one round of loads instead of
// dim/blockDim dependent ones (measured: the scalar kernel took ~7 us a row of 2048 on an H100).
constexpr int kNormVecs = 4;  // float4s a thread holds: dim <= 4 * kNormVecs * blockDim
__global__ void __launch_bounds__(1024) add_rmsnorm_vec_kernel(float* x, const float* add, const float* w, int dim,
                                                               float eps, __half* out, int out_stride) {
  const int r = blockIdx.x, n4 = dim / 4;
  // The norm weights are constant: load them before waiting for the previous kernel, so the
  // second pass does not start with a round trip to memory.
  const float4* w4 = reinterpret_cast<const float4*>(w);
  float4 g[kNormVecs];
#pragma unroll
  for (int k = 0; k < kNormVecs; ++k) {
    const int i = threadIdx.x + k * blockDim.x;
    g[k] = i < n4 ? __ldg(w4 + i) : make_float4(0.f, 0.f, 0.f, 0.f);
  }
  chain_to_previous_kernel();
  __shared__ float red[33];
  float4* xr = reinterpret_cast<float4*>(x + static_cast<size_t>(r) * dim);
  const float4* ar = add ? reinterpret_cast<const float4*>(add + static_cast<size_t>(r) * dim) : nullptr;
  float4 v[kNormVecs];
  float ss = 0.f;
#pragma unroll
  for (int k = 0; k < kNormVecs; ++k) {
    const int i = threadIdx.x + k * blockDim.x;
    v[k] = make_float4(0.f, 0.f, 0.f, 0.f);
    if (i < n4) {
      v[k] = xr[i];
      if (ar) {
        const float4 a = ar[i];
        v[k].x += a.x, v[k].y += a.y, v[k].z += a.z, v[k].w += a.w;
        xr[i] = v[k];
      }
      ss += v[k].x * v[k].x + v[k].y * v[k].y + v[k].z * v[k].z + v[k].w * v[k].w;
    }
  }
  ss = block_reduce<false>(ss, red);
  const float inv = 1.f / sqrtf(ss / static_cast<float>(dim) + eps);
  __half* o = out + static_cast<size_t>(r) * out_stride;
#pragma unroll
  for (int k = 0; k < kNormVecs; ++k) {
    const int i = threadIdx.x + k * blockDim.x;
    if (i < n4) {
      const __half2 lo = __floats2half2_rn(g[k].x * (v[k].x * inv), g[k].y * (v[k].y * inv));
      const __half2 hi = __floats2half2_rn(g[k].z * (v[k].z * inv), g[k].w * (v[k].w * inv));
      uint2 packed;
      packed.x = *reinterpret_cast<const uint32_t*>(&lo);
      packed.y = *reinterpret_cast<const uint32_t*>(&hi);
      reinterpret_cast<uint2*>(o)[i] = packed;
    }
  }
  for (int i = dim + threadIdx.x; i < out_stride; i += blockDim.x) o[i] = __float2half_rn(0.f);
}

__global__ void add_bias_kernel(float* y, const float* bias, int n) {
  chain_to_previous_kernel();
  const int r = blockIdx.y;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    y[static_cast<size_t>(r) * n + i] += bias[i];
}

// Block (row, head): heads of q first, then the kv heads (k, plus a copy of v).
__global__ void qkv_post_kernel(const QkvPostArgs a, StepRows in) {
  chain_to_previous_kernel();
  __shared__ float red[33];
  const int r = blockIdx.x, hh = blockIdx.y, half = a.head_dim / 2;
  const int seq = in.seqs[r], pos = in.pos[r];
  const bool is_q = hh < a.heads;
  const int kh = hh - a.heads;
  const float* src = is_q ? a.q + static_cast<size_t>(r) * a.ldq + static_cast<size_t>(hh) * a.head_dim
                          : a.k + static_cast<size_t>(r) * a.ldk + static_cast<size_t>(kh) * a.head_dim;
  const float* norm = is_q ? a.q_norm : a.k_norm;
  const int i = threadIdx.x;
  float lo = 0.f, hi = 0.f;
  if (i < half) lo = src[i], hi = src[i + half];
  if (norm) {
    const float ss = block_reduce<false>(lo * lo + hi * hi, red);
    const float inv = 1.f / sqrtf(ss / static_cast<float>(a.head_dim) + a.eps);
    if (i < half) lo = norm[i] * (lo * inv), hi = norm[i + half] * (hi * inv);
  }
  const size_t cache_row =
      (((static_cast<size_t>(seq) * a.kv_heads + (is_q ? 0 : kh)) * a.max_context) + pos) * a.head_dim;
  if (i < half) {
    const float c = a.cos[static_cast<size_t>(pos) * half + i], s = a.sin[static_cast<size_t>(pos) * half + i];
    const float rlo = lo * c - hi * s, rhi = hi * c + lo * s;
    if (is_q) {
      float* q = a.q_out + (static_cast<size_t>(r) * a.heads + hh) * a.head_dim;
      q[i] = rlo, q[i + half] = rhi;
    } else {
      a.k_cache[cache_row + i] = __float2half_rn(rlo);
      a.k_cache[cache_row + i + half] = __float2half_rn(rhi);
    }
  }
  if (!is_q) {
    const float* v = a.v + static_cast<size_t>(r) * a.ldv + static_cast<size_t>(kh) * a.head_dim;
    for (int d = i; d < a.head_dim; d += blockDim.x) a.v_cache[cache_row + d] = __float2half_rn(v[d]);
  }
}

// Block (row, head), kAttentionThreads threads. One thread per key computes its score (the
// whole dot product, 16-byte loads when head_dim % 8 == 0, so its loads are independent and in
// flight together), softmax over the block, then the weighted sum of V: `per` threads cover one
// key's row (8 or 2 dims each) and the block's `groups` of them split the keys, summed through
// shared memory. (The first version walked the keys one warp-reduction at a time: ~34 us a
// layer at 130 positions, a third of the 1B decode step.)
constexpr int kAttentionThreads = 256;
constexpr int kAttentionPartial = kAttentionThreads * 8;  // floats of partial V sums

__device__ __forceinline__ void fma8(const float* q, const uint4 k, float& acc) {
  const __half2* kh = reinterpret_cast<const __half2*>(&k);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 kv = __half22float2(kh[i]);
    acc = fmaf(q[2 * i], kv.x, acc);
    acc = fmaf(q[2 * i + 1], kv.y, acc);
  }
}

// Softmax-weighted sum of V over keys 0..n-1 (n >= 1) of K/V for the scaled q in qs: on return
// (after a barrier) partial[g * hd + d], g < *groups, hold the unnormalized sums of the key
// groups, *m the max score and *sum = Σ exp(score - m).
template <bool VEC8>
__device__ __forceinline__ void attend_keys(int hd, const __half* K, const __half* V, int n, const float* qs,
                                            float* partial, float* scores, float* red, float* m_out, float* sum_out,
                                            int* groups_out) {
  float m = -INFINITY;
  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    const __half* kr = K + static_cast<size_t>(j) * hd;
    float dot = 0.f;
    if constexpr (VEC8) {
#pragma unroll 8
      for (int d = 0; d < hd; d += 8) fma8(qs + d, __ldg(reinterpret_cast<const uint4*>(kr + d)), dot);
    } else {
#pragma unroll 4
      for (int d = 0; d < hd; d += 2) {
        const float2 kv = __half22float2(*reinterpret_cast<const __half2*>(kr + d));
        dot = fmaf(qs[d], kv.x, fmaf(qs[d + 1], kv.y, dot));
      }
    }
    scores[j] = dot;
    m = fmaxf(m, dot);
  }
  m = block_reduce<true>(m, red);
  float sum = 0.f;
  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    const float e = __expf(scores[j] - m);
    scores[j] = e;
    sum += e;
  }
  sum = block_reduce<false>(sum, red);  // its barriers also publish scores[]
  constexpr int E = VEC8 ? 8 : 2;       // dims a thread sums
  const int per = hd / E, groups = blockDim.x / per;
  const int p = threadIdx.x % per, g = threadIdx.x / per;
  if (g < groups) {
    float acc[E];
#pragma unroll
    for (int e = 0; e < E; ++e) acc[e] = 0.f;
#pragma unroll 4
    for (int j = g; j < n; j += groups) {
      const float s = scores[j];
      const __half* vr = V + static_cast<size_t>(j) * hd + E * p;
      if constexpr (VEC8) {
        const uint4 vv = __ldg(reinterpret_cast<const uint4*>(vr));
        const __half2* vh = reinterpret_cast<const __half2*>(&vv);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float2 f = __half22float2(vh[i]);
          acc[2 * i] = fmaf(s, f.x, acc[2 * i]);
          acc[2 * i + 1] = fmaf(s, f.y, acc[2 * i + 1]);
        }
      } else {
        const float2 f = __half22float2(*reinterpret_cast<const __half2*>(vr));
        acc[0] = fmaf(s, f.x, acc[0]);
        acc[1] = fmaf(s, f.y, acc[1]);
      }
    }
#pragma unroll
    for (int e = 0; e < E; ++e) partial[g * hd + E * p + e] = acc[e];
  }
  __syncthreads();
  *m_out = m, *sum_out = sum, *groups_out = groups;
}

// Zeros of row r's attention output past heads*head_dim (the o_proj's padded input width).
__device__ __forceinline__ void zero_attention_padding(const AttentionArgs& a, int r) {
  __half* out = a.out + static_cast<size_t>(r) * a.out_stride;
  for (int d = a.heads * a.head_dim + threadIdx.x; d < a.out_stride; d += blockDim.x) out[d] = __float2half_rn(0.f);
}

// Row r's first key position (sliding window) and key count.
__device__ __forceinline__ void attention_range(const AttentionArgs& a, int pos, int* lo, int* n) {
  *lo = (a.window > 0 && pos + 1 > a.window) ? pos + 1 - a.window : 0;
  *n = pos - *lo + 1;
}

__global__ void __launch_bounds__(kAttentionThreads) attention_kernel(const AttentionArgs a, StepRows in) {
  chain_to_previous_kernel();
  extern __shared__ float smem[];  // q [head_dim] | partial [kAttentionPartial] | scores [max_context]
  __shared__ float red[33];
  const int r = blockIdx.x, h = blockIdx.y, hd = a.head_dim;
  const int seq = in.seqs[r], pos = in.pos[r];
  const int kh = h / (a.heads / a.kv_heads);
  int lo, n;
  attention_range(a, pos, &lo, &n);
  float* qs = smem;
  float* partial = smem + hd;
  float* scores = partial + kAttentionPartial;
  const float scale = 1.f / sqrtf(static_cast<float>(hd));
  const float* q = a.q + (static_cast<size_t>(r) * a.heads + h) * hd;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) qs[d] = q[d] * scale;
  __syncthreads();
  const size_t base = (static_cast<size_t>(seq) * a.kv_heads + kh) * a.max_context * hd;
  const __half* K = a.k_cache + base + static_cast<size_t>(lo) * hd;
  const __half* V = a.v_cache + base + static_cast<size_t>(lo) * hd;
  float m, sum;
  int groups;
  if (hd % 8 == 0)
    attend_keys<true>(hd, K, V, n, qs, partial, scores, red, &m, &sum, &groups);
  else
    attend_keys<false>(hd, K, V, n, qs, partial, scores, red, &m, &sum, &groups);
  __half* out = a.out + static_cast<size_t>(r) * a.out_stride;
  const float inv = 1.f / sum;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float acc = 0.f;
    for (int gi = 0; gi < groups; ++gi) acc += partial[gi * hd + d];
    out[static_cast<size_t>(h) * hd + d] = __float2half_rn(acc * inv);
  }
  if (h == 0) zero_attention_padding(a, r);
}

// Flash-decoding: block (row, head, split s) takes keys [s*per, (s+1)*per) of the row's n keys,
// per = max(kAttentionSplitMinKeys, ceil(n / gridDim.z)) (boundaries fixed by n and the grid),
// and writes its max, exp-sum and unnormalized V sum to the workspace; the last of the row's
// active splits to finish (a per-(row, head) counter, reset by that block) combines the splits
// in split order, so the result does not depend on which block finished last. One active split
// (short contexts) writes the output directly.
//
// FUSED (decode steps of one row): the kernel also does qkv_post's work, so the step saves a
// launch: each block normalizes and rotates its q head from the qkv linear's output itself, and
// the blocks of the last split (which holds the row's own new position) compute the new key and
// value, attend to them from shared memory (merged into the split's softmax) and, one block per
// kv head, store them in the caches. No other block reads that position, and with one row no
// other row of the step does.
constexpr int kAttentionSplitMinKeys = 16;

// Rotate-half RoPE (after the optional per-head RMSNorm) of one head's src[0..head_dim) at `pos`,
// as qkv_post_kernel does: thread i < head_dim/2 returns the pair (i, i + head_dim/2) in *lo, *hi.
// Every thread of the block must call it (the norm is a block reduction).
__device__ __forceinline__ void norm_rope(const QkvPostArgs& p, const float* src, const float* norm, int pos,
                                          float* red, float* lo, float* hi) {
  const int i = threadIdx.x, half = p.head_dim / 2;
  float l = 0.f, h = 0.f;
  if (i < half) l = src[i], h = src[i + half];
  if (norm) {
    const float ss = block_reduce<false>(l * l + h * h, red);
    const float inv = 1.f / sqrtf(ss / static_cast<float>(p.head_dim) + p.eps);
    if (i < half) l = norm[i] * (l * inv), h = norm[i + half] * (h * inv);
  }
  if (i < half) {
    const float c = p.cos[static_cast<size_t>(pos) * half + i], s = p.sin[static_cast<size_t>(pos) * half + i];
    *lo = l * c - h * s, *hi = h * c + l * s;
  }
}

template <bool FUSED>
__global__ void __launch_bounds__(kAttentionThreads) attention_split_kernel(const AttentionArgs a, const QkvPostArgs p,
                                                                            StepRows in) {
  // q [head_dim] | partial [kAttentionPartial] | scores [max_context] | new k [head_dim] | new v [head_dim]
  extern __shared__ float smem[];
  __shared__ float red[33];
  __shared__ float new_score, inv_total;
  __shared__ float split_weight[kAttentionMaxSplits];
  __shared__ bool is_last;
  // The step rows were copied in before the step's first kernel, so the split's key range is
  // known before waiting for the previous kernel: prefetch its K and V rows into L2 meanwhile
  // (L2 is coherent, so a row the previous kernel is still writing is not read stale).
  const int r = blockIdx.x, h = blockIdx.y, split = blockIdx.z, splits = gridDim.z, hd = a.head_dim;
  const int seq = in.seqs[r], pos = in.pos[r];
  const int group = a.heads / a.kv_heads, kh = h / group;
  int lo, n;
  attention_range(a, pos, &lo, &n);
  const int per = max(kAttentionSplitMinKeys, (n + splits - 1) / splits);
  const int active = (n + per - 1) / per;
  const int k0 = split * per, nk = min(per, n - k0);
  const size_t base = (static_cast<size_t>(seq) * a.kv_heads + kh) * a.max_context * hd;
  if (split < active) {
    const char* kb = reinterpret_cast<const char*>(a.k_cache + base + static_cast<size_t>(lo + k0) * hd);
    const char* vb = reinterpret_cast<const char*>(a.v_cache + base + static_cast<size_t>(lo + k0) * hd);
    const int bytes = nk * hd * static_cast<int>(sizeof(__half));
    for (int off = threadIdx.x * 128; off < bytes; off += blockDim.x * 128) {
      asm volatile("prefetch.global.L2 [%0];" ::"l"(kb + off));
      asm volatile("prefetch.global.L2 [%0];" ::"l"(vb + off));
    }
  }
  chain_to_previous_kernel();
  if (h == 0 && split == 0) zero_attention_padding(a, r);
  if (split >= active) return;  // no keys here (and no part in the counter)
  float* qs = smem;
  float* partial = smem + hd;
  float* scores = partial + kAttentionPartial;
  float* knew = scores + a.max_context;
  float* vnew = knew + hd;
  const float scale = 1.f / sqrtf(static_cast<float>(hd));
  // FUSED: the last split's last key is the new one, taken from shared memory, not the cache.
  const bool new_key = FUSED && split == active - 1;
  if constexpr (FUSED) {
    const int half = hd / 2, i = threadIdx.x;
    float rlo = 0.f, rhi = 0.f;
    norm_rope(p, p.q + static_cast<size_t>(r) * p.ldq + static_cast<size_t>(h) * hd, p.q_norm, pos, red, &rlo, &rhi);
    if (i < half) qs[i] = rlo * scale, qs[i + half] = rhi * scale;
    if (new_key) {
      norm_rope(p, p.k + static_cast<size_t>(r) * p.ldk + static_cast<size_t>(kh) * hd, p.k_norm, pos, red, &rlo, &rhi);
      const bool store = h % group == 0;  // one block per kv head writes the caches
      const size_t row = base + static_cast<size_t>(pos) * hd;
      if (i < half) {
        const __half klo = __float2half_rn(rlo), khi = __float2half_rn(rhi);
        knew[i] = __half2float(klo), knew[i + half] = __half2float(khi);
        if (store) p.k_cache[row + i] = klo, p.k_cache[row + i + half] = khi;
      }
      const float* v = p.v + static_cast<size_t>(r) * p.ldv + static_cast<size_t>(kh) * hd;
      for (int d = i; d < hd; d += blockDim.x) {
        const __half vh = __float2half_rn(v[d]);
        vnew[d] = __half2float(vh);
        if (store) p.v_cache[row + d] = vh;
      }
    }
  } else {
    const float* q = a.q + (static_cast<size_t>(r) * a.heads + h) * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) qs[d] = q[d] * scale;
  }
  __syncthreads();
  const __half* K = a.k_cache + base + static_cast<size_t>(lo + k0) * hd;
  const __half* V = a.v_cache + base + static_cast<size_t>(lo + k0) * hd;
  const int from_cache = new_key ? nk - 1 : nk;  // may be 0: the merge below then supplies every key
  float m, sum;
  int groups;
  if (hd % 8 == 0)
    attend_keys<true>(hd, K, V, from_cache, qs, partial, scores, red, &m, &sum, &groups);
  else
    attend_keys<false>(hd, K, V, from_cache, qs, partial, scores, red, &m, &sum, &groups);
  float keep = 1.f, take = 0.f;  // FUSED: weights of the cached keys' sums and of the new key
  if (new_key) {
    if (threadIdx.x < 32) {
      float dot = 0.f;
      for (int d = threadIdx.x; d < hd; d += 32) dot = fmaf(qs[d], knew[d], dot);
      dot = warp_sum(dot);
      if (threadIdx.x == 0) new_score = dot;
    }
    __syncthreads();
    const float m2 = fmaxf(m, new_score);
    keep = __expf(m - m2);  // 0 when no cached key (m = -inf)
    take = __expf(new_score - m2);
    sum = sum * keep + take;
    m = m2;
  }
  // This split's unnormalized V sum for dim d.
  auto split_acc = [&](int d) {
    float acc = 0.f;
    for (int gi = 0; gi < groups; ++gi) acc += partial[gi * hd + d];
    return new_key ? acc * keep + vnew[d] * take : acc;
  };
  __half* out = a.out + static_cast<size_t>(r) * a.out_stride + static_cast<size_t>(h) * hd;
  if (active == 1) {
    const float inv = 1.f / sum;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) out[d] = __float2half_rn(split_acc(d) * inv);
    return;
  }
  // Workspace of (row, head): kAttentionMaxSplits records of [m, sum, acc[hd]].
  const int rec = hd + 2;
  float* ws = a.split_ws + (static_cast<size_t>(r) * a.heads + h) * kAttentionMaxSplits * rec;
  float* mine = ws + static_cast<size_t>(split) * rec;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) mine[2 + d] = split_acc(d);
  if (threadIdx.x == 0) mine[0] = m, mine[1] = sum;
  __threadfence();  // this block's record is visible device-wide before it is counted
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned* counter = a.split_counters + static_cast<size_t>(r) * a.heads + h;
    is_last = atomicAdd(counter, 1u) == static_cast<unsigned>(active - 1);
    if (is_last) *counter = 0;  // every active split has arrived: ready for the next launch
  }
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  // Combine: lane s of warp 0 reads split s's max and sum (one round of loads, warp reductions
  // in a fixed tree), then every dim sums the splits in split order with independent loads.
  if (threadIdx.x < 32) {
    const int s = threadIdx.x;
    const float ms = s < active ? __ldcg(ws + static_cast<size_t>(s) * rec) : -INFINITY;
    const float ls = s < active ? __ldcg(ws + static_cast<size_t>(s) * rec + 1) : 0.f;
    const float M = warp_max(ms);
    const float w = s < active ? __expf(ms - M) : 0.f;
    const float L = warp_sum(ls * w);
    if (s < kAttentionMaxSplits) split_weight[s] = w;
    if (s == 0) inv_total = 1.f / L;
  }
  __syncthreads();
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float acc = 0.f;
#pragma unroll
    for (int s = 0; s < kAttentionMaxSplits; ++s)
      if (s < active) acc = fmaf(__ldcg(ws + static_cast<size_t>(s) * rec + 2 + d), split_weight[s], acc);
    out[d] = __float2half_rn(acc * inv_total);
  }
}

__global__ void silu_mul_kernel(const float* gate, int ldg, const float* up, int ldu, int n, __half* out,
                                int out_stride) {
  chain_to_previous_kernel();
  const int r = blockIdx.y;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < out_stride; i += gridDim.x * blockDim.x) {
    float v = 0.f;
    if (i < n) {
      const float g = gate[static_cast<size_t>(r) * ldg + i], u = up[static_cast<size_t>(r) * ldu + i];
      v = g / (1.f + __expf(-g)) * u;
    }
    out[static_cast<size_t>(r) * out_stride + i] = __float2half_rn(v);
  }
}

__device__ __forceinline__ float dot8(const uint4 a, const uint4 b) {
  const __half2* ah = reinterpret_cast<const __half2*>(&a);
  const __half2* bh = reinterpret_cast<const __half2*>(&b);
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 x = __half22float2(ah[i]), y = __half22float2(bh[i]);
    s = fmaf(x.x, y.x, s);
    s = fmaf(x.y, y.y, s);
  }
  return s;
}

// Each warp: two output rows, all `rows` (<= NB) batch rows; 16-byte loads of W (streamed,
// not kept in L1) and x (cached: every warp reads it).
template <int NB>
__global__ void __launch_bounds__(128) dense_gemv_kernel(const __half* w, int out, int stride, const __half* x,
                                                         int rows, float* y) {
  chain_to_previous_kernel();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int row0 = (blockIdx.x * 4 + warp) * 2;
  if (row0 >= out) return;
  const bool two = row0 + 1 < out;
  const uint4* w0 = reinterpret_cast<const uint4*>(w + static_cast<size_t>(row0) * stride);
  const uint4* w1 = two ? w0 + stride / 8 : w0;
  const int chunks = stride / 8;
  float acc0[NB], acc1[NB];
#pragma unroll
  for (int b = 0; b < NB; ++b) acc0[b] = acc1[b] = 0.f;
  // Streaming loads the compiler may hoist across the unrolled iterations. (Measured on the 1B
  // model: the same step time as one volatile load pair per iteration, so the whole-model step
  // is not bound by these loads; see docs/gpu.md.)
#pragma unroll 4
  for (int c = lane; c < chunks; c += 32) {
    const uint4 a0 = __ldcs(w0 + c), a1 = __ldcs(w1 + c);
#pragma unroll
    for (int b = 0; b < NB; ++b) {
      if (b < rows) {
        const uint4 xv = __ldg(reinterpret_cast<const uint4*>(x + static_cast<size_t>(b) * stride) + c);
        acc0[b] += dot8(a0, xv);
        acc1[b] += dot8(a1, xv);
      }
    }
  }
#pragma unroll
  for (int b = 0; b < NB; ++b) {
    if (b < rows) {
      const float s0 = warp_sum(acc0[b]), s1 = warp_sum(acc1[b]);
      if (lane == 0) {
        y[static_cast<size_t>(b) * out + row0] = s0;
        if (two) y[static_cast<size_t>(b) * out + row0 + 1] = s1;
      }
    }
  }
}

// Launches `kernel` on `s`, with programmatic stream serialization when `pdl`.
template <typename... KArgs, typename... Args>
cudaError_t launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, bool pdl,
                   Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid, cfg.blockDim = block, cfg.dynamicSmemBytes = smem, cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

unsigned blocks_for(int n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

}  // namespace

cudaError_t launch_embed(const __half* table, int hidden, StepRows in, int rows, float* x, cudaStream_t s) {
  embed_kernel<<<rows, kThreads, 0, s>>>(table, hidden, in.ids, x);
  return cudaGetLastError();
}

cudaError_t launch_add_rmsnorm(float* x, const float* add, const float* w, int rows, int dim, float eps, __half* out,
                               int out_stride, cudaStream_t s, bool pdl) {
  const int vecs = dim / 4, threads = (vecs + kNormVecs - 1) / kNormVecs;
  if (dim % 4 == 0 && out_stride % 4 == 0 && threads <= 1024)
    return launch(add_rmsnorm_vec_kernel, rows, std::max(32, (threads + 31) / 32 * 32), 0, s, pdl, x, add, w, dim, eps,
                  out, out_stride);
  return launch(add_rmsnorm_kernel, rows, dim >= 4096 ? 512 : kThreads, 0, s, pdl, x, add, w, dim, eps, out, out_stride);
}

cudaError_t launch_add_bias(float* y, const float* bias, int rows, int n, cudaStream_t s, bool pdl) {
  return launch(add_bias_kernel, dim3(blocks_for(n, kThreads), rows), kThreads, 0, s, pdl, y, bias, n);
}

cudaError_t launch_qkv_post(const QkvPostArgs& a, StepRows in, int rows, cudaStream_t s, bool pdl) {
  const int threads = a.head_dim / 2 < 32 ? 32 : (a.head_dim / 2 + 31) / 32 * 32;
  return launch(qkv_post_kernel, dim3(rows, a.heads + a.kv_heads), threads, 0, s, pdl, a, in);
}

size_t attention_smem_bytes(int max_context, int head_dim) {
  return (3 * static_cast<size_t>(head_dim) + kAttentionPartial + static_cast<size_t>(max_context)) * sizeof(float);
}

size_t attention_split_workspace_floats(int heads, int head_dim) {
  return static_cast<size_t>(kAttentionSplitMaxRows) * heads * kAttentionMaxSplits * (head_dim + 2);
}

cudaError_t attention_prepare(int max_context, int head_dim) {
  const size_t bytes = attention_smem_bytes(max_context, head_dim);
  if (bytes <= 48 * 1024) return cudaSuccess;
  const int b = static_cast<int>(bytes);
  cudaError_t e = cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, b);
  if (e == cudaSuccess) e = cudaFuncSetAttribute(attention_split_kernel<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, b);
  if (e == cudaSuccess) e = cudaFuncSetAttribute(attention_split_kernel<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, b);
  return e;
}

namespace {
int device_sms() {
  int dev = 0, sms = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
    cudaGetLastError();
    return 1;
  }
  return sms;
}

// Splits so that rows x heads x splits is about two blocks per multiprocessor (fewer keys per
// block shorten each block's serial chain; the kernel leaves splits without keys idle); 1 when
// the workspace is absent or too small for `rows`.
int attention_splits(const AttentionArgs& a, int rows) {
  if (!a.split_ws || !a.split_counters || rows > kAttentionSplitMaxRows) return 1;
  static const int sms = device_sms();
  return std::clamp(2 * sms / (rows * a.heads), 1, kAttentionMaxSplits);
}
}  // namespace

cudaError_t launch_attention(const AttentionArgs& a, StepRows in, int rows, cudaStream_t s, bool pdl) {
  // The V pass needs head_dim/8 (or /2) <= kAttentionThreads: head_dim <= 256 (checked at create).
  const size_t smem = attention_smem_bytes(a.max_context, a.head_dim);
  const int splits = attention_splits(a, rows);
  if (splits > 1)
    return launch(attention_split_kernel<false>, dim3(rows, a.heads, splits), kAttentionThreads, smem, s, pdl, a,
                  QkvPostArgs{}, in);
  return launch(attention_kernel, dim3(rows, a.heads), kAttentionThreads, smem, s, pdl, a, in);
}

bool attention_fuses_qkv_post(const AttentionArgs& a, int rows) {
  return rows == 1 && a.split_ws && a.split_counters;
}

cudaError_t launch_qkv_post_attention(const QkvPostArgs& p, const AttentionArgs& a, StepRows in, int rows,
                                      cudaStream_t s, bool pdl) {
  if (!attention_fuses_qkv_post(a, rows) || p.heads != a.heads || p.kv_heads != a.kv_heads ||
      p.head_dim != a.head_dim || p.max_context != a.max_context || p.k_cache != a.k_cache || p.v_cache != a.v_cache)
    return cudaErrorInvalidValue;
  return launch(attention_split_kernel<true>, dim3(rows, a.heads, attention_splits(a, rows)), kAttentionThreads,
                attention_smem_bytes(a.max_context, a.head_dim), s, pdl, a, p, in);
}

cudaError_t launch_silu_mul(const float* gate, int ldg, const float* up, int ldu, int rows, int n, __half* out,
                            int out_stride, cudaStream_t s, bool pdl) {
  return launch(silu_mul_kernel, dim3(blocks_for(out_stride, kThreads), rows), kThreads, 0, s, pdl, gate, ldg, up, ldu,
                n, out, out_stride);
}

cudaError_t launch_dense_gemv(const __half* w, int out, int stride, const __half* x, int rows, float* y,
                              cudaStream_t s, bool pdl) {
  if (rows < 1 || rows > 16 || stride % 8 != 0) return cudaErrorInvalidValue;
  const unsigned grid = blocks_for(out, 8);
  auto kernel = rows == 1 ? dense_gemv_kernel<1> : rows <= 2 ? dense_gemv_kernel<2> : rows <= 4 ? dense_gemv_kernel<4>
                : rows <= 8 ? dense_gemv_kernel<8> : dense_gemv_kernel<16>;
  return launch(kernel, grid, 128, 0, s, pdl, w, out, stride, x, rows, y);
}

}  // namespace lieq
