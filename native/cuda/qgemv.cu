// Fused dequant-GEMV / small-batch GEMM kernels over the qgemv layout (qgemv.cuh explains it),
// the host-side repack from the packed format, and a host emulation of the decode path.
//
// Per warp and tile (16 rows x 128 codes): 8 mma.m16n8k16 steps per batch tile of 8. Per step
// and lane, the 8 codes of its A fragment become fp16 (code - zero) with 4 LOP3 (AND + OR
// 0x6400) and 4 fp16 FMAs; x comes as one 16-byte load per two steps. Even and odd steps feed
// two independent mma chains; each group's sums are scaled in fp32. A block owns one 16-row
// stripe; its warps split the stripe's tiles along `in` (warp w: tiles w, w+warps, ...) and are
// summed through shared memory. Each warp keeps a register ring of tiles in flight: weights
// and meta (ld.global.nc.L1::no_allocate) QgemvDepth::weights tiles ahead, x 1-2 tiles ahead.
// With programmatic dependent launch (sm_90) the first weight loads are issued before the
// kernel waits for the previous kernel (the producer of x).
//
// Measured on an H100 (docs/gpu.md): 8-bit reaches 85-89% of the read ceiling on the large
// shapes, 4-bit 66-69%, 2/3-bit 39-50%: below 8 bits the time barely depends on the bytes, so
// per-tile work (x loads, decode, mma chains at ~16 warps a multiprocessor) is the limit there,
// not memory. docs/gpu.md lists what was tried and what to try next.
#include "qgemv.cuh"
#include "qgemv_decode.cuh"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

