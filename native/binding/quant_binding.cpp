// Packed low-bit weights: quantize, pack/unpack, dequantize, fused dequant-matmul, the f32/f16
// GEMV baselines and the read-bandwidth probe. TypedArrays are used in place (no copies); every
// length is checked here so that the kernels can trust their arguments. The TS facade
// (lib/kernels/quant.ts) validates first with friendlier messages; these checks are the backstop.
#include <napi.h>

#include <stdexcept>
#include <type_traits>
#include <vector>
#include <string>

#include "../core/gemv_f32.h"
#include "../core/linear_kernels.h"
#include "../core/pack.h"
#include "../core/packed_format.h"
#include "../core/qmatmul.h"
#include "../core/quantize.h"
#include "../core/read_bandwidth.h"
#include "bindings.h"
#include "napi_util.h"

namespace lieq::napi {
namespace {

constexpr int64_t kMaxDim = int64_t{1} << 31;

void need_exact(Napi::Env env, const std::string& what, size_t have, size_t want) {
  if (have != want)
    throw_range(env, what + ": expected " + std::to_string(want) + " elements, got " + std::to_string(have));
}

// Runs `fn`, turning the core's exceptions into JS errors (invalid_argument -> RangeError).
template <class Fn>
void guarded(Napi::Env env, Fn&& fn) {
  try {
    fn();
  } catch (const std::invalid_argument& e) {
    throw_range(env, e.what());
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

Napi::Value prop(const Napi::Object& o, const char* name) { return o.Get(name); }

template <typename T>
View<T> typed_prop(Napi::Env env, const Napi::Object& o, const char* name) {
  Napi::Value v = prop(o, name);
  constexpr auto want = typed_array_kind<T>();
  if (!v.IsTypedArray()) throw_type(env, std::string(name) + ": expected " + typed_array_name(want));
  auto ta = v.As<Napi::TypedArray>();
  refuse_detached(env, ta, name);
  if (ta.TypedArrayType() != want)
    throw_type(env, std::string(name) + ": expected " + typed_array_name(want) + ", got " +
                        typed_array_name(ta.TypedArrayType()));
  View<T> out;
  out.length = ta.ElementLength();
  if (out.length) out.data = reinterpret_cast<T*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
  return out;
}

int64_t int_prop(Napi::Env env, const Napi::Object& o, const char* name, int64_t lo, int64_t hi) {
  return checked_integer(env, prop(o, name), name, lo, hi);
}

bool bool_prop(Napi::Env env, const Napi::Object& o, const char* name) {
  Napi::Value v = prop(o, name);
  if (!v.IsBoolean()) throw_type(env, std::string(name) + ": expected a boolean");
  return v.As<Napi::Boolean>().Value();
}

Napi::Object object_arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (i >= info.Length() || !info[i].IsObject()) throw_type(info.Env(), std::string(what) + ": expected an object");
  return info[i].As<Napi::Object>();
}

bool is_nullish(const Napi::CallbackInfo& info, size_t i) {
  return i >= info.Length() || info[i].IsNull() || info[i].IsUndefined();
}

// A PackedLinear object { outFeatures, inFeatures, bits, groupSize, symmetric, qweight, scales, zeros? }.
PackedMatrix packed_arg(const Napi::CallbackInfo& info, size_t i) {
  Napi::Env env = info.Env();
  Napi::Object o = object_arg(info, i, "layer");
  PackedMatrix W;
  W.out = static_cast<size_t>(int_prop(env, o, "outFeatures", 1, kMaxDim));
  W.in = static_cast<size_t>(int_prop(env, o, "inFeatures", 1, kMaxDim));
  W.bits = static_cast<int>(int_prop(env, o, "bits", 1, 16));
  W.group = static_cast<int>(int_prop(env, o, "groupSize", 1, kMaxDim));
  W.symmetric = bool_prop(env, o, "symmetric");
  const std::string shape_err = packed_shape_error(W.out, W.in, W.bits, W.group);
  if (!shape_err.empty()) throw_range(env, shape_err);
  auto qw = typed_prop<uint8_t>(env, o, "qweight");
  auto sc = typed_prop<uint16_t>(env, o, "scales");
  View<uint8_t> z;
  if (!W.symmetric) z = typed_prop<uint8_t>(env, o, "zeros");
  const std::string err = packed_matrix_error(W.out, W.in, W.bits, W.group, W.symmetric, qw.length, sc.length, z.length);
  if (!err.empty()) throw_range(env, err);
  W.qweight = qw.data;
  W.scales = sc.data;
  W.zeros = z.data;
  return W;
}

// { bits, groupSize, symmetric, method, clipGrid, clipMaxShrink } for a matrix of `cols` columns.
QuantizeParams quant_params_arg(const Napi::CallbackInfo& info, size_t i, size_t rows, size_t cols) {
  Napi::Env env = info.Env();
  Napi::Object o = object_arg(info, i, "options");
  QuantizeParams p;
  p.bits = static_cast<int>(int_prop(env, o, "bits", 1, 16));
  p.group = static_cast<int>(int_prop(env, o, "groupSize", 1, kMaxDim));
  p.symmetric = bool_prop(env, o, "symmetric");
  p.method = static_cast<QuantMethod>(int_prop(env, o, "method", 0, 1));
  p.clip_grid = static_cast<int>(int_prop(env, o, "clipGrid", 1, 10000));
  Napi::Value shrink = prop(o, "clipMaxShrink");
  if (!shrink.IsNumber()) throw_type(env, "clipMaxShrink: expected a number");
  p.clip_max_shrink = shrink.As<Napi::Number>().FloatValue();
  if (!(p.clip_max_shrink >= 0.0f && p.clip_max_shrink < 1.0f)) throw_range(env, "clipMaxShrink: expected a number in [0, 1)");
  const std::string err = packed_shape_error(rows, cols, p.bits, p.group);
  if (!err.empty()) throw_range(env, err);
  return p;
}

// ---- format ---------------------------------------------------------------------------------

// packedFormatInfo(bits, groupSize, symmetric, inFeatures) -> { blockCodes, blockBytes, rowBytes, bitsPerWeight }
Napi::Value PackedFormatInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int bits = static_cast<int>(integer(info, 0, "bits", 1, 16));
  const int group = static_cast<int>(integer(info, 1, "groupSize", 1, kMaxDim));
  if (info.Length() < 3 || !info[2].IsBoolean()) throw_type(env, "symmetric: expected a boolean");
  const bool sym = info[2].As<Napi::Boolean>().Value();
  const auto in = static_cast<size_t>(integer(info, 3, "inFeatures", 1, kMaxDim));
  const std::string err = packed_shape_error(1, in, bits, group);
  if (!err.empty()) throw_range(env, err);
  auto o = Napi::Object::New(env);
  o.Set("blockCodes", kPackBlockCodes);
  o.Set("blockBytes", packed_block_bytes(bits));
  o.Set("rowBytes", static_cast<double>(in / kPackBlockCodes * packed_block_bytes(bits)));
  o.Set("bitsPerWeight", packed_bits_per_weight(bits, group, sym));
  o.Set("symmetricZero", packed_symmetric_zero(bits));
  return o;
}

Napi::Value SimdKernels(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), linear_kernels_simd()); }

