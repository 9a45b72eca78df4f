import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { asBytes, MAX_HEADER_BYTES, SafetensorsFile, writeSafetensors } from '../../lib/io/safetensors.js';
import { FileError, FormatError, UnsupportedError } from '../../lib/util/errors.js';
import { dataPath } from '../../lib/util/data-dir.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir();
let n = 0;

/** Build a safetensors file from a header object and a data section, byte by byte. */
function craft(header: unknown, data: Uint8Array | number = 0, opts: { lengthOverride?: bigint; rawHeader?: Buffer } = {}): string {
  const h = opts.rawHeader ?? Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(opts.lengthOverride ?? BigInt(h.length));
  const body = typeof data === 'number' ? Buffer.alloc(data) : Buffer.from(data);
  const p = join(dir, `f${n++}.safetensors`);
  writeFileSync(p, Buffer.concat([len, h, body]));
  return p;
}

function expectFormatError(p: string, code: string, text: RegExp): FormatError {
  try {
    SafetensorsFile.open(p);
  } catch (err) {
    expect(err).toBeInstanceOf(FormatError);
    const fe = err as FormatError;
    expect(fe.code).toBe(code);
    expect(fe.message).toContain(p);
    expect(fe.message).toMatch(text);
    return fe;
  }
  throw new Error(`expected ${code} for ${p}`);
}

describe('safetensors reader: real files', () => {
  it('reads the shipped stories260K header lazily and its tensors exactly', () => {
    const p = dataPath('models/stories260K/model.safetensors');
    const f = SafetensorsFile.open(p);
    expect(f.tensors.size).toBe(47);
    const emb = f.info('model.embed_tokens.weight');
    expect(emb.dtype).toBe('F32');
    expect(emb.shape).toEqual([512, 64]);
    expect(f.metadata.rope_layout).toBe('hf_rotate_half');
    // Independent read of the same bytes with plain fs + DataView.
    const whole = readFileSync(p);
    const x = f.readF32('model.norm.weight');
    const info = f.info('model.norm.weight');
    const dv = new DataView(whole.buffer, whole.byteOffset + info.offset, info.byteLength);
    for (let i = 0; i < x.length; i++) expect(x[i]).toBe(dv.getFloat32(4 * i, true));
    f.close();
  });
});

