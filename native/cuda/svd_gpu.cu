// Truncated SVD and Gram spectra with the products on the GPU (interface and contracts:
// svd_gpu.h). One tiled GEMM kernel serves every product: fp32 FFMA for the products with A
// in the randomised SVD (as the CPU sgemm), f64 sums of exact f64 products of the f32 entries
// for the Gram matrices and Bᵀ = AᵀQ (as the CPU dgemm/dsyrk). Long reductions are split over
// K into partial tiles that a second kernel adds in a fixed order, so results are
// deterministic. The small dense work (Cholesky of (k+p)², eigen-decompositions, the vectors'
// last products) stays on the host with the CPU code.
#include "svd_gpu.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "../core/gemm.h"
#include "../core/svd_eigen.h"
#include "../core/svd_qr.h"

namespace lieq {
namespace {

void cuda_check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // clear a sticky launch error so the next call starts clean
  throw std::runtime_error(std::string("svd (GPU): ") + what + ": " + cudaGetErrorString(e));
}
#define SVD_CUDA(call) cuda_check((call), #call)

// Device memory, freed on scope exit (also when a later step throws).
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) { grow_discarding(n); }
  ~DeviceBuffer() {
    if (p_) cudaFree(p_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  // At least n elements; the old contents are not kept.
  void grow_discarding(size_t n) {
    if (n <= n_) return;
    if (p_) cudaFree(p_);
    p_ = nullptr;
    n_ = 0;
    SVD_CUDA(cudaMalloc(reinterpret_cast<void**>(&p_), std::max<size_t>(n, 1) * sizeof(T)));
    n_ = n;
    // NaN bytes (0xFF): a kernel result read before it was written shows up as NaN, never as
    // a stale plausible value. The memset runs on the legacy default stream, which the
    // blocking stream of Gpu waits for.
    SVD_CUDA(cudaMemset(p_, 0xFF, n * sizeof(T)));
  }
  T* get() const { return p_; }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

// ---- kernels --------------------------------------------------------------------------------

constexpr int kTile = 64;    // C tile kTile × kTile per block
constexpr int kDepth = 16;   // K step held in shared memory
constexpr int kThreads = 256;  // 16 × 16 threads, 4 × 4 outputs each (rows ty + 16i, cols tx + 16j)

// P[z] (dense M×N, Acc) = Σ_{k in split z} op(A)[i,k]·op(B)[k,j]. op(A) [M,K]: A [M,lda] or,
// with ta, A [K,lda] read transposed; op(B) [K,N]: B [K,ldb] or, with tb, [N,ldb] transposed.
// Products and sums in Acc: float → fp32 FFMA; double → the f32×f32 products are exact.
// lower_only: tiles above the diagonal are skipped (symmetric results; see reduce_splits).
template <typename TA, typename TB, typename Acc>
__global__ void __launch_bounds__(kThreads)
    gemm_partial_kernel(int M, int N, int K, int k_chunk, const TA* __restrict__ A, int lda, bool ta,
                        const TB* __restrict__ B, int ldb, bool tb, bool lower_only, Acc* __restrict__ P) {
  if (lower_only && blockIdx.x > blockIdx.y) return;
  const int n0 = blockIdx.x * kTile, m0 = blockIdx.y * kTile;
  const int kb = blockIdx.z * k_chunk, ke = min(K, kb + k_chunk);
  // +1 column: the transposing stores (consecutive threads along k) spread over the banks.
  __shared__ TA As[kDepth][kTile + 1];
  __shared__ TB Bs[kDepth][kTile + 1];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  Acc acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = Acc(0);

  for (int k0 = kb; k0 < ke; k0 += kDepth) {
    // Global reads run along the stored rows (coalesced) whichever way the tile is used.
    for (int e = tid; e < kTile * kDepth; e += kThreads) {
      const int r = ta ? e % kTile : e / kDepth, c = ta ? e / kTile : e % kDepth;
      const int gm = m0 + r, gk = k0 + c;
      TA v = TA(0);
      if (gm < M && gk < ke) v = ta ? A[static_cast<size_t>(gk) * lda + gm] : A[static_cast<size_t>(gm) * lda + gk];
      As[c][r] = v;
    }
    for (int e = tid; e < kTile * kDepth; e += kThreads) {
      const int r = tb ? e / kDepth : e % kTile, c = tb ? e % kDepth : e / kTile;
      const int gn = n0 + r, gk = k0 + c;
      TB v = TB(0);
      if (gn < N && gk < ke) v = tb ? B[static_cast<size_t>(gn) * ldb + gk] : B[static_cast<size_t>(gk) * ldb + gn];
      Bs[c][r] = v;
    }
    __syncthreads();
#pragma unroll
    for (int c = 0; c < kDepth; ++c) {
      Acc a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = static_cast<Acc>(As[c][ty + 16 * i]);
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = static_cast<Acc>(Bs[c][tx + 16 * j]);
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fma(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
  Acc* out = P + static_cast<size_t>(blockIdx.z) * M * N;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int gm = m0 + ty + 16 * i, gn = n0 + tx + 16 * j;
      if (gm < M && gn < N) out[static_cast<size_t>(gm) * N + gn] = acc[i][j];
    }
}

// C[i,j] = Σ_z P[z][i,j] in split order, converted to TOut. mirror (M = N, lower tiles only
// computed): the upper triangle takes its mirror image, so C is exactly symmetric.
template <typename Acc, typename TOut>
__global__ void reduce_splits_kernel(int M, int N, int splits, const Acc* __restrict__ P, bool mirror,
                                     TOut* __restrict__ C, int ldc) {
  const size_t total = static_cast<size_t>(M) * N, plane = total;
  for (size_t idx = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int i = static_cast<int>(idx / N), j = static_cast<int>(idx % N);
    const size_t src = mirror && j > i ? static_cast<size_t>(j) * N + i : idx;
    Acc s = P[src];
    for (int z = 1; z < splits; ++z) s += P[z * plane + src];
    C[static_cast<size_t>(i) * ldc + j] = static_cast<TOut>(s);
  }
}

// *flag |= 1 when x holds a NaN or ±Inf (exponent bits all ones; immune to fast-math).
__global__ void flag_nonfinite_kernel(const float* __restrict__ x, size_t n, unsigned int* flag) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    if ((__float_as_uint(x[i]) & 0x7f800000u) == 0x7f800000u) {
      atomicOr(flag, 1u);
      return;
    }
}

// ---- host side ------------------------------------------------------------------------------

// One call's stream, device facts and split-K workspace.
class Gpu {
 public:
  Gpu() {
    const std::string why = svd_gpu_unavailable_reason();
    if (!why.empty()) throw std::runtime_error("svd (GPU): " + why);
    int dev = 0;
    SVD_CUDA(cudaGetDevice(&dev));
    SVD_CUDA(cudaDeviceGetAttribute(&sms_, cudaDevAttrMultiProcessorCount, dev));
    // A blocking stream: it waits for the legacy default stream, where DeviceBuffer poisons.
    SVD_CUDA(cudaStreamCreate(&stream_));
  }
  ~Gpu() {
    if (stream_) cudaStreamDestroy(stream_);
  }
  Gpu(const Gpu&) = delete;
  Gpu& operator=(const Gpu&) = delete;

  cudaStream_t stream() const { return stream_; }
  void sync() { SVD_CUDA(cudaStreamSynchronize(stream_)); }

  // C [M, ldc] (TOut) = op(A)·op(B) (see gemm_partial_kernel); symmetric_lower (M = N and
  // op(B) = op(A)ᵀ) computes the lower tiles only and mirrors them.
  template <typename TA, typename TB, typename Acc, typename TOut>
  void gemm(bool ta, bool tb, int M, int N, int K, const TA* A, int lda, const TB* B, int ldb, TOut* C, int ldc,
            bool symmetric_lower = false) {
    if (M <= 0 || N <= 0) return;
    const int mt = (M + kTile - 1) / kTile, nt = (N + kTile - 1) / kTile;
    if (mt > 65535) throw std::invalid_argument("svd (GPU): a product with more than 4 million rows");
    const int64_t tiles = symmetric_lower ? static_cast<int64_t>(mt) * (mt + 1) / 2 : static_cast<int64_t>(mt) * nt;
    // Split K until ~2 blocks per multiprocessor, keeping each split ≥ 256 deep.
    const int by_depth = std::max(1, (K + 255) / 256);
    int splits = static_cast<int>(std::min<int64_t>(std::max<int64_t>(1, (2 * sms_ + tiles - 1) / tiles), by_depth));
    splits = std::min(splits, 64);
    int k_chunk = (std::max(K, 1) + splits - 1) / splits;
    k_chunk = (k_chunk + kDepth - 1) / kDepth * kDepth;
    splits = std::max(1, (K + k_chunk - 1) / k_chunk);
    const size_t plane = static_cast<size_t>(M) * N;
    partials_.grow_discarding(static_cast<size_t>(splits) * plane * sizeof(Acc));
    Acc* P = reinterpret_cast<Acc*>(partials_.get());
    if (K == 0) {
      SVD_CUDA(cudaMemsetAsync(P, 0, plane * sizeof(Acc), stream_));
    } else {
      gemm_partial_kernel<TA, TB, Acc><<<dim3(nt, mt, splits), kThreads, 0, stream_>>>(
          M, N, K, k_chunk, A, lda, ta, B, ldb, tb, symmetric_lower, P);
      SVD_CUDA(cudaGetLastError());
    }
    const int blocks = static_cast<int>(std::min<size_t>((plane + 255) / 256, static_cast<size_t>(sms_) * 8));
    reduce_splits_kernel<Acc, TOut><<<blocks, 256, 0, stream_>>>(M, N, splits, P, symmetric_lower, C, ldc);
    SVD_CUDA(cudaGetLastError());
  }

 private:
  cudaStream_t stream_ = nullptr;
  int sms_ = 1;
  DeviceBuffer<unsigned char> partials_;
};

template <typename T>
void upload(Gpu& g, T* dst, const T* src, size_t n) {
  SVD_CUDA(cudaMemcpyAsync(dst, src, n * sizeof(T), cudaMemcpyHostToDevice, g.stream()));
}
template <typename T>
void download(Gpu& g, T* dst, const T* src, size_t n) {
  SVD_CUDA(cudaMemcpyAsync(dst, src, n * sizeof(T), cudaMemcpyDeviceToHost, g.stream()));
  g.sync();
}

// A [rows, ld] (cols used) → dense [rows, cols] on the device; throws `what`: ... on NaN/Inf
// (the CPU functions' message).
void upload_checked(Gpu& g, DeviceBuffer<float>& dst, const float* A, int rows, int cols, int ld, const char* what) {
  const size_t n = static_cast<size_t>(rows) * cols;
  dst.grow_discarding(n);
  SVD_CUDA(cudaMemcpy2DAsync(dst.get(), static_cast<size_t>(cols) * sizeof(float), A, static_cast<size_t>(ld) * sizeof(float),
                             static_cast<size_t>(cols) * sizeof(float), rows, cudaMemcpyHostToDevice, g.stream()));
  DeviceBuffer<unsigned int> flag(1);
  SVD_CUDA(cudaMemsetAsync(flag.get(), 0, sizeof(unsigned int), g.stream()));
  flag_nonfinite_kernel<<<1024, 256, 0, g.stream()>>>(dst.get(), n, flag.get());
  SVD_CUDA(cudaGetLastError());
  unsigned int bad = 0;
  download(g, &bad, flag.get(), 1);
  if (bad) throw std::runtime_error(std::string(what) + ": the matrix has NaN or Inf entries");
}

// The smaller Gram matrix of A [m,n] (dense on the device), f64, on the host: AᵀA (r = n)
// when m ≥ n, else AAᵀ (r = m). Returns r.
int gram_on_gpu(Gpu& g, int m, int n, const float* dA, std::vector<double>& G) {
  const bool tall = m >= n;
  const int r = tall ? n : m;
  DeviceBuffer<double> dG(static_cast<size_t>(r) * r);
  if (tall)
    g.gemm<float, float, double, double>(true, false, n, n, m, dA, n, dA, n, dG.get(), n, true);
  else
    g.gemm<float, float, double, double>(false, true, m, m, n, dA, n, dA, n, dG.get(), m, true);
  G.resize(static_cast<size_t>(r) * r);
  download(g, G.data(), dG.get(), G.size());
  return r;
}

// The eigenvectors in rows of `vecs` [r,r] → the columns of W [r,k] (as svd.cpp).
std::vector<double> leading_columns(const std::vector<double>& vecs, int r, int k) {
  std::vector<double> W(static_cast<size_t>(r) * k);
  for (size_t i = 0; i < static_cast<size_t>(k); ++i)
    for (size_t row = 0; row < static_cast<size_t>(r); ++row) W[row * k + i] = vecs[i * r + row];
  return W;
}

// The side derived from the other one's vectors: X [o,k] = A·v_i (or Aᵀ·u_i) divided by σ_i,
// null columns dropped, re-orthonormalised. The same steps (and threshold) as derived_side in
// native/core/svd.cpp, whose helpers are file-local there.
void derived_side(int o, int k, const std::vector<double>& X, const double* S, float* out) {
  constexpr double kNullTol = 1e-6;
  const double tol = S[0] * kNullTol;
  for (size_t r = 0; r < static_cast<size_t>(o); ++r)
    for (size_t i = 0; i < static_cast<size_t>(k); ++i)
      out[r * k + i] = S[i] > tol ? static_cast<float>(X[r * k + i] / S[i]) : 0.0f;
  orthonormalize_columns(o, k, out, k);
}

// Device buffers of the randomised SVD's re-orthonormalisation for panels up to rows × l.
struct QrWork {
  DeviceBuffer<float> product, original;
  DeviceBuffer<double> gram, rinv;
  std::vector<double> G, R, Rinv;
  QrWork(int rows, int l)
      : product(static_cast<size_t>(rows) * l), original(static_cast<size_t>(rows) * l),
        gram(static_cast<size_t>(l) * l), rinv(static_cast<size_t>(l) * l) {}
};

// One CholeskyQR pass: G = YᵀY on the GPU (f64), G = RᵀR and R⁻¹ on the host, Y ← Y·R⁻¹ on the
// GPU (f64 sums, rounded to f32). The same arithmetic, breakdown test and max|G − I| as
// cholesky_qr_pass in native/core/svd_qr.cpp (file-local there).
bool cholesky_qr_pass(Gpu& g, int m, int n, float* dY, QrWork& w, double& max_dev) {
  const size_t N = static_cast<size_t>(n);
  w.G.assign(N * N, 0.0);
  w.R.assign(N * N, 0.0);
  w.Rinv.assign(N * N, 0.0);
  g.gemm<float, float, double, double>(true, false, n, n, m, dY, n, dY, n, w.gram.get(), n, true);
  download(g, w.G.data(), w.gram.get(), N * N);
  const std::vector<double>& G = w.G;
  std::vector<double>& R = w.R;
  std::vector<double>& Rinv = w.Rinv;
  max_dev = 0;
  for (size_t i = 0; i < N; ++i)
    for (size_t j = 0; j < N; ++j) max_dev = std::max(max_dev, std::fabs(G[i * N + j] - (i == j ? 1.0 : 0.0)));
  for (size_t j = 0; j < N; ++j) {  // upper R, row-major
    double d = G[j * N + j];
    for (size_t p = 0; p < j; ++p) d -= R[p * N + j] * R[p * N + j];
    if (!(d > 1e-14 * G[j * N + j])) return false;
    const double rjj = std::sqrt(d);
    R[j * N + j] = rjj;
    for (size_t c = j + 1; c < N; ++c) {
      double x = G[j * N + c];
      for (size_t p = 0; p < j; ++p) x -= R[p * N + j] * R[p * N + c];
      R[j * N + c] = x / rjj;
    }
  }
  for (size_t c = 0; c < N; ++c) {  // R⁻¹ column by column (back substitution)
    for (size_t i = c + 1; i-- > 0;) {
      double x = i == c ? 1.0 : 0.0;
      for (size_t p = i + 1; p <= c; ++p) x -= R[i * N + p] * Rinv[p * N + c];
      Rinv[i * N + c] = x / R[i * N + i];
    }
  }
  upload(g, w.rinv.get(), Rinv.data(), N * N);
  g.gemm<float, double, double, float>(false, false, m, n, n, dY, n, w.rinv.get(), n, w.product.get(), n);
  SVD_CUDA(cudaMemcpyAsync(dY, w.product.get(), static_cast<size_t>(m) * N * sizeof(float), cudaMemcpyDeviceToDevice,
                           g.stream()));
  return true;
}

// orthonormalize_columns (svd_qr.h) of the device panel Y [m,n]: CholeskyQR2 on the GPU; when
// it breaks down or leaves Y far from orthonormal, the CPU function (whose Householder
// fallback handles rank deficiency) on the original columns.
void orthonormalize_gpu(Gpu& g, int m, int n, float* dY, QrWork& w) {
  const size_t count = static_cast<size_t>(m) * n;
  SVD_CUDA(cudaMemcpyAsync(w.original.get(), dY, count * sizeof(float), cudaMemcpyDeviceToDevice, g.stream()));
  double dev1 = 0, dev2 = 0;
  if (cholesky_qr_pass(g, m, n, dY, w, dev1) && cholesky_qr_pass(g, m, n, dY, w, dev2) && dev2 < 0.5) return;
  std::vector<float> host(count);
  download(g, host.data(), w.original.get(), count);
  orthonormalize_columns(m, n, host.data(), n);
  upload(g, dY, host.data(), count);
}

void svd_exact_gpu(Gpu& g, int m, int n, const float* dA, int k, bool vectors, double* S, float* U, float* V) {
  std::vector<double> G;
  const int r = gram_on_gpu(g, m, n, dA, G);
  std::vector<double> w(static_cast<size_t>(r)), vecs(vectors ? static_cast<size_t>(r) * r : 0);
  sym_eigen(r, G.data(), w.data(), vectors ? vecs.data() : nullptr);
  for (int i = 0; i < k; ++i) S[i] = std::sqrt(std::max(w[i], 0.0));
  if (!vectors) return;
  const bool tall = m >= n;
  const std::vector<double> Wk = leading_columns(vecs, r, k);
  float* known = tall ? V : U;
  for (size_t x = 0; x < Wk.size(); ++x) known[x] = static_cast<float>(Wk[x]);
  const int o = tall ? m : n;
  DeviceBuffer<double> dW(Wk.size()), dX(static_cast<size_t>(o) * k);
  upload(g, dW.get(), Wk.data(), Wk.size());
  // X = A·W (tall: W holds V) or Aᵀ·W (wide: W holds U), f64 sums.
  g.gemm<float, double, double, double>(!tall, false, o, k, r, dA, n, dW.get(), k, dX.get(), k);
  std::vector<double> X(static_cast<size_t>(o) * k);
  download(g, X.data(), dX.get(), X.size());
  derived_side(o, k, X, S, tall ? U : V);
}

void svd_randomized_gpu(Gpu& g, int m, int n, const float* dA, int k, const SvdOptions& opt, double* S, float* U,
                        float* V) {
  const int l = std::min(k + std::max(opt.oversample, 0), std::min(m, n));
  const size_t L = static_cast<size_t>(l);
  std::vector<float> omega(static_cast<size_t>(n) * L);
  gaussian_matrix(n, l, opt.seed, omega.data());  // the CPU's Ω, bit for bit
  DeviceBuffer<float> dOmega(omega.size()), dY(static_cast<size_t>(m) * L), dZ(static_cast<size_t>(n) * L);
  QrWork qr(std::max(m, n), l);
  upload(g, dOmega.get(), omega.data(), omega.size());
  g.gemm<float, float, float, float>(false, false, m, l, n, dA, n, dOmega.get(), l, dY.get(), l);  // Y = A·Ω
  orthonormalize_gpu(g, m, l, dY.get(), qr);
  for (int it = 0; it < opt.power_iters; ++it) {
    g.gemm<float, float, float, float>(true, false, n, l, m, dA, n, dY.get(), l, dZ.get(), l);  // Z = Aᵀ·Q
    orthonormalize_gpu(g, n, l, dZ.get(), qr);
    g.gemm<float, float, float, float>(false, false, m, l, n, dA, n, dZ.get(), l, dY.get(), l);  // Y = A·Z
    orthonormalize_gpu(g, m, l, dY.get(), qr);
  }
  // Bᵀ = AᵀQ [n,l] and B·Bᵀ [l,l], both f64 (as the CPU's dgemm + dsyrk).
  DeviceBuffer<double> dBt(static_cast<size_t>(n) * L), dG(L * L);
  g.gemm<float, float, double, double>(true, false, n, l, m, dA, n, dY.get(), l, dBt.get(), l);
  g.gemm<double, double, double, double>(true, false, l, l, n, dBt.get(), l, dBt.get(), l, dG.get(), l, true);
  std::vector<double> G(L * L), w(L), vecs(opt.vectors ? L * L : 0);
  download(g, G.data(), dG.get(), G.size());
  sym_eigen(l, G.data(), w.data(), opt.vectors ? vecs.data() : nullptr);
  for (int i = 0; i < k; ++i) S[i] = std::sqrt(std::max(w[i], 0.0));
  if (!opt.vectors) return;
  // The vectors' last products are (m + n)·l·k flops: on the host, exactly as svd.cpp.
  std::vector<float> Q(static_cast<size_t>(m) * L);
  std::vector<double> Bt(static_cast<size_t>(n) * L);
  download(g, Q.data(), dY.get(), Q.size());
  download(g, Bt.data(), dBt.get(), Bt.size());
  const std::vector<double> Wk = leading_columns(vecs, l, k);
  std::vector<double> X(static_cast<size_t>(std::max(m, n)) * k);
  dgemm(false, false, m, k, l, 1.0, Q.data(), l, Wk.data(), k, 0.0, X.data(), k);  // U = Q·W
  for (size_t x = 0; x < static_cast<size_t>(m) * k; ++x) U[x] = static_cast<float>(X[x]);
  dgemm(false, false, n, k, l, 1.0, Bt.data(), l, Wk.data(), k, 0.0, X.data(), k);  // V·S = Bᵀ·W
  derived_side(n, k, X, S, V);
}

// Eigenvalues (descending) of the smaller Gram matrix of A [m, lda]; returns its size.
int gram_spectrum_gpu(int m, int n, const float* A, int lda, const char* what, std::vector<double>& w) {
  Gpu g;
  DeviceBuffer<float> dA;
  upload_checked(g, dA, A, m, n, lda, what);
  std::vector<double> G;
  const int r = gram_on_gpu(g, m, n, dA.get(), G);
  w.resize(static_cast<size_t>(r));
  sym_eigen(r, G.data(), w.data(), nullptr);
  return r;
}

}  // namespace

std::string svd_gpu_unavailable_reason() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return std::string("no usable CUDA driver/device: ") + cudaGetErrorString(e);
  }
  if (count == 0) return "no CUDA device";
  return {};
}

