// Standalone check of the SIMD kernels against their scalar twins and float64 references, without
// Node: built with the native core (scalar TUs + the SIMD TUs of one architecture) and run, e.g.
// cross-compiled for aarch64 and run under qemu by scripts/check-neon.sh.
//
//   simd_check [--expect neon|avx2+fma+f16c|scalar]
//
// --expect fails the run unless the binary's compiled SIMD path is that one and usable, so a
// build that silently fell back to the scalar kernels cannot pass as a NEON check.
// Exit status 0 when every comparison is within tolerance, 1 otherwise (failures are printed).
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/convert.h"
#include "core/cpu_features.h"
#include "core/gemm.h"
#include "core/gemv_f32.h"
#include "core/linear_kernels.h"
#include "core/ops.h"
#include "core/pack.h"
#include "core/packed_format.h"
#include "core/qmatmul.h"
#include "core/thread_pool.h"

namespace {

using namespace lieq;

int g_failures = 0;
int g_checks = 0;

void fail(const std::string& what, double err, double tol) {
  ++g_failures;
  if (g_failures <= 40) std::printf("FAIL %s: error %.3g > tolerance %.3g\n", what.c_str(), err, tol);
}

// Per element: |y − ref| <= tol · mag (mag = the size of the sums the kernel forms).
void expect_close(const std::string& what, const float* y, const double* ref, const double* mag, size_t n, double tol) {
  ++g_checks;
  double worst = 0;
  for (size_t i = 0; i < n; ++i) {
    const double e = std::abs(static_cast<double>(y[i]) - ref[i]) / std::max(mag[i], 1e-30);
    if (!(e <= worst)) worst = std::isnan(e) ? INFINITY : std::max(worst, e);
  }
  if (!(worst <= tol)) fail(what, worst, tol);
}

// Bitwise equality of two f32 buffers (NaN == NaN).
void expect_same(const std::string& what, const float* a, const float* b, size_t n) {
  ++g_checks;
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;
    if (std::memcmp(a + i, b + i, 4) != 0) {
      fail(what + " (element " + std::to_string(i) + ": " + std::to_string(a[i]) + " vs " + std::to_string(b[i]) + ")",
           1, 0);
      return;
    }
  }
}

std::mt19937 rng(1234);
float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng); }
std::vector<float> random_vec(size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::vector<float> v(n);
  for (float& x : v) x = uniform(lo, hi);
  return v;
}

// ---- packed weights -------------------------------------------------------------------------

struct Packed {
  std::vector<uint8_t> qweight, zeros;
  std::vector<uint16_t> scales;
  PackedMatrix W;
};

Packed random_packed(size_t out, size_t in, int bits, int group, bool symmetric) {
  Packed p;
  const size_t ng = in / static_cast<size_t>(group);
  const int maxq = packed_max_code(bits);
  std::vector<uint8_t> codes(out * in);
  p.scales.resize(out * ng);
  if (!symmetric) p.zeros.resize(out * ng);
  for (size_t r = 0; r < out; ++r)
    for (size_t g = 0; g < ng; ++g) {
      p.scales[r * ng + g] = f32_to_f16(uniform(1e-3f, 0.1f));
      const int z = symmetric ? packed_symmetric_zero(bits) : static_cast<int>(rng() % (maxq + 1));
      if (!symmetric) p.zeros[r * ng + g] = static_cast<uint8_t>(z);
      // row 1: codes mostly at the zero point (the z·Σx cancellation case)
      for (size_t k = g * group; k < (g + 1) * group; ++k)
        codes[r * in + k] = static_cast<uint8_t>(r == 1 && rng() % 8 ? z : static_cast<int>(rng() % (maxq + 1)));
    }
  p.qweight.resize(out * (in / kPackBlockCodes) * packed_block_bytes(bits));
  pack_codes(codes.data(), out, in, bits, p.qweight.data());
  p.W.qweight = p.qweight.data();
  p.W.scales = p.scales.data();
  p.W.zeros = symmetric ? nullptr : p.zeros.data();
  p.W.out = out;
  p.W.in = in;
  p.W.bits = bits;
  p.W.group = group;
  p.W.symmetric = symmetric;
  return p;
}