// ---- quantize ---------------------------------------------------------------------------------

struct QuantizeArgs {
  const float* w;
  size_t rows, cols;
  QuantizeParams p;
  uint8_t* out;  // codes [rows, cols] or qweight [rows, row_bytes]
  uint16_t* scales;
  uint8_t* zeros;
};

// (w, rows, cols, options, out, scales, zeros|null): `packed` selects codes or qweight for `out`.
QuantizeArgs quantize_args(const Napi::CallbackInfo& info, bool packed) {
  Napi::Env env = info.Env();
  auto w = typed<float>(info, 0, "w");
  const auto rows = static_cast<size_t>(integer(info, 1, "rows", 1, kMaxDim));
  const auto cols = static_cast<size_t>(integer(info, 2, "cols", 1, kMaxDim));
  QuantizeArgs a{};
  a.p = quant_params_arg(info, 3, rows, cols);
  need_exact(env, "w", w.length, rows * cols);
  auto out = typed<uint8_t>(info, 4, packed ? "qweight" : "codes");
  const size_t out_len = packed ? rows * (cols / kPackBlockCodes) * packed_block_bytes(a.p.bits) : rows * cols;
  need_exact(env, packed ? "qweight" : "codes", out.length, out_len);
  auto sc = typed<uint16_t>(info, 5, "scales");
  const size_t ng = rows * (cols / static_cast<size_t>(a.p.group));
  need_exact(env, "scales", sc.length, ng);
  a.w = w.data;
  a.rows = rows;
  a.cols = cols;
  a.out = out.data;
  a.scales = sc.data;
  if (!a.p.symmetric) {
    auto z = typed<uint8_t>(info, 6, "zeros");
    need_exact(env, "zeros", z.length, ng);
    a.zeros = z.data;
  }
  return a;
}

