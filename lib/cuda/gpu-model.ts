/**
 * A RuntimeModel resident on the GPU (native/cuda/gpu_model.h): every weight uploaded once
 * (packed linears repacked into the GPU layout at load, dense ones as fp16), a KV cache for each
 * of `maxSeqs` sequences, and steps of up to 16 token rows (decode for batch 1..16, prefill in
 * chunks of 16 tokens; each row attends to its own sequence, causally), plus `prefill` for long
 * prompts (tensor-core GEMMs and attention over chunks of up to 4096 rows of one sequence).
 *
 * Numerics: fp16 weights/activations into the linears and fp16 KV cache, fp32 everywhere else
 * (residual stream, norms, RoPE, softmax, accumulation), so logits match the CPU runtime within
 * fp16 tolerance (test/cuda/gpu-model.test.ts).
 */
import { native, type NativeGpuModelHandle, type NativeGpuModelStats } from '../native.js';
import { packDense, type RuntimeLinear } from '../runtime/linear.js';
import { checkLayerWeights, type RuntimeModel } from '../runtime/model.js';
import { RopeTables } from '../runtime/rope.js';
import { UnsupportedError, UsageError } from '../util/errors.js';

/** Token rows one native step takes (the fused GEMV's batch limit). */
export const GPU_MAX_ROWS = 16;
/** Default rows of one prefill chunk (native kGpuPrefillRows), and the most a chunk may have. */
export const GPU_PREFILL_ROWS = 2048;
export const GPU_PREFILL_MAX_ROWS = 4096;

/** '' when a CUDA device can be used, else the reason (no driver, no device, CPU-only build). */
export function cudaUnavailableReason(): string {
  try {
    return native().cudaUnavailableReason();
  } catch (err) {
    return `the lieq addon has no GPU support: ${(err as Error).message}`;
  }
}

export interface GpuModelOptions {
  /** Sequences with their own KV cache (the largest batch). */
  maxSeqs: number;
  /** Positions per sequence. */
  maxContext: number;
  /** Replay a captured CUDA graph per step (default true); false launches each kernel. */
  graphs?: boolean;
  /**
   * LM head on the GPU: 'fp16' (default) uploads the model's head as it is (a dense head as
   * fp16, shared with the embedding when tied); 'q4' packs a dense head to 4 bits, group 128,
   * asymmetric, with the project's round-to-nearest quantizer (gpuLmHead), and runs it through
   * the packed GEMV. A head that is already packed (a quantized directory) is kept either way.
   */
  lmHead?: GpuLmHeadKind;
  /**
   * For benchmarks of models whose layers repeat one host layer: copyLayerFrom(l) = k < l means
   * layer l holds the same weights as layer k, so it becomes a device-side copy of k (its own
   * memory, no second repack/upload, layer l is never read from `model`). undefined: upload.
   */
  copyLayerFrom?: (layer: number) => number | undefined;
}

export type GpuLmHeadKind = 'fp16' | 'q4';

/** Group size of the 'q4' LM head (the packed layout falls back to per-channel for narrow models). */
export const Q4_HEAD_GROUP = 128;

/**
 * The LM head GpuModel.load uploads for `kind`: the model's own head, or for 'q4' a dense head
 * packed to 4 bits (g128, asymmetric, round-to-nearest). The CPU reference of the checks runs
 * this same linear.
 */
export function gpuLmHead(model: RuntimeModel, kind: GpuLmHeadKind = 'fp16'): RuntimeLinear {
  if (kind !== 'fp16' && kind !== 'q4') throw new UsageError(`lmHead: expected "fp16" or "q4", got ${JSON.stringify(kind)}`);
  const head = model.lmHead;
  if (kind === 'fp16' || head.kind !== 'dense') return head;
  return packDense(head, { bits: 4, groupSize: Q4_HEAD_GROUP, symmetric: false });
}

export class GpuModel {
  readonly vocab: number;
  readonly maxSeqs: number;
  readonly maxContext: number;
  /** Replay CUDA graphs (may be switched between steps). */
  graphs: boolean;
  private handle: NativeGpuModelHandle | null;
  private readonly lengths: Int32Array;

  private constructor(handle: NativeGpuModelHandle, vocab: number, opts: GpuModelOptions) {
    this.handle = handle;
    this.vocab = vocab;
    this.maxSeqs = opts.maxSeqs;
    this.maxContext = opts.maxContext;
    this.graphs = opts.graphs ?? true;
    this.lengths = new Int32Array(opts.maxSeqs);
  }

  /** Upload `model` (all layers; a streaming model is read layer by layer). */
  static load(model: RuntimeModel, opts: GpuModelOptions): GpuModel {
    const why = cudaUnavailableReason();
    if (why) throw new UnsupportedError(`CUDA is not usable here: ${why}`);
    if (model.layersOnly) throw new UsageError(`${model.source.label}: loaded with layersOnly (no embedding or LM head)`);
    for (const [name, v, hi] of [['maxSeqs', opts.maxSeqs, 4096], ['maxContext', opts.maxContext, 1 << 20]] as const)
      if (!Number.isInteger(v) || v < 1 || v > hi) throw new UsageError(`${name}: expected an integer in [1, ${hi}], got ${v}`);
    const c = model.config;
    const half = c.headDim / 2;
    // Same tables as the CPU runtime (rope scaling included), cut to maxContext positions.
    const t = new RopeTables(c.headDim, c.ropeTheta, c.ropeScaling).ensure(opts.maxContext);
    const n = native();
    const handle = n.cudaModelCreate(
      {
        hidden: c.hiddenSize, intermediate: c.intermediateSize, heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim,
        layers: c.numLayers, vocab: c.vocabSize, eps: c.rmsNormEps, window: c.slidingWindow ?? 0,
        maxSeqs: opts.maxSeqs, maxContext: opts.maxContext,
      },
      t.cos.subarray(0, opts.maxContext * half), t.sin.subarray(0, opts.maxContext * half), model.embedding, model.finalNorm,
    );
    try {
      for (let l = 0; l < c.numLayers; l++) {
        const from = opts.copyLayerFrom?.(l);
        if (from !== undefined) {
          if (!Number.isInteger(from) || from < 0 || from >= l) throw new UsageError(`copyLayerFrom(${l}): expected an earlier layer, got ${from}`);
          n.cudaModelCopyLayer(handle, from, l);
          continue;
        }
        const w = model.layer(l);
        checkLayerWeights(c, w, l);
        n.cudaModelSetLayer(handle, l, w);
      }
      const head = gpuLmHead(model, opts.lmHead);
      const tied = head.kind === 'dense' && head.weight === model.embedding;
      n.cudaModelSetHead(handle, tied ? null : head);
    } catch (err) {
      n.cudaModelDispose(handle);
      throw err;
    }
    return new GpuModel(handle, c.vocabSize, opts);
  }

