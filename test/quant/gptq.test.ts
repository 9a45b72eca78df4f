// Native GPTQ against the float64 reference (test/reference/gptq-reference.ts) on small
// matrices, the Hessian accumulator against a float64 XᵀX, and argument errors.
import { describe, expect, it } from 'vitest';

import { unpackCodes } from '../../lib/kernels/quant.js';
import type { PackedBits } from '../../lib/kernels/packed-format.js';
import { gptqFactor, gptqFactorFromHessian, gptqQuantizeCodes, gptqQuantizeLinear, HessianAccumulator, type GptqOptions } from '../../lib/quant/gptq.js';
import { DataError, UsageError } from '../../lib/util/errors.js';
import { gptqReference, inverseHessianFactor } from '../reference/gptq-reference.js';
import { randn, randomWeights, rng } from '../reference/quant-reference.js';

/** Correlated activations X [T, n] (X = Z·M, so H is far from diagonal); `deadCols` are zero. */
function activations(T: number, n: number, seed: number, deadCols: number[] = []): Float32Array {
  const r = rng(seed);
  const M = Float64Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? 1 : 0) + 0.3 * randn(r) / Math.sqrt(n));
  const scaleOf = Float64Array.from({ length: n }, () => Math.exp(randn(r))); // uneven column energies (act-order matters)
  const X = new Float32Array(T * n);
  const z = new Float64Array(n);
  for (let t = 0; t < T; t++) {
    for (let k = 0; k < n; k++) z[k] = randn(r);
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += z[k] * M[k * n + j];
      X[t * n + j] = s * scaleOf[j];
    }
  }
  for (let t = 0; t < T; t++) for (const c of deadCols) X[t * n + c] = 0;
  return X;
}

/** 2/T · XᵀX in float64. */
function hessianRef(X: Float32Array, T: number, n: number): Float64Array {
  const H = new Float64Array(n * n);
  for (let t = 0; t < T; t++)
    for (let i = 0; i < n; i++) {
      const xi = X[t * n + i];
      if (xi === 0) continue;
      for (let j = 0; j < n; j++) H[i * n + j] += xi * X[t * n + j];
    }
  for (let i = 0; i < H.length; i++) H[i] *= 2 / T;
  return H;
}

interface Case {
  name: string;
  rows: number;
  cols: number;
  bits: PackedBits;
  group: number;
  actOrder: boolean;
  symmetric?: boolean;
  method?: 'minmax' | 'mse';
  blockSize?: number;
  dead?: number[];
}

const CASES: Case[] = [
  { name: '4-bit g32, lazy blocks of 32', rows: 12, cols: 128, bits: 4, group: 32, actOrder: false, blockSize: 32 },
  { name: '3-bit g64, 2 lazy blocks of 128', rows: 10, cols: 256, bits: 3, group: 64, actOrder: false },
  { name: '2-bit g128', rows: 9, cols: 256, bits: 2, group: 128, actOrder: false },
  { name: '8-bit per-channel', rows: 6, cols: 96, bits: 8, group: 96, actOrder: false },
  { name: '3-bit per-channel spanning two blocks', rows: 7, cols: 192, bits: 3, group: 192, actOrder: false },
  { name: '4-bit g32 act-order (static groups)', rows: 11, cols: 160, bits: 4, group: 32, actOrder: true, blockSize: 64 },
  { name: '2-bit g64 act-order', rows: 8, cols: 256, bits: 2, group: 64, actOrder: true },
  { name: '4-bit g32 symmetric', rows: 8, cols: 128, bits: 4, group: 32, actOrder: false, symmetric: true, blockSize: 64 },
  { name: '3-bit g32 mse grid', rows: 8, cols: 128, bits: 3, group: 32, actOrder: false, method: 'mse' },
  { name: '4-bit g32 dead columns', rows: 8, cols: 128, bits: 4, group: 32, actOrder: false, dead: [0, 5, 6, 40, 127] },
  { name: '3-bit g32 dead columns + act-order', rows: 8, cols: 128, bits: 3, group: 32, actOrder: true, dead: [1, 2, 3, 64, 100], blockSize: 32 },
];

