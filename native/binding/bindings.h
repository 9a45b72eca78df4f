// One registration function per binding file; addon.cpp calls them all.
#pragma once
#include <napi.h>

namespace lieq::napi {

void register_info(Napi::Env env, Napi::Object exports);
void register_convert(Napi::Env env, Napi::Object exports);
void register_linalg(Napi::Env env, Napi::Object exports);
void register_quant(Napi::Env env, Napi::Object exports);
void register_runtime(Napi::Env env, Napi::Object exports);
void register_cuda(Napi::Env env, Napi::Object exports);
void register_gptq(Napi::Env env, Napi::Object exports);
void register_gguf(Napi::Env env, Napi::Object exports);
void register_svd_gpu(Napi::Env env, Napi::Object exports);

}  // namespace lieq::napi
