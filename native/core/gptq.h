// GPTQ (Frantar et al., 2022): quantize a linear layer's weight column by column, feeding each
// column's rounding error back into the columns not yet quantized through the inverse Hessian
// of the layer-wise squared error, H = 2/N · Σ x xᵀ over the calibration inputs x.
//
// Three steps, so that linears sharing an input (q/k/v, gate/up) share one factorisation:
//   gptq_accumulate  H += X ᵀX over a chunk of activations (f64, exact f32 products)
//   gptq_prepare     dead columns, act-order permutation, damping, and the upper Cholesky
//                    factor U of H⁻¹ (H⁻¹ = UᵀU), in place in H
//   gptq_quantize    the column loop with lazy blocks -> codes, fp16 scales, zeros, packed
//
// Everything after the Hessian is f64, so the codes are those of a float64 reference except
// where a value lands within rounding noise (~1e-15 relative) of a rounding boundary.
#pragma once
#include <cstddef>
#include <cstdint>

#include "quantize.h"

namespace lieq {

// H [n, n] (f64, symmetric on entry) += Xᵀ X for X f32 [tokens, n] (row stride n).
// f64 products and sums (dsyrk); threaded.
void gptq_accumulate(double* H, size_t n, const float* X, size_t tokens);

struct GptqPrepared {
  double damp = 0;        // value added to the diagonal
  size_t dead = 0;        // columns whose diagonal was 0 (no calibration signal)
};

// In place on H [n, n] (symmetric, f64, finite; any positive scale: damping is relative):
//   1. dead[j] = (H[j][j] == 0): H[j][j] = 1 (GPTQ; the weights of those columns are zeroed
//      by gptq_quantize, so they quantize to exactly 0)
//   2. act_order: perm = columns by descending diag(H) (stable: ties keep index order), and H
//      permuted to that order; else perm = identity
//   3. H[i][i] += damp_frac · mean(diag H)
//   4. H <- U, the upper Cholesky factor of H⁻¹ (strict lower triangle zeroed).
// U is computed as J · chol(J H J)⁻¹ · J (J reverses the index order): if J H J = L Lᵀ, then
// H = V Vᵀ with V = J L J upper triangular, and H⁻¹ = (V⁻¹)ᵀ V⁻¹, so U = V⁻¹ — one Cholesky
// and one triangular inverse (both blocked over dsyrk/dgemm) instead of chol, inverse, chol.
// perm [n] and dead [n] are outputs. Throws std::runtime_error when H + damp is not positive
// definite (raise damp_frac), std::invalid_argument on bad arguments.
GptqPrepared gptq_prepare(double* H, size_t n, double damp_frac, bool act_order, int32_t* perm, uint8_t* dead);

struct GptqParams {
  QuantizeParams q;        // bits, group, symmetric, MinMax or MseClip grid (quantize.h)
  int block = 128;         // lazy-batch width: columns whose updates are applied together
  // Static groups: every group's grid is fitted up front on the original (dead-zeroed)
  // weights, as GPTQModel's static_groups. Required with act-order (the packed format keeps
  // groups contiguous in the natural column order); otherwise each group's grid is fitted on
  // the current error-updated weights when the column loop reaches the group's first column.
  bool static_groups = false;
};

// W f32 [rows, cols] (cols = n of the prepared H), U/perm/dead from gptq_prepare.
// Outputs codes u8 [rows, cols] (natural column order; may be nullptr) and/or qweight in the
// packed layout (may be nullptr), scales f16 [rows, cols/group], zeros u8 (asymmetric).
// Returns Σ over rows and columns of (w − ŵ)² / U[i][i]² (GPTQ's loss, in permuted order).
// Threads: each lazy block's in-block loop is split over rows; the trailing update
// W[:, i2:] −= Err · U[i1:i2, i2:] is one dgemm.
double gptq_quantize(const float* W, size_t rows, size_t cols, const double* U, const int32_t* perm,
                     const uint8_t* dead, const GptqParams& p, uint8_t* codes, uint8_t* qweight, uint16_t* scales,
                     uint8_t* zeros);

}  // namespace lieq
