// GpuModel: a decoder model resident on one CUDA device (gpu_model.h is the interface).
//
// Load: each linear is uploaded once, packed ones repacked on the host into the qgemv layout
// (qgemv.cuh; threads split the stripes), dense ones converted to fp16 rows padded to a multiple
// of 8. q/k/v and gate/up are concatenated row-wise into one linear when they share a kind, bit
// width, group, symmetry and packed width, so one launch computes all of them.
//
// Step (rows <= 16 token rows), per layer:
//   add_rmsnorm -> qkv linear(s) [+bias] -> qkv_post (q/k norm, RoPE, KV store) -> attention
//   -> o_proj [+bias] -> add_rmsnorm (residual) -> gate/up linear(s) [+bias] -> silu_mul
//   -> down_proj [+bias]; then add_rmsnorm (final norm) -> lm_head -> logits f32.
// The whole step is captured once per row count as a CUDA graph (first node: the H2D copy of
// the row inputs from pinned memory) and replayed. Every kernel after the embedding uses
// programmatic dependent launch on sm_90 (each waits for its predecessor first thing), so
// launch latency overlaps the previous kernel; the packed GEMVs also issue their weight loads
// before that wait.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "core/convert.h"
#include "decoder_kernels.cuh"
#include "gpu_model.h"
#include "qgemm_prefill.cuh"
#include "prefill_attention.cuh"
#include "qgemv.cuh"

namespace lieq {
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(e));
  }
}
#define LIEQ_CUDA_CHECK(expr) check((expr), #expr)

template <typename T>
T* device_alloc(size_t count, size_t* total) {
  void* p = nullptr;
  LIEQ_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(T)));
  *total += std::max<size_t>(count, 1) * sizeof(T);
  return static_cast<T*>(p);
}

