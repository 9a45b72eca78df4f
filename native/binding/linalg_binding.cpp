// Matrix products, truncated SVD and spectra. lib/kernels/linalg.ts validates the arguments
// and names them in its errors; this layer re-checks shapes against buffer lengths so that a
// wrong call throws (TypeError/RangeError) instead of reading out of bounds. Long calls come
// in two flavours: `name(...)` returns a Promise and runs on a libuv worker (the kernel then
// uses the core thread pool), `nameSync(...)` runs on the calling thread.
#include <napi.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../core/gemm.h"
#include "../core/svd.h"
#include "../core/svd_eigen.h"
#include "bindings.h"
#include "linalg_args.h"
#include "napi_util.h"

namespace lieq::napi {
namespace {

bool boolean(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (i >= info.Length() || !info[i].IsBoolean()) throw_type(info.Env(), std::string(what) + ": expected a boolean");
  return info[i].As<Napi::Boolean>().Value();
}

// ---- gemm -----------------------------------------------------------------------------------

enum class GemmPath : int { Auto = 0, Portable = 1, Reference = 2 };

struct GemmCall {
  bool ta, tb;
  int M, N, K;
  float alpha, beta;
  const float* A;
  int lda;
  const float* B;
  int ldb;
  float* C;
  int ldc;
  GemmPath path;

