// LeakSanitizer check of the native core (no Node): 1,000 create/destroy cycles of every object
// and every allocating entry behind the addon, each followed by a leak check of its own, so a
// leak is reported with the name of the object that leaked it. Built and run by
// scripts/sanitize.sh with -fsanitize=address,undefined (LeakSanitizer is part of ASan):
//
//   lsan_cycles [cycles]           exit 0: no leak; 1: a leak (LSan prints the allocation stack)
//   lsan_cycles --control          leaks 64 KB on purpose: must exit 1 (the check can fail)
//
// Objects with a lifetime of their own in the CPU core: the thread pool (resized, so workers
// and their thread_local scratch — gemm packing buffers, GEMV/qmatmul scratch — are created and
// destroyed), AlignedScratch, the GPU model handle (its CPU stub throws; the exception path is
// cycled). Everything else allocates per call (std::vector workspaces of GPTQ, SVD, QR, eigen,
// quantize, ggml blocks), so one call is one create/destroy cycle of that workspace; error
// paths that throw mid-work are cycled too (a throw must not leak a workspace).
#include <sanitizer/lsan_interface.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "core/convert.h"
#include "core/gemm.h"
#include "core/gemv_f32.h"
#include "core/ggml_quants.h"
#include "core/gptq.h"
#include "core/linear_kernels.h"
#include "core/ops.h"
#include "core/pack.h"
#include "core/packed_format.h"
#include "core/qmatmul.h"
#include "core/quantize.h"
#include "core/read_bandwidth.h"
#include "core/svd.h"
#include "core/svd_eigen.h"
#include "core/svd_qr.h"
#include "core/thread_pool.h"
#include "cuda/gpu_model.h"

using namespace lieq;
namespace ggml = lieq::ggml;
using namespace lieq::ops;

namespace {

std::vector<float> wave(size_t n, float f) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::sin(static_cast<float>(i) * f) * 0.5f;
  return v;
}

template <class F>
void expect_throw(const char* what, F&& f) {
  try {
    f();
  } catch (const std::exception&) {
    return;
  }
  std::fprintf(stderr, "lsan_cycles: %s did not throw\n", what);
  std::exit(2);
}

// Small shapes: every cycle runs the threaded paths but the 1,000 cycles stay fast under ASan.
constexpr size_t OUT = 64, IN = 256, G = 64;

struct Packed {
  std::vector<uint8_t> qweight, zeros;
  std::vector<uint16_t> scales;
  PackedMatrix m;
};

Packed make_packed(int bits) {
  const std::vector<float> w = wave(OUT * IN, 0.37f);
  Packed p;
  p.qweight.resize(OUT * (IN / 32) * 4 * bits);
  p.scales.resize(OUT * IN / G);
  p.zeros.resize(OUT * IN / G);
  QuantizeParams q;
  q.bits = bits;
  q.group = G;
  quantize_packed(w.data(), OUT, IN, q, p.qweight.data(), p.scales.data(), p.zeros.data());
  p.m.qweight = p.qweight.data();
  p.m.scales = p.scales.data();
  p.m.zeros = p.zeros.data();
  p.m.out = OUT;
  p.m.in = IN;
  p.m.bits = bits;
  p.m.group = G;
  return p;
}

