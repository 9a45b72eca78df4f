#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace lieq {
namespace {

thread_local bool t_in_job = false;

int default_threads() {
  if (const char* e = std::getenv("LIEQ_THREADS")) {
    const int n = std::atoi(e);
    if (n > 0) return n;
  }
  return std::max(1, hardware_threads());
}

class Pool {
 public:
  explicit Pool(int n) { start(n); }
  ~Pool() { stop(); }

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void resize(int n) {
    std::lock_guard<std::mutex> job(job_mu_);
    stop();
    start(n);
  }

  void run(size_t n, size_t grain, const RangeFn& fn) {
    if (n == 0) return;
    const size_t threads = static_cast<size_t>(size());
    grain = std::max<size_t>(grain, 1);
    size_t chunks = std::min(threads, (n + grain - 1) / grain);
    if (chunks <= 1 || t_in_job) {
      fn(0, n, 0);
      return;
    }
    std::lock_guard<std::mutex> job(job_mu_);
    {
      std::lock_guard<std::mutex> lk(mu_);
      fn_ = &fn;
      n_ = n;
      chunks_ = chunks;
      pending_ = chunks - 1;
      ++generation_;
    }
    cv_.notify_all();
    t_in_job = true;
    exec_chunk(0);
    t_in_job = false;
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return pending_ == 0; });
    fn_ = nullptr;
  }

 private:
  void exec_chunk(size_t c) {
    const size_t begin = n_ * c / chunks_, end = n_ * (c + 1) / chunks_;
    if (begin < end) (*fn_)(begin, end, static_cast<int>(c));
  }

  void start(int n) {
    quit_ = false;
    // New workers must not mistake the last finished job for a new one: they start from the
    // current generation (a worker starting from 0 would re-run a stale, already-freed job).
    const uint64_t gen = generation_;
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, i, gen] { loop(static_cast<size_t>(i), gen); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      quit_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  void loop(size_t id, uint64_t seen) {
    t_in_job = true;
    for (;;) {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return quit_ || generation_ != seen; });
      if (quit_) return;
      seen = generation_;
      if (id >= chunks_) continue;
      lk.unlock();
      exec_chunk(id);
      lk.lock();
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex job_mu_, mu_;
  std::condition_variable cv_, done_cv_;
  const RangeFn* fn_ = nullptr;
  size_t n_ = 0, chunks_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
  bool quit_ = false;
};

Pool& pool() {
  static Pool p(default_threads());
  return p;
}

}  // namespace

int hardware_threads() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }
int get_num_threads() { return pool().size(); }
void set_num_threads(int n) { pool().resize(n > 0 ? n : default_threads()); }
void parallel_for(size_t n, size_t grain, const RangeFn& fn) { pool().run(n, grain, fn); }

}  // namespace lieq