template <typename T>
T* upload(const T* host, size_t count, size_t* total) {
  T* d = device_alloc<T>(count, total);
  LIEQ_CUDA_CHECK(cudaMemcpy(d, host, count * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

// Rows [0, rows) split into contiguous ranges over the host cores (the load-time conversions
// and repacks of an 8B model are billions of values).
template <typename F>
void parallel_rows(size_t rows, size_t min_rows_per_thread, F&& f) {
  const size_t hw = std::max<unsigned>(1, std::thread::hardware_concurrency());
  const size_t threads = std::max<size_t>(1, std::min(hw, rows / std::max<size_t>(min_rows_per_thread, 1)));
  if (threads == 1) return f(size_t{0}, rows);
  std::vector<std::thread> pool;
  const size_t per = (rows + threads - 1) / threads;
  for (size_t t = 0; t < threads; ++t) {
    const size_t b = t * per, e = std::min(rows, b + per);
    if (b < e) pool.emplace_back([&f, b, e] { f(b, e); });
  }
  for (auto& th : pool) th.join();
}

std::vector<__half> to_half(const float* src, size_t rows, size_t cols, size_t stride) {
  std::vector<__half> out(rows * stride);
  uint16_t* bits = reinterpret_cast<uint16_t*>(out.data());
  parallel_rows(rows, std::max<size_t>(1, (size_t{1} << 20) / std::max<size_t>(cols, 1)), [&](size_t b, size_t e) {
    for (size_t r = b; r < e; ++r) {
      for (size_t c = 0; c < cols; ++c) bits[r * stride + c] = f32_to_f16(src[r * cols + c]);
      for (size_t c = cols; c < stride; ++c) bits[r * stride + c] = 0;
    }
  });
  return out;
}

size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

// A linear on the device.
struct DevLinear {
  bool packed = false;
  int out = 0, in = 0;  // logical
  int x_stride = 0;     // fp16 elements per input row the kernels read
  QgemvLayout layout;
  uint8_t* qweight = nullptr;
  uint8_t* meta = nullptr;
  __half* w = nullptr;  // dense [out, x_stride]
  float* bias = nullptr;
  size_t weight_bytes = 0;  // read per step

  cudaError_t launch(const __half* x, int rows, float* y, cudaStream_t s, bool programmatic) const {
    if (rows > kGpuMaxRows)  // prefill chunks: the tensor-core GEMM over the same weights, bias fused
      return packed ? qgemm_prefill_launch(layout, qweight, meta, x, x_stride, rows, y, bias, s)
                    : dense_gemm_prefill_launch(w, out, x_stride, x, rows, y, bias, s);
    cudaError_t e = packed ? qgemv_launch(layout, qweight, meta, x, rows, y, true, s, 0, programmatic)
                           : launch_dense_gemv(w, out, x_stride, x, rows, y, s, programmatic);
    if (e == cudaSuccess && bias) e = launch_add_bias(y, bias, rows, out, s, programmatic);
    return e;
  }
};

// Host data of one or more linears stacked row-wise (all of one kind and packed shape).
struct StackedHost {
  bool packed = false;
  size_t out = 0, in = 0;
  std::vector<float> dense;
  std::vector<uint8_t> qweight, zeros;
  std::vector<uint16_t> scales;
  PackedMatrix pm;
  std::vector<float> bias;
  bool has_bias = false;
};

bool stackable(const GpuLinearHost& a, const GpuLinearHost& b) {
  if (a.packed != b.packed || a.in != b.in) return false;
  if (!a.packed) return true;
  const PackedMatrix &p = a.packed_w, &q = b.packed_w;
  return p.in == q.in && p.bits == q.bits && p.group == q.group && p.symmetric == q.symmetric;
}

StackedHost stack(const std::vector<const GpuLinearHost*>& parts) {
  StackedHost s;
  s.packed = parts[0]->packed;
  s.in = parts[0]->in;
  for (auto* p : parts) s.has_bias = s.has_bias || p->bias;
  for (auto* p : parts) {
    if (s.packed) {
      const PackedMatrix& m = p->packed_w;
      s.qweight.insert(s.qweight.end(), m.qweight, m.qweight + m.out * m.row_bytes());
      s.scales.insert(s.scales.end(), m.scales, m.scales + m.out * m.groups_per_row());
      if (!m.symmetric) s.zeros.insert(s.zeros.end(), m.zeros, m.zeros + m.out * m.groups_per_row());
    } else {
      s.dense.insert(s.dense.end(), p->dense, p->dense + p->out * p->in);
    }
    if (s.has_bias) {
      if (p->bias) s.bias.insert(s.bias.end(), p->bias, p->bias + p->out);
      else s.bias.insert(s.bias.end(), p->out, 0.f);
    }
    s.out += p->out;
  }
  if (s.packed) {
    s.pm = parts[0]->packed_w;
    s.pm.out = s.out;
    s.pm.qweight = s.qweight.data();
    s.pm.scales = s.scales.data();
    s.pm.zeros = s.pm.symmetric ? nullptr : s.zeros.data();
  }
  return s;
}

void check_linear(const GpuLinearHost& l, const char* what) {
  if (l.out == 0 || l.in == 0) throw std::invalid_argument(std::string(what) + ": empty linear");
  if (l.packed) {
    const PackedMatrix& m = l.packed_w;
    const std::string err = packed_shape_error(m.out, m.in, m.bits, m.group);
    if (!err.empty()) throw std::invalid_argument(std::string(what) + ": " + err);
    if (m.out != l.out || m.in < l.in || m.in - l.in >= 32 || !m.qweight || !m.scales || (!m.symmetric && !m.zeros))
      throw std::invalid_argument(std::string(what) + ": packed matrix does not match the linear's shape");
  } else if (!l.dense) {
    throw std::invalid_argument(std::string(what) + ": dense weights missing");
  }
}

DevLinear upload_linear(const GpuLinearHost& l, size_t* total) {
  DevLinear d;
  d.packed = l.packed;
  d.out = static_cast<int>(l.out);
  d.in = static_cast<int>(l.in);
  if (l.packed) {
    const PackedMatrix& m = l.packed_w;
    const std::string err = qgemv_layout(m.out, m.in, m.bits, m.group, m.symmetric, &d.layout);
    if (!err.empty()) throw std::invalid_argument(err);
    std::vector<uint8_t> qw(d.layout.qweight_bytes()), meta(d.layout.meta_bytes());
    // The repack is ~35-140 M codes/s per thread: split the stripes over the cores.
    parallel_rows(d.layout.stripes, 64, [&](size_t b, size_t e) { qgemv_repack(m, d.layout, qw.data(), meta.data(), b, e); });
    d.qweight = upload(qw.data(), qw.size(), total);
    d.meta = upload(meta.data(), meta.size(), total);
    d.x_stride = static_cast<int>(m.in);
    d.weight_bytes = qw.size() + meta.size();
  } else {
    d.x_stride = static_cast<int>(round_up(l.in, 8));
    auto h = to_half(l.dense, l.out, l.in, d.x_stride);
    d.w = upload(h.data(), h.size(), total);
    d.weight_bytes = h.size() * sizeof(__half);
  }
  if (l.bias) {
    d.bias = upload(l.bias, l.out, total);
    d.weight_bytes += l.out * sizeof(float);
  }
  return d;
}

DevLinear upload_stacked(const StackedHost& s, size_t* total) {
  GpuLinearHost l;
  l.packed = s.packed;
  l.out = s.out;
  l.in = s.in;
  l.dense = s.dense.data();
  l.packed_w = s.pm;
  l.bias = s.has_bias ? s.bias.data() : nullptr;
  return upload_linear(l, total);
}

// A device-side copy of an uploaded linear (its own allocations).
DevLinear copy_linear(const DevLinear& src, size_t* total) {
  DevLinear d = src;
  d.qweight = d.meta = nullptr, d.w = nullptr, d.bias = nullptr;
  auto dup = [&](auto* from, size_t count, auto** to) {
    if (!from) return;
    using T = std::remove_pointer_t<decltype(from)>;
    *to = device_alloc<std::remove_const_t<T>>(count, total);
    LIEQ_CUDA_CHECK(cudaMemcpy(*to, from, count * sizeof(T), cudaMemcpyDeviceToDevice));
  };
  if (src.packed) {
    dup(src.qweight, src.layout.qweight_bytes(), &d.qweight);
    dup(src.meta, src.layout.meta_bytes(), &d.meta);
  } else {
    dup(src.w, static_cast<size_t>(src.out) * src.x_stride, &d.w);
  }
  dup(src.bias, static_cast<size_t>(src.out), &d.bias);
  return d;
}

void free_linear(DevLinear& d) {
  cudaFree(d.qweight), cudaFree(d.meta), cudaFree(d.w), cudaFree(d.bias);
  d = DevLinear();
}

struct DevLayer {
  float *input_norm = nullptr, *post_norm = nullptr, *q_norm = nullptr, *k_norm = nullptr;
  bool fused_qkv = false, fused_gate_up = false;
  DevLinear qkv, k, v;  // qkv = q alone when not fused
  DevLinear o, gate_up, up, down;  // gate_up = gate alone when not fused
  bool set = false;
};

bool programmatic_ok() {
  int dev = 0, major = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return major >= 9;
}

}  // namespace

class GpuModel {
 public:
  GpuModelConfig cfg;
  size_t bytes = 0;
  std::string device_name;
  cudaStream_t stream = nullptr;
  bool pdl = false;
  float *cos = nullptr, *sin = nullptr, *final_norm = nullptr;
  __half* embedding = nullptr;
  DevLinear head;
  bool head_tied = false, head_set = false;
  std::vector<DevLayer> layers;
  __half *k_cache = nullptr, *v_cache = nullptr;
  // Split attention of decode steps (launch_attention): partial results and self-resetting counters.
  float* attention_ws = nullptr;
  unsigned* attention_counters = nullptr;
  // scratch, kGpuMaxRows rows each
  float *x = nullptr, *y_qkv = nullptr, *y_k = nullptr, *y_v = nullptr, *q = nullptr, *y_o = nullptr;
  float *y_gu = nullptr, *y_up = nullptr, *y_down = nullptr, *logits = nullptr;
  __half *h = nullptr, *att = nullptr, *act = nullptr;
  size_t act_stride_cap = 0;
  int32_t* step_dev = nullptr;   // [3][kGpuMaxRows]: ids, seqs, pos
  int32_t* step_host = nullptr;  // pinned mirror
  cudaGraphExec_t graphs[kGpuMaxRows + 1] = {};
  int step_stride = kGpuMaxRows;  // entries per field (ids, seqs, pos) of step_dev / step_host

  // Prefill (gpu_model_prefill): the scratch above again, for chunks of up to `rows` rows,
  // allocated on the first prefill and swapped in around its chunks, so enqueue() serves both.
  struct PrefillScratch {
    float *x, *y_qkv, *y_k, *y_v, *q, *y_o, *y_gu, *y_up, *y_down;
    __half *h, *att, *act;
    int32_t *step_dev, *step_host;
    int rows;
  } prefill{};

  void swap_prefill_scratch() {
    std::swap(x, prefill.x), std::swap(y_qkv, prefill.y_qkv), std::swap(y_k, prefill.y_k), std::swap(y_v, prefill.y_v);
    std::swap(q, prefill.q), std::swap(y_o, prefill.y_o), std::swap(y_gu, prefill.y_gu), std::swap(y_up, prefill.y_up);
    std::swap(y_down, prefill.y_down), std::swap(h, prefill.h), std::swap(att, prefill.att), std::swap(act, prefill.act);
    std::swap(step_dev, prefill.step_dev), std::swap(step_host, prefill.step_host), std::swap(step_stride, prefill.rows);
  }
  void free_prefill_scratch() {
    PrefillScratch& p = prefill;
    for (void* d : {static_cast<void*>(p.x), static_cast<void*>(p.y_qkv), static_cast<void*>(p.y_k), static_cast<void*>(p.y_v),
                    static_cast<void*>(p.q), static_cast<void*>(p.y_o), static_cast<void*>(p.y_gu), static_cast<void*>(p.y_up),
                    static_cast<void*>(p.y_down), static_cast<void*>(p.h), static_cast<void*>(p.att), static_cast<void*>(p.act),
                    static_cast<void*>(p.step_dev)})
      cudaFree(d);
    if (p.step_host) cudaFreeHost(p.step_host);
    bytes -= prefill_bytes;
    prefill = PrefillScratch{}, prefill_bytes = 0;
  }
  size_t prefill_bytes = 0;
  // Sized like the step scratch (gpu_model_create), for `rows` rows.
  void ensure_prefill_scratch(int rows) {
    if (prefill.rows >= rows) return;
    free_prefill_scratch();
    const size_t before = bytes, R = static_cast<size_t>(rows), qd = q_dim(), kvd = kv_dim(), I = cfg.intermediate;
    PrefillScratch& p = prefill;
    p.x = device_alloc<float>(R * cfg.hidden, &bytes), p.y_qkv = device_alloc<float>(R * (qd + 2 * kvd), &bytes);
    p.y_k = device_alloc<float>(R * kvd, &bytes), p.y_v = device_alloc<float>(R * kvd, &bytes);
    p.q = device_alloc<float>(R * qd, &bytes), p.y_o = device_alloc<float>(R * cfg.hidden, &bytes);
    p.y_gu = device_alloc<float>(R * 2 * I, &bytes), p.y_up = device_alloc<float>(R * I, &bytes);
    p.y_down = device_alloc<float>(R * cfg.hidden, &bytes);
    p.h = device_alloc<__half>(R * act_stride_cap, &bytes), p.att = device_alloc<__half>(R * act_stride_cap, &bytes);
    p.act = device_alloc<__half>(R * act_stride_cap, &bytes);
    p.step_dev = device_alloc<int32_t>(3 * R, &bytes);
    LIEQ_CUDA_CHECK(cudaMallocHost(&p.step_host, 3 * R * sizeof(int32_t)));
    p.rows = rows;
    prefill_bytes = bytes - before;
  }

  ~GpuModel() {
    free_prefill_scratch();
    for (auto& g : graphs)
      if (g) cudaGraphExecDestroy(g);
    for (auto& l : layers) {
      cudaFree(l.input_norm), cudaFree(l.post_norm), cudaFree(l.q_norm), cudaFree(l.k_norm);
      for (DevLinear* d : {&l.qkv, &l.k, &l.v, &l.o, &l.gate_up, &l.up, &l.down}) free_linear(*d);
    }
    if (!head_tied) free_linear(head);
    for (void* p : {static_cast<void*>(cos), static_cast<void*>(sin), static_cast<void*>(final_norm),
                    static_cast<void*>(embedding), static_cast<void*>(k_cache), static_cast<void*>(v_cache),
                    static_cast<void*>(x), static_cast<void*>(y_qkv), static_cast<void*>(y_k), static_cast<void*>(y_v),
                    static_cast<void*>(q), static_cast<void*>(y_o), static_cast<void*>(y_gu), static_cast<void*>(y_up),
                    static_cast<void*>(y_down), static_cast<void*>(logits), static_cast<void*>(h),
                    static_cast<void*>(att), static_cast<void*>(act), static_cast<void*>(step_dev)})
      cudaFree(p);
    cudaFree(attention_ws), cudaFree(attention_counters);
    if (step_host) cudaFreeHost(step_host);
    if (stream) cudaStreamDestroy(stream);
  }

  int q_dim() const { return cfg.heads * cfg.head_dim; }
  int kv_dim() const { return cfg.kv_heads * cfg.head_dim; }

  // Every kernel of one step, on `stream` (captured into a graph or run directly).
  // head_from: final norm and LM head for rows [head_from, rows) only (prefill: the last row,
  // or none for chunks before the last).
  void enqueue(int rows, int head_from = 0) {
    const StepRows in{step_dev, step_dev + step_stride, step_dev + 2 * step_stride};
    const int H = cfg.hidden, I = cfg.intermediate, qd = q_dim(), kvd = kv_dim();
    const size_t kv_layer = static_cast<size_t>(cfg.max_seqs) * cfg.kv_heads * cfg.max_context * cfg.head_dim;
    LIEQ_CUDA_CHECK(launch_embed(embedding, H, in, rows, x, stream));
    const float* pending = nullptr;  // a linear output still to be added to the residual stream
    for (int li = 0; li < cfg.layers; ++li) {
      DevLayer& L = layers[li];
      // attention block
      LIEQ_CUDA_CHECK(launch_add_rmsnorm(x, pending, L.input_norm, rows, H, cfg.eps, h, L.qkv.x_stride, stream, pdl));
      QkvPostArgs qa{};
      LIEQ_CUDA_CHECK(L.qkv.launch(h, rows, y_qkv, stream, pdl));
      if (L.fused_qkv) {
        const int ld = qd + 2 * kvd;
        qa.q = y_qkv, qa.k = y_qkv + qd, qa.v = y_qkv + qd + kvd, qa.ldq = qa.ldk = qa.ldv = ld;
      } else {
        LIEQ_CUDA_CHECK(L.k.launch(h, rows, y_k, stream, pdl));
        LIEQ_CUDA_CHECK(L.v.launch(h, rows, y_v, stream, pdl));
        qa.q = y_qkv, qa.k = y_k, qa.v = y_v, qa.ldq = qd, qa.ldk = kvd, qa.ldv = kvd;
      }
      qa.q_norm = L.q_norm, qa.k_norm = L.k_norm, qa.eps = cfg.eps, qa.cos = cos, qa.sin = sin, qa.q_out = q;
      qa.k_cache = k_cache + li * kv_layer, qa.v_cache = v_cache + li * kv_layer;
      qa.heads = cfg.heads, qa.kv_heads = cfg.kv_heads, qa.head_dim = cfg.head_dim, qa.max_context = cfg.max_context;
      AttentionArgs aa{};
      aa.q = q, aa.k_cache = qa.k_cache, aa.v_cache = qa.v_cache, aa.out = att, aa.out_stride = L.o.x_stride;
      aa.heads = cfg.heads, aa.kv_heads = cfg.kv_heads, aa.head_dim = cfg.head_dim, aa.max_context = cfg.max_context;
      aa.window = cfg.window;
      if (rows <= kGpuMaxRows) aa.split_ws = attention_ws, aa.split_counters = attention_counters;
      // Decode of one row: the attention kernel does qkv_post's work too (one launch, not two).
      const bool fused_post = attention_fuses_qkv_post(aa, rows);
      if (!fused_post) LIEQ_CUDA_CHECK(launch_qkv_post(qa, in, rows, stream, pdl));
      // Prefill chunks (rows > 16, one sequence): tensor-core attention sharing each key tile.
      LIEQ_CUDA_CHECK(fused_post ? launch_qkv_post_attention(qa, aa, in, rows, stream, pdl)
                      : rows > kGpuMaxRows && prefill_attention_supported(cfg.head_dim)
                          ? launch_prefill_attention(aa, in, rows, stream)
                          : launch_attention(aa, in, rows, stream, pdl));
      LIEQ_CUDA_CHECK(L.o.launch(att, rows, y_o, stream, pdl));
      // MLP block
      LIEQ_CUDA_CHECK(launch_add_rmsnorm(x, y_o, L.post_norm, rows, H, cfg.eps, h, L.gate_up.x_stride, stream, pdl));
      LIEQ_CUDA_CHECK(L.gate_up.launch(h, rows, y_gu, stream, pdl));
      if (L.fused_gate_up) {
        LIEQ_CUDA_CHECK(launch_silu_mul(y_gu, 2 * I, y_gu + I, 2 * I, rows, I, act, L.down.x_stride, stream, pdl));
      } else {
        LIEQ_CUDA_CHECK(L.up.launch(h, rows, y_up, stream, pdl));
        LIEQ_CUDA_CHECK(launch_silu_mul(y_gu, I, y_up, I, rows, I, act, L.down.x_stride, stream, pdl));
      }
      LIEQ_CUDA_CHECK(L.down.launch(act, rows, y_down, stream, pdl));
      pending = y_down;
    }
    if (head_from >= rows) return;
    const size_t skip = static_cast<size_t>(head_from) * H;
    LIEQ_CUDA_CHECK(launch_add_rmsnorm(x + skip, pending + skip, final_norm, rows - head_from, H, cfg.eps, h, head.x_stride, stream, pdl));
    LIEQ_CUDA_CHECK(head.launch(h, rows - head_from, logits, stream, pdl));
  }
};

void GpuModelDeleter::operator()(GpuModel* m) const { delete m; }

std::string gpu_unavailable_reason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return std::string("no usable CUDA driver/device: ") + cudaGetErrorString(e);
  }
  if (n == 0) return "no CUDA device";
  return {};
}

