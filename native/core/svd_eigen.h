// Symmetric eigensolver in f64 for the SVD (Gram matrices) and the spectrum metrics.
// Householder tridiagonalisation (one fused pass over the lower triangle per column:
// rank-2 update of the previous step + product with the next Householder vector), then
// implicit QL with Wilkinson shifts. O(4/3 n³) for values, about 3× that with vectors.
// Results do not depend on the thread count (fixed work blocks, ordered reductions).
#pragma once

namespace lieq {

// A [n,n] row-major symmetric (only the lower triangle is read; A is overwritten).
// values[n]: eigenvalues, descending. vectors (may be null): [n,n], ROW i is the unit
// eigenvector of values[i]. Throws std::runtime_error if QL fails to converge (never seen on
// finite input) or on non-finite input.
void sym_eigen(int n, double* A, double* values, double* vectors);

}  // namespace lieq
