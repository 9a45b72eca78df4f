// Blocked f32 GEMM and SYRK against the float64 reference: every transpose combination, odd
// shapes (1, 3, 17, 100, 257 in every position), the skinny streaming path (M or N ≤ 8), row
// strides, alpha/beta semantics (beta = 0 is write-only: NaN in C must not propagate), the
// AVX2 and portable kernels, one and two threads (bitwise identical), async calls and errors.
import { beforeAll, describe, expect, it } from 'vitest';

import { type GemmOptions, type GemmPath, gemm, gemmSync, linearSync, syrk, syrkSync } from '../../lib/kernels/linalg.js';
import { native } from '../../lib/native.js';
import { UsageError } from '../../lib/util/errors.js';
import { Rng, gemmF64, relErrF } from '../reference/linalg-f64.js';

const TOL = 1e-5;
// Thread counts: every suite runs once on 1 thread, then once on 2. The count is switched only
// at those two points and never back: set_num_threads() after a multi-threaded job currently
// crashes the pool (workers restart on a stale job), so the switches happen while no
// multi-threaded job has run yet.
const THREADS = [1, 2] as const;
// Products computed on 1 thread, compared bitwise with the 2-thread run.
const oneThreadResults = new Map<string, Float32Array>();

function randomF32(n: number, rng: Rng): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal();
  return a;
}

interface Case {
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  alpha?: number;
  beta?: number;
  pad?: number; // extra elements per row in every operand (row strides > row length)
}

// Runs one product with the given path against gemmF64; returns C for further checks.
function check(c: Case, path: GemmPath, rng: Rng): Float32Array {
  const { m, n, k, transA, transB } = c;
  const alpha = c.alpha ?? 1;
  const beta = c.beta ?? 0;
  const pad = c.pad ?? 0;
  const lda = (transA ? m : k) + pad;
  const ldb = (transB ? k : n) + pad;
  const ldc = n + pad;
  const a = randomF32((transA ? k : m) * lda, rng);
  const b = randomF32((transB ? n : k) * ldb, rng);
  const cInit = beta === 0 ? new Float32Array(m * ldc).fill(Number.NaN) : randomF32(m * ldc, rng);
  const out = Float32Array.from(cInit);
  const opts: GemmOptions = { transA, transB, alpha, beta, lda, ldb, ldc, out, path };
  gemmSync(a, b, m, n, k, opts);
  const ref = gemmF64(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, cInit, ldc);
  const what = `${path} m=${m} n=${n} k=${k} tA=${transA} tB=${transB} alpha=${alpha} beta=${beta} pad=${pad}`;
  expect(relErrF(out, ref, m, n, ldc), what).toBeLessThan(TOL);
  for (let i = 0; i < m; i++)
    for (let j = n; j < ldc; j++) {
      // padding between rows is never written
      if (!Object.is(out[i * ldc + j], cInit[i * ldc + j])) expect.fail(`${what}: wrote C[${i}][${j}] past n`);
    }
  return out;
}

const ODD = [1, 3, 17, 100, 257];
// Every odd size appears in every position, plus the skinny path (M or N ≤ 8) and shapes that
// cross the 6×16 tile and the 256-deep K block.
const SHAPES: Array<[number, number, number]> = [
  [1, 1, 1],
  [1, 17, 257],
  [3, 100, 17],
  [17, 3, 100],
  [100, 257, 3],
  [257, 1, 100],
  [257, 257, 257],
  [100, 100, 1],
  [17, 257, 3],
  [3, 3, 3],
  [8, 40, 33],
  [40, 8, 33],
  [9, 16, 300],
  [7, 33, 5],
  [6, 16, 256],
  [13, 35, 513],
];

