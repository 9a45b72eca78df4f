/**
 * safetensors reader and writer.
 *
 * Layout: u64-LE header length N, N bytes of UTF-8 JSON header, then the data section.
 * The header maps tensor names to {dtype, shape, data_offsets: [begin, end]} (offsets relative
 * to the data section) plus an optional "__metadata__" string map.
 *
 * The reader parses the header only and reads tensors lazily by offset (never the whole file).
 * Validation follows the format's rules; each violation is a FormatError naming the file and,
 * where there is one, the tensor. The writer streams tensors into a temp file and renames it
 * into place, so a crash never leaves a partial file at the destination.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

import { FileError, FormatError, UnsupportedError } from '../util/errors.js';
import { OrderedFileWriter, type OrderedEntry } from './ordered-file-writer.js';
import { jsonSnippet } from '../util/json-snippet.js';
import { native, NativeDType } from '../native.js';

/** Every dtype the safetensors format defines, with its element size in bytes. */
export const DTYPE_SIZES = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
} as const;
export type Dtype = keyof typeof DTYPE_SIZES;

/** Header larger than this is refused before it is read (the largest real headers are ~1 MB). */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface TensorInfo {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** Absolute byte offset of the tensor's data in the file. */
  offset: number;
  byteLength: number;
  /** File the tensor lives in. */
  file: string;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function isDtype(s: unknown): s is Dtype {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_SIZES, s);
}

/** An open safetensors file: header parsed and validated, data read on demand. */
export class SafetensorsFile {
  readonly path: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly fileSize: number;
  readonly headerLength: number;
  private fd: number | undefined;

  private constructor(path: string, fd: number, fileSize: number, headerLength: number,
                      metadata: Record<string, string>, tensors: Map<string, TensorInfo>) {
    this.path = path;
    this.fd = fd;
    this.fileSize = fileSize;
    this.headerLength = headerLength;
    this.metadata = metadata;
    this.tensors = tensors;
  }

