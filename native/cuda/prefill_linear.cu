// One linear through the prefill GEMM (prefill_linear.h): upload as the GPU model does, launch,
// read back or time. Test and benchmark plumbing only; the model path is gpu_model.cu.
#include "prefill_linear.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/convert.h"
#include "qgemm_prefill.cuh"
#include "qgemv.cuh"

namespace lieq {
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(e));
  }
}
#define PREFILL_CUDA_CHECK(expr) check((expr), #expr)

// Device allocations of one call, freed on every exit path.
struct DeviceBuffers {
  std::vector<void*> ptrs;
  ~DeviceBuffers() {
    for (void* p : ptrs) cudaFree(p);
  }
  template <typename T>
  T* alloc(size_t count) {
    void* p = nullptr;
    PREFILL_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(T)));
    ptrs.push_back(p);
    return static_cast<T*>(p);
  }
  template <typename T>
  T* upload(const T* host, size_t count) {
    T* d = alloc<T>(count);
    PREFILL_CUDA_CHECK(cudaMemcpy(d, host, count * sizeof(T), cudaMemcpyHostToDevice));
    return d;
  }
};

size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

// fp16 bits of src [rows, cols] into rows of `stride` (zeros past cols).
std::vector<uint16_t> to_half_rows(const float* src, size_t rows, size_t cols, size_t stride) {
  std::vector<uint16_t> out(rows * stride, 0);
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols; ++c) out[r * stride + c] = f32_to_f16(src[r * cols + c]);
  return out;
}

// The linear on the device, ready for qgemm_prefill_launch / dense_gemm_prefill_launch.
struct Uploaded {
  bool packed = false;
  QgemvLayout layout;
  const uint8_t *qweight = nullptr, *meta = nullptr;
  const __half* w = nullptr;
  const float* bias = nullptr;
  int out = 0, x_stride = 0;

  cudaError_t launch(const __half* x, int rows, float* y, int tile, cudaStream_t s) const {
    return packed ? qgemm_prefill_launch(layout, qweight, meta, x, x_stride, rows, y, bias, s, tile)
                  : dense_gemm_prefill_launch(w, out, x_stride, x, rows, y, bias, s, tile);
  }
};

Uploaded upload_linear(const GpuLinearHost& l, DeviceBuffers& buf) {
  if (l.out == 0 || l.in == 0) throw std::invalid_argument("linear: empty");
  Uploaded u;
  u.packed = l.packed;
  u.out = static_cast<int>(l.out);
  if (l.packed) {
    const PackedMatrix& m = l.packed_w;
    const std::string err = qgemv_layout(m.out, m.in, m.bits, m.group, m.symmetric, &u.layout);
    if (!err.empty()) throw std::invalid_argument("linear: " + err);
    if (m.out != l.out || m.in < l.in || !m.qweight || !m.scales || (!m.symmetric && !m.zeros))
      throw std::invalid_argument("linear: packed matrix does not match the linear's shape");
    std::vector<uint8_t> qw(u.layout.qweight_bytes()), meta(u.layout.meta_bytes());
    qgemv_repack(m, u.layout, qw.data(), meta.data());
    u.qweight = buf.upload(qw.data(), qw.size());
    u.meta = buf.upload(meta.data(), meta.size());
    u.x_stride = static_cast<int>(m.in);  // packed widths are multiples of 32
  } else {
    if (!l.dense) throw std::invalid_argument("linear: dense weights missing");
    u.x_stride = static_cast<int>(round_up(l.in, 8));
    const std::vector<uint16_t> h = to_half_rows(l.dense, l.out, l.in, u.x_stride);
    u.w = reinterpret_cast<const __half*>(buf.upload(h.data(), h.size()));
  }
  if (l.bias) u.bias = buf.upload(l.bias, l.out);
  return u;
}

void check_ready(int rows) {
  const std::string why = gpu_unavailable_reason();
  if (!why.empty()) throw std::runtime_error(why);
  if (rows < 1) throw std::invalid_argument("rows: expected >= 1");
}

