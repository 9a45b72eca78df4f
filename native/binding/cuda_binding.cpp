// The GPU model (native/cuda/gpu_model.h) for Node: create/upload/step/stats/dispose on an opaque
// handle, plus one linear applied on the GPU for kernel tests. Compiles with or without CUDA
// (without, the core functions throw "built without CUDA", which surfaces as a JS Error).
// lib/cuda/gpu-model.ts is the typed facade and validates first; these checks are the backstop.
#include <napi.h>

#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings.h"
#include "cuda/cuda_info.h"
#include "cuda/gpu_model.h"
#include "cuda/prefill_linear.h"
#include "napi_util.h"

namespace lieq::napi {
namespace {

constexpr int64_t kMaxDim = int64_t{1} << 31;

struct Handle {
  GpuModelPtr model;
  std::atomic<bool> busy{false};
};

template <class Fn>
auto guarded(Napi::Env env, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::invalid_argument& e) {
    throw_range(env, e.what());
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

Napi::Object obj(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (!v.IsObject()) throw_type(env, what + ": expected an object");
  return v.As<Napi::Object>();
}

int64_t int_prop(Napi::Env env, const Napi::Object& o, const char* name, int64_t lo, int64_t hi) {
  return checked_integer(env, o.Get(name), name, lo, hi);
}

template <typename T>
View<T> typed_value(Napi::Env env, const Napi::Value& v, const std::string& what) {
  constexpr auto want = typed_array_kind<T>();
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != want)
    throw_type(env, what + ": expected " + typed_array_name(want));
  auto ta = v.As<Napi::TypedArray>();
  View<T> out;
  out.length = ta.ElementLength();
  if (out.length) out.data = reinterpret_cast<T*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
  return out;
}

const float* f32_exact(Napi::Env env, const Napi::Value& v, const std::string& what, size_t n) {
  auto t = typed_value<float>(env, v, what);
  if (t.length != n) throw_range(env, what + ": expected " + std::to_string(n) + " floats, got " + std::to_string(t.length));
  return t.data;
}

const float* f32_or_null(Napi::Env env, const Napi::Value& v, const std::string& what, size_t n) {
  if (v.IsNull() || v.IsUndefined()) return nullptr;
  return f32_exact(env, v, what, n);
}

// A RuntimeLinear: { kind: 'dense', outFeatures, inFeatures, weight, bias } or
// { kind: 'packed', outFeatures, inFeatures, packed: PackedLinear, bias }.
GpuLinearHost linear_arg(Napi::Env env, const Napi::Value& v, const std::string& what) {
  Napi::Object o = obj(env, v, what);
  GpuLinearHost l;
  l.out = static_cast<size_t>(int_prop(env, o, "outFeatures", 1, kMaxDim));
  l.in = static_cast<size_t>(int_prop(env, o, "inFeatures", 1, kMaxDim));
  const Napi::Value kind = o.Get("kind");
  const std::string k = kind.IsString() ? kind.As<Napi::String>().Utf8Value() : "";
  if (k == "dense") {
    l.dense = f32_exact(env, o.Get("weight"), what + ".weight", l.out * l.in);
  } else if (k == "packed") {
    l.packed = true;
    Napi::Object p = obj(env, o.Get("packed"), what + ".packed");
    PackedMatrix& W = l.packed_w;
    W.out = static_cast<size_t>(int_prop(env, p, "outFeatures", 1, kMaxDim));
    W.in = static_cast<size_t>(int_prop(env, p, "inFeatures", 1, kMaxDim));
    W.bits = static_cast<int>(int_prop(env, p, "bits", 1, 16));
    W.group = static_cast<int>(int_prop(env, p, "groupSize", 1, kMaxDim));
    const Napi::Value sym = p.Get("symmetric");
    if (!sym.IsBoolean()) throw_type(env, what + ".packed.symmetric: expected a boolean");
    W.symmetric = sym.As<Napi::Boolean>().Value();
    const std::string err = packed_shape_error(W.out, W.in, W.bits, W.group);
    if (!err.empty()) throw_range(env, what + ": " + err);
    auto qw = typed_value<uint8_t>(env, p.Get("qweight"), what + ".packed.qweight");
    auto sc = typed_value<uint16_t>(env, p.Get("scales"), what + ".packed.scales");
    if (qw.length != W.out * W.row_bytes() || sc.length != W.out * W.groups_per_row())
      throw_range(env, what + ": packed qweight/scales sizes do not match the shape");
    W.qweight = qw.data;
    W.scales = sc.data;
    if (!W.symmetric) {
      auto z = typed_value<uint8_t>(env, p.Get("zeros"), what + ".packed.zeros");
      if (z.length != W.out * W.groups_per_row()) throw_range(env, what + ": packed zeros size does not match the shape");
      W.zeros = z.data;
    }
  } else {
    throw_type(env, what + ".kind: expected \"dense\" or \"packed\"");
  }
  l.bias = f32_or_null(env, o.Get("bias"), what + ".bias", l.out);
  return l;
}

Handle* handle_arg(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsExternal()) throw_type(info.Env(), "handle: expected a GPU model handle");
  Handle* h = info[0].As<Napi::External<Handle>>().Data();
  if (!h->model) throw Napi::Error::New(info.Env(), "GPU model was disposed");
  return h;
}

// cudaUnavailableReason() -> "" | reason
Napi::Value UnavailableReason(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), gpu_unavailable_reason());
}