describe.each(THREADS)('%i thread(s)', (threads) => {
  beforeAll(() => {
    native().setThreads(threads);
  });

  for (const path of ['auto', 'portable'] as const)
    it(`sgemm, ${path} kernels: all transposes, odd shapes vs float64`, () => {
      expect(native().getThreads()).toBe(threads);
      const rng = new Rng(1000 + threads);
      for (const [m, n, k] of SHAPES)
        for (const transA of [false, true])
          for (const transB of [false, true]) check({ m, n, k, transA, transB }, path, rng);
    });

  it('sgemm, reference path', () => {
    const rng = new Rng(7);
    for (const [m, n, k] of [[3, 17, 100], [17, 3, 1]] as const)
      for (const transA of [false, true])
        for (const transB of [false, true]) check({ m, n, k, transA, transB }, 'reference', rng);
  });

  it('alpha, beta and row strides', () => {
    const rng = new Rng(11);
    for (const path of ['auto', 'portable'] as const)
      for (const [m, n, k] of [[5, 40, 30], [40, 5, 30], [70, 90, 260]] as const)
        for (const transA of [false, true])
          for (const transB of [false, true]) {
            check({ m, n, k, transA, transB, alpha: -0.75, beta: 0.5, pad: 3 }, path, rng);
            check({ m, n, k, transA, transB, alpha: 2, beta: 1, pad: 0 }, path, rng);
            check({ m, n, k, transA, transB, alpha: 1, beta: 0, pad: 5 }, path, rng);
          }
  });

  it('beta = 0 never reads C: NaN and Inf in C do not propagate', () => {
    const rng = new Rng(3);
    for (const [m, n, k] of [[1, 50, 20], [50, 1, 20], [64, 64, 64], [7, 7, 7]] as const)
      for (const path of ['auto', 'portable', 'reference'] as const) {
        const a = randomF32(m * k, rng);
        const b = randomF32(k * n, rng);
        const out = new Float32Array(m * n);
        for (let i = 0; i < out.length; i++) out[i] = i % 2 ? Number.NaN : Number.POSITIVE_INFINITY;
        gemmSync(a, b, m, n, k, { out, path });
        expect(out.every(Number.isFinite), `${path} ${m}×${n}×${k}`).toBe(true);
      }
  });

  it('results are bitwise identical on 1 and 2 threads', () => {
    const rng = new Rng(5);
    const cases = [[300, 200, 100, true], [4, 500, 300, true], [500, 3, 300, false], [96, 512, 700, false]] as const;
    for (const [m, n, k, transB] of cases) {
      const a = randomF32(m * k, rng);
      const b = randomF32(k * n, rng);
      const c = gemmSync(a, b, m, n, k, { transB });
      const key = `${m}×${n}×${k}`;
      if (threads === 1) oneThreadResults.set(key, c);
      else expect(Buffer.from(c.buffer).equals(Buffer.from(oneThreadResults.get(key)!.buffer)), key).toBe(true);
    }
  });

  it('async gemm matches the sync result and does not block the event loop', async () => {
    const rng = new Rng(13);
    const [m, n, k] = [256, 384, 512];
    const a = randomF32(m * k, rng);
    const b = randomF32(n * k, rng);
    const sync = gemmSync(a, b, m, n, k, { transB: true });
    const order: string[] = [];
    const pending = Promise.all([1, 2, 3].map(() => gemm(a, b, m, n, k, { transB: true }))).then((r) => {
      order.push('gemm');
      return r;
    });
    setImmediate(() => order.push('event loop'));
    const results = await pending;
    expect(order).toEqual(['event loop', 'gemm']);
    for (const r of results) expect(Buffer.from(r.buffer).equals(Buffer.from(sync.buffer))).toBe(true);
  });

  it('ssyrk: C = AᵀA and A·Aᵀ, exactly symmetric, vs float64', async () => {
    const rng = new Rng(21 + threads);
    for (const [n, k] of [[1, 5], [17, 3], [100, 257], [600, 40]] as const) {
      for (const trans of [true, false]) {
        const a = randomF32(n * k, rng);
        const c = syrkSync(a, n, k, { trans, alpha: 0.5 });
        const ref = gemmF64(trans, !trans, n, n, k, 0.5, a, trans ? n : k, a, trans ? n : k, 0, new Float64Array(n * n), n);
        expect(relErrF(c, ref, n, n, n), `n=${n} k=${k} trans=${trans}`).toBeLessThan(TOL);
        for (let i = 0; i < n; i++)
          for (let j = 0; j < i; j++) if (c[i * n + j] !== c[j * n + i]) expect.fail(`not symmetric at ${i},${j}`);
        // beta accumulates onto a symmetric C (a Hessian over several batches)
        const acc = await syrk(a, n, k, { trans, alpha: 0.5, beta: 1, out: Float32Array.from(c) });
        expect(relErrF(acc, c.map((x) => 2 * x), n, n, n)).toBeLessThan(TOL);
      }
    }
  });
});