namespace lieq {
namespace {

// The decode path shared by the kernel, the host emulation and the prefill GEMM.
using namespace qgemv_decode;

// ---- host: packed-format blocks (core/packed_format.h) -----------------------------------

void unpack_block(const uint8_t* src, int bits, uint8_t* c) {
  switch (bits) {
    case 2:
    case 3:
      for (int i = 0; i < 8; ++i)
        for (int j = 0; j < 4; ++j) c[i + 8 * j] = (src[i] >> (2 * j)) & 3;
      if (bits == 3)
        for (int i = 0; i < 32; ++i) c[i] |= static_cast<uint8_t>(((src[8 + i / 8] >> (i % 8)) & 1) << 2);
      break;
    case 4:
      for (int i = 0; i < 16; ++i) {
        c[i] = src[i] & 15;
        c[i + 16] = src[i] >> 4;
      }
      break;
    default:
      std::memcpy(c, src, 32);
  }
}

// Tile-local position of (lane, step s, register i, half h): row in the stripe, column in the tile.
inline int tile_row(int lane, int i) { return (lane >> 2) + 8 * (i & 1); }
inline int tile_col(int lane, int s, int i, int h) {
  return 32 * (s >> 1) + 8 * (lane & 3) + 4 * (s & 1) + 2 * (i >> 1) + h;
}

// Word index and bit offset of a code's field(s) in a lane's 2*bits words.
void place_code(uint32_t* w, int bits, int s, int i, int h, uint32_t code) {
  switch (bits) {
    case 2:
      w[s >> 1] |= code << (16 * h + 8 * (s & 1) + 2 * i);
      break;
    case 3: {
      static const int kHighBase[4] = {0, 1, 8, 9};
      w[s >> 1] |= (code & 3) << (16 * h + 8 * (s & 1) + 2 * i);
      w[4 + (s >> 2)] |= (code >> 2) << (16 * h + kHighBase[s & 3] + 2 * i);
      break;
    }
    case 4:
      w[s] |= code << (16 * h + 4 * i);
      break;
    default:
      w[2 * s + (i >> 1)] |= code << (8 * (2 * h + (i & 1)));
  }
}

// Byte address of word `wi` of `lane` inside a tile (parts of 32 lanes x 16 B; 3-bit: 16 + 8 B).
inline size_t word_offset(int bits, int lane, int wi) {
  if (bits == 3 && wi >= 4) return 512 + static_cast<size_t>(lane) * 8 + 4 * (wi - 4);
  return static_cast<size_t>(wi / 4) * 512 + static_cast<size_t>(lane) * 16 + 4 * (wi % 4);
}

inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline void store_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

float f16_bits_to_float(uint32_t bits) {
  __half_raw raw;
  raw.x = static_cast<unsigned short>(bits);
  return __half2float(__half(raw));
}
uint32_t float_to_f16_bits(float f) {
  const __half_raw raw = __half_raw(__float2half_rn(f));
  return raw.x;
}

// Host emulation of step S of one lane (then S+1, ...): w [out, in] = scale * (code - zero).
template <int BITS, int S>
void decode_steps_host(const QgemvLayout& L, const uint32_t* words, const uint8_t* meta, int lane, size_t stripe,
                       size_t chunk, float* w) {
  const int gc = kQgemvChunkCols / L.kernel_group, spg = L.kernel_group / 16;
  const int r = lane >> 2, g = S / spg;
  const uint32_t sc = load_u32(meta + 4 * (r * gc + g));
  uint16_t zz;
  std::memcpy(&zz, meta + 32 * gc + 2 * (r * gc + g), 2);
  const float scale[2] = {f16_bits_to_float(sc & 0xFFFF), f16_bits_to_float(sc >> 16)};
  const uint32_t hz[2] = {byte_perm(zz, 0x64u, 0x4040u), byte_perm(zz, 0x64u, 0x4141u)};
  uint32_t t[4];
  extract_step<BITS, S>(words, t);
  for (int i = 0; i < 4; ++i) {
    const int level = decode_level<BITS>(i);
    // bias = C_L - hz (fp16 subtraction), then t * 2^-L + bias (fp16 FMA, one rounding).
    const float hzf = f16_bits_to_float(hz[i & 1] & 0xFFFF);
    const float bias = f16_bits_to_float(float_to_f16_bits(static_cast<float>(bias_const<BITS>(i)) - hzf));
    for (int h = 0; h < 2; ++h) {
      const double tv = f16_bits_to_float((t[i] >> (16 * h)) & 0xFFFF);
      const float q = f16_bits_to_float(float_to_f16_bits(static_cast<float>(tv / (1 << level) + bias)));
      const size_t row = stripe * kQgemvStripeRows + static_cast<size_t>(tile_row(lane, i));
      const size_t col = chunk * kQgemvChunkCols + static_cast<size_t>(tile_col(lane, S, i, h));
      if (row < L.out && col < L.in) w[row * L.in + col] = scale[i & 1] * q;
    }
  }
  if constexpr (S + 1 < 8) decode_steps_host<BITS, S + 1>(L, words, meta, lane, stripe, chunk, w);
}

template <int BITS>
void decode_tile_host(const QgemvLayout& L, const uint8_t* tile, const uint8_t* meta, size_t stripe, size_t chunk,
                      float* w) {
  for (int lane = 0; lane < 32; ++lane) {
    uint32_t words[2 * BITS];
    for (int wi = 0; wi < 2 * BITS; ++wi) words[wi] = load_u32(tile + word_offset(BITS, lane, wi));
    decode_steps_host<BITS, 0>(L, words, meta, lane, stripe, chunk, w);
  }
}

// ---- device -------------------------------------------------------------------------------

struct QgemvArgs {
  const uint8_t* qweight;  // [stripes][chunks][256*bits]
  const uint8_t* meta;     // [stripes][chunks][48*groups_per_tile]
  const __half* x;         // [batch][in]
  void* y;                 // [batch][out]
  int out, in, batch, chunks;
};

// Loads in flight per warp, in tiles: weights+meta `weights` tiles ahead (about 4 KB a warp, so
// ~64 KB a multiprocessor at 16 resident warps), x `x` tiles ahead (it comes from L1/L2; 16
// registers a tile and batch tile, so fewer). `weights` is a multiple of `x` (the ring slots
// are compile-time indices). Together they bring the batch-1 kernels to ~128 registers.
// Groups of 32/64 carry 2-4x the meta registers a slot: half the weight depth there.
template <int BITS, int NT, int GC>
struct QgemvDepth {
  static constexpr int weights = NT == 1 ? (GC == 1 ? (BITS == 2 ? 8 : BITS == 3 ? 6 : BITS == 4 ? 4 : 2)
                                                    : (BITS <= 3 ? 4 : 2))
                                         : (GC == 1 && BITS == 2 ? 4 : 2);
  static constexpr int x = NT == 1 ? 2 : 1;
  static_assert(weights % x == 0, "weight ring is a multiple of the x ring");
};

__device__ __forceinline__ uint4 ldg_stream_16(const void* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}
__device__ __forceinline__ uint2 ldg_stream_8(const void* p) {
  uint2 v;
  asm("ld.global.nc.L1::no_allocate.v2.u32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
  return v;
}

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

// d += A (16x16, fp16 row) * B (16x8, fp16 col), fp32 accumulate.
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Programmatic dependent launch (sm_90): wait for the grids this one depends on (x is their
// output) / let the next grid start its prologue. No-ops when launched without the attribute.
__device__ __forceinline__ void grid_dependency_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void grid_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// A lane's share of one tile: 2*bits words of codes and, per group of the tile, its row pair's
// scales (half2 s_r, s_r+8) and zeros (u16 z_r | z_r+8 << 8).
template <int BITS, int GC>
struct TileWeights {
  uint32_t w[2 * BITS];
  uint32_t sc[GC], zz[GC];
};
// The lane's B fragments of one tile: x row n = r + 8*nt, columns 32p + 8q .. +7, p = 0..3.
template <int NT>
struct TileX {
  uint4 v[4][NT];
};

// Per-lane base pointers of a stripe (tile c adds c * tile size).
template <int BITS, int GC, int NT>
struct LanePtrs {
  const uint8_t* w;     // qweight tile part 0, this lane's 16 bytes
  const uint8_t* meta;  // this stripe's meta
  const __half* x[NT];  // x row n = r + 8*nt (row 0 for n >= batch), column 8q
  int r;

  // Weights and meta of tile c (independent of earlier kernels).
  __device__ __forceinline__ void load_weights(int c, TileWeights<BITS, GC>& t) const {
    const uint8_t* p = w + static_cast<size_t>(c) * (256 * BITS);
    if constexpr (BITS == 3) {
      const uint4 v = ldg_stream_16(p);
      const uint2 u = ldg_stream_8(p + 512 - 8 * (threadIdx.x & 31));  // part 1: 8 bytes a lane
      t.w[0] = v.x, t.w[1] = v.y, t.w[2] = v.z, t.w[3] = v.w, t.w[4] = u.x, t.w[5] = u.y;
    } else {
#pragma unroll
      for (int part = 0; part < BITS / 2; ++part) {
        const uint4 v = ldg_stream_16(p + part * 512);
        t.w[4 * part] = v.x, t.w[4 * part + 1] = v.y, t.w[4 * part + 2] = v.z, t.w[4 * part + 3] = v.w;
      }
    }
    const uint8_t* m = meta + static_cast<size_t>(c) * (48 * GC);
    if constexpr (GC == 1) {
      t.sc[0] = __ldg(reinterpret_cast<const unsigned int*>(m) + r);
      t.zz[0] = __ldg(reinterpret_cast<const unsigned short*>(m + 32) + r);
    } else if constexpr (GC == 2) {
      const uint2 s = __ldg(reinterpret_cast<const uint2*>(m) + r);
      const unsigned int z = __ldg(reinterpret_cast<const unsigned int*>(m + 64) + r);
      t.sc[0] = s.x, t.sc[1] = s.y, t.zz[0] = z & 0xFFFF, t.zz[1] = z >> 16;
    } else {
      const uint4 s = __ldg(reinterpret_cast<const uint4*>(m) + r);
      const uint2 z = __ldg(reinterpret_cast<const uint2*>(m + 128) + r);
      t.sc[0] = s.x, t.sc[1] = s.y, t.sc[2] = s.z, t.sc[3] = s.w;
      t.zz[0] = z.x & 0xFFFF, t.zz[1] = z.x >> 16, t.zz[2] = z.y & 0xFFFF, t.zz[3] = z.y >> 16;
    }
  }
  // x of tile c; columns at or past `kleft` (a partial last tile) read as zero.
  template <bool PARTIAL>
  __device__ __forceinline__ void load_x(int c, TileX<NT>& t, int kleft = 128) const {
#pragma unroll
    for (int p = 0; p < 4; ++p)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        if (PARTIAL && 32 * p >= kleft)
          t.v[p][nt] = make_uint4(0, 0, 0, 0);
        else
          t.v[p][nt] = __ldg(reinterpret_cast<const uint4*>(x[nt] + c * kQgemvChunkCols + 32 * p));
      }
  }
};

// One tile: acc[nt] (C fragment of batch tile nt) += per group, scale * (mma sums of code - zero).
// Even and odd steps accumulate separately (two independent mma chains).
template <int BITS, int KG, int NT>
__device__ __forceinline__ void compute_tile(const TileWeights<BITS, 128 / KG>& t, const TileX<NT>& xt,
                                             float (&acc)[NT][4]) {
  constexpr int GC = 128 / KG, SPG = KG / 16;
  static_for<GC>([&](auto gc_) {
    constexpr int G = decltype(gc_)::value;
    const uint32_t hz[2] = {__byte_perm(t.zz[G], 0x64u, 0x4040u), __byte_perm(t.zz[G], 0x64u, 0x4141u)};
    uint32_t bias[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) bias[i] = sub_f16x2(f16x2_int(bias_const<BITS>(i)), hz[i & 1]);
    float part[2][NT][4];
#pragma unroll
    for (int e = 0; e < 2; ++e)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) part[e][nt][0] = part[e][nt][1] = part[e][nt][2] = part[e][nt][3] = 0.f;
    static_for<SPG>([&](auto sc_) {
      constexpr int S = G * SPG + decltype(sc_)::value;
      uint32_t tr[4], a[4];
      extract_step<BITS, S>(t.w, tr);
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = fma_f16x2(tr[i], f16x2_pow2_neg(decode_level<BITS>(i)), bias[i]);
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const uint4& x = xt.v[S / 2][nt];
        if constexpr ((S & 1) == 0)
          mma_16816(part[0][nt], a, x.x, x.y);
        else
          mma_16816(part[1][nt], a, x.z, x.w);
      }
    });
    const float2 s = __half22float2(*reinterpret_cast<const __half2*>(&t.sc[G]));
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      acc[nt][0] += s.x * (part[0][nt][0] + part[1][nt][0]);
      acc[nt][1] += s.x * (part[0][nt][1] + part[1][nt][1]);
      acc[nt][2] += s.y * (part[0][nt][2] + part[1][nt][2]);
      acc[nt][3] += s.y * (part[0][nt][3] + part[1][nt][3]);
    }
  });
}