void run_quantize(const QuantizeArgs& a, bool packed) {
  if (packed)
    quantize_packed(a.w, a.rows, a.cols, a.p, a.out, a.scales, a.zeros);
  else
    quantize(a.w, a.rows, a.cols, a.p, a.out, a.scales, a.zeros);
}

// The object arguments (TypedArrays, the layer) that a queued job reads: kept alive until it ends.
// (Only objects: Node 20 refuses references to numbers and null.)
std::vector<Napi::Value> args_of(const Napi::CallbackInfo& info) {
  std::vector<Napi::Value> keep;
  for (size_t i = 0; i < info.Length(); ++i)
    if (info[i].IsObject()) keep.push_back(info[i]);
  return keep;
}

template <bool Packed>
Napi::Value QuantizeSync(const Napi::CallbackInfo& info) {
  const QuantizeArgs a = quantize_args(info, Packed);
  guarded(info.Env(), [&] { run_quantize(a, Packed); });
  return info.Env().Undefined();
}

template <bool Packed>
Napi::Value QuantizeAsync(const Napi::CallbackInfo& info) {
  const QuantizeArgs a = quantize_args(info, Packed);
  return PromiseWorker::queue(info.Env(), args_of(info), [a] { run_quantize(a, Packed); }, nullptr);
}

// ---- pack / unpack / dequantize ----------------------------------------------------------------

// packCodes(codes, rows, cols, bits, qweight) / unpackCodes(qweight, rows, cols, bits, codes)
template <bool Pack>
Napi::Value PackOrUnpack(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto src = typed<uint8_t>(info, 0, Pack ? "codes" : "qweight");
  const auto rows = static_cast<size_t>(integer(info, 1, "rows", 1, kMaxDim));
  const auto cols = static_cast<size_t>(integer(info, 2, "cols", 1, kMaxDim));
  const int bits = static_cast<int>(integer(info, 3, "bits", 1, 16));
  auto dst = typed<uint8_t>(info, 4, Pack ? "qweight" : "codes");
  const std::string err = packed_shape_error(rows, cols, bits, kPackBlockCodes);
  if (!err.empty()) throw_range(env, err);
  const size_t packed_len = rows * (cols / kPackBlockCodes) * packed_block_bytes(bits);
  need_exact(env, Pack ? "codes" : "qweight", src.length, Pack ? rows * cols : packed_len);
  need_exact(env, Pack ? "qweight" : "codes", dst.length, Pack ? packed_len : rows * cols);
  guarded(env, [&] {
    if (Pack)
      pack_codes(src.data, rows, cols, bits, dst.data);
    else
      unpack_codes(src.data, rows, cols, bits, dst.data);
  });
  return env.Undefined();
}

bool scalar_impl_arg(const Napi::CallbackInfo& info, size_t i) {
  if (is_nullish(info, i)) return false;
  return integer(info, i, "impl", 0, 1) == 1;
}

// dequantize(layer, dst, impl?) ; dequantizeAsync(layer, dst)
Napi::Value Dequantize(const Napi::CallbackInfo& info) {
  const PackedMatrix W = packed_arg(info, 0);
  auto dst = typed<float>(info, 1, "dst");
  need_exact(info.Env(), "dst", dst.length, W.out * W.in);
  const bool scalar = scalar_impl_arg(info, 2);
  guarded(info.Env(), [&] { (scalar ? dequantize_ref : dequantize)(W, dst.data); });
  return info.Env().Undefined();
}

Napi::Value DequantizeAsync(const Napi::CallbackInfo& info) {
  const PackedMatrix W = packed_arg(info, 0);
  auto dst = typed<float>(info, 1, "dst");
  need_exact(info.Env(), "dst", dst.length, W.out * W.in);
  float* d = dst.data;
  return PromiseWorker::queue(info.Env(), args_of(info), [W, d] { dequantize(W, d); }, nullptr);
}

// ---- matmul ----------------------------------------------------------------------------------

struct MatmulArgs {
  PackedMatrix W;
  const float* x;
  size_t batch;
  const float* bias;
  float* y;
  bool scalar;
};

// (layer, x, batch, bias|null, y, impl?)
MatmulArgs matmul_args(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MatmulArgs a{};
  a.W = packed_arg(info, 0);
  auto x = typed<float>(info, 1, "x");
  a.batch = static_cast<size_t>(integer(info, 2, "batch", 1, kMaxDim));
  need_exact(env, "x", x.length, a.batch * a.W.in);
  if (!is_nullish(info, 3)) {
    auto b = typed<float>(info, 3, "bias");
    need_exact(env, "bias", b.length, a.W.out);
    a.bias = b.data;
  }
  auto y = typed<float>(info, 4, "y");
  need_exact(env, "y", y.length, a.batch * a.W.out);
  a.x = x.data;
  a.y = y.data;
  a.scalar = scalar_impl_arg(info, 5);
  return a;
}

