// Prefill GEMM kernels (qgemm_prefill.cuh is the interface).
//
// CTA tile BM weight rows x BN tokens; warp (wr, wt) owns SPW stripes (16*SPW weight rows) x NTW
// n-tiles of 8 tokens: per k-step SPW*NTW mma.sync m16n8k16, all from registers decoded once
// per step and stripe, so the decode is amortized over NTW n-tiles and each X fragment over
// SPW stripes.
//
// Shared memory per stage (one 128-column chunk of K), 3 stages (2 for the 128x256 tile),
// filled with cp.async:
//   X   [BN][128] fp16, 256-byte rows, 16-byte pieces XOR-swizzled by row parity (swz below),
//       zero-filled past `rows` and past x_stride;
//   W   packed: the CTA's BM/16 qgemv tiles of this chunk, copied as they are (each lane then
//       reads its own 16-byte words: conflict free), and their meta;
//       dense: [BM][128] fp16 like X.
// Fragments (k order of qgemv.cuh): lane (r = l/4, q = l%4) of step pair p (steps 2p, 2p+1)
// reads X row n = 8*nt + r, columns 32p + 8q .. +7 (one 16-byte load: b0/b1 of both steps), and
// for dense W rows r and r+8 the same columns (the A registers of both steps). Packed A
// registers: the qgemv decode (extract_step below: one LOP3 per register gives 1024 + code*2^L,
// one fp16 FMA gives code - zero exactly), then one fp16 multiply by the group's scale.
#include "qgemm_prefill.cuh"
#include "qgemv_decode.cuh"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

