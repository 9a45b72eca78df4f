#include "read_bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "thread_pool.h"

namespace lieq {

ReadBandwidth measure_read_bandwidth(size_t bytes, int reps) {
  bytes = std::max<size_t>(bytes, size_t{1} << 20) / 64 * 64;
  reps = std::max(reps, 1);
  const size_t words = bytes / 8;
  std::unique_ptr<uint64_t[]> buf(new uint64_t[words]);
  // First touch from the pool, so pages are mapped before timing.
  parallel_for(words, 1 << 16, [&](size_t b, size_t e, int) {
    for (size_t i = b; i < e; ++i) buf[i] = i;
  });
  std::vector<uint64_t> sink(static_cast<size_t>(get_num_threads()) + 1, 0);
  double best = 1e30, total = 0;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    parallel_for(words / 8, 1 << 12, [&](size_t b, size_t e, int worker) {
      // Eight independent integer sums per 64-byte line (the compiler vectorises them).
      uint64_t a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      const uint64_t* p = buf.get();
      for (size_t i = b * 8; i < e * 8; i += 8)
        for (int l = 0; l < 8; ++l) a[l] += p[i + l];
      sink[static_cast<size_t>(worker)] += a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s);
    total += s;
  }
  volatile uint64_t keep = sink[0];
  (void)keep;
  return {static_cast<double>(bytes) / best / 1e9, static_cast<double>(bytes) * reps / total / 1e9, bytes, reps};
}

}  // namespace lieq
