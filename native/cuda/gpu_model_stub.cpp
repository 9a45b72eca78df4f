// Used when the addon is built without CUDA: the GPU model API exists and says why it cannot run.
#include <stdexcept>

#include "gpu_model.h"

namespace lieq {

namespace {
[[noreturn]] void no_cuda() {
  throw std::runtime_error("lieq was built without CUDA (nvcc not found at build time, or LIEQ_CUDA=0)");
}
}  // namespace

class GpuModel {};

void GpuModelDeleter::operator()(GpuModel* m) const { delete m; }

std::string gpu_unavailable_reason() { return "addon built without CUDA (nvcc not found at build time, or LIEQ_CUDA=0)"; }

GpuModelPtr gpu_model_create(const GpuModelConfig&, const float*, const float*, const float*, const float*) { no_cuda(); }
void gpu_model_set_layer(GpuModel*, int, const GpuLayerHost&) { no_cuda(); }
void gpu_model_set_head(GpuModel*, const GpuLinearHost&, bool) { no_cuda(); }
void gpu_model_copy_layer(GpuModel*, int, int) { no_cuda(); }
void gpu_model_step(GpuModel*, int, const int32_t*, const int32_t*, const int32_t*, float*, bool) { no_cuda(); }
void gpu_model_prefill(GpuModel*, int, const int32_t*, int, int, float*, int) { no_cuda(); }
GpuModelStats gpu_model_stats(const GpuModel*) { no_cuda(); }
void gpu_linear_apply(const GpuLinearHost&, const float*, int, float*) { no_cuda(); }

}  // namespace lieq