namespace lieq {
namespace {

constexpr int kChunk = 128;  // K columns per stage (one qgemv tile)
constexpr int kDenseBits = 16;  // template tag: dense fp16 weights

// The qgemv decode (qgemv_decode.cuh: the same code the GEMV kernels run; layout in qgemv.cuh).
using namespace qgemv_decode;

__device__ __forceinline__ uint32_t fma_f16x2(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t d;
  asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}
__device__ __forceinline__ uint32_t sub_f16x2(uint32_t a, uint32_t b) {
  uint32_t d;
  asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
  return d;
}
__device__ __forceinline__ uint32_t mul_f16x2(uint32_t a, uint32_t b) {
  uint32_t d;
  asm("mul.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
  return d;
}

// d += A (16x16) * B (16x8), fp16 in, fp32 accumulate.
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// ---- shared memory staging ------------------------------------------------------------------

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// 16 bytes global -> shared, or 16 zero bytes when !valid (src is not read then).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N));
}
__device__ __forceinline__ uint4 lds128(const uint8_t* p) { return *reinterpret_cast<const uint4*>(p); }

// Byte offset of 16-byte piece c (0..15) of a staged 256-byte row. Lanes 0-7 of a fragment
// load read pieces 4p+q of rows r = 0 and 1 (each 128-bit access serves 8 lanes at a time):
// flipping bit 2 of the piece on odd rows puts the two rows on different banks.
__device__ __forceinline__ int swz(int row, int c) { return row * 256 + ((c ^ ((row & 1) << 2)) << 4); }

struct GemmArgs {
  const uint8_t* qweight;  // packed: [stripes][chunks][256*bits]
  const uint8_t* meta;     // packed: [stripes][chunks][48*groups]
  const __half* w;         // dense: [out][x_stride]
  const __half* x;         // [rows][x_stride]
  float* y;                // [rows][out]
  const float* bias;       // [out] or null
  int out, rows, x_stride;
  int chunks;   // K stages: qgemv chunks, or ceil(x_stride / 128) for dense
  int stripes;  // packed: ceil(out / 16)
};

template <int BITS, int GC, int WR, int WT, int SPW, int NTW, int ST>
struct Tile {
  static constexpr bool dense = BITS == kDenseBits;
  static constexpr int threads = 32 * WR * WT;
  static constexpr int BM = 16 * SPW * WR, BN = 8 * NTW * WT, stripes = BM / 16;
  static constexpr int x_bytes = BN * 256;
  static constexpr int tile_bytes = dense ? 0 : 256 * BITS;  // one qgemv tile
  static constexpr int meta_tile_bytes = dense ? 0 : 48 * GC;
  static constexpr int w_bytes = dense ? BM * 256 : stripes * tile_bytes;
  static constexpr int stage_bytes = x_bytes + w_bytes + stripes * meta_tile_bytes;
  static constexpr int smem = ST * stage_bytes;
  static_assert(stage_bytes % 16 == 0, "stages are 16-byte aligned");
};

// Issue the cp.async copies of K chunk kc into stage buffer st.
template <int BITS, int GC, int WR, int WT, int SPW, int NTW, int ST>
__device__ __forceinline__ void load_stage(const GemmArgs& a, uint8_t* st, int kc, int m0, int n0) {
  using T = Tile<BITS, GC, WR, WT, SPW, NTW, ST>;
  const uint32_t base = smem_addr(st);
  for (int i = threadIdx.x; i < T::BN * 16; i += T::threads) {
    const int row = i >> 4, c = i & 15;
    const int grow = n0 + row, col = kc * kChunk + c * 8;
    const bool ok = grow < a.rows && col < a.x_stride;
    cp_async16(base + swz(row, c), ok ? a.x + static_cast<size_t>(grow) * a.x_stride + col : a.x, ok);
  }
  if constexpr (T::dense) {
    for (int i = threadIdx.x; i < T::BM * 16; i += T::threads) {
      const int row = i >> 4, c = i & 15;
      const int grow = m0 + row, col = kc * kChunk + c * 8;
      const bool ok = grow < a.out && col < a.x_stride;
      cp_async16(base + T::x_bytes + swz(row, c), ok ? a.w + static_cast<size_t>(grow) * a.x_stride + col : a.w, ok);
    }
  } else {
    constexpr int pieces = T::tile_bytes / 16, meta_pieces = T::meta_tile_bytes / 16;
    const int s0 = m0 / 16;
    for (int i = threadIdx.x; i < T::stripes * pieces; i += T::threads) {
      const int s = i / pieces, piece = i % pieces;
      const bool ok = s0 + s < a.stripes;
      const uint8_t* src = a.qweight + (static_cast<size_t>(s0 + s) * a.chunks + kc) * T::tile_bytes + piece * 16;
      cp_async16(base + T::x_bytes + s * T::tile_bytes + piece * 16, ok ? src : a.qweight, ok);
    }
    for (int i = threadIdx.x; i < T::stripes * meta_pieces; i += T::threads) {
      const int s = i / meta_pieces, piece = i % meta_pieces;
      const bool ok = s0 + s < a.stripes;
      const uint8_t* src = a.meta + (static_cast<size_t>(s0 + s) * a.chunks + kc) * T::meta_tile_bytes + piece * 16;
      cp_async16(base + T::x_bytes + T::w_bytes + s * T::meta_tile_bytes + piece * 16, ok ? src : a.meta, ok);
    }
  }
}

// A lane's words of one staged qgemv tile (word_offset in qgemv.cu: parts of 32 lanes x 16 B;
// 3-bit: a second part of 8 B a lane).
template <int BITS>
__device__ __forceinline__ void load_tile_words(const uint8_t* tile, int lane, uint32_t (&w)[2 * BITS]) {
  if constexpr (BITS == 3) {
    const uint4 v = lds128(tile + lane * 16);
    const uint2 u = *reinterpret_cast<const uint2*>(tile + 512 + lane * 8);
    w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w, w[4] = u.x, w[5] = u.y;
  } else {
#pragma unroll
    for (int part = 0; part < BITS / 2; ++part) {
      const uint4 v = lds128(tile + part * 512 + lane * 16);
      w[4 * part] = v.x, w[4 * part + 1] = v.y, w[4 * part + 2] = v.z, w[4 * part + 3] = v.w;
    }
  }
}

// A registers of step S (stripe words w, its group's scales and biases): scale * (code - zero) fp16.
template <int BITS, int S>
__device__ __forceinline__ void decode_a(const uint32_t* w, const uint32_t (&bias)[4], const uint32_t (&sc)[2],
                                         uint32_t (&a)[4]) {
  uint32_t t[4];
  extract_step<BITS, S>(w, t);
#pragma unroll
  for (int i = 0; i < 4; ++i)
    a[i] = mul_f16x2(fma_f16x2(t[i], f16x2_pow2_neg(decode_level<BITS>(i)), bias[i]), sc[i & 1]);
}

// Group G's constants for this lane's rows r, r+8: scales as fp16 pairs (s, s), biases of the
// decode FMA per register (C_L - (1024 + zero)).
template <int BITS, int GC>
__device__ __forceinline__ void group_consts(const uint8_t* meta, int r, int g, uint32_t (&bias)[4],
                                             uint32_t (&sc)[2]) {
  const uint32_t s = *reinterpret_cast<const uint32_t*>(meta + 4 * (r * GC + g));
  const uint32_t zz = *reinterpret_cast<const uint16_t*>(meta + 32 * GC + 2 * (r * GC + g));
  sc[0] = __byte_perm(s, 0, 0x1010), sc[1] = __byte_perm(s, 0, 0x3232);
  const uint32_t hz[2] = {__byte_perm(zz, 0x64u, 0x4040u), __byte_perm(zz, 0x64u, 0x4141u)};
#pragma unroll
  for (int i = 0; i < 4; ++i) bias[i] = sub_f16x2(f16x2_int(bias_const<BITS>(i)), hz[i & 1]);
}

// grid (ceil(out/BM), ceil(rows/BN)), block 32*WR*WT, dynamic smem Tile::smem.
template <int BITS, int GC, int WR, int WT, int SPW, int NTW, int ST>
__global__ void __launch_bounds__(32 * WR * WT) qgemm_prefill_kernel(const GemmArgs a) {
  using T = Tile<BITS, GC, WR, WT, SPW, NTW, ST>;
  extern __shared__ __align__(128) uint8_t smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wr = warp % WR, wt = warp / WR;
  const int r = lane >> 2, q = lane & 3;
  const int m0 = blockIdx.x * T::BM, n0 = blockIdx.y * T::BN;

  float acc[SPW][NTW][4];
#pragma unroll
  for (int j = 0; j < SPW; ++j)
#pragma unroll
    for (int nt = 0; nt < NTW; ++nt) acc[j][nt][0] = acc[j][nt][1] = acc[j][nt][2] = acc[j][nt][3] = 0.f;

#pragma unroll
  for (int s = 0; s < ST - 1; ++s) {
    if (s < a.chunks) load_stage<BITS, GC, WR, WT, SPW, NTW, ST>(a, smem + s * T::stage_bytes, s, m0, n0);
    cp_async_commit();
  }

  for (int kc = 0; kc < a.chunks; ++kc) {
    cp_async_wait<ST - 2>();
    __syncthreads();  // stage kc visible to all; stage kc-1's buffer free to refill
    if (kc + ST - 1 < a.chunks)
      load_stage<BITS, GC, WR, WT, SPW, NTW, ST>(a, smem + ((kc + ST - 1) % ST) * T::stage_bytes, kc + ST - 1,
                                        m0, n0);
    cp_async_commit();

    const uint8_t* st = smem + (kc % ST) * T::stage_bytes;
    const uint8_t* xs = st;
    const uint8_t* ws = st + T::x_bytes;
    const int xrow0 = wt * NTW * 8 + r;

    if constexpr (T::dense) {
      static_for<4>([&](auto pc) {
        constexpr int P = decltype(pc)::value;
        uint4 xb[NTW];
#pragma unroll
        for (int nt = 0; nt < NTW; ++nt) xb[nt] = lds128(xs + swz(xrow0 + 8 * nt, 4 * P + q));
#pragma unroll
        for (int j = 0; j < SPW; ++j) {
          const int wrow = (wr * SPW + j) * 16 + r;
          const uint4 lo = lds128(ws + swz(wrow, 4 * P + q)), hi = lds128(ws + swz(wrow + 8, 4 * P + q));
          const uint32_t ae[4] = {lo.x, hi.x, lo.y, hi.y}, ao[4] = {lo.z, hi.z, lo.w, hi.w};
#pragma unroll
          for (int nt = 0; nt < NTW; ++nt) {
            mma_16816(acc[j][nt], ae, xb[nt].x, xb[nt].y);
            mma_16816(acc[j][nt], ao, xb[nt].z, xb[nt].w);
          }
        }
      });
    } else if constexpr (SPW > 2) {
      // 4 stripes a warp: too many registers to hold every stripe's words and group constants
      // through the stage, so they are re-read per step pair (only the words of its two steps
      // survive dead-code elimination).
      constexpr int SPG = 8 / GC;
      static_for<4>([&](auto pc) {
        constexpr int P = decltype(pc)::value;
        uint4 xb[NTW];
#pragma unroll
        for (int nt = 0; nt < NTW; ++nt) xb[nt] = lds128(xs + swz(xrow0 + 8 * nt, 4 * P + q));
#pragma unroll
        for (int j = 0; j < SPW; ++j) {
          const int s = wr * SPW + j;
          uint32_t words[2 * BITS], bias[4], sc[2], ae[4], ao[4];
          load_tile_words<BITS>(ws + s * T::tile_bytes, lane, words);
          const uint8_t* meta = ws + T::w_bytes + s * T::meta_tile_bytes;
          group_consts<BITS, GC>(meta, r, (2 * P) / SPG, bias, sc);
          decode_a<BITS, 2 * P>(words, bias, sc, ae);
          if constexpr ((2 * P + 1) % SPG == 0) group_consts<BITS, GC>(meta, r, (2 * P + 1) / SPG, bias, sc);
          decode_a<BITS, 2 * P + 1>(words, bias, sc, ao);
#pragma unroll
          for (int nt = 0; nt < NTW; ++nt) {
            mma_16816(acc[j][nt], ae, xb[nt].x, xb[nt].y);
            mma_16816(acc[j][nt], ao, xb[nt].z, xb[nt].w);
          }
        }
      });
    } else {
      constexpr int SPG = 8 / GC;  // mma steps per group
      uint32_t words[2][2 * BITS];
      const uint8_t* meta[2];
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int s = wr * 2 + j;
        load_tile_words<BITS>(ws + s * T::tile_bytes, lane, words[j]);
        meta[j] = ws + T::w_bytes + s * T::meta_tile_bytes;
      }
      uint32_t bias[2][4], sc[2][2];
      static_for<4>([&](auto pc) {
        constexpr int P = decltype(pc)::value;
        uint4 xb[NTW];
#pragma unroll
        for (int nt = 0; nt < NTW; ++nt) xb[nt] = lds128(xs + swz(xrow0 + 8 * nt, 4 * P + q));
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          if constexpr ((2 * P) % SPG == 0) group_consts<BITS, GC>(meta[j], r, (2 * P) / SPG, bias[j], sc[j]);
          uint32_t ae[4], ao[4];
          decode_a<BITS, 2 * P>(words[j], bias[j], sc[j], ae);
          if constexpr ((2 * P + 1) % SPG == 0) group_consts<BITS, GC>(meta[j], r, (2 * P + 1) / SPG, bias[j], sc[j]);
          decode_a<BITS, 2 * P + 1>(words[j], bias[j], sc[j], ao);
#pragma unroll
          for (int nt = 0; nt < NTW; ++nt) {
            mma_16816(acc[j][nt], ae, xb[nt].x, xb[nt].y);
            mma_16816(acc[j][nt], ao, xb[nt].z, xb[nt].w);
          }
        }
      });
    }
  }
  cp_async_wait<0>();

