// The addon's export list. Each concern registers its functions from its own file.
#include <napi.h>

#include "bindings.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  using namespace lieq::napi;
  register_info(env, exports);
  register_convert(env, exports);
  register_linalg(env, exports);
  register_quant(env, exports);
  register_runtime(env, exports);
  register_cuda(env, exports);
  register_gptq(env, exports);
  register_gguf(env, exports);
  register_svd_gpu(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(lieq, Init)
