/**
 * The CPU BenchBackend over the TypeScript runtime: prefill is one forward per sequence (a
 * prompt already gives every linear many rows), decode is lib/runtime/batch-decode.ts (every
 * linear once over the B rows of a step). Both compute the logits of the last token, as a
 * generation step would.
 */
import { cpus } from 'node:os';

import { UsageError } from '../util/errors.js';
import { decodeBatch } from '../runtime/batch-decode.js';
import { forward } from '../runtime/forward.js';
import { KvCache } from '../runtime/kv-cache.js';
import { linearBytes } from '../runtime/linear.js';
import { layerBytes, type RuntimeModel } from '../runtime/model.js';
import type { BenchBackend, BenchMemory } from './backend.js';

/**
 * Bytes of weights one decode step reads: every decoder layer (linears with their biases,
 * norms), the final norm and the LM head, as held in memory (a tied f32 head counts once, as
 * the head; the embedding table is not counted: one row per token is read).
 */
export function weightBytesPerStep(model: RuntimeModel): number {
  let b = model.finalNorm.byteLength + linearBytes(model.lmHead);
  for (let l = 0; l < model.numLayers; l++) b += layerBytes(model.layer(l));
  return b;
}

export interface BackendLimits {
  maxBatch: number;
  maxContext: number;
}

function checkLimits(model: RuntimeModel, o: BackendLimits): void {
  if (!Number.isSafeInteger(o.maxBatch) || o.maxBatch < 1) throw new UsageError(`maxBatch: expected a positive integer, got ${o.maxBatch}`);
  if (!Number.isSafeInteger(o.maxContext) || o.maxContext < 1) throw new UsageError(`maxContext: expected a positive integer, got ${o.maxContext}`);
  if (o.maxContext > model.config.maxPositionEmbeddings)
    throw new UsageError(`context ${o.maxContext} (prompt + generated tokens) exceeds the model's max_position_embeddings (${model.config.maxPositionEmbeddings})`);
}

export function createCpuBenchBackend(model: RuntimeModel, o: BackendLimits): BenchBackend {
  checkLimits(model, o);
  const caches = Array.from({ length: o.maxBatch }, () => new KvCache(model.config, o.maxContext));
  const bytesPerStep = weightBytesPerStep(model);
  const checkBatch = (batch: number) => {
    if (!Number.isSafeInteger(batch) || batch < 1 || batch > o.maxBatch) throw new UsageError(`batch: expected an integer in [1, ${o.maxBatch}], got ${batch}`);
  };
  let disposed = false;
  const live = () => {
    if (disposed) throw new UsageError('bench backend: used after dispose()');
  };
  return {
    device: 'cpu',
    deviceName: `${cpus()[0]?.model?.trim() ?? 'CPU'} (${cpus().length} cores)`,
    weightBytesPerStep: bytesPerStep,
    maxBatch: o.maxBatch,
    maxContext: o.maxContext,
    reset() {
      for (const c of caches) c.reset();
    },
    async prefill(ids: Int32Array, batch: number, promptLength: number): Promise<void> {
      live();
      checkBatch(batch);
      if (ids.length !== batch * promptLength) throw new UsageError(`prefill: ids has ${ids.length} tokens, expected batch ${batch} × prompt ${promptLength}`);
      for (let b = 0; b < batch; b++) forward(model, ids.subarray(b * promptLength, (b + 1) * promptLength), { cache: caches[b], logits: 'last' });
    },
    async decode(ids: Int32Array, batch: number): Promise<void> {
      live();
      checkBatch(batch);
      if (ids.length !== batch) throw new UsageError(`decode: ids has ${ids.length} tokens, expected one per sequence (${batch})`);
      decodeBatch(model, caches.slice(0, batch), ids);
    },
    memory(): BenchMemory {
      return { hostRssBytes: process.memoryUsage().rss };
    },
    dispose() {
      disposed = true;
      caches.length = 0;
    },
  };
}