// cudaModelCreate(config, cos, sin, embedding, finalNorm) -> handle
Napi::Value ModelCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = obj(env, info[0], "config");
  GpuModelConfig c;
  c.hidden = static_cast<int>(int_prop(env, o, "hidden", 1, 1 << 20));
  c.intermediate = static_cast<int>(int_prop(env, o, "intermediate", 1, 1 << 22));
  c.heads = static_cast<int>(int_prop(env, o, "heads", 1, 4096));
  c.kv_heads = static_cast<int>(int_prop(env, o, "kvHeads", 1, 4096));
  c.head_dim = static_cast<int>(int_prop(env, o, "headDim", 2, 256));
  c.layers = static_cast<int>(int_prop(env, o, "layers", 1, 4096));
  c.vocab = static_cast<int>(int_prop(env, o, "vocab", 1, 1 << 24));
  c.window = static_cast<int>(int_prop(env, o, "window", 0, 1 << 30));
  c.max_seqs = static_cast<int>(int_prop(env, o, "maxSeqs", 1, 4096));
  c.max_context = static_cast<int>(int_prop(env, o, "maxContext", 1, 1 << 20));
  const Napi::Value eps = o.Get("eps");
  if (!eps.IsNumber()) throw_type(env, "eps: expected a number");
  c.eps = eps.As<Napi::Number>().FloatValue();
  const size_t half = static_cast<size_t>(c.head_dim / 2);
  const float* cos = f32_exact(env, info[1], "cos", static_cast<size_t>(c.max_context) * half);
  const float* sin = f32_exact(env, info[2], "sin", static_cast<size_t>(c.max_context) * half);
  const float* emb = f32_exact(env, info[3], "embedding", static_cast<size_t>(c.vocab) * c.hidden);
  const float* norm = f32_exact(env, info[4], "finalNorm", static_cast<size_t>(c.hidden));
  auto* h = new Handle();
  try {
    h->model = guarded(env, [&] { return gpu_model_create(c, cos, sin, emb, norm); });
  } catch (...) {
    delete h;
    throw;
  }
  return Napi::External<Handle>::New(env, h, [](Napi::Env, Handle* p) { delete p; });
}