  /** Open and validate. Throws FileError (missing/unreadable) or FormatError (bad contents). */
  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new FileError(path, code === 'ENOENT' ? 'file not found' : `cannot open (${code ?? String(err)})`, { cause: err });
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new FileError(path, 'not a regular file');
      const { size } = st;
      const parsed = parseHeader(path, fd, size);
      return new SafetensorsFile(path, fd, size, parsed.headerLength, parsed.metadata, parsed.tensors);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new FormatError(this.path, `no tensor named "${name}"`, { code: 'E_NO_TENSOR' });
    return t;
  }

  /** Raw bytes of a tensor (reads exactly the tensor's range) into a fresh Buffer, or into `out` (exactly byteLength bytes). */
  readBytes(name: string): Buffer;
  readBytes<T extends Uint8Array>(name: string, out: T): T;
  readBytes(name: string, out?: Uint8Array): Uint8Array {
    const t = this.info(name);
    if (out && out.byteLength !== t.byteLength)
      throw new RangeError(`${this.path}: tensor "${name}" has ${t.byteLength} bytes, the destination array ${out.byteLength}`);
    const buf = out ?? Buffer.allocUnsafe(t.byteLength);
    let done = 0;
    while (done < t.byteLength) {
      const n = readSync(this.handle(), buf, done, t.byteLength - done, t.offset + done);
      if (n === 0) throw new FormatError(this.path, `tensor "${name}": unexpected end of file`);
      done += n;
    }
    return buf;
  }

  /**
   * Rows of a 2-D (or higher) tensor as f32 [rows.length, cols], read one row at a time by
   * offset: an embedding lookup for a few thousand token ids reads only those rows. `out`
   * (exactly rows.length × cols values) lets a caller reuse one block buffer.
   */
  readRowsF32(name: string, rows: ArrayLike<number>, out?: Float32Array): Float32Array {
    const t = this.info(name);
    if (t.shape.length < 2) throw new FormatError(this.path, `tensor "${name}" is not a matrix`);
    const cols = numel(t.shape.slice(1));
    const es = DTYPE_SIZES[t.dtype];
    const rowBytes = cols * es;
    out ??= new Float32Array(rows.length * cols);
    if (out.length !== rows.length * cols)
      throw new RangeError(`${this.path}: tensor "${name}": ${rows.length} rows of ${cols} values, the destination array has ${out.length}`);
    const buf = Buffer.allocUnsafe(rowBytes);
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i];
      if (!Number.isInteger(r) || r < 0 || r >= t.shape[0]) throw new RangeError(`${this.path}: tensor "${name}": row ${r} outside [0, ${t.shape[0]})`);
      let done = 0;
      while (done < rowBytes) {
        const n = readSync(this.handle(), buf, done, rowBytes - done, t.offset + r * rowBytes + done);
        if (n === 0) throw new FormatError(this.path, `tensor "${name}": unexpected end of file`);
        done += n;
      }
      bytesToF32Into(buf, t.dtype, out.subarray(i * cols, (i + 1) * cols), `${this.path}: tensor "${name}"`);
    }
    return out;
  }

  /** A tensor converted to f32 (F32/F16/BF16 in native code; F64 in JS) in a new array. */
  readF32(name: string): Float32Array {
    return this.readF32Into(name, new Float32Array(numel(this.info(name).shape)));
  }

  /**
   * A tensor converted to f32 into `out` (exactly its element count), read through one shared
   * scratch buffer of READ_CHUNK_BYTES: nothing proportional to the tensor is allocated, so a
   * caller that reuses `out` reads a model layer by layer in bounded memory (V8 frees the
   * memory of dropped arrays only when it next collects, which can be a layer too late).
   */
  readF32Into(name: string, out: Float32Array): Float32Array {
    const t = this.info(name);
    const what = `${this.path}: tensor "${name}"`;
    const n = numel(t.shape);
    if (out.length !== n) throw new RangeError(`${what}: has ${n} values, the destination array ${out.length}`);
    checkF32Convertible(t.dtype, what);
    const es = DTYPE_SIZES[t.dtype];
    const scratch = readScratch();
    const chunk = Math.floor(scratch.byteLength / es);
    for (let i = 0; i < n; i += chunk) {
      const m = Math.min(chunk, n - i);
      const bytes = scratch.subarray(0, m * es);
      let done = 0;
      while (done < bytes.byteLength) {
        const r = readSync(this.handle(), bytes, done, bytes.byteLength - done, t.offset + i * es + done);
        if (r === 0) throw new FormatError(this.path, `tensor "${name}": unexpected end of file`);
        done += r;
      }
      bytesToF32Into(bytes, t.dtype, out.subarray(i, i + m), what);
    }
    return out;
  }

  close(): void {
    if (this.fd !== undefined) {
      closeSync(this.fd);
      this.fd = undefined;
    }
  }

  private handle(): number {
    if (this.fd === undefined) throw new FileError(this.path, 'file was closed');
    return this.fd;
  }
}

/** Bytes read at a time by readF32Into (one buffer for the process: reads are synchronous). */
export const READ_CHUNK_BYTES = 4 * 2 ** 20;
let scratch: Buffer | undefined;
function readScratch(): Buffer {
  return (scratch ??= Buffer.allocUnsafeSlow(READ_CHUNK_BYTES));
}

function checkF32Convertible(dtype: Dtype, what: string): void {
  if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16' && dtype !== 'F64')
    throw new UnsupportedError(`${what}: dtype ${dtype} cannot be converted to f32 (supported: F32, F16, BF16, F64)`);
}

/** Convert raw tensor bytes of a float dtype to a new Float32Array. */
export function bytesToF32(bytes: Uint8Array, dtype: Dtype, what: string): Float32Array {
  checkF32Convertible(dtype, what);
  return bytesToF32Into(bytes, dtype, new Float32Array(bytes.byteLength / DTYPE_SIZES[dtype]), what);
}

