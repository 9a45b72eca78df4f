/**
 * Packed low-bit linear layers: quantize, pack/unpack, dequantize and the fused dequant-matmul
 * y = x · Wᵀ (+ bias), plus the f32 / fp16-weight GEMV baselines. Arguments are validated here
 * (errors name the parameter, what was expected and what came); the addon re-checks lengths and
 * throws rather than crash. TypedArrays are passed to native code without copies.
 * Format: docs/format.md, lib/kernels/packed-format.ts.
 */
import { native, type NativePackedLayer, type NativeQuantizeOptions } from '../native.js';
import { UsageError } from '../util/errors.js';
import {
  PACK_BLOCK_CODES,
  type PackedBits,
  checkPackedShape,
  isPackedBits,
  packedSizes,
} from './packed-format.js';

/** The unit the rest of lieq passes around: one quantized linear weight W [outFeatures, inFeatures]. */
export interface PackedLinear {
  outFeatures: number;
  inFeatures: number;
  bits: PackedBits;
  /** 32, 64, 128, or inFeatures for per-channel scales. */
  groupSize: number;
  /** Symmetric: zero = 2^(bits−1) implicitly and `zeros` is absent. */
  symmetric: boolean;
  /** u8 [outFeatures, inFeatures/32 · 4·bits] */
  qweight: Uint8Array;
  /** fp16 bits [outFeatures, inFeatures/groupSize] */
  scales: Uint16Array;
  /** u8 [outFeatures, inFeatures/groupSize], asymmetric only */
  zeros?: Uint8Array;
}

/** Per-group codes before packing (one code per byte, natural order). */
export interface QuantizedCodes {
  rows: number;
  cols: number;
  bits: PackedBits;
  groupSize: number;
  symmetric: boolean;
  codes: Uint8Array;
  scales: Uint16Array;
  zeros?: Uint8Array;
}

export type GroupSizeOption = 32 | 64 | 128 | 'channel';
export type QuantMethodName = 'minmax' | 'mse';

export interface QuantizeOptions {
  bits: PackedBits;
  /** 32, 64, 128 or 'channel' (one group per row; a number equal to the column count also means that). */
  groupSize: GroupSizeOption | number;
  /** Default false (asymmetric, GPTQ zero points). */
  symmetric?: boolean;
  /** 'minmax' (round-to-nearest over the full range, default) or 'mse' (clipping search per group). */
  method?: QuantMethodName;
  /** 'mse': shrink factors 1 − i/clipGrid for i < clipGrid · clipMaxShrink (defaults 100 and 0.8). */
  clipGrid?: number;
  clipMaxShrink?: number;
}

/** 'scalar' runs the reference kernels (tests compare them with the SIMD path). */
export type KernelImpl = 'auto' | 'scalar';

export interface MatmulOptions {
  /** f32 [outFeatures] */
  bias?: Float32Array;
  /** f32 [batch, outFeatures] to write into (else a new array). */
  out?: Float32Array;
  impl?: KernelImpl;
}

// ---- validation -----------------------------------------------------------------------------

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (ArrayBuffer.isView(v)) return `${v.constructor.name}(${(v as unknown as { length: number }).length})`;
  return typeof v;
}

function checkInt(name: string, v: unknown, min = 1): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min)
    throw new UsageError(`${name}: expected an integer >= ${min}, got ${String(v)}`);
  return v;
}

function checkArray<T extends ArrayBufferView>(
  name: string,
  v: unknown,
  type: abstract new (...args: never[]) => T,
  length: number,
  what: string,
): T {
  if (!(v instanceof type))
    throw new UsageError(`${name}: expected a ${type.name} of ${length} elements (${what}), got ${describe(v)}`);
  const len = (v as unknown as { length: number }).length;
  if (len !== length) throw new UsageError(`${name}: expected ${length} elements (${what}), got ${len}`);
  return v;
}

function checkBits(bits: unknown): PackedBits {
  if (!isPackedBits(bits)) throw new UsageError(`bits: expected 2, 3, 4 or 8, got ${String(bits)}`);
  return bits;
}

/** groupSize option -> the stored group size (per-channel = cols). */
export function resolveGroupSize(groupSize: GroupSizeOption | number, cols: number): number {
  if (groupSize === 'channel') return cols;
  if (typeof groupSize !== 'number')
    throw new UsageError(`groupSize: expected 32, 64, 128 or 'channel', got ${String(groupSize)}`);
  return groupSize;
}