describe('safetensors reader: every validation rule has its named error', () => {
  const good = { a: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] } };

  it('accepts a well-formed crafted file', () => {
    const f = SafetensorsFile.open(craft(good, new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer)));
    expect([...f.readF32('a')]).toEqual([1, 2, 3, 4]);
    f.close();
  });
  it('missing file -> FileError', () => {
    expect(() => SafetensorsFile.open(join(dir, 'nope.safetensors'))).toThrow(FileError);
    expect(() => SafetensorsFile.open(join(dir, 'nope.safetensors'))).toThrow(/file not found/);
  });
  it('file shorter than the 8-byte length', () => {
    const p = join(dir, 'short.safetensors');
    writeFileSync(p, Buffer.from([1, 2, 3]));
    expectFormatError(p, 'E_TRUNCATED', /truncated file/);
  });
  it('header length of 2^60 is refused before any allocation', () => {
    expectFormatError(craft(good, 16, { lengthOverride: 1n << 60n }), 'E_HEADER_LENGTH', /exceeds/);
  });
  it('header length just over the limit', () => {
    expectFormatError(craft(good, 16, { lengthOverride: BigInt(MAX_HEADER_BYTES + 1) }), 'E_HEADER_LENGTH', /exceeds/);
  });
  it('header length past the end of the file', () => {
    expectFormatError(craft(good, 0, { lengthOverride: 5000n }), 'E_HEADER_LENGTH', /past the end/);
  });
  it('bad JSON', () => {
    expectFormatError(craft('{"a": {"dtype": "F32",'), 'E_HEADER_JSON', /not valid JSON/);
  });
  it('header that is not an object', () => {
    expectFormatError(craft('[1,2,3]'), 'E_HEADER_JSON', /does not start with/);
  });
  it('invalid UTF-8 in the header', () => {
    expectFormatError(craft(null, 0, { rawHeader: Buffer.from([0x7b, 0xff, 0xfe, 0x7d]) }), 'E_HEADER_JSON', /UTF-8/);
  });
  it('unknown dtype names the tensor', () => {
    const fe = expectFormatError(craft({ w: { dtype: 'F12', shape: [1], data_offsets: [0, 4] } }, 4), 'E_DTYPE', /tensor "w": unknown dtype "F12"/);
    expect(fe.detail).toContain('"w"');
  });
  it('shape × dtype size must equal the byte length', () => {
    expectFormatError(craft({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 16] } }, 16), 'E_SIZE', /12 bytes but data_offsets span 16/);
  });
  it('a tensor claiming 10^15 elements', () => {
    expectFormatError(craft({ w: { dtype: 'F32', shape: [1e15], data_offsets: [0, 16] } }, 16), 'E_SIZE', /tensor "w"/);
  });
  it('negative or non-integer shapes and offsets', () => {
    expectFormatError(craft({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4), 'E_HEADER_SCHEMA', /shape/);
    expectFormatError(craft({ w: { dtype: 'F32', shape: [1], data_offsets: [-4, 0] } }, 4), 'E_HEADER_SCHEMA', /data_offsets/);
    expectFormatError(craft({ w: { dtype: 'F32', shape: [1], data_offsets: [0] } }, 4), 'E_HEADER_SCHEMA', /data_offsets/);
  });
  it('offsets outside the data section (truncated data)', () => {
    expectFormatError(craft(good, 12), 'E_OFFSETS', /run past the data section/);
  });
  it('overlapping offsets', () => {
    const h = {
      a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
    };
    expectFormatError(craft(h, 12), 'E_OVERLAP', /"b" overlaps tensor "a"/);
  });
  it('gaps between tensors and trailing bytes', () => {
    const h = {
      a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
      b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] },
    };
    expectFormatError(craft(h, 12), 'E_GAP', /gap of 4 unused bytes before tensor "b"/);
    expectFormatError(craft(good, 20), 'E_GAP', /4 trailing bytes/);
  });
  it('__metadata__ must hold strings', () => {
    expectFormatError(craft({ __metadata__: { x: 1 } }), 'E_HEADER_SCHEMA', /__metadata__/);
  });
  it('a truncated copy of a real checkpoint fails with a named error', () => {
    const whole = readFileSync(dataPath('models/stories260K/model.safetensors'));
    const p = join(dir, 'truncated.safetensors');
    writeFileSync(p, whole.subarray(0, whole.length - 100));
    expectFormatError(p, 'E_OFFSETS', /run past the data section/);
    const p2 = join(dir, 'truncated-header.safetensors');
    writeFileSync(p2, whole.subarray(0, 200));
    expectFormatError(p2, 'E_HEADER_LENGTH', /past the end/);
  });
  it('integer dtypes cannot be read as f32 (UnsupportedError names tensor and dtype)', () => {
    const f = SafetensorsFile.open(craft({ q: { dtype: 'U8', shape: [4], data_offsets: [0, 4] } }, 4));
    expect(() => f.readF32('q')).toThrow(UnsupportedError);
    expect(() => f.readF32('q')).toThrow(/tensor "q".*U8/);
    expect([...f.readBytes('q')]).toEqual([0, 0, 0, 0]);
    f.close();
  });
});

