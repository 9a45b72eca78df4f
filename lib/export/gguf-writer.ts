/**
 * GGUF v3 writer (format: ggml docs/gguf.md). Layout, little-endian:
 *   "GGUF" u32 version=3, u64 tensor_count, u64 kv_count,
 *   kv_count × { string key, u32 value_type, value },
 *   tensor_count × { string name, u32 n_dims, u64 ne[n_dims] (ne[0] = row width), u32 ggml_type,
 *                    u64 offset (relative to the data section, multiple of the alignment) },
 *   zero padding to the alignment, then the tensor data, each tensor padded to the alignment.
 * Strings are u64 length + UTF-8 bytes. The alignment is `general.alignment` (default 32).
 *
 * Streaming and atomic through the writer SafetensorsWriter also uses (lib/io/ordered-file-writer.ts): the whole header (every tensor's type and
 * size is known up front) is written first, then each tensor's bytes in the declared order,
 * possibly in several parts; the file goes to a temp path and is renamed on commit().
 */
import { OrderedFileWriter } from '../io/ordered-file-writer.js';
import { FormatError } from '../util/errors.js';
import { ggmlRowBytes, ggmlTraits, type GgmlTypeName } from './ggml-types.js';

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** gguf_metadata_value_type. */
export const GgufValueType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;
export type GgufScalarType = Exclude<keyof typeof GgufValueType, 'ARRAY'>;

export type GgufKv =
  | { key: string; type: GgufScalarType; value: number | bigint | boolean | string }
  | { key: string; type: 'ARRAY'; itemType: GgufScalarType; values: ArrayLike<number> | readonly (string | boolean | bigint)[] };

export interface GgufTensorSpec {
  name: string;
  /** ggml order: dims[0] is the row width (fastest varying); an HF [out, in] matrix is [in, out]. */
  dims: number[];
  type: GgmlTypeName;
}

export function tensorBytes(t: GgufTensorSpec): number {
  const rows = t.dims.slice(1).reduce((a, b) => a * b, 1);
  return rows * ggmlRowBytes(t.type, t.dims[0]);
}

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

