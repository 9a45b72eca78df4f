// Operators of the decoder runtime (lib/runtime): RMSNorm, RoPE, KV-cache stores, attention,
// dense linear, SwiGLU, residual add, embedding gather, log-softmax NLL.
//
// All synchronous: TypeScript calls them dozens of times per token and a Promise per call
// would cost more than the work for small models (each call is short; long loops such as
// perplexity yield to the event loop between windows). Sizes are explicit so callers can use
// a prefix of a larger scratch buffer; every buffer is checked to be long enough here.
#include <napi.h>

#include <cmath>
#include <limits>

#include "../core/gemm.h"
#include "../core/ops.h"
#include "bindings.h"
#include "napi_util.h"

namespace lieq::napi {
namespace {

constexpr int64_t kMaxDim = std::numeric_limits<int32_t>::max();

size_t dim_arg(const Napi::CallbackInfo& info, size_t i, const char* what, int64_t lo = 1) {
  return static_cast<size_t>(integer(info, i, what, lo, kMaxDim));
}

// Checks a product of dims against a buffer length without overflow (dims < 2^31 each).
void need(Napi::Env env, const char* what, size_t have, size_t a, size_t b = 1, size_t c = 1) {
  const unsigned __int128 want = static_cast<unsigned __int128>(a) * b * c;
  if (want > static_cast<unsigned __int128>(have))
    throw_range(env, std::string(what) + ": needs " + std::to_string(static_cast<unsigned long long>(want)) +
                         " elements, got " + std::to_string(have));
}

// rmsNorm(x, w, y, rows, dim, eps)
Napi::Value RmsNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto x = typed<float>(info, 0, "x");
  auto w = typed<float>(info, 1, "weight");
  auto y = typed<float>(info, 2, "y");
  const size_t rows = dim_arg(info, 3, "rows", 0), dim = dim_arg(info, 4, "dim");
  const double eps = number(info, 5, "eps");
  if (!(eps >= 0) || !std::isfinite(eps)) throw_range(env, "eps: expected a finite number >= 0");
  need(env, "x", x.length, rows, dim);
  need(env, "y", y.length, rows, dim);
  need(env, "weight", w.length, dim);
  ops::rmsnorm(x.data, w.data, y.data, rows, dim, static_cast<float>(eps));
  return env.Undefined();
}

// ropeRotateHalf(x, rows, heads, headDim, pos0, cos, sin)
Napi::Value RopeRotateHalf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto x = typed<float>(info, 0, "x");
  const size_t rows = dim_arg(info, 1, "rows", 0), heads = dim_arg(info, 2, "heads"), hd = dim_arg(info, 3, "headDim");
  const size_t pos0 = dim_arg(info, 4, "pos0", 0);
  auto c = typed<float>(info, 5, "cos");
  auto s = typed<float>(info, 6, "sin");
  if (hd % 2) throw_range(env, "headDim: must be even");
  need(env, "x", x.length, rows, heads, hd);
  need(env, "cos", c.length, pos0 + rows, hd / 2);
  need(env, "sin", s.length, pos0 + rows, hd / 2);
  ops::rope_rotate_half(x.data, rows, heads, hd, pos0, c.data, s.data);
  return env.Undefined();
}

// kvStore(src, cache, rows, kvHeads, headDim, capacity, pos0, transposed): values (head-major
// [kvHeads, capacity, headDim]) or, transposed, keys ([kvHeads, headDim, capacity]).
Napi::Value KvStore(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto src = typed<float>(info, 0, "src");
  auto cache = typed<float>(info, 1, "cache");
  const size_t rows = dim_arg(info, 2, "rows", 0), kvh = dim_arg(info, 3, "kvHeads"), hd = dim_arg(info, 4, "headDim");
  const size_t cap = dim_arg(info, 5, "capacity"), pos0 = dim_arg(info, 6, "pos0", 0);
  if (pos0 + rows > cap)
    throw_range(env, "kvStore: positions " + std::to_string(pos0) + ".." + std::to_string(pos0 + rows) +
                         " exceed the cache capacity " + std::to_string(cap));
  if (info.Length() < 8 || !info[7].IsBoolean()) throw_type(env, "transposed: expected a boolean");
  const bool transposed = info[7].As<Napi::Boolean>().Value();
  need(env, "src", src.length, rows, kvh, hd);
  need(env, "cache", cache.length, kvh, cap, hd);
  (transposed ? ops::k_store_transposed : ops::kv_store)(src.data, cache.data, rows, kvh, hd, cap, pos0);
  return env.Undefined();
}

