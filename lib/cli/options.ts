/** Parsing of CLI option values; each failure is a UsageError naming the option. */
import { UsageError } from '../util/errors.js';

export function parseNumber(v: string, name: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new UsageError(`${name}: expected a number, got "${v}"`);
  return n;
}

export function parseInteger(v: string, name: string, min = Number.MIN_SAFE_INTEGER): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isSafeInteger(n)) throw new UsageError(`${name}: expected an integer, got "${v}"`);
  if (n < min) throw new UsageError(`${name}: must be ≥ ${min}, got ${n}`);
  return n;
}

export function parseChoice<T extends string>(v: string, name: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(v)) throw new UsageError(`${name}: expected one of ${choices.join(', ')}, got "${v}"`);
  return v as T;
}

/** "2,3,4" -> [2, 3, 4] (each must be a supported bit width). */
export function parseBits(v: string, name: string): number[] {
  const parts = v.split(',').map((s) => s.trim()).filter(Boolean);
  const bits = parts.map((p) => parseInteger(p, name));
  if (bits.length === 0 || bits.some((b) => ![2, 3, 4, 8].includes(b))) throw new UsageError(`${name}: bit widths must be among 2, 3, 4, 8 (got "${v}")`);
  return bits;
}

/** "1,4,16" -> [1, 4, 16] positive integers. */
export function parseIntList(v: string, name: string): number[] {
  const out = v.split(',').map((s) => parseInteger(s.trim(), name, 1));
  if (out.length === 0) throw new UsageError(`${name}: expected a comma-separated list`);
  return out;
}
