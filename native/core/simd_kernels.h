// Declarations of the AVX2/FMA/F16C kernels (files *_avx2.cpp, compiled with those flags).
// Call them only when LIEQ_AVX2 is defined and simd_usable() is true; each has a scalar
// reference with the same signature that the tests compare it with.
#pragma once
#include <cstddef>
#include <cstdint>

namespace lieq::avx2 {

void f16_to_f32(const uint8_t* src, float* dst, size_t n);
void bf16_to_f32(const uint8_t* src, float* dst, size_t n);
// packed-weight GEMV/dequantize and the f32/fp16 GEMV baselines: declared in linear_kernels.h
// gemm_avx2.cpp (portable twins and packed layouts in gemm.cpp)
void sgemm_tile_6x16(int kc, const float* a, const float* b, float* c, size_t ldc, int mr, int nr, float alpha, float beta);
void dgemm_tile_6x8(int kc, const double* a, const double* b, double* c, size_t ldc, int mr, int nr, double alpha, double beta);
void sgemm_pack_a6(bool k_contig, const float* src, size_t ld, int rows, int kc, float* dst);
void sgemm_pack_b16(bool k_contig, const float* src, size_t ld, int rows, int kc, float* dst);
void dgemm_pack_a6_f32(bool k_contig, const float* src, size_t ld, int rows, int kc, double* dst);
void dgemm_pack_b8_f32(bool k_contig, const float* src, size_t ld, int rows, int kc, double* dst);
void sdot_rows(int K, int ma, const float* a, size_t lda, int nb, const float* b, size_t ldb, float* out);
void saxpy_strip16(int K, int ma, const float* a, size_t a_rs, size_t a_cs, const float* b, size_t ldb, float* out);
// svd_eigen_avx2.cpp (portable twin tridiag_row_ref in svd_eigen.cpp)
double tridiag_row(int c0, int c1, const double* vp, const double* wp, const double* v, double vpi, double wpi, double vi, double* row, double* q);

// ops_avx2.cpp (scalar twin ops::attention_block_ref in ops.h); head_dim % 8 == 0
void attention_block(const float* q, size_t ld_q, size_t n_rows, const float* kt, size_t ld_k, const float* v, float* out, size_t ld_out, size_t pos0, size_t window, size_t head_dim, float scale, float* scores);
void silu_mul(const float* gate, const float* up, float* out, size_t n);  // twin: ops::silu_mul_ref
double sum_exp_shifted(const float* z, size_t n, float shift);  // twin: ops::sum_exp_shifted_ref

}  // namespace lieq::avx2

// NEON twins (files *_neon.cpp, compiled only for aarch64 where LIEQ_NEON is defined); same
// contracts as above, except attention_block needs head_dim % 4 == 0.
namespace lieq::neon {
void f16_to_f32(const uint8_t* src, float* dst, size_t n);
void bf16_to_f32(const uint8_t* src, float* dst, size_t n);
void sgemm_tile_6x16(int kc, const float* a, const float* b, float* c, size_t ldc, int mr, int nr, float alpha, float beta);
void dgemm_tile_6x8(int kc, const double* a, const double* b, double* c, size_t ldc, int mr, int nr, double alpha, double beta);
void sdot_rows(int K, int ma, const float* a, size_t lda, int nb, const float* b, size_t ldb, float* out);
void saxpy_strip16(int K, int ma, const float* a, size_t a_rs, size_t a_cs, const float* b, size_t ldb, float* out);
void attention_block(const float* q, size_t ld_q, size_t n_rows, const float* kt, size_t ld_k, const float* v, float* out, size_t ld_out, size_t pos0, size_t window, size_t head_dim, float scale, float* scores);
void silu_mul(const float* gate, const float* up, float* out, size_t n);
double sum_exp_shifted(const float* z, size_t n, float shift);
}  // namespace lieq::neon