// cudaModelSetLayer(handle, index, { inputNorm, postAttentionNorm, qNorm, kNorm, linears })
Napi::Value ModelSetLayer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h = handle_arg(info);
  const int index = static_cast<int>(integer(info, 1, "index", 0, 1 << 20));
  Napi::Object o = obj(env, info[2], "layer");
  GpuLayerHost l;
  auto vec = [&](const char* name) -> const float* {
    const Napi::Value v = o.Get(name);
    if (v.IsNull() || v.IsUndefined()) return nullptr;
    return typed_value<float>(env, v, name).data;
  };
  // Lengths are checked against the config by the TS facade (checkLayerWeights) before this.
  l.input_norm = vec("inputNorm");
  l.post_norm = vec("postAttentionNorm");
  l.q_norm = vec("qNorm");
  l.k_norm = vec("kNorm");
  Napi::Object lin = obj(env, o.Get("linears"), "linears");
  l.q = linear_arg(env, lin.Get("q_proj"), "q_proj");
  l.k = linear_arg(env, lin.Get("k_proj"), "k_proj");
  l.v = linear_arg(env, lin.Get("v_proj"), "v_proj");
  l.o = linear_arg(env, lin.Get("o_proj"), "o_proj");
  l.gate = linear_arg(env, lin.Get("gate_proj"), "gate_proj");
  l.up = linear_arg(env, lin.Get("up_proj"), "up_proj");
  l.down = linear_arg(env, lin.Get("down_proj"), "down_proj");
  guarded(env, [&] { gpu_model_set_layer(h->model.get(), index, l); });
  return env.Undefined();
}

// cudaModelSetHead(handle, linear | null): null = tied to the embedding
Napi::Value ModelSetHead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h = handle_arg(info);
  const bool tied = info.Length() < 2 || info[1].IsNull() || info[1].IsUndefined();
  GpuLinearHost l;
  if (!tied) l = linear_arg(env, info[1], "lmHead");
  guarded(env, [&] { gpu_model_set_head(h->model.get(), l, tied); });
  return env.Undefined();
}

// cudaModelCopyLayer(handle, from, to): layer `to` = a device copy of uploaded layer `from`
Napi::Value ModelCopyLayer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h = handle_arg(info);
  const int from = static_cast<int>(integer(info, 1, "from", 0, 1 << 20));
  const int to = static_cast<int>(integer(info, 2, "to", 0, 1 << 20));
  guarded(env, [&] { gpu_model_copy_layer(h->model.get(), from, to); });
  return env.Undefined();
}

// cudaModelStep(handle, ids, seqs, pos, logits | null, useGraph, vocab) -> Promise<void>
Napi::Value ModelStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h = handle_arg(info);
  auto ids = typed<int32_t>(info, 1, "ids");
  auto seqs = typed<int32_t>(info, 2, "seqs");
  auto pos = typed<int32_t>(info, 3, "pos");
  const size_t rows = ids.length;
  if (rows < 1 || rows > static_cast<size_t>(kGpuMaxRows))
    throw_range(env, "ids: expected 1.." + std::to_string(kGpuMaxRows) + " rows, got " + std::to_string(rows));
  if (seqs.length != rows || pos.length != rows) throw_range(env, "seqs, pos: expected as many entries as ids");
  float* logits = nullptr;
  std::vector<Napi::Value> keep = {info[0], info[1], info[2], info[3]};
  if (info.Length() > 4 && !info[4].IsNull() && !info[4].IsUndefined()) {
    auto l = typed<float>(info, 4, "logits");
    logits = l.data;
    keep.push_back(info[4]);
    // Size check: rows * vocab, known to the facade; the core writes exactly that many floats.
    if (info.Length() < 7) throw_type(env, "vocab: expected the vocabulary size as the 7th argument");
    const int64_t v = integer(info, 6, "vocab", 1, int64_t{1} << 24);
    need_length(env, "logits", l.length, rows * static_cast<size_t>(v));
  }
  const bool use_graph = info.Length() > 5 && info[5].ToBoolean().Value();
  bool expected = false;
  if (!h->busy.compare_exchange_strong(expected, true))
    throw Napi::Error::New(env, "GPU model: a step is already running (await it first)");
  const int32_t *pi = ids.data, *ps = seqs.data, *pp = pos.data;
  return PromiseWorker::queue(
      env, keep,
      [h, rows, pi, ps, pp, logits, use_graph] {
        struct Release {
          Handle* h;
          ~Release() { h->busy = false; }
        } release{h};
        gpu_model_step(h->model.get(), static_cast<int>(rows), pi, ps, pp, logits, use_graph);
      },
      nullptr);
}