/** Throws UsageError naming the first field of `layer` that does not describe a valid packed layer. */
export function validatePackedLinear(layer: PackedLinear): void {
  if (typeof layer !== 'object' || layer === null) throw new UsageError('layer: expected a PackedLinear object');
  const { outFeatures, inFeatures, groupSize, symmetric } = layer;
  checkInt('outFeatures', outFeatures);
  checkInt('inFeatures', inFeatures);
  const bits = checkBits(layer.bits);
  if (typeof symmetric !== 'boolean') throw new UsageError(`symmetric: expected a boolean, got ${typeof symmetric}`);
  checkPackedShape(outFeatures, inFeatures, bits, groupSize);
  const sz = packedSizes(outFeatures, inFeatures, bits, groupSize, symmetric);
  checkArray('qweight', layer.qweight, Uint8Array, sz.qweightBytes, `${outFeatures} rows × ${sz.rowBytes} bytes`);
  checkArray('scales', layer.scales, Uint16Array, sz.groups, `${outFeatures} × ${inFeatures / groupSize} fp16 scales`);
  if (symmetric) {
    if (layer.zeros !== undefined) throw new UsageError('zeros: must be absent for a symmetric layer');
  } else {
    checkArray('zeros', layer.zeros, Uint8Array, sz.groups, `${outFeatures} × ${inFeatures / groupSize} zero points`);
  }
}

function nativeOptions(opts: QuantizeOptions, cols: number): NativeQuantizeOptions {
  if (typeof opts !== 'object' || opts === null) throw new UsageError('options: expected an object');
  const bits = checkBits(opts.bits);
  const groupSize = resolveGroupSize(opts.groupSize, cols);
  const method = opts.method ?? 'minmax';
  if (method !== 'minmax' && method !== 'mse') throw new UsageError(`method: expected 'minmax' or 'mse', got ${String(method)}`);
  const clipGrid = opts.clipGrid ?? 100;
  if (!Number.isInteger(clipGrid) || clipGrid < 1 || clipGrid > 10000)
    throw new UsageError(`clipGrid: expected an integer in [1, 10000], got ${clipGrid}`);
  const clipMaxShrink = opts.clipMaxShrink ?? 0.8;
  if (typeof clipMaxShrink !== 'number' || !(clipMaxShrink >= 0 && clipMaxShrink < 1))
    throw new UsageError(`clipMaxShrink: expected a number in [0, 1), got ${clipMaxShrink}`);
  return {
    bits,
    groupSize,
    symmetric: opts.symmetric ?? false,
    method: method === 'mse' ? 1 : 0,
    clipGrid,
    clipMaxShrink,
  };
}

interface QuantizeJob {
  o: NativeQuantizeOptions;
  out: Uint8Array;
  scales: Uint16Array;
  zeros: Uint8Array | null;
}

function quantizeJob(w: Float32Array, rows: number, cols: number, opts: QuantizeOptions, packed: boolean): QuantizeJob {
  checkInt('rows', rows);
  checkInt('cols', cols);
  const o = nativeOptions(opts, cols);
  checkPackedShape(rows, cols, o.bits, o.groupSize);
  checkArray('w', w, Float32Array, rows * cols, `${rows} × ${cols} f32 weights`);
  const sz = packedSizes(rows, cols, o.bits as PackedBits, o.groupSize, o.symmetric);
  return {
    o,
    out: new Uint8Array(packed ? sz.qweightBytes : rows * cols),
    scales: new Uint16Array(sz.groups),
    zeros: o.symmetric ? null : new Uint8Array(sz.groups),
  };
}

function codesResult(rows: number, cols: number, j: QuantizeJob): QuantizedCodes {
  const r: QuantizedCodes = {
    rows,
    cols,
    bits: j.o.bits as PackedBits,
    groupSize: j.o.groupSize,
    symmetric: j.o.symmetric,
    codes: j.out,
    scales: j.scales,
  };
  if (j.zeros) r.zeros = j.zeros;
  return r;
}

function linearResult(rows: number, cols: number, j: QuantizeJob): PackedLinear {
  const r: PackedLinear = {
    outFeatures: rows,
    inFeatures: cols,
    bits: j.o.bits as PackedBits,
    groupSize: j.o.groupSize,
    symmetric: j.o.symmetric,
    qweight: j.out,
    scales: j.scales,
  };
  if (j.zeros) r.zeros = j.zeros;
  return r;
}

// ---- quantize / pack --------------------------------------------------------------------------

/** Quantize w f32 [rows, cols] to per-group codes, fp16 scales and zero points (blocks the thread). */
export function quantizeCodes(w: Float32Array, rows: number, cols: number, opts: QuantizeOptions): QuantizedCodes {
  const j = quantizeJob(w, rows, cols, opts, false);
  native().quantizeCodes(w, rows, cols, j.o, j.out, j.scales, j.zeros);
  return codesResult(rows, cols, j);
}

