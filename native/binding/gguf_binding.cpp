// ggml block quantizers for GGUF export (native/core/ggml_quants.h). TypedArrays are used in
// place; the TS side (lib/export/ggml-types.ts) validates first, these checks are the backstop.
#include <napi.h>

#include <stdexcept>
#include <string>

#include "../core/ggml_quants.h"
#include "bindings.h"
#include "napi_util.h"

namespace lieq::napi {
namespace {

constexpr int64_t kMaxDim = int64_t{1} << 31;

struct GgmlQuantizeArgs {
  ggml::GgmlType type;
  const float* src;
  uint8_t* dst;
  int64_t rows;
  int64_t cols;
};

// (type, src f32 [rows, cols], rows, cols, dst u8 [rows · rowBytes(cols)])
GgmlQuantizeArgs ggml_quantize_args(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto type = static_cast<int32_t>(integer(info, 0, "type", 0, 1 << 16));
  const ggml::TypeTraits* t = ggml::type_traits(type);
  if (!t) throw_range(env, "type: ggml type " + std::to_string(type) + " has no quantizer here");
  auto src = typed<float>(info, 1, "src");
  const int64_t rows = integer(info, 2, "rows", 1, kMaxDim);
  const int64_t cols = integer(info, 3, "cols", 1, kMaxDim);
  auto dst = typed<uint8_t>(info, 4, "dst");
  if (cols % t->block_size != 0)
    throw_range(env, std::string("cols: ") + t->name + " needs a multiple of " + std::to_string(t->block_size) + ", got " +
                         std::to_string(cols));
  need_length(env, "src", src.length, static_cast<size_t>(rows * cols));
  const size_t want = static_cast<size_t>(rows) * ggml::row_bytes(t->type, cols);
  if (dst.length != want)
    throw_range(env, "dst: expected " + std::to_string(want) + " bytes, got " + std::to_string(dst.length));
  return {t->type, src.data, dst.data, rows, cols};
}

Napi::Value GgmlQuantize(const Napi::CallbackInfo& info) {
  const GgmlQuantizeArgs a = ggml_quantize_args(info);
  ggml::quantize_rows(a.type, a.src, a.dst, a.rows, a.cols);
  return info.Env().Undefined();
}

Napi::Value GgmlQuantizeAsync(const Napi::CallbackInfo& info) {
  const GgmlQuantizeArgs a = ggml_quantize_args(info);
  // The worker reads src and writes dst: keep both arrays alive until it has finished.
  return PromiseWorker::queue(info.Env(), {info[1], info[4]}, [a] { ggml::quantize_rows(a.type, a.src, a.dst, a.rows, a.cols); },
                              nullptr);
}

// ggmlTypeInfo(type) -> { name, blockSize, blockBytes } | null
Napi::Value GgmlTypeInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ggml::TypeTraits* t = ggml::type_traits(static_cast<int32_t>(integer(info, 0, "type", 0, 1 << 16)));
  if (!t) return env.Null();
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", t->name);
  o.Set("blockSize", t->block_size);
  o.Set("blockBytes", t->block_bytes);
  return o;
}

}  // namespace

void register_gguf(Napi::Env env, Napi::Object exports) {
  exports.Set("ggmlQuantize", Napi::Function::New(env, GgmlQuantize));
  exports.Set("ggmlQuantizeAsync", Napi::Function::New(env, GgmlQuantizeAsync));
  exports.Set("ggmlTypeInfo", Napi::Function::New(env, GgmlTypeInfo));
}

}  // namespace lieq::napi