template <typename OutT>
__device__ __forceinline__ OutT to_out(float v);
template <>
__device__ __forceinline__ __half to_out<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ float to_out<float>(float v) {
  return v;
}

// grid = stripes, block = 32 * warps, dynamic shared memory = warps * 16 * 8*NT floats.
// Warp w takes the stripe's tiles w, w + warps, ... through the ring described above.
template <int BITS, int KG, int NT, typename OutT>
__global__ void __launch_bounds__(512) qgemv_kernel(const QgemvArgs args) {
  constexpr int GC = 128 / KG, DW = QgemvDepth<BITS, NT, GC>::weights, DX = QgemvDepth<BITS, NT, GC>::x;
  extern __shared__ float reduce_smem[];  // [warps][16 rows][8*NT batch columns]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const int r = lane >> 2, q = lane & 3;
  const int full = args.in / kQgemvChunkCols;  // tiles entirely inside `in`
  const size_t stripe = blockIdx.x;

  LanePtrs<BITS, GC, NT> lp;
  lp.w = args.qweight + stripe * args.chunks * (256 * BITS) + lane * 16;
  lp.meta = args.meta + stripe * args.chunks * (48 * GC);
  lp.r = r;
  // B fragments: lane holds batch column n = r + 8*nt, columns 8q..8q+7 of each 32-column pair.
  // Columns n >= batch read row 0 instead: they only feed C columns that are never stored.
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    const int n = r + 8 * nt;
    lp.x[nt] = args.x + static_cast<size_t>(n < args.batch ? n : 0) * args.in + 8 * q;
  }

  // Weight loads do not depend on earlier kernels: start them before waiting for x.
  TileWeights<BITS, GC> wbuf[DW];
  TileX<NT> xbuf[DX];
