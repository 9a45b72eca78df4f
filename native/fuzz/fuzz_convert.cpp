// libFuzzer target: the dtype converters that turn checkpoint bytes into f32 (F32/F16/BF16, any
// alignment, any length) and back, and the NaN/Inf counter the loaders use. Checks each vector
// path against the scalar conversions and that f16/bf16 -> f32 -> f16/bf16 is the identity on
// every non-NaN value. Built by scripts/fuzz-native.sh, never by the addon.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/convert.h"
#include "core/thread_pool.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  lieq::set_num_threads(1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const auto type = static_cast<lieq::DType>(data[0] % 3);
  const size_t offset = (data[0] >> 2) & 3;  // unaligned sources are allowed: exercise them
  if (size < 1 + offset) return 0;
  const size_t es = lieq::dtype_size(type);
  const size_t n = (size - 1 - offset) / es;
  // An exact-size copy at the chosen misalignment, so ASan sees any over-read.
  std::vector<uint8_t> buf(offset + n * es);
  if (n) std::memcpy(buf.data() + offset, data + 1 + offset, n * es);
  const uint8_t* src = buf.data() + offset;

  std::vector<float> f(n);
  lieq::convert_to_f32(src, type, f.data(), n);
  size_t nonfinite = 0;
  for (size_t i = 0; i < n; ++i) {
    float want;
    uint16_t h;
    switch (type) {
      case lieq::DType::F32: std::memcpy(&want, src + 4 * i, 4); break;
      case lieq::DType::F16: std::memcpy(&h, src + 2 * i, 2); want = lieq::f16_to_f32(h); break;
      default: std::memcpy(&h, src + 2 * i, 2); want = lieq::bf16_to_f32(h); break;
    }
    const bool same = std::memcmp(&want, &f[i], 4) == 0 || (std::isnan(want) && std::isnan(f[i]));
    if (!same) {
      std::fprintf(stderr, "convert_to_f32 type %d element %zu: %a vs scalar %a\n", static_cast<int>(type), i, f[i], want);
      std::abort();
    }
    if (!std::isfinite(f[i])) ++nonfinite;
  }
  if (lieq::count_nonfinite(f.data(), n) != nonfinite) std::abort();

  if (type != lieq::DType::F32) {
    std::vector<uint8_t> back(n * 2);
    lieq::convert_from_f32(f.data(), type, back.data(), n);
    for (size_t i = 0; i < n; ++i) {
      uint16_t a, b;
      std::memcpy(&a, src + 2 * i, 2);
      std::memcpy(&b, back.data() + 2 * i, 2);
      if (!std::isnan(f[i]) && a != b) {
        std::fprintf(stderr, "round trip type %d: %04x -> %a -> %04x\n", static_cast<int>(type), a, f[i], b);
        std::abort();
      }
    }
  }
  return 0;
}