void run_matmul(const MatmulArgs& a) { (a.scalar ? qmatmul_ref : qmatmul)(a.W, a.x, a.batch, a.bias, a.y); }

Napi::Value Qmatmul(const Napi::CallbackInfo& info) {
  const MatmulArgs a = matmul_args(info);
  guarded(info.Env(), [&] { run_matmul(a); });
  return info.Env().Undefined();
}

Napi::Value QmatmulAsync(const Napi::CallbackInfo& info) {
  const MatmulArgs a = matmul_args(info);
  return PromiseWorker::queue(info.Env(), args_of(info), [a] { run_matmul(a); }, nullptr);
}

// gemvF32(w, outFeatures, inFeatures, x, batch, bias|null, y, impl?) ; gemvF16 with w: Uint16Array
template <typename T>
Napi::Value GemvBaseline(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto w = typed<T>(info, 0, "w");
  const auto out = static_cast<size_t>(integer(info, 1, "outFeatures", 1, kMaxDim));
  const auto in = static_cast<size_t>(integer(info, 2, "inFeatures", 1, kMaxDim));
  auto x = typed<float>(info, 3, "x");
  const auto batch = static_cast<size_t>(integer(info, 4, "batch", 1, kMaxDim));
  need_exact(env, "w", w.length, out * in);
  need_exact(env, "x", x.length, batch * in);
  const float* bias = nullptr;
  if (!is_nullish(info, 5)) {
    auto b = typed<float>(info, 5, "bias");
    need_exact(env, "bias", b.length, out);
    bias = b.data;
  }
  auto y = typed<float>(info, 6, "y");
  need_exact(env, "y", y.length, batch * out);
  const bool scalar = scalar_impl_arg(info, 7);
  guarded(env, [&] {
    if constexpr (std::is_same_v<T, float>)
      (scalar ? gemv_f32_ref : gemv_f32)(w.data, out, in, x.data, batch, bias, y.data);
    else
      (scalar ? gemv_f16_ref : gemv_f16)(w.data, out, in, x.data, batch, bias, y.data);
  });
  return env.Undefined();
}

// readBandwidth(bytes, reps) -> { bestGBs, meanGBs, bytes, reps }: blocks for the whole measurement.
Napi::Value ReadBandwidthProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto bytes = static_cast<size_t>(integer(info, 0, "bytes", 1, int64_t{1} << 40));
  const int reps = static_cast<int>(integer(info, 1, "reps", 1, 1000));
  ReadBandwidth r{};
  guarded(env, [&] { r = measure_read_bandwidth(bytes, reps); });
  auto o = Napi::Object::New(env);
  o.Set("bestGBs", r.best_gbs);
  o.Set("meanGBs", r.mean_gbs);
  o.Set("bytes", static_cast<double>(r.bytes));
  o.Set("reps", r.reps);
  return o;
}

}  // namespace

void register_quant(Napi::Env env, Napi::Object exports) {
  exports.Set("packedFormatInfo", Napi::Function::New(env, PackedFormatInfo));
  exports.Set("packedKernelsSimd", Napi::Function::New(env, SimdKernels));
  exports.Set("quantizeCodes", Napi::Function::New(env, QuantizeSync<false>));
  exports.Set("quantizeCodesAsync", Napi::Function::New(env, QuantizeAsync<false>));
  exports.Set("quantizePacked", Napi::Function::New(env, QuantizeSync<true>));
  exports.Set("quantizePackedAsync", Napi::Function::New(env, QuantizeAsync<true>));
  exports.Set("packCodes", Napi::Function::New(env, PackOrUnpack<true>));
  exports.Set("unpackCodes", Napi::Function::New(env, PackOrUnpack<false>));
  exports.Set("dequantizePacked", Napi::Function::New(env, Dequantize));
  exports.Set("dequantizePackedAsync", Napi::Function::New(env, DequantizeAsync));
  exports.Set("qmatmul", Napi::Function::New(env, Qmatmul));
  exports.Set("qmatmulAsync", Napi::Function::New(env, QmatmulAsync));
  exports.Set("gemvF32", Napi::Function::New(env, GemvBaseline<float>));
  exports.Set("gemvF16", Napi::Function::New(env, GemvBaseline<uint16_t>));
  exports.Set("readBandwidth", Napi::Function::New(env, ReadBandwidthProbe));
}

}  // namespace lieq::napi
