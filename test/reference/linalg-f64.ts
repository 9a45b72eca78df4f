/**
 * Independent float64 references for the GEMM / SVD tests, written plainly in TypeScript:
 * a triple-loop GEMM, a cyclic Jacobi eigensolver and a one-sided (Hestenes) Jacobi SVD,
 * plus seeded test-matrix builders. Deliberately different algorithms from the native ones
 * (which use blocking, Householder tridiagonalisation + QL and randomised sketches).
 */

/** Seeded PRNG for test data (mulberry32) with Box–Muller normals. */
export class Rng {
  private state: number;
  private spare: number | undefined;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  uniform(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  normal(): number {
    if (this.spare !== undefined) {
      const s = this.spare;
      this.spare = undefined;
      return s;
    }
    const u1 = 1 - this.uniform();
    const u2 = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u1));
    this.spare = r * Math.sin(2 * Math.PI * u2);
    return r * Math.cos(2 * Math.PI * u2);
  }
  normals(n: number): Float64Array {
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = this.normal();
    return out;
  }
}

export type Mat = Float32Array | Float64Array;

/** C = alpha·op(A)·op(B) + beta·C in f64 (beta = 0: C's old contents ignored). Returns a new array. */
export function gemmF64(
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: Mat,
  lda: number,
  b: Mat,
  ldb: number,
  beta: number,
  c: Mat,
  ldc: number,
): Float64Array {
  const out = Float64Array.from(c);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let p = 0; p < k; p++) {
        const av = transA ? a[p * lda + i] : a[i * lda + p];
        const bv = transB ? b[j * ldb + p] : b[p * ldb + j];
        acc += av * bv;
      }
      out[i * ldc + j] = alpha * acc + (beta === 0 ? 0 : beta * c[i * ldc + j]);
    }
  return out;
}

/** ‖x − y‖_F / ‖y‖_F over the m×n window of two [*, ld] matrices. */
export function relErrF(x: Mat, y: Mat, m: number, n: number, ld: number): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      const d = x[i * ld + j] - y[i * ld + j];
      num += d * d;
      den += y[i * ld + j] * y[i * ld + j];
    }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/**
 * Cyclic Jacobi eigen-decomposition of a symmetric [n,n] f64 matrix (lower triangle used).
 * Returns values descending and vectors [n,n] with ROW i the eigenvector of values[i].
 */
export function jacobiEigen(a: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const A = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j <= i; j++) A[i * n + j] = A[j * n + i] = a[i * n + j];
  const V = new Float64Array(n * n);
  for (let i = 0; i < n; i++) V[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    let diag = 0;
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        if (i !== j) off += A[i * n + j] ** 2;
        else diag += A[i * n + j] ** 2;
      }
    if (off <= 1e-30 * diag || off === 0) break;
    for (let p = 0; p < n - 1; p++)
      for (let q = p + 1; q < n; q++) {
        const apq = A[p * n + q];
        if (apq === 0) continue;
        const theta = (A[q * n + q] - A[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let r = 0; r < n; r++) {
          // A ← Jᵀ A J with the rotation in the (p, q) plane: columns, then rows.
          const arp = A[r * n + p];
          const arq = A[r * n + q];
          A[r * n + p] = c * arp - s * arq;
          A[r * n + q] = s * arp + c * arq;
        }
        for (let r = 0; r < n; r++) {
          const apr = A[p * n + r];
          const aqr = A[q * n + r];
          A[p * n + r] = c * apr - s * aqr;
          A[q * n + r] = s * apr + c * aqr;
        }
        for (let r = 0; r < n; r++) {
          const vrp = V[r * n + p];
          const vrq = V[r * n + q];
          V[r * n + p] = c * vrp - s * vrq;
          V[r * n + q] = s * vrp + c * vrq;
        }
      }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => A[y * n + y] - A[x * n + x]);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  order.forEach((src, dst) => {
    values[dst] = A[src * n + src];
    for (let r = 0; r < n; r++) vectors[dst * n + r] = V[r * n + src];
  });
  return { values, vectors };
}

/**
 * One-sided Jacobi SVD of A [m,n] (f64 arithmetic on the given values). Returns S (min(m,n),
 * descending), U [m,r] and V [n,r] row-major with r = min(m,n): A = U·diag(S)·Vᵀ.
 */
