#include "qmatmul.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "convert.h"
#include "cpu_features.h"
#include "gemm.h"
#include "gemv_f32.h"
#include "linear_kernels.h"
#include "pack.h"
#include "thread_pool.h"

namespace lieq {

namespace {

// Reference GEMV of one activation row over weight rows [r0, r1), any bit width: per group, dot
// of (q − z) with x, then one multiply by the scale (the simplest form; the AVX2 kernel instead
// subtracts z·Σx per 32-byte unit so that it can work on the raw codes).
void qgemv_row_range(const PackedMatrix& W, const float* x, size_t r0, size_t r1, float* y) {
  const size_t g = static_cast<size_t>(W.group), ng = W.groups_per_row();
  const size_t bb = static_cast<size_t>(packed_block_bytes(W.bits));
  uint8_t codes[kPackBlockCodes];
  for (size_t r = r0; r < r1; ++r) {
    const uint8_t* q = W.qweight + r * W.row_bytes();
    const uint16_t* s = W.scales + r * ng;
    float total = 0.0f;
    for (size_t gi = 0; gi < ng; ++gi) {
      const float zero = static_cast<float>(W.zero(r, gi));
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (size_t b = gi * g / kPackBlockCodes; b < (gi + 1) * g / kPackBlockCodes; ++b) {
        unpack_row(q + b * bb, kPackBlockCodes, W.bits, codes);
        const float* xb = x + b * kPackBlockCodes;
        for (int i = 0; i < kPackBlockCodes; ++i) acc[i % 8] += (static_cast<float>(codes[i]) - zero) * xb[i];
      }
      const float dot = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
      total += f16_to_f32(s[gi]) * dot;
    }
    y[r] = total;
  }
}

}  // namespace

namespace ref {
void qgemv_rows(const PackedMatrix& W, const float* x, size_t M, size_t r0, size_t r1, float* y) {
  for (size_t m = 0; m < M; ++m) qgemv_row_range(W, x + m * W.in, r0, r1, y + m * W.out);
}
}  // namespace ref

namespace {

const LinearKernels kRefKernels = {
    {nullptr, nullptr, ref::dequant_w2_blocks, ref::dequant_w3_blocks, ref::dequant_w4_blocks, nullptr, nullptr,
     nullptr, ref::dequant_w8_blocks},
    {nullptr, nullptr, ref::qgemv_rows, ref::qgemv_rows, ref::qgemv_rows, nullptr, nullptr, nullptr,
     ref::qgemv_rows},
    ref::dot4x2,
    ref::gemv_f32_rows,
    ref::gemv_f16_rows,
    ref::f16_row,
};

#if defined(LIEQ_AVX2)
const LinearKernels kAvx2Kernels = {
    {nullptr, nullptr, avx2::dequant_w2_blocks, avx2::dequant_w3_blocks, avx2::dequant_w4_blocks, nullptr, nullptr,
     nullptr, avx2::dequant_w8_blocks},
    {nullptr, nullptr, avx2::qgemv_w2_rows, avx2::qgemv_w3_rows, avx2::qgemv_w4_rows, nullptr, nullptr, nullptr,
     avx2::qgemv_w8_rows},
    avx2::dot4x2,
    avx2::gemv_f32_rows,
    avx2::gemv_f16_rows,
    avx2::f16_row,
};
#endif

#if defined(LIEQ_NEON)
const LinearKernels kNeonKernels = {
    {nullptr, nullptr, neon::dequant_w2_blocks, neon::dequant_w3_blocks, neon::dequant_w4_blocks, nullptr, nullptr,
     nullptr, neon::dequant_w8_blocks},
    {nullptr, nullptr, neon::qgemv_w2_rows, neon::qgemv_w3_rows, neon::qgemv_w4_rows, nullptr, nullptr, nullptr,
     neon::qgemv_w8_rows},
    neon::dot4x2,
    neon::gemv_f32_rows,
    neon::gemv_f16_rows,
    neon::f16_row,
};
#endif

constexpr size_t kSmallBatchChunk = 512;  // columns per step: 4 dequantized rows x 2 KiB stay in L1

struct PackedRows {
  const PackedMatrix* W;
  DequantBlocksFn dequant;
};
const float* packed_rows_load(const void* ctx, size_t row, size_t k0, size_t kn, float* buf) {
  const auto* c = static_cast<const PackedRows*>(ctx);
  c->dequant(*c->W, row, k0 / kPackBlockCodes, kn / kPackBlockCodes, buf);
  return buf;
}

void check(const PackedMatrix& W) {
  const std::string err = packed_shape_error(W.out, W.in, W.bits, W.group);
  if (!err.empty()) throw std::invalid_argument(err);
  if (!W.qweight || !W.scales || (!W.symmetric && !W.zeros))
    throw std::invalid_argument("packed matrix: missing qweight, scales or zeros");
}

void prefill(const PackedMatrix& W, const float* x, size_t M, float* y, const LinearKernels& k) {
  // Tiles of ~8 MiB of f32 weights: the dequantization (O(N*K)) is small next to the GEMM
  // (O(M*N*K), M > 32) and the tile is reused by every row of x inside sgemm.
  const size_t in = W.in;
  size_t tile = std::max<size_t>(16, (size_t{1} << 21) / in);
  tile = std::min(tile, W.out);
  std::vector<float> wt(tile * in);
  const DequantBlocksFn dq = k.dequant[W.bits];
  for (size_t n0 = 0; n0 < W.out; n0 += tile) {
    const size_t nt = std::min(tile, W.out - n0);
    parallel_for(nt, std::max<size_t>(1, (1u << 15) / in), [&](size_t b, size_t e, int) {
      for (size_t r = b; r < e; ++r) dq(W, n0 + r, 0, W.blocks_per_row(), wt.data() + r * in);
    });
    sgemm(false, true, static_cast<int>(M), static_cast<int>(nt), static_cast<int>(in), 1.0f, x,
          static_cast<int>(in), wt.data(), static_cast<int>(in), 0.0f, y + n0, static_cast<int>(W.out));
  }
}

void qmatmul_with(const PackedMatrix& W, const float* x, size_t M, const float* bias, float* y, bool simd) {
  check(W);
  if (M == 0) return;
  const LinearKernels& k = linear_kernels(simd);
  if (M <= qgemv_batch_max(W.bits)) {
    const QGemvRowsFn rows = k.qgemv[W.bits];
    parallel_for(W.out, std::max<size_t>(1, (1u << 16) / (W.in * M)), [&](size_t b, size_t e, int) {
      rows(W, x, M, b, e, y);
      if (bias)
        for (size_t m = 0; m < M; ++m)
          for (size_t r = b; r < e; ++r) y[m * W.out + r] += bias[r];
    });
    return;
  }
  if (M <= kQmatmulSmallBatchMax) {
    const PackedRows ctx{&W, k.dequant[W.bits]};
    const size_t quads = (W.out + 3) / 4;
    const float* xa = aligned_rows_copy(x, M, W.in);  // x is reused by every row quad
    parallel_for(quads, 1, [&](size_t b, size_t e, int) {
      batched_rows(&ctx, packed_rows_load, W.in, kSmallBatchChunk, xa, aligned_stride(W.in), M, b * 4,
                   std::min(W.out, e * 4), y, W.out, simd);
    });
  } else {
    prefill(W, x, M, y, k);
  }
  if (bias)
    for (size_t m = 0; m < M; ++m)
      for (size_t r = 0; r < W.out; ++r) y[m * W.out + r] += bias[r];
}

}  // namespace

bool linear_kernels_simd() {
#if defined(LIEQ_AVX2) || defined(LIEQ_NEON)
  return simd_usable();
#else
  return false;
#endif
}

const LinearKernels& linear_kernels(bool simd) {
#if defined(LIEQ_AVX2)
  if (simd && simd_usable()) return kAvx2Kernels;
#endif
#if defined(LIEQ_NEON)
  if (simd && simd_usable()) return kNeonKernels;
#endif
  (void)simd;
  return kRefKernels;
}

void qmatmul(const PackedMatrix& W, const float* x, size_t M, const float* bias, float* y) {
  qmatmul_with(W, x, M, bias, y, true);
}
void qmatmul_ref(const PackedMatrix& W, const float* x, size_t M, const float* bias, float* y) {
  qmatmul_with(W, x, M, bias, y, false);
}

}  // namespace lieq
