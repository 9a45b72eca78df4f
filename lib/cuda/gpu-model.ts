/**
 * A RuntimeModel resident on the GPU (native/cuda/gpu_model.h): every weight uploaded once
 * (packed linears repacked into the GPU layout at load, dense ones as fp16), a KV cache for each
 * of `maxSeqs` sequences, and steps of up to 16 token rows (decode for batch 1..16, prefill in
 * chunks of 16 tokens; each row attends to its own sequence, causally).
 *
 * Numerics: fp16 weights/activations into the linears and fp16 KV cache, fp32 everywhere else
 * (residual stream, norms, RoPE, softmax, accumulation), so logits match the CPU runtime within
 * fp16 tolerance (test/cuda/gpu-model.test.ts).
 */
import { native, type NativeGpuModelHandle, type NativeGpuModelStats } from '../native.js';
import { checkLayerWeights, type RuntimeModel } from '../runtime/model.js';
import { RopeTables } from '../runtime/rope.js';
import { UnsupportedError, UsageError } from '../util/errors.js';

/** Token rows one native step takes (the fused GEMV's batch limit). */
export const GPU_MAX_ROWS = 16;

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
        const w = model.layer(l);
        checkLayerWeights(c, w, l);
        n.cudaModelSetLayer(handle, l, w);
      }
      const head = model.lmHead;
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