GpuModelPtr gpu_model_create(const GpuModelConfig& c, const float* rope_cos, const float* rope_sin,
                             const float* embedding, const float* final_norm) {
  const std::string why = gpu_unavailable_reason();
  if (!why.empty()) throw std::runtime_error(why);
  if (c.hidden < 1 || c.intermediate < 1 || c.heads < 1 || c.kv_heads < 1 || c.heads % c.kv_heads != 0 ||
      c.head_dim < 2 || c.head_dim % 2 != 0 || c.head_dim > 256 || c.layers < 1 || c.vocab < 1 || c.max_seqs < 1 ||
      c.max_context < 1 || c.window < 0)
    throw std::invalid_argument("gpu model: bad config (heads % kv_heads, head_dim even and <= 256, sizes positive)");
  const size_t smem = attention_smem_bytes(c.max_context, c.head_dim);
  if (smem > 200 * 1024)
    throw std::invalid_argument("gpu model: maxContext " + std::to_string(c.max_context) +
                                " needs more shared memory than the attention kernel may use (at most ~48900 positions)");
  GpuModelPtr m(new GpuModel());
  m->cfg = c;
  int dev = 0;
  LIEQ_CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp prop{};
  LIEQ_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  m->device_name = prop.name;
  m->pdl = programmatic_ok();
  LIEQ_CUDA_CHECK(attention_prepare(c.max_context, c.head_dim));
  LIEQ_CUDA_CHECK(cudaStreamCreateWithFlags(&m->stream, cudaStreamNonBlocking));
  size_t* t = &m->bytes;
  const size_t half = c.head_dim / 2;
  m->cos = upload(rope_cos, static_cast<size_t>(c.max_context) * half, t);
  m->sin = upload(rope_sin, static_cast<size_t>(c.max_context) * half, t);
  m->final_norm = upload(final_norm, c.hidden, t);
  auto emb = to_half(embedding, c.vocab, c.hidden, c.hidden);
  m->embedding = upload(emb.data(), emb.size(), t);
  m->layers.resize(c.layers);
  const size_t kv = static_cast<size_t>(c.layers) * c.max_seqs * c.kv_heads * c.max_context * c.head_dim;
  m->k_cache = device_alloc<__half>(kv, t);
  m->v_cache = device_alloc<__half>(kv, t);
  const size_t R = kGpuMaxRows, qd = m->q_dim(), kvd = m->kv_dim();
  m->x = device_alloc<float>(R * c.hidden, t);
  m->y_qkv = device_alloc<float>(R * (qd + 2 * kvd), t);
  m->y_k = device_alloc<float>(R * kvd, t);
  m->y_v = device_alloc<float>(R * kvd, t);
  m->q = device_alloc<float>(R * qd, t);
  m->y_o = device_alloc<float>(R * c.hidden, t);
  m->y_gu = device_alloc<float>(R * 2 * static_cast<size_t>(c.intermediate), t);
  m->y_up = device_alloc<float>(R * c.intermediate, t);
  m->y_down = device_alloc<float>(R * c.hidden, t);
  m->logits = device_alloc<float>(R * c.vocab, t);
  // fp16 inputs of the linears: widths up to the logical width + 31 (packed padding) or + 7.
  const size_t widest = round_up(std::max({static_cast<size_t>(c.hidden), qd, static_cast<size_t>(c.intermediate)}), 32);
  m->h = device_alloc<__half>(R * widest, t);
  m->att = device_alloc<__half>(R * widest, t);
  m->act = device_alloc<__half>(R * widest, t);
  m->act_stride_cap = widest;
  m->step_dev = device_alloc<int32_t>(3 * R, t);
  LIEQ_CUDA_CHECK(cudaMallocHost(&m->step_host, 3 * R * sizeof(int32_t)));
  static_assert(kGpuMaxRows <= kAttentionSplitMaxRows, "split attention workspace holds a step's rows");
  m->attention_ws = device_alloc<float>(attention_split_workspace_floats(c.heads, c.head_dim), t);
  m->attention_counters = device_alloc<unsigned>(static_cast<size_t>(kAttentionSplitMaxRows) * c.heads, t);
  LIEQ_CUDA_CHECK(cudaMemset(m->attention_counters, 0, static_cast<size_t>(kAttentionSplitMaxRows) * c.heads * sizeof(unsigned)));
  return m;
}

