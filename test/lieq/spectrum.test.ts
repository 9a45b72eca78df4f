import { describe, expect, it } from 'vitest';

import { gramEigenvalues } from '../../lib/kernels/linalg.js';
import { compactness, normaliseRows, resolveTopK, topKEnergy } from '../../lib/lieq/spectrum.js';
import { jacobiEigen, Rng } from '../reference/linalg-f64.js';

/** Float64 reference of the whole §3 recipe: centre + normalise rows, A = ZᵀZ/d, eigenvalues (Jacobi). */
function referenceMetrics(z: Float32Array, T: number, d: number, k: number): { rc: number; ek: number } {
  const zz = new Float64Array(T * d);
  for (let t = 0; t < T; t++) {
    let m = 0;
    for (let i = 0; i < d; i++) m += z[t * d + i];
    m /= d;
    let ss = 0;
    for (let i = 0; i < d; i++) ss += (z[t * d + i] - m) ** 2;
    for (let i = 0; i < d; i++) zz[t * d + i] = (z[t * d + i] - m) / Math.sqrt(ss);
  }
  const a = new Float64Array(d * d);
  for (let i = 0; i < d; i++)
    for (let j = 0; j < d; j++) {
      let s = 0;
      for (let t = 0; t < T; t++) s += zz[t * d + i] * zz[t * d + j];
      a[i * d + j] = s / d;
    }
  const ev = [...jacobiEigen(a, d).values].map((x) => Math.max(0, x)).sort((x, y) => y - x);
  const tot = ev.reduce((s, x) => s + x, 0);
  let h = 0;
  for (const x of ev) if (x > 0) h -= (x / tot) * Math.log(x / tot);
  return { rc: Math.exp(-h), ek: ev.slice(0, k).reduce((s, x) => s + x, 0) / tot };
}

describe('spectral metrics vs a float64 Jacobi reference', () => {
  for (const [T, d] of [[200, 24], [10, 32], [64, 64]] as const) {
    it(`T=${T}, d=${d} (low-rank + noise, including T < d)`, async () => {
      const r = new Rng(T * 7 + d);
      const z = new Float32Array(T * d);
      // rank-3 structure plus small noise: a spectrum with a few large eigenvalues
      const basis = Array.from({ length: 3 }, () => Array.from({ length: d }, () => r.normal()));
      for (let t = 0; t < T; t++) {
        const c = [r.normal() * 3, r.normal() * 2, r.normal()];
        for (let i = 0; i < d; i++) z[t * d + i] = c[0] * basis[0][i] + c[1] * basis[1][i] + c[2] * basis[2][i] + 0.1 * r.normal();
      }
      const k = resolveTopK('5%', d);
      const ref = referenceMetrics(z, T, d, k);
      const zn = normaliseRows(Float32Array.from(z), T, d);
      const eigs = await gramEigenvalues(zn, T, d);
      expect(compactness(eigs) / ref.rc).toBeCloseTo(1, 5);
      expect(topKEnergy(eigs, k) / ref.ek).toBeCloseTo(1, 5);
    });
  }
  it('closed forms: rank one -> RC 1, E_1 1; flat spectrum -> RC 1/n', () => {
    expect(compactness([5, 0, 0])).toBeCloseTo(1, 12);
    expect(topKEnergy([5, 0, 0], 1)).toBe(1);
    expect(compactness([2, 2, 2, 2])).toBeCloseTo(0.25, 12);
    expect(topKEnergy([4, 3, 2, 1], 2)).toBeCloseTo(0.7, 12);
    expect(compactness([0, 0])).toBeNaN();
  });
  it('top-k specs', () => {
    expect(resolveTopK(undefined, 4096)).toBe(41);
    expect(resolveTopK('5%', 100)).toBe(5);
    expect(resolveTopK('8', 4)).toBe(4);
    expect(() => resolveTopK('0', 10)).toThrow(RangeError);
    expect(() => resolveTopK('150%', 10)).toThrow(RangeError);
  });
});