  void run() const {
    auto fn = path == GemmPath::Reference ? sgemm_ref : path == GemmPath::Portable ? sgemm_portable : sgemm;
    fn(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
};

// (transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, path?)
GemmCall gemm_call(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  GemmCall g;
  g.ta = boolean(info, 0, "transA");
  g.tb = boolean(info, 1, "transB");
  g.M = dim(info, 2, "M");
  g.N = dim(info, 3, "N");
  g.K = dim(info, 4, "K");
  g.alpha = static_cast<float>(number(info, 5, "alpha"));
  auto a = typed<float>(info, 6, "A");
  g.lda = dim(info, 7, "lda", 1);
  auto b = typed<float>(info, 8, "B");
  g.ldb = dim(info, 9, "ldb", 1);
  g.beta = static_cast<float>(number(info, 10, "beta"));
  auto c = typed<float>(info, 11, "C");
  g.ldc = dim(info, 12, "ldc", 1);
  g.path = info.Length() > 13 && !info[13].IsUndefined() ? static_cast<GemmPath>(integer(info, 13, "path", 0, 2))
                                                         : GemmPath::Auto;
  if (g.alpha != 0.0f && g.K > 0) {
    need_matrix(env, "A", a.length, g.ta ? g.K : g.M, g.ta ? g.M : g.K, g.lda, "lda");
    need_matrix(env, "B", b.length, g.tb ? g.N : g.K, g.tb ? g.K : g.N, g.ldb, "ldb");
  }
  need_matrix(env, "C", c.length, g.M, g.N, g.ldc, "ldc");
  g.A = a.data;
  g.B = b.data;
  g.C = c.data;
  return g;
}

Napi::Value SgemmSync(const Napi::CallbackInfo& info) {
  gemm_call(info).run();
  return info.Env().Undefined();
}

Napi::Value Sgemm(const Napi::CallbackInfo& info) {
  const GemmCall g = gemm_call(info);
  return PromiseWorker::queue(info.Env(), {info[6], info[8], info[11]}, [g] { g.run(); }, nullptr);
}

// (trans, n, k, alpha, A, lda, beta, C, ldc)
struct SyrkCall {
  bool trans;
  int n, k;
  float alpha, beta;
  const float* A;
  int lda;
  float* C;
  int ldc;
  void run() const { ssyrk(trans, n, k, alpha, A, lda, beta, C, ldc); }
};

SyrkCall syrk_call(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  SyrkCall s;
  s.trans = boolean(info, 0, "trans");
  s.n = dim(info, 1, "n");
  s.k = dim(info, 2, "k");
  s.alpha = static_cast<float>(number(info, 3, "alpha"));
  auto a = typed<float>(info, 4, "A");
  s.lda = dim(info, 5, "lda", 1);
  s.beta = static_cast<float>(number(info, 6, "beta"));
  auto c = typed<float>(info, 7, "C");
  s.ldc = dim(info, 8, "ldc", 1);
  if (s.k > 0) need_matrix(env, "A", a.length, s.trans ? s.k : s.n, s.trans ? s.n : s.k, s.lda, "lda");
  need_matrix(env, "C", c.length, s.n, s.n, s.ldc, "ldc");
  s.A = a.data;
  s.C = c.data;
  return s;
}

Napi::Value SsyrkSync(const Napi::CallbackInfo& info) {
  syrk_call(info).run();
  return info.Env().Undefined();
}

Napi::Value Ssyrk(const Napi::CallbackInfo& info) {
  const SyrkCall s = syrk_call(info);
  return PromiseWorker::queue(info.Env(), {info[4], info[7]}, [s] { s.run(); }, nullptr);
}

// ---- svd ------------------------------------------------------------------------------------

Napi::Float64Array to_f64(Napi::Env env, const std::vector<double>& v) {
  auto out = Napi::Float64Array::New(env, v.size());
  if (!v.empty()) std::memcpy(out.Data(), v.data(), v.size() * sizeof(double));
  return out;
}

Napi::Float32Array to_f32(Napi::Env env, const std::vector<float>& v) {
  auto out = Napi::Float32Array::New(env, v.size());
  if (!v.empty()) std::memcpy(out.Data(), v.data(), v.size() * sizeof(float));
  return out;
}

struct SvdJob {
  int m = 0, n = 0, k = 0, lda = 0;
  const float* A = nullptr;
  SvdOptions opt;
  SvdMethod used = SvdMethod::Auto;
  std::vector<double> S;
  std::vector<float> U, V;

  void run() {
    S.resize(static_cast<size_t>(k));
    if (opt.vectors) {
      U.resize(static_cast<size_t>(m) * k);
      V.resize(static_cast<size_t>(n) * k);
    }
    used = svd_topk(m, n, A, lda, k, opt, S.data(), opt.vectors ? U.data() : nullptr, opt.vectors ? V.data() : nullptr);
  }

  Napi::Value result(Napi::Env env) const {
    auto o = Napi::Object::New(env);
    o.Set("S", to_f64(env, S));
    if (opt.vectors) {
      o.Set("U", to_f32(env, U));
      o.Set("V", to_f32(env, V));
    }
    o.Set("method", used == SvdMethod::Exact ? "exact" : "randomized");
    return o;
  }
};

// (A, m, n, k, options?): svd_args in linalg_args.h.
std::shared_ptr<SvdJob> svd_job(const Napi::CallbackInfo& info) {
  auto job = std::make_shared<SvdJob>();
  const SvdArgs a = svd_args(info);
  job->A = a.A;
  job->m = a.m, job->n = a.n, job->k = a.k, job->lda = a.lda;
  job->opt = a.opt;
  return job;
}

Napi::Value SvdSync(const Napi::CallbackInfo& info) {
  auto job = svd_job(info);
  try {
    job->run();
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
  return job->result(info.Env());
}

Napi::Value Svd(const Napi::CallbackInfo& info) {
  auto job = svd_job(info);
  return PromiseWorker::queue(
      info.Env(), {info[0]}, [job] { job->run(); }, [job](Napi::Env env) { return job->result(env); });
}

// Spectra: (X, rows, cols, lda?) -> Float64Array.
struct SpectrumJob {
  bool gram = false;  // gram_eigenvalues (cols values) or singular_values (min values)
  int rows = 0, cols = 0, ld = 0;
  const float* X = nullptr;
  std::vector<double> out;
  void run() {
    if (gram) {
      out.resize(static_cast<size_t>(cols));
      gram_eigenvalues(rows, cols, X, ld, out.data());
    } else {
      out.resize(static_cast<size_t>(std::min(rows, cols)));
      singular_values(rows, cols, X, ld, out.data());
    }
  }
};

std::shared_ptr<SpectrumJob> spectrum_job(const Napi::CallbackInfo& info, bool gram) {
  auto job = std::make_shared<SpectrumJob>();
  job->gram = gram;
  auto x = typed<float>(info, 0, gram ? "Z" : "A");
  job->rows = dim(info, 1, gram ? "t" : "m", 1);
  job->cols = dim(info, 2, gram ? "d" : "n", 1);
  job->ld = info.Length() > 3 && !info[3].IsUndefined() ? dim(info, 3, "ld", 1) : job->cols;
  need_matrix(info.Env(), gram ? "Z" : "A", x.length, job->rows, job->cols, job->ld, "ld");
  job->X = x.data;
  return job;
}

template <bool Gram>
Napi::Value SpectrumSync(const Napi::CallbackInfo& info) {
  auto job = spectrum_job(info, Gram);
  try {
    job->run();
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
  return to_f64(info.Env(), job->out);
}

template <bool Gram>
Napi::Value Spectrum(const Napi::CallbackInfo& info) {
  auto job = spectrum_job(info, Gram);
  return PromiseWorker::queue(
      info.Env(), {info[0]}, [job] { job->run(); }, [job](Napi::Env env) -> Napi::Value { return to_f64(env, job->out); });
}

// symEigenSync(A: Float64Array [n*n], n, vectors: boolean) -> {values, vectors?}; A is copied.
Napi::Value SymEigenSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto a = typed<double>(info, 0, "A");
  const int n = dim(info, 1, "n", 1);
  const bool want = boolean(info, 2, "vectors");
  const size_t nn = static_cast<size_t>(n) * n;
  need_length(env, "A", a.length, nn);
  std::vector<double> work(a.data, a.data + nn), values(static_cast<size_t>(n)), vectors(want ? nn : 0);
  try {
    sym_eigen(n, work.data(), values.data(), want ? vectors.data() : nullptr);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  auto o = Napi::Object::New(env);
  o.Set("values", to_f64(env, values));
  if (want) o.Set("vectors", to_f64(env, vectors));
  return o;
}

// gaussianMatrix(rows, cols, seed) -> Float32Array: the randomised SVD's test matrix.
Napi::Value GaussianMatrix(const Napi::CallbackInfo& info) {
  const int rows = dim(info, 0, "rows"), cols = dim(info, 1, "cols");
  // V8 aborts the process when an ArrayBuffer cannot be allocated: refuse absurd sizes first.
  constexpr size_t kMaxElements = size_t{1} << 31;
  if (static_cast<size_t>(rows) * static_cast<size_t>(cols) > kMaxElements)
    throw_range(info.Env(), "rows × cols: " + std::to_string(static_cast<size_t>(rows) * static_cast<size_t>(cols)) +
                                " floats exceeds the limit of 2^31");
  if (info.Length() < 3) throw_type(info.Env(), "seed: expected a non-negative integer or a BigInt");
  const uint64_t seed = seed_arg(info.Env(), info[2]);
  auto out = Napi::Float32Array::New(info.Env(), static_cast<size_t>(rows) * cols);
  gaussian_matrix(rows, cols, seed, out.Data());
  return out;
}

}  // namespace

void register_linalg(Napi::Env env, Napi::Object exports) {
  exports.Set("sgemm", Napi::Function::New(env, Sgemm));
  exports.Set("sgemmSync", Napi::Function::New(env, SgemmSync));
  exports.Set("ssyrk", Napi::Function::New(env, Ssyrk));
  exports.Set("ssyrkSync", Napi::Function::New(env, SsyrkSync));
  exports.Set("svd", Napi::Function::New(env, Svd));
  exports.Set("svdSync", Napi::Function::New(env, SvdSync));
  exports.Set("gramEigenvalues", Napi::Function::New(env, Spectrum<true>));
  exports.Set("gramEigenvaluesSync", Napi::Function::New(env, SpectrumSync<true>));
  exports.Set("singularValues", Napi::Function::New(env, Spectrum<false>));
  exports.Set("singularValuesSync", Napi::Function::New(env, SpectrumSync<false>));
  exports.Set("symEigenSync", Napi::Function::New(env, SymEigenSync));
  exports.Set("gaussianMatrix", Napi::Function::New(env, GaussianMatrix));
}

}  // namespace lieq::napi
