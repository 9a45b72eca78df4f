/**
 * ggml block formats: native quantizers (C++) decoded by the independent TypeScript
 * dequantizers. Checks geometry against the format description, hand-built blocks against the
 * decode formulas, Q8_0 bit-exactly against a TS reference, and the round-trip error of each
 * type against its expected size.
 */
import { describe, expect, it } from 'vitest';

import { dequantize, halfToFloat, IQ4_NL_VALUES } from '../../lib/export/ggml-dequant.js';
import { fallbackType, GGML_TYPE_NAMES, ggmlBitsPerWeight, ggmlRowBytes, ggmlTraits, parseBitsTypes, type GgmlTypeName } from '../../lib/export/ggml-types.js';
import { native } from '../../lib/native.js';
import { UsageError } from '../../lib/util/errors.js';
import { randn, rng } from '../reference/quant-reference.js';

function gaussian(n: number, seed: number, scale = 0.02): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => randn(r) * scale);
}

async function roundTrip(type: GgmlTypeName, x: Float32Array, rows: number, cols: number): Promise<{ y: Float32Array; bytes: Uint8Array }> {
  const bytes = new Uint8Array(rows * ggmlRowBytes(type, cols));
  await native().ggmlQuantizeAsync(ggmlTraits(type).id, x, rows, cols, bytes);
  return { y: dequantize(type, bytes, rows, cols), bytes };
}

function relRmse(x: Float32Array, y: Float32Array): number {
  let e = 0;
  let s = 0;
  for (let i = 0; i < x.length; i++) {
    e += (x[i] - y[i]) ** 2;
    s += x[i] ** 2;
  }
  return Math.sqrt(e / s);
}

const half = (v: number) => {
  // exact for the small values used below (powers of two and small integers)
  const b = Buffer.alloc(2);
  const exp = Math.floor(Math.log2(Math.abs(v)));
  const man = Math.round((Math.abs(v) / 2 ** exp - 1) * 1024);
  b.writeUInt16LE((v < 0 ? 0x8000 : 0) | ((exp + 15) << 10) | man);
  return [b[0], b[1]];
};

describe('ggml type geometry', () => {
  it('TS traits agree with the addon and with the bits/weight of the format description', () => {
    for (const name of GGML_TYPE_NAMES) {
      const t = ggmlTraits(name);
      expect(native().ggmlTypeInfo(t.id)).toEqual({ name, blockSize: t.blockSize, blockBytes: t.blockBytes });
    }
    // "Effectively" bits per weight as the ggml docs state them.
    expect(ggmlBitsPerWeight('Q2_K')).toBeCloseTo(2.625, 10);
    expect(ggmlBitsPerWeight('Q3_K')).toBeCloseTo(3.4375, 10);
    expect(ggmlBitsPerWeight('Q4_K')).toBeCloseTo(4.5, 10);
    expect(ggmlBitsPerWeight('Q8_0')).toBeCloseTo(8.5, 10);
    expect(ggmlBitsPerWeight('Q5_0')).toBeCloseTo(5.5, 10);
    expect(ggmlBitsPerWeight('IQ4_NL')).toBeCloseTo(4.5, 10);
    expect(native().ggmlTypeInfo(7)).toBeNull();
  });

  it('falls back like llama.cpp for rows that do not fit the block', () => {
    expect(fallbackType('Q4_K', 512)).toBe('Q4_K');
    expect(fallbackType('Q2_K', 64)).toBe('IQ4_NL');
    expect(fallbackType('Q3_K', 288)).toBe('IQ4_NL');
    expect(fallbackType('Q4_K', 128)).toBe('Q5_0');
    expect(fallbackType('Q4_K', 172)).toBe('F16');
    expect(fallbackType('Q8_0', 172)).toBe('F16');
    expect(fallbackType('Q8_0', 96)).toBe('Q8_0');
  });

  it('parses --types and names the bad entry', () => {
    expect(parseBitsTypes('4=q8_0, 2=Q3_K')).toMatchObject({ 2: 'Q3_K', 3: 'Q3_K', 4: 'Q8_0', 8: 'Q8_0', 16: 'F16' });
    expect(() => parseBitsTypes('4=Q9_K')).toThrow(/unknown ggml type "Q9_K"/);
    expect(() => parseBitsTypes('5=Q4_K')).toThrow(UsageError);
    expect(() => parseBitsTypes('Q4_K')).toThrow(/entries like 4=Q4_K/);
  });

  it('the addon refuses widths that are not a multiple of the block and wrong buffer sizes', () => {
    const x = new Float32Array(2 * 128);
    expect(() => native().ggmlQuantize(ggmlTraits('Q4_K').id, x, 2, 128, new Uint8Array(2 * 72))).toThrow(RangeError);
    expect(() => native().ggmlQuantize(ggmlTraits('Q8_0').id, x, 2, 128, new Uint8Array(10))).toThrow(/dst: expected 272 bytes/);
    expect(() => native().ggmlQuantize(99, x, 2, 128, new Uint8Array(10))).toThrow(/no quantizer/);
  });
});

