/**
 * A small GGUF v2/v3 reader (little-endian): metadata, tensor table and tensor bytes. lieq uses
 * it to read back what it exported (tests, dequantized round trips); the independent parser
 * in tests is @huggingface/gguf.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

import { FileError, FormatError } from '../util/errors.js';
import { dequantize } from './ggml-dequant.js';
import { ggmlTraits, type GgmlTypeName } from './ggml-types.js';
import { GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GgufValueType } from './gguf-writer.js';

export type GgufValue = number | bigint | boolean | string | GgufValue[];

export interface GgufTensorInfo {
  name: string;
  dims: number[];
  type: GgmlTypeName;
  /** Absolute file offset of the data. */
  offset: number;
  bytes: number;
}

export interface GgufFile {
  path: string;
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  alignment: number;
  dataOffset: number;
  readTensorBytes(name: string): Uint8Array;
  /** Dequantized f32 data in ggml order (dims[1] rows of dims[0]). */
  readTensorF32(name: string): Float32Array;
}

/** ggml tensors have at most 4 dimensions (GGML_MAX_DIMS); nested metadata arrays deeper
 *  than this are refused (a crafted file could otherwise overflow the stack). */
const MAX_DIMS = 4;
const MAX_ARRAY_DEPTH = 16;

class Cursor {
  pos = 0;
  private depth = 0;
  constructor(private readonly b: Buffer, private readonly file: string) {}
  need(n: number): void {
    if (this.pos + n > this.b.length) throw new FormatError(this.file, `truncated GGUF header (needed ${n} bytes at ${this.pos})`);
  }
  u8(): number { this.need(1); return this.b.readUInt8(this.pos++); }
  u32(): number { this.need(4); const v = this.b.readUInt32LE(this.pos); this.pos += 4; return v; }
  u64(): number {
    this.need(8);
    const v = this.b.readBigUInt64LE(this.pos);
    this.pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError(this.file, `64-bit value ${v} at ${this.pos - 8} is too large`);
    return Number(v);
  }
  str(): string {
    const n = this.u64();
    this.need(n);
    const s = this.b.toString('utf8', this.pos, this.pos + n);
    this.pos += n;
    return s;
  }
  value(type: number): GgufValue {
    const b = this.b;
    const take = <T>(n: number, f: () => T): T => { this.need(n); const v = f(); this.pos += n; return v; };
    switch (type) {
      case GgufValueType.UINT8: return this.u8();
      case GgufValueType.INT8: return take(1, () => b.readInt8(this.pos));
      case GgufValueType.UINT16: return take(2, () => b.readUInt16LE(this.pos));
      case GgufValueType.INT16: return take(2, () => b.readInt16LE(this.pos));
      case GgufValueType.UINT32: return this.u32();
      case GgufValueType.INT32: return take(4, () => b.readInt32LE(this.pos));
      case GgufValueType.FLOAT32: return take(4, () => b.readFloatLE(this.pos));
      case GgufValueType.BOOL: return this.u8() !== 0;
      case GgufValueType.STRING: return this.str();
      case GgufValueType.UINT64: return take(8, () => b.readBigUInt64LE(this.pos));
      case GgufValueType.INT64: return take(8, () => b.readBigInt64LE(this.pos));
      case GgufValueType.FLOAT64: return take(8, () => b.readDoubleLE(this.pos));
      case GgufValueType.ARRAY: {
        const itemType = this.u32();
        const n = this.u64();
        // Every item takes at least one byte: a count beyond the bytes left is a lie, refused
        // before anything is allocated for it.
        if (n > this.b.length - this.pos) throw new FormatError(this.file, `array of ${n} items at ${this.pos - 12} is longer than the header`);
        if (++this.depth > MAX_ARRAY_DEPTH) throw new FormatError(this.file, `arrays nested deeper than ${MAX_ARRAY_DEPTH} at ${this.pos - 12}`);
        const out: GgufValue[] = [];
        for (let i = 0; i < n; i++) out.push(this.value(itemType));
        this.depth--;
        return out;
      }
      default: throw new FormatError(this.file, `unknown GGUF value type ${type} at ${this.pos - 4}`);
    }
  }
}

