// Orthonormal bases for the randomised SVD: QR in f64 of a tall f32 matrix (CholeskyQR2 on
// the GEMM kernels, Householder when the columns are (nearly) dependent).
#pragma once

namespace lieq {

// Y [m,n] row-major f32 (ldy ≥ n), m ≥ n: replaces Y by the thin Q of Y = Q·R with
// diag(R) > 0, computed in f64 (Q is the Gram–Schmidt basis of Y's columns, so an already
// orthonormal Y comes back nearly unchanged). CholeskyQR2 (Gram matrix, Cholesky, Y·R⁻¹,
// twice) when Y is well enough conditioned; otherwise Householder, where a column that
// depends on the previous ones (rank deficiency, zero column) gets a unit vector orthogonal
// to them. Multi-threaded; the result does not depend on the thread count.
void orthonormalize_columns(int m, int n, float* Y, int ldy);

}  // namespace lieq