#pragma unroll
  for (int d = 0; d < DW; ++d)
    if (warp + d * warps < full) lp.load_weights(warp + d * warps, wbuf[d]);
  grid_launch_dependents();
  grid_dependency_wait();
#pragma unroll
  for (int d = 0; d < DX; ++d)
    if (warp + d * warps < full) lp.template load_x<false>(warp + d * warps, xbuf[d]);

  float acc[NT][4];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;

  // Ring: tile c = base + d*warps sits in weight slot d and x slot d % DX; after computing
  // it, the slots are refilled with the tiles DW (weights) and DX (x) turns ahead.
  for (int base = warp; base < full; base += DW * warps) {
#pragma unroll
    for (int d = 0; d < DW; ++d) {
      const int c = base + d * warps;
      if (c < full) {
        compute_tile<BITS, KG, NT>(wbuf[d], xbuf[d % DX], acc);
        if (c + DW * warps < full) lp.load_weights(c + DW * warps, wbuf[d]);
        if (c + DX * warps < full) lp.template load_x<false>(c + DX * warps, xbuf[d % DX]);
      }
    }
  }
  if (full < args.chunks && warp == full % warps) {  // the last tile runs past `in`
    TileWeights<BITS, GC> tw;
    TileX<NT> tx;
    lp.load_weights(full, tw);
    lp.template load_x<true>(full, tx, args.in - full * kQgemvChunkCols);
    compute_tile<BITS, KG, NT>(tw, tx, acc);
  }

  // C fragment: rows r, r+8; batch columns 8nt + 2q, +1. Sum the warps' partial sums.
  constexpr int COLS = 8 * NT;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    float* lo = reduce_smem + (warp * 16 + r) * COLS + 8 * nt + 2 * q;
    float* hi = reduce_smem + (warp * 16 + r + 8) * COLS + 8 * nt + 2 * q;
    lo[0] = acc[nt][0], lo[1] = acc[nt][1], hi[0] = acc[nt][2], hi[1] = acc[nt][3];
  }
  __syncthreads();
  OutT* y = static_cast<OutT*>(args.y);
  for (int t = threadIdx.x; t < 16 * args.batch; t += blockDim.x) {
    const int n = t >> 4, row = t & 15;
    float sum = 0.f;
    for (int wi = 0; wi < warps; ++wi) sum += reduce_smem[(wi * 16 + row) * COLS + n];
    const size_t grow = stripe * 16 + static_cast<size_t>(row);
    if (grow < static_cast<size_t>(args.out)) y[static_cast<size_t>(n) * args.out + grow] = to_out<OutT>(sum);
  }
}

