/**
 * The packed low-bit weight format (docs/format.md; native twin: native/core/packed_format.h).
 * W [out, in] is quantized group-wise along `in`: w ≈ scale · (q − zero), q in [0, 2^bits − 1].
 * `qweight` holds rows of in/32 blocks of 32 codes (4·bits bytes each), `scales` fp16 [out, in/g],
 * `zeros` u8 [out, in/g] in the asymmetric mode (symmetric: zero = 2^(bits−1), none stored).
 */
import { UsageError } from '../util/errors.js';

/** Codes per block; `inFeatures` must be a multiple of it. */
export const PACK_BLOCK_CODES = 32;
export const PACKED_BITS = [2, 3, 4, 8] as const;
export type PackedBits = (typeof PACKED_BITS)[number];
/** Group sizes other than per-channel (groupSize = inFeatures). */
export const PACKED_GROUP_SIZES = [32, 64, 128] as const;

export function isPackedBits(bits: unknown): bits is PackedBits {
  return bits === 2 || bits === 3 || bits === 4 || bits === 8;
}

/** Bytes of one block of 32 codes: 8, 12, 16 or 32 (3-bit is dense). */
export function packedBlockBytes(bits: PackedBits): number {
  return (PACK_BLOCK_CODES * bits) / 8;
}

/** Largest code, 2^bits − 1. */
export function maxCode(bits: PackedBits): number {
  return (1 << bits) - 1;
}

/** The implicit zero point of the symmetric mode, 2^(bits−1). */
export function symmetricZero(bits: PackedBits): number {
  return 1 << (bits - 1);
}

/**
 * Storage cost in bits per weight: payload + fp16 scale + u8 zero point (asymmetric only),
 * spread over a group: bits + 16/g + 8/g. Per-channel layers pass groupSize = inFeatures.
 */
export function bitsPerWeight(bits: PackedBits, groupSize: number, symmetric: boolean): number {
  return bits + 16 / groupSize + (symmetric ? 0 : 8 / groupSize);
}

/**
 * Why (outFeatures, inFeatures, bits, groupSize) is not a valid packed shape, or undefined.
 * Same wording as native/core/packed_format.h packed_shape_error().
 */
export function packedShapeError(
  outFeatures: number,
  inFeatures: number,
  bits: number,
  groupSize: number,
): string | undefined {
  if (!isPackedBits(bits)) return `bits: expected 2, 3, 4 or 8, got ${bits}`;
  if (!Number.isInteger(outFeatures) || outFeatures <= 0) return `outFeatures: must be positive`;
  if (!Number.isInteger(inFeatures) || inFeatures <= 0 || inFeatures % PACK_BLOCK_CODES !== 0)
    return `inFeatures: must be a positive multiple of 32 (the packed block size), got ${inFeatures}`;
  if (!(groupSize === 32 || groupSize === 64 || groupSize === 128 || groupSize === inFeatures))
    return `groupSize: expected 32, 64, 128 or inFeatures (${inFeatures}, per-channel), got ${groupSize}`;
  if (inFeatures % groupSize !== 0)
    return `inFeatures: must be a multiple of groupSize ${groupSize}, got ${inFeatures}`;
  return undefined;
}

/** Throws UsageError when the shape is not valid (see packedShapeError). */
export function checkPackedShape(outFeatures: number, inFeatures: number, bits: number, groupSize: number): void {
  const err = packedShapeError(outFeatures, inFeatures, bits, groupSize);
  if (err) throw new UsageError(err);
}

/** Array sizes of a packed matrix. */
export interface PackedSizes {
  /** Bytes of one row of qweight. */
  rowBytes: number;
  /** qweight length in bytes. */
  qweightBytes: number;
  /** Scale (and zero point) count: outFeatures × inFeatures/groupSize. */
  groups: number;
  /** All bytes stored: qweight + 2·groups + (asymmetric) groups. */
  totalBytes: number;
}

export function packedSizes(
  outFeatures: number,
  inFeatures: number,
  bits: PackedBits,
  groupSize: number,
  symmetric: boolean,
): PackedSizes {
  const rowBytes = (inFeatures / PACK_BLOCK_CODES) * packedBlockBytes(bits);
  const groups = outFeatures * (inFeatures / groupSize);
  const qweightBytes = outFeatures * rowBytes;
  return { rowBytes, qweightBytes, groups, totalBytes: qweightBytes + 2 * groups + (symmetric ? 0 : groups) };
}
