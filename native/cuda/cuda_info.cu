// Device discovery through the CUDA runtime (linked statically, so the addon loads on
// machines with no driver: cudaGetDeviceCount then fails with cudaErrorInsufficientDriver
// or cudaErrorNoDevice, and the CPU path is used).
#include <cuda_runtime.h>

#include <string>

#include "cuda_info.h"

namespace lieq {

CudaReport cuda_report() {
  CudaReport r;
  r.compiled = true;
  cudaRuntimeGetVersion(&r.runtime_version);
  if (cudaDriverGetVersion(&r.driver_version) != cudaSuccess) r.driver_version = 0;
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    r.reason = std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return r;
  }
  if (n == 0) r.reason = "no CUDA devices";
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    CudaDeviceInfo d;
    d.index = i;
    d.name = p.name;
    d.total_memory = p.totalGlobalMem;
    d.cc_major = p.major;
    d.cc_minor = p.minor;
    d.multiprocessors = p.multiProcessorCount;
    d.memory_bus_bits = p.memoryBusWidth;
    int clk = 0;
    cudaDeviceGetAttribute(&clk, cudaDevAttrMemoryClockRate, i);
    d.memory_clock_khz = clk;
    d.l2_bytes = static_cast<size_t>(p.l2CacheSize);
    r.devices.push_back(d);
  }
  return r;
}

}  // namespace lieq
