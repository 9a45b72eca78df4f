// Quantize, pack/unpack and dequantize against the float64 references in test/reference/.
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

import { SafetensorsFile } from '../../lib/io/safetensors.js';
import { PACKED_BITS, type PackedBits, maxCode } from '../../lib/kernels/packed-format.js';
import {
  type QuantizeOptions,
  type QuantizedCodes,
  dequantize,
  dequantizeAsync,
  packCodes,
  packQuantized,
  quantizeCodes,
  quantizeCodesAsync,
  quantizeLinear,
  quantizeLinearSync,
  unpackCodes,
} from '../../lib/kernels/quant.js';
import { native } from '../../lib/native.js';
import { UsageError } from '../../lib/util/errors.js';
import { dequantRef, f16ToNumber, packRef, randomCodes, randomWeights, unpackRef } from '../reference/quant-reference.js';

const STORIES = '/work/shared/data/models/stories260K/model.safetensors';

describe('pack / unpack', () => {
  it.each(PACKED_BITS)('%i-bit: the documented byte layout, and pack∘unpack is exact both ways', (bits) => {
    const rows = 3;
    const cols = 96;
    const codes = randomCodes(rows * cols, bits, 7 + bits);
    const q = packCodes(codes, rows, cols, bits);
    expect(q.length).toBe((rows * cols * bits) / 8);
    expect(q).toEqual(packRef(codes, rows, cols, bits));
    expect(unpackCodes(q, rows, cols, bits)).toEqual(codes);
    // every byte pattern is a valid block (3-bit included: dense), so unpack then pack is exact too
    const bytes = randomCodes(q.length, 8, 99 + bits);
    const c2 = unpackCodes(bytes, rows, cols, bits);
    expect(c2).toEqual(unpackRef(bytes, rows, cols, bits));
    expect(packCodes(c2, rows, cols, bits)).toEqual(bytes);
  });

  it('refuses codes that do not fit in the bit width', () => {
    const codes = new Uint8Array(32);
    codes[5] = 16;
    expect(() => packCodes(codes, 1, 32, 4)).toThrow(/codes: value 16 does not fit in 4 bits/);
    codes[5] = 4;
    expect(() => packCodes(codes, 1, 32, 2)).toThrow(RangeError);
  });

  it('refuses bad shapes and lengths with the parameter named', () => {
    expect(() => packCodes(new Uint8Array(100), 1, 100, 4)).toThrow(/cols: must be a multiple of 32/);
    expect(() => packCodes(new Uint8Array(63), 2, 32, 4)).toThrow(/codes: expected 64 elements/);
    expect(() => unpackCodes(new Uint8Array(15), 1, 32, 4)).toThrow(/qweight: expected 16 elements/);
    expect(() => packCodes(new Uint8Array(32), 1, 32, 5 as PackedBits)).toThrow(UsageError);
    // the native backstop: wrong lengths throw instead of writing out of bounds
    expect(() => native().packCodes(new Uint8Array(32), 1, 32, 4, new Uint8Array(8))).toThrow(RangeError);
    expect(() => native().unpackCodes(new Uint8Array(16), 1, 32, 4, new Uint8Array(31))).toThrow(RangeError);
    expect(() => native().packCodes(new Float32Array(32) as never, 1, 32, 4, new Uint8Array(16))).toThrow(TypeError);
  });
});

interface GroupCheck {
  maxNearestExcess: number; // max over values of |w − ŵ| − (distance to the nearest level), in units of s
  maxBoundExcess: number; // max of |w − ŵ| − analytic min/max bound, in units of s
  sse: number[]; // per group
}

