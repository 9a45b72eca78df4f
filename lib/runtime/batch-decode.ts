/**
 * Batched decoding: one new token for each of B independent sequences in one step. Every
 * linear (and the LM head) runs once on B rows, so a step reads the weights once for B tokens
 * instead of B times, which is the point of batching a memory-bound decode. Attention runs per
 * sequence against its own KvCache (sequences may be at different positions).
 *
 * Prefill stays per sequence (forward with a cache): a prompt already gives every linear many
 * rows, so batching prompts adds little and would need B × prompt rows of scratch.
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