export function jacobiSvd(a: Mat, m: number, n: number): { S: Float64Array; U: Float64Array; V: Float64Array } {
  if (m < n) {
    const at = new Float64Array(n * m);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) at[j * m + i] = a[i * n + j];
    const r = jacobiSvd(at, n, m);
    return { S: r.S, U: r.V, V: r.U };
  }
  // Orthogonalise the columns of W = A (column-major copy for speed); V accumulates rotations.
  const W = new Float64Array(n * m);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) W[j * m + i] = a[i * n + j];
  const V = new Float64Array(n * n);
  for (let j = 0; j < n; j++) V[j * n + j] = 1;
  for (let sweep = 0; sweep < 60; sweep++) {
    let rotated = false;
    for (let p = 0; p < n - 1; p++)
      for (let q = p + 1; q < n; q++) {
        let alpha = 0;
        let beta = 0;
        let gamma = 0;
        for (let i = 0; i < m; i++) {
          const x = W[p * m + i];
          const y = W[q * m + i];
          alpha += x * x;
          beta += y * y;
          gamma += x * y;
        }
        if (gamma === 0 || Math.abs(gamma) <= 1e-15 * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        for (let i = 0; i < m; i++) {
          const x = W[p * m + i];
          const y = W[q * m + i];
          W[p * m + i] = c * x - s * y;
          W[q * m + i] = s * x + c * y;
        }
        for (let i = 0; i < n; i++) {
          const x = V[p * n + i];
          const y = V[q * n + i];
          V[p * n + i] = c * x - s * y;
          V[q * n + i] = s * x + c * y;
        }
      }
    if (!rotated) break;
  }
  const norms = Array.from({ length: n }, (_, j) => {
    let s = 0;
    for (let i = 0; i < m; i++) s += W[j * m + i] ** 2;
    return Math.sqrt(s);
  });
  const order = Array.from({ length: n }, (_, j) => j).sort((x, y) => norms[y] - norms[x]);
  const S = new Float64Array(n);
  const U = new Float64Array(m * n);
  const Vout = new Float64Array(n * n);
  order.forEach((src, dst) => {
    S[dst] = norms[src];
    for (let i = 0; i < m; i++) U[i * n + dst] = norms[src] > 0 ? W[src * m + i] / norms[src] : 0;
    for (let i = 0; i < n; i++) Vout[i * n + dst] = V[src * n + i];
  });
  return { S, U, V: Vout };
}

/** Orthonormal columns [rows, cols] (cols ≤ rows) from Gaussian entries, Gram–Schmidt twice. */
export function randomOrthonormal(rows: number, cols: number, rng: Rng): Float64Array {
  const Q = new Float64Array(rows * cols);
  for (let j = 0; j < cols; j++) {
    const v = rng.normals(rows);
    for (let pass = 0; pass < 2; pass++)
      for (let p = 0; p < j; p++) {
        let d = 0;
        for (let i = 0; i < rows; i++) d += Q[i * cols + p] * v[i];
        for (let i = 0; i < rows; i++) v[i] -= d * Q[i * cols + p];
      }
    let nrm = 0;
    for (let i = 0; i < rows; i++) nrm += v[i] * v[i];
    nrm = Math.sqrt(nrm);
    for (let i = 0; i < rows; i++) Q[i * cols + j] = v[i] / nrm;
  }
  return Q;
}

/** A = U·diag(s)·Vᵀ [m,n] with random orthonormal U, V and the given singular values (f32). */
export function matrixWithSpectrum(m: number, n: number, s: readonly number[], rng: Rng): Float32Array {
  const r = s.length;
  const U = randomOrthonormal(m, r, rng);
  const V = randomOrthonormal(n, r, rng);
  const A = new Float32Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let p = 0; p < r; p++) acc += U[i * r + p] * s[p] * V[j * r + p];
      A[i * n + j] = acc;
    }
  return A;
}

/** max |QᵀQ − I| for Q [rows, cols] row-major. */
export function orthonormalityError(Q: Mat, rows: number, cols: number): number {
  let worst = 0;
  for (let a = 0; a < cols; a++)
    for (let b = a; b < cols; b++) {
      let d = 0;
      for (let i = 0; i < rows; i++) d += Q[i * cols + a] * Q[i * cols + b];
      worst = Math.max(worst, Math.abs(d - (a === b ? 1 : 0)));
    }
  return worst;
}

/** ‖A − U·diag(S)·Vᵀ‖_F for A [m,n], U [m,k], V [n,k]. */
export function reconstructionError(A: Mat, m: number, n: number, S: ArrayLike<number>, U: Mat, V: Mat, k: number): number {
  let sum = 0;
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let p = 0; p < k; p++) acc += U[i * k + p] * S[p] * V[j * k + p];
      sum += (A[i * n + j] - acc) ** 2;
    }
  return Math.sqrt(sum);
}

/** sqrt(Σ_{i ≥ k} s_i²): the best rank-k approximation's Frobenius error (Eckart–Young). */
export function tailNorm(s: ArrayLike<number>, k: number): number {
  let sum = 0;
  for (let i = k; i < s.length; i++) sum += s[i] * s[i];
  return Math.sqrt(sum);
}