namespace {
void check_stride(const GpuModel* m, const DevLinear& d, const char* what) {
  if (static_cast<size_t>(d.x_stride) > m->act_stride_cap)
    throw std::invalid_argument(std::string(what) + ": input width " + std::to_string(d.x_stride) + " exceeds the model's");
}
}  // namespace

void gpu_model_set_layer(GpuModel* m, int index, const GpuLayerHost& l) {
  const GpuModelConfig& c = m->cfg;
  if (index < 0 || index >= c.layers) throw std::invalid_argument("layer: index out of range");
  const size_t H = c.hidden, I = c.intermediate, qd = m->q_dim(), kvd = m->kv_dim();
  struct Want { const GpuLinearHost* l; size_t out, in; const char* name; };
  for (const Want& w : {Want{&l.q, qd, H, "q_proj"}, Want{&l.k, kvd, H, "k_proj"}, Want{&l.v, kvd, H, "v_proj"},
                        Want{&l.o, H, qd, "o_proj"}, Want{&l.gate, I, H, "gate_proj"}, Want{&l.up, I, H, "up_proj"},
                        Want{&l.down, H, I, "down_proj"}}) {
    check_linear(*w.l, w.name);
    if (w.l->out != w.out || w.l->in != w.in)
      throw std::invalid_argument(std::string(w.name) + ": shape does not match the model config");
  }
  if (!l.input_norm || !l.post_norm || ((l.q_norm == nullptr) != (l.k_norm == nullptr)))
    throw std::invalid_argument("layer: norms missing");
  DevLayer& L = m->layers[index];
  if (L.set) throw std::invalid_argument("layer " + std::to_string(index) + " was already uploaded");
  size_t* t = &m->bytes;
  L.input_norm = upload(l.input_norm, H, t);
  L.post_norm = upload(l.post_norm, H, t);
  if (l.q_norm) L.q_norm = upload(l.q_norm, c.head_dim, t), L.k_norm = upload(l.k_norm, c.head_dim, t);
  L.fused_qkv = stackable(l.q, l.k) && stackable(l.q, l.v);
  if (L.fused_qkv) {
    L.qkv = upload_stacked(stack({&l.q, &l.k, &l.v}), t);
  } else {
    L.qkv = upload_linear(l.q, t), L.k = upload_linear(l.k, t), L.v = upload_linear(l.v, t);
    if (L.k.x_stride != L.qkv.x_stride || L.v.x_stride != L.qkv.x_stride)
      throw std::invalid_argument("q/k/v_proj: packed widths differ (padding), which the GPU path does not support");
  }
  L.o = upload_linear(l.o, t);
  L.fused_gate_up = stackable(l.gate, l.up);
  if (L.fused_gate_up) {
    L.gate_up = upload_stacked(stack({&l.gate, &l.up}), t);
  } else {
    L.gate_up = upload_linear(l.gate, t), L.up = upload_linear(l.up, t);
    if (L.up.x_stride != L.gate_up.x_stride)
      throw std::invalid_argument("gate/up_proj: packed widths differ (padding), which the GPU path does not support");
  }
  L.down = upload_linear(l.down, t);
  for (const DevLinear* d : {&L.qkv, &L.o, &L.gate_up, &L.down}) check_stride(m, *d, "linear");
  L.set = true;
}