/** quantizeCodes on a worker thread. */
export async function quantizeCodesAsync(
  w: Float32Array,
  rows: number,
  cols: number,
  opts: QuantizeOptions,
): Promise<QuantizedCodes> {
  const j = quantizeJob(w, rows, cols, opts, false);
  await native().quantizeCodesAsync(w, rows, cols, j.o, j.out, j.scales, j.zeros);
  return codesResult(rows, cols, j);
}

/** Quantize a whole weight matrix straight into a PackedLinear, on a worker thread. */
export async function quantizeLinear(
  w: Float32Array,
  outFeatures: number,
  inFeatures: number,
  opts: QuantizeOptions,
): Promise<PackedLinear> {
  const j = quantizeJob(w, outFeatures, inFeatures, opts, true);
  await native().quantizePackedAsync(w, outFeatures, inFeatures, j.o, j.out, j.scales, j.zeros);
  return linearResult(outFeatures, inFeatures, j);
}

/** quantizeLinear, blocking (small layers). */
export function quantizeLinearSync(
  w: Float32Array,
  outFeatures: number,
  inFeatures: number,
  opts: QuantizeOptions,
): PackedLinear {
  const j = quantizeJob(w, outFeatures, inFeatures, opts, true);
  native().quantizePacked(w, outFeatures, inFeatures, j.o, j.out, j.scales, j.zeros);
  return linearResult(outFeatures, inFeatures, j);
}

function checkCodesShape(rows: number, cols: number, bits: unknown): PackedBits {
  checkInt('rows', rows);
  checkInt('cols', cols);
  const b = checkBits(bits);
  if (cols % PACK_BLOCK_CODES !== 0)
    throw new UsageError(`cols: must be a multiple of 32 (the packed block size), got ${cols}`);
  return b;
}

/** codes u8 [rows, cols] (each < 2^bits) -> qweight in the packed layout. */
export function packCodes(codes: Uint8Array, rows: number, cols: number, bits: PackedBits): Uint8Array {
  const b = checkCodesShape(rows, cols, bits);
  checkArray('codes', codes, Uint8Array, rows * cols, `${rows} × ${cols} codes`);
  const qweight = new Uint8Array(packedSizes(rows, cols, b, PACK_BLOCK_CODES, true).qweightBytes);
  native().packCodes(codes, rows, cols, b, qweight);
  return qweight;
}

/** qweight in the packed layout -> codes u8 [rows, cols]. */
export function unpackCodes(qweight: Uint8Array, rows: number, cols: number, bits: PackedBits): Uint8Array {
  const b = checkCodesShape(rows, cols, bits);
  const sz = packedSizes(rows, cols, b, PACK_BLOCK_CODES, true);
  checkArray('qweight', qweight, Uint8Array, sz.qweightBytes, `${rows} rows × ${sz.rowBytes} bytes`);
  const codes = new Uint8Array(rows * cols);
  native().unpackCodes(qweight, rows, cols, b, codes);
  return codes;
}

/** Bundle codes into a PackedLinear (packs them). */
export function packQuantized(q: QuantizedCodes): PackedLinear {
  const layer: PackedLinear = {
    outFeatures: q.rows,
    inFeatures: q.cols,
    bits: q.bits,
    groupSize: q.groupSize,
    symmetric: q.symmetric,
    qweight: packCodes(q.codes, q.rows, q.cols, q.bits),
    scales: q.scales,
  };
  if (!q.symmetric) layer.zeros = q.zeros;
  validatePackedLinear(layer);
  return layer;
}

// ---- dequantize / matmul ------------------------------------------------------------------------

function asNative(layer: PackedLinear): NativePackedLayer {
  validatePackedLinear(layer);
  return layer;
}

function implCode(impl: KernelImpl | undefined): 0 | 1 {
  if (impl === undefined || impl === 'auto') return 0;
  if (impl === 'scalar') return 1;
  throw new UsageError(`impl: expected 'auto' or 'scalar', got ${String(impl)}`);
}

/** W as f32 [outFeatures, inFeatures] (exact: scale · (q − zero)). */
export function dequantize(layer: PackedLinear, opts: { impl?: KernelImpl } = {}): Float32Array {
  const l = asNative(layer);
  const w = new Float32Array(layer.outFeatures * layer.inFeatures);
  native().dequantizePacked(l, w, implCode(opts.impl));
  return w;
}

/** dequantize on a worker thread. */
export async function dequantizeAsync(layer: PackedLinear): Promise<Float32Array> {
  const l = asNative(layer);
  const w = new Float32Array(layer.outFeatures * layer.inFeatures);
  await native().dequantizePackedAsync(l, w);
  return w;
}