/** Serialises values into a growing buffer. */
class ByteSink {
  private buf = Buffer.alloc(1 << 16);
  length = 0;
  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = Buffer.alloc(size);
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }
  u8(v: number): void {
    this.ensure(1);
    this.buf.writeUInt8(v, this.length);
    this.length += 1;
  }
  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32LE(v, this.length);
    this.length += 4;
  }
  u64(v: number | bigint): void {
    this.ensure(8);
    this.buf.writeBigUInt64LE(BigInt(v), this.length);
    this.length += 8;
  }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.bytes(b);
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  scalar(type: GgufScalarType, v: number | bigint | boolean | string, where: string): void {
    const fail = (): never => {
      throw new FormatError(where, `value ${String(v)} does not fit GGUF type ${type}`);
    };
    this.ensure(8);
    const b = this.buf;
    const o = this.length;
    switch (type) {
      case 'UINT8': b.writeUInt8(Number(v), o); this.length += 1; break;
      case 'INT8': b.writeInt8(Number(v), o); this.length += 1; break;
      case 'UINT16': b.writeUInt16LE(Number(v), o); this.length += 2; break;
      case 'INT16': b.writeInt16LE(Number(v), o); this.length += 2; break;
      case 'UINT32': b.writeUInt32LE(Number(v), o); this.length += 4; break;
      case 'INT32': b.writeInt32LE(Number(v), o); this.length += 4; break;
      case 'FLOAT32': b.writeFloatLE(Number(v), o); this.length += 4; break;
      case 'BOOL': if (typeof v !== 'boolean') fail(); b.writeUInt8(v ? 1 : 0, o); this.length += 1; break;
      case 'UINT64': b.writeBigUInt64LE(BigInt(v as number), o); this.length += 8; break;
      case 'INT64': b.writeBigInt64LE(BigInt(v as number), o); this.length += 8; break;
      case 'FLOAT64': b.writeDoubleLE(Number(v), o); this.length += 8; break;
      case 'STRING': if (typeof v !== 'string') fail(); this.str(v as string); break;
    }
  }
  view(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

/** The serialised header (everything before the tensor data) and each tensor's data offset. */
export function encodeGgufHeader(kvs: GgufKv[], tensors: GgufTensorSpec[], where = 'gguf'): { header: Buffer; offsets: number[]; alignment: number } {
  const alignKv = kvs.find((k) => k.key === 'general.alignment');
  const alignment = alignKv && alignKv.type !== 'ARRAY' ? Number(alignKv.value) : GGUF_DEFAULT_ALIGNMENT;
  if (!Number.isInteger(alignment) || alignment <= 0 || alignment % 8 !== 0)
    throw new FormatError(where, `general.alignment must be a positive multiple of 8, got ${alignment}`);
  const keys = new Set<string>();
  const s = new ByteSink();
  s.u32(GGUF_MAGIC);
  s.u32(GGUF_VERSION);
  s.u64(tensors.length);
  s.u64(kvs.length);
  for (const kv of kvs) {
    if (keys.has(kv.key)) throw new FormatError(where, `duplicate metadata key "${kv.key}"`);
    keys.add(kv.key);
    s.str(kv.key);
    if (kv.type === 'ARRAY') {
      s.u32(GgufValueType.ARRAY);
      s.u32(GgufValueType[kv.itemType]);
      s.u64(kv.values.length);
      for (let i = 0; i < kv.values.length; i++) s.scalar(kv.itemType, (kv.values as ArrayLike<number | string | boolean | bigint>)[i], `${where} ${kv.key}[${i}]`);
    } else {
      s.u32(GgufValueType[kv.type]);
      s.scalar(kv.type, kv.value, `${where} ${kv.key}`);
    }
  }
  const names = new Set<string>();
  const offsets: number[] = [];
  let offset = 0;
  for (const t of tensors) {
    if (names.has(t.name)) throw new FormatError(where, `duplicate tensor name "${t.name}"`);
    names.add(t.name);
    if (Buffer.byteLength(t.name) > 64) throw new FormatError(where, `tensor name "${t.name}" is longer than GGUF's 64 bytes`);
    if (t.dims.length < 1 || t.dims.length > 4 || t.dims.some((d) => !Number.isSafeInteger(d) || d <= 0))
      throw new FormatError(where, `tensor "${t.name}": dims must be 1 to 4 positive integers, got [${t.dims.join(', ')}]`);
    s.str(t.name);
    s.u32(t.dims.length);
    for (const d of t.dims) s.u64(d);
    s.u32(ggmlTraits(t.type).id);
    s.u64(offset);
    offsets.push(offset);
    offset = alignUp(offset + tensorBytes(t), alignment);
  }
  const pad = alignUp(s.length, alignment) - s.length;
  s.bytes(new Uint8Array(pad));
  return { header: Buffer.from(s.view()), offsets, alignment };
}

/** The GGUF header encoding on top of the shared streaming atomic file (lib/io/ordered-file-writer.ts). */
export class GgufWriter extends OrderedFileWriter {
  private readonly tensors: GgufTensorSpec[];

  private constructor(dest: string, header: Uint8Array, tensors: GgufTensorSpec[], alignment: number) {
    const entries = tensors.map((t) => ({ name: t.name, bytes: tensorBytes(t), sizeFrom: `${t.type} [${t.dims.join(', ')}]` }));
    super(dest, header, entries, { alignment, mkdir: true });
    this.tensors = tensors;
  }

  static create(dest: string, kvs: GgufKv[], tensors: GgufTensorSpec[]): GgufWriter {
    const { header, alignment } = encodeGgufHeader(kvs, tensors, dest);
    return new GgufWriter(dest, header, tensors, alignment);
  }

  /** The tensor the writer expects next, or undefined when all are written. */
  get expected(): GgufTensorSpec | undefined {
    return this.tensors[this.nextIndex];
  }
}
