/**
 * How a linear of any shape maps onto the packed format (docs/format.md), which needs
 * `in` to be a multiple of 32 and of the group size.
 *
 * [ours] Real checkpoints have in % 128 == 0 (LLaMA-3.2, Qwen2/2.5/3: 896, 1024, 2048, 2560,
 * 3072, 4864, 8192, 9728, 14336). Tiny models do not (stories260K's down_proj has in = 172),
 * so instead of refusing them:
 *   paddedIn = in rounded up to a multiple of 32; the extra columns are zero weights and the
 *   runtime feeds zeros for them (a zero column adds nothing to y = x·Wᵀ).
 *   The group size is the requested one if it divides paddedIn; else the largest of 64, 32
 *   below it that does; a requested group ≥ paddedIn means per-channel (one group per row).
 */
export interface LinearLayout {
  inFeatures: number;
  paddedIn: number;
  groupSize: number;
  /** True when one group spans the whole (padded) row. */
  perChannel: boolean;
}

export const GROUP_SIZES = [32, 64, 128] as const;

export function resolveLayout(inFeatures: number, requestedGroup: number): LinearLayout {
  if (!Number.isSafeInteger(inFeatures) || inFeatures <= 0) throw new RangeError(`inFeatures: expected a positive integer, got ${inFeatures}`);
  if (!Number.isSafeInteger(requestedGroup) || requestedGroup <= 0) throw new RangeError(`groupSize: expected a positive integer, got ${requestedGroup}`);
  const paddedIn = Math.ceil(inFeatures / 32) * 32;
  if (requestedGroup >= paddedIn) return { inFeatures, paddedIn, groupSize: paddedIn, perChannel: true };
  if (!(GROUP_SIZES as readonly number[]).includes(requestedGroup))
    throw new RangeError(`groupSize: expected 32, 64, 128 or a per-channel size ≥ inFeatures, got ${requestedGroup}`);
  for (const g of [128, 64, 32]) {
    if (g <= requestedGroup && paddedIn % g === 0) return { inFeatures, paddedIn, groupSize: g, perChannel: false };
  }
  /* unreachable: 32 always divides paddedIn */
  return { inFeatures, paddedIn, groupSize: 32, perChannel: false };
}

/** Bytes of one packed matrix: codes + fp16 scales + u8 zeros (asymmetric). */
export function packedBytes(out: number, layout: LinearLayout, bits: number, symmetric: boolean): number {
  const groups = layout.paddedIn / layout.groupSize;
  const codes = out * (layout.paddedIn / 32) * 4 * bits;
  return codes + out * groups * 2 + (symmetric ? 0 : out * groups);
}

/** Zero-pad W [out, in] to [out, paddedIn] (zero columns add nothing to x·Wᵀ). */
export function padColumns(w: Float32Array, out: number, inF: number, paddedIn: number): Float32Array {
  if (paddedIn === inF) return w;
  const p = new Float32Array(out * paddedIn);
  for (let r = 0; r < out; r++) p.set(w.subarray(r * inF, (r + 1) * inF), r * paddedIn);
  return p;
}
