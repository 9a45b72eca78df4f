// Kernels of a decoder step other than the packed GEMV (decoder_kernels.cuh says what each does).
// Simple, one block per row (or row × head); they move a few hundred KB per step against the
// weights' hundreds of MB, so they are written for clarity first.
#include "decoder_kernels.cuh"

#include <cmath>

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

__global__ void embed_kernel(const __half* table, int hidden, const int32_t* ids, float* x) {
  const int r = blockIdx.x;
  const __half* src = table + static_cast<size_t>(ids[r]) * hidden;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) x[static_cast<size_t>(r) * hidden + i] = __half2float(src[i]);
}

__global__ void add_rmsnorm_kernel(float* x, const float* add, const float* w, int dim, float eps, __half* out,
                                   int out_stride) {
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

__global__ void add_bias_kernel(float* y, const float* bias, int n) {
  const int r = blockIdx.y;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    y[static_cast<size_t>(r) * n + i] += bias[i];
}

// Block (row, head): heads of q first, then the kv heads (k, plus a copy of v).
__global__ void qkv_post_kernel(const QkvPostArgs a, StepRows in) {
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

// Block (row, head), 128 threads. Scores in shared memory (one warp per key), softmax, then the
// weighted sum of V with `groups` groups of head_dim/2 threads, each over a stride of keys.
__global__ void attention_kernel(const AttentionArgs a, StepRows in) {
  extern __shared__ float smem[];  // q [head_dim] | partial [256] | scores [max_context]
  __shared__ float red[33];
  const int r = blockIdx.x, h = blockIdx.y, hd = a.head_dim;
  const int seq = in.seqs[r], pos = in.pos[r];
  const int kh = h / (a.heads / a.kv_heads);
  const int lo = (a.window > 0 && pos + 1 > a.window) ? pos + 1 - a.window : 0;
  const int n = pos - lo + 1;
  float* qs = smem;
  float* partial = smem + hd;
  float* scores = smem + hd + 256;
  const float scale = 1.f / sqrtf(static_cast<float>(hd));
  const float* q = a.q + (static_cast<size_t>(r) * a.heads + h) * hd;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) qs[d] = q[d] * scale;
  __syncthreads();
  const size_t base = (static_cast<size_t>(seq) * a.kv_heads + kh) * a.max_context * hd;
  const __half* K = a.k_cache + base + static_cast<size_t>(lo) * hd;
  const __half* V = a.v_cache + base + static_cast<size_t>(lo) * hd;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int j = warp; j < n; j += warps) {
    const __half2* k2 = reinterpret_cast<const __half2*>(K + static_cast<size_t>(j) * hd);
    float dot = 0.f;
    for (int p = lane; p < hd / 2; p += 32) {
      const float2 kv = __half22float2(k2[p]);
      dot += qs[2 * p] * kv.x + qs[2 * p + 1] * kv.y;
    }
    dot = warp_sum(dot);
    if (lane == 0) scores[j] = dot;
  }
  __syncthreads();
  float m = -INFINITY;
  for (int j = threadIdx.x; j < n; j += blockDim.x) m = fmaxf(m, scores[j]);
  m = block_reduce<true>(m, red);
  float sum = 0.f;
  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    const float e = __expf(scores[j] - m);
    scores[j] = e;
    sum += e;
  }
  sum = block_reduce<false>(sum, red);  // its barriers also publish scores[]
  const int pairs = hd / 2, groups = blockDim.x / pairs;
  const int p = threadIdx.x % pairs, g = threadIdx.x / pairs;
  float ax = 0.f, ay = 0.f;
  if (g < groups) {
    const __half2* v2 = reinterpret_cast<const __half2*>(V);
    for (int j = g; j < n; j += groups) {
      const float2 vv = __half22float2(v2[static_cast<size_t>(j) * pairs + p]);
      ax += scores[j] * vv.x, ay += scores[j] * vv.y;
    }
    partial[g * hd + 2 * p] = ax, partial[g * hd + 2 * p + 1] = ay;
  }
  __syncthreads();
  __half* out = a.out + static_cast<size_t>(r) * a.out_stride;
  const float inv = 1.f / sum;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float acc = 0.f;
    for (int gi = 0; gi < groups; ++gi) acc += partial[gi * hd + d];
    out[static_cast<size_t>(h) * hd + d] = __float2half_rn(acc * inv);
  }
  if (h == 0)
    for (int d = a.heads * hd + threadIdx.x; d < a.out_stride; d += blockDim.x) out[d] = __float2half_rn(0.f);
}

