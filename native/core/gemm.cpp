// Blocked, multi-threaded matrix products (see gemm.h for the scheme). This file holds the
// scalar references, the portable micro-kernels (the AVX2 ones in gemm_avx2.cpp share their
// signatures and packed layouts), the cache-blocking driver, the thread split and the
// streaming path for skinny products.
#include "gemm.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <new>
#include <type_traits>

#include "cpu_features.h"
#include "simd_kernels.h"
#include "thread_pool.h"

namespace lieq {

void sgemm_ref(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
               const float* B, int ldb, float beta, float* C, int ldc) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double acc = 0;
      for (int k = 0; k < K; ++k) {
        const float a = transA ? A[static_cast<size_t>(k) * lda + i] : A[static_cast<size_t>(i) * lda + k];
        const float b = transB ? B[static_cast<size_t>(j) * ldb + k] : B[static_cast<size_t>(k) * ldb + j];
        acc += static_cast<double>(a) * b;
      }
      float& c = C[static_cast<size_t>(i) * ldc + j];
      c = static_cast<float>(alpha * acc + (beta == 0.0f ? 0.0 : static_cast<double>(beta) * c));
    }
}

namespace {

constexpr int ceil_div(int a, int b) { return (a + b - 1) / b; }
constexpr int round_up(int a, int b) { return ceil_div(a, b) * b; }

// ---- cache blocking ---------------------------------------------------------------------
// Sizes for a Zen-3/Haswell-class core (32 KiB L1d, 512 KiB-1 MiB L2, shared L3):
// a KC×NR B micro-panel stays in L1 while the MC×KC A block streams from L2 and the KC×NC
// B block sits in L3. The driver evens the blocks out (K=257 runs as 2×129, not 256+1).
template <typename T>
struct Blocking;
template <>
struct Blocking<float> {
  static constexpr int MR = 6, NR = 16;  // 12 ymm accumulators
  static constexpr int KC = 256;         // B micro-panel 16 KiB
  static constexpr int MC = 144;         // A block 144 KiB
  static constexpr int NC = 4096;        // B block 4 MiB
};
template <>
struct Blocking<double> {
  static constexpr int MR = 6, NR = 8;
  static constexpr int KC = 256;  // B micro-panel 16 KiB
  static constexpr int MC = 72;   // A block 144 KiB
  static constexpr int NC = 2048;  // B block 4 MiB
};

// Grow-only, 64-byte aligned scratch per thread (pool threads and callers alike), so repeated
// calls do not page-fault fresh packing buffers. `slot` separates buffers used together.
template <typename T>
T* thread_scratch(int slot, size_t n) {
  struct Buffer {
    void* p = nullptr;
    size_t bytes = 0;
    ~Buffer() { std::free(p); }
  };
  thread_local Buffer buffers[3];
  Buffer& b = buffers[slot];
  const size_t want = (n * sizeof(T) + 64 + 63) / 64 * 64;  // +64: the A packer may overrun by 2 elements
  if (b.bytes < want) {
    std::free(b.p);
    b.p = std::aligned_alloc(64, want);
    b.bytes = b.p ? want : 0;
    if (!b.p) throw std::bad_alloc();
  }
  return static_cast<T*>(b.p);
}

// ---- portable micro-kernels and packing (the *_ref twins of gemm_avx2.cpp) ----------------

// c[mr,nr] (row stride ldc) = alpha · a·b + beta · c, a packed [kc][MR], b packed [kc][NR].
// beta == 0: c is not read.
template <typename T, int MR, int NR>
void gemm_tile_ref(int kc, const T* a, const T* b, T* c, size_t ldc, int mr, int nr, T alpha, T beta) {
  T acc[MR][NR] = {};
  for (int k = 0; k < kc; ++k, a += MR, b += NR)
    for (int i = 0; i < MR; ++i) {
      const T ai = a[i];
      for (int j = 0; j < NR; ++j) acc[i][j] += ai * b[j];
    }
  for (int i = 0; i < mr; ++i) {
    T* ci = c + static_cast<size_t>(i) * ldc;
    if (beta == T(0))
      for (int j = 0; j < nr; ++j) ci[j] = alpha * acc[i][j];
    else
      for (int j = 0; j < nr; ++j) ci[j] = alpha * acc[i][j] + beta * ci[j];
  }
}

// Packs `rows` × kc elements into W-wide panels dst[panel][k][W] (zero padded), converting Tin
// to T. k_contig: element (r,k) is src[r*ld + k]; else src[k*ld + r].
template <int W, typename Tin, typename T>
void pack_ref(bool k_contig, const Tin* src, size_t ld, int rows, int kc, T* dst) {
  for (int r0 = 0; r0 < rows; r0 += W, dst += static_cast<size_t>(W) * kc) {
    const int w = std::min(W, rows - r0);
    for (int k = 0; k < kc; ++k) {
      T* d = dst + static_cast<size_t>(k) * W;
      if (k_contig)
        for (int i = 0; i < w; ++i) d[i] = static_cast<T>(src[static_cast<size_t>(r0 + i) * ld + k]);
      else
        for (int i = 0; i < w; ++i) d[i] = static_cast<T>(src[static_cast<size_t>(k) * ld + r0 + i]);
      for (int i = w; i < W; ++i) d[i] = T(0);
    }
  }
}

// Skinny products: out[i*4 + j] = Σ_k a[i*lda + k] · b_j[k] for i < ma (≤ 2), j < 4, where
// b_j = b + min(j, nb-1)*ldb (columns past nb repeat the last one; the caller drops them).
void sdot_rows_ref(int K, int ma, const float* a, size_t lda, int nb, const float* b, size_t ldb, float* out) {
  for (int i = 0; i < ma; ++i)
    for (int j = 0; j < 4; ++j) {
      const float* bj = b + static_cast<size_t>(std::min(j, nb - 1)) * ldb;
      const float* ai = a + static_cast<size_t>(i) * lda;
      float acc = 0;
      for (int k = 0; k < K; ++k) acc += ai[k] * bj[k];
      out[i * 4 + j] = acc;
    }
}

// out[i*16 + j] += Σ_k a[i*a_rs + k*a_cs] · b[k*ldb + j] for i < ma (≤ 4), j < 16.
void saxpy_strip16_ref(int K, int ma, const float* a, size_t a_rs, size_t a_cs, const float* b, size_t ldb,
                       float* out) {
  for (int k = 0; k < K; ++k) {
    const float* bk = b + static_cast<size_t>(k) * ldb;
    for (int i = 0; i < ma; ++i) {
      const float aik = a[i * a_rs + k * a_cs];
      for (int j = 0; j < 16; ++j) out[i * 16 + j] += aik * bk[j];
    }
  }
}

// ---- kernel tables ------------------------------------------------------------------------

template <typename T>
using TileFn = void (*)(int kc, const T* a, const T* b, T* c, size_t ldc, int mr, int nr, T alpha, T beta);
template <typename Tin, typename T>
using PackFn = void (*)(bool k_contig, const Tin* src, size_t ld, int rows, int kc, T* dst);

template <typename TA, typename TB, typename T>
struct Kernels {
  TileFn<T> tile;
  PackFn<TA, T> pack_a;  // MR-tall panels of op(A)
  PackFn<TB, T> pack_b;  // NR-wide panels of op(B)
};

bool use_simd() {
#if defined(LIEQ_AVX2) || defined(LIEQ_NEON)
  return simd_usable();
#else
  return false;
#endif
}

Kernels<float, float, float> float_kernels(bool simd) {
  using Bk = Blocking<float>;
#if defined(LIEQ_AVX2)
  if (simd) return {avx2::sgemm_tile_6x16, avx2::sgemm_pack_a6, avx2::sgemm_pack_b16};
#endif
#if defined(LIEQ_NEON)  // NEON tile over the portable packed layouts
  if (simd) return {neon::sgemm_tile_6x16, pack_ref<Bk::MR, float, float>, pack_ref<Bk::NR, float, float>};
#endif
  (void)simd;
  return {gemm_tile_ref<float, Bk::MR, Bk::NR>, pack_ref<Bk::MR, float, float>, pack_ref<Bk::NR, float, float>};
}

template <typename TA, typename TB>
Kernels<TA, TB, double> double_kernels(bool simd) {
  using Bk = Blocking<double>;
  Kernels<TA, TB, double> k{gemm_tile_ref<double, Bk::MR, Bk::NR>, pack_ref<Bk::MR, TA, double>,
                            pack_ref<Bk::NR, TB, double>};
#if defined(LIEQ_AVX2)
  if (simd) {
    k.tile = avx2::dgemm_tile_6x8;
    if constexpr (std::is_same_v<TA, float>) k.pack_a = avx2::dgemm_pack_a6_f32;
    if constexpr (std::is_same_v<TB, float>) k.pack_b = avx2::dgemm_pack_b8_f32;
  }
#endif
#if defined(LIEQ_NEON)
  if (simd) k.tile = neon::dgemm_tile_6x8;
#endif
  (void)simd;
  return k;
}

// ---- blocked driver -------------------------------------------------------------------------

// One thread's block of C, the classic five loops around the micro-kernel.
template <typename TA, typename TB, typename T>
void gemm_serial(const Kernels<TA, TB, T>& kn, bool ta, bool tb, int M, int N, int K, T alpha, const TA* A,
                 size_t lda, const TB* B, size_t ldb, T beta, T* C, size_t ldc) {
  using Bk = Blocking<T>;
  const int kc_step = ceil_div(K, ceil_div(K, Bk::KC));
  const int mc_step = round_up(ceil_div(M, ceil_div(M, Bk::MC)), Bk::MR);
  const int nc_step = round_up(ceil_div(N, ceil_div(N, Bk::NC)), Bk::NR);
  T* bp = thread_scratch<T>(0, static_cast<size_t>(nc_step) * kc_step);
  T* ap = thread_scratch<T>(1, static_cast<size_t>(mc_step) * kc_step);
  for (int jc = 0; jc < N; jc += nc_step) {
    const int nc = std::min(nc_step, N - jc);
    for (int pc = 0; pc < K; pc += kc_step) {
      const int kc = std::min(kc_step, K - pc);
      kn.pack_b(tb, tb ? B + jc * ldb + pc : B + pc * ldb + jc, ldb, nc, kc, bp);
      const T beta_k = pc == 0 ? beta : T(1);  // later K blocks accumulate
      for (int ic = 0; ic < M; ic += mc_step) {
        const int mc = std::min(mc_step, M - ic);
        kn.pack_a(!ta, ta ? A + pc * lda + ic : A + ic * lda + pc, lda, mc, kc, ap);
        for (int jr = 0; jr < nc; jr += Bk::NR)
          for (int ir = 0; ir < mc; ir += Bk::MR)
            kn.tile(kc, ap + static_cast<size_t>(ir) * kc, bp + static_cast<size_t>(jr) * kc,
                    C + (ic + ir) * ldc + jc + jr, ldc, std::min(Bk::MR, mc - ir), std::min(Bk::NR, nc - jr), alpha,
                    beta_k);
      }
    }
  }
}

// Splits C into a tm × tn grid of independent blocks, one per thread. The grid minimises a
// per-thread time model: padded compute area plus packing (B once per block, A once per NC).
struct Grid {
  int tm = 1, tn = 1;
};

template <typename T>
Grid choose_grid(int M, int N, int K, int threads) {
  using Bk = Blocking<T>;
  const int mp = ceil_div(M, Bk::MR), np = ceil_div(N, Bk::NR);
  // Below ~4 Mflop a thread wake-up costs more than it saves.
  if (2.0 * M * N * K < 4e6) threads = 1;
  Grid best;
  double best_cost = std::numeric_limits<double>::infinity();
  for (int tm = 1; tm <= threads; ++tm) {
    if (threads % tm) continue;
    const int tn = threads / tm;
    if (tm > mp || tn > np) continue;
    const double rows = static_cast<double>(ceil_div(mp, tm)) * Bk::MR;
    const double cols = static_cast<double>(ceil_div(np, tn)) * Bk::NR;
    const double compute = rows * cols / 16.0;  // ~32 flop/cycle/core (f32)
    const double pack = cols * 0.5 + rows * 0.5 * std::ceil(cols / Bk::NC);
    const double cost = compute + pack;
    if (cost < best_cost) best_cost = cost, best = {tm, tn};
  }
  if (best_cost == std::numeric_limits<double>::infinity() && threads > 1)
    return choose_grid<T>(M, N, K, threads - 1);  // e.g. 3 threads but only 2 panels
  return best;
}

template <typename TA, typename TB, typename T>
void gemm_blocked(const Kernels<TA, TB, T>& kn, bool ta, bool tb, int M, int N, int K, T alpha, const TA* A,
                  size_t lda, const TB* B, size_t ldb, T beta, T* C, size_t ldc) {
  using Bk = Blocking<T>;
  const Grid g = choose_grid<T>(M, N, K, get_num_threads());
  const int mp = ceil_div(M, Bk::MR), np = ceil_div(N, Bk::NR);
  auto block = [&](int t) {
    const int pi = t / g.tn, pj = t % g.tn;
    const int i0 = std::min(M, mp * pi / g.tm * Bk::MR), i1 = std::min(M, mp * (pi + 1) / g.tm * Bk::MR);
    const int j0 = std::min(N, np * pj / g.tn * Bk::NR), j1 = std::min(N, np * (pj + 1) / g.tn * Bk::NR);
    if (i0 >= i1 || j0 >= j1) return;
    gemm_serial(kn, ta, tb, i1 - i0, j1 - j0, K, alpha, ta ? A + i0 : A + i0 * lda, lda, tb ? B + j0 * ldb : B + j0,
                ldb, beta, C + i0 * ldc + j0, ldc);
  };
  const int blocks = g.tm * g.tn;
  if (blocks == 1) {
    block(0);
    return;
  }
  parallel_for(static_cast<size_t>(blocks), 1, [&](size_t b, size_t e, int) {
    for (size_t t = b; t < e; ++t) block(static_cast<int>(t));
  });
}

template <typename T>
void scale_c(int M, int N, T beta, T* C, size_t ldc) {
  for (int i = 0; i < M; ++i) {
    T* ci = C + i * ldc;
    if (beta == T(0))
      std::fill(ci, ci + N, T(0));
    else
      for (int j = 0; j < N; ++j) ci[j] *= beta;
  }
}

// ---- streaming path for skinny products ----------------------------------------------------
// C'(i,j) = Σ_k A'(i,k) B'(k,j) for m ≤ kSkinny* rows; (M small) or the transposed problem
// Cᵀ = op(B)ᵀ op(A)ᵀ (N small). The long operand is read once, straight from memory.
// Up to this many rows the streaming kernels beat packing the long operand: the dot form
// (B' contiguous in k) keeps 2×4 dot products in registers and re-reads 4 columns from L1/L2
// per row pair; the axpy form re-reads a 16-column strip per 4 rows.
constexpr int kSkinnyDot = 8;
constexpr int kSkinnyAxpy = 8;
constexpr int kSkinnyMax = std::max(kSkinnyDot, kSkinnyAxpy);

struct Strided {
  const float* p;
  size_t rs, cs;  // element (r, c) is p[r*rs + c*cs]
};

void write_out(float v, float alpha, float beta, float* c) { *c = beta == 0.0f ? alpha * v : alpha * v + beta * *c; }

void gemm_skinny(bool simd, int m, int n, int K, float alpha, Strided a, Strided b, float beta, float* C, size_t c_rs,
                 size_t c_cs) {
  auto dot = sdot_rows_ref;
  auto axpy = saxpy_strip16_ref;
#if defined(LIEQ_AVX2)
  if (simd) dot = avx2::sdot_rows, axpy = avx2::saxpy_strip16;
#endif
#if defined(LIEQ_NEON)
  if (simd) dot = neon::sdot_rows, axpy = neon::saxpy_strip16;
#endif
  (void)simd;
  if (b.rs == 1) {
    // Dot form: columns of B' are contiguous in k (the y = x·Wᵀ case). Rows of A' must be too.
    if (a.cs != 1) {
      float* t = thread_scratch<float>(2, static_cast<size_t>(m) * K);
      for (int i = 0; i < m; ++i)
        for (int k = 0; k < K; ++k) t[static_cast<size_t>(i) * K + k] = a.p[i * a.rs + k * a.cs];
      a = {t, static_cast<size_t>(K), 1};
    }
    const size_t groups = static_cast<size_t>(ceil_div(n, 4));
    const size_t grain = std::max<size_t>(1, 4096 / (static_cast<size_t>(K) * m + 1));
    parallel_for(groups, grain, [&](size_t gb, size_t ge, int) {
      float out[2 * 4];
      for (size_t g = gb; g < ge; ++g) {
        const int j0 = static_cast<int>(g) * 4, nb = std::min(4, n - j0);
        for (int i = 0; i < m; i += 2) {
          const int ma = std::min(2, m - i);
          dot(K, ma, a.p + i * a.rs, a.rs, nb, b.p + j0 * b.cs, b.cs, out);
          for (int r = 0; r < ma; ++r)
            for (int j = 0; j < nb; ++j) write_out(out[r * 4 + j], alpha, beta, C + (i + r) * c_rs + (j0 + j) * c_cs);
        }
      }
    });
    return;
  }
  // Axpy form: rows of B' are contiguous in j (x·B with B [K,N]); 16-column strips.
  const size_t strips = static_cast<size_t>(ceil_div(n, 16));
  const size_t grain = std::max<size_t>(1, 4096 / (static_cast<size_t>(K) * m + 1));
  parallel_for(strips, grain, [&](size_t sb, size_t se, int) {
    float out[kSkinnyMax * 16];
    for (size_t s = sb; s < se; ++s) {
      const int j0 = static_cast<int>(s) * 16, nb = std::min(16, n - j0);
      std::fill(out, out + m * 16, 0.0f);
      if (nb == 16) {
        for (int i = 0; i < m; i += 4)
          axpy(K, std::min(4, m - i), a.p + i * a.rs, a.rs, a.cs, b.p + j0, b.rs, out + i * 16);
      } else {  // ragged last strip: plain loop (the kernel would read past the row)
        for (int k = 0; k < K; ++k)
          for (int i = 0; i < m; ++i) {
            const float aik = a.p[i * a.rs + k * a.cs];
            for (int j = 0; j < nb; ++j) out[i * 16 + j] += aik * b.p[k * b.rs + j0 + j];
          }
      }
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < nb; ++j) write_out(out[i * 16 + j], alpha, beta, C + i * c_rs + (j0 + j) * c_cs);
    }
  });
}

