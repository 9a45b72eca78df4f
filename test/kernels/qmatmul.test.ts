// Fused dequant-matmul and the f32/f16 baselines against the float64 reference on the
// dequantized weights: every bit width and group size, odd shapes, every path (batch 1 GEMV,
// small batch, prefill), scalar and SIMD kernels, one and two threads.
import { existsSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';

import { SafetensorsFile } from '../../lib/io/safetensors.js';
import { PACKED_BITS, type PackedBits } from '../../lib/kernels/packed-format.js';
import {
  type PackedLinear,
  gemvF16,
  gemvF32,
  qmatmul,
  qmatmulSync,
  quantizeLinearSync,
} from '../../lib/kernels/quant.js';
import { native } from '../../lib/native.js';
import { UsageError } from '../../lib/util/errors.js';
import { dequantRef, f16ToNumber, matmulRef, randomWeights, relErrors, zeroTermMagnitude } from '../reference/quant-reference.js';

const TOL = 1e-5;
const STORIES = '/work/shared/data/models/stories260K/model.safetensors';
const defaultThreads = native().getThreads();
afterAll(() => {
  native().setThreads(defaultThreads);
});

const layerCache = new Map<string, { layer: PackedLinear; w: Float64Array }>();
function layerFor(out: number, inF: number, bits: PackedBits, groupSize: number, symmetric: boolean) {
  const key = `${out}/${inF}/${bits}/${groupSize}/${symmetric}`;
  let e = layerCache.get(key);
  if (!e) {
    const w = randomWeights(out * inF, out * 7919 + inF * 31 + bits);
    const layer = quantizeLinearSync(w, out, inF, { bits, groupSize: groupSize === inF ? 'channel' : groupSize, symmetric });
    e = { layer, w: dequantRef(layer) };
    layerCache.set(key, e);
  }
  return e;
}

// Relative error < 1e-5 in two senses: norm-wise over the output (‖y − ref‖ / ‖ref‖; a single
// output can be a near-total cancellation, so this needs a few outputs), and per element against
// the size of the sums the kernel forms: Σ_k |x_k w_k| for the scalar and baseline kernels, plus
// Σ_k |x_k| s z for the fused SIMD GEMV, which computes s·(Σ q·x − z·Σx) (`zeroTerm`). That extra
// term matters only for rows where almost every code equals the zero point.
function expectClose(y: Float32Array, ref: ReturnType<typeof matmulRef>, what: string, zeroTerm?: Float64Array) {
  const mag = zeroTerm ? ref.mag.map((m, i) => m + zeroTerm[i]) : ref.mag;
  const e = relErrors(y, { y: ref.y, mag });
  expect(e.dot, `${what}: error / Σ|x·w|`).toBeLessThan(TOL);
  if (y.length >= 8) expect(e.norm, `${what}: ‖y − ref‖ / ‖ref‖`).toBeLessThan(TOL);
}

function groupsFor(inF: number): number[] {
  return [...new Set([32, 64, 128, inF])].filter((g) => inF % g === 0);
}

describe('qmatmul vs float64 reference', () => {
  for (const threads of [1, 2])
    for (const bits of PACKED_BITS)
      it(`${bits}-bit, ${threads} thread(s): odd shapes, every group size and batch path`, () => {
        native().setThreads(threads);
        for (const inF of [32, 96])
          for (const groupSize of groupsFor(inF))
            for (const out of [1, 3, 17, 118])
              for (const batch of [1, 2, 3, 4, 5, 7, 32, 33, 100]) {
                const symmetric = (out + batch) % 2 === 0; // both modes, spread over the shapes
                const { layer, w } = layerFor(out, inF, bits, groupSize, symmetric);
                const x = randomWeights(batch * inF, batch * 131 + out, 1);
                const ref = matmulRef(x, w, batch, out, inF);
                const what = `b${bits} g${groupSize} ${symmetric ? 'sym' : 'asym'} out ${out} in ${inF} batch ${batch}`;
                expectClose(qmatmulSync(layer, x, batch), ref, what, zeroTermMagnitude(layer, x, batch));
                expectClose(qmatmulSync(layer, x, batch, { impl: 'scalar' }), ref, `${what} scalar`);
              }
      });

  for (const bits of PACKED_BITS)
    it(`${bits}-bit, in = 4096: every group size, batch 1, 3, 7, 33, with bias`, () => {
      native().setThreads(2);
      for (const groupSize of groupsFor(4096))
        for (const symmetric of [false, true]) {
          const out = 17;
          const { layer, w } = layerFor(out, 4096, bits, groupSize, symmetric);
          const bias = randomWeights(out, 5, 1);
          for (const batch of [1, 3, 7, 33]) {
            const x = randomWeights(batch * 4096, batch + 17, 1);
            const ref = matmulRef(x, w, batch, out, 4096, bias);
            const what = `b${bits} g${groupSize} ${symmetric ? 'sym' : 'asym'} batch ${batch}`;
            expectClose(qmatmulSync(layer, x, batch, { bias }), ref, what, zeroTermMagnitude(layer, x, batch));
            expectClose(qmatmulSync(layer, x, batch, { bias, impl: 'scalar' }), ref, `${what} scalar`);
          }
        }
    });

  it('the async variant and an output buffer give the same numbers', async () => {
    const { layer } = layerFor(118, 96, 4, 32, false);
    const x = randomWeights(7 * 96, 3, 1);
    const y = qmatmulSync(layer, x, 7);
    expect(await qmatmul(layer, x, 7)).toEqual(y);
    const out = new Float32Array(7 * 118).fill(NaN);
    expect(qmatmulSync(layer, x, 7, { out })).toBe(out);
    expect(out).toEqual(y);
  });
});

describe('qmatmul argument errors', () => {
  const { layer } = layerFor(3, 64, 4, 32, false);
  const x = new Float32Array(64);

  it('TS validation names the parameter', () => {
    expect(() => qmatmulSync(layer, new Float32Array(63), 1)).toThrow(/^x: expected 64 elements/);
    expect(() => qmatmulSync(layer, x, 0)).toThrow(/^batch: /);
    expect(() => qmatmulSync(layer, x, 1, { bias: new Float32Array(2) })).toThrow(/^bias: expected 3 elements/);
    expect(() => qmatmulSync(layer, x, 1, { out: new Float32Array(4) })).toThrow(/^out: expected 3 elements/);
    expect(() => qmatmulSync({ ...layer, qweight: layer.qweight.subarray(1) }, x, 1)).toThrow(/^qweight: expected 96 elements/);
    expect(() => qmatmulSync({ ...layer, scales: new Uint16Array(5) }, x, 1)).toThrow(/^scales: expected 6 elements/);
    expect(() => qmatmulSync({ ...layer, zeros: undefined }, x, 1)).toThrow(/^zeros: expected a Uint8Array/);
    expect(() => qmatmulSync({ ...layer, inFeatures: 100 }, new Float32Array(100), 1)).toThrow(/^inFeatures: must be a positive multiple of 32/);
    expect(() => qmatmulSync({ ...layer, groupSize: 48 }, x, 1)).toThrow(/^groupSize: /);
    expect(() => qmatmulSync({ ...layer, bits: 5 as PackedBits }, x, 1)).toThrow(UsageError);
    expect(() => qmatmulSync(layer, x, 1, { impl: 'avx' as never })).toThrow(/^impl: /);
  });

  it('the addon throws (never crashes) on mismatched arrays', async () => {
    const y = new Float32Array(3);
    const n = native();
    expect(() => n.qmatmul({ ...layer, qweight: new Uint8Array(95) }, x, 1, null, y)).toThrow(RangeError);
    expect(() => n.qmatmul({ ...layer, zeros: new Uint8Array(1) }, x, 1, null, y)).toThrow(/zeros: expected 6 elements, got 1/);
    expect(() => n.qmatmul({ ...layer, zeros: undefined }, x, 1, null, y)).toThrow(TypeError);
    expect(() => n.qmatmul({ ...layer, scales: new Float32Array(6) as never }, x, 1, null, y)).toThrow(TypeError);
    expect(() => n.qmatmul(layer, new Float32Array(63), 1, null, y)).toThrow(/x: expected 64 elements/);
    expect(() => n.qmatmul(layer, x, 2, null, y)).toThrow(RangeError);
    expect(() => n.qmatmul(layer, x, 1, new Float32Array(1), y)).toThrow(/bias/);
    expect(() => n.qmatmul(layer, x, 1, null, new Float32Array(2))).toThrow(/y: expected 3 elements/);
    expect(() => n.qmatmul({ ...layer, inFeatures: 100 }, new Float32Array(100), 1, null, y)).toThrow(/inFeatures/);
    expect(() => n.qmatmul(null as never, x, 1, null, y)).toThrow(TypeError);
    expect(() => n.dequantizePacked(layer, new Float32Array(191))).toThrow(/dst: expected 192 elements/);
    expect(() => n.qmatmulAsync(layer, x, 1, null, new Float32Array(1))).toThrow(RangeError);
    expect(() => n.gemvF32(new Float32Array(5), 2, 3, new Float32Array(3), 1, null, new Float32Array(2))).toThrow(/w: expected 6/);
    expect(() => n.gemvF16(new Uint16Array(6), 2, 3, new Float32Array(2), 1, null, new Float32Array(2))).toThrow(/x: expected 3/);
  });
});

describe('f32 and f16 GEMV baselines', () => {
  for (const threads of [1, 2])
    it(`match the reference for odd shapes (${threads} thread(s))`, () => {
      native().setThreads(threads);
      for (const inF of [1, 7, 100, 172, 4096])
        for (const out of [1, 3, 17, 118])
          for (const batch of [1, 2, 7, 33]) {
            const w = randomWeights(out * inF, inF + out, 1);
            const x = randomWeights(batch * inF, batch, 1);
            const bias = randomWeights(out, 9, 1);
            const ref = matmulRef(x, w, batch, out, inF, bias);
            const what = `out ${out} in ${inF} batch ${batch}`;
            expectClose(gemvF32(w, out, inF, x, batch, { bias }), ref, `f32 ${what}`);
            expectClose(gemvF32(w, out, inF, x, batch, { bias, impl: 'scalar' }), ref, `f32 scalar ${what}`);
            const h = new Uint16Array(out * inF);
            native().fromF32(w, 1, new Uint8Array(h.buffer));
            const wh = Float64Array.from(h, f16ToNumber);
            const refh = matmulRef(x, wh, batch, out, inF, bias);
            expectClose(gemvF16(h, out, inF, x, batch, { bias }), refh, `f16 ${what}`);
            expectClose(gemvF16(h, out, inF, x, batch, { bias, impl: 'scalar' }), refh, `f16 scalar ${what}`);
          }
    });
});

describe.runIf(existsSync(STORIES))('real weights (stories260K)', () => {
  it('qmatmul on quantized attention and MLP weights matches the reference', () => {
    native().setThreads(2);
    const f = SafetensorsFile.open(STORIES);
    try {
      for (const name of ['model.layers.2.self_attn.q_proj.weight', 'model.layers.2.mlp.gate_proj.weight']) {
        const [out, inF] = f.info(name).shape;
        const w32 = f.readF32(name);
        for (const bits of [2, 3, 4, 8] as const) {
          const layer = quantizeLinearSync(w32, out, inF, { bits, groupSize: 32, method: 'mse' });
          const w = dequantRef(layer);
          for (const batch of [1, 5, 40]) {
            const x = randomWeights(batch * inF, batch, 1);
            const ref = matmulRef(x, w, batch, out, inF);
            expectClose(qmatmulSync(layer, x, batch), ref, `${name} b${bits} batch ${batch}`, zeroTermMagnitude(layer, x, batch));
          }
        }
      }
    } finally {
      f.close();
    }
  });
});
