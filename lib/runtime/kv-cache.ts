/**
 * Per-layer key/value cache of one sequence. Each layer holds K as f32 [kvHeads, headDim,
 * capacity] (transposed: eight consecutive keys of one dimension are one SIMD vector when
 * scoring) and V as f32 [kvHeads, capacity, headDim]; `length` tokens are filled, and the next
 * forward appends at position `length`.
 */
import type { ModelConfig } from '../io/config.js';
import { UsageError } from '../util/errors.js';

export class KvCache {
  readonly capacity: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly k: Float32Array[];
  readonly v: Float32Array[];
  private filled = 0;

  constructor(config: ModelConfig, capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new UsageError(`capacity: expected a positive integer, got ${capacity}`);
    this.capacity = capacity;
    this.kvHeads = config.numKvHeads;
    this.headDim = config.headDim;
    const per = config.numKvHeads * capacity * config.headDim;
    this.k = Array.from({ length: config.numLayers }, () => new Float32Array(per));
    this.v = Array.from({ length: config.numLayers }, () => new Float32Array(per));
  }

  /** Tokens stored (= the position of the next token). */
  get length(): number {
    return this.filled;
  }

  /** Room left for new tokens. */
  get free(): number {
    return this.capacity - this.filled;
  }

  /** Forget every token (the buffers are reused). */
  reset(): void {
    this.filled = 0;
  }

  /** Keep the first n tokens only (e.g. to re-run from a shared prefix). */
  truncate(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > this.filled) throw new UsageError(`truncate: expected an integer in [0, ${this.filled}], got ${n}`);
    this.filled = n;
  }

  /** Called by the forward pass after it stored `n` tokens in every layer. */
  advance(n: number): void {
    if (this.filled + n > this.capacity) throw new UsageError(`KV cache overflow: ${this.filled} + ${n} tokens > capacity ${this.capacity}`);
    this.filled += n;
  }

  /**
   * Make this cache hold the first n tokens of `src` (same model shape; capacities may
   * differ): several continuations of one context then each extend their own copy instead of
   * re-running the context.
   */
  copyPrefixFrom(src: KvCache, n: number): void {
    if (src === this) throw new UsageError('copyPrefixFrom: source and target are the same cache');
    if (src.kvHeads !== this.kvHeads || src.headDim !== this.headDim || src.k.length !== this.k.length)
      throw new UsageError('copyPrefixFrom: the caches were made for models of different shapes');
    if (!Number.isInteger(n) || n < 0 || n > src.length || n > this.capacity)
      throw new UsageError(`copyPrefixFrom: expected an integer in [0, ${Math.min(src.length, this.capacity)}], got ${n}`);
    const hd = this.headDim;
    const sc = src.capacity;
    const dc = this.capacity;
    for (let l = 0; l < this.k.length; l++) {
      // K is [kvHeads, headDim, capacity]: one run of n keys per (head, dimension);
      // V is [kvHeads, capacity, headDim]: one run of n × headDim values per head.
      const sk = src.k[l], dk = this.k[l], sv = src.v[l], dv = this.v[l];
      for (let r = 0; r < this.kvHeads * hd; r++) dk.set(sk.subarray(r * sc, r * sc + n), r * dc);
      for (let h = 0; h < this.kvHeads; h++) dv.set(sv.subarray(h * sc * hd, (h * sc + n) * hd), h * dc * hd);
    }
    this.filled = n;
  }

  bytes(): number {
    return this.k.reduce((s, a) => s + a.byteLength, 0) * 2;
  }
}