describe('safetensors writer', () => {
  it('round-trips every float dtype and integer dtypes, 8-byte aligned, atomically', () => {
    const p = join(dir, 'written.safetensors');
    const f32 = new Float32Array([1.5, -2, 3.25, 0]);
    const f16 = new Uint16Array([0x3c00, 0xc000, 0x7bff]); // 1, -2, 65504
    const bf16 = new Uint16Array([0x3f80, 0x4049]); // 1, 3.140625
    const u8 = new Uint8Array([7, 8, 9]);
    writeSafetensors(
      p,
      [
        { name: 'a', dtype: 'F32', shape: [2, 2], data: asBytes(f32) },
        { name: 'h', dtype: 'F16', shape: [3], data: asBytes(f16) },
        { name: 'b', dtype: 'BF16', shape: [2], data: () => asBytes(bf16) },
        { name: 'q', dtype: 'U8', shape: [3], data: u8 },
      ],
      { format: 'pt' },
    );
    const f = SafetensorsFile.open(p);
    expect((8 + f.headerLength) % 8).toBe(0);
    expect(f.metadata).toEqual({ format: 'pt' });
    expect([...f.readF32('a')]).toEqual([1.5, -2, 3.25, 0]);
    expect([...f.readF32('h')]).toEqual([1, -2, 65504]);
    expect([...f.readF32('b')]).toEqual([1, 3.140625]);
    expect([...f.readBytes('q')]).toEqual([7, 8, 9]);
    f.close();
    expect(readdirSync(dir).filter((x) => x.includes('.tmp-'))).toEqual([]);
  });
  it('a failing write leaves neither the destination nor a temp file', () => {
    const p = join(dir, 'failed.safetensors');
    expect(() =>
      writeSafetensors(p, [
        { name: 'a', dtype: 'F32', shape: [2], data: new Uint8Array(8) },
        { name: 'b', dtype: 'F32', shape: [2], data: () => { throw new Error('producer died'); } },
      ]),
    ).toThrow(/producer died/);
    expect(readdirSync(dir).filter((x) => x.startsWith('failed') || x.includes('failed.safetensors.tmp'))).toEqual([]);
  });
  it('refuses data whose size does not match the shape', () => {
    expect(() => writeSafetensors(join(dir, 'bad.safetensors'), [{ name: 'a', dtype: 'F32', shape: [3], data: new Uint8Array(8) }])).toThrow(/8 bytes given/);
  });
});

describe('streaming writer', () => {
  it('refuses out-of-order tensors and incomplete commits, leaving nothing behind', async () => {
    const { SafetensorsWriter } = await import('../../lib/io/safetensors.js');
    const p = join(dir, 'stream.safetensors');
    const specs = [
      { name: 'a', dtype: 'F32' as const, shape: [1] },
      { name: 'b', dtype: 'F32' as const, shape: [1] },
    ];
    const w = SafetensorsWriter.create(p, specs);
    expect(() => w.write('b', new Uint8Array(4))).toThrow(/out of order/);
    w.write('a', new Uint8Array(4));
    w.write('b', new Uint8Array(2)); // half of b: parts are allowed
    expect(() => w.write('b', new Uint8Array(4))).toThrow(/6 bytes given, shape × dtype needs 4/);
    expect(() => w.commit()).toThrow(/only 1 of 2/);
    w.abort();
    expect(readdirSync(dir).filter((x) => x.includes('stream.safetensors'))).toEqual([]);
    const w2 = SafetensorsWriter.create(p, specs);
    w2.write('a', asBytes(new Float32Array([1])));
    w2.write('b', asBytes(new Float32Array([2])));
    w2.commit();
    const f = SafetensorsFile.open(p);
    expect([...f.readF32('b')]).toEqual([2]);
    f.close();
  });
});

