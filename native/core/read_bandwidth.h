// Memory read-bandwidth probe: the yardstick the packed GEMV is compared with (a GEMV is a
// streaming read of the weights). Sum-reduces a buffer far larger than the last-level cache on
// every pool thread.
#pragma once
#include <cstddef>

namespace lieq {

struct ReadBandwidth {
  double best_gbs;    // bytes / fastest pass
  double mean_gbs;    // bytes / mean pass
  size_t bytes;
  int reps;
};

// bytes is rounded down to a multiple of 64 (at least 1 MiB); reps >= 1.
ReadBandwidth measure_read_bandwidth(size_t bytes, int reps);

}  // namespace lieq
