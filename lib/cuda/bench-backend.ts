/**
 * The CUDA BenchBackend (lib/bench/backend.ts) over a GpuModel: decode is one native step of
 * `batch` rows (one per sequence), replayed from a CUDA graph; prefill runs each sequence's
 * prompt through the tensor-core prefill (GpuModel.prefill: linears as GEMMs over chunks of up
 * to GPU_PREFILL_ROWS tokens), sequence after sequence; prompts of at most 16 tokens, which the
 * GEMV step takes in one launch, go through the step.
 */
import type { BenchBackend } from '../bench/backend.js';
import type { RuntimeModel } from '../runtime/model.js';
import { UsageError } from '../util/errors.js';
import { GPU_MAX_ROWS, GPU_PREFILL_ROWS, GpuModel } from './gpu-model.js';

export interface CudaBenchLimits {
  maxBatch: number;
  maxContext: number;
  /** CUDA graphs for the steps (default true). */
  graphs?: boolean;
}

export async function createCudaBenchBackend(model: RuntimeModel, opts: CudaBenchLimits): Promise<BenchBackend> {
  for (const [name, v] of [['maxBatch', opts.maxBatch], ['maxContext', opts.maxContext]] as const)
    if (!Number.isSafeInteger(v) || v < 1) throw new UsageError(`${name}: expected a positive integer, got ${v}`);
  if (opts.maxBatch > 16) throw new UsageError(`maxBatch: the CUDA backend decodes at most 16 sequences at once, got ${opts.maxBatch}`);
  if (opts.maxContext > model.config.maxPositionEmbeddings)
    throw new UsageError(`context ${opts.maxContext} (prompt + generated tokens) exceeds the model's max_position_embeddings (${model.config.maxPositionEmbeddings})`);
  const gpu = GpuModel.load(model, { maxSeqs: opts.maxBatch, maxContext: opts.maxContext, graphs: opts.graphs });
  const stats = gpu.stats();
  const checkBatch = (batch: number) => {
    if (!Number.isSafeInteger(batch) || batch < 1 || batch > opts.maxBatch) throw new UsageError(`batch: expected an integer in [1, ${opts.maxBatch}], got ${batch}`);
  };
  const seqRange = (batch: number) => Int32Array.from({ length: batch }, (_, i) => i);
  return {
    device: 'cuda',
    deviceName: stats.deviceName,
    weightBytesPerStep: stats.weightBytes,
    maxBatch: opts.maxBatch,
    maxContext: opts.maxContext,
    reset() {
      gpu.reset();
    },
    async prefill(ids: Int32Array, batch: number, promptLength: number): Promise<void> {
      checkBatch(batch);
      if (!Number.isSafeInteger(promptLength) || promptLength < 1 || ids.length !== batch * promptLength)
        throw new UsageError(`ids: expected batch × promptLength = ${batch} × ${promptLength} token ids, got ${ids.length}`);
      if (promptLength > GPU_MAX_ROWS) {
        const chunkRows = Math.min(promptLength, GPU_PREFILL_ROWS);
        for (let b = 0; b < batch; b++) await gpu.prefill(ids.subarray(b * promptLength, (b + 1) * promptLength), b, { chunkRows });
        return;
      }
      const seqs = new Int32Array(ids.length);
      for (let b = 0; b < batch; b++) seqs.fill(b, b * promptLength, (b + 1) * promptLength);
      await gpu.run(ids, seqs);
    },
    async decode(ids: Int32Array, batch: number): Promise<void> {
      checkBatch(batch);
      if (ids.length !== batch) throw new UsageError(`ids: expected ${batch} token ids, got ${ids.length}`);
      await gpu.run(ids, seqRange(batch));
    },
    memory() {
      return { hostRssBytes: process.memoryUsage().rss, deviceBytes: stats.deviceBytes };
    },
    dispose() {
      gpu.dispose();
    },
  };
}