function matmulBuffers(layer: PackedLinear, x: Float32Array, batch: number, opts: MatmulOptions) {
  const l = asNative(layer);
  checkInt('batch', batch);
  checkArray('x', x, Float32Array, batch * layer.inFeatures, `batch ${batch} × inFeatures ${layer.inFeatures}`);
  const bias = opts.bias === undefined ? null : checkArray('bias', opts.bias, Float32Array, layer.outFeatures, 'outFeatures');
  const n = batch * layer.outFeatures;
  const y = opts.out === undefined ? new Float32Array(n) : checkArray('out', opts.out, Float32Array, n, `batch ${batch} × outFeatures ${layer.outFeatures}`);
  return { l, bias, y, impl: implCode(opts.impl) };
}

/**
 * y f32 [batch, outFeatures] = x f32 [batch, inFeatures] · Wᵀ (+ bias), blocking. For the per-token
 * calls of the runtime (batch 1: fused GEMV; 2–32: small-batch kernel; more: dequantized tiles + sgemm).
 */
export function qmatmulSync(layer: PackedLinear, x: Float32Array, batch: number, opts: MatmulOptions = {}): Float32Array {
  const b = matmulBuffers(layer, x, batch, opts);
  native().qmatmul(b.l, x, batch, b.bias, b.y, b.impl);
  return b.y;
}

/** qmatmulSync on a worker thread (long prefill calls). */
export async function qmatmul(
  layer: PackedLinear,
  x: Float32Array,
  batch: number,
  opts: MatmulOptions = {},
): Promise<Float32Array> {
  const b = matmulBuffers(layer, x, batch, opts);
  await native().qmatmulAsync(b.l, x, batch, b.bias, b.y, b.impl);
  return b.y;
}

function baselineBuffers(
  w: ArrayBufferView,
  kind: typeof Float32Array | typeof Uint16Array,
  outFeatures: number,
  inFeatures: number,
  x: Float32Array,
  batch: number,
  opts: MatmulOptions,
) {
  checkInt('outFeatures', outFeatures);
  checkInt('inFeatures', inFeatures);
  checkInt('batch', batch);
  checkArray('w', w, kind as typeof Float32Array, outFeatures * inFeatures, `${outFeatures} × ${inFeatures} weights`);
  checkArray('x', x, Float32Array, batch * inFeatures, `batch ${batch} × inFeatures ${inFeatures}`);
  const bias = opts.bias === undefined ? null : checkArray('bias', opts.bias, Float32Array, outFeatures, 'outFeatures');
  const n = batch * outFeatures;
  const y = opts.out === undefined ? new Float32Array(n) : checkArray('out', opts.out, Float32Array, n, `batch × outFeatures`);
  return { bias, y, impl: implCode(opts.impl) };
}

/** Baseline y = x · Wᵀ (+ bias) with f32 weights W [outFeatures, inFeatures] (any inFeatures). */
export function gemvF32(
  w: Float32Array,
  outFeatures: number,
  inFeatures: number,
  x: Float32Array,
  batch: number,
  opts: MatmulOptions = {},
): Float32Array {
  const b = baselineBuffers(w, Float32Array, outFeatures, inFeatures, x, batch, opts);
  native().gemvF32(w, outFeatures, inFeatures, x, batch, b.bias, b.y, b.impl);
  return b.y;
}

/** Baseline with fp16 weights (Uint16Array of fp16 bits), converted on the fly (F16C). */
export function gemvF16(
  w: Uint16Array,
  outFeatures: number,
  inFeatures: number,
  x: Float32Array,
  batch: number,
  opts: MatmulOptions = {},
): Float32Array {
  const b = baselineBuffers(w, Uint16Array, outFeatures, inFeatures, x, batch, opts);
  native().gemvF16(w, outFeatures, inFeatures, x, batch, b.bias, b.y, b.impl);
  return b.y;
}

/** True when the AVX2 packed kernels run on this machine (else the scalar ones). */
export function packedKernelsSimd(): boolean {
  return native().packedKernelsSimd();
}

/** Bytes a layer stores (qweight + scales + zeros): what a GEMV must read. */
export function packedLinearBytes(layer: PackedLinear): number {
  return layer.qweight.byteLength + layer.scales.byteLength + (layer.zeros?.byteLength ?? 0);
}

/** Multi-threaded read bandwidth (sum-reduce over `bytes`), GB/s. Blocks for the measurement. */
export function measureReadBandwidth(bytes = 512 * 2 ** 20, reps = 5): { bestGBs: number; meanGBs: number } {
  checkInt('bytes', bytes);
  checkInt('reps', reps);
  const r = native().readBandwidth(bytes, reps);
  return { bestGBs: r.bestGBs, meanGBs: r.meanGBs };
}