describe('TS dequantizers decode hand-built blocks by the format formulas', () => {
  it('halfToFloat', () => {
    expect(halfToFloat(0x3c00)).toBe(1);
    expect(halfToFloat(0xc000)).toBe(-2);
    expect(halfToFloat(0x7bff)).toBe(65504);
    expect(halfToFloat(0x0001)).toBe(2 ** -24);
    expect(halfToFloat(0x7c00)).toBe(Infinity);
    expect(halfToFloat(0x7e00)).toBeNaN();
  });

  it('Q4_K: 6-bit scales/mins of sub-blocks 0..7 in the 12-byte packing, nibbles by 64-chunks', () => {
    const b = new Uint8Array(144);
    b.set(half(0.5), 0); // d
    b.set(half(0.25), 2); // dmin
    const sc = [1, 2, 3, 63, 37, 5, 0, 60];
    const m = [4, 0, 7, 1, 42, 63, 9, 2];
    for (let j = 0; j < 4; j++) {
      b[4 + j] = sc[j] | ((sc[j + 4] >> 4) << 6);
      b[4 + j + 4] = m[j] | ((m[j + 4] >> 4) << 6);
      b[4 + j + 8] = (sc[j + 4] & 15) | ((m[j + 4] & 15) << 4);
    }
    const q = Array.from({ length: 256 }, (_, i) => (i * 7 + 3) % 16);
    for (let c = 0; c < 4; c++) for (let l = 0; l < 32; l++) b[16 + 32 * c + l] = q[64 * c + l] | (q[64 * c + 32 + l] << 4);
    const y = dequantize('Q4_K', b, 1, 256);
    for (let i = 0; i < 256; i++) expect(y[i]).toBe(0.5 * sc[i >> 5] * q[i] - 0.25 * m[i >> 5]);
  });

  it('Q3_K: signed 6-bit scales (+32), high bit in hmask, low 2 bits in Q2_K order', () => {
    const b = new Uint8Array(110);
    b.set(half(0.125), 108);
    const s = Array.from({ length: 16 }, (_, j) => ((j * 11) % 64) - 32); // -32..31
    for (let j = 0; j < 16; j++) {
      const u = s[j] + 32;
      b[96 + (j % 8)] |= j < 8 ? u & 15 : (u & 15) << 4;
      b[96 + 8 + (j % 4)] |= (u >> 4) << (2 * Math.floor(j / 4));
    }
    const q = Array.from({ length: 256 }, (_, i) => ((i * 5) % 8) - 4); // -4..3
    for (let i = 0; i < 256; i++) {
      const u = q[i] + 4;
      if (u > 3) b[i % 32] |= 1 << Math.floor(i / 32);
      const r = i & 127;
      b[32 + 32 * (i >> 7) + (r & 31)] |= (u & 3) << (2 * (r >> 5));
    }
    const y = dequantize('Q3_K', b, 1, 256);
    for (let i = 0; i < 256; i++) expect(y[i]).toBe(0.125 * s[i >> 4] * q[i]);
  });

  it('Q2_K, Q5_0, IQ4_NL, Q8_0', () => {
    const b2 = new Uint8Array(84);
    for (let j = 0; j < 16; j++) b2[j] = (j % 16) | (((15 - j) % 16) << 4);
    const q2 = Array.from({ length: 256 }, (_, i) => (i * 3 + 1) % 4);
    for (let i = 0; i < 256; i++) {
      const r = i & 127;
      b2[16 + 32 * (i >> 7) + (r & 31)] |= q2[i] << (2 * (r >> 5));
    }
    b2.set(half(2), 80);
    b2.set(half(0.5), 82);
    const y2 = dequantize('Q2_K', b2, 1, 256);
    for (let i = 0; i < 256; i++) expect(y2[i]).toBe(2 * (i >> 4) * q2[i] - 0.5 * (15 - (i >> 4)));

    const b5 = new Uint8Array(22);
    b5.set(half(0.5), 0);
    const q5 = Array.from({ length: 32 }, (_, i) => (i * 9) % 32);
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      b5[6 + j] = (q5[j] & 15) | ((q5[j + 16] & 15) << 4);
      qh |= (q5[j] >> 4) << j;
      qh |= (q5[j + 16] >> 4) << (j + 16);
    }
    b5.set([qh & 255, (qh >>> 8) & 255, (qh >>> 16) & 255, qh >>> 24], 2);
    expect(Array.from(dequantize('Q5_0', b5, 1, 32))).toEqual(q5.map((q) => 0.5 * (q - 16)));

    const bn = new Uint8Array(18);
    bn.set(half(0.25), 0);
    for (let j = 0; j < 16; j++) bn[2 + j] = j | ((15 - j) << 4);
    const yn = dequantize('IQ4_NL', bn, 1, 32);
    for (let j = 0; j < 16; j++) {
      expect(yn[j]).toBe(0.25 * IQ4_NL_VALUES[j]);
      expect(yn[j + 16]).toBe(0.25 * IQ4_NL_VALUES[15 - j]);
    }

    const b8 = new Uint8Array(34);
    b8.set(half(4), 0);
    for (let j = 0; j < 32; j++) b8[2 + j] = (j * 8 - 128) & 255;
    expect(Array.from(dequantize('Q8_0', b8, 1, 32))).toEqual(Array.from({ length: 32 }, (_, j) => 4 * (j * 8 - 128)));
  });
});