/** Checks every group of q against w; codes come from packing/unpacking through the format. */
function checkGroups(w: Float32Array, q: QuantizedCodes): GroupCheck {
  const layer = packQuantized(q);
  const deq = dequantize(layer);
  const ref = dequantRef(layer);
  // dequantization is exact in f32: scale (11 bits) × integer (≤ 9 bits)
  for (let i = 0; i < ref.length; i++) if (deq[i] !== ref[i]) throw new Error(`dequantize differs at ${i}: ${deq[i]} vs ${ref[i]}`);
  const maxq = maxCode(q.bits);
  const ng = q.cols / q.groupSize;
  const out: GroupCheck = { maxNearestExcess: -Infinity, maxBoundExcess: -Infinity, sse: [] };
  for (let r = 0; r < q.rows; r++)
    for (let g = 0; g < ng; g++) {
      const s = f16ToNumber(q.scales[r * ng + g]);
      const z = q.symmetric ? 1 << (q.bits - 1) : q.zeros![r * ng + g];
      expect(z).toBeLessThanOrEqual(maxq);
      let mn = 0;
      let mx = 0;
      for (let k = 0; k < q.groupSize; k++) {
        const v = w[r * q.cols + g * q.groupSize + k];
        mn = Math.min(mn, v);
        mx = Math.max(mx, v);
      }
      // the unrounded scale of the min/max quantizer (range always contains 0)
      const se = q.symmetric ? (2 * Math.max(-mn, mx)) / maxq : (mx - mn) / maxq;
      let sse = 0;
      for (let k = 0; k < q.groupSize; k++) {
        const i = r * q.cols + g * q.groupSize + k;
        const code = q.codes[i];
        expect(code).toBeLessThanOrEqual(maxq);
        const err = Math.abs(w[i] - ref[i]);
        sse += err * err;
        let nearest = Infinity;
        for (let c = 0; c <= maxq; c++) nearest = Math.min(nearest, Math.abs(w[i] - s * (c - z)));
        out.maxNearestExcess = Math.max(out.maxNearestExcess, (err - nearest) / s);
        const bound = s / 2 + maxq * Math.abs(se - s);
        out.maxBoundExcess = Math.max(out.maxBoundExcess, (err - bound) / s);
      }
      out.sse.push(sse);
    }
  return out;
}

const METHODS = ['minmax', 'mse'] as const;
const GROUPS = [32, 64, 128, 'channel'] as const;