void sgemm_dispatch(bool simd, bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
                    const float* B, int ldb, float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  const size_t la = static_cast<size_t>(lda), lb = static_cast<size_t>(ldb), lc = static_cast<size_t>(ldc);
  if (K <= 0 || alpha == 0.0f) {
    scale_c(M, N, beta, C, lc);
    return;
  }
  if (M <= (transB ? kSkinnyDot : kSkinnyAxpy)) {
    const Strided a{A, transA ? 1 : la, transA ? la : 1}, b{B, transB ? 1 : lb, transB ? lb : 1};
    gemm_skinny(simd, M, N, K, alpha, a, b, beta, C, lc, 1);
    return;
  }
  if (N <= (transA ? kSkinnyAxpy : kSkinnyDot)) {  // Cᵀ = op(B)ᵀ · op(A)ᵀ
    const Strided a{B, transB ? lb : 1, transB ? 1 : lb}, b{A, transA ? la : 1, transA ? 1 : la};
    gemm_skinny(simd, N, M, K, alpha, a, b, beta, C, 1, lc);
    return;
  }
  gemm_blocked(float_kernels(simd), transA, transB, M, N, K, alpha, A, la, B, lb, beta, C, lc);
}

template <typename TA, typename TB>
void dgemm_impl(bool transA, bool transB, int M, int N, int K, double alpha, const TA* A, int lda, const TB* B,
                int ldb, double beta, double* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  const size_t lc = static_cast<size_t>(ldc);
  if (K <= 0 || alpha == 0.0) {
    scale_c(M, N, beta, C, lc);
    return;
  }
  gemm_blocked(double_kernels<TA, TB>(use_simd()), transA, transB, M, N, K, alpha, A, static_cast<size_t>(lda), B,
               static_cast<size_t>(ldb), beta, C, lc);
}