// cudaModelPrefill(handle, ids, seq, pos0, logits | null, vocab, chunkRows) -> Promise<void>:
// one sequence's prompt through the tensor-core prefill; logits [vocab] of its last token.
Napi::Value ModelPrefill(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h = handle_arg(info);
  auto ids = typed<int32_t>(info, 1, "ids");
  if (ids.length < 1 || ids.length > (size_t{1} << 30)) throw_range(env, "ids: expected at least one token");
  const int seq = static_cast<int>(integer(info, 2, "seq", 0, 1 << 20));
  const int pos0 = static_cast<int>(integer(info, 3, "pos0", 0, 1 << 30));
  float* logits = nullptr;
  std::vector<Napi::Value> keep = {info[0], info[1]};
  if (info.Length() > 4 && !info[4].IsNull() && !info[4].IsUndefined()) {
    auto l = typed<float>(info, 4, "logits");
    need_length(env, "logits", l.length, static_cast<size_t>(integer(info, 5, "vocab", 1, int64_t{1} << 24)));
    logits = l.data;
    keep.push_back(info[4]);
  }
  const int chunk = static_cast<int>(integer(info, 6, "chunkRows", kGpuMaxRows + 1, kGpuPrefillMaxRows));
  bool expected = false;
  if (!h->busy.compare_exchange_strong(expected, true))
    throw Napi::Error::New(env, "GPU model: a step is already running (await it first)");
  const int32_t* pi = ids.data;
  const int n = static_cast<int>(ids.length);
  return PromiseWorker::queue(
      env, keep,
      [h, n, pi, seq, pos0, logits, chunk] {
        struct Release {
          Handle* h;
          ~Release() { h->busy = false; }
        } release{h};
        gpu_model_prefill(h->model.get(), n, pi, seq, pos0, logits, chunk);
      },
      nullptr);
}

// cudaModelStats(handle) -> { deviceName, deviceBytes, weightBytes, fusedQkvLayers, fusedGateUpLayers }
Napi::Value ModelStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h = handle_arg(info);
  const GpuModelStats s = guarded(env, [&] { return gpu_model_stats(h->model.get()); });
  Napi::Object o = Napi::Object::New(env);
  o.Set("deviceName", s.device_name);
  o.Set("deviceBytes", static_cast<double>(s.device_bytes));
  o.Set("weightBytes", static_cast<double>(s.weight_bytes));
  o.Set("fusedQkvLayers", s.fused_qkv_layers);
  o.Set("fusedGateUpLayers", s.fused_gate_up_layers);
  return o;
}

// cudaModelDispose(handle): frees the device memory now (the handle is unusable afterwards).
Napi::Value ModelDispose(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsExternal()) throw_type(info.Env(), "handle: expected a GPU model handle");
  Handle* h = info[0].As<Napi::External<Handle>>().Data();
  if (h->busy) throw Napi::Error::New(info.Env(), "GPU model: cannot dispose while a step is running");
  h->model.reset();
  return info.Env().Undefined();
}

// cudaLinearApply(linear, x, rows) -> Float32Array y [rows, outFeatures]
Napi::Value LinearApply(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const GpuLinearHost l = linear_arg(env, info[0], "linear");
  const int rows = static_cast<int>(integer(info, 2, "rows", 1, kGpuMaxRows));
  auto x = typed<float>(info, 1, "x");
  need_length(env, "x", x.length, static_cast<size_t>(rows) * l.in);
  Napi::Float32Array y = Napi::Float32Array::New(env, static_cast<size_t>(rows) * l.out);
  guarded(env, [&] { gpu_linear_apply(l, x.data, rows, y.Data()); });
  return y;
}

