// Build and machine information for `lieq doctor`, and the thread-count setting.
#include <napi.h>

#include "../core/cpu_features.h"
#include "../core/thread_pool.h"
#include "../cuda/cuda_info.h"
#include "bindings.h"
#include "napi_util.h"

namespace lieq::napi {
namespace {

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = Napi::Object::New(env);
  o.Set("simd", compiled_simd());
  o.Set("simdUsable", simd_usable());
#ifdef LIEQ_BUILD_SYSTEM
  o.Set("buildSystem", LIEQ_BUILD_SYSTEM);
#else
  o.Set("buildSystem", "unknown");
#endif
  o.Set("cuda", cuda_report().compiled);
#ifdef __VERSION__
  o.Set("compiler", __VERSION__);
#endif
  o.Set("napiVersion", NAPI_VERSION);
  return o;
}

Napi::Value CpuInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CpuFeatures f = detect_cpu_features();
  auto o = Napi::Object::New(env);
  o.Set("avx2", f.avx2);
  o.Set("fma", f.fma);
  o.Set("f16c", f.f16c);
  o.Set("avx512f", f.avx512f);
  o.Set("neon", f.neon);
  o.Set("hardwareThreads", hardware_threads());
  o.Set("threads", get_num_threads());
  return o;
}

Napi::Value CudaInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CudaReport r = cuda_report();
  auto o = Napi::Object::New(env);
  o.Set("compiled", r.compiled);
  o.Set("runtimeVersion", r.runtime_version);
  o.Set("driverVersion", r.driver_version);
  o.Set("reason", r.reason);
  auto list = Napi::Array::New(env, r.devices.size());
  for (size_t i = 0; i < r.devices.size(); ++i) {
    const auto& d = r.devices[i];
    auto dv = Napi::Object::New(env);
    dv.Set("index", d.index);
    dv.Set("name", d.name);
    dv.Set("totalMemory", static_cast<double>(d.total_memory));
    dv.Set("computeCapability", std::to_string(d.cc_major) + "." + std::to_string(d.cc_minor));
    dv.Set("multiprocessors", d.multiprocessors);
    dv.Set("memoryBusBits", d.memory_bus_bits);
    dv.Set("memoryClockKHz", d.memory_clock_khz);
    dv.Set("l2Bytes", static_cast<double>(d.l2_bytes));
    list.Set(static_cast<uint32_t>(i), dv);
  }
  o.Set("devices", list);
  return o;
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  set_num_threads(static_cast<int>(integer(info, 0, "threads", 0, 4096)));
  return Napi::Number::New(info.Env(), get_num_threads());
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), get_num_threads()); }

}  // namespace

void register_info(Napi::Env env, Napi::Object exports) {
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo));
  exports.Set("cpuInfo", Napi::Function::New(env, CpuInfo));
  exports.Set("cudaInfo", Napi::Function::New(env, CudaInfo));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("getThreads", Napi::Function::New(env, GetThreads));
}

}  // namespace lieq::napi