  // C fragment: weight rows r, r+8 of the stripe; tokens 2q, 2q+1 of the n-tile.
#pragma unroll
  for (int j = 0; j < SPW; ++j) {
    const int row_lo = m0 + (wr * SPW + j) * 16 + r, row_hi = row_lo + 8;
    const float b_lo = a.bias && row_lo < a.out ? a.bias[row_lo] : 0.f;
    const float b_hi = a.bias && row_hi < a.out ? a.bias[row_hi] : 0.f;
#pragma unroll
    for (int nt = 0; nt < NTW; ++nt) {
      const int tok = n0 + wt * NTW * 8 + nt * 8 + 2 * q;
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        if (tok + e >= a.rows) continue;
        float* yr = a.y + static_cast<size_t>(tok + e) * a.out;
        if (row_lo < a.out) yr[row_lo] = acc[j][nt][e] + b_lo;
        if (row_hi < a.out) yr[row_hi] = acc[j][nt][2 + e] + b_hi;
      }
    }
  }
}

using GemmKernel = void (*)(GemmArgs);

struct Picked {
  GemmKernel kernel;
  int bm, bn, threads, smem;
};

template <int BITS, int GC, int WR, int WT, int SPW, int NTW, int ST>
Picked make_picked() {
  using T = Tile<BITS, GC, WR, WT, SPW, NTW, ST>;
  return {qgemm_prefill_kernel<BITS, GC, WR, WT, SPW, NTW, ST>, T::BM, T::BN, T::threads, T::smem};
}
template <int BITS, int GC>
Picked pick(int tile) {
  switch (tile) {
    case kQgemmTile128x128: return make_picked<BITS, GC, 4, 2, 2, 8, 3>();
    case kQgemmTile128x64: return make_picked<BITS, GC, 4, 2, 2, 4, 3>();
    case kQgemmTile128x256: return make_picked<BITS, GC, 2, 4, 4, 8, 2>();
    default: return make_picked<BITS, GC, 2, 2, 2, 4, 3>();
  }
}
template <int BITS>
Picked pick(int gc, int tile) {
  switch (gc) {
    case 1: return pick<BITS, 1>(tile);
    case 2: return pick<BITS, 2>(tile);
    default: return pick<BITS, 4>(tile);
  }
}
Picked pick(int bits, int gc, int tile) {
  switch (bits) {
    case 2: return pick<2>(gc, tile);
    case 3: return pick<3>(gc, tile);
    case 4: return pick<4>(gc, tile);
    case 8: return pick<8>(gc, tile);
    default: return pick<kDenseBits, 1>(tile);
  }
}

