/**
 * Native runtime operators against float64 TypeScript references, with odd shapes, the AVX2
 * kernels against their scalar twins, and the binding's argument checks.
 */
import { describe, expect, it } from 'vitest';

import { native } from '../../lib/native.js';
import {
  addBiasRows,
  addInPlace,
  attention,
  denseLinear,
  embedGather,
  kvStore,
  logSoftmaxNll,
  rmsNorm,
  ropeRotateHalf,
  siluMul,
} from '../../lib/runtime/ops.js';
import { ropeInverseFrequencies, RopeTables } from '../../lib/runtime/rope.js';
import { Rng } from '../../lib/runtime/sampling.js';
import { maxScaledDiff } from './reference-forward.js';

const rng = new Rng(2024);
const rand = (n: number, scale = 1) => Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * scale);

describe('rmsNorm', () => {
  it.each([
    [1, 1],
    [3, 17],
    [5, 64],
    [2, 1000],
  ])('%i rows × %i', (rows, dim) => {
    const x = rand(rows * dim, 3);
    const w = rand(dim);
    const y = new Float32Array(rows * dim);
    rmsNorm(x, w, y, rows, dim, 1e-5);
    for (let r = 0; r < rows; r++) {
      let ss = 0;
      for (let i = 0; i < dim; i++) ss += x[r * dim + i] ** 2;
      const inv = 1 / Math.sqrt(ss / dim + 1e-5);
      for (let i = 0; i < dim; i++) expect(y[r * dim + i]).toBeCloseTo(x[r * dim + i] * inv * w[i], 5);
    }
    rmsNorm(x, w, x, rows, dim, 1e-5); // in place
    expect(maxScaledDiff(x, y)).toBe(0);
  });
});

describe('RoPE', () => {
  it('rotate_half pairs (i, i + d/2) at positions pos0.. with double-built tables', () => {
    const heads = 3, hd = 10, rows = 4, pos0 = 7;
    const tables = new RopeTables(hd, 10000, null).ensure(pos0 + rows);
    const x = rand(rows * heads * hd);
    const y = x.slice();
    ropeRotateHalf(y, rows, heads, hd, pos0, tables.cos, tables.sin);
    for (let t = 0; t < rows; t++)
      for (let h = 0; h < heads; h++)
        for (let i = 0; i < hd; i++) {
          const a = (pos0 + t) * 10000 ** (-(2 * (i % 5)) / hd);
          const base = (t * heads + h) * hd;
          const rot = i < 5 ? -x[base + i + 5] : x[base + i - 5];
          expect(y[base + i]).toBeCloseTo(x[base + i] * Math.cos(a) + rot * Math.sin(a), 5);
        }
  });

  it('llama3 scaling keeps high frequencies, divides low ones, interpolates the band', () => {
    const s = { type: 'llama3' as const, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };
    const plain = ropeInverseFrequencies(128, 500000, null);
    const scaled = ropeInverseFrequencies(128, 500000, s);
    expect(scaled[0]).toBe(plain[0]); // wavelength 2π < 2048
    expect(scaled[63]).toBeCloseTo(plain[63] / 8, 15); // wavelength > 8192
    const mid = [...plain.keys()].filter((i) => {
      const wl = (2 * Math.PI) / plain[i];
      return wl > 2048 && wl < 8192;
    });
    expect(mid.length).toBeGreaterThan(0);
    for (const i of mid) expect(scaled[i] < plain[i] && scaled[i] > plain[i] / 8).toBe(true);
    const lin = ropeInverseFrequencies(8, 10000, { type: 'linear', factor: 4 });
    expect(lin[1]).toBeCloseTo(ropeInverseFrequencies(8, 10000, null)[1] / 4, 15);
  });

  it('tables grow on demand and keep earlier positions', () => {
    const r = new RopeTables(4, 10000, null);
    const a = r.ensure(3).cos.slice(0, 6);
    const b = r.ensure(500);
    expect(b.cos.length).toBeGreaterThanOrEqual(500 * 2);
    expect(b.cos.slice(0, 6)).toEqual(a);
  });
});

