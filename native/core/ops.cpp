// Scalar reference operators of the decoder runtime (see ops.h), multi-threaded with
// parallel_for where a call carries enough work. attention(), silu_mul() and
// log_softmax_nll() dispatch to the AVX2 kernels in ops_avx2.cpp (NEON: ops_neon.cpp) when compiled in and usable.
#include "ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu_features.h"
#include "simd_kernels.h"
#include "thread_pool.h"

namespace lieq::ops {
namespace {

// Items per parallel chunk so that a chunk is worth waking a thread for (~16k floats).
constexpr size_t kMinChunkFloats = 16384;

size_t rows_grain(size_t width) { return std::max<size_t>(1, kMinChunkFloats / std::max<size_t>(1, width)); }

// Query block for the j-th task of a head: alternate cheap (early) and expensive (late) causal
// blocks so that the pool's contiguous chunks get equal work.
inline size_t balanced_row(size_t j, size_t n) { return (j % 2 == 0) ? j / 2 : n - 1 - j / 2; }

}  // namespace

void rmsnorm(const float* x, const float* w, float* y, size_t rows, size_t dim, float eps) {
  parallel_for(rows, rows_grain(dim), [&](size_t begin, size_t end, int) {
    for (size_t r = begin; r < end; ++r) {
      const float* xr = x + r * dim;
      float* yr = y + r * dim;
      double ss = 0;
      for (size_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
      const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + static_cast<double>(eps)));
      for (size_t i = 0; i < dim; ++i) yr[i] = w[i] * (xr[i] * inv);
    }
  });
}

void rope_rotate_half(float* x, size_t rows, size_t heads, size_t head_dim, size_t pos0, const float* cos_table,
                      const float* sin_table) {
  const size_t half = head_dim / 2;
  parallel_for(rows, rows_grain(heads * head_dim), [&](size_t begin, size_t end, int) {
    for (size_t t = begin; t < end; ++t) {
      const float* c = cos_table + (pos0 + t) * half;
      const float* s = sin_table + (pos0 + t) * half;
      for (size_t h = 0; h < heads; ++h) {
        float* a = x + (t * heads + h) * head_dim;
        float* b = a + half;
        for (size_t i = 0; i < half; ++i) {
          const float ai = a[i], bi = b[i];
          a[i] = ai * c[i] - bi * s[i];
          b[i] = bi * c[i] + ai * s[i];
        }
      }
    }
  });
}

void kv_store(const float* src, float* cache, size_t rows, size_t kv_heads, size_t head_dim, size_t capacity,
              size_t pos0) {
  for (size_t t = 0; t < rows; ++t)
    for (size_t h = 0; h < kv_heads; ++h)
      std::memcpy(cache + (h * capacity + pos0 + t) * head_dim, src + (t * kv_heads + h) * head_dim,
                  head_dim * sizeof(float));
}

void k_store_transposed(const float* src, float* cache, size_t rows, size_t kv_heads, size_t head_dim,
                        size_t capacity, size_t pos0) {
  for (size_t t = 0; t < rows; ++t)
    for (size_t h = 0; h < kv_heads; ++h) {
      const float* s = src + (t * kv_heads + h) * head_dim;
      float* c = cache + h * head_dim * capacity + pos0 + t;
      for (size_t d = 0; d < head_dim; ++d) c[d * capacity] = s[d];
    }
}

void attention_block_ref(const float* q, size_t ld_q, size_t n_rows, const float* kt, size_t ld_k, const float* v,
                         float* out, size_t ld_out, size_t pos0, size_t window, size_t head_dim, float scale,
                         float* scores) {
  const size_t ld_s = pos0 + n_rows;
  for (size_t r = 0; r < n_rows; ++r) {
    const size_t pos = pos0 + r;
    const size_t lo = (window > 0 && pos + 1 > window) ? pos + 1 - window : 0;
    const float* qr = q + r * ld_q;
    float* s = scores + r * ld_s;
    for (size_t j = lo; j <= pos; ++j) s[j] = 0;
    for (size_t d = 0; d < head_dim; ++d) {
      const float* kd = kt + d * ld_k;
      for (size_t j = lo; j <= pos; ++j) s[j] += qr[d] * kd[j];
    }
    float mx = -INFINITY;
    for (size_t j = lo; j <= pos; ++j) {
      s[j] *= scale;
      mx = std::max(mx, s[j]);
    }
    float sum = 0;
    for (size_t j = lo; j <= pos; ++j) {
      s[j] = std::exp(s[j] - mx);
      sum += s[j];
    }
    const float inv = 1.0f / sum;
    float* o = out + r * ld_out;
    for (size_t d = 0; d < head_dim; ++d) o[d] = 0;
    for (size_t j = lo; j <= pos; ++j) {
      const float w = s[j] * inv;
      const float* vj = v + j * head_dim;
      for (size_t d = 0; d < head_dim; ++d) o[d] += w * vj[d];
    }
  }
}