ops::AttentionParams attention_params(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto q = typed<float>(info, 0, "q");
  auto k = typed<float>(info, 1, "kCache");
  auto v = typed<float>(info, 2, "vCache");
  auto out = typed<float>(info, 3, "out");
  ops::AttentionParams p;
  p.n_q = dim_arg(info, 4, "nQ", 0);
  p.n_heads = dim_arg(info, 5, "heads");
  p.n_kv_heads = dim_arg(info, 6, "kvHeads");
  p.head_dim = dim_arg(info, 7, "headDim");
  p.capacity = dim_arg(info, 8, "capacity");
  p.pos0 = dim_arg(info, 9, "pos0", 0);
  p.window = dim_arg(info, 10, "window", 0);
  if (p.n_heads % p.n_kv_heads) throw_range(env, "heads: must be a multiple of kvHeads");
  if (p.pos0 + p.n_q > p.capacity) throw_range(env, "attention: pos0 + nQ exceeds the cache capacity");
  need(env, "q", q.length, p.n_q, p.n_heads, p.head_dim);
  need(env, "out", out.length, p.n_q, p.n_heads, p.head_dim);
  need(env, "kCache", k.length, p.n_kv_heads, p.capacity, p.head_dim);
  need(env, "vCache", v.length, p.n_kv_heads, p.capacity, p.head_dim);
  p.q = q.data;
  p.k = k.data;
  p.v = v.data;
  p.out = out.data;
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(p.head_dim)));
  return p;
}

// attention(q, kCache, vCache, out, nQ, heads, kvHeads, headDim, capacity, pos0, window)
Napi::Value Attention(const Napi::CallbackInfo& info) {
  ops::attention(attention_params(info));
  return info.Env().Undefined();
}

// attentionRef(...): the scalar reference, same arguments (tests compare the two).
Napi::Value AttentionRef(const Napi::CallbackInfo& info) {
  ops::attention_ref(attention_params(info));
  return info.Env().Undefined();
}

// linear(x, rows, inFeatures, weight, outFeatures, bias | null, y): y = x · Wᵀ (+ b).
Napi::Value Linear(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto x = typed<float>(info, 0, "x");
  const size_t rows = dim_arg(info, 1, "rows", 0), in = dim_arg(info, 2, "inFeatures");
  auto w = typed<float>(info, 3, "weight");
  const size_t out = dim_arg(info, 4, "outFeatures");
  const bool has_bias = info.Length() > 5 && !info[5].IsNull() && !info[5].IsUndefined();
  View<float> b;
  if (has_bias) b = typed<float>(info, 5, "bias");
  auto y = typed<float>(info, 6, "y");
  need(env, "x", x.length, rows, in);
  need(env, "weight", w.length, out, in);
  need(env, "y", y.length, rows, out);
  if (has_bias) need(env, "bias", b.length, out);
  if (rows == 0) return env.Undefined();
  sgemm_nt(static_cast<int>(rows), static_cast<int>(out), static_cast<int>(in), x.data, w.data, y.data);
  if (has_bias) ops::add_bias_rows(y.data, b.data, rows, out);
  return env.Undefined();
}

// addBiasRows(y, bias, rows, n)
Napi::Value AddBiasRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto y = typed<float>(info, 0, "y");
  auto b = typed<float>(info, 1, "bias");
  const size_t rows = dim_arg(info, 2, "rows", 0), n = dim_arg(info, 3, "n");
  need(env, "y", y.length, rows, n);
  need(env, "bias", b.length, n);
  ops::add_bias_rows(y.data, b.data, rows, n);
  return env.Undefined();
}

