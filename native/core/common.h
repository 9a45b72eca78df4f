// Shared definitions of the native core. Plain C++17: no Node, no CUDA types.
#pragma once
#include <cstddef>
#include <cstdint>

namespace lieq {

// Source dtypes the core converts to f32. Values are stable (they cross the binding).
enum class DType : int32_t { F32 = 0, F16 = 1, BF16 = 2 };

inline size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }

}  // namespace lieq