void gpu_model_set_head(GpuModel* m, const GpuLinearHost& head, bool tied) {
  const GpuModelConfig& c = m->cfg;
  if (m->head_set) throw std::invalid_argument("lm_head was already uploaded");
  if (tied) {
    DevLinear d;
    d.out = c.vocab, d.in = c.hidden, d.x_stride = c.hidden;
    if (c.hidden % 8 != 0) throw std::invalid_argument("tied lm_head: hidden size must be a multiple of 8 on the GPU");
    d.w = m->embedding;
    d.weight_bytes = static_cast<size_t>(c.vocab) * c.hidden * sizeof(__half);
    m->head = d;
    m->head_tied = true;
  } else {
    check_linear(head, "lm_head");
    if (head.out != static_cast<size_t>(c.vocab) || head.in != static_cast<size_t>(c.hidden))
      throw std::invalid_argument("lm_head: shape does not match the model config");
    m->head = upload_linear(head, &m->bytes);
    check_stride(m, m->head, "lm_head");
  }
  m->head_set = true;
}

void gpu_model_copy_layer(GpuModel* m, int from, int to) {
  const int n = m->cfg.layers;
  if (from < 0 || from >= n || to < 0 || to >= n || from == to)
    throw std::invalid_argument("copy layer: indices out of range or equal");
  const DevLayer& S = m->layers[from];
  DevLayer& L = m->layers[to];
  if (!S.set) throw std::invalid_argument("copy layer: layer " + std::to_string(from) + " is not uploaded");
  if (L.set) throw std::invalid_argument("layer " + std::to_string(to) + " was already uploaded");
  size_t* t = &m->bytes;
  const size_t H = m->cfg.hidden, D = m->cfg.head_dim;
  auto dup = [&](const float* src, size_t count) -> float* {
    if (!src) return nullptr;
    float* d = device_alloc<float>(count, t);
    LIEQ_CUDA_CHECK(cudaMemcpy(d, src, count * sizeof(float), cudaMemcpyDeviceToDevice));
    return d;
  };
  L.input_norm = dup(S.input_norm, H), L.post_norm = dup(S.post_norm, H);
  L.q_norm = dup(S.q_norm, D), L.k_norm = dup(S.k_norm, D);
  L.fused_qkv = S.fused_qkv, L.fused_gate_up = S.fused_gate_up;
  DevLinear DevLayer::*const parts[] = {&DevLayer::qkv, &DevLayer::k, &DevLayer::v, &DevLayer::o,
                                        &DevLayer::gate_up, &DevLayer::up, &DevLayer::down};
  for (auto p : parts)
    if ((S.*p).out > 0) L.*p = copy_linear(S.*p, t);
  L.set = true;
}