// siluMul(gate, up, out, n); siluMulRef: the scalar reference
template <bool Ref>
Napi::Value SiluMul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto g = typed<float>(info, 0, "gate");
  auto u = typed<float>(info, 1, "up");
  auto o = typed<float>(info, 2, "out");
  const size_t n = dim_arg(info, 3, "n", 0);
  need(env, "gate", g.length, n);
  need(env, "up", u.length, n);
  need(env, "out", o.length, n);
  (Ref ? ops::silu_mul_ref : ops::silu_mul)(g.data, u.data, o.data, n);
  return env.Undefined();
}

// addInPlace(x, y, n): x += y
Napi::Value AddInPlace(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto x = typed<float>(info, 0, "x");
  auto y = typed<float>(info, 1, "y");
  const size_t n = dim_arg(info, 2, "n", 0);
  need(env, "x", x.length, n);
  need(env, "y", y.length, n);
  ops::add_inplace(x.data, y.data, n);
  return env.Undefined();
}

// embedGather(table, dim, ids: Int32Array, out)
Napi::Value EmbedGather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto table = typed<float>(info, 0, "table");
  const size_t dim = dim_arg(info, 1, "dim");
  auto ids = typed<int32_t>(info, 2, "ids");
  auto out = typed<float>(info, 3, "out");
  const size_t vocab = table.length / dim;
  for (size_t t = 0; t < ids.length; ++t)
    if (ids.data[t] < 0 || static_cast<size_t>(ids.data[t]) >= vocab)
      throw_range(env, "ids[" + std::to_string(t) + "] = " + std::to_string(ids.data[t]) + " is outside [0, " +
                           std::to_string(vocab) + ")");
  need(env, "out", out.length, ids.length, dim);
  ops::embedding_gather(table.data, dim, ids.data, ids.length, out.data);
  return env.Undefined();
}

// logSoftmaxNll(logits, rows, vocab, targets: Int32Array, nll: Float64Array); logSoftmaxNllRef: scalar
template <bool Ref>
Napi::Value LogSoftmaxNll(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto z = typed<float>(info, 0, "logits");
  const size_t rows = dim_arg(info, 1, "rows", 0), vocab = dim_arg(info, 2, "vocab");
  auto tg = typed<int32_t>(info, 3, "targets");
  auto nll = typed<double>(info, 4, "nll");
  need(env, "logits", z.length, rows, vocab);
  need(env, "targets", tg.length, rows);
  need(env, "nll", nll.length, rows);
  for (size_t r = 0; r < rows; ++r)
    if (tg.data[r] < 0 || static_cast<size_t>(tg.data[r]) >= vocab)
      throw_range(env, "targets[" + std::to_string(r) + "] = " + std::to_string(tg.data[r]) + " is outside [0, " +
                           std::to_string(vocab) + ")");
  (Ref ? ops::log_softmax_nll_ref : ops::log_softmax_nll)(z.data, rows, vocab, tg.data, nll.data);
  return env.Undefined();
}

}  // namespace

void register_runtime(Napi::Env env, Napi::Object exports) {
  exports.Set("rmsNorm", Napi::Function::New(env, RmsNorm));
  exports.Set("ropeRotateHalf", Napi::Function::New(env, RopeRotateHalf));
  exports.Set("kvStore", Napi::Function::New(env, KvStore));
  exports.Set("attention", Napi::Function::New(env, Attention));
  exports.Set("attentionRef", Napi::Function::New(env, AttentionRef));
  exports.Set("linear", Napi::Function::New(env, Linear));
  exports.Set("addBiasRows", Napi::Function::New(env, AddBiasRows));
  exports.Set("siluMul", Napi::Function::New(env, SiluMul<false>));
  exports.Set("siluMulRef", Napi::Function::New(env, SiluMul<true>));
  exports.Set("addInPlace", Napi::Function::New(env, AddInPlace));
  exports.Set("embedGather", Napi::Function::New(env, EmbedGather));
  exports.Set("logSoftmaxNll", Napi::Function::New(env, LogSoftmaxNll<false>));
  exports.Set("logSoftmaxNllRef", Napi::Function::New(env, LogSoftmaxNll<true>));
}

}  // namespace lieq::napi
