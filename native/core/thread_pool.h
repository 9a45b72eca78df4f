// A fixed pool of worker threads for the kernels. One job runs at a time (callers from
// several libuv workers queue on a mutex); a parallel_for issued from inside a job runs
// inline on the calling thread, so kernels may nest without deadlock.
#pragma once
#include <cstddef>
#include <functional>

namespace lieq {

// Range body: process items [begin, end). `worker` is 0..threads-1 (scratch-buffer index).
using RangeFn = std::function<void(size_t begin, size_t end, int worker)>;

// Number of threads kernels use (default: hardware concurrency, or LIEQ_THREADS).
int get_num_threads();
// Resize the pool; n <= 0 restores the default. Safe to call between jobs.
void set_num_threads(int n);
// Hardware threads the machine reports.
int hardware_threads();

// Split [0, n) into chunks of at least `grain` items and run them on the pool.
void parallel_for(size_t n, size_t grain, const RangeFn& fn);

}  // namespace lieq
