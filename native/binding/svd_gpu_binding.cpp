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
#include "linalg_args.h"
#include "napi_util.h"

namespace lieq::napi {
namespace {

template <typename T>
Napi::TypedArrayOf<T> copy_out(Napi::Env env, const std::vector<T>& v) {
  auto out = Napi::TypedArrayOf<T>::New(env, v.size());
  if (!v.empty()) std::memcpy(out.Data(), v.data(), v.size() * sizeof(T));
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

// cudaTruncatedSvd(A, m, n, k, options?: {oversample, powerIters, seed, vectors, method, lda}):
// the CPU svd's arguments (svd_args in linalg_args.h).
Napi::Value TruncatedSvd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto job = std::make_shared<SvdJob>();
  const SvdArgs a = svd_args(info);
  job->A = a.A;
  job->m = a.m, job->n = a.n, job->k = a.k, job->lda = a.lda;
  job->opt = a.opt;
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
  job->rows = dim(info, 1, Gram ? "t" : "m", 1);
  job->cols = dim(info, 2, Gram ? "d" : "n", 1);
  job->ld = info.Length() > 3 && !info[3].IsUndefined() ? dim(info, 3, "ld", 1) : job->cols;
  need_matrix(info.Env(), Gram ? "Z" : "A", x.length, job->rows, job->cols, job->ld, "ld");
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