void gpu_model_step(GpuModel* m, int rows, const int32_t* ids, const int32_t* seqs, const int32_t* pos, float* logits,
                    bool use_graph) {
  const GpuModelConfig& c = m->cfg;
  if (rows < 1 || rows > kGpuMaxRows) throw std::invalid_argument("rows: expected 1.." + std::to_string(kGpuMaxRows));
  if (!m->head_set) throw std::invalid_argument("gpu model: lm_head not uploaded");
  for (int l = 0; l < c.layers; ++l)
    if (!m->layers[l].set) throw std::invalid_argument("gpu model: layer " + std::to_string(l) + " not uploaded");
  for (int r = 0; r < rows; ++r) {
    if (ids[r] < 0 || ids[r] >= c.vocab) throw std::invalid_argument("ids[" + std::to_string(r) + "] outside the vocabulary");
    if (seqs[r] < 0 || seqs[r] >= c.max_seqs) throw std::invalid_argument("seqs[" + std::to_string(r) + "] outside [0, maxSeqs)");
    if (pos[r] < 0 || pos[r] >= c.max_context) throw std::invalid_argument("pos[" + std::to_string(r) + "] outside [0, maxContext)");
  }
  std::memcpy(m->step_host, ids, rows * sizeof(int32_t));
  std::memcpy(m->step_host + kGpuMaxRows, seqs, rows * sizeof(int32_t));
  std::memcpy(m->step_host + 2 * kGpuMaxRows, pos, rows * sizeof(int32_t));
  auto copy_in = [&] {
    LIEQ_CUDA_CHECK(cudaMemcpyAsync(m->step_dev, m->step_host, 3 * kGpuMaxRows * sizeof(int32_t),
                                    cudaMemcpyHostToDevice, m->stream));
  };
  if (use_graph) {
    cudaGraphExec_t& exec = m->graphs[rows];
    if (!exec) {
      cudaGraph_t graph = nullptr;
      LIEQ_CUDA_CHECK(cudaStreamBeginCapture(m->stream, cudaStreamCaptureModeThreadLocal));
      try {
        copy_in();
        m->enqueue(rows);
      } catch (...) {
        cudaStreamEndCapture(m->stream, &graph);
        if (graph) cudaGraphDestroy(graph);
        throw;
      }
      LIEQ_CUDA_CHECK(cudaStreamEndCapture(m->stream, &graph));
      const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
      cudaGraphDestroy(graph);
      LIEQ_CUDA_CHECK(e);
    }
    LIEQ_CUDA_CHECK(cudaGraphLaunch(exec, m->stream));
  } else {
    copy_in();
    m->enqueue(rows);
  }
  if (logits)
    LIEQ_CUDA_CHECK(cudaMemcpyAsync(logits, m->logits, static_cast<size_t>(rows) * c.vocab * sizeof(float),
                                    cudaMemcpyDeviceToHost, m->stream));
  LIEQ_CUDA_CHECK(cudaStreamSynchronize(m->stream));
}