/** float64 causal GQA attention; keys transposed [kvHeads, hd, cap], values [kvHeads, cap, hd]. */
function refAttention(q: Float32Array, k: Float32Array, v: Float32Array, nQ: number, heads: number, kvHeads: number, hd: number, cap: number, pos0: number, window: number): Float64Array {
  const out = new Float64Array(nQ * heads * hd);
  for (let t = 0; t < nQ; t++)
    for (let h = 0; h < heads; h++) {
      const g = Math.floor(h / (heads / kvHeads));
      const pos = pos0 + t;
      const js: number[] = [];
      for (let j = 0; j <= pos; j++) if (window === 0 || pos - j < window) js.push(j);
      const s = js.map((j) => {
        let d = 0;
        for (let i = 0; i < hd; i++) d += q[(t * heads + h) * hd + i] * k[(g * hd + i) * cap + j];
        return d / Math.sqrt(hd);
      });
      const mx = Math.max(...s);
      const e = s.map((x) => Math.exp(x - mx));
      const sum = e.reduce((a, b) => a + b, 0);
      js.forEach((j, n) => {
        for (let i = 0; i < hd; i++) out[(t * heads + h) * hd + i] += (e[n] / sum) * v[(g * cap + j) * hd + i];
      });
    }
  return out;
}

describe('attention', () => {
  it.each([
    // nQ, heads, kvHeads, hd, capacity, pos0, window
    [1, 1, 1, 8, 1, 0, 0],
    [7, 4, 2, 8, 9, 0, 0],
    [1, 6, 2, 16, 40, 30, 0],
    [13, 4, 1, 24, 20, 3, 0],
    [9, 2, 2, 6, 12, 2, 0], // head_dim not a multiple of 8: scalar path
    [17, 4, 2, 64, 17, 0, 5], // sliding window
    [3, 3, 3, 128, 50, 41, 9],
    [6, 2, 1, 16, 90, 80, 4], // window shorter than a query block
    [11, 5, 5, 40, 11, 0, 0], // head_dim 40: 5 value chunks
    [70, 2, 2, 8, 70, 0, 0], // more than one 64-key score block
  ])('nQ %i, %i heads / %i KV, head_dim %i, capacity %i, pos0 %i, window %i', (nQ, heads, kvHeads, hd, cap, pos0, window) => {
    const q = rand(nQ * heads * hd, 2);
    const k = rand(kvHeads * cap * hd, 2);
    const v = rand(kvHeads * cap * hd);
    const want = refAttention(q, k, v, nQ, heads, kvHeads, hd, cap, pos0, window);
    for (const reference of [false, true]) {
      const out = new Float32Array(nQ * heads * hd);
      attention({ q, k, v, out, nQ, heads, kvHeads, headDim: hd, capacity: cap, pos0, window }, reference);
      expect(maxScaledDiff(out, want)).toBeLessThan(2e-6);
    }
  });

  it('a long causal prefill: AVX2 and scalar kernels agree', () => {
    const nQ = 300, heads = 4, kvHeads = 2, hd = 16;
    const q = rand(nQ * heads * hd, 3), k = rand(kvHeads * nQ * hd, 3), v = rand(kvHeads * nQ * hd);
    const a = new Float32Array(nQ * heads * hd), b = new Float32Array(nQ * heads * hd);
    const args = { q, k, v, nQ, heads, kvHeads, headDim: hd, capacity: nQ, pos0: 0, window: 0 };
    attention({ ...args, out: a });
    attention({ ...args, out: b }, true);
    expect(maxScaledDiff(a, b)).toBeLessThan(2e-6);
  });

  it('checks buffer sizes and head grouping', () => {
    const f = (n: number) => new Float32Array(n);
    const n = native();
    expect(() => n.attention(f(8), f(8), f(8), f(8), 1, 1, 1, 8, 1, 1, 0)).toThrow(/exceeds the cache capacity/);
    expect(() => n.attention(f(8), f(8), f(8), f(8), 1, 3, 2, 8, 1, 0, 0)).toThrow(/multiple of kvHeads/);
    expect(() => n.attention(f(7), f(8), f(8), f(8), 1, 1, 1, 8, 1, 0, 0)).toThrow(RangeError);
    expect(() => n.attention(f(8), new Float64Array(8) as unknown as Float32Array, f(8), f(8), 1, 1, 1, 8, 1, 0, 0)).toThrow(TypeError);
  });
});

describe('kvStore', () => {
  it('scatters token rows into the head-major value cache and the transposed key cache', () => {
    const rows = 3, kvh = 2, hd = 5, cap = 6, pos0 = 2;
    const src = rand(rows * kvh * hd);
    const values = new Float32Array(kvh * cap * hd);
    const keys = new Float32Array(kvh * cap * hd);
    kvStore(src, values, rows, kvh, hd, cap, pos0, false);
    kvStore(src, keys, rows, kvh, hd, cap, pos0, true);
    for (let t = 0; t < rows; t++)
      for (let h = 0; h < kvh; h++)
        for (let i = 0; i < hd; i++) {
          expect(values[(h * cap + pos0 + t) * hd + i]).toBe(src[(t * kvh + h) * hd + i]);
          expect(keys[(h * hd + i) * cap + pos0 + t]).toBe(src[(t * kvh + h) * hd + i]);
        }
    expect(() => kvStore(src, values, rows, kvh, hd, cap, 4, false)).toThrow(/exceed the cache capacity 6/);
    expect(() => native().kvStore(src, values, rows, kvh, hd, cap, 0, 1 as unknown as boolean)).toThrow(/transposed: expected a boolean/);
  });
});

