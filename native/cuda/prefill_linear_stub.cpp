// CPU-only builds: the prefill-GEMM test/benchmark entry points exist and say why they cannot run.
#include <stdexcept>

#include "prefill_linear.h"

namespace lieq {

namespace {
[[noreturn]] void no_cuda() {
  throw std::runtime_error("lieq was built without CUDA (nvcc not found at build time, or LIEQ_CUDA=0)");
}
}  // namespace

int gpu_prefill_linear_apply(const GpuLinearHost&, const float*, int, float*, int) { no_cuda(); }
GpuPrefillTiming gpu_prefill_linear_time(const GpuLinearHost&, int, int, int) { no_cuda(); }

}  // namespace lieq
