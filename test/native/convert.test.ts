import { describe, expect, it } from 'vitest';

import { native, NativeDType } from '../../lib/native.js';

/** Independent IEEE half -> double decoder. */
function halfToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

describe('dtype conversion (native, SIMD and scalar tails)', () => {
  it('every one of the 65,536 f16 bit patterns converts exactly', () => {
    const h = new Uint16Array(65536).map((_, i) => i);
    const out = new Float32Array(65536);
    native().toF32(new Uint8Array(h.buffer), NativeDType.F16, out);
    for (let i = 0; i < 65536; i++) {
      const want = halfToNumber(i);
      if (Number.isNaN(want)) expect(Number.isNaN(out[i])).toBe(true);
      else expect(out[i]).toBe(want);
    }
  });
  it('bf16 is the top half of f32, odd lengths and unaligned offsets included', () => {
    const f = new Float32Array([1, -2.5, 3.140625, 1e-30, -0, 65504, 7, 8, 9, 10, 11]);
    const u32 = new Uint32Array(f.buffer);
    const buf = new Uint8Array(1 + 2 * f.length);
    const dv = new DataView(buf.buffer);
    for (let i = 0; i < f.length; i++) dv.setUint16(1 + 2 * i, u32[i] >>> 16, true);
    const out = new Float32Array(f.length);
    native().toF32(buf.subarray(1), NativeDType.BF16, out);
    for (let i = 0; i < f.length; i++) {
      const want = new Float32Array(new Uint32Array([(u32[i] >>> 16) << 16]).buffer)[0];
      expect(out[i]).toBe(want);
    }
  });
  it('f32 -> f16 rounds to nearest even and back', () => {
    const xs = new Float32Array([1, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 65504, 65520, 1e-8, -3.5, 2 ** -24, 2 ** -25 * 1.5]);
    const bytes = new Uint8Array(2 * xs.length);
    native().fromF32(xs, NativeDType.F16, bytes);
    const back = new Float32Array(xs.length);
    native().toF32(bytes, NativeDType.F16, back);
    expect([...back]).toEqual([1, 1, 1 + 2 ** -9, 65504, Infinity, 0, -3.5, 2 ** -24, 2 ** -24]);
  });
  it('counts NaN/Inf', () => {
    expect(native().countNonFinite(new Float32Array([1, NaN, Infinity, -Infinity, 0]))).toBe(3);
  });
  it('wrong argument types and short outputs throw instead of crashing', () => {
    const n = native();
    expect(() => n.toF32(new Uint8Array(8), NativeDType.F16, new Float64Array(4) as unknown as Float32Array)).toThrow(TypeError);
    expect(() => n.toF32(new Uint8Array(8), NativeDType.F16, new Float32Array(3))).toThrow(RangeError);
    expect(() => n.toF32(new Uint8Array(7), NativeDType.F16, new Float32Array(4))).toThrow(/multiple of the dtype size/);
    expect(() => n.toF32(new Uint8Array(8), 9 as NativeDType, new Float32Array(4))).toThrow(RangeError);
    expect(() => (n.toF32 as unknown as (...a: unknown[]) => void)('x', 0, 1)).toThrow(TypeError);
  });
  it('thread count can be set and restored', () => {
    const n = native();
    const before = n.getThreads();
    expect(n.setThreads(1)).toBe(1);
    expect(n.cpuInfo().threads).toBe(1);
    expect(n.setThreads(0)).toBe(n.cpuInfo().hardwareThreads > 0 ? n.getThreads() : 0);
    n.setThreads(before);
    expect(() => n.setThreads(-1)).toThrow(RangeError);
  });
});

describe('thread pool', () => {
  it('survives resizing after multi-threaded jobs (workers must not re-run a finished job)', () => {
    const n = native();
    const before = n.getThreads();
    const src = new Uint8Array(2 * (1 << 20));
    const dst = new Float32Array(1 << 20);
    for (const t of [2, 1, 2, 3, 1, 2]) {
      n.setThreads(t);
      n.toF32(src, NativeDType.F16, dst); // large enough to run on the pool
      expect(dst[12345]).toBe(0);
    }
    n.setThreads(before);
  });
});
