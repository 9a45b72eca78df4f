/**
 * GPTQ for one linear layer (native/core/gptq.h; docs/gptq.md): a Hessian accumulator fed
 * chunk by chunk with the layer's input activations, a factorisation shared by the linears
 * that read the same input (q/k/v, gate/up), and the column loop that writes the packed format
 * directly. Arguments are validated here; errors name the option and what was expected.
 */
import { native } from '../native.js';
import { checkPackedShape, isPackedBits, packedSizes, type PackedBits } from '../kernels/packed-format.js';
import { resolveGroupSize, type GroupSizeOption, type PackedLinear, type QuantMethodName, type QuantizedCodes } from '../kernels/quant.js';
import { DataError, UsageError } from '../util/errors.js';

/** Spec §6 defaults: damping 1% of the mean Hessian diagonal, act-order off, blocks of 128. */
export const GPTQ_DEFAULTS = { damp: 0.01, actOrder: false, blockSize: 128 } as const;

/** Tokens per native call: bounds the time one Promise holds a worker, not memory. */
const CHUNK_TOKENS = 4096;

/**
 * Σ x xᵀ over calibration activations x [tokens, inFeatures], in f64 (n × n × 8 bytes: 32 MiB
 * for n = 2048, 512 MiB for n = 8192). `n` may exceed `inFeatures` (zero-padded layouts): the
 * extra columns stay zero and quantize as dead columns.
 */
export class HessianAccumulator {
  readonly n: number;
  readonly sum: Float64Array;
  tokens = 0;
  private consumed = false;

  constructor(n: number) {
    if (!Number.isSafeInteger(n) || n < 1 || n > 65536) throw new UsageError(`hessian size: expected an integer in [1, 65536], got ${n}`);
    this.n = n;
    this.sum = new Float64Array(n * n);
  }

  /** Add the rows of x f32 [tokens, inFeatures] (default inFeatures = n). */
  async add(x: Float32Array, tokens: number, inFeatures = this.n): Promise<void> {
    if (this.consumed) throw new UsageError('hessian: already factorised');
    if (!Number.isSafeInteger(tokens) || tokens < 0) throw new UsageError(`tokens: expected an integer >= 0, got ${tokens}`);
    if (!Number.isSafeInteger(inFeatures) || inFeatures < 1 || inFeatures > this.n)
      throw new UsageError(`inFeatures: expected an integer in [1, ${this.n}], got ${inFeatures}`);
    if (!(x instanceof Float32Array) || x.length !== tokens * inFeatures)
      throw new UsageError(`x: expected a Float32Array of ${tokens} × ${inFeatures} activations, got ${x?.length}`);
    for (let t0 = 0; t0 < tokens; t0 += CHUNK_TOKENS) {
      const t = Math.min(CHUNK_TOKENS, tokens - t0);
      let chunk = x.subarray(t0 * inFeatures, (t0 + t) * inFeatures);
      if (inFeatures < this.n) {
        const p = new Float32Array(t * this.n);
        for (let r = 0; r < t; r++) p.set(chunk.subarray(r * inFeatures, (r + 1) * inFeatures), r * this.n);
        chunk = p;
      }
      await native().gptqAccumulate(this.sum, this.n, chunk, t);
    }
    this.tokens += tokens;
  }

  /** Hand the matrix over (it is factorised in place); the accumulator can no longer be used. */
  take(): Float64Array {
    if (this.consumed) throw new UsageError('hessian: already factorised');
    this.consumed = true;
    return this.sum;
  }
}

export interface GptqFactorOptions {
  /** Damping as a fraction of mean(diag H) (default 0.01). */
  damp?: number;
  /** Quantize columns by descending diag H (default false); grids are then static. */
  actOrder?: boolean;
}

/** U (H⁻¹ = UᵀU, upper), column order and dead columns: what gptqQuantize needs. */
export interface GptqFactor {
  n: number;
  factor: Float64Array;
  perm: Int32Array;
  dead: Uint8Array;
  actOrder: boolean;
  /** Value added to the diagonal of H = 2/N·Σ xxᵀ. */
  damp: number;
  deadColumns: number;
  tokens: number;
}

function checkDamp(d: number): number {
  if (typeof d !== 'number' || !Number.isFinite(d) || d < 0 || d > 10) throw new UsageError(`damp: expected a number in [0, 10], got ${String(d)}`);
  return d;
}

/** Factorise an accumulated Hessian (in place: the accumulator is consumed). */
export async function gptqFactor(acc: HessianAccumulator, opts: GptqFactorOptions = {}): Promise<GptqFactor> {
  const damp = checkDamp(opts.damp ?? GPTQ_DEFAULTS.damp);
  const actOrder = opts.actOrder ?? GPTQ_DEFAULTS.actOrder;
  if (typeof actOrder !== 'boolean') throw new UsageError(`actOrder: expected a boolean, got ${typeof actOrder}`);
  if (acc.tokens === 0) throw new UsageError('hessian: no calibration tokens were added');
  const tokens = acc.tokens;
  const n = acc.n;
  const H = acc.take();
  const scale = 2 / tokens; // H = 2/N · Σ xxᵀ (GPTQ's convention; the result does not depend on it)
  for (let i = 0; i < H.length; i++) H[i] *= scale;
  return gptqFactorFromHessian(H, n, { damp, actOrder }, tokens);
}

