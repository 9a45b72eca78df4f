// Helpers shared by the binding files: argument checks that throw JS errors, zero-copy
// TypedArray views, and a Promise-returning AsyncWorker whose Execute() sees only plain
// C++ data. Only this layer knows about Node.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace lieq::napi {

[[noreturn]] inline void throw_type(Napi::Env env, const std::string& msg) {
  throw Napi::TypeError::New(env, msg);
}
[[noreturn]] inline void throw_range(Napi::Env env, const std::string& msg) {
  throw Napi::RangeError::New(env, msg);
}

// A view of a TypedArray argument: pointer honours byteOffset, no copy.
template <typename T>
struct View {
  T* data = nullptr;
  size_t length = 0;
};

template <typename T>
constexpr napi_typedarray_type typed_array_kind();
template <> constexpr napi_typedarray_type typed_array_kind<float>() { return napi_float32_array; }
template <> constexpr napi_typedarray_type typed_array_kind<double>() { return napi_float64_array; }
template <> constexpr napi_typedarray_type typed_array_kind<uint8_t>() { return napi_uint8_array; }
template <> constexpr napi_typedarray_type typed_array_kind<int8_t>() { return napi_int8_array; }
template <> constexpr napi_typedarray_type typed_array_kind<uint16_t>() { return napi_uint16_array; }
template <> constexpr napi_typedarray_type typed_array_kind<int32_t>() { return napi_int32_array; }
template <> constexpr napi_typedarray_type typed_array_kind<uint32_t>() { return napi_uint32_array; }

inline const char* typed_array_name(napi_typedarray_type t) {
  switch (t) {
    case napi_int8_array: return "Int8Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_uint8_clamped_array: return "Uint8ClampedArray";
    case napi_int16_array: return "Int16Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_uint32_array: return "Uint32Array";
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    default: return "TypedArray";
  }
}

// A transferred (detached) buffer has no memory: refuse it by name instead of reading it as
// empty, which would silently skip work (an empty source) or look like a size mismatch.
inline void refuse_detached(Napi::Env env, const Napi::TypedArray& ta, const std::string& what) {
  if (ta.ArrayBuffer().IsDetached()) throw_type(env, what + ": its ArrayBuffer is detached (transferred)");
}

// Typed view of info[i]; throws TypeError naming `what` on a wrong type or a detached buffer.
template <typename T>
View<T> typed(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Napi::Env env = info.Env();
  constexpr auto want = typed_array_kind<T>();
  if (i >= info.Length() || !info[i].IsTypedArray())
    throw_type(env, std::string(what) + ": expected " + typed_array_name(want));
  auto ta = info[i].As<Napi::TypedArray>();
  refuse_detached(env, ta, what);
  if (ta.TypedArrayType() != want)
    throw_type(env, std::string(what) + ": expected " + typed_array_name(want) + ", got " +
                        typed_array_name(ta.TypedArrayType()));
  View<T> v;
  v.length = ta.ElementLength();
  if (v.length) v.data = reinterpret_cast<T*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
  return v;
}

// Raw bytes of any TypedArray / Buffer / DataView argument.
inline View<uint8_t> bytes(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Napi::Env env = info.Env();
  if (i >= info.Length() || !info[i].IsTypedArray())
    throw_type(env, std::string(what) + ": expected a TypedArray or Buffer");
  auto ta = info[i].As<Napi::TypedArray>();
  refuse_detached(env, ta, what);
  View<uint8_t> v;
  v.length = ta.ByteLength();
  if (v.length) v.data = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  return v;
}

// A JS number as an integer in [lo, hi]. Checked as a double before the cast: casting NaN, ±Inf
// or a value beyond int64 range to int64_t is undefined behaviour (UBSan: float-cast-overflow).
inline int64_t checked_integer(Napi::Env env, const Napi::Value& value, const std::string& what, int64_t lo,
                               int64_t hi) {
  if (!value.IsNumber()) throw_type(env, what + ": expected an integer");
  const double d = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::trunc(d) != d) throw_type(env, what + ": expected an integer, got " + std::to_string(d));
  if (d < static_cast<double>(lo) || d > static_cast<double>(hi))
    throw_range(env, what + ": " + (std::fabs(d) < 9.2e18 ? std::to_string(static_cast<int64_t>(d)) : std::to_string(d)) +
                         " is outside [" + std::to_string(lo) + ", " +
                         std::to_string(hi) + "]");
  return static_cast<int64_t>(d);
}

inline int64_t integer(const Napi::CallbackInfo& info, size_t i, const char* what, int64_t lo, int64_t hi) {
  if (i >= info.Length()) throw_type(info.Env(), std::string(what) + ": expected an integer");
  return checked_integer(info.Env(), info[i], what, lo, hi);
}

inline double number(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (i >= info.Length() || !info[i].IsNumber()) throw_type(info.Env(), std::string(what) + ": expected a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

inline void need_length(Napi::Env env, const char* what, size_t have, size_t want) {
  if (have < want)
    throw_range(env, std::string(what) + ": needs " + std::to_string(want) + " elements, got " + std::to_string(have));
}

// Runs `work` on a libuv worker thread, then resolves with `done(env)` on the main thread.
// `keep` holds the JS objects whose memory `work` touches, so they outlive the job.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<void()>;
  using Done = std::function<Napi::Value(Napi::Env)>;

  static Napi::Promise queue(Napi::Env env, std::vector<Napi::Value> keep, Work work, Done done) {
    auto* w = new PromiseWorker(env, std::move(keep), std::move(work), std::move(done));
    auto promise = w->deferred_.Promise();
    w->Queue();
    return promise;
  }

 protected:
  void Execute() override {
    try {
      work_();
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    try {
      deferred_.Resolve(done_ ? done_(env) : env.Undefined());
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  PromiseWorker(Napi::Env env, std::vector<Napi::Value> keep, Work work, Done done)
      : Napi::AsyncWorker(env, "lieq"), deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)), done_(std::move(done)) {
    for (auto& v : keep) refs_.push_back(Napi::Persistent(v));
  }
  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  std::vector<Napi::Reference<Napi::Value>> refs_;
};

}  // namespace lieq::napi