/** Convert raw tensor bytes of a float dtype into `out` (bytes.byteLength / element size values). */
export function bytesToF32Into(bytes: Uint8Array, dtype: Dtype, out: Float32Array, what: string): Float32Array {
  const n = bytes.byteLength / DTYPE_SIZES[dtype];
  if (out.length !== n) throw new RangeError(`${what}: ${n} values to convert, the destination array has ${out.length}`);
  switch (dtype) {
    case 'F32':
      native().toF32(bytes, NativeDType.F32, out);
      return out;
    case 'F16':
      native().toF32(bytes, NativeDType.F16, out);
      return out;
    case 'BF16':
      native().toF32(bytes, NativeDType.BF16, out);
      return out;
    case 'F64': {
      const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let i = 0; i < n; i++) out[i] = dv.getFloat64(8 * i, true);
      return out;
    }
    default:
      throw new UnsupportedError(`${what}: dtype ${dtype} cannot be converted to f32 (supported: F32, F16, BF16, F64)`);
  }
}

function readExactly(path: string, fd: number, length: number, position: number, what: string): Buffer {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, position + done);
    if (n === 0) throw new FormatError(path, `truncated file: ${what} ends early`, { code: 'E_TRUNCATED' });
    done += n;
  }
  return buf;
}

function parseHeader(path: string, fd: number, fileSize: number) {
  if (fileSize < 8) throw new FormatError(path, `truncated file: ${fileSize} bytes, need at least 8 for the header length`, { code: 'E_TRUNCATED' });
  const lenBig = readExactly(path, fd, 8, 0, 'header length').readBigUInt64LE(0);
  if (lenBig > BigInt(MAX_HEADER_BYTES))
    throw new FormatError(path, `header length ${lenBig} exceeds the ${MAX_HEADER_BYTES}-byte limit (corrupt or not a safetensors file)`, { code: 'E_HEADER_LENGTH' });
  const headerLength = Number(lenBig);
  if (headerLength < 2) throw new FormatError(path, `header length ${headerLength} is too small for a JSON object`, { code: 'E_HEADER_LENGTH' });
  if (8 + headerLength > fileSize)
    throw new FormatError(path, `header length ${headerLength} runs past the end of the ${fileSize}-byte file (truncated?)`, { code: 'E_HEADER_LENGTH' });
  const raw = readExactly(path, fd, headerLength, 8, 'header');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(raw);
  } catch (err) {
    throw new FormatError(path, 'header is not valid UTF-8', { cause: err, code: 'E_HEADER_JSON' });
  }
  if (!text.startsWith('{'))
    throw new FormatError(path, 'header does not start with "{" (not a safetensors file?)', { code: 'E_HEADER_JSON' });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new FormatError(path, `header is not valid JSON (${(err as Error).message})`, { cause: err, code: 'E_HEADER_JSON' });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new FormatError(path, 'header JSON is not an object', { code: 'E_HEADER_JSON' });

  const dataStart = 8 + headerLength;
  const dataSize = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  const ranges: { name: string; begin: number; end: number }[] = [];

  for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry))
        throw new FormatError(path, '"__metadata__" must be an object of strings', { code: 'E_HEADER_SCHEMA' });
      for (const [k, v] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof v !== 'string')
          throw new FormatError(path, `"__metadata__"."${k}" must be a string`, { code: 'E_HEADER_SCHEMA' });
        metadata[k] = v;
      }
      continue;
    }
    const where = `tensor "${name}"`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry))
      throw new FormatError(path, `${where}: entry must be an object`, { code: 'E_HEADER_SCHEMA' });
    const e = entry as Record<string, unknown>;
    if (!isDtype(e.dtype))
      throw new FormatError(path, `${where}: unknown dtype ${jsonSnippet(e.dtype)}`, { code: 'E_DTYPE' });
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0))
      throw new FormatError(path, `${where}: shape must be an array of non-negative integers`, { code: 'E_HEADER_SCHEMA' });
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && (o as number) >= 0))
      throw new FormatError(path, `${where}: data_offsets must be [begin, end] non-negative integers`, { code: 'E_HEADER_SCHEMA' });
    const [begin, end] = offs as [number, number];
    if (end < begin) throw new FormatError(path, `${where}: data_offsets end ${end} < begin ${begin}`, { code: 'E_OFFSETS' });
    const shape = e.shape as number[];
    const count = numel(shape);
    const want = count * DTYPE_SIZES[e.dtype];
    if (!Number.isSafeInteger(want) || want !== end - begin)
      throw new FormatError(path, `${where}: shape [${shape.join(', ')}] × ${e.dtype} is ${want} bytes but data_offsets span ${end - begin}`, { code: 'E_SIZE' });
    if (end > dataSize)
      throw new FormatError(path, `${where}: data_offsets [${begin}, ${end}] run past the data section (${dataSize} bytes; file truncated?)`, { code: 'E_OFFSETS' });
    tensors.set(name, { name, dtype: e.dtype, shape, offset: dataStart + begin, byteLength: end - begin, file: path });
    ranges.push({ name, begin, end });
  }

  // The tensors must tile the data section exactly: no overlaps, no gaps.
  ranges.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let prev = '';
  for (const r of ranges) {
    if (r.begin < cursor)
      throw new FormatError(path, `tensor "${r.name}" overlaps tensor "${prev}" (bytes ${r.begin}..${cursor})`, { code: 'E_OVERLAP' });
    if (r.begin > cursor)
      throw new FormatError(path, `gap of ${r.begin - cursor} unused bytes before tensor "${r.name}" in the data section`, { code: 'E_GAP' });
    cursor = r.end;
    prev = r.name;
  }
  if (cursor !== dataSize)
    throw new FormatError(path, `data section has ${dataSize - cursor} trailing bytes not covered by any tensor`, { code: 'E_GAP' });
  return { headerLength, metadata, tensors };
}

