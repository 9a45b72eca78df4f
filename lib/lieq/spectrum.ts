/**
 * Spectral diagnostics of a representation (spec: ../shared/docs/lieq-method.md §3).
 *
 * For Z (T tokens × d features): centre each row, L2-normalise each row, A = ZᵀZ / d,
 * λ = eigenvalues of A, p_i = λ_i / Σλ.
 *   Representational Compactness  RC(Z)  = exp(−H(p)), H(p) = −Σ p_i log p_i  (inverse effective rank)
 *   Top-k Energy                   E_k(Z) = Σ_{i≤k} λ_i / Σλ
 * The layer scores (ΔRC, TEG) are differences between the trained model and a seed-fixed
 * random reference of the same architecture; see metrics.ts.
 */

/** Centre and L2-normalise each row of Z [T, d] in place. Rows that are all-equal become zero. */
export function normaliseRows(z: Float32Array, T: number, d: number): Float32Array {
  for (let t = 0; t < T; t++) {
    const o = t * d;
    let mean = 0;
    for (let i = 0; i < d; i++) mean += z[o + i];
    mean /= d;
    let ss = 0;
    for (let i = 0; i < d; i++) {
      const v = z[o + i] - mean;
      z[o + i] = v;
      ss += v * v;
    }
    const inv = ss > 0 ? 1 / Math.sqrt(ss) : 0;
    for (let i = 0; i < d; i++) z[o + i] *= inv;
  }
  return z;
}

/** Eigenvalues sorted descending, negatives from round-off clamped to 0. */
export function cleanSpectrum(eigs: ArrayLike<number>): Float64Array {
  const s = Float64Array.from(eigs, (x) => (x > 0 ? x : 0));
  s.sort();
  s.reverse();
  return s;
}

/** RC = exp(−H(p)) over the normalised spectrum; 1 for a rank-one spectrum, 1/n for a flat one. */
export function compactness(spectrum: ArrayLike<number>): number {
  const s = cleanSpectrum(spectrum);
  const total = s.reduce((a, b) => a + b, 0);
  if (!(total > 0)) return NaN;
  let h = 0;
  for (const x of s) {
    if (x <= 0) continue;
    const p = x / total;
    h -= p * Math.log(p);
  }
  return Math.exp(-h);
}

/** Share of the spectrum's energy in its k largest eigenvalues. */
export function topKEnergy(spectrum: ArrayLike<number>, k: number): number {
  const s = cleanSpectrum(spectrum);
  const total = s.reduce((a, b) => a + b, 0);
  if (!(total > 0)) return NaN;
  let top = 0;
  for (let i = 0; i < Math.min(k, s.length); i++) top += s[i];
  return top / total;
}

/** The default k of TEG: ⌈0.01·d⌉ [ours]. `spec` may be an integer or a percentage ("5%"). */
export function resolveTopK(spec: number | string | undefined, d: number): number {
  if (spec === undefined) return Math.max(1, Math.ceil(0.01 * d));
  if (typeof spec === 'string' && spec.endsWith('%')) {
    const pct = Number(spec.slice(0, -1));
    if (!(pct > 0 && pct <= 100)) throw new RangeError(`top-k: bad percentage "${spec}"`);
    return Math.max(1, Math.ceil((pct / 100) * d));
  }
  const k = Number(spec);
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`top-k: expected a positive integer or a percentage, got "${spec}"`);
  return Math.min(k, d);
}
