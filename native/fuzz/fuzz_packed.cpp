// libFuzzer target: packed weights as they come from a file (qweight/scales/zeros bytes plus the
// dims, bits and group size a config claims) through packed_matrix_error, then every kernel that
// reads them: unpack_codes, dequantize (+ scalar twin), qmatmul (+ scalar twin) on each batch
// path, and the pack -> unpack round trip. Built by scripts/fuzz-native.sh, never by the addon.
//
// Input: 24-byte header, then payload bytes split into qweight | scales | zeros:
//   u32 out, u32 in, u8 bits, u8 symmetric, u16 group, u32 qweight_len, u32 scales_len (u16s),
//   u32 zeros_len, then the payload.
// Lengths may disagree with the shape: validation must reject those before any kernel runs.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "core/pack.h"
#include "core/packed_format.h"
#include "core/qmatmul.h"
#include "core/thread_pool.h"

namespace {

template <typename T>
T take(const uint8_t*& p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  p += sizeof(T);
  return v;
}

// Exact-size heap copies, so AddressSanitizer sees any read past a buffer.
template <typename T>
std::vector<T> slice(const uint8_t*& p, size_t& left, size_t count) {
  const size_t bytes = std::min(left, count * sizeof(T)) / sizeof(T) * sizeof(T);
  std::vector<T> v(bytes / sizeof(T));
  if (bytes) std::memcpy(v.data(), p, bytes);
  p += bytes;
  left -= bytes;
  return v;
}

void check_finite_or_nonfinite_input(const std::vector<float>& y) {
  // Non-finite scales may give NaN/Inf outputs: that is data, not a crash. Touch every value.
  volatile float sink = 0;
  for (float v : y) sink = sink + v;
  (void)sink;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  lieq::set_num_threads(1);  // deterministic and fast; threading is covered by the addon tests
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr size_t kHeader = 24;
  if (size < kHeader) return 0;
  const uint8_t* p = data;
  const size_t out = take<uint32_t>(p), in = take<uint32_t>(p);
  const int bits = take<uint8_t>(p);
  const bool symmetric = take<uint8_t>(p) & 1;
  const int group = take<uint16_t>(p);
  const size_t qweight_claim = take<uint32_t>(p), scales_claim = take<uint32_t>(p), zeros_claim = take<uint32_t>(p);
  size_t left = size - kHeader;
  auto qweight = slice<uint8_t>(p, left, qweight_claim);
  auto scales = slice<uint16_t>(p, left, scales_claim);
  auto zeros = slice<uint8_t>(p, left, zeros_claim);

  const std::string err =
      lieq::packed_matrix_error(out, in, bits, group, symmetric, qweight.size(), scales.size(), zeros.size());
  lieq::PackedMatrix W;
  W.out = out;
  W.in = in;
  W.bits = bits;
  W.group = group;
  W.symmetric = symmetric;
  W.qweight = qweight.data();
  W.scales = scales.data();
  W.zeros = symmetric ? nullptr : zeros.data();
  if (!err.empty()) {
    // The kernels' own shape check must agree that a shape error is an error (no silent run).
    if (!lieq::packed_shape_error(out, in, bits, group).empty()) {
      try {
        std::vector<float> y(1);
        lieq::qmatmul(W, y.data(), 0, nullptr, y.data());
        std::fprintf(stderr, "qmatmul accepted a shape that validation rejected: %s\n", err.c_str());
        std::abort();
      } catch (const std::invalid_argument&) {
      }
    }
    return 0;
  }

  // Valid: every kernel must run within the buffers.
  std::vector<uint8_t> codes(out * in);
  lieq::unpack_codes(W.qweight, out, in, bits, codes.data());
  for (uint8_t c : codes)
    if (c > lieq::packed_max_code(bits)) std::abort();
  std::vector<uint8_t> repacked(qweight.size());
  lieq::pack_codes(codes.data(), out, in, bits, repacked.data());
  // Unpack is a bijection on whole blocks: every byte pattern round-trips.
  if (repacked != qweight) {
    std::fprintf(stderr, "pack(unpack(qweight)) != qweight (bits %d)\n", bits);
    std::abort();
  }

  std::vector<float> w(out * in), w_ref(out * in);
  lieq::dequantize(W, w.data());
  lieq::dequantize_ref(W, w_ref.data());
  for (size_t i = 0; i < w.size(); ++i) {
    // A non-finite fp16 scale gives a non-finite weight either way, but not the same one: the
    // AVX2 path computes s*q - s*z (inf - inf = NaN), the scalar one s*(q - z) (= ±inf).
    const bool both_nonfinite = !std::isfinite(w[i]) && !std::isfinite(w_ref[i]);
    if (!both_nonfinite && w[i] != w_ref[i]) {
      std::fprintf(stderr, "dequantize != dequantize_ref at %zu: %g vs %g\n", i, w[i], w_ref[i]);
      std::abort();
    }
  }

  // Batch sizes hitting the GEMV (<= 4), small-batch (<= 32) and prefill (> 32) paths; keep the
  // work small by running the larger batches on small matrices only.
  for (size_t M : {size_t{1}, size_t{3}, size_t{7}, size_t{33}}) {
    if (M > 4 && out * in > (size_t{1} << 14)) break;
    std::vector<float> x(M * in), bias(out), y(M * out), y_ref(M * out);
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    for (size_t r = 0; r < out; ++r) bias[r] = static_cast<float>(r % 7) - 3.0f;
    lieq::qmatmul(W, x.data(), M, bias.data(), y.data());
    lieq::qmatmul_ref(W, x.data(), M, nullptr, y_ref.data());
    check_finite_or_nonfinite_input(y);
    check_finite_or_nonfinite_input(y_ref);
  }
  return 0;
}
