// Used when the addon is built without CUDA: the GPU SVD API exists and says why it cannot run.
#include <stdexcept>

#include "svd_gpu.h"

namespace lieq {

namespace {
constexpr const char* kWhy = "addon built without CUDA (nvcc not found at build time, or LIEQ_CUDA=0)";
[[noreturn]] void no_cuda() { throw std::runtime_error(std::string("lieq was built without CUDA (nvcc not found at build time, or LIEQ_CUDA=0)")); }
}  // namespace

std::string svd_gpu_unavailable_reason() { return kWhy; }

SvdMethod svd_topk_gpu(int, int, const float*, int, int, const SvdOptions&, double*, float*, float*) { no_cuda(); }
void gram_eigenvalues_gpu(int, int, const float*, int, double*) { no_cuda(); }
void singular_values_gpu(int, int, const float*, int, double*) { no_cuda(); }

}  // namespace lieq