// float64 reference of y = x·Wᵀ + bias on the dequantized weights, and the magnitude of the sums
// the kernels form: Σ|x·w| plus Σ|x|·s·z (the fused GEMV may compute s·(Σq·x − z·Σx)).
void packed_reference(const Packed& p, const std::vector<float>& w, const float* x, size_t M, const float* bias,
                      std::vector<double>& ref, std::vector<double>& mag) {
  const PackedMatrix& W = p.W;
  ref.assign(M * W.out, 0.0);
  mag.assign(M * W.out, 0.0);
  for (size_t m = 0; m < M; ++m)
    for (size_t r = 0; r < W.out; ++r) {
      double acc = bias ? bias[r] : 0.0, a = bias ? std::abs(bias[r]) : 0.0;
      for (size_t k = 0; k < W.in; ++k) {
        const double xk = x[m * W.in + k];
        const size_t g = k / static_cast<size_t>(W.group);
        acc += xk * w[r * W.in + k];
        a += std::abs(xk * w[r * W.in + k]) +
             std::abs(xk) * f16_to_f32(W.scales[r * W.groups_per_row() + g]) * W.zero(r, g);
      }
      ref[m * W.out + r] = acc;
      mag[m * W.out + r] = a;
    }
}

void check_packed() {
  const size_t shapes[][2] = {{1, 32}, {5, 64}, {7, 96}, {13, 128}, {3, 256}, {9, 384}, {2, 512}};
  const size_t batches[] = {1, 2, 3, 4, 5, 8, 32, 33};  // fused GEMV (<= 4), small batch (<= 32), prefill
  for (int bits : {2, 3, 4, 8})
    for (bool symmetric : {false, true})
      for (const auto& s : shapes) {
        const size_t out = s[0], in = s[1];
        for (int group : {32, 64, 128, static_cast<int>(in)}) {
          const bool per_channel_duplicate = group == static_cast<int>(in) && (in == 32 || in == 64 || in == 128);
          if (in % static_cast<size_t>(group) != 0 || per_channel_duplicate) continue;
          const Packed p = random_packed(out, in, bits, group, symmetric);
          const std::string tag = std::to_string(bits) + "-bit g" + std::to_string(group) +
                                  (symmetric ? " sym " : " asym ") + std::to_string(out) + "x" + std::to_string(in);
          std::vector<float> w(out * in), wr(out * in);
          dequantize(p.W, w.data());
          dequantize_ref(p.W, wr.data());
          expect_same("dequantize " + tag, w.data(), wr.data(), w.size());
          // partial block ranges straight through the kernel table (b0 > 0, nb < blocks)
          if (in >= 96) {
            const size_t nb = in / kPackBlockCodes;
            std::vector<float> a(32 * nb), b(32 * nb);
            linear_kernels(true).dequant[bits](p.W, out - 1, 1, nb - 2, a.data());
            linear_kernels(false).dequant[bits](p.W, out - 1, 1, nb - 2, b.data());
            expect_same("dequant blocks [1, nb-1) " + tag, a.data(), b.data(), 32 * (nb - 2));
          }
          for (size_t M : batches) {
            const std::vector<float> x = random_vec(M * in);
            const std::vector<float> bias = random_vec(out);
            const float* bp = M % 2 ? bias.data() : nullptr;
            std::vector<double> ref, mag;
            packed_reference(p, w, x.data(), M, bp, ref, mag);
            std::vector<float> y(M * out), yr(M * out);
            qmatmul(p.W, x.data(), M, bp, y.data());
            qmatmul_ref(p.W, x.data(), M, bp, yr.data());
            const std::string t = tag + " M=" + std::to_string(M);
            expect_close("qmatmul " + t, y.data(), ref.data(), mag.data(), y.size(), 1e-5);
            expect_close("qmatmul_ref " + t, yr.data(), ref.data(), mag.data(), yr.size(), 1e-5);
          }
          // a row sub-range through the fused GEMV kernel (r0 > 0), batch 3
          if (out >= 3) {
            const size_t M = 3;
            const std::vector<float> x = random_vec(M * in);
            std::vector<double> ref, mag;
            packed_reference(p, w, x.data(), M, nullptr, ref, mag);
            std::vector<float> y(M * out, NAN);
            linear_kernels(true).qgemv[bits](p.W, x.data(), M, 1, out - 1, y.data());
            for (size_t m = 0; m < M; ++m)
              expect_close("qgemv rows [1, out-1) " + tag, y.data() + m * out + 1, ref.data() + m * out + 1,
                           mag.data() + m * out + 1, out - 2, 1e-5);
          }
        }
      }
}

