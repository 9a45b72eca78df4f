#include "cpu_features.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#endif

namespace lieq {

CpuFeatures detect_cpu_features() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(_M_X64)
  unsigned a, b, c, d;
  if (__get_cpuid(1, &a, &b, &c, &d)) {
    f.fma = (c >> 12) & 1;
    f.f16c = (c >> 29) & 1;
    const bool osxsave = (c >> 27) & 1;
    if (osxsave && __get_cpuid_count(7, 0, &a, &b, &c, &d)) {
      // The OS must save the YMM state too, or AVX2 faults (XGETBV bits 1 and 2).
      unsigned lo, hi;
      __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
      const bool ymm = (lo & 6) == 6;
      f.avx2 = ymm && ((b >> 5) & 1);
      f.avx512f = ymm && ((lo & 0xe0) == 0xe0) && ((b >> 16) & 1);
    }
    if (!osxsave) f.fma = f.f16c = false;
  }
#elif defined(__aarch64__)
  f.neon = true;
#endif
  return f;
}

const char* compiled_simd() {
#if defined(LIEQ_AVX2)
  return "avx2+fma+f16c";
#elif defined(LIEQ_NEON)  // *_neon.cpp compiled in (aarch64 builds with LIEQ_SIMD on)
  return "neon";
#else
  return "scalar";
#endif
}

bool simd_usable() {
#if defined(LIEQ_AVX2)
  static const bool ok = [] {
    const CpuFeatures f = detect_cpu_features();
    return f.avx2 && f.fma && f.f16c;
  }();
  return ok;
#else
  return true;
#endif
}

}  // namespace lieq