__global__ void silu_mul_kernel(const float* gate, int ldg, const float* up, int ldu, int n, __half* out,
                                int out_stride) {
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

unsigned blocks_for(int n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

}  // namespace

cudaError_t launch_embed(const __half* table, int hidden, StepRows in, int rows, float* x, cudaStream_t s) {
  embed_kernel<<<rows, kThreads, 0, s>>>(table, hidden, in.ids, x);
  return cudaGetLastError();
}

cudaError_t launch_add_rmsnorm(float* x, const float* add, const float* w, int rows, int dim, float eps, __half* out,
                               int out_stride, cudaStream_t s) {
  add_rmsnorm_kernel<<<rows, dim >= 4096 ? 512 : kThreads, 0, s>>>(x, add, w, dim, eps, out, out_stride);
  return cudaGetLastError();
}

cudaError_t launch_add_bias(float* y, const float* bias, int rows, int n, cudaStream_t s) {
  add_bias_kernel<<<dim3(blocks_for(n, kThreads), rows), kThreads, 0, s>>>(y, bias, n);
  return cudaGetLastError();
}

cudaError_t launch_qkv_post(const QkvPostArgs& a, StepRows in, int rows, cudaStream_t s) {
  const int threads = a.head_dim / 2 < 32 ? 32 : (a.head_dim / 2 + 31) / 32 * 32;
  qkv_post_kernel<<<dim3(rows, a.heads + a.kv_heads), threads, 0, s>>>(a, in);
  return cudaGetLastError();
}

size_t attention_smem_bytes(int max_context, int head_dim) {
  return (static_cast<size_t>(head_dim) + 256 + static_cast<size_t>(max_context)) * sizeof(float);
}

cudaError_t attention_prepare(int max_context, int head_dim) {
  const size_t bytes = attention_smem_bytes(max_context, head_dim);
  if (bytes <= 48 * 1024) return cudaSuccess;
  return cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
}

cudaError_t launch_attention(const AttentionArgs& a, StepRows in, int rows, cudaStream_t s) {
  // 128 threads: the V pass needs head_dim/2 <= 128, i.e. head_dim <= 256 (checked at create).
  attention_kernel<<<dim3(rows, a.heads), 128, attention_smem_bytes(a.max_context, a.head_dim), s>>>(a, in);
  return cudaGetLastError();
}

cudaError_t launch_silu_mul(const float* gate, int ldg, const float* up, int ldu, int rows, int n, __half* out,
                            int out_stride, cudaStream_t s) {
  silu_mul_kernel<<<dim3(blocks_for(out_stride, kThreads), rows), kThreads, 0, s>>>(gate, ldg, up, ldu, n, out,
                                                                                     out_stride);
  return cudaGetLastError();
}

cudaError_t launch_dense_gemv(const __half* w, int out, int stride, const __half* x, int rows, float* y,
                              cudaStream_t s) {
  if (rows < 1 || rows > 16 || stride % 8 != 0) return cudaErrorInvalidValue;
  const unsigned grid = blocks_for(out, 8);
  if (rows == 1) dense_gemv_kernel<1><<<grid, 128, 0, s>>>(w, out, stride, x, rows, y);
  else if (rows <= 2) dense_gemv_kernel<2><<<grid, 128, 0, s>>>(w, out, stride, x, rows, y);
  else if (rows <= 4) dense_gemv_kernel<4><<<grid, 128, 0, s>>>(w, out, stride, x, rows, y);
  else if (rows <= 8) dense_gemv_kernel<8><<<grid, 128, 0, s>>>(w, out, stride, x, rows, y);
  else dense_gemv_kernel<16><<<grid, 128, 0, s>>>(w, out, stride, x, rows, y);
  return cudaGetLastError();
}

}  // namespace lieq
