// Prefill attention (prefill_attention.cuh). Block = 64 query rows of one head, 4 warps of 16
// rows; key/value tiles of 64 positions double-buffered in shared memory with cp.async (keys
// past the last one any row needs are zero-filled: the cache there may be uninitialised).
// Per warp and key tile: S = Q·Kᵀ (Q in registers as A fragments, pre-scaled by
// log2(e)/sqrt(d); K by ldmatrix), causal/window mask, online softmax in base 2, then the
// probabilities as fp16 A fragments (the C layout of two n-tiles is the A layout of one
// k-step) times V (ldmatrix.trans).
#include "prefill_attention.cuh"
#include "qgemm_prefill.cuh"

#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

namespace lieq {
namespace {

constexpr int kRowsPerBlock = 64, kKeysPerTile = 64, kWarps = 4;

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N));
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

template <int D>
struct Smem {
  static constexpr int stride = D + 8;  // halfs a row: 16 bytes of padding keep ldmatrix conflict free
  static constexpr int tile = kKeysPerTile * stride;
  static constexpr int bytes = 2 * 2 * tile * 2;  // [buffer][K, V][64][stride] fp16
};

template <int D>
__global__ void __launch_bounds__(32 * kWarps) prefill_attention_kernel(const AttentionArgs a, StepRows in, int rows) {
  extern __shared__ __align__(16) __half kv[];
  constexpr int KS = D / 16;  // k-steps of Q·Kᵀ
  constexpr int ON = D / 8;   // n-tiles of the output
  using S = Smem<D>;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, r = lane >> 2, q = lane & 3;
  const int h = blockIdx.y, kh = h / (a.heads / a.kv_heads);
  const int seq = in.seqs[0], pos0 = in.pos[0];
  const int row0 = blockIdx.x * kRowsPerBlock;                       // first row of the block
  const int last_row = min(rows, row0 + kRowsPerBlock) - 1;          // last row of the block
  const int wrow = row0 + warp * 16;                                 // first row of this warp
  const int key_hi = pos0 + last_row;                                // last key any row needs
  const int first_lo = a.window > 0 ? max(0, pos0 + row0 - a.window + 1) : 0;
  const __half* K = a.k_cache + (static_cast<size_t>(seq) * a.kv_heads + kh) * a.max_context * D;
  const __half* V = a.v_cache + (static_cast<size_t>(seq) * a.kv_heads + kh) * a.max_context * D;

  // Q of rows wrow + r, wrow + r + 8 as A fragments, scaled by log2(e)/sqrt(D).
  const float qscale = 1.4426950408889634f / sqrtf(static_cast<float>(D));
  uint32_t qa[KS][4];
  {
    const size_t ld = static_cast<size_t>(a.heads) * D;
    const int ra = wrow + r, rb = wrow + r + 8;
    const float* qr_a = a.q + static_cast<size_t>(ra) * ld + static_cast<size_t>(h) * D;
    const float* qr_b = a.q + static_cast<size_t>(rb) * ld + static_cast<size_t>(h) * D;
#pragma unroll
    for (int k = 0; k < KS; ++k) {
      const int c = 16 * k + 2 * q;
      float2 x0 = make_float2(0.f, 0.f), x1 = x0, x2 = x0, x3 = x0;
      if (ra < rows) x0 = *reinterpret_cast<const float2*>(qr_a + c), x2 = *reinterpret_cast<const float2*>(qr_a + c + 8);
      if (rb < rows) x1 = *reinterpret_cast<const float2*>(qr_b + c), x3 = *reinterpret_cast<const float2*>(qr_b + c + 8);
      qa[k][0] = pack_half2(x0.x * qscale, x0.y * qscale), qa[k][1] = pack_half2(x1.x * qscale, x1.y * qscale);
      qa[k][2] = pack_half2(x2.x * qscale, x2.y * qscale), qa[k][3] = pack_half2(x3.x * qscale, x3.y * qscale);
    }
  }

  const int t_lo = first_lo / kKeysPerTile, t_hi = key_hi / kKeysPerTile;
  auto load_tile = [&](int t, int buf) {
    __half* ks = kv + buf * 2 * S::tile;
    __half* vs = ks + S::tile;
    constexpr int pieces = kKeysPerTile * D / 8;  // 16-byte pieces per K (or V) tile
    for (int i = threadIdx.x; i < pieces; i += 32 * kWarps) {
      const int key = i / (D / 8), c = (i % (D / 8)) * 8;
      const int gk = t * kKeysPerTile + key;
      const bool ok = gk <= key_hi;
      const size_t off = static_cast<size_t>(ok ? gk : 0) * D + c;
      cp_async16(smem_addr(ks + key * S::stride + c), K + off, ok);
      cp_async16(smem_addr(vs + key * S::stride + c), V + off, ok);
    }
  };

  float o[ON][4];
#pragma unroll
  for (int n = 0; n < ON; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};  // rows r, r+8
  const int pa = pos0 + wrow + r, pb = pa + 8;             // positions of this lane's rows
  const int lo_a = a.window > 0 ? pa - a.window + 1 : 0, lo_b = a.window > 0 ? pb - a.window + 1 : 0;

  load_tile(t_lo, 0);
  cp_async_commit();
  for (int t = t_lo; t <= t_hi; ++t) {
    const int buf = (t - t_lo) & 1;
    if (t < t_hi) load_tile(t + 1, buf ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const __half* ks = kv + buf * 2 * S::tile;
    const __half* vs = ks + S::tile;

    // S = Q·Kᵀ for 64 keys: 8 n-tiles of 8 keys.
    float s[8][4];
#pragma unroll
    for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
    for (int k = 0; k < KS; ++k)
#pragma unroll
      for (int j = 0; j < 8; j += 2) {
        // matrices: keys 8j.. x d 16k.., keys 8j.. x d 16k+8.., keys 8j+8.. x d 16k.., keys 8j+8.. x d 16k+8..
        const int mi = lane >> 3;
        const int key = 8 * j + (mi >> 1) * 8 + (lane & 7), c = 16 * k + (mi & 1) * 8;
        uint32_t b0, b1, b2, b3;
        ldmatrix_x4(smem_addr(ks + key * S::stride + c), b0, b1, b2, b3);
        mma_16816(s[j], qa[k], b0, b1);
        mma_16816(s[j + 1], qa[k], b2, b3);
      }

    // Mask (causal, window, rows past the chunk) and the online softmax.
    float tmax[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = t * kKeysPerTile + 8 * j + 2 * q + (e & 1);
        const bool hi = e >= 2;
        const int p = hi ? pb : pa, lo = hi ? lo_b : lo_a;
        if (key > p || key < lo) s[j][e] = -INFINITY;
        tmax[hi] = fmaxf(tmax[hi], s[j][e]);
      }
    float corr[2], mu[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      tmax[i] = fmaxf(tmax[i], __shfl_xor_sync(0xffffffffu, tmax[i], 1));
      tmax[i] = fmaxf(tmax[i], __shfl_xor_sync(0xffffffffu, tmax[i], 2));
      const float mn = fmaxf(m[i], tmax[i]);
      mu[i] = mn == -INFINITY ? 0.f : mn;  // a row with nothing visible yet: keep exp2 finite
      corr[i] = exp2f(m[i] - mu[i]);
      m[i] = mn;
    }
    float rsum[2] = {0.f, 0.f};
    uint32_t pa_frag[4][4];  // P as A fragments of the 4 key k-steps
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float p0 = exp2f(s[j][0] - mu[0]), p1 = exp2f(s[j][1] - mu[0]);
      const float p2 = exp2f(s[j][2] - mu[1]), p3 = exp2f(s[j][3] - mu[1]);
      rsum[0] += p0 + p1, rsum[1] += p2 + p3;
      pa_frag[j / 2][(j & 1) * 2] = pack_half2(p0, p1);
      pa_frag[j / 2][(j & 1) * 2 + 1] = pack_half2(p2, p3);
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      rsum[i] += __shfl_xor_sync(0xffffffffu, rsum[i], 1);
      rsum[i] += __shfl_xor_sync(0xffffffffu, rsum[i], 2);
      l[i] = l[i] * corr[i] + rsum[i];
    }
#pragma unroll
    for (int n = 0; n < ON; ++n) o[n][0] *= corr[0], o[n][1] *= corr[0], o[n][2] *= corr[1], o[n][3] *= corr[1];

    // O += P·V: k-steps of 16 keys, output n-tiles of 8 dims (two per ldmatrix.trans x4).
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
#pragma unroll
      for (int n = 0; n < ON; n += 2) {
        const int mi = lane >> 3;
        const int key = 16 * kk + (mi & 1) * 8 + (lane & 7), c = 8 * n + (mi >> 1) * 8;
        uint32_t b0, b1, b2, b3;
        ldmatrix_x4_trans(smem_addr(vs + key * S::stride + c), b0, b1, b2, b3);
        mma_16816(o[n], pa_frag[kk], b0, b1);
        mma_16816(o[n + 1], pa_frag[kk], b2, b3);
      }
    __syncthreads();  // this buffer is refilled by the next iteration's load
  }
  cp_async_wait<0>();

  // out fp16: rows wrow + r (+8), dims 8n + 2q, +1; zeros past heads*D (head 0's blocks).
  const float inv[2] = {l[0] > 0.f ? 1.f / l[0] : 0.f, l[1] > 0.f ? 1.f / l[1] : 0.f};
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int row = wrow + r + 8 * i;
    if (row >= rows) continue;
    __half* out = a.out + static_cast<size_t>(row) * a.out_stride;
#pragma unroll
    for (int n = 0; n < ON; ++n)
      *reinterpret_cast<__half2*>(out + static_cast<size_t>(h) * D + 8 * n + 2 * q) =
          __floats2half2_rn(o[n][2 * i] * inv[i], o[n][2 * i + 1] * inv[i]);
    if (h == 0)
      for (int d = a.heads * D + q; d < a.out_stride; d += 4) out[d] = __float2half_rn(0.f);
  }
}

template <int D>
cudaError_t launch_d(const AttentionArgs& a, StepRows in, int rows, cudaStream_t s) {
  const int bytes = Smem<D>::bytes;
  const cudaError_t e = prefill_allow_smem(reinterpret_cast<const void*>(prefill_attention_kernel<D>), bytes);
  if (e != cudaSuccess) return e;
  const dim3 grid(static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock), static_cast<unsigned>(a.heads));
  prefill_attention_kernel<D><<<grid, 32 * kWarps, bytes, s>>>(a, in, rows);
  return cudaGetLastError();
}

}  // namespace

bool prefill_attention_supported(int head_dim) { return head_dim == 64 || head_dim == 128; }

cudaError_t launch_prefill_attention(const AttentionArgs& a, StepRows in, int rows, cudaStream_t s) {
  if (rows < 1 || a.head_dim != 64 && a.head_dim != 128) return cudaErrorInvalidValue;
  return a.head_dim == 64 ? launch_d<64>(a, in, rows, s) : launch_d<128>(a, in, rows, s);
}

}  // namespace lieq
