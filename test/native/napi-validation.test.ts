/**
 * Every N-API entry of the addon validates its arguments: wrong types, detached ArrayBuffers,
 * too-short arrays and negative / fractional / non-finite / huge dims throw a TypeError or
 * RangeError with a message, and never crash the process (a crash fails this file).
 *
 * Two layers: a valid call per CPU entry whose arguments are then broken one at a time (each
 * break must throw), and random argument lists for every export (must return or throw an
 * Error with a message; Promise-returning entries must settle the same way).
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';

import { native, type NativeAddon } from '../../lib/native.js';

const n = native();
const initialThreads = n.getThreads();
afterAll(() => n.setThreads(initialThreads));

/** A TypedArray whose buffer has been detached (transferred away). */
function detached<T extends ArrayBufferView>(make: (b: ArrayBuffer) => T, bytes = 256): T {
  const buf = new ArrayBuffer(bytes);
  const view = make(buf);
  structuredClone(buf, { transfer: [buf] });
  expect(view.byteLength).toBe(0);
  return view;
}

const f32 = (len: number, v = 0.5) => new Float32Array(len).fill(v);
const rng = (len: number) => Float32Array.from({ length: len }, (_, i) => Math.sin(i * 1.7));

function packedLayer(bits = 4, symmetric = false) {
  const out = 3, inF = 64, g = 32;
  return {
    outFeatures: out, inFeatures: inF, bits, groupSize: g, symmetric,
    qweight: new Uint8Array(out * (inF / 32) * 4 * bits).map((_, i) => i * 7),
    scales: new Uint16Array(out * (inF / g)).fill(0x3c00),
    ...(symmetric ? {} : { zeros: new Uint8Array(out * (inF / g)).fill(1) }),
  };
}
const quantOpts = { bits: 4, groupSize: 32, symmetric: false, method: 0, clipGrid: 20, clipMaxShrink: 0.2 };

/** One valid call per entry: name → argument factory (fresh arrays each time). */
const VALID: Record<string, () => unknown[]> = {
  toF32: () => [new Uint8Array(16), 0, f32(4)],
  fromF32: () => [f32(4), 1, new Uint8Array(8)],
  countNonFinite: () => [f32(8)],
  sgemmSync: () => [false, false, 2, 3, 4, 1, rng(8), 4, rng(12), 3, 0, f32(6), 3],
  ssyrkSync: () => [false, 3, 4, 1, rng(12), 4, 0, f32(9), 3],
  svdSync: () => [rng(24), 6, 4, 2],
  gramEigenvaluesSync: () => [rng(24), 6, 4],
  singularValuesSync: () => [rng(24), 6, 4],
  symEigenSync: () => [Float64Array.of(2, 1, 1, 3), 2, true],
  packedFormatInfo: () => [4, 32, false, 64],
  quantizeCodes: () => [rng(64), 2, 32, quantOpts, new Uint8Array(64), new Uint16Array(2), new Uint8Array(2)],
  quantizePacked: () => [rng(64), 2, 32, quantOpts, new Uint8Array(32), new Uint16Array(2), new Uint8Array(2)],
  packCodes: () => [new Uint8Array(64).fill(3), 2, 32, 4, new Uint8Array(32)],
  unpackCodes: () => [new Uint8Array(32), 2, 32, 4, new Uint8Array(64)],
  dequantizePacked: () => [packedLayer(), f32(3 * 64)],
  qmatmul: () => [packedLayer(), f32(64), 1, f32(3), f32(3)],
  gemvF32: () => [rng(12), 3, 4, f32(4), 1, null, f32(3)],
  gemvF16: () => [new Uint16Array(12).fill(0x3c00), 3, 4, f32(4), 1, null, f32(3)],
  rmsNorm: () => [rng(8), f32(4, 1), f32(8), 2, 4, 1e-5],
  ropeRotateHalf: () => [rng(16), 2, 2, 4, 0, f32(4, 1), f32(4, 0)],
  kvStore: () => [rng(8), f32(32), 2, 1, 4, 8, 0, false],
  attention: () => [rng(8), rng(32), rng(32), f32(8), 1, 2, 1, 4, 8, 0, 0],
  attentionRef: () => [rng(8), rng(32), rng(32), f32(8), 1, 2, 1, 4, 8, 0, 0],
  linear: () => [rng(8), 2, 4, rng(12), 3, null, f32(6)],
  addBiasRows: () => [f32(6), f32(3), 2, 3],
  siluMul: () => [rng(4), rng(4), f32(4), 4],
  siluMulRef: () => [rng(4), rng(4), f32(4), 4],
  addInPlace: () => [f32(4), f32(4), 4],
  embedGather: () => [rng(12), 4, Int32Array.of(0, 2), f32(8)],
  logSoftmaxNll: () => [rng(8), 2, 4, Int32Array.of(1, 3), new Float64Array(2)],
  logSoftmaxNllRef: () => [rng(8), 2, 4, Int32Array.of(1, 3), new Float64Array(2)],
};
const ASYNC_VALID: Record<string, () => unknown[]> = {
  sgemm: VALID.sgemmSync,
  ssyrk: VALID.ssyrkSync,
  svd: VALID.svdSync,
  gramEigenvalues: VALID.gramEigenvaluesSync,
  singularValues: VALID.singularValuesSync,
  quantizeCodesAsync: VALID.quantizeCodes,
  quantizePackedAsync: VALID.quantizePacked,
  dequantizePackedAsync: () => [packedLayer(), f32(3 * 64)],
  qmatmulAsync: VALID.qmatmul,
};