// Upper block triangle through gemm calls on block rows, then mirror.
template <typename TA, typename T, typename Gemm>
void syrk_impl(bool trans, int n, int k, T alpha, const TA* A, int lda, T beta, T* C, int ldc, Gemm gemm) {
  if (n <= 0) return;
  const size_t la = static_cast<size_t>(lda), lc = static_cast<size_t>(ldc);
  // Block rows of 256: the wasted lower half of each diagonal block is ≤ 256/n of the work.
  const int nb = n <= 512 ? n : 256;
  for (int i0 = 0; i0 < n; i0 += nb) {
    const int ib = std::min(nb, n - i0);
    T* c = C + i0 * lc + i0;
    if (trans)
      gemm(true, false, ib, n - i0, k, alpha, A + i0, lda, A + i0, lda, beta, c, ldc);
    else
      gemm(false, true, ib, n - i0, k, alpha, A + i0 * la, lda, A + i0 * la, lda, beta, c, ldc);
  }
  parallel_for(static_cast<size_t>(n), 64, [&](size_t b, size_t e, int) {
    for (size_t i = b; i < e; ++i)
      for (size_t j = 0; j < i; ++j) C[i * lc + j] = C[j * lc + i];
  });
}

}  // namespace

void sgemm(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
           int ldb, float beta, float* C, int ldc) {
  sgemm_dispatch(use_simd(), transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void sgemm_portable(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
                    const float* B, int ldb, float beta, float* C, int ldc) {
  sgemm_dispatch(false, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void dgemm(bool transA, bool transB, int M, int N, int K, double alpha, const float* A, int lda, const float* B,
           int ldb, double beta, double* C, int ldc) {
  dgemm_impl(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void dgemm(bool transA, bool transB, int M, int N, int K, double alpha, const float* A, int lda, const double* B,
           int ldb, double beta, double* C, int ldc) {
  dgemm_impl(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void dgemm(bool transA, bool transB, int M, int N, int K, double alpha, const double* A, int lda, const float* B,
           int ldb, double beta, double* C, int ldc) {
  dgemm_impl(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void dgemm(bool transA, bool transB, int M, int N, int K, double alpha, const double* A, int lda, const double* B,
           int ldb, double beta, double* C, int ldc) {
  dgemm_impl(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void ssyrk(bool trans, int n, int k, float alpha, const float* A, int lda, float beta, float* C, int ldc) {
  syrk_impl(trans, n, k, alpha, A, lda, beta, C, ldc,
            [](bool ta, bool tb, int M, int N, int K, float al, const float* a, int la, const float* b, int lb,
               float be, float* c, int lc) { sgemm(ta, tb, M, N, K, al, a, la, b, lb, be, c, lc); });
}

void dsyrk(bool trans, int n, int k, double alpha, const float* A, int lda, double beta, double* C, int ldc) {
  syrk_impl(trans, n, k, alpha, A, lda, beta, C, ldc,
            [](bool ta, bool tb, int M, int N, int K, double al, const float* a, int la, const float* b, int lb,
               double be, double* c, int lc) { dgemm(ta, tb, M, N, K, al, a, la, b, lb, be, c, lc); });
}

void dsyrk(bool trans, int n, int k, double alpha, const double* A, int lda, double beta, double* C, int ldc) {
  syrk_impl(trans, n, k, alpha, A, lda, beta, C, ldc,
            [](bool ta, bool tb, int M, int N, int K, double al, const double* a, int la, const double* b, int lb,
               double be, double* c, int lc) { dgemm(ta, tb, M, N, K, al, a, la, b, lb, be, c, lc); });
}

}  // namespace lieq