  /** Tokens stored for sequence `seq`. */
  length(seq: number): number {
    return this.lengths[seq];
  }

  /** Forget every sequence (or one). */
  reset(seq?: number): void {
    if (seq === undefined) this.lengths.fill(0);
    else this.lengths[this.checkSeq(seq)] = 0;
  }

  /**
   * Append ids[r] to sequence seqs[r] for every row (in order: rows of one sequence take
   * consecutive positions) and return the logits of every row [rows, vocab] when `logits`.
   * Rows are processed 16 at a time.
   */
  async run(ids: Int32Array, seqs: Int32Array, opts: { logits?: boolean } = {}): Promise<Float32Array | null> {
    const handle = this.live();
    if (ids.length !== seqs.length || ids.length === 0) throw new UsageError(`ids/seqs: expected equal, non-zero lengths, got ${ids.length} and ${seqs.length}`);
    const pos = new Int32Array(ids.length);
    const next = this.lengths.slice();
    for (let r = 0; r < ids.length; r++) {
      const s = this.checkSeq(seqs[r]);
      if (!Number.isInteger(ids[r]) || ids[r] < 0 || ids[r] >= this.vocab) throw new UsageError(`ids[${r}] = ${ids[r]} is outside the vocabulary [0, ${this.vocab})`);
      if (next[s] >= this.maxContext) throw new UsageError(`sequence ${s}: the KV cache holds ${this.maxContext} positions and is full`);
      pos[r] = next[s]++;
    }
    const out = opts.logits ? new Float32Array(ids.length * this.vocab) : null;
    const n = native();
    for (let r0 = 0; r0 < ids.length; r0 += GPU_MAX_ROWS) {
      const r1 = Math.min(ids.length, r0 + GPU_MAX_ROWS);
      const logits = out ? out.subarray(r0 * this.vocab, r1 * this.vocab) : null;
      await n.cudaModelStep(handle, ids.subarray(r0, r1), seqs.subarray(r0, r1), pos.subarray(r0, r1), logits, this.graphs, this.vocab);
    }
    this.lengths.set(next);
    return out;
  }

  /**
   * Append the prompt `ids` to sequence `seq` through the tensor-core prefill: chunks of up to
   * `chunkRows` rows (default GPU_PREFILL_ROWS) whose linears run as GEMMs on the tensor cores
   * (qgemm_prefill.cuh) over the same weights; keys/values go into the cache, so `run` decodes
   * on from here. Returns the last token's logits [vocab] when `logits`.
   */
  async prefill(ids: Int32Array, seq: number, opts: { logits?: boolean; chunkRows?: number } = {}): Promise<Float32Array | null> {
    const handle = this.live();
    const s = this.checkSeq(seq);
    const chunk = opts.chunkRows ?? GPU_PREFILL_ROWS;
    if (!Number.isInteger(chunk) || chunk <= GPU_MAX_ROWS || chunk > GPU_PREFILL_MAX_ROWS)
      throw new UsageError(`chunkRows: expected an integer in [${GPU_MAX_ROWS + 1}, ${GPU_PREFILL_MAX_ROWS}], got ${chunk}`);
    if (ids.length === 0) throw new UsageError('ids: expected at least one token');
    for (let r = 0; r < ids.length; r++)
      if (!Number.isInteger(ids[r]) || ids[r] < 0 || ids[r] >= this.vocab) throw new UsageError(`ids[${r}] = ${ids[r]} is outside the vocabulary [0, ${this.vocab})`);
    const pos0 = this.lengths[s];
    if (pos0 + ids.length > this.maxContext)
      throw new UsageError(`sequence ${s}: ${pos0} + ${ids.length} tokens exceed the KV cache's ${this.maxContext} positions`);
    const out = opts.logits ? new Float32Array(this.vocab) : null;
    await native().cudaModelPrefill(handle, ids, s, pos0, out, this.vocab, chunk);
    this.lengths[s] = pos0 + ids.length;
    return out;
  }

  stats(): NativeGpuModelStats {
    return native().cudaModelStats(this.live());
  }

  /** Free the device memory now; the model is unusable afterwards. */
  dispose(): void {
    if (!this.handle) return;
    native().cudaModelDispose(this.handle);
    this.handle = null;
  }

  private live(): NativeGpuModelHandle {
    if (!this.handle) throw new UsageError('GPU model: already disposed');
    return this.handle;
  }

  private checkSeq(seq: number): number {
    if (!Number.isInteger(seq) || seq < 0 || seq >= this.maxSeqs) throw new UsageError(`sequence ${seq} is outside [0, ${this.maxSeqs})`);
    return seq;
  }
}