int resolve_tile(const Uploaded& u, int rows, int tile) {
  if (tile < 0 || tile > kQgemmTiles) throw std::invalid_argument("tile: expected 0.." + std::to_string(kQgemmTiles));
  return tile ? tile : qgemm_auto_tile(u.out, rows, u.packed);
}

}  // namespace

int gpu_prefill_linear_apply(const GpuLinearHost& lin, const float* x, int rows, float* y, int tile) {
  check_ready(rows);
  DeviceBuffers buf;
  const Uploaded u = upload_linear(lin, buf);
  tile = resolve_tile(u, rows, tile);
  const std::vector<uint16_t> hx = to_half_rows(x, rows, lin.in, u.x_stride);
  const __half* dx = reinterpret_cast<const __half*>(buf.upload(hx.data(), hx.size()));
  const size_t ny = static_cast<size_t>(rows) * lin.out;
  float* dy = buf.alloc<float>(ny);
  PREFILL_CUDA_CHECK(cudaMemset(dy, 0xFF, ny * sizeof(float)));  // NaN poison: every output must be written
  PREFILL_CUDA_CHECK(u.launch(dx, rows, dy, tile, nullptr));
  PREFILL_CUDA_CHECK(cudaDeviceSynchronize());
  PREFILL_CUDA_CHECK(cudaMemcpy(y, dy, ny * sizeof(float), cudaMemcpyDeviceToHost));
  return tile;
}

GpuPrefillTiming gpu_prefill_linear_time(const GpuLinearHost& lin, int rows, int iters, int tile) {
  check_ready(rows);
  if (iters < 1) throw std::invalid_argument("iters: expected >= 1");
  DeviceBuffers buf;
  const Uploaded u = upload_linear(lin, buf);
  GpuPrefillTiming t;
  t.tile = resolve_tile(u, rows, tile);
  std::vector<uint16_t> hx(static_cast<size_t>(rows) * u.x_stride, 0);
  std::mt19937 gen(12345);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  for (size_t r = 0; r < static_cast<size_t>(rows); ++r)
    for (size_t c = 0; c < lin.in; ++c) hx[r * u.x_stride + c] = f32_to_f16(dist(gen));
  const __half* dx = reinterpret_cast<const __half*>(buf.upload(hx.data(), hx.size()));
  float* dy = buf.alloc<float>(static_cast<size_t>(rows) * lin.out);
  cudaStream_t s = nullptr;
  PREFILL_CUDA_CHECK(cudaStreamCreate(&s));
  struct StreamGuard {
    cudaStream_t s;
    ~StreamGuard() { cudaStreamDestroy(s); }
  } guard{s};
  for (int i = 0; i < 3; ++i) PREFILL_CUDA_CHECK(u.launch(dx, rows, dy, t.tile, s));
  // Batches of `iters` back-to-back launches between two events: the per-launch time is the
  // batch mean, so host gaps between launches of short kernels are not counted as they would be
  // with events around each launch.
  constexpr int kBatches = 5;
  std::vector<cudaEvent_t> ev(2 * kBatches);
  for (auto& e : ev) PREFILL_CUDA_CHECK(cudaEventCreate(&e));
  std::vector<float> ms(kBatches);
  cudaError_t err = cudaSuccess;
  for (int b = 0; b < kBatches && err == cudaSuccess; ++b) {
    cudaEventRecord(ev[2 * b], s);
    for (int i = 0; i < iters && err == cudaSuccess; ++i) err = u.launch(dx, rows, dy, t.tile, s);
    cudaEventRecord(ev[2 * b + 1], s);
  }
  if (err == cudaSuccess) err = cudaStreamSynchronize(s);
  for (int b = 0; b < kBatches && err == cudaSuccess; ++b) {
    err = cudaEventElapsedTime(&ms[b], ev[2 * b], ev[2 * b + 1]);
    ms[b] /= static_cast<float>(iters);
  }
  for (auto& e : ev) cudaEventDestroy(e);
  PREFILL_CUDA_CHECK(err);
  std::sort(ms.begin(), ms.end());
  t.ms_median = ms[kBatches / 2];
  t.ms_min = ms[0];
  return t;
}

}  // namespace lieq