describe('dense linear, bias, SwiGLU, residual, embedding', () => {
  it.each([
    [1, 1, 1],
    [3, 17, 5],
    [33, 64, 172],
  ])('linear %i rows, in %i, out %i (with and without bias)', (rows, inF, out) => {
    const x = rand(rows * inF), w = rand(out * inF), b = rand(out);
    for (const bias of [null, b]) {
      const y = new Float32Array(rows * out);
      denseLinear(x, rows, inF, w, out, bias, y);
      const want = new Float64Array(rows * out);
      for (let r = 0; r < rows; r++)
        for (let o = 0; o < out; o++) {
          let s = bias ? bias[o] : 0;
          for (let i = 0; i < inF; i++) s += x[r * inF + i] * w[o * inF + i];
          want[r * out + o] = s;
        }
      expect(maxScaledDiff(y, want)).toBeLessThan(1e-5);
    }
    expect(() => denseLinear(x, rows, inF, w.subarray(1), out, null, new Float32Array(rows * out))).toThrow(/weight: needs/);
    expect(() => denseLinear(x, rows, inF, w, out, b.subarray(1), new Float32Array(rows * out))).toThrow(/bias: needs/);
  });

  it('addBiasRows, addInPlace', () => {
    const y = rand(12), b = rand(4), y0 = y.slice();
    addBiasRows(y, b, 3, 4);
    for (let i = 0; i < 12; i++) expect(y[i]).toBeCloseTo(y0[i] + b[i % 4], 6);
    const z = rand(12);
    const y1 = y.slice();
    addInPlace(y, z, 11);
    for (let i = 0; i < 11; i++) expect(y[i]).toBeCloseTo(y1[i] + z[i], 6);
    expect(y[11]).toBe(y1[11]);
  });

  it.each([1, 7, 8, 9, 1000, 70001])('siluMul n = %i (AVX2 and scalar) vs float64', (n) => {
    const g = rand(n, 12), u = rand(n);
    for (const reference of [false, true]) {
      const out = new Float32Array(n);
      siluMul(g, u, out, n, reference);
      const want = Float64Array.from(g, (gv, i) => (gv / (1 + Math.exp(-gv))) * u[i]);
      expect(maxScaledDiff(out, want)).toBeLessThan(1e-6);
    }
    const extreme = Float32Array.of(-200, -90, -88, 0, 88, 200, 1e-30, -1e-30);
    const out = new Float32Array(8);
    siluMul(extreme, new Float32Array(8).fill(1), out, 8);
    expect([...out].every(Number.isFinite)).toBe(true);
    expect(out[5]).toBe(200);
    expect(Math.abs(out[0])).toBeLessThan(1e-30);
  });

  it('embedGather copies rows and rejects ids outside the table', () => {
    const table = rand(5 * 3);
    const out = new Float32Array(2 * 3);
    embedGather(table, 3, Int32Array.of(4, 0), out);
    expect([...out]).toEqual([...table.subarray(12, 15), ...table.subarray(0, 3)]);
    expect(() => embedGather(table, 3, Int32Array.of(5), out)).toThrow(/ids\[0\] = 5 is outside \[0, 5\)/);
  });
});

describe('logSoftmaxNll', () => {
  it.each([
    [1, 2],
    [4, 7],
    [3, 512],
    [2, 32001],
  ])('%i rows × vocab %i (AVX2 and scalar) vs float64', (rows, vocab) => {
    const z = rand(rows * vocab, 15);
    const targets = Int32Array.from({ length: rows }, (_, r) => (r * 7919) % vocab);
    for (const reference of [false, true]) {
      const nll = new Float64Array(rows);
      logSoftmaxNll(z, rows, vocab, targets, nll, reference);
      for (let r = 0; r < rows; r++) {
        const row = z.subarray(r * vocab, (r + 1) * vocab);
        const mx = Math.max(...row);
        let s = 0;
        for (const v of row) s += Math.exp(v - mx);
        expect(Math.abs(nll[r] - (mx + Math.log(s) - row[targets[r]]))).toBeLessThan(1e-6);
      }
    }
    expect(() => logSoftmaxNll(z, rows, vocab, Int32Array.from({ length: rows }, () => vocab), new Float64Array(rows))).toThrow(/targets\[0\]/);
  });
});
