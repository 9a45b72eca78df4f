// What the CPU can do, detected at run time, and what this build was compiled for.
#pragma once
#include <string>

namespace lieq {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false, avx512f = false, neon = false;
};

CpuFeatures detect_cpu_features();
// The SIMD paths this binary contains ("avx2+fma+f16c", "neon" or "scalar").
const char* compiled_simd();
// True when the compiled SIMD path can run on this CPU (else the scalar path is used).
bool simd_usable();

}  // namespace lieq