GpuModelStats gpu_model_stats(const GpuModel* m) {
  GpuModelStats s;
  s.device_name = m->device_name;
  s.device_bytes = m->bytes;
  s.weight_bytes = m->head.weight_bytes + static_cast<size_t>(m->cfg.hidden) * sizeof(float);
  for (const DevLayer& L : m->layers) {
    s.weight_bytes += 2 * static_cast<size_t>(m->cfg.hidden) * sizeof(float);
    if (L.q_norm) s.weight_bytes += 2 * static_cast<size_t>(m->cfg.head_dim) * sizeof(float);
    for (const DevLinear* d : {&L.qkv, &L.k, &L.v, &L.o, &L.gate_up, &L.up, &L.down}) s.weight_bytes += d->weight_bytes;
    s.fused_qkv_layers += L.fused_qkv ? 1 : 0;
    s.fused_gate_up_layers += L.fused_gate_up ? 1 : 0;
  }
  return s;
}

void gpu_linear_apply(const GpuLinearHost& lin, const float* x, int rows, float* y) {
  const std::string why = gpu_unavailable_reason();
  if (!why.empty()) throw std::runtime_error(why);
  check_linear(lin, "linear");
  if (rows < 1 || rows > kGpuMaxRows) throw std::invalid_argument("rows: expected 1.." + std::to_string(kGpuMaxRows));
  size_t total = 0;
  DevLinear d = upload_linear(lin, &total);
  __half* dx = nullptr;
  float* dy = nullptr;
  try {
    auto hx = to_half(x, rows, lin.in, d.x_stride);
    dx = upload(hx.data(), hx.size(), &total);
    dy = device_alloc<float>(static_cast<size_t>(rows) * lin.out, &total);
    LIEQ_CUDA_CHECK(cudaMemset(dy, 0xFF, static_cast<size_t>(rows) * lin.out * sizeof(float)));  // NaN poison
    LIEQ_CUDA_CHECK(d.launch(dx, rows, dy, nullptr, programmatic_ok()));
    LIEQ_CUDA_CHECK(cudaDeviceSynchronize());
    LIEQ_CUDA_CHECK(cudaMemcpy(y, dy, static_cast<size_t>(rows) * lin.out * sizeof(float), cudaMemcpyDeviceToHost));
  } catch (...) {
    cudaFree(dx), cudaFree(dy), free_linear(d);
    throw;
  }
  cudaFree(dx), cudaFree(dy), free_linear(d);
}