std::vector<std::pair<std::string, std::function<void(int)>>> objects() {
  std::vector<std::pair<std::string, std::function<void(int)>>> o;

  // The pool is resized every cycle (its workers are joined and new ones started); each
  // worker runs kernels with thread_local scratch that must be freed when the worker exits.
  o.emplace_back("thread pool (resize 1-4 workers, kernels on each)", [](int c) {
    set_num_threads(1 + c % 4);
    std::vector<float> a = wave(96 * 96, 0.11f), y(96 * 96);
    sgemm(false, true, 96, 96, 96, 1.0f, a.data(), 96, a.data(), 96, 0.0f, y.data(), 96);
    std::vector<float> x = wave(4 * IN, 0.2f), w = wave(OUT * IN, 0.3f), out(4 * OUT);
    gemv_f32(w.data(), OUT, IN, x.data(), 4, nullptr, out.data());
    parallel_for(64, 1, [](size_t, size_t, int) {});
  });
  o.emplace_back("AlignedScratch (grow, destroy)", [](int c) {
    AlignedScratch<float> s;
    s.get(16 + c % 7);
    s.get(4096 + c);
  });
  o.emplace_back("GPU model handle (CPU stub: create throws)", [](int) {
    GpuModelConfig cfg{};
    expect_throw("gpu_model_create", [&] { gpu_model_create(cfg, nullptr, nullptr, nullptr, nullptr); });
  });

  o.emplace_back("convert f32/f16/bf16 + count_nonfinite", [](int) {
    std::vector<float> x = wave(1000, 0.3f), back(1000);
    std::vector<uint16_t> h(1000);
    convert_from_f32(x.data(), DType::F16, h.data(), h.size());
    convert_to_f32(h.data(), DType::BF16, back.data(), back.size());
    if (count_nonfinite(back.data(), back.size()) > back.size()) std::abort();
  });
  o.emplace_back("quantize (MinMax, MseClip) + pack/unpack + dequantize", [](int c) {
    const int bits = (c % 2) ? 3 : 4;
    std::vector<float> w = wave(OUT * IN, 0.37f), deq(OUT * IN);
    std::vector<uint8_t> codes(OUT * IN), zeros(OUT * IN / G), qw(OUT * (IN / 32) * 4 * bits);
    std::vector<uint16_t> scales(OUT * IN / G);
    QuantizeParams q;
    q.bits = bits;
    q.group = G;
    q.method = QuantMethod::MseClip;
    q.clip_grid = 10;
    quantize(w.data(), OUT, IN, q, codes.data(), scales.data(), zeros.data());
    pack_codes(codes.data(), OUT, IN, bits, qw.data());
    unpack_codes(qw.data(), OUT, IN, bits, codes.data());
    PackedMatrix m{qw.data(), scales.data(), zeros.data(), OUT, IN, bits, G, false};
    dequantize(m, deq.data());
    w[5] = NAN;  // non-finite weight: throws before any work
    expect_throw("quantize(NaN)", [&] { quantize(w.data(), OUT, IN, q, codes.data(), scales.data(), zeros.data()); });
  });
  o.emplace_back("qmatmul (GEMV, small batch, prefill) + qmatmul_ref", [](int c) {
    static const Packed p4 = make_packed(4), p2 = make_packed(2);
    const Packed& p = (c % 2) ? p2 : p4;
    const size_t M = (c % 3 == 0) ? 1 : (c % 3 == 1) ? 5 : 40;
    std::vector<float> x = wave(M * IN, 0.21f), y(M * OUT);
    qmatmul(p.m, x.data(), M, nullptr, y.data());
    qmatmul_ref(p.m, x.data(), 1, nullptr, y.data());
  });
  o.emplace_back("gemm (sgemm, dgemm, dsyrk) + gemv_f16", [](int c) {
    const int n = 40 + c % 50;
    std::vector<float> a = wave(static_cast<size_t>(n) * n, 0.13f), y(static_cast<size_t>(n) * n);
    std::vector<double> d(static_cast<size_t>(n) * n);
    sgemm(false, false, n, n, n, 1.0f, a.data(), n, a.data(), n, 0.0f, y.data(), n);
    dgemm(true, false, n, n, n, 1.0, a.data(), n, a.data(), n, 0.0, d.data(), n);
    dsyrk(true, n, n, 1.0, a.data(), n, 0.0, d.data(), n);
    std::vector<uint16_t> wh(OUT * IN);
    std::vector<float> w = wave(OUT * IN, 0.3f), x = wave(3 * IN, 0.5f), out(3 * OUT);
    convert_from_f32(w.data(), DType::F16, wh.data(), wh.size());
    gemv_f16(wh.data(), OUT, IN, x.data(), 3, nullptr, out.data());
  });
  o.emplace_back("SVD workspace (exact, randomised, spectra, QR, eigen)", [](int c) {
    const int m = 48, n = 32;
    std::vector<float> a = wave(static_cast<size_t>(m) * n, 0.07f + 0.001f * (c % 5)), u(m * 8), v(n * 8);
    std::vector<double> s(n), ev(n);
    SvdOptions opt;
    opt.method = (c % 2) ? SvdMethod::Randomized : SvdMethod::Exact;
    opt.seed = static_cast<uint64_t>(c);
    svd_topk(m, n, a.data(), n, 4, opt, s.data(), u.data(), v.data());
    gram_eigenvalues(m, n, a.data(), n, ev.data());
    singular_values(m, n, a.data(), n, s.data());
    std::vector<double> sym(n * n), vec(n * n);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) sym[i * n + j] = (i == j ? 2.0 : 0.0) + 0.01 * ((i + j) % 3);
    sym_eigen(n, sym.data(), ev.data(), vec.data());
    std::vector<float> y = wave(static_cast<size_t>(m) * 6, 0.3f), g(static_cast<size_t>(m) * 6);
    orthonormalize_columns(m, 6, y.data(), 6);
    gaussian_matrix(m, 6, static_cast<uint64_t>(c), g.data());
    a[3] = INFINITY;  // non-finite input throws mid-way
    expect_throw("svd_topk(Inf)", [&] { svd_topk(m, n, a.data(), n, 4, opt, s.data(), u.data(), v.data()); });
  });
  o.emplace_back("GPTQ state (Hessian, factor, column loop; act-order; non-PD throw)", [](int c) {
    const size_t n = 64, rows = 32, tokens = 80;
    std::vector<float> x = wave(tokens * n, 0.19f), w = wave(rows * n, 0.41f);
    std::vector<double> H(n * n, 0.0);
    gptq_accumulate(H.data(), n, x.data(), tokens);
    std::vector<int32_t> perm(n);
    std::vector<uint8_t> dead(n), qw(rows * (n / 32) * 16), zeros(rows * n / 32);
    std::vector<uint16_t> scales(rows * n / 32);
    GptqParams p;
    p.q.bits = 4;
    p.q.group = 32;
    p.block = 16;
    p.static_groups = (c % 2) == 1;
    gptq_prepare(H.data(), n, 0.01, p.static_groups, perm.data(), dead.data());
    gptq_quantize(w.data(), rows, n, H.data(), perm.data(), dead.data(), p, nullptr, qw.data(), scales.data(), zeros.data());
    std::vector<double> bad(n * n, 0.0);
    bad[0] = -1.0;  // negative diagonal: not positive definite
    expect_throw("gptq_prepare(not PD)", [&] { gptq_prepare(bad.data(), n, 0.0, false, perm.data(), dead.data()); });
  });
  o.emplace_back("ggml block quantizers (Q2_K, Q3_K, Q4_K, Q8_0, Q5_0, IQ4_NL)", [](int c) {
    static const ggml::GgmlType types[] = {ggml::GgmlType::Q2_K, ggml::GgmlType::Q3_K, ggml::GgmlType::Q4_K, ggml::GgmlType::Q8_0, ggml::GgmlType::Q5_0, ggml::GgmlType::IQ4_NL};
    const ggml::GgmlType t = types[c % 6];
    const int64_t rows = 4, cols = 512;
    std::vector<float> x = wave(rows * cols, 0.29f);
    std::vector<uint8_t> dst(ggml::row_bytes(t, cols) * rows);
    ggml::quantize_rows(t, x.data(), dst.data(), rows, cols);
  });
  o.emplace_back("runtime ops (rmsnorm, attention, silu, log-softmax NLL)", [](int c) {
    const size_t heads = 4, kv = 2, hd = 32, cap = 64, nq = 1 + c % 8;
    std::vector<float> q = wave(nq * heads * hd, 0.3f), k = wave(kv * hd * cap, 0.2f), v = wave(kv * cap * hd, 0.1f), out(nq * heads * hd);
    AttentionParams a;
    a.q = q.data();
    a.k = k.data();
    a.v = v.data();
    a.out = out.data();
    a.n_q = nq;
    a.n_heads = heads;
    a.n_kv_heads = kv;
    a.head_dim = hd;
    a.capacity = cap;
    a.pos0 = cap - nq;
    a.scale = 0.17f;
    attention(a);
    std::vector<float> x = wave(8 * 128, 0.3f), w = wave(128, 0.1f), y(8 * 128);
    rmsnorm(x.data(), w.data(), y.data(), 8, 128, 1e-5f);
    silu_mul(x.data(), w.data(), y.data(), 128);
    std::vector<int32_t> t = {1, 5, 7, 100, 3, 0, 9, 127};
    std::vector<double> nll(8);
    log_softmax_nll(x.data(), 8, 128, t.data(), nll.data());
  });
  o.emplace_back("read-bandwidth probe buffer", [](int) { measure_read_bandwidth(1 << 20, 1); });
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--control") == 0) {
    void* volatile p = std::malloc(64 * 1024);
    std::memset(p, 1, 64 * 1024);
    p = nullptr;
    std::printf("lsan_cycles: control leaked 64 KB on purpose\n");
    return __lsan_do_recoverable_leak_check() ? 1 : 0;
  }
  const int cycles = argc > 1 ? std::atoi(argv[1]) : 1000;
  int leaked = 0;
  for (auto& [name, cycle] : objects()) {
    for (int c = 0; c < cycles; ++c) cycle(c);
    // Back to the default pool size: what a worker allocated is freed when the worker exits.
    set_num_threads(0);
    const bool leak = __lsan_do_recoverable_leak_check() != 0;
    std::printf("%-70s %d cycles: %s\n", name.c_str(), cycles, leak ? "LEAK" : "no leak");
    std::fflush(stdout);
    leaked += leak;
  }
  return leaked ? 1 : 0;
}