using QgemvKernel = void (*)(QgemvArgs);

template <int BITS, int KG>
QgemvKernel pick_kernel(int nt, bool y_fp32) {
  if (nt == 1) return y_fp32 ? qgemv_kernel<BITS, KG, 1, float> : qgemv_kernel<BITS, KG, 1, __half>;
  return y_fp32 ? qgemv_kernel<BITS, KG, 2, float> : qgemv_kernel<BITS, KG, 2, __half>;
}
template <int BITS>
QgemvKernel pick_kernel(int kg, int nt, bool y_fp32) {
  switch (kg) {
    case 32: return pick_kernel<BITS, 32>(nt, y_fp32);
    case 64: return pick_kernel<BITS, 64>(nt, y_fp32);
    default: return pick_kernel<BITS, 128>(nt, y_fp32);
  }
}
QgemvKernel pick_kernel(int bits, int kg, int nt, bool y_fp32) {
  switch (bits) {
    case 2: return pick_kernel<2>(kg, nt, y_fp32);
    case 3: return pick_kernel<3>(kg, nt, y_fp32);
    case 4: return pick_kernel<4>(kg, nt, y_fp32);
    default: return pick_kernel<8>(kg, nt, y_fp32);
  }
}

// Multiprocessor count and compute capability (major) of the current device, cached per device.
struct DeviceFacts {
  int sms = 108, cc_major = 8;
};
DeviceFacts current_device_facts() {
  static DeviceFacts cached[64];
  static bool known[64] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0) {
    cudaGetLastError();
    return {};
  }
  if (dev < 64 && known[dev]) return cached[dev];
  DeviceFacts f;
  if (cudaDeviceGetAttribute(&f.sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&f.cc_major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
    cudaGetLastError();
    return {};
  }
  if (dev < 64) cached[dev] = f, known[dev] = true;
  return f;
}

}  // namespace