/** Arguments that are real numbers (any finite value is valid): only a non-number must be refused. */
const FLOAT_ARGS: Record<string, number[]> = { sgemmSync: [5, 10], sgemm: [5, 10], ssyrkSync: [3, 6], ssyrk: [3, 6], rmsNorm: [] };
/** Breaks a binding accepts by design: raw-byte arguments take any TypedArray; lengths that are only a lower bound. */
const ACCEPTED: Record<string, Record<number, string[]>> = {
  toF32: { 0: ['another TypedArray type'] },
  fromF32: { 0: ['one element short'], 2: ['another TypedArray type'] },
  countNonFinite: { 0: ['detached', 'one element short'] },
  embedGather: { 2: ['detached', 'one element short'] },
};

function fn(name: string): (...args: unknown[]) => unknown {
  return (n as unknown as Record<string, (...a: unknown[]) => unknown>)[name];
}

/** Broken variants of argument `i` of `name`'s valid call: every one must be refused. */
function breaks(name: string, i: number, v: unknown): { what: string; value: unknown }[] {
  const out: { what: string; value: unknown }[] = [];
  if (typeof v === 'number' && (FLOAT_ARGS[name]?.includes(i) || !Number.isInteger(v))) {
    out.push({ what: 'a string', value: String(v) });
  } else if (typeof v === 'number') {
    out.push({ what: 'NaN', value: NaN }, { what: 'Infinity', value: Infinity }, { what: '-1e300', value: -1e300 }, { what: '1e300', value: 1e300 }, { what: '2^53', value: 2 ** 53 }, { what: 'a string', value: String(v) });
    if (Number.isInteger(v)) out.push({ what: '2.5', value: 2.5 }, { what: '-1', value: -1 });
  } else if (ArrayBuffer.isView(v)) {
    const ctor = (v as unknown as { constructor: new (b: ArrayBuffer | number) => ArrayBufferView }).constructor;
    const el = (v as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT;
    const len = (v as unknown as { length: number }).length;
    out.push({ what: 'detached', value: detached((b) => new ctor(b), Math.max(8, len * el)) });
    if (len > 0) out.push({ what: 'one element short', value: new ctor(len - 1) });
    out.push({ what: 'a plain array', value: Array.from(v as unknown as ArrayLike<number>) });
    out.push({ what: 'another TypedArray type', value: ctor === Float64Array ? new Float32Array(len) : new Float64Array(len) });
  } else if (typeof v === 'boolean') {
    out.push({ what: 'a number', value: 1 });
  } else if (v && typeof v === 'object') {
    out.push({ what: 'null', value: null }, { what: 'a number', value: 3 });
  }
  const ok = ACCEPTED[name]?.[i] ?? [];
  return out.filter((b) => !ok.includes(b.what));
}

const TYPE_OR_RANGE = (e: unknown) => (e instanceof TypeError || e instanceof RangeError) && (e as Error).message.length > 0;

describe('N-API argument validation', () => {
  it('covers every CPU export that takes arguments', () => {
    const exported = Object.keys(n).filter((k) => typeof fn(k) === 'function');
    const noArgs = ['buildInfo', 'cpuInfo', 'cudaInfo', 'getThreads', 'packedKernelsSimd', 'cudaUnavailableReason'];
    const elsewhere = ['setThreads', 'readBandwidth', 'gaussianMatrix']; // tested below (they allocate or change state)
    const other = exported.filter((k) => !(k in VALID) && !(k in ASYNC_VALID) && !noArgs.includes(k) && !elsewhere.includes(k));
    // Entries added by other families (CUDA, GGUF, GPTQ) are covered by the random-argument test.
    expect(other.every((k) => /^(cuda|ggml|gptq)/.test(k)), `uncovered exports: ${other.join(', ')}`).toBe(true);
  });

  it.each(Object.keys(VALID))('%s: the valid call works and each broken argument throws TypeError/RangeError', (name) => {
    const make = VALID[name];
    expect(() => fn(name)(...make())).not.toThrow();
    const base = make();
    for (let i = 0; i < base.length; i++) {
      for (const b of breaks(name, i, base[i])) {
        const args = make();
        args[i] = b.value;
        let thrown: unknown;
        try {
          fn(name)(...args);
        } catch (e) {
          thrown = e;
        }
        expect(thrown, `${name} arg ${i} = ${b.what} was accepted`).toBeDefined();
        expect(TYPE_OR_RANGE(thrown), `${name} arg ${i} = ${b.what}: ${String(thrown)}`).toBe(true);
      }
    }
    expect(() => fn(name)()).toThrow(TypeError);
  });

  it.each(Object.keys(ASYNC_VALID))('%s (async): broken arguments throw synchronously, before any work is queued', async (name) => {
    const make = ASYNC_VALID[name];
    await expect(fn(name)(...make()) as Promise<unknown>).resolves.not.toThrow();
    const base = make();
    for (let i = 0; i < base.length; i++) {
      for (const b of breaks(name, i, base[i])) {
        const args = make();
        args[i] = b.value;
        expect(() => fn(name)(...args), `${name} arg ${i} = ${b.what}`).toThrow();
      }
    }
  });

  it('setThreads, readBandwidth and gaussianMatrix refuse bad numbers', () => {
    for (const bad of [NaN, -1, 1e300, Infinity, 2.5, '4']) {
      expect(() => n.setThreads(bad as number)).toThrow();
      expect(() => n.readBandwidth(bad as number, 1)).toThrow();
      expect(() => n.gaussianMatrix(bad as number, 2, 1)).toThrow();
    }
    expect(() => n.gaussianMatrix(2, 2, -1)).toThrow(RangeError);
    expect(() => n.gaussianMatrix(2 ** 30, 2 ** 30, 1)).toThrow(); // 2^60 floats: allocation refused, no crash
    expect(n.setThreads(initialThreads)).toBe(initialThreads);
  });

  it('packed layers: fields of the wrong type, size or value are refused by every packed entry', () => {
    const x = f32(64), y = f32(3), dst = f32(3 * 64);
    const bad: Record<string, unknown>[] = [
      { bits: 5 }, { bits: NaN }, { groupSize: 48 }, { groupSize: 1e300 }, { inFeatures: 48 }, { outFeatures: 0 }, { outFeatures: -3 },
      { symmetric: 'no' }, { qweight: new Uint8Array(95) }, { qweight: detached((b) => new Uint8Array(b), 96) }, { scales: new Float32Array(6) },
      { scales: detached((b) => new Uint16Array(b), 12) }, { zeros: undefined }, { zeros: new Uint8Array(5) }, { qweight: null },
    ];
    for (const patch of bad) {
      const layer = { ...packedLayer(), ...patch };
      expect(() => n.qmatmul(layer as never, x, 1, null, y), JSON.stringify(Object.keys(patch))).toThrow();
      expect(() => n.dequantizePacked(layer as never, dst), JSON.stringify(Object.keys(patch))).toThrow();
      expect(() => n.qmatmulAsync(layer as never, x, 1, null, y)).toThrow();
    }
  });
});

// Values random argument lists are drawn from: every JS type, dims from tiny to absurd, arrays
// of every element type, detached arrays and objects shaped almost like a packed layer.
function candidates(): unknown[] {
  return [
    undefined, null, true, false, 0, 1, 2, 3, 4, 32, 64, -1, 2.5, NaN, Infinity, -Infinity, 2 ** 31, 2 ** 53, 1e300, -0, 1n, '4', 'x', {}, [], [1, 2],
    f32(0), f32(64), f32(4096), new Uint8Array(64), new Uint8Array(32), new Uint16Array(4), new Int32Array(4), new Float64Array(16), new Uint8ClampedArray(8),
    detached((b) => new Float32Array(b)), detached((b) => new Uint8Array(b)), new DataView(new ArrayBuffer(8)), Buffer.alloc(16),
    packedLayer(), packedLayer(2, true), { ...packedLayer(), qweight: new Uint8Array(1) }, quantOpts, { ...quantOpts, bits: 99 },
    () => 1, Symbol('s'),
  ];
}

describe('N-API random argument lists', () => {
  const skip = new Set(['readBandwidth', 'gaussianMatrix', 'setThreads']); // allocate or change global state
  const names = Object.keys(n).filter((k) => typeof fn(k) === 'function' && !skip.has(k));

  it.each(names)('%s: returns or throws an Error with a message, never crashes', async (name) => {
    const pool = candidates();
    await fc.assert(
      fc.asyncProperty(fc.array(fc.nat({ max: pool.length - 1 }), { maxLength: 14 }), async (picks) => {
        const args = picks.map((i) => pool[i]);
        let result: unknown;
        try {
          result = fn(name)(...args);
          if (result instanceof Promise) await result;
        } catch (e) {
          if (!(e instanceof Error) || e.message.length === 0) throw new Error(`${name}: threw a non-Error or an empty message: ${String(e)}`);
        }
      }),
      { numRuns: 150, seed: 11 },
    );
  });
});

// Keep the type import used when the addon interface grows.
export type _Addon = NativeAddon;
