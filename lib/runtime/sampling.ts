/**
 * Choosing the next token from logits: greedy argmax (temperature 0, deterministic; ties go to
 * the lowest id, as numpy/torch argmax do) or seeded sampling with temperature and nucleus
 * (top-p) truncation. The generator is a small counter-free PRNG (sfc32 seeded through
 * splitmix32) so a seed gives the same text on every platform.
 */
import { UsageError } from '../util/errors.js';

/** Index of the largest value (first one on ties). */
export function argmax(x: Float32Array, offset = 0, length = x.length - offset): number {
  let best = 0;
  let bv = -Infinity;
  for (let i = 0; i < length; i++) {
    const v = x[offset + i];
    if (v > bv) {
      bv = v;
      best = i;
    }
  }
  return best;
}

/** Uniform floats in [0, 1) from a 32-bit seed; same sequence on every platform. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) throw new UsageError(`seed: expected an integer, got ${seed}`);
    // splitmix32 expands the seed into the four words of sfc32
    let s = seed >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) | 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    for (let i = 0; i < 12; i++) this.nextU32();
  }

  nextU32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** A float in [0, 1) with 32 random bits. */
  next(): number {
    return this.nextU32() / 4294967296;
  }
}

export interface SamplingOptions {
  /** 0 = greedy. */
  temperature: number;
  /** Nucleus: keep the smallest set of most likely tokens whose probability reaches topP (1 = all). */
  topP: number;
}

export function checkSamplingOptions(o: SamplingOptions): void {
  if (!(Number.isFinite(o.temperature) && o.temperature >= 0)) throw new UsageError(`temperature: expected a number >= 0, got ${o.temperature}`);
  if (!(Number.isFinite(o.topP) && o.topP > 0 && o.topP <= 1)) throw new UsageError(`topP: expected a number in (0, 1], got ${o.topP}`);
}

/**
 * Next token from one row of logits. Temperature 0 → argmax (no randomness used).
 * Otherwise softmax(logits / T) in double, truncated to the top-p nucleus, renormalised, and
 * sampled with one draw from `rng`.
 */
export function sampleToken(logits: Float32Array, opts: SamplingOptions, rng: Rng): number {
  if (opts.temperature === 0) return argmax(logits);
  const n = logits.length;
  let mx = -Infinity;
  for (let i = 0; i < n; i++) mx = Math.max(mx, logits[i]);
  const p = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    p[i] = Math.exp((logits[i] - mx) / opts.temperature);
    sum += p[i];
  }
  for (let i = 0; i < n; i++) p[i] /= sum;
  let ids: number[];
  if (opts.topP < 1) {
    // sort by probability, ties by id, so the nucleus is deterministic
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => p[b] - p[a] || a - b);
    ids = [];
    let acc = 0;
    for (const i of order) {
      ids.push(i);
      acc += p[i];
      if (acc >= opts.topP) break;
    }
  } else {
    ids = Array.from({ length: n }, (_, i) => i);
  }
  let mass = 0;
  for (const i of ids) mass += p[i];
  let u = rng.next() * mass;
  for (const i of ids) {
    u -= p[i];
    if (u < 0) return i;
  }
  return ids[ids.length - 1];
}