export function readGguf(path: string): GgufFile {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new FileError(path, `cannot open (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err });
  }
  try {
    const size = fstatSync(fd).size;
    // Headers of small models fit easily; a vocabulary of 150K tokens is a few MB.
    const head = Buffer.alloc(Math.min(size, 64 * 2 ** 20));
    readSync(fd, head, 0, head.length, 0);
    const c = new Cursor(head, path);
    if (c.u32() !== GGUF_MAGIC) throw new FormatError(path, 'not a GGUF file (bad magic)');
    const version = c.u32();
    if (version !== 2 && version !== 3) throw new FormatError(path, `GGUF version ${version} is not supported (2 or 3)`);
    const nTensors = c.u64();
    const nKv = c.u64();
    const metadata = new Map<string, GgufValue>();
    for (let i = 0; i < nKv; i++) {
      const key = c.str();
      metadata.set(key, c.value(c.u32()));
    }
    const alignment = Number(metadata.get('general.alignment') ?? GGUF_DEFAULT_ALIGNMENT);
    const raw: { name: string; dims: number[]; type: number; offset: number }[] = [];
    for (let i = 0; i < nTensors; i++) {
      const name = c.str();
      const nd = c.u32();
      if (nd < 1 || nd > MAX_DIMS) throw new FormatError(path, `tensor "${name}" has ${nd} dimensions (1 to ${MAX_DIMS})`);
      const dims = Array.from({ length: nd }, () => c.u64());
      raw.push({ name, dims, type: c.u32(), offset: c.u64() });
    }
    const dataOffset = Math.ceil(c.pos / alignment) * alignment;
    const tensors = raw.map((t) => {
      let tr: ReturnType<typeof ggmlTraits>;
      try {
        tr = ggmlTraits(t.type as never);
      } catch {
        throw new FormatError(path, `tensor "${t.name}" has an unknown ggml type ${t.type}`);
      }
      const type = tr.name;
      const rows = t.dims.slice(1).reduce((a, b) => a * b, 1);
      if (t.dims[0] % tr.blockSize !== 0) throw new FormatError(path, `tensor "${t.name}": row length ${t.dims[0]} is not a multiple of ${type}'s block of ${tr.blockSize}`);
      const bytes = (rows * t.dims[0] * tr.blockBytes) / tr.blockSize;
      if (!Number.isSafeInteger(bytes) || !Number.isSafeInteger(t.offset)) throw new FormatError(path, `tensor "${t.name}" claims ${bytes} bytes at offset ${t.offset}`);
      if (dataOffset + t.offset + bytes > size) throw new FormatError(path, `tensor "${t.name}" runs past the end of the file`);
      return { name: t.name, dims: t.dims, type, offset: dataOffset + t.offset, bytes };
    });
    closeSync(fd);
    const byName = new Map(tensors.map((t) => [t.name, t]));
    const info = (name: string) => {
      const t = byName.get(name);
      if (!t) throw new FormatError(path, `no tensor "${name}"`);
      return t;
    };
    const readTensorBytes = (name: string) => {
      const t = info(name);
      const b = Buffer.alloc(t.bytes);
      const f = openSync(path, 'r');
      try {
        readSync(f, b, 0, t.bytes, t.offset);
      } finally {
        closeSync(f);
      }
      return new Uint8Array(b.buffer, b.byteOffset, b.length);
    };
    return {
      path,
      version,
      metadata,
      tensors,
      alignment,
      dataOffset,
      readTensorBytes,
      readTensorF32: (name) => {
        const t = info(name);
        return dequantize(t.type, readTensorBytes(name), t.dims.slice(1).reduce((a, b) => a * b, 1), t.dims[0]);
      },
    };
  } catch (err) {
    try {
      closeSync(fd);
    } catch {
      /* closed */
    }
    throw err;
  }
}