std::string qgemv_layout(size_t out, size_t in, int bits, int group, bool symmetric, QgemvLayout* layout) {
  const std::string err = packed_shape_error(out, in, bits, group);
  if (!err.empty()) return err;
  QgemvLayout L;
  L.out = out, L.in = in, L.bits = bits, L.group = group, L.symmetric = symmetric;
  if (group == 32 || group == 64 || group == 128)
    L.kernel_group = group;
  else  // per-channel: the largest kernel group that divides `in`
    L.kernel_group = in % 128 == 0 ? 128 : in % 64 == 0 ? 64 : 32;
  L.stripes = (out + kQgemvStripeRows - 1) / kQgemvStripeRows;
  L.chunks = (in + kQgemvChunkCols - 1) / kQgemvChunkCols;
  *layout = L;
  return {};
}

void qgemv_repack(const PackedMatrix& W, const QgemvLayout& L, uint8_t* qweight_out, uint8_t* meta_out,
                  size_t stripe_begin, size_t stripe_end) {
  const int bits = L.bits, kg = L.kernel_group, gc = kQgemvChunkCols / kg;
  const size_t in_pad = L.chunks * kQgemvChunkCols;
  const size_t bb = static_cast<size_t>(packed_block_bytes(bits));
  stripe_end = std::min(stripe_end, L.stripes);
  if (stripe_begin >= stripe_end) return;
  const size_t tiles0 = stripe_begin * L.chunks, tiles = (stripe_end - stripe_begin) * L.chunks;
  std::memset(qweight_out + tiles0 * L.tile_bytes(), 0, tiles * L.tile_bytes());
  std::memset(meta_out + tiles0 * L.tile_meta_bytes(), 0, tiles * L.tile_meta_bytes());
  std::vector<uint8_t> codes(kQgemvStripeRows * in_pad);
  for (size_t stripe = stripe_begin; stripe < stripe_end; ++stripe) {
    std::fill(codes.begin(), codes.end(), 0);
    for (int rr = 0; rr < kQgemvStripeRows; ++rr) {
      const size_t row = stripe * kQgemvStripeRows + rr;
      if (row >= L.out) break;
      const uint8_t* src = W.qweight + row * W.row_bytes();
      for (size_t b = 0; b < W.blocks_per_row(); ++b) unpack_block(src + b * bb, bits, &codes[rr * in_pad + b * 32]);
    }
    for (size_t chunk = 0; chunk < L.chunks; ++chunk) {
      uint8_t* tile = qweight_out + (stripe * L.chunks + chunk) * L.tile_bytes();
      for (int lane = 0; lane < 32; ++lane) {
        uint32_t words[16] = {};
        for (int s = 0; s < 8; ++s)
          for (int i = 0; i < 4; ++i)
            for (int h = 0; h < 2; ++h) {
              const uint8_t code = codes[tile_row(lane, i) * in_pad + chunk * kQgemvChunkCols + tile_col(lane, s, i, h)];
              place_code(words, bits, s, i, h, code);
            }
        for (int wi = 0; wi < 2 * bits; ++wi) store_u32(tile + word_offset(bits, lane, wi), words[wi]);
      }
      uint8_t* meta = meta_out + (stripe * L.chunks + chunk) * L.tile_meta_bytes();
      for (int g = 0; g < gc; ++g) {
        const size_t col0 = chunk * kQgemvChunkCols + static_cast<size_t>(g) * kg;
        for (int r = 0; r < 8; ++r) {
          uint16_t s[2] = {0, 0};
          uint8_t z[2] = {0, 0};
          for (int half = 0; half < 2; ++half) {
            const size_t row = stripe * kQgemvStripeRows + r + 8 * half;
            if (row >= L.out || col0 >= L.in) continue;  // padding: scale 0, zero 0
            const size_t pg = col0 / static_cast<size_t>(L.group);
            s[half] = W.scales[row * W.groups_per_row() + pg];
            z[half] = static_cast<uint8_t>(W.zero(row, pg));
          }
          store_u32(meta + 4 * (r * gc + g), static_cast<uint32_t>(s[0]) | static_cast<uint32_t>(s[1]) << 16);
          meta[32 * gc + 2 * (r * gc + g)] = z[0];
          meta[32 * gc + 2 * (r * gc + g) + 1] = z[1];
        }
      }
    }
  }
}