describe('reads into reused memory (readF32Into, readRowsF32 / readBytes with a destination)', () => {
  // Larger than the 4 MiB read scratch, so every dtype is converted in several chunks.
  const N16 = 2_500_000, N64 = 600_000;
  const f16Bits = Uint16Array.from({ length: N16 }, (_, i) => i % 65536); // every f16 pattern: subnormals, ±Inf, NaN
  const bf16Bits = Uint16Array.from({ length: N16 }, (_, i) => (i * 7919) % 65536);
  const f64 = Float64Array.from({ length: N64 }, (_, i) => Math.sin(i) * 10 ** ((i % 20) - 10));
  const f32 = Float32Array.from({ length: 1000 }, (_, i) => i / 7 - 50);
  const p = join(dir, 'chunks.safetensors');
  writeSafetensors(p, [
    { name: 'h', dtype: 'F16', shape: [N16 / 1000, 1000], data: asBytes(f16Bits) },
    { name: 'b', dtype: 'BF16', shape: [N16], data: asBytes(bf16Bits) },
    { name: 'd', dtype: 'F64', shape: [N64], data: asBytes(f64) },
    { name: 'f', dtype: 'F32', shape: [10, 100], data: asBytes(f32) },
    { name: 'q', dtype: 'U8', shape: [4], data: new Uint8Array(4) },
  ]);
  // Independent decoders (the definitions of the formats), not the native converter under test.
  const halfToF32 = (h: number) => {
    const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, m = h & 1023;
    if (e === 0) return s * m * 2 ** -24;
    if (e === 31) return m ? NaN : s * Infinity;
    return s * (1 + m / 1024) * 2 ** (e - 15);
  };
  const dv = new DataView(new ArrayBuffer(4));
  const bf16ToF32 = (b: number) => (dv.setUint32(0, b << 16), dv.getFloat32(0));
  const same = (got: Float32Array, want: (i: number) => number) => {
    for (let i = 0; i < got.length; i++) {
      const w = Math.fround(want(i));
      if (!(Object.is(got[i], w) || (Number.isNaN(got[i]) && Number.isNaN(w)))) return `index ${i}: ${got[i]} vs ${w}`;
    }
    return 'equal';
  };

  it('converts every dtype exactly across chunk boundaries, overwriting the whole destination', () => {
    const f = SafetensorsFile.open(p);
    const buf = new Float32Array(N16).fill(12345);
    expect(f.readF32Into('h', buf)).toBe(buf);
    expect(same(buf, (i) => halfToF32(f16Bits[i]))).toBe('equal');
    f.readF32Into('b', buf); // the same memory, reused
    expect(same(buf, (i) => bf16ToF32(bf16Bits[i]))).toBe('equal');
    const d = f.readF32Into('d', new Float32Array(N64).fill(7));
    expect(same(d, (i) => f64[i])).toBe('equal');
    expect(same(f.readF32('h'), (i) => halfToF32(f16Bits[i]))).toBe('equal');
    f.close();
  });
  it('refuses a destination of the wrong length, and dtypes without an f32 conversion', () => {
    const f = SafetensorsFile.open(p);
    expect(() => f.readF32Into('f', new Float32Array(999))).toThrow(RangeError);
    expect(() => f.readF32Into('f', new Float32Array(999))).toThrow(/tensor "f": has 1000 values, the destination array 999/);
    expect(() => f.readF32Into('q', new Float32Array(4))).toThrow(UnsupportedError);
    expect(() => f.readRowsF32('f', [1, 2], new Float32Array(201))).toThrow(/2 rows of 100 values, the destination array has 201/);
    expect(() => f.readBytes('q', new Uint8Array(3))).toThrow(/has 4 bytes, the destination array 3/);
    f.close();
  });
  it('rows and raw bytes land in the given arrays', () => {
    const f = SafetensorsFile.open(p);
    const rows = new Float32Array(300).fill(-1);
    expect(f.readRowsF32('f', [9, 0, 4], rows)).toBe(rows);
    expect([...rows]).toEqual([...f32.subarray(900, 1000), ...f32.subarray(0, 100), ...f32.subarray(400, 500)]);
    const hrows = f.readRowsF32('h', [2499], new Float32Array(1000));
    expect(same(hrows, (i) => halfToF32(f16Bits[2_499_000 + i]))).toBe('equal');
    const bytes = new Uint8Array(4000);
    expect(f.readBytes('f', bytes)).toBe(bytes);
    expect([...new Float32Array(bytes.buffer)]).toEqual([...f32]);
    f.close();
  });
  it('a checkpoint reads a tied-weight alias into the given array', async () => {
    const { Checkpoint } = await import('../../lib/io/checkpoint.js');
    const d = join(dir, 'tied');
    mkdirSync(d);
    writeSafetensors(join(d, 'model.safetensors'), [{ name: 'lm_head.weight', dtype: 'F32', shape: [10, 100], data: asBytes(f32) }], {
      'model.embed_tokens.weight': 'lm_head.weight',
    });
    const ck = Checkpoint.open(d);
    const out = new Float32Array(1000);
    expect([...ck.readF32Into('model.embed_tokens.weight', out)]).toEqual([...f32]);
    ck.close();
  });
});
