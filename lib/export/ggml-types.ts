/**
 * The ggml tensor types lieq writes into GGUF files: ids, block geometry (mirror of
 * native/core/ggml_quants.h, checked against the addon in tests), the plan-bits → type
 * mapping and the fallback for rows whose width does not fit a type's block.
 *
 * Fallback (llama.cpp's `llama_tensor_get_type` rule for rows not a multiple of 256):
 * Q2_K, Q3_K → IQ4_NL; Q4_K → Q5_0; then, if the width is not a multiple of 32 either, F16.
 * lieq adds Q8_0 → F16 (llama.cpp has no fallback for Q8_0) and IQ4_NL / Q5_0 → F16.
 */
import { UsageError } from '../util/errors.js';

export const GgmlType = {
  F32: 0,
  F16: 1,
  Q5_0: 6,
  Q8_0: 8,
  Q2_K: 10,
  Q3_K: 11,
  Q4_K: 12,
  IQ4_NL: 20,
} as const;
export type GgmlTypeName = keyof typeof GgmlType;
export type GgmlTypeId = (typeof GgmlType)[GgmlTypeName];

export interface GgmlTypeTraits {
  name: GgmlTypeName;
  id: GgmlTypeId;
  /** Weights per block. */
  blockSize: number;
  /** Bytes per block. */
  blockBytes: number;
  /** True for the formats lieq quantizes (not F32/F16). */
  quantized: boolean;
}

const TRAITS: Record<GgmlTypeName, GgmlTypeTraits> = {
  F32: { name: 'F32', id: 0, blockSize: 1, blockBytes: 4, quantized: false },
  F16: { name: 'F16', id: 1, blockSize: 1, blockBytes: 2, quantized: false },
  Q5_0: { name: 'Q5_0', id: 6, blockSize: 32, blockBytes: 22, quantized: true },
  Q8_0: { name: 'Q8_0', id: 8, blockSize: 32, blockBytes: 34, quantized: true },
  Q2_K: { name: 'Q2_K', id: 10, blockSize: 256, blockBytes: 84, quantized: true },
  Q3_K: { name: 'Q3_K', id: 11, blockSize: 256, blockBytes: 110, quantized: true },
  Q4_K: { name: 'Q4_K', id: 12, blockSize: 256, blockBytes: 144, quantized: true },
  IQ4_NL: { name: 'IQ4_NL', id: 20, blockSize: 32, blockBytes: 18, quantized: true },
};

export const GGML_TYPE_NAMES = Object.keys(TRAITS) as GgmlTypeName[];

export function ggmlTraits(t: GgmlTypeName | GgmlTypeId): GgmlTypeTraits {
  const tr = typeof t === 'string' ? TRAITS[t] : Object.values(TRAITS).find((x) => x.id === t);
  if (!tr) throw new UsageError(`unknown ggml type ${JSON.stringify(t)} (known: ${GGML_TYPE_NAMES.join(', ')})`);
  return tr;
}

/** Bits per weight including the block scales (e.g. Q4_K 4.5). */
export function ggmlBitsPerWeight(t: GgmlTypeName): number {
  const tr = TRAITS[t];
  return (8 * tr.blockBytes) / tr.blockSize;
}

/** Bytes of a row of `n` weights; the caller has checked n is a multiple of the block. */
export function ggmlRowBytes(t: GgmlTypeName, n: number): number {
  const tr = TRAITS[t];
  if (n % tr.blockSize !== 0) throw new UsageError(`${t} rows need a multiple of ${tr.blockSize} weights, got ${n}`);
  return (n / tr.blockSize) * tr.blockBytes;
}

/** Plan bit width → ggml type (the default; `--types` overrides). */
export type BitsTypeMap = Record<number, GgmlTypeName>;
export const DEFAULT_BITS_TYPES: BitsTypeMap = { 2: 'Q2_K', 3: 'Q3_K', 4: 'Q4_K', 8: 'Q8_0', 16: 'F16' };

/** The type a row of width `cols` can really use when `wanted` needs another block size. */
export function fallbackType(wanted: GgmlTypeName, cols: number): GgmlTypeName {
  if (cols % TRAITS[wanted].blockSize === 0) return wanted;
  const next: Partial<Record<GgmlTypeName, GgmlTypeName>> = { Q2_K: 'IQ4_NL', Q3_K: 'IQ4_NL', Q4_K: 'Q5_0' };
  const alt = next[wanted];
  if (alt && cols % TRAITS[alt].blockSize === 0) return alt;
  return 'F16';
}

/**
 * Parse `--types "2=Q2_K,3=Q3_K,4=Q4_K,8=Q8_0"`: entries replace the defaults they name.
 * Errors name the option and the bad entry.
 */
export function parseBitsTypes(spec: string | undefined, option = '--types'): BitsTypeMap {
  const map: BitsTypeMap = { ...DEFAULT_BITS_TYPES };
  if (spec === undefined || spec.trim() === '') return map;
  for (const part of spec.split(',')) {
    const m = /^\s*(\d+)\s*=\s*([A-Za-z0-9_]+)\s*$/.exec(part);
    if (!m) throw new UsageError(`${option}: expected entries like 4=Q4_K, got "${part}"`);
    const bits = Number(m[1]);
    const name = m[2].toUpperCase() as GgmlTypeName;
    if (!(name in TRAITS)) throw new UsageError(`${option}: unknown ggml type "${m[2]}" (supported: ${GGML_TYPE_NAMES.join(', ')})`);
    if (![2, 3, 4, 8, 16].includes(bits)) throw new UsageError(`${option}: bit width must be 2, 3, 4, 8 or 16, got ${bits}`);
    map[bits] = name;
  }
  return map;
}

/** GGUF `general.file_type` (llama_ftype) for the most common quantized type of a file. */
export function fileTypeFor(t: GgmlTypeName): number {
  const ftype: Record<GgmlTypeName, number> = { F32: 0, F16: 1, Q8_0: 7, Q5_0: 8, Q2_K: 10, Q3_K: 12, Q4_K: 15, IQ4_NL: 25 };
  return ftype[t];
}