// ---- f32 / f16 GEMV baselines ---------------------------------------------------------------

void check_gemv() {
  const size_t shapes[][2] = {{1, 1}, {3, 7}, {9, 37}, {17, 100}, {6, 512}, {5, 1031}};
  for (const auto& s : shapes)
    for (size_t M : {1, 2, 3, 5, 8}) {
      const size_t out = s[0], in = s[1];
      const std::vector<float> W = random_vec(out * in), x = random_vec(M * in), bias = random_vec(out);
      std::vector<uint16_t> Wh(out * in);
      for (size_t i = 0; i < Wh.size(); ++i) Wh[i] = f32_to_f16(W[i]);
      for (int half = 0; half < 2; ++half) {
        std::vector<double> ref(M * out), mag(M * out);
        for (size_t m = 0; m < M; ++m)
          for (size_t r = 0; r < out; ++r) {
            double acc = bias[r], a = std::abs(bias[r]);
            for (size_t k = 0; k < in; ++k) {
              const double wk = half ? f16_to_f32(Wh[r * in + k]) : W[r * in + k];
              acc += wk * x[m * in + k];
              a += std::abs(wk * x[m * in + k]);
            }
            ref[m * out + r] = acc;
            mag[m * out + r] = a;
          }
        std::vector<float> y(M * out), yr(M * out);
        if (half) {
          gemv_f16(Wh.data(), out, in, x.data(), M, bias.data(), y.data());
          gemv_f16_ref(Wh.data(), out, in, x.data(), M, bias.data(), yr.data());
        } else {
          gemv_f32(W.data(), out, in, x.data(), M, bias.data(), y.data());
          gemv_f32_ref(W.data(), out, in, x.data(), M, bias.data(), yr.data());
        }
        const std::string t = std::string(half ? "gemv_f16 " : "gemv_f32 ") + std::to_string(out) + "x" +
                              std::to_string(in) + " M=" + std::to_string(M);
        expect_close(t, y.data(), ref.data(), mag.data(), y.size(), 1e-5);
        expect_close(t + " (ref)", yr.data(), ref.data(), mag.data(), yr.size(), 1e-5);
      }
    }
}

// ---- GEMM -----------------------------------------------------------------------------------