/** Factorise H [n, n] f64 in place (tests and callers holding their own Hessian). */
export async function gptqFactorFromHessian(H: Float64Array, n: number, opts: GptqFactorOptions = {}, tokens = 0): Promise<GptqFactor> {
  const damp = checkDamp(opts.damp ?? GPTQ_DEFAULTS.damp);
  const actOrder = opts.actOrder ?? GPTQ_DEFAULTS.actOrder;
  if (!(H instanceof Float64Array) || H.length !== n * n) throw new UsageError(`hessian: expected a Float64Array of ${n} × ${n}, got ${H?.length}`);
  const perm = new Int32Array(n);
  const dead = new Uint8Array(n);
  let r: { damp: number; dead: number };
  try {
    r = await native().gptqPrepare(H, n, damp, actOrder, perm, dead);
  } catch (err) {
    throw new DataError(`gptq: ${(err as Error).message} (damping fraction ${damp})`, { cause: err });
  }
  return { n, factor: H, perm, dead, actOrder, damp: r.damp, deadColumns: r.dead, tokens };
}

export interface GptqOptions {
  bits: PackedBits;
  /** 32, 64, 128 or 'channel' (a number equal to the column count also means per-channel). */
  groupSize: GroupSizeOption | number;
  symmetric?: boolean;
  /** Grid of each group: 'minmax' (default, GPTQ's) or 'mse' (shrink search, quantize.ts). */
  method?: QuantMethodName;
  clipGrid?: number;
  clipMaxShrink?: number;
  /** Lazy-batch width (default 128). */
  blockSize?: number;
}

interface Job {
  native: Parameters<ReturnType<typeof native>['gptqQuantize']>[6];
  scales: Uint16Array;
  zeros: Uint8Array | null;
}

function job(rows: number, cols: number, f: GptqFactor, o: GptqOptions): Job {
  if (typeof o !== 'object' || o === null) throw new UsageError('options: expected an object');
  if (!isPackedBits(o.bits)) throw new UsageError(`bits: expected 2, 3, 4 or 8, got ${String(o.bits)}`);
  if (f.n !== cols) throw new UsageError(`factor: is for ${f.n} columns, the weight has ${cols}`);
  const groupSize = resolveGroupSize(o.groupSize, cols);
  checkPackedShape(rows, cols, o.bits, groupSize);
  const method = o.method ?? 'minmax';
  if (method !== 'minmax' && method !== 'mse') throw new UsageError(`method: expected 'minmax' or 'mse', got ${String(method)}`);
  const blockSize = o.blockSize ?? GPTQ_DEFAULTS.blockSize;
  if (!Number.isInteger(blockSize) || blockSize < 32 || blockSize > 4096 || blockSize % 32 !== 0)
    throw new UsageError(`blockSize: expected a multiple of 32 in [32, 4096], got ${blockSize}`);
  if (!f.actOrder && groupSize < cols && blockSize % groupSize !== 0 && groupSize % blockSize !== 0)
    throw new UsageError(`blockSize ${blockSize} and groupSize ${groupSize}: one must divide the other`);
  const symmetric = o.symmetric ?? false;
  const sz = packedSizes(rows, cols, o.bits, groupSize, symmetric);
  return {
    native: {
      bits: o.bits, groupSize, symmetric, method: method === 'mse' ? 1 : 0,
      clipGrid: o.clipGrid ?? 100, clipMaxShrink: o.clipMaxShrink ?? 0.8, blockSize, staticGroups: f.actOrder,
    },
    scales: new Uint16Array(sz.groups),
    zeros: symmetric ? null : new Uint8Array(sz.groups),
  };
}

function checkWeight(w: Float32Array, rows: number, cols: number): void {
  if (!Number.isSafeInteger(rows) || rows < 1 || !Number.isSafeInteger(cols) || cols < 1)
    throw new UsageError(`shape: expected positive integers, got ${rows} × ${cols}`);
  if (!(w instanceof Float32Array) || w.length !== rows * cols)
    throw new UsageError(`w: expected a Float32Array of ${rows} × ${cols} weights, got ${w?.length}`);
}

/** GPTQ-quantize W f32 [rows, cols] straight into a PackedLinear. `loss` = Σ (w − ŵ)²/U_ii². */
export async function gptqQuantizeLinear(w: Float32Array, rows: number, cols: number, f: GptqFactor, o: GptqOptions): Promise<{ packed: PackedLinear; loss: number }> {
  checkWeight(w, rows, cols);
  const j = job(rows, cols, f, o);
  const qweight = new Uint8Array(packedSizes(rows, cols, o.bits, j.native.groupSize, j.native.symmetric).qweightBytes);
  const loss = await native().gptqQuantize(w, rows, cols, f.factor, f.perm, f.dead, j.native, null, qweight, j.scales, j.zeros);
  const packed: PackedLinear = { outFeatures: rows, inFeatures: cols, bits: o.bits, groupSize: j.native.groupSize, symmetric: j.native.symmetric, qweight, scales: j.scales };
  if (j.zeros) packed.zeros = j.zeros;
  return { packed, loss };
}

/** The same, returning unpacked codes (tests compare them with the float64 reference). */
export async function gptqQuantizeCodes(w: Float32Array, rows: number, cols: number, f: GptqFactor, o: GptqOptions): Promise<QuantizedCodes & { loss: number }> {
  checkWeight(w, rows, cols);
  const j = job(rows, cols, f, o);
  const codes = new Uint8Array(rows * cols);
  const loss = await native().gptqQuantize(w, rows, cols, f.factor, f.perm, f.dead, j.native, codes, null, j.scales, j.zeros);
  const r: QuantizedCodes & { loss: number } = { rows, cols, bits: o.bits, groupSize: j.native.groupSize, symmetric: j.native.symmetric, codes, scales: j.scales, loss };
  if (j.zeros) r.zeros = j.zeros;
  return r;
}