describe('native GPTQ = float64 reference', () => {
  it.each(CASES)('$name: identical codes, scales and zeros', async (c) => {
    const seed = c.rows * 1000 + c.cols + c.bits;
    const T = 3 * c.cols;
    const X = activations(T, c.cols, seed, c.dead);
    const H = hessianRef(X, T, c.cols);
    const W = randomWeights(c.rows * c.cols, seed + 1, 0.05);
    const opts = { bits: c.bits, groupSize: c.group, symmetric: c.symmetric ?? false, method: c.method ?? 'minmax' } as const;
    const ref = gptqReference(W, c.rows, c.cols, H, { ...opts, damp: 0.01, actOrder: c.actOrder });
    const f = await gptqFactorFromHessian(Float64Array.from(H), c.cols, { damp: 0.01, actOrder: c.actOrder });
    expect(f.deadColumns).toBe(c.dead?.length ?? 0);
    const got = await gptqQuantizeCodes(W, c.rows, c.cols, f, { ...opts, blockSize: c.blockSize ?? 128 });
    const mismatch = [...got.codes].findIndex((q, i) => q !== ref.codes[i]);
    // On a mismatch, say how close the reference's rounding was to a tie (w/scale ≡ 0.5 mod 1).
    const tie = mismatch < 0 ? '' : ` (first at ${mismatch}: w/scale = ${ref.ratio[mismatch]})`;
    expect(mismatch, `codes differ${tie}`).toBe(-1);
    expect(got.scales).toEqual(ref.scales);
    if (ref.zeros) expect(got.zeros).toEqual(ref.zeros);
    expect(got.loss).toBeCloseTo(ref.loss, 8);
    // dead columns quantize to exactly zero: code == zero point
    for (const col of c.dead ?? [])
      for (let r = 0; r < c.rows; r++) {
        const g = Math.floor(col / c.group);
        const zero = got.zeros ? got.zeros[r * (c.cols / c.group) + g] : 2 ** (c.bits - 1);
        expect(got.codes[r * c.cols + col]).toBe(zero);
      }
    // the packed path writes the same codes
    const f2 = await gptqFactorFromHessian(Float64Array.from(H), c.cols, { damp: 0.01, actOrder: c.actOrder });
    const { packed } = await gptqQuantizeLinear(W, c.rows, c.cols, f2, { ...opts, blockSize: c.blockSize ?? 128 });
    expect(unpackCodes(packed.qweight, c.rows, c.cols, c.bits)).toEqual(got.codes);
  });

  it('the factor is the upper Cholesky factor of the damped H⁻¹ (PyTorch route vs the reversal route)', async () => {
    const n = 200;
    const X = activations(400, n, 5);
    const H = hessianRef(X, 400, n);
    const damped = Float64Array.from(H);
    let mean = 0;
    for (let j = 0; j < n; j++) mean += H[j * n + j] / n;
    for (let j = 0; j < n; j++) damped[j * n + j] += 0.01 * mean;
    const U = inverseHessianFactor(damped, n);
    const f = await gptqFactorFromHessian(Float64Array.from(H), n, { damp: 0.01 });
    let maxErr = 0;
    let maxAbs = 0;
    for (let i = 0; i < n * n; i++) {
      maxErr = Math.max(maxErr, Math.abs(f.factor[i] - U[i]));
      maxAbs = Math.max(maxAbs, Math.abs(U[i]));
    }
    expect(maxErr / maxAbs).toBeLessThan(1e-11);
  });
});

describe('HessianAccumulator', () => {
  it('chunked Σ xxᵀ in f64 equals the float64 sum; zero-padded columns are dead', async () => {
    const n = 40;
    const padded = 64;
    const X = activations(5000, n, 9); // more tokens than one native chunk
    const acc = new HessianAccumulator(padded);
    await acc.add(X.subarray(0, 1000 * n), 1000, n);
    await acc.add(X.subarray(1000 * n), 4000, n);
    expect(acc.tokens).toBe(5000);
    const ref = hessianRef(X, 5000, n);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) expect(acc.sum[i * padded + j] * (2 / 5000)).toBeCloseTo(ref[i * n + j], 9);
    for (let i = n; i < padded; i++) expect(acc.sum[i * padded + i]).toBe(0);
    const f = await gptqFactor(acc);
    expect(f.deadColumns).toBe(padded - n);
    await expect(acc.add(X.subarray(0, n), 1, n)).rejects.toThrow(UsageError);
  });
});

describe('errors', () => {
  it('bad options and shapes are UsageErrors; an indefinite Hessian without damping is a DataError', async () => {
    const X = activations(64, 32, 1);
    const H = hessianRef(X, 64, 32);
    const f = await gptqFactorFromHessian(Float64Array.from(H), 32);
    const W = randomWeights(4 * 32, 2);
    const ok: GptqOptions = { bits: 4, groupSize: 32 };
    await expect(gptqQuantizeLinear(W, 4, 32, f, { ...ok, bits: 5 as PackedBits })).rejects.toThrow(/bits: expected 2, 3, 4 or 8/);
    await expect(gptqQuantizeLinear(W, 4, 32, f, { ...ok, blockSize: 48 })).rejects.toThrow(/blockSize/);
    await expect(gptqQuantizeLinear(W.subarray(1), 4, 32, f, ok)).rejects.toThrow(UsageError);
    await expect(gptqQuantizeLinear(new Float32Array(4 * 64), 4, 64, f, ok)).rejects.toThrow(/factor: is for 32 columns/);
    await expect(gptqFactorFromHessian(Float64Array.from(H), 32, { damp: -1 })).rejects.toThrow(/damp/);
    await expect(gptqFactor(new HessianAccumulator(32))).rejects.toThrow(/no calibration tokens/);
    // rank-1 Hessian (one token) with no damping: not positive definite
    const one = hessianRef(X.subarray(0, 32), 1, 32);
    await expect(gptqFactorFromHessian(one, 32, { damp: 0 })).rejects.toThrow(DataError);
  });
});