void check_gemm() {
  const int shapes[][3] = {{1, 7, 33}, {2, 40, 65}, {9, 3, 17}, {17, 23, 31}, {50, 70, 300}, {7, 130, 9}, {64, 64, 64}};
  for (const auto& s : shapes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (float beta : {0.0f, 0.5f}) {
          const int M = s[0], N = s[1], K = s[2];
          const int lda = ta ? M + 1 : K + 2, ldb = tb ? K + 3 : N + 1, ldc = N + 2;
          const std::vector<float> A = random_vec(static_cast<size_t>(ta ? K : M) * lda);
          const std::vector<float> B = random_vec(static_cast<size_t>(tb ? N : K) * ldb);
          const std::vector<float> C0 = random_vec(static_cast<size_t>(M) * ldc);
          const float alpha = 1.5f;
          std::vector<double> ref(static_cast<size_t>(M) * N), mag(ref.size());
          for (int i = 0; i < M; ++i)
            for (int j = 0; j < N; ++j) {
              double acc = 0, a = 0;
              for (int k = 0; k < K; ++k) {
                const double av = ta ? A[static_cast<size_t>(k) * lda + i] : A[static_cast<size_t>(i) * lda + k];
                const double bv = tb ? B[static_cast<size_t>(j) * ldb + k] : B[static_cast<size_t>(k) * ldb + j];
                acc += av * bv;
                a += std::abs(av * bv);
              }
              const double c = C0[static_cast<size_t>(i) * ldc + j];
              ref[static_cast<size_t>(i) * N + j] = alpha * acc + beta * c;
              mag[static_cast<size_t>(i) * N + j] = std::abs(alpha) * a + std::abs(beta * c) + 1e-30;
            }
          std::vector<float> C = C0;
          sgemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
          std::vector<float> Cp(static_cast<size_t>(M) * N);
          for (int i = 0; i < M; ++i)
            for (int j = 0; j < N; ++j) Cp[static_cast<size_t>(i) * N + j] = C[static_cast<size_t>(i) * ldc + j];
          const std::string t = "sgemm " + std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) +
                                (ta ? " tA" : "") + (tb ? " tB" : "") + " beta=" + std::to_string(beta);
          expect_close(t, Cp.data(), ref.data(), mag.data(), Cp.size(), 1e-5);
          // dgemm (f32 inputs, f64 products): tight tolerance
          std::vector<double> D(static_cast<size_t>(M) * ldc);
          for (size_t i = 0; i < D.size(); ++i) D[i] = C0[i];
          dgemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, D.data(), ldc);
          std::vector<float> Dp(Cp.size());
          double worst = 0;
          for (int i = 0; i < M; ++i)
            for (int j = 0; j < N; ++j) {
              const size_t o = static_cast<size_t>(i) * N + j;
              worst = std::max(worst, std::abs(D[static_cast<size_t>(i) * ldc + j] - ref[o]) / mag[o]);
            }
          ++g_checks;
          if (!(worst <= 1e-12)) fail("dgemm " + t.substr(6), worst, 1e-12);
        }
}

// ---- conversions and operators --------------------------------------------------------------

void check_convert() {
  std::vector<uint16_t> all(65536 + 5);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
  for (DType t : {DType::F16, DType::BF16}) {
    std::vector<float> y(all.size()), ref(all.size());
    // odd start: the unaligned path
    convert_to_f32(reinterpret_cast<const uint8_t*>(all.data()) + 0, t, y.data(), all.size());
    for (size_t i = 0; i < all.size(); ++i) ref[i] = t == DType::F16 ? f16_to_f32(all[i]) : bf16_to_f32(all[i]);
    expect_same(t == DType::F16 ? "convert f16 (all 65536 values)" : "convert bf16 (all 65536 values)", y.data(),
                ref.data(), y.size());
    std::vector<uint8_t> shifted(2 * 1001 + 1);
    std::memcpy(shifted.data() + 1, all.data() + 15000, 2 * 1001);
    std::vector<float> y2(1001);
    convert_to_f32(shifted.data() + 1, t, y2.data(), 1001);
    expect_same("convert unaligned", y2.data(), ref.data() + 15000, 1001);
  }
}