// ---------------------------------------------------------------------------------------------
// Writer

export interface TensorToWrite {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** Raw little-endian bytes, or a function producing them when the writer reaches this tensor. */
  data: Uint8Array | (() => Uint8Array);
}

/** Re-exported for the callers that found it here first; it lives with the other atomic helpers. */
export { tempPathFor } from '../util/atomic.js';

export interface TensorSpec {
  name: string;
  dtype: Dtype;
  shape: number[];
}

/**
 * Streaming atomic safetensors writer (lib/io/ordered-file-writer.ts owns the file: temp path,
 * declared order, parts, commit = fsync + rename, abort = remove). The header (all names, dtypes,
 * shapes) is space-padded to a multiple of 8 bytes so the data is aligned.
 */
export class SafetensorsWriter extends OrderedFileWriter {
  static create(dest: string, specs: TensorSpec[], metadata?: Record<string, string>): SafetensorsWriter {
    const header: Record<string, unknown> = {};
    if (metadata && Object.keys(metadata).length) header.__metadata__ = metadata;
    let offset = 0;
    const seen = new Set<string>();
    const entries: OrderedEntry[] = [];
    for (const t of specs) {
      if (seen.has(t.name)) throw new FormatError(dest, `duplicate tensor name "${t.name}"`);
      seen.add(t.name);
      if (!isDtype(t.dtype)) throw new FormatError(dest, `tensor "${t.name}": unknown dtype ${String(t.dtype)}`);
      const size = numel(t.shape) * DTYPE_SIZES[t.dtype];
      header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size] };
      entries.push({ name: t.name, bytes: size, sizeFrom: 'shape × dtype' });
      offset += size;
    }
    let json = JSON.stringify(header);
    json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
    const headerBytes = Buffer.from(json, 'utf8');
    const bytes = Buffer.alloc(8 + headerBytes.length);
    bytes.writeBigUInt64LE(BigInt(headerBytes.length));
    headerBytes.copy(bytes, 8);
    return new SafetensorsWriter(dest, bytes, entries);
  }
}

/**
 * Write a safetensors file atomically. Tensors are written in the given order; lazy `data`
 * functions let callers produce one tensor at a time.
 */
export function writeSafetensors(dest: string, tensors: TensorToWrite[], metadata?: Record<string, string>): void {
  const w = SafetensorsWriter.create(dest, tensors.map(({ name, dtype, shape }) => ({ name, dtype, shape })), metadata);
  try {
    for (const t of tensors) {
      const data = typeof t.data === 'function' ? t.data() : t.data;
      const want = numel(t.shape) * DTYPE_SIZES[t.dtype];
      if (data.byteLength !== want) throw new FormatError(dest, `tensor "${t.name}": ${data.byteLength} bytes given, shape × dtype needs ${want}`);
      w.write(t.name, data);
    }
    w.commit();
  } catch (err) {
    w.abort();
    throw err;
  }
}

/** Bytes of a typed array as a Uint8Array view (no copy). */
export function asBytes(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