void gpu_model_prefill(GpuModel* m, int n, const int32_t* ids, int seq, int pos0, float* logits, int chunk_rows) {
  const GpuModelConfig& c = m->cfg;
  if (n < 1) throw std::invalid_argument("prefill: expected at least one token");
  if (chunk_rows < kGpuMaxRows + 1 || chunk_rows > kGpuPrefillMaxRows)
    throw std::invalid_argument("prefill: chunk rows expected " + std::to_string(kGpuMaxRows + 1) + ".." +
                                std::to_string(kGpuPrefillMaxRows));
  if (seq < 0 || seq >= c.max_seqs) throw std::invalid_argument("prefill: sequence outside [0, maxSeqs)");
  if (pos0 < 0 || static_cast<int64_t>(pos0) + n > c.max_context)
    throw std::invalid_argument("prefill: positions " + std::to_string(pos0) + ".." + std::to_string(int64_t{pos0} + n - 1) +
                                " outside [0, maxContext)");
  if (!m->head_set) throw std::invalid_argument("gpu model: lm_head not uploaded");
  for (int l = 0; l < c.layers; ++l)
    if (!m->layers[l].set) throw std::invalid_argument("gpu model: layer " + std::to_string(l) + " not uploaded");
  for (int r = 0; r < n; ++r)
    if (ids[r] < 0 || ids[r] >= c.vocab) throw std::invalid_argument("ids[" + std::to_string(r) + "] outside the vocabulary");
  // Every chunk but the last is full; a chunk of <= 16 rows (a short tail, or a short prompt)
  // runs the step's GEMV kernels instead of the GEMM (DevLinear::launch picks by rows).
  const int chunk = std::min(n, chunk_rows);
  m->ensure_prefill_scratch(chunk);
  m->swap_prefill_scratch();
  struct SwapBack {
    GpuModel* m;
    ~SwapBack() { m->swap_prefill_scratch(); }
  } swap_back{m};
  const int stride = m->step_stride;
  for (int c0 = 0; c0 < n; c0 += chunk) {
    const int rows = std::min(chunk, n - c0);
    const bool last = c0 + rows == n;
    for (int r = 0; r < rows; ++r) {
      m->step_host[r] = ids[c0 + r];
      m->step_host[stride + r] = seq;
      m->step_host[2 * stride + r] = pos0 + c0 + r;
    }
    LIEQ_CUDA_CHECK(cudaMemcpyAsync(m->step_dev, m->step_host, 3 * static_cast<size_t>(stride) * sizeof(int32_t),
                                    cudaMemcpyHostToDevice, m->stream));
    m->enqueue(rows, last ? rows - 1 : rows);
    // step_host is rewritten by the next chunk: wait for this chunk's copy (and kernels).
    LIEQ_CUDA_CHECK(cudaStreamSynchronize(m->stream));
  }
  if (logits) LIEQ_CUDA_CHECK(cudaMemcpy(logits, m->logits, static_cast<size_t>(c.vocab) * sizeof(float), cudaMemcpyDeviceToHost));
}

}  // namespace lieq
