/**
 * Hand-made hostile GGUF headers: each must be refused with a FormatError naming the file,
 * before anything is allocated for what the header claims.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { readGguf } from '../../lib/export/gguf-reader.js';
import { GGUF_MAGIC, GgufValueType } from '../../lib/export/gguf-writer.js';
import { FormatError } from '../../lib/util/errors.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('lieq-gguf-hostile-');

class Bytes {
  private parts: Buffer[] = [];
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.parts.push(b);
    return this;
  }
  u64(v: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(v);
    this.parts.push(b);
    return this;
  }
  str(s: string): this {
    this.u64(BigInt(Buffer.byteLength(s)));
    this.parts.push(Buffer.from(s));
    return this;
  }
  pad(n: number): this {
    this.parts.push(Buffer.alloc(n));
    return this;
  }
  done(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function header(nTensors: bigint, nKv: bigint): Bytes {
  return new Bytes().u32(GGUF_MAGIC).u32(3).u64(nTensors).u64(nKv);
}

function expectRefused(name: string, bytes: Buffer, message: RegExp): void {
  const file = join(dir, `${name}.gguf`);
  writeFileSync(file, bytes);
  let err: unknown;
  try {
    readGguf(file);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(FormatError);
  expect((err as Error).message).toContain(file);
  expect((err as Error).message).toMatch(message);
}

describe('hostile GGUF headers', () => {
  it('an array claiming 2^50 items', () => {
    expectRefused('huge-array', header(0n, 1n).str('k').u32(GgufValueType.ARRAY).u32(GgufValueType.UINT8).u64(2n ** 50n).pad(64).done(), /longer than the header/);
  });
  it('arrays nested 100 deep', () => {
    const b = header(0n, 1n).str('k').u32(GgufValueType.ARRAY);
    for (let i = 0; i < 100; i++) b.u32(GgufValueType.ARRAY).u64(1n);
    expectRefused('deep', b.pad(64).done(), /nested deeper/);
  });
  it('a tensor with 5 dimensions, or none', () => {
    expectRefused('dims5', header(1n, 0n).str('t').u32(5).pad(64).done(), /5 dimensions/);
    expectRefused('dims0', header(1n, 0n).str('t').u32(0).pad(64).done(), /0 dimensions/);
  });
  it('an unknown ggml type', () => {
    expectRefused('type', header(1n, 0n).str('t').u32(1).u64(32n).u32(999).u64(0n).pad(64).done(), /unknown ggml type 999/);
  });
  it('a row length that is not a whole number of blocks', () => {
    // type 8 = Q8_0 (blocks of 32)
    expectRefused('rows', header(1n, 0n).str('t').u32(1).u64(33n).u32(8).u64(0n).pad(64).done(), /not a multiple/);
  });
  it('a tensor that runs past the end of the file', () => {
    expectRefused('past-end', header(1n, 0n).str('t').u32(2).u64(32n).u64(2n ** 40n).u32(8).u64(0n).pad(64).done(), /past the end|claims/);
  });
});