describe('edge semantics', () => {
  it('covers each odd size in each position', () => {
    for (const s of ODD) {
      expect(SHAPES.some(([m]) => m === s)).toBe(true);
      expect(SHAPES.some(([, n]) => n === s)).toBe(true);
      expect(SHAPES.some(([, , k]) => k === s)).toBe(true);
    }
  });

  it('alpha = 0 or k = 0 scales C by beta and reads neither A nor B', () => {
    const a = new Float32Array(12).fill(Number.NaN);
    const b = new Float32Array(12).fill(Number.NaN);
    const out = new Float32Array([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    gemmSync(a, b, 3, 3, 4, { alpha: 0, beta: 2, out });
    expect([...out]).toEqual([2, 4, 6, 8, 10, 12, 14, 16, 18]);
    gemmSync(new Float32Array(0), new Float32Array(0), 3, 3, 0, { beta: 0.5, out });
    expect([...out]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const fresh = Float32Array.from([Number.NaN, 1, 2, 3]);
    gemmSync(new Float32Array(0), new Float32Array(0), 2, 2, 0, { out: fresh });
    expect([...fresh]).toEqual([0, 0, 0, 0]);
  });

  it('m = 0 or n = 0 writes nothing', () => {
    const out = new Float32Array(4).fill(7);
    gemmSync(new Float32Array(8), new Float32Array(0), 4, 0, 2, { out, ldc: 1 });
    gemmSync(new Float32Array(0), new Float32Array(8), 0, 4, 2, { out });
    expect([...out]).toEqual([7, 7, 7, 7]);
  });

  it('linearSync is y = x·Wᵀ', () => {
    const rng = new Rng(9);
    const [rows, inF, outF] = [5, 37, 23];
    const x = randomF32(rows * inF, rng);
    const w = randomF32(outF * inF, rng);
    const y = linearSync(x, w, rows, inF, outF);
    const ref = gemmF64(false, true, rows, outF, inF, 1, x, inF, w, inF, 0, new Float64Array(rows * outF), outF);
    expect(relErrF(y, ref, rows, outF, outF)).toBeLessThan(TOL);
  });
});

describe('argument errors', () => {
  const a = new Float32Array(6);
  const b = new Float32Array(6);
  it('the facade names the parameter', () => {
    expect(() => gemmSync(a, b, 2, 2, 4)).toThrow(/a: a 2×4 matrix with row stride 4 needs 8 elements, got 6/);
    expect(() => gemmSync(a, new Float32Array(5), 2, 2, 3)).toThrow(/b: .* needs 6 elements, got 5/);
    expect(() => gemmSync(new Float64Array(6) as unknown as Float32Array, b, 2, 2, 3)).toThrow(UsageError);
    expect(() => gemmSync(a, b, 2, 2, 3, { lda: 2 })).toThrow(/lda: expected at least the row length 3, got 2/);
    expect(() => gemmSync(a, b, 2, 2, 3, { beta: 1 })).toThrow(/out: required when beta is not 0/);
    expect(() => gemmSync(a, b, 2, 2, 3, { out: new Float32Array(3) })).toThrow(/out: .* needs 4 elements, got 3/);
    expect(() => gemmSync(a, b, -1, 2, 3)).toThrow(/m: expected an integer/);
    expect(() => gemmSync(a, b, 2, 2.5, 3)).toThrow(/n: expected an integer/);
    expect(() => gemmSync(a, b, 2, 2, 3, { path: 'fast' as GemmPath })).toThrow(/path: expected/);
    expect(() => gemmSync(a, b, 2, 2, 3, { transA: 1 as unknown as boolean })).toThrow(/transA: expected a boolean/);
    expect(() => syrkSync(a, 3, 3)).toThrow(/a: .* needs 9 elements, got 6/);
  });

  it('the addon re-checks shapes and throws instead of reading out of bounds', () => {
    const n = native();
    const c = new Float32Array(4);
    expect(() => n.sgemmSync(false, false, 2, 2, 4, 1, a, 4, b, 2, 0, c, 2)).toThrow(RangeError);
    expect(() => n.sgemmSync(false, false, 2, 2, 3, 1, a, 3, b, 2, 0, new Float32Array(3), 2)).toThrow(RangeError);
    expect(() => n.sgemmSync(false, false, 2, 2, 3, 1, a, 2, b, 2, 0, c, 2)).toThrow(/lda/);
    expect(() => n.sgemmSync(false, false, 2, 2, 3, 1, a as unknown as Float32Array, 3, new Uint8Array(6) as unknown as Float32Array, 2, 0, c, 2)).toThrow(TypeError);
    expect(() => n.sgemmSync(0 as unknown as boolean, false, 2, 2, 3, 1, a, 3, b, 2, 0, c, 2)).toThrow(TypeError);
    expect(() => n.sgemmSync(false, false, 2, 2, 3, 1, a, 3, b, 2, 0, c, 2, 7 as 0)).toThrow(RangeError);
    expect(() => n.ssyrkSync(true, 3, 3, 1, a, 3, 0, new Float32Array(9), 3)).toThrow(RangeError);
    expect(() => n.sgemm(false, false, 2, 2, 4, 1, a, 4, b, 2, 0, c, 2)).toThrow(RangeError);
  });
});