namespace {

using AttentionBlockFn = void (*)(const float*, size_t, size_t, const float*, size_t, const float*, float*, size_t,
                                  size_t, size_t, size_t, float, float*);

// Threads over (head, block of kAttentionRows query rows) tasks.
void attention_driver(const AttentionParams& p, AttentionBlockFn block) {
  const size_t R = kAttentionRows;
  const size_t blocks = (p.n_q + R - 1) / R;
  const size_t tasks = p.n_heads * blocks;
  const size_t keys = p.pos0 + p.n_q;
  const size_t hd = p.head_dim;
  const size_t group = p.n_heads / p.n_kv_heads;
  const size_t ld = p.n_heads * hd;
  // ~R*keys*head_dim*2 MACs a task: group small tasks so a chunk is worth a thread.
  const size_t grain = std::max<size_t>(1, kMinChunkFloats / std::max<size_t>(1, R * keys * hd));
  parallel_for(tasks, grain, [&](size_t begin, size_t end, int) {
    std::vector<float> scores(R * keys);
    for (size_t i = begin; i < end; ++i) {
      const size_t h = i / blocks;
      const size_t t0 = balanced_row(i % blocks, blocks) * R;
      const size_t rows = std::min(R, p.n_q - t0);
      const size_t kvh = h / group;
      block(p.q + t0 * ld + h * hd, ld, rows, p.k + kvh * hd * p.capacity, p.capacity, p.v + kvh * p.capacity * hd,
            p.out + t0 * ld + h * hd, ld, p.pos0 + t0, p.window, hd, p.scale, scores.data());
    }
  });
}

}  // namespace

void attention_ref(const AttentionParams& p) { attention_driver(p, attention_block_ref); }

void attention(const AttentionParams& p) {
#ifdef LIEQ_AVX2
  if (simd_usable() && p.head_dim % 8 == 0) return attention_driver(p, avx2::attention_block);
#endif
#ifdef LIEQ_NEON
  if (p.head_dim % 4 == 0) return attention_driver(p, neon::attention_block);
#endif
  attention_driver(p, attention_block_ref);
}

namespace {

// Elementwise work per chunk: silu costs an exp per element.
constexpr size_t kSiluGrain = 4 * kMinChunkFloats;

void silu_mul_range(const float* gate, const float* up, float* out, size_t begin, size_t end) {
  for (size_t i = begin; i < end; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

}  // namespace

void silu_mul_ref(const float* gate, const float* up, float* out, size_t n) {
  parallel_for(n, kSiluGrain, [&](size_t begin, size_t end, int) { silu_mul_range(gate, up, out, begin, end); });
}

void silu_mul(const float* gate, const float* up, float* out, size_t n) {
#ifdef LIEQ_AVX2
  if (simd_usable()) {
    parallel_for(n, kSiluGrain, [&](size_t begin, size_t end, int) {
      avx2::silu_mul(gate + begin, up + begin, out + begin, end - begin);
    });
    return;
  }
#endif
#ifdef LIEQ_NEON
  parallel_for(n, kSiluGrain, [&](size_t begin, size_t end, int) {
    neon::silu_mul(gate + begin, up + begin, out + begin, end - begin);
  });
  return;
#endif
  silu_mul_ref(gate, up, out, n);
}

void add_inplace(float* x, const float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] += y[i];
}

void add_bias_rows(float* y, const float* b, size_t rows, size_t n) {
  for (size_t r = 0; r < rows; ++r) {
    float* yr = y + r * n;
    for (size_t i = 0; i < n; ++i) yr[i] += b[i];
  }
}

void embedding_gather(const float* table, size_t dim, const int32_t* ids, size_t n, float* out) {
  for (size_t t = 0; t < n; ++t)
    std::memcpy(out + t * dim, table + static_cast<size_t>(ids[t]) * dim, dim * sizeof(float));
}

double sum_exp_shifted_ref(const float* z, size_t n, float shift) {
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += std::exp(z[i] - shift);
  return sum;
}

namespace {

using SumExpFn = double (*)(const float*, size_t, float);

void nll_driver(const float* logits, size_t rows, size_t vocab, const int32_t* targets, double* nll, SumExpFn sum_exp) {
  parallel_for(rows, rows_grain(vocab), [&](size_t begin, size_t end, int) {
    for (size_t r = begin; r < end; ++r) {
      const float* z = logits + r * vocab;
      float mx = -INFINITY;
      for (size_t i = 0; i < vocab; ++i) mx = std::max(mx, z[i]);
      nll[r] = static_cast<double>(mx) + std::log(sum_exp(z, vocab, mx)) - static_cast<double>(z[targets[r]]);
    }
  });
}

}  // namespace

void log_softmax_nll_ref(const float* logits, size_t rows, size_t vocab, const int32_t* targets, double* nll) {
  nll_driver(logits, rows, vocab, targets, nll, sum_exp_shifted_ref);
}

void log_softmax_nll(const float* logits, size_t rows, size_t vocab, const int32_t* targets, double* nll) {
#ifdef LIEQ_AVX2
  if (simd_usable()) return nll_driver(logits, rows, vocab, targets, nll, avx2::sum_exp_shifted);
#endif
#ifdef LIEQ_NEON
  return nll_driver(logits, rows, vocab, targets, nll, neon::sum_exp_shifted);
#endif
  nll_driver(logits, rows, vocab, targets, nll, sum_exp_shifted_ref);
}

}  // namespace lieq::ops
