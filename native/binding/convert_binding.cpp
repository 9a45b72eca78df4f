// dtype conversion for the model loaders: source bytes (F32/F16/BF16) -> Float32Array.
#include <napi.h>

#include "../core/convert.h"
#include "bindings.h"
#include "napi_util.h"

namespace lieq::napi {
namespace {

DType dtype_arg(const Napi::CallbackInfo& info, size_t i) {
  return static_cast<DType>(integer(info, i, "dtype", 0, 2));
}

// toF32(src: Uint8Array, dtype: 0|1|2, dst: Float32Array): synchronous (loaders call it per tensor).
Napi::Value ToF32(const Napi::CallbackInfo& info) {
  auto src = bytes(info, 0, "src");
  const DType t = dtype_arg(info, 1);
  auto dst = typed<float>(info, 2, "dst");
  const size_t n = src.length / dtype_size(t);
  if (src.length % dtype_size(t)) throw_range(info.Env(), "src: byte length is not a multiple of the dtype size");
  need_length(info.Env(), "dst", dst.length, n);
  convert_to_f32(src.data, t, dst.data, n);
  return info.Env().Undefined();
}

// fromF32(src: Float32Array, dtype, dst: Uint8Array)
Napi::Value FromF32(const Napi::CallbackInfo& info) {
  auto src = typed<float>(info, 0, "src");
  const DType t = dtype_arg(info, 1);
  auto dst = bytes(info, 2, "dst");
  need_length(info.Env(), "dst (bytes)", dst.length, src.length * dtype_size(t));
  convert_from_f32(src.data, t, dst.data, src.length);
  return info.Env().Undefined();
}

Napi::Value CountNonFinite(const Napi::CallbackInfo& info) {
  auto x = typed<float>(info, 0, "x");
  return Napi::Number::New(info.Env(), static_cast<double>(count_nonfinite(x.data, x.length)));
}

}  // namespace

void register_convert(Napi::Env env, Napi::Object exports) {
  exports.Set("toF32", Napi::Function::New(env, ToF32));
  exports.Set("fromF32", Napi::Function::New(env, FromF32));
  exports.Set("countNonFinite", Napi::Function::New(env, CountNonFinite));
}

}  // namespace lieq::napi
