// See linalg_args.h.
#include "linalg_args.h"

#include <algorithm>
#include <string>

#include "napi_util.h"

namespace lieq::napi {

int dim(const Napi::CallbackInfo& info, size_t i, const char* what, int64_t lo) {
  return static_cast<int>(integer(info, i, what, lo, kMaxDim));
}

namespace {
// Elements a row-major [rows, ld] matrix with `cols` used columns spans.
size_t span(int rows, int cols, int ld) {
  return rows == 0 || cols == 0 ? 0 : static_cast<size_t>(rows - 1) * static_cast<size_t>(ld) + static_cast<size_t>(cols);
}
}  // namespace

void need_matrix(Napi::Env env, const char* what, size_t have, int rows, int cols, int ld, const char* ld_name) {
  if (ld < cols)
    throw_range(env, std::string(ld_name) + ": " + std::to_string(ld) + " is less than the row length " +
                         std::to_string(cols));
  need_length(env, what, have, span(rows, cols, ld));
}

uint64_t seed_arg(Napi::Env env, Napi::Value v) {
  if (v.IsBigInt()) {
    bool lossless = false;
    const uint64_t s = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw_range(env, "seed: a BigInt seed must fit in 64 unsigned bits");
    return s;
  }
  if (!v.IsNumber()) throw_type(env, "seed: expected a non-negative integer or a BigInt");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 9007199254740991.0 || d != static_cast<double>(static_cast<uint64_t>(d)))
    throw_range(env, "seed: expected an integer in [0, 2^53), got " + std::to_string(d));
  return static_cast<uint64_t>(d);
}

SvdArgs svd_args(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  SvdArgs s;
  auto a = typed<float>(info, 0, "A");
  s.m = dim(info, 1, "m", 1);
  s.n = dim(info, 2, "n", 1);
  s.k = dim(info, 3, "k", 1);
  s.lda = s.n;
  if (s.k > std::min(s.m, s.n))
    throw_range(env, "k: " + std::to_string(s.k) + " is more than min(m, n) = " + std::to_string(std::min(s.m, s.n)));
  if (info.Length() > 4 && !info[4].IsUndefined()) {
    if (!info[4].IsObject()) throw_type(env, "options: expected an object");
    auto o = info[4].As<Napi::Object>();
    auto int_opt = [&](const char* key, int64_t lo, int64_t hi, int& dst) {
      Napi::Value v = o.Get(key);
      if (!v.IsUndefined()) dst = static_cast<int>(checked_integer(env, v, key, lo, hi));
    };
    int_opt("oversample", 0, kMaxDim, s.opt.oversample);
    int_opt("powerIters", 0, 64, s.opt.power_iters);
    int_opt("lda", s.n, kMaxDim, s.lda);
    int method = static_cast<int>(s.opt.method);
    int_opt("method", 0, 2, method);
    s.opt.method = static_cast<SvdMethod>(method);
    Napi::Value seed = o.Get("seed");
    if (!seed.IsUndefined()) s.opt.seed = seed_arg(env, seed);
    Napi::Value vectors = o.Get("vectors");
    if (!vectors.IsUndefined()) {
      if (!vectors.IsBoolean()) throw_type(env, "vectors: expected a boolean");
      s.opt.vectors = vectors.As<Napi::Boolean>().Value();
    }
  }
  need_matrix(env, "A", a.length, s.m, s.n, s.lda, "lda");
  s.A = a.data;
  return s;
}

}  // namespace lieq::napi