int sm_count() {
  static int cached[64] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
    cudaGetLastError();
    return 132;
  }
  if (!cached[dev] && cudaDeviceGetAttribute(&cached[dev], cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
    cudaGetLastError();
    return 132;
  }
  return cached[dev];
}

cudaError_t launch(int bits, int gc, int tile, const GemmArgs& a, cudaStream_t stream) {
  if (tile == kQgemmTileAuto) tile = qgemm_auto_tile(a.out, a.rows, bits != kDenseBits);
  if (tile < 1 || tile > kQgemmTiles) return cudaErrorInvalidValue;
  const Picked p = pick(bits, gc, tile);
  const cudaError_t e = prefill_allow_smem(reinterpret_cast<const void*>(p.kernel), p.smem);
  if (e != cudaSuccess) return e;
  const dim3 grid(static_cast<unsigned>((a.out + p.bm - 1) / p.bm), static_cast<unsigned>((a.rows + p.bn - 1) / p.bn));
  p.kernel<<<grid, p.threads, p.smem, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace

cudaError_t prefill_allow_smem(const void* kernel, int bytes) {
  static std::mutex mu;
  static std::vector<std::pair<const void*, int>> done;  // (kernel, device) already opted in
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  const std::lock_guard<std::mutex> lock(mu);
  for (const auto& d : done)
    if (d.first == kernel && d.second == dev) return cudaSuccess;
  e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (e == cudaSuccess) done.emplace_back(kernel, dev);
  return e;
}

int qgemm_auto_tile(int out, int rows, bool packed) {
  (void)packed;
  // Modelled time: waves x work of one CTA per SM / relative efficiency of the tile (larger
  // tiles reuse each shared-memory load over more mma). 64x64 fits two CTAs per SM.
  struct Option { int tile, bm, bn, per_sm; double eff; };
  const Option opts[] = {{kQgemmTile128x256, 128, 256, 1, 1.3}, {kQgemmTile128x128, 128, 128, 1, 1.0},
                         {kQgemmTile128x64, 128, 64, 1, 0.8}, {kQgemmTile64x64, 64, 64, 2, 0.6}};
  const double sms = sm_count();
  int best = kQgemmTile64x64;
  double best_t = 1e300;
  for (const Option& o : opts) {
    const double ctas = static_cast<double>((out + o.bm - 1) / o.bm) * ((rows + o.bn - 1) / o.bn);
    const double waves = std::ceil(ctas / (sms * o.per_sm));
    const double t = waves * o.per_sm * o.bm * o.bn / o.eff;
    if (t < best_t) best_t = t, best = o.tile;
  }
  return best;
}

cudaError_t qgemm_prefill_launch(const QgemvLayout& L, const uint8_t* qweight, const uint8_t* meta, const __half* x,
                                 int x_stride, int rows, float* y, const float* bias, cudaStream_t stream, int tile) {
  if (rows < 1 || !qweight || !meta || !x || !y || L.stripes == 0 || L.chunks == 0) return cudaErrorInvalidValue;
  if (x_stride < static_cast<long long>(L.in) || x_stride % 8 != 0 || L.out > 0x7FFFFFFFu || L.stripes > 0x7FFFFFFFu)
    return cudaErrorInvalidValue;
  if ((reinterpret_cast<uintptr_t>(qweight) | reinterpret_cast<uintptr_t>(meta) | reinterpret_cast<uintptr_t>(x)) & 15)
    return cudaErrorInvalidValue;
  if (L.bits != 2 && L.bits != 3 && L.bits != 4 && L.bits != 8) return cudaErrorInvalidValue;
  GemmArgs a{};
  a.qweight = qweight, a.meta = meta, a.x = x, a.y = y, a.bias = bias;
  a.out = static_cast<int>(L.out), a.rows = rows, a.x_stride = x_stride;
  a.chunks = static_cast<int>(L.chunks), a.stripes = static_cast<int>(L.stripes);
  return launch(L.bits, kQgemvChunkCols / L.kernel_group, tile, a, stream);
}

cudaError_t dense_gemm_prefill_launch(const __half* w, int out, int stride, const __half* x, int rows, float* y,
                                      const float* bias, cudaStream_t stream, int tile) {
  if (rows < 1 || out < 1 || stride < 8 || stride % 8 != 0 || !w || !x || !y) return cudaErrorInvalidValue;
  if ((reinterpret_cast<uintptr_t>(w) | reinterpret_cast<uintptr_t>(x)) & 15) return cudaErrorInvalidValue;
  GemmArgs a{};
  a.w = w, a.x = x, a.y = y, a.bias = bias;
  a.out = out, a.rows = rows, a.x_stride = stride;
  a.chunks = (stride + kChunk - 1) / kChunk;
  return launch(kDenseBits, 1, tile, a, stream);
}

}  // namespace lieq