SvdMethod svd_topk_gpu(int m, int n, const float* A, int lda, int k, const SvdOptions& opt, double* S, float* U,
                       float* V) {
  if (m <= 0 || n <= 0 || k <= 0 || k > std::min(m, n)) throw std::invalid_argument("svd: need 1 <= k <= min(m, n)");
  if (lda < n) throw std::invalid_argument("svd: lda must be at least n");
  const int l = k + std::max(opt.oversample, 0);
  const bool exact =
      opt.method == SvdMethod::Exact || (opt.method == SvdMethod::Auto && 2 * static_cast<int64_t>(l) >= std::min(m, n));
  Gpu g;
  DeviceBuffer<float> dA;
  upload_checked(g, dA, A, m, n, lda, "svd");
  if (exact) {
    svd_exact_gpu(g, m, n, dA.get(), k, opt.vectors, S, U, V);
    return SvdMethod::Exact;
  }
  svd_randomized_gpu(g, m, n, dA.get(), k, opt, S, U, V);
  return SvdMethod::Randomized;
}

void gram_eigenvalues_gpu(int t, int d, const float* Z, int ldz, double* out) {
  if (t <= 0 || d <= 0) {
    std::fill(out, out + std::max(d, 0), 0.0);
    return;
  }
  std::vector<double> w;
  const int r = gram_spectrum_gpu(t, d, Z, ldz, "gram_eigenvalues", w);
  std::copy(w.begin(), w.end(), out);
  std::fill(out + r, out + d, 0.0);
}

void singular_values_gpu(int m, int n, const float* A, int lda, double* S) {
  if (m <= 0 || n <= 0) return;
  std::vector<double> w;
  const int r = gram_spectrum_gpu(m, n, A, lda, "singular_values", w);
  for (int i = 0; i < r; ++i) S[i] = std::sqrt(std::max(w[i], 0.0));
}

}  // namespace lieq
