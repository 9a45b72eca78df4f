// CUDA device discovery. Plain C++ interface: compiled from cuda_info.cu when the build has
// CUDA, from cuda_info_stub.cpp otherwise. Never throws; a machine with no driver or GPU
// yields an empty list and the reason.
#pragma once
#include <string>
#include <vector>

namespace lieq {

struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  size_t total_memory = 0;
  int cc_major = 0, cc_minor = 0;
  int multiprocessors = 0;
  int memory_bus_bits = 0;
  int memory_clock_khz = 0;
  size_t l2_bytes = 0;
};

struct CudaReport {
  bool compiled = false;    // addon built with CUDA
  int runtime_version = 0;  // cudart linked in (e.g. 13000)
  int driver_version = 0;   // 0 when no driver
  std::vector<CudaDeviceInfo> devices;
  std::string reason;       // why devices is empty
};

CudaReport cuda_report();

// Memory ceilings of the current device, measured now: a read kernel (16-byte non-allocating
// loads, four in flight per thread: the kernel of bench/cuda/qgemv_harness.cu) and a
// device-to-device copy, over two `bytes`-sized buffers used alternately (far larger than the L2),
// median of `reps` timed launches each. For rooflines measured in the same run as a benchmark.
// Throws std::runtime_error (no device, out of memory, CUDA failure).
struct CudaBandwidth {
  double read_tbps = 0;  // bytes read / s / 1e12
  double copy_tbps = 0;  // (bytes read + bytes written) / s / 1e12
  size_t bytes = 0;
};
CudaBandwidth cuda_measure_bandwidth(size_t bytes, int reps);

}  // namespace lieq
