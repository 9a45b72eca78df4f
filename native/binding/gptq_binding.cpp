// GPTQ (native/core/gptq.h): Hessian accumulation, factorisation and the column loop, each a
// Promise on a libuv worker (the core then drives the thread pool). TypedArrays are used in
// place; lengths are checked here so the core can trust them. Facade: lib/quant/gptq.ts.
#include <napi.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "../core/gptq.h"
#include "../core/packed_format.h"
#include "bindings.h"
#include "napi_util.h"

namespace lieq::napi {
namespace {

constexpr int64_t kMaxDim = int64_t{1} << 30;

void need_exact(Napi::Env env, const std::string& what, size_t have, size_t want) {
  if (have != want)
    throw_range(env, what + ": expected " + std::to_string(want) + " elements, got " + std::to_string(have));
}

bool nullish(const Napi::CallbackInfo& info, size_t i) {
  return i >= info.Length() || info[i].IsNull() || info[i].IsUndefined();
}

std::vector<Napi::Value> objects_of(const Napi::CallbackInfo& info) {
  std::vector<Napi::Value> keep;
  for (size_t i = 0; i < info.Length(); ++i)
    if (info[i].IsObject()) keep.push_back(info[i]);
  return keep;
}

int64_t int_field(Napi::Env env, const Napi::Object& o, const char* name, int64_t lo, int64_t hi) {
  Napi::Value v = o.Get(name);
  if (!v.IsNumber()) throw_type(env, std::string(name) + ": expected an integer");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d))) throw_type(env, std::string(name) + ": expected an integer");
  const auto i = static_cast<int64_t>(d);
  if (i < lo || i > hi)
    throw_range(env, std::string(name) + ": " + std::to_string(i) + " is outside [" + std::to_string(lo) + ", " +
                         std::to_string(hi) + "]");
  return i;
}

bool bool_field(Napi::Env env, const Napi::Object& o, const char* name) {
  Napi::Value v = o.Get(name);
  if (!v.IsBoolean()) throw_type(env, std::string(name) + ": expected a boolean");
  return v.As<Napi::Boolean>().Value();
}

// gptqAccumulate(H: Float64Array [n*n], n, X: Float32Array [tokens*n], tokens): H += XᵀX
Napi::Value Accumulate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto H = typed<double>(info, 0, "hessian");
  const auto n = static_cast<size_t>(integer(info, 1, "n", 1, kMaxDim));
  auto X = typed<float>(info, 2, "x");
  const auto tokens = static_cast<size_t>(integer(info, 3, "tokens", 0, kMaxDim));
  need_exact(env, "hessian", H.length, n * n);
  need_exact(env, "x", X.length, tokens * n);
  double* h = H.data;
  const float* x = X.data;
  return PromiseWorker::queue(env, objects_of(info), [=] { gptq_accumulate(h, n, x, tokens); }, nullptr);
}

// gptqPrepare(H, n, dampFrac, actOrder, perm: Int32Array [n], dead: Uint8Array [n]) -> { damp, dead }
Napi::Value Prepare(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto H = typed<double>(info, 0, "hessian");
  const auto n = static_cast<size_t>(integer(info, 1, "n", 1, kMaxDim));
  const double damp = number(info, 2, "damp");
  if (info.Length() < 4 || !info[3].IsBoolean()) throw_type(env, "actOrder: expected a boolean");
  const bool act = info[3].As<Napi::Boolean>().Value();
  auto perm = typed<int32_t>(info, 4, "perm");
  auto dead = typed<uint8_t>(info, 5, "dead");
  need_exact(env, "hessian", H.length, n * n);
  need_exact(env, "perm", perm.length, n);
  need_exact(env, "dead", dead.length, n);
  auto result = std::make_shared<GptqPrepared>();
  double* h = H.data;
  int32_t* pm = perm.data;
  uint8_t* dd = dead.data;
  return PromiseWorker::queue(
      env, objects_of(info), [=] { *result = gptq_prepare(h, n, damp, act, pm, dd); },
      [result](Napi::Env e) -> Napi::Value {
        auto o = Napi::Object::New(e);
        o.Set("damp", result->damp);
        o.Set("dead", static_cast<double>(result->dead));
        return o;
      });
}