describe('quantize', () => {
  const rows = 5;
  const cols = 256;
  const w = randomWeights(rows * cols, 11);

  for (const bits of PACKED_BITS)
    for (const symmetric of [false, true])
      it(`${bits}-bit ${symmetric ? 'sym' : 'asym'}: every value at its nearest level; min/max within s/2 (+ fp16 scale rounding); MSE never worse`, () => {
        for (const groupSize of GROUPS) {
          const base: QuantizeOptions = { bits, groupSize, symmetric };
          const mm = quantizeCodes(w, rows, cols, { ...base, method: 'minmax' });
          const ms = quantizeCodes(w, rows, cols, { ...base, method: 'mse' });
          const a = checkGroups(w, mm);
          const b = checkGroups(w, ms);
          // round-to-nearest given (scale, zero), ties and f32 division aside
          expect(a.maxNearestExcess).toBeLessThan(1e-5);
          expect(b.maxNearestExcess).toBeLessThan(1e-5);
          // |w − ŵ| ≤ s/2 + maxq·|s_exact − s_fp16| for min/max
          expect(a.maxBoundExcess).toBeLessThan(1e-5);
          // the clipping search includes the full range, so it is never worse per group
          for (let i = 0; i < a.sse.length; i++) expect(b.sse[i]).toBeLessThanOrEqual(a.sse[i] * (1 + 1e-6) + 1e-30);
          if (bits <= 3) expect(b.sse.reduce((x, y) => x + y)).toBeLessThan(a.sse.reduce((x, y) => x + y));
        }
      });

  it('stores per-channel as groupSize = inFeatures, and asymmetric zeros only', () => {
    const q = quantizeCodes(w, rows, cols, { bits: 4, groupSize: 'channel' });
    expect(q.groupSize).toBe(cols);
    expect(q.scales.length).toBe(rows);
    expect(q.zeros?.length).toBe(rows);
    const s = quantizeCodes(w, rows, cols, { bits: 4, groupSize: 64, symmetric: true });
    expect(s.zeros).toBeUndefined();
    expect(s.scales.length).toBe(rows * 4);
  });

  it('represents zeros exactly and is deterministic', () => {
    const z = new Float32Array(64);
    z.set(randomWeights(32, 3), 32); // first group all zero
    for (const symmetric of [false, true]) {
      const q = quantizeCodes(z, 1, 64, { bits: 3, groupSize: 32, symmetric, method: 'mse' });
      const d = dequantize(packQuantized(q));
      expect(Array.from(d.subarray(0, 32))).toEqual(new Array(32).fill(0));
      const again = quantizeCodes(z, 1, 64, { bits: 3, groupSize: 32, symmetric, method: 'mse' });
      expect(again).toEqual(q);
    }
  });

  it('async and packed variants give the same result', async () => {
    const opts: QuantizeOptions = { bits: 3, groupSize: 64, method: 'mse' };
    const q = quantizeCodes(w, rows, cols, opts);
    expect(await quantizeCodesAsync(w, rows, cols, opts)).toEqual(q);
    const packed = packQuantized(q);
    expect(await quantizeLinear(w, rows, cols, opts)).toEqual(packed);
    expect(quantizeLinearSync(w, rows, cols, opts)).toEqual(packed);
    expect(await dequantizeAsync(packed)).toEqual(dequantize(packed));
    expect(dequantize(packed, { impl: 'scalar' })).toEqual(dequantize(packed));
  });

  it('refuses in % 32 != 0 and in % g != 0 with the named error', () => {
    expect(() => quantizeCodes(new Float32Array(100), 1, 100, { bits: 4, groupSize: 'channel' })).toThrow(
      /^inFeatures: must be a positive multiple of 32 \(the packed block size\), got 100$/,
    );
    expect(() => quantizeCodes(new Float32Array(96), 1, 96, { bits: 4, groupSize: 64 })).toThrow(
      /^inFeatures: must be a multiple of groupSize 64, got 96$/,
    );
    expect(() => quantizeCodes(new Float32Array(96), 1, 96, { bits: 4, groupSize: 48 })).toThrow(/^groupSize: /);
    expect(() => quantizeCodes(new Float32Array(96), 1, 96, { bits: 6 as PackedBits, groupSize: 32 })).toThrow(/^bits: /);
    expect(() => quantizeCodes(new Float32Array(95), 1, 96, { bits: 4, groupSize: 32 })).toThrow(/^w: expected 96 elements/);
    expect(() => quantizeCodes(new Float32Array(96), 1, 96, { bits: 4, groupSize: 32, method: 'gptq' as never })).toThrow(/^method: /);
    expect(() => quantizeCodes(new Float32Array(96), 1, 96, { bits: 4, groupSize: 32, clipMaxShrink: 1 })).toThrow(/^clipMaxShrink: /);
    // the native backstop checks too
    const opts = { bits: 4, groupSize: 32, symmetric: false, method: 0 as const, clipGrid: 100, clipMaxShrink: 0.8 };
    expect(() => native().quantizeCodes(new Float32Array(96), 1, 96, opts, new Uint8Array(96), new Uint16Array(2), new Uint8Array(3))).toThrow(/scales: expected 3 elements, got 2/);
    expect(() => native().quantizeCodes(new Float32Array(96), 1, 96, opts, new Uint8Array(96), new Uint16Array(3), null)).toThrow(TypeError);
    expect(() => native().quantizeCodes(new Float32Array(100), 1, 100, opts, new Uint8Array(100), new Uint16Array(3), new Uint8Array(3))).toThrow(/inFeatures/);
  });

  it('refuses NaN and Inf weights', async () => {
    const bad = randomWeights(64, 5);
    bad[40] = NaN;
    expect(() => quantizeCodes(bad, 1, 64, { bits: 4, groupSize: 32 })).toThrow(/NaN or Inf/);
    bad[40] = Infinity;
    await expect(quantizeLinear(bad, 1, 64, { bits: 4, groupSize: 32 })).rejects.toThrow(/NaN or Inf/);
  });
});

describe.runIf(existsSync(STORIES))('real weights (stories260K)', () => {
  it('quantizes every linear with in % 32 == 0 within the bounds, and refuses down_proj (in = 172)', () => {
    const f = SafetensorsFile.open(STORIES);
    try {
      let checked = 0;
      for (const name of f.names()) {
        if (!/layers\.[01]\..*(proj)\.weight$/.test(name)) continue;
        const [out, inF] = f.info(name).shape;
        const w = f.readF32(name);
        if (inF % 32 !== 0) {
          expect(() => quantizeCodes(w, out, inF, { bits: 4, groupSize: 32 })).toThrow(/^inFeatures: must be a positive multiple of 32/);
          continue;
        }
        for (const bits of [2, 4] as const) {
          const mm = checkGroups(w, quantizeCodes(w, out, inF, { bits, groupSize: 32 }));
          const ms = checkGroups(w, quantizeCodes(w, out, inF, { bits, groupSize: 32, method: 'mse' }));
          expect(mm.maxBoundExcess).toBeLessThan(1e-5);
          expect(ms.maxNearestExcess).toBeLessThan(1e-5);
          expect(ms.sse.reduce((a, b) => a + b)).toBeLessThanOrEqual(mm.sse.reduce((a, b) => a + b));
        }
        checked++;
      }
      expect(checked).toBe(12); // q, k, v, o, gate, up of layers 0 and 1
    } finally {
      f.close();
    }
  });
});
