// Used when the addon is built without CUDA (no nvcc, or LIEQ_CUDA=0).
#include <stdexcept>

#include "cuda_info.h"

namespace lieq {

CudaReport cuda_report() {
  CudaReport r;
  r.reason = "addon built without CUDA (nvcc not found at build time, or LIEQ_CUDA=0)";
  return r;
}

CudaBandwidth cuda_measure_bandwidth(size_t, int) {
  throw std::runtime_error("lieq was built without CUDA (nvcc not found at build time, or LIEQ_CUDA=0)");
}

}  // namespace lieq
