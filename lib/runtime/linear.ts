/**
 * A decoder linear as the runtime sees it: full-precision f32 weights, or packed low-bit
 * weights (lib/kernels/quant.ts) with their own bit width and group size, so one model can mix
 * bit widths across layers and projections. Either kind carries an optional bias.
 * `applyLinear` runs y = x · Wᵀ (+ b) natively: sgemm for dense, the fused dequant-matmul for
 * packed weights.
 */
import { bitsPerWeight } from '../kernels/packed-format.js';
import {
  packedLinearBytes,
  qmatmulSync,
  quantizeLinearSync,
  validatePackedLinear,
  type PackedLinear,
  type QuantizeOptions,
} from '../kernels/quant.js';
import { padColumns, resolveLayout } from '../quant/layout.js';
import { UsageError } from '../util/errors.js';
import { denseLinear } from './ops.js';

/** Full-precision linear: weight f32 [outFeatures, inFeatures] (PyTorch layout). */
export interface DenseLinear {
  kind: 'dense';
  outFeatures: number;
  inFeatures: number;
  weight: Float32Array;
  bias: Float32Array | null;
}

/**
 * Packed low-bit linear (format: docs/format.md); the bias stays f32. `inFeatures` is the
 * layer's logical input width; `packed.inFeatures` may be larger (zero columns padding it to a
 * multiple of 32, lib/quant/layout.ts), and applyLinear feeds zeros for those columns.
 */
export interface PackedRuntimeLinear {
  kind: 'packed';
  outFeatures: number;
  inFeatures: number;
  packed: PackedLinear;
  bias: Float32Array | null;
}

export type RuntimeLinear = DenseLinear | PackedRuntimeLinear;

export function denseFromWeights(weight: Float32Array, outFeatures: number, inFeatures: number, bias: Float32Array | null = null): DenseLinear {
  if (weight.length !== outFeatures * inFeatures)
    throw new UsageError(`weight: expected ${outFeatures}×${inFeatures} = ${outFeatures * inFeatures} floats, got ${weight.length}`);
  if (bias && bias.length !== outFeatures) throw new UsageError(`bias: expected ${outFeatures} floats, got ${bias.length}`);
  return { kind: 'dense', outFeatures, inFeatures, weight, bias };
}

/** Wrap a packed weight (validated once here) with an optional bias; `inFeatures` < packed width means zero-padded columns. */
export function packedLinear(packed: PackedLinear, bias: Float32Array | null = null, inFeatures = packed.inFeatures): PackedRuntimeLinear {
  validatePackedLinear(packed);
  if (bias && bias.length !== packed.outFeatures) throw new UsageError(`bias: expected ${packed.outFeatures} floats, got ${bias.length}`);
  if (!Number.isInteger(inFeatures) || inFeatures < 1 || inFeatures > packed.inFeatures || packed.inFeatures - inFeatures >= 32)
    throw new UsageError(`inFeatures: expected the packed width ${packed.inFeatures} or up to 31 less (zero padding), got ${inFeatures}`);
  return { kind: 'packed', outFeatures: packed.outFeatures, inFeatures, packed, bias };
}

/** x [rows, inF] -> [rows, paddedIn] with zero columns appended. */
function padRows(x: Float32Array, rows: number, inF: number, paddedIn: number): Float32Array {
  const p = new Float32Array(rows * paddedIn);
  for (let r = 0; r < rows; r++) p.set(x.subarray(r * inF, (r + 1) * inF), r * paddedIn);
  return p;
}

/**
 * Round-to-nearest quantization of a dense linear into the packed format (the bias is kept).
 * The quantize pipeline (GPTQ etc.) builds PackedLinears its own way; this is the plain
 * baseline that tests and benchmarks use.
 */
export function packDense(lin: DenseLinear, opts: QuantizeOptions): PackedRuntimeLinear {
  // Widths that are not a multiple of 32 (or of the group) get zero columns (lib/quant/layout.ts).
  const requested = opts.groupSize === 'channel' ? Number.MAX_SAFE_INTEGER : opts.groupSize;
  const layout = resolveLayout(lin.inFeatures, requested);
  const w = padColumns(lin.weight, lin.outFeatures, lin.inFeatures, layout.paddedIn);
  const groupSize = layout.perChannel ? 'channel' : (layout.groupSize as 32 | 64 | 128);
  return packedLinear(quantizeLinearSync(w, lin.outFeatures, layout.paddedIn, { ...opts, groupSize }), lin.bias, lin.inFeatures);
}

/** Bits per weight of the payload (32 for full precision). */
export function linearBits(lin: RuntimeLinear): number {
  return lin.kind === 'dense' ? 32 : lin.packed.bits;
}

/** Storage bits per weight including scales and zero points (32 for full precision). */
export function linearEffectiveBits(lin: RuntimeLinear): number {
  return lin.kind === 'dense' ? 32 : bitsPerWeight(lin.packed.bits, lin.packed.groupSize, lin.packed.symmetric);
}

/** Bytes the linear's weights occupy in memory (bias included). */
export function linearBytes(lin: RuntimeLinear): number {
  const w = lin.kind === 'dense' ? lin.weight.byteLength : packedLinearBytes(lin.packed);
  return w + (lin.bias?.byteLength ?? 0);
}

/** y [rows, outFeatures] = x [rows, inFeatures] · Wᵀ (+ bias). Buffers may be longer than needed. */
export function applyLinear(lin: RuntimeLinear, x: Float32Array, rows: number, y: Float32Array): void {
  if (lin.kind === 'dense') {
    denseLinear(x, rows, lin.inFeatures, lin.weight, lin.outFeatures, lin.bias, y);
    return;
  }
  if (rows === 0) return;
  let xs = x.length === rows * lin.inFeatures ? x : x.subarray(0, rows * lin.inFeatures);
  if (lin.inFeatures !== lin.packed.inFeatures) xs = padRows(xs, rows, lin.inFeatures, lin.packed.inFeatures);
  const ys = y.length === rows * lin.outFeatures ? y : y.subarray(0, rows * lin.outFeatures);
  qmatmulSync(lin.packed, xs, rows, { bias: lin.bias ?? undefined, out: ys });
}
