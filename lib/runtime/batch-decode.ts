/**
 * Batched decoding: one new token for each of B independent sequences in one step. Every
 * linear (and the LM head) runs once on B rows, so a step reads the weights once for B tokens
 * instead of B times, which is the point of batching a memory-bound decode. Attention runs per
 * sequence against its own KvCache (sequences may be at different positions).
 *
 * Prefill stays per sequence (forward with a cache): a prompt already gives every linear many
 * rows, so batching prompts adds little and would need B × prompt rows of scratch.
 * forwardBatch is the general case (sequences of any lengths in one pass) for work made of many
 * short sequences, such as scoring the continuations of zero-shot tasks (lib/eval).
 */
import { UsageError } from '../util/errors.js';
import { checkTokenIds, logitsFromHidden, runDecoderLayerRows, type LayerSegment } from './forward.js';
import { KvCache } from './kv-cache.js';
import type { RuntimeModel } from './model.js';
import { embedGather } from './ops.js';

export interface BatchDecodeOptions {
  /** 'last' (default): logits [B, vocab] of the new tokens; 'none': skip the LM head. */
  logits?: 'last' | 'none';
}

/**
 * Append ids[b] to sequence b (its cache `caches[b]`) for b < B = ids.length, and return the
 * logits of the B new tokens [B, vocab] (null with logits 'none'). Each cache advances by one.
 */
export function decodeBatch(model: RuntimeModel, caches: readonly KvCache[], ids: Int32Array, opts: BatchDecodeOptions = {}): Float32Array | null {
  checkTokenIds(model, ids);
  const c = model.config;
  const B = ids.length;
  if (B === 0) throw new UsageError('ids: expected at least one sequence');
  if (caches.length !== B) throw new UsageError(`caches: ${caches.length} caches for ${B} token ids (one per sequence)`);
  const mode = opts.logits ?? 'last';
  if (mode !== 'last' && mode !== 'none') throw new UsageError(`logits: expected "last" or "none", got ${JSON.stringify(mode)}`);
  const seen = new Set<KvCache>();
  for (const cache of caches) {
    if (!(cache instanceof KvCache)) throw new UsageError('caches: expected KvCache objects');
    if (seen.has(cache)) throw new UsageError('caches: the same KvCache is given for two sequences');
    seen.add(cache);
    if (cache.kvHeads !== c.numKvHeads || cache.headDim !== c.headDim || cache.k.length !== c.numLayers)
      throw new UsageError('cache: was made for a model of another shape');
    if (cache.free < 1) throw new UsageError(`cache: full (${cache.length} of ${cache.capacity} positions used)`);
  }

  const x = new Float32Array(B * c.hiddenSize);
  embedGather(model.embedding, c.hiddenSize, ids, x);
  const segments: LayerSegment[] = caches.map((cache) => ({ rows: 1, kv: { k: cache.k[0], v: cache.v[0], capacity: cache.capacity, pos0: cache.length } }));
  for (let l = 0; l < c.numLayers; l++) {
    for (let b = 0; b < B; b++) {
      segments[b].kv.k = caches[b].k[l];
      segments[b].kv.v = caches[b].v[l];
    }
    runDecoderLayerRows(model, model.layer(l), x, segments);
  }
  for (const cache of caches) cache.advance(1);
  return mode === 'last' ? logitsFromHidden(model, x, 0, B) : null;
}

/** One sequence of a batched forward: its new tokens and the cache they extend. */
export interface BatchSequence {
  ids: Int32Array;
  cache: KvCache;
}

/**
 * Run several sequences of any lengths in one pass: their new tokens are the rows of one
 * residual stream, so every linear and the LM head run once over all rows (runDecoderLayerRows),
 * while RoPE, the KV store and attention run per sequence on its own cache and positions. The
 * result of each sequence equals `forward(model, ids, { cache })` up to float32 summation order
 * (the GEMM blocks rows differently). Logits: 'all' [total rows, vocab] in sequence order,
 * 'last' [sequences, vocab] (each sequence's last token), 'none' null. Each cache advances by
 * its sequence's length.
 */
export function forwardBatch(model: RuntimeModel, seqs: readonly BatchSequence[], opts: { logits?: 'all' | 'last' | 'none' } = {}): Float32Array | null {
  const c = model.config;
  if (seqs.length === 0) throw new UsageError('seqs: expected at least one sequence');
  const mode = opts.logits ?? 'all';
  if (mode !== 'all' && mode !== 'last' && mode !== 'none') throw new UsageError(`logits: expected "all", "last" or "none", got ${JSON.stringify(mode)}`);
  const seen = new Set<KvCache>();
  let n = 0;
  for (const { ids, cache } of seqs) {
    checkTokenIds(model, ids);
    if (ids.length === 0) throw new UsageError('ids: expected at least one token per sequence');
    if (!(cache instanceof KvCache)) throw new UsageError('cache: expected a KvCache');
    if (seen.has(cache)) throw new UsageError('caches: the same KvCache is given for two sequences');
    seen.add(cache);
    if (cache.kvHeads !== c.numKvHeads || cache.headDim !== c.headDim || cache.k.length !== c.numLayers)
      throw new UsageError('cache: was made for a model of another shape');
    if (cache.free < ids.length) throw new UsageError(`cache: ${ids.length} tokens do not fit (${cache.length} of ${cache.capacity} positions used)`);
    n += ids.length;
  }

  const H = c.hiddenSize;
  const x = new Float32Array(n * H);
  let row = 0;
  for (const { ids } of seqs) {
    embedGather(model.embedding, H, ids, x.subarray(row * H, (row + ids.length) * H));
    row += ids.length;
  }
  const segments: LayerSegment[] = seqs.map(({ ids, cache }) => ({ rows: ids.length, kv: { k: cache.k[0], v: cache.v[0], capacity: cache.capacity, pos0: cache.length } }));
  for (let l = 0; l < c.numLayers; l++) {
    for (let s = 0; s < seqs.length; s++) {
      segments[s].kv.k = seqs[s].cache.k[l];
      segments[s].kv.v = seqs[s].cache.v[l];
    }
    runDecoderLayerRows(model, model.layer(l), x, segments);
  }
  for (const { ids, cache } of seqs) cache.advance(ids.length);

  if (mode === 'none') return null;
  if (mode === 'all') return logitsFromHidden(model, x, 0, n);
  const last = new Float32Array(seqs.length * H);
  row = 0;
  for (let s = 0; s < seqs.length; s++) {
    row += seqs[s].ids.length;
    last.set(x.subarray((row - 1) * H, row * H), s * H);
  }
  return logitsFromHidden(model, last, 0, seqs.length);
}