// gptqQuantize(W, rows, cols, U, perm, dead, options, codes|null, qweight|null, scales, zeros|null) -> loss
// options: { bits, groupSize, symmetric, method, clipGrid, clipMaxShrink, blockSize, staticGroups }
Napi::Value Quantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto W = typed<float>(info, 0, "w");
  const auto rows = static_cast<size_t>(integer(info, 1, "rows", 1, kMaxDim));
  const auto cols = static_cast<size_t>(integer(info, 2, "cols", 1, kMaxDim));
  auto U = typed<double>(info, 3, "factor");
  auto perm = typed<int32_t>(info, 4, "perm");
  auto dead = typed<uint8_t>(info, 5, "dead");
  if (info.Length() < 7 || !info[6].IsObject()) throw_type(env, "options: expected an object");
  Napi::Object o = info[6].As<Napi::Object>();
  GptqParams p;
  p.q.bits = static_cast<int>(int_field(env, o, "bits", 1, 16));
  p.q.group = static_cast<int>(int_field(env, o, "groupSize", 1, kMaxDim));
  p.q.symmetric = bool_field(env, o, "symmetric");
  p.q.method = static_cast<QuantMethod>(int_field(env, o, "method", 0, 1));
  p.q.clip_grid = static_cast<int>(int_field(env, o, "clipGrid", 1, 10000));
  Napi::Value shrink = o.Get("clipMaxShrink");
  if (!shrink.IsNumber()) throw_type(env, "clipMaxShrink: expected a number");
  p.q.clip_max_shrink = shrink.As<Napi::Number>().FloatValue();
  p.block = static_cast<int>(int_field(env, o, "blockSize", 1, 1 << 16));
  p.static_groups = bool_field(env, o, "staticGroups");
  const std::string err = packed_shape_error(rows, cols, p.q.bits, p.q.group);
  if (!err.empty()) throw_range(env, err);
  need_exact(env, "w", W.length, rows * cols);
  need_exact(env, "factor", U.length, cols * cols);
  need_exact(env, "perm", perm.length, cols);
  need_exact(env, "dead", dead.length, cols);
  uint8_t* codes = nullptr;
  uint8_t* qweight = nullptr;
  if (!nullish(info, 7)) {
    auto c = typed<uint8_t>(info, 7, "codes");
    need_exact(env, "codes", c.length, rows * cols);
    codes = c.data;
  }
  if (!nullish(info, 8)) {
    auto q = typed<uint8_t>(info, 8, "qweight");
    need_exact(env, "qweight", q.length, rows * (cols / kPackBlockCodes) * packed_block_bytes(p.q.bits));
    qweight = q.data;
  }
  auto sc = typed<uint16_t>(info, 9, "scales");
  const size_t ng = rows * (cols / static_cast<size_t>(p.q.group));
  need_exact(env, "scales", sc.length, ng);
  uint8_t* zeros = nullptr;
  if (!p.q.symmetric) {
    auto z = typed<uint8_t>(info, 10, "zeros");
    need_exact(env, "zeros", z.length, ng);
    zeros = z.data;
  }
  const float* w = W.data;
  const double* u = U.data;
  const int32_t* pm = perm.data;
  const uint8_t* dd = dead.data;
  uint16_t* s = sc.data;
  auto loss = std::make_shared<double>(0.0);
  return PromiseWorker::queue(
      env, objects_of(info), [=] { *loss = gptq_quantize(w, rows, cols, u, pm, dd, p, codes, qweight, s, zeros); },
      [loss](Napi::Env e) -> Napi::Value { return Napi::Number::New(e, *loss); });
}

}  // namespace

void register_gptq(Napi::Env env, Napi::Object exports) {
  exports.Set("gptqAccumulate", Napi::Function::New(env, Accumulate));
  exports.Set("gptqPrepare", Napi::Function::New(env, Prepare));
  exports.Set("gptqQuantize", Napi::Function::New(env, Quantize));
}

}  // namespace lieq::napi