void check_ops() {
  {  // SwiGLU
    const size_t n = 1000 + 3;
    std::vector<float> g = random_vec(n, -30.0f, 30.0f), u = random_vec(n);
    g[0] = -100.0f, g[1] = 100.0f, g[2] = 0.0f;
    std::vector<float> y(n), yr(n);
    ops::silu_mul(g.data(), u.data(), y.data(), n);
    ops::silu_mul_ref(g.data(), u.data(), yr.data(), n);
    std::vector<double> ref(n), mag(n);
    for (size_t i = 0; i < n; ++i) ref[i] = yr[i], mag[i] = std::abs(yr[i]) + 1e-30;
    expect_close("silu_mul", y.data(), ref.data(), mag.data(), n, 1e-5);
  }
  {  // log-softmax NLL
    const size_t rows = 5, vocab = 517;
    const std::vector<float> z = random_vec(rows * vocab, -20.0f, 20.0f);
    std::vector<int32_t> t(rows);
    for (size_t r = 0; r < rows; ++r) t[r] = static_cast<int32_t>(rng() % vocab);
    std::vector<double> a(rows), b(rows);
    ops::log_softmax_nll(z.data(), rows, vocab, t.data(), a.data());
    ops::log_softmax_nll_ref(z.data(), rows, vocab, t.data(), b.data());
    std::vector<float> af(a.begin(), a.end());
    std::vector<double> mag(rows);
    for (size_t r = 0; r < rows; ++r) mag[r] = std::abs(b[r]) + 1.0;
    expect_close("log_softmax_nll", af.data(), b.data(), mag.data(), rows, 1e-5);
  }
  // attention: head sizes with and without a SIMD path, causal and windowed, several positions
  for (size_t hd : {4, 8, 12, 16, 6})
    for (size_t window : {0, 5})
      for (size_t n_q : {1, 3, 9})
        for (size_t pos0 : {0, 7}) {
          ops::AttentionParams p;
          p.n_q = n_q, p.n_heads = 4, p.n_kv_heads = 2, p.head_dim = hd, p.capacity = pos0 + n_q + 3;
          p.pos0 = pos0, p.window = window, p.scale = 1.0f / std::sqrt(static_cast<float>(hd));
          const std::vector<float> q = random_vec(n_q * p.n_heads * hd, -2, 2);
          const std::vector<float> k = random_vec(p.n_kv_heads * hd * p.capacity, -2, 2);
          const std::vector<float> v = random_vec(p.n_kv_heads * p.capacity * hd);
          std::vector<float> o(n_q * p.n_heads * hd), oref(o.size());
          p.q = q.data(), p.k = k.data(), p.v = v.data();
          p.out = o.data();
          ops::attention(p);
          p.out = oref.data();
          ops::attention_ref(p);
          std::vector<double> ref(o.size()), mag(o.size());
          for (size_t i = 0; i < o.size(); ++i) ref[i] = oref[i], mag[i] = 1.0;  // outputs are convex mixes of |v| <= 1
          expect_close("attention hd=" + std::to_string(hd) + " window=" + std::to_string(window) +
                           " n_q=" + std::to_string(n_q) + " pos0=" + std::to_string(pos0),
                       o.data(), ref.data(), mag.data(), o.size(), 1e-5);
        }
}

}  // namespace

int main(int argc, char** argv) {
  std::string expect;
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--expect" && i + 1 < argc) expect = argv[++i];
  const std::string compiled = lieq::compiled_simd();
  const bool usable = lieq::linear_kernels_simd();
  std::printf("simd_check: compiled SIMD path %s, in use: %s, threads %d\n", compiled.c_str(), usable ? "yes" : "no",
              lieq::get_num_threads());
  if (!expect.empty() && (compiled != expect || (expect != "scalar" && !usable))) {
    std::printf("FAIL expected the %s kernels to be compiled and in use\n", expect.c_str());
    return 1;
  }
  // Two threads: the row ranges split unevenly, so the kernels see r0 > 0 and odd counts.
  lieq::set_num_threads(2);
  const std::pair<const char*, void (*)()> sections[] = {
      {"packed", check_packed}, {"gemv", check_gemv}, {"gemm", check_gemm}, {"convert", check_convert}, {"ops", check_ops}};
  for (const auto& [name, fn] : sections) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    std::printf("simd_check: %-8s %.1f s\n", name,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::printf("simd_check: %d checks, %d failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