void qgemv_decode_host(const QgemvLayout& L, const uint8_t* qweight, const uint8_t* meta, float* w) {
  for (size_t stripe = 0; stripe < L.stripes; ++stripe)
    for (size_t chunk = 0; chunk < L.chunks; ++chunk) {
      const uint8_t* tile = qweight + (stripe * L.chunks + chunk) * L.tile_bytes();
      const uint8_t* m = meta + (stripe * L.chunks + chunk) * L.tile_meta_bytes();
      switch (L.bits) {
        case 2: decode_tile_host<2>(L, tile, m, stripe, chunk, w); break;
        case 3: decode_tile_host<3>(L, tile, m, stripe, chunk, w); break;
        case 4: decode_tile_host<4>(L, tile, m, stripe, chunk, w); break;
        default: decode_tile_host<8>(L, tile, m, stripe, chunk, w);
      }
    }
}

int qgemv_auto_warps(const QgemvLayout& L, int batch) {
  // About 16 warps a multiprocessor over the grid (one block per stripe), a power of two
  // (measured on an H100: non-powers of two ran slower, and more warps than ~one resident
  // wave did not help), at most 16, at most one per tile. 128 registers a thread leave 16
  // resident warps a multiprocessor: when at least 2 warps a block fit in one wave, take the
  // largest power of two that does, so no block waits for a second wave (H100 sweep,
  // docs/gpu.md: 160 stripes 16 -> 8 warps and 608 stripes 4 -> 2 warps were 4-24% faster;
  // every other swept shape picks the same count as the rounding rule below).
  (void)batch;
  const double want = 16.0 * current_device_facts().sms / static_cast<double>(std::max<size_t>(L.stripes, 1));
  int nw = 1;
  if (want >= 2.0) {
    while (nw < 16 && nw * 2 <= L.chunks && nw * 2 <= want) nw *= 2;
    return nw;
  }
  while (nw < 16 && nw * 2 <= L.chunks && std::log2(want) >= std::log2(nw * 2.0) - 0.5) nw *= 2;
  return nw;
}

cudaError_t qgemv_launch(const QgemvLayout& L, const uint8_t* qweight, const uint8_t* meta, const __half* x, int batch,
                         void* y, bool y_fp32, cudaStream_t stream, int warps_per_block, bool programmatic) {
  if (batch < 1 || batch > kQgemvMaxBatch || !qweight || !meta || !x || !y || L.stripes == 0 || L.chunks == 0)
    return cudaErrorInvalidValue;
  if (L.stripes > 0x7FFFFFFFu || L.in > 0x7FFFFFFFu || L.out > 0x7FFFFFFFu) return cudaErrorInvalidValue;
  if ((reinterpret_cast<uintptr_t>(qweight) | reinterpret_cast<uintptr_t>(x)) & 15) return cudaErrorInvalidValue;
  const int nw = warps_per_block == 0 ? qgemv_auto_warps(L, batch) : warps_per_block;
  if (nw < 1 || nw > 16) return cudaErrorInvalidValue;
  const int nt = batch <= 8 ? 1 : 2;
  QgemvArgs args;
  args.qweight = qweight, args.meta = meta, args.x = x, args.y = y;
  args.out = static_cast<int>(L.out), args.in = static_cast<int>(L.in), args.batch = batch;
  args.chunks = static_cast<int>(L.chunks);

  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(L.stripes));
  cfg.blockDim = dim3(32 * nw);
  cfg.dynamicSmemBytes = static_cast<size_t>(nw) * 16 * 8 * nt * sizeof(float);
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = programmatic && current_device_facts().cc_major >= 9 ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, pick_kernel(L.bits, L.kernel_group, nt, y_fp32), args);
}

}  // namespace lieq