/** ggml's Q8_0 rule in float32 arithmetic: d = amax/127, q = roundf(x · (1/d)), d stored as fp16. */
function q8_0Reference(x: Float32Array): Uint8Array {
  const f = Math.fround;
  const out = new Uint8Array((x.length / 32) * 34);
  const f16 = new Uint8Array(2);
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[32 * b + j]));
    const d = f(amax / 127);
    const id = d !== 0 ? f(1 / d) : 0;
    native().fromF32(Float32Array.of(d), 1, f16);
    out.set(f16, 34 * b);
    for (let j = 0; j < 32; j++) {
      const v = f(x[32 * b + j] * id);
      out[34 * b + 2 + j] = (Math.sign(v) * Math.round(Math.abs(v))) & 255; // roundf: ties away from zero
    }
  }
  return out;
}

describe('quantize → dequantize', () => {
  it('Q8_0 is bit-identical to the TS reference (incl. zero blocks and exact ties)', async () => {
    const x = gaussian(64 * 96, 3);
    x.fill(0, 0, 32); // an all-zero block
    for (let j = 0; j < 32; j++) x[32 + j] = (j - 16) * 0.5 + (j % 2 ? 0.25 : 0); // ties at ×0.5 steps
    x[32 + 31] = 63.5; // amax → d = 0.5
    const { bytes } = await roundTrip('Q8_0', x, 64, 96);
    expect(Buffer.from(bytes).equals(Buffer.from(q8_0Reference(x)))).toBe(true);
  });

  // Expected relative RMS error on Gaussian weights, measured over 256×1024 weights with
  // this quantizer and ~10% headroom; the ratios between types follow their bits (each
  // extra bit about halves the error).
  const EXPECTED: [GgmlTypeName, number][] = [
    ['Q8_0', 0.006],
    ['Q5_0', 0.047],
    ['IQ4_NL', 0.083],
    ['Q4_K', 0.08],
    ['Q3_K', 0.166],
    ['Q2_K', 0.33],
  ];
  it('each type stays within its expected error (and the errors order by bits)', async () => {
    const rows = 256;
    const cols = 1024;
    const x = gaussian(rows * cols, 11);
    const measured: Record<string, number> = {};
    for (const [t, bound] of EXPECTED) {
      const { y } = await roundTrip(t, x, rows, cols);
      measured[t] = relRmse(x, y);
      expect(measured[t], t).toBeLessThan(bound);
    }
    expect(measured.Q8_0 * 4).toBeLessThan(measured.Q5_0);
    expect(measured.Q4_K * 1.5).toBeLessThan(measured.Q3_K);
    expect(measured.Q3_K * 1.5).toBeLessThan(measured.Q2_K);
    console.log('ggml round-trip relative RMSE (Gaussian, 256×1024):', Object.entries(measured).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', '));
  });

  it('every element is within the block grid: K-quant errors stay inside one quantization step of the block range', async () => {
    // Per 256-block bound: a b-bit affine grid over [min(x,0), max(x)] has step range/(2^b - 1);
    // after the 6/4-bit scale quantization the fit may clip a little, so allow 1.5 steps.
    const x = gaussian(8 * 512, 5);
    for (const [t, bits] of [['Q4_K', 4], ['Q3_K', 3], ['Q2_K', 2]] as const) {
      const { y } = await roundTrip(t, x, 8, 512);
      for (let b = 0; b < x.length / 256; b++) {
        const blk = x.subarray(256 * b, 256 * b + 256);
        const range = Math.max(...blk) - Math.min(0, ...blk);
        const step = range / (2 ** bits - 1);
        for (let i = 0; i < 256; i++) expect(Math.abs(blk[i] - y[256 * b + i])).toBeLessThan(1.5 * step);
      }
    }
  });

  it('all-zero rows decode to zeros; constant and one-sided rows stay finite and close', async () => {
    for (const t of ['Q8_0', 'Q5_0', 'IQ4_NL', 'Q4_K', 'Q3_K', 'Q2_K'] as const) {
      const zeros = await roundTrip(t, new Float32Array(256), 1, 256);
      expect(zeros.y.every((v) => v === 0), t).toBe(true);
      const c = await roundTrip(t, new Float32Array(256).fill(0.75), 1, 256);
      for (const v of c.y) expect(Math.abs(v - 0.75), t).toBeLessThan(0.75 * 0.1);
      const pos = Float32Array.from({ length: 256 }, (_, i) => 1 + i / 256);
      const p = await roundTrip(t, pos, 1, 256);
      expect(p.y.every(Number.isFinite), t).toBe(true);
      expect(relRmse(pos, p.y), t).toBeLessThan(0.2);
    }
  });

  it('async (threaded over rows) equals sync, and results are deterministic', async () => {
    const x = gaussian(37 * 512, 9);
    for (const t of ['Q4_K', 'Q2_K', 'IQ4_NL'] as const) {
      const a = new Uint8Array(37 * ggmlRowBytes(t, 512));
      const b = new Uint8Array(a.length);
      native().ggmlQuantize(ggmlTraits(t).id, x, 37, 512, a);
      await native().ggmlQuantizeAsync(ggmlTraits(t).id, x, 37, 512, b);
      expect(Buffer.from(a).equals(Buffer.from(b)), t).toBe(true);
    }
  });
});
