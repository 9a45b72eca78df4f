// The packed format's numbers agree between TypeScript (lib/kernels/packed-format.ts), the native
// core (packed_format.h, through the binding) and the table in docs/format.md.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import {
  PACKED_BITS,
  bitsPerWeight,
  checkPackedShape,
  packedBlockBytes,
  packedShapeError,
  packedSizes,
  symmetricZero,
} from '../../lib/kernels/packed-format.js';
import { native } from '../../lib/native.js';
import { UsageError } from '../../lib/util/errors.js';

const GROUPS = [32, 64, 128, 'channel'] as const;

describe('packed format constants', () => {
  it('block sizes are dense: 32 codes x bits / 8 bytes', () => {
    expect(PACKED_BITS.map(packedBlockBytes)).toEqual([8, 12, 16, 32]);
  });

  it('native and TypeScript agree for every (bits, group, mode)', () => {
    for (const inF of [32, 96, 4096])
      for (const bits of PACKED_BITS)
        for (const g of GROUPS) {
          const group = g === 'channel' ? inF : g;
          if (inF % group !== 0) continue;
          for (const sym of [false, true]) {
            const n = native().packedFormatInfo(bits, group, sym, inF);
            expect(n.blockCodes).toBe(32);
            expect(n.blockBytes).toBe(packedBlockBytes(bits));
            expect(n.rowBytes).toBe(packedSizes(1, inF, bits, group, sym).rowBytes);
            expect(n.bitsPerWeight).toBe(bitsPerWeight(bits, group, sym));
            expect(n.symmetricZero).toBe(symmetricZero(bits));
          }
        }
  });

  it('bits per weight include scales and zeros', () => {
    expect(bitsPerWeight(4, 128, false)).toBe(4.1875);
    expect(bitsPerWeight(4, 128, true)).toBe(4.125);
    expect(bitsPerWeight(3, 32, false)).toBe(3.75);
    expect(bitsPerWeight(2, 64, true)).toBe(2.25);
    const sz = packedSizes(4096, 4096, 4, 128, false);
    expect((sz.totalBytes * 8) / (4096 * 4096)).toBe(4.1875);
  });

  it('docs/format.md table matches bitsPerWeight', () => {
    const doc = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'format.md'), 'utf8');
    const row = /^\|\s*(\d)\s*\|\s*(32|64|128|per-channel, in = (\d+))\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|/;
    let rows = 0;
    for (const line of doc.split('\n')) {
      const m = row.exec(line);
      if (!m) continue;
      const bits = Number(m[1]) as 2 | 3 | 4 | 8;
      const group = m[3] ? Number(m[3]) : Number(m[2]);
      expect(Number(m[4]), line).toBeCloseTo(bitsPerWeight(bits, group, true), 4);
      expect(Number(m[5]), line).toBeCloseTo(bitsPerWeight(bits, group, false), 4);
      rows++;
    }
    expect(rows).toBe(16);
  });
});

describe('packed shape refusals', () => {
  const cases: [number, number, number, number, RegExp][] = [
    [4, 100, 4, 32, /^inFeatures: must be a positive multiple of 32/],
    [4, 172, 4, 'channel' as never, /^inFeatures: must be a positive multiple of 32/],
    [4, 96, 4, 64, /^inFeatures: must be a multiple of groupSize 64, got 96$/],
    [4, 192, 4, 128, /^inFeatures: must be a multiple of groupSize 128, got 192$/],
    [4, 128, 4, 16, /^groupSize: expected 32, 64, 128 or inFeatures/],
    [4, 128, 5, 32, /^bits: expected 2, 3, 4 or 8, got 5$/],
    [0, 128, 4, 32, /^outFeatures: must be positive$/],
  ];

  it.each(cases)('out %i in %i bits %i group %s', (out, inF, bits, group, msg) => {
    const g = group === ('channel' as never) ? inF : group;
    const err = packedShapeError(out, inF, bits, g);
    expect(err).toMatch(msg);
    expect(() => checkPackedShape(out, inF, bits, g)).toThrow(UsageError);
    if (out > 0) {
      // the native check words it the same way
      expect(() => native().packedFormatInfo(bits, g, false, inF)).toThrow(err);
    }
  });

  it('accepts per-channel and every listed group', () => {
    expect(packedShapeError(3, 4096, 3, 4096)).toBeUndefined();
    for (const g of [32, 64, 128]) expect(packedShapeError(1, 4096, 2, g)).toBeUndefined();
  });
});
