// Temporary portable implementation of gemm.h so that other kernels can link against it;
// the GEMM/SVD helper replaces this file with the blocked, threaded version.
#include "gemm.h"

#include "thread_pool.h"

namespace lieq {

void sgemm_ref(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
               const float* B, int ldb, float beta, float* C, int ldc) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double acc = 0;
      for (int k = 0; k < K; ++k) {
        const float a = transA ? A[static_cast<size_t>(k) * lda + i] : A[static_cast<size_t>(i) * lda + k];
        const float b = transB ? B[static_cast<size_t>(j) * ldb + k] : B[static_cast<size_t>(k) * ldb + j];
        acc += static_cast<double>(a) * b;
      }
      float& c = C[static_cast<size_t>(i) * ldc + j];
      c = static_cast<float>(alpha * acc + (beta == 0.0f ? 0.0 : static_cast<double>(beta) * c));
    }
}

void sgemm(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc) {
  parallel_for(static_cast<size_t>(M), 1, [&](size_t b, size_t e, int) {
    sgemm_ref(transA, transB, static_cast<int>(e - b), N, K, alpha,
              transA ? A + b : A + b * static_cast<size_t>(lda), lda, B, ldb, beta, C + b * static_cast<size_t>(ldc), ldc);
  });
}

}  // namespace lieq
