#include "gemv_f32.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "convert.h"
#include "linear_kernels.h"
#include "thread_pool.h"

namespace lieq {

namespace ref {

void dot4x2(const float* const w[4], const float* x0, const float* x1, size_t n, float* acc) {
  for (int r = 0; r < 4; ++r) {
    float* a0 = acc + (r * 2) * 8;
    float* a1 = acc + (r * 2 + 1) * 8;
    const float* wr = w[r];
    for (size_t k = 0; k < n; ++k) {
      a0[k % 8] += wr[k] * x0[k];
      a1[k % 8] += wr[k] * x1[k];
    }
  }
}

void gemv_f32_rows(const float* W, size_t in, const float* x, size_t r0, size_t r1, float* y) {
  for (size_t r = r0; r < r1; ++r) {
    const float* w = W + r * in;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (size_t k = 0; k < in; ++k) acc[k % 8] += w[k] * x[k];
    y[r] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  }
}

void gemv_f16_rows(const uint16_t* W, size_t in, const float* x, size_t r0, size_t r1, float* y) {
  for (size_t r = r0; r < r1; ++r) {
    const uint16_t* w = W + r * in;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (size_t k = 0; k < in; ++k) acc[k % 8] += f16_to_f32(w[k]) * x[k];
    y[r] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  }
}

void f16_row(const uint16_t* src, size_t n, float* dst) {
  for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}

}  // namespace ref

const float* aligned_rows_copy(const float* x, size_t M, size_t in) {
  thread_local AlignedScratch<float> copy;
  const size_t ld = aligned_stride(in);
  float* dst = copy.get(M * ld);
  for (size_t m = 0; m < M; ++m) std::memcpy(dst + m * ld, x + m * in, in * sizeof(float));
  return dst;
}

void batched_rows(const void* ctx, RowChunkLoader load, size_t in, size_t chunk, const float* x, size_t ldx,
                  size_t M, size_t r0, size_t r1, float* y, size_t ldy, bool simd) {
  const Dot4x2Fn dot = linear_kernels(simd).dot4x2;
  const size_t pairs = (M + 1) / 2;
  thread_local AlignedScratch<float> wscratch, ascratch;
  float* wbuf = wscratch.get(4 * chunk);
  float* acc = ascratch.get(pairs * 64);
  for (size_t rq = r0; rq < r1; rq += 4) {
    const size_t nr = std::min<size_t>(4, r1 - rq);
    std::fill(acc, acc + pairs * 64, 0.0f);
    for (size_t k0 = 0; k0 < in; k0 += chunk) {
      const size_t kn = std::min(chunk, in - k0);
      const float* w[4];
      for (size_t i = 0; i < 4; ++i)  // missing rows of the last quad repeat row 0 (results dropped)
        w[i] = i < nr ? load(ctx, rq + i, k0, kn, wbuf + i * chunk) : w[0];
      for (size_t m = 0; m < M; m += 2) {
        const float* xa = x + m * ldx + k0;
        const float* xb = m + 1 < M ? xa + ldx : xa;
        dot(w, xa, xb, kn, acc + (m / 2) * 64);
      }
    }
    for (size_t i = 0; i < nr; ++i)
      for (size_t m = 0; m < M; ++m) {
        const float* a = acc + (m / 2) * 64 + (i * 2 + m % 2) * 8;
        y[m * ldy + rq + i] = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
      }
  }
}

namespace {

constexpr size_t kChunk = 512;  // columns per step of the small-batch path: 4 rows x 2 KiB in L1

struct F32Rows {
  const float* W;
  size_t in;
};
const float* f32_rows_load(const void* ctx, size_t row, size_t k0, size_t, float*) {
  const auto* c = static_cast<const F32Rows*>(ctx);
  return c->W + row * c->in + k0;
}

struct F16Rows {
  const uint16_t* W;
  size_t in;
  F16RowFn convert;
};
const float* f16_rows_load(const void* ctx, size_t row, size_t k0, size_t kn, float* buf) {
  const auto* c = static_cast<const F16Rows*>(ctx);
  c->convert(c->W + row * c->in + k0, kn, buf);
  return buf;
}

void add_bias(const float* bias, size_t out, size_t M, float* y) {
  if (!bias) return;
  for (size_t m = 0; m < M; ++m)
    for (size_t r = 0; r < out; ++r) y[m * out + r] += bias[r];
}

template <class RowsFn>
void run_gemv(size_t out, size_t in, size_t M, const float* x, const float* bias, float* y, RowsFn rows1,
              const void* ctx, RowChunkLoader load, bool simd) {
  if (M == 0 || out == 0) return;
  if (M == 1) {
    parallel_for(out, std::max<size_t>(1, (1u << 16) / std::max<size_t>(in, 1)),
                 [&](size_t b, size_t e, int) { rows1(b, e); });
  } else {
    const size_t quads = (out + 3) / 4;
    const float* xa = aligned_rows_copy(x, M, in);
    parallel_for(quads, 1, [&](size_t b, size_t e, int) {
      batched_rows(ctx, load, in, kChunk, xa, aligned_stride(in), M, b * 4, std::min(out, e * 4), y, out, simd);
    });
  }
  add_bias(bias, out, M, y);
}

void gemv_f32_with(const float* W, size_t out, size_t in, const float* x, size_t M, const float* bias, float* y,
                   bool simd) {
  const GemvF32RowsFn rows = linear_kernels(simd).gemv_f32;
  const F32Rows ctx{W, in};
  run_gemv(out, in, M, x, bias, y, [&](size_t b, size_t e) { rows(W, in, x, b, e, y); }, &ctx, f32_rows_load, simd);
}

void gemv_f16_with(const uint16_t* W, size_t out, size_t in, const float* x, size_t M, const float* bias, float* y,
                   bool simd) {
  const LinearKernels& k = linear_kernels(simd);
  const F16Rows ctx{W, in, k.f16_row};
  run_gemv(out, in, M, x, bias, y, [&](size_t b, size_t e) { k.gemv_f16(W, in, x, b, e, y); }, &ctx,
           f16_rows_load, simd);
}

}  // namespace

void gemv_f32(const float* W, size_t out, size_t in, const float* x, size_t M, const float* bias, float* y) {
  gemv_f32_with(W, out, in, x, M, bias, y, true);
}
void gemv_f32_ref(const float* W, size_t out, size_t in, const float* x, size_t M, const float* bias, float* y) {
  gemv_f32_with(W, out, in, x, M, bias, y, false);
}
void gemv_f16(const uint16_t* W, size_t out, size_t in, const float* x, size_t M, const float* bias, float* y) {
  gemv_f16_with(W, out, in, x, M, bias, y, true);
}
void gemv_f16_ref(const uint16_t* W, size_t out, size_t in, const float* x, size_t M, const float* bias, float* y) {
  gemv_f16_with(W, out, in, x, M, bias, y, false);
}

}  // namespace lieq
