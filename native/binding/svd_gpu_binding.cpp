// The GPU truncated SVD and Gram spectra (native/cuda/svd_gpu.h; facade lib/cuda/svd.ts). Same
// arguments and results as svd / gramEigenvalues / singularValues in linalg_binding.cpp, all
// Promise-returning (a libuv worker waits for the GPU). Arguments are checked here (TypeError /
// RangeError) before any work; the matrices are read in place (zero copy).
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../cuda/svd_gpu.h"
#include "bindings.h"
#include "napi_util.h"

namespace lieq::napi {
namespace {

constexpr int64_t kMaxDim = 1 << 30;

int dim(const Napi::CallbackInfo& info, size_t i, const char* what) {
  return static_cast<int>(integer(info, i, what, 1, kMaxDim));
}

void need_matrix(Napi::Env env, const char* what, size_t have, int rows, int cols, int ld) {
  if (ld < cols) throw_range(env, "ld: " + std::to_string(ld) + " is less than the row length " + std::to_string(cols));
  need_length(env, what, have, static_cast<size_t>(rows - 1) * static_cast<size_t>(ld) + static_cast<size_t>(cols));
}

template <typename T>
Napi::TypedArrayOf<T> copy_out(Napi::Env env, const std::vector<T>& v) {
  auto out = Napi::TypedArrayOf<T>::New(env, v.size());
  if (!v.empty()) std::memcpy(out.Data(), v.data(), v.size() * sizeof(T));
  return out;
}

uint64_t seed_arg(Napi::Env env, Napi::Value v) {
  if (v.IsBigInt()) {
    bool lossless = false;
    const uint64_t s = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw_range(env, "seed: a BigInt seed must fit in 64 unsigned bits");
    return s;
  }
  return static_cast<uint64_t>(checked_integer(env, v, "seed", 0, 9007199254740991LL));
}

struct SvdJob {
  int m = 0, n = 0, k = 0, lda = 0;
  const float* A = nullptr;
  SvdOptions opt;
  SvdMethod used = SvdMethod::Auto;
  std::vector<double> S;
  std::vector<float> U, V;

  void run() {
    // NaN-filled: an output the GPU path failed to write cannot pass a check.
    S.assign(static_cast<size_t>(k), std::nan(""));
    if (opt.vectors) {
      U.assign(static_cast<size_t>(m) * k, std::nanf(""));
      V.assign(static_cast<size_t>(n) * k, std::nanf(""));
    }
    used = svd_topk_gpu(m, n, A, lda, k, opt, S.data(), opt.vectors ? U.data() : nullptr,
                        opt.vectors ? V.data() : nullptr);
  }
  Napi::Value result(Napi::Env env) const {
    auto o = Napi::Object::New(env);
    o.Set("S", copy_out(env, S));
    if (opt.vectors) {
      o.Set("U", copy_out(env, U));
      o.Set("V", copy_out(env, V));
    }
    o.Set("method", used == SvdMethod::Exact ? "exact" : "randomized");
    return o;
  }
};

// cudaTruncatedSvd(A, m, n, k, options?: {oversample, powerIters, seed, vectors, method, lda})
Napi::Value TruncatedSvd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto job = std::make_shared<SvdJob>();
  auto a = typed<float>(info, 0, "A");
  job->m = dim(info, 1, "m");
  job->n = dim(info, 2, "n");
  job->k = dim(info, 3, "k");
  job->lda = job->n;
  if (job->k > std::min(job->m, job->n))
    throw_range(env, "k: " + std::to_string(job->k) + " is more than min(m, n) = " + std::to_string(std::min(job->m, job->n)));
  if (info.Length() > 4 && !info[4].IsUndefined()) {
    if (!info[4].IsObject()) throw_type(env, "options: expected an object");
    auto o = info[4].As<Napi::Object>();
    auto int_opt = [&](const char* key, int64_t lo, int64_t hi, int& dst) {
      Napi::Value v = o.Get(key);
      if (!v.IsUndefined()) dst = static_cast<int>(checked_integer(env, v, key, lo, hi));
    };
    int_opt("oversample", 0, kMaxDim, job->opt.oversample);
    int_opt("powerIters", 0, 64, job->opt.power_iters);
    int_opt("lda", job->n, kMaxDim, job->lda);
    int method = static_cast<int>(job->opt.method);
    int_opt("method", 0, 2, method);
    job->opt.method = static_cast<SvdMethod>(method);
    Napi::Value seed = o.Get("seed");
    if (!seed.IsUndefined()) job->opt.seed = seed_arg(env, seed);
    Napi::Value vectors = o.Get("vectors");
    if (!vectors.IsUndefined()) {
      if (!vectors.IsBoolean()) throw_type(env, "vectors: expected a boolean");
      job->opt.vectors = vectors.As<Napi::Boolean>().Value();
    }
  }
  need_matrix(env, "A", a.length, job->m, job->n, job->lda);
  job->A = a.data;
  return PromiseWorker::queue(
      env, {info[0]}, [job] { job->run(); }, [job](Napi::Env e) { return job->result(e); });
}

// cudaGramEigenvalues(Z, t, d, ld?) -> Promise<Float64Array(d)>;
// cudaSingularValues(A, m, n, ld?) -> Promise<Float64Array(min(m, n))>.
template <bool Gram>
Napi::Value Spectrum(const Napi::CallbackInfo& info) {
  struct Job {
    int rows = 0, cols = 0, ld = 0;
    const float* X = nullptr;
    std::vector<double> out;
  };
  auto job = std::make_shared<Job>();
  auto x = typed<float>(info, 0, Gram ? "Z" : "A");
  job->rows = dim(info, 1, Gram ? "t" : "m");
  job->cols = dim(info, 2, Gram ? "d" : "n");
  job->ld = info.Length() > 3 && !info[3].IsUndefined() ? dim(info, 3, "ld") : job->cols;
  need_matrix(info.Env(), Gram ? "Z" : "A", x.length, job->rows, job->cols, job->ld);
  job->X = x.data;
  return PromiseWorker::queue(
      info.Env(), {info[0]},
      [job] {
        if (Gram) {
          job->out.assign(static_cast<size_t>(job->cols), std::nan(""));
          gram_eigenvalues_gpu(job->rows, job->cols, job->X, job->ld, job->out.data());
        } else {
          job->out.assign(static_cast<size_t>(std::min(job->rows, job->cols)), std::nan(""));
          singular_values_gpu(job->rows, job->cols, job->X, job->ld, job->out.data());
        }
      },
      [job](Napi::Env e) -> Napi::Value { return copy_out(e, job->out); });
}

// '' when the GPU functions can run, else why not (never throws).
Napi::Value UnavailableReason(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), svd_gpu_unavailable_reason());
}

}  // namespace

void register_svd_gpu(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaSvdUnavailableReason", Napi::Function::New(env, UnavailableReason));
  exports.Set("cudaTruncatedSvd", Napi::Function::New(env, TruncatedSvd));
  exports.Set("cudaGramEigenvalues", Napi::Function::New(env, Spectrum<true>));
  exports.Set("cudaSingularValues", Napi::Function::New(env, Spectrum<false>));
}

}  // namespace lieq::napi