// cudaPrefillLinearApply(linear, x, rows, tile) -> { y: Float32Array [rows, outFeatures], tile }:
// one linear through the prefill GEMM (any rows >= 1; tile 0 = auto, 1..4 forced).
Napi::Value PrefillLinearApply(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const GpuLinearHost l = linear_arg(env, info[0], "linear");
  const int rows = static_cast<int>(integer(info, 2, "rows", 1, 1 << 20));
  const int tile = static_cast<int>(integer(info, 3, "tile", 0, 4));
  auto x = typed<float>(info, 1, "x");
  need_length(env, "x", x.length, static_cast<size_t>(rows) * l.in);
  Napi::Float32Array y = Napi::Float32Array::New(env, static_cast<size_t>(rows) * l.out);
  const int used = guarded(env, [&] { return gpu_prefill_linear_apply(l, x.data, rows, y.Data(), tile); });
  Napi::Object o = Napi::Object::New(env);
  o.Set("y", y);
  o.Set("tile", used);
  return o;
}

// cudaPrefillLinearTime(linear, rows, iters, tile) -> { msMedian, msMin, tile }
Napi::Value PrefillLinearTime(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const GpuLinearHost l = linear_arg(env, info[0], "linear");
  const int rows = static_cast<int>(integer(info, 1, "rows", 1, 1 << 20));
  const int iters = static_cast<int>(integer(info, 2, "iters", 1, 100000));
  const int tile = static_cast<int>(integer(info, 3, "tile", 0, 4));
  const GpuPrefillTiming t = guarded(env, [&] { return gpu_prefill_linear_time(l, rows, iters, tile); });
  Napi::Object o = Napi::Object::New(env);
  o.Set("msMedian", t.ms_median);
  o.Set("msMin", t.ms_min);
  o.Set("tile", t.tile);
  return o;
}

// cudaMeasureBandwidth(bytes, reps) -> { readTBps, copyTBps, bytes }: the device's memory ceilings now
Napi::Value MeasureBandwidth(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t bytes = integer(info, 0, "bytes", 1 << 20, int64_t{1} << 36);
  const int reps = static_cast<int>(integer(info, 1, "reps", 1, 1000));
  const CudaBandwidth b = guarded(env, [&] { return cuda_measure_bandwidth(static_cast<size_t>(bytes), reps); });
  Napi::Object o = Napi::Object::New(env);
  o.Set("readTBps", b.read_tbps);
  o.Set("copyTBps", b.copy_tbps);
  o.Set("bytes", static_cast<double>(b.bytes));
  return o;
}

}  // namespace

void register_cuda(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaUnavailableReason", Napi::Function::New(env, UnavailableReason));
  exports.Set("cudaModelCreate", Napi::Function::New(env, ModelCreate));
  exports.Set("cudaModelSetLayer", Napi::Function::New(env, ModelSetLayer));
  exports.Set("cudaModelSetHead", Napi::Function::New(env, ModelSetHead));
  exports.Set("cudaModelCopyLayer", Napi::Function::New(env, ModelCopyLayer));
  exports.Set("cudaModelStep", Napi::Function::New(env, ModelStep));
  exports.Set("cudaModelStats", Napi::Function::New(env, ModelStats));
  exports.Set("cudaModelDispose", Napi::Function::New(env, ModelDispose));
  exports.Set("cudaLinearApply", Napi::Function::New(env, LinearApply));
  exports.Set("cudaModelPrefill", Napi::Function::New(env, ModelPrefill));
  exports.Set("cudaPrefillLinearApply", Napi::Function::New(env, PrefillLinearApply));
  exports.Set("cudaPrefillLinearTime", Napi::Function::New(env, PrefillLinearTime));
  exports.Set("cudaMeasureBandwidth", Napi::Function::New(env, MeasureBandwidth));
}

}  // namespace lieq::napi
