/**
 * Layer-sequential GPTQ calibration (the standard protocol): the calibration hidden states
 * entering layer l are run through layer l to collect each linear's input Hessian; the layer
 * is quantized; then the *quantized* layer produces the hidden states entering layer l+1.
 * Inside a layer the linears go in four true-sequential stages — q/k/v, o, gate/up, down —
 * each stage's inputs computed with the earlier stages already quantized (GPTQModel's
 * default; `trueSequential: false` takes all four from the full-precision layer in one pass).
 *
 * Memory: the hidden states of the calibration set at one layer boundary,
 * samples × seqlen × hidden × 4 bytes (128 × 2048 × 2048 × 4 = 2 GiB for a LLaMA-3.2-1B
 * shape at the full default; 128 × 512 × 64 × 4 = 16 MiB for stories260K), plus one
 * sequence's layer activations and one f64 Hessian per stage (inFeatures² × 8 bytes).
 * Activations are never kept for more than one sequence: each is folded into the Hessian.
 */
import { LINEAR_NAMES, type LinearName, type ModelConfig } from '../io/config.js';
import { loadTokenizer } from '../io/tokenizer.js';
import type { QuantMethodName } from '../kernels/quant.js';
import type { PackedBits } from '../kernels/packed-format.js';
import { sampleCalibration } from '../lieq/analyze.js';
import { runLayer } from '../runtime/forward.js';
import { packedLinear, type RuntimeLinear } from '../runtime/linear.js';
import { withLinears, type LayerWeights, type RuntimeModel } from '../runtime/model.js';
import { loadEvalText } from '../runtime/perplexity.js';
import { UsageError } from '../util/errors.js';
import { gptqFactor, gptqQuantizeLinear, HessianAccumulator, type GptqFactorOptions } from './gptq.js';
import { padColumns, resolveLayout } from './layout.js';

/** Linears sharing one input, in the order their inputs become available. */
export const GPTQ_STAGES: readonly (readonly LinearName[])[] = [['q_proj', 'k_proj', 'v_proj'], ['o_proj'], ['gate_proj', 'up_proj'], ['down_proj']];

export interface GptqLayerOptions extends GptqFactorOptions {
  bits: number;
  /** Requested group size (32, 64, 128, or ≥ inFeatures for per-channel); resolved per linear like RTN (layout.ts). */
  groupSize: number;
  symmetric?: boolean;
  /**
   * Group grid: 'mse' (default: the shrink search of the RTN backbone, run on the current
   * weights at each group's start) or 'minmax' (GPTQ's original). On stories260K min/max GPTQ
   * at 2 bits is worse than RTN with MSE clipping; with the same grid GPTQ wins at 2, 3, 4 bits.
   */
  method?: QuantMethodName;
  blockSize?: number;
  /** Default true (see the file comment). */
  trueSequential?: boolean;
  /** Per quantized linear: GPTQ loss, dead columns, calibration tokens. */
  onLinear?(s: GptqLinearStats): void;
}

export interface GptqLinearStats {
  layer: number;
  linear: LinearName;
  loss: number;
  deadColumns: number;
  tokens: number;
}

/** Hessians of the stages' shared inputs from one pass of `weights` over `inputs`. */
async function stageHessians(model: RuntimeModel, weights: LayerWeights, inputs: readonly Float32Array[], stages: readonly (readonly LinearName[])[]): Promise<Map<LinearName, HessianAccumulator>> {
  const accs = new Map<LinearName, HessianAccumulator>();
  const widths = new Map<LinearName, number>();
  for (const s of stages) {
    const inF = weights.linears[s[0]].inFeatures;
    widths.set(s[0], inF);
    accs.set(s[0], new HessianAccumulator(Math.ceil(inF / 32) * 32)); // the padded width (layout.ts)
  }
  for (const x of inputs) {
    const caught: [LinearName, Float32Array][] = [];
    runLayer(model, weights.index, x, {
      weights,
      hooks: { linearInput: (_l, name, a) => { if (accs.has(name)) caught.push([name, a.slice()]); } },
    });
    for (const [name, a] of caught) {
      const inF = widths.get(name)!;
      await accs.get(name)!.add(a, a.length / inF, inF);
    }
  }
  return accs;
}

/**
 * GPTQ-quantize one decoder layer given the calibration hidden states entering it (one
 * [tokens, hidden] array per sequence; not modified). Returns the layer with packed linears
 * (the same tensors `lieq quantize` writes); norms and biases are kept.
 */
export async function quantizeLayerGptq(model: RuntimeModel, layer: LayerWeights, inputs: readonly Float32Array[], o: GptqLayerOptions): Promise<LayerWeights> {
  if (!Array.isArray(inputs) || inputs.length === 0) throw new UsageError('gptq: no calibration hidden states for the layer');
  for (const name of LINEAR_NAMES) if (layer.linears[name].kind !== 'dense') throw new UsageError(`gptq: layer ${layer.index} ${name} is already packed`);
  const trueSequential = o.trueSequential ?? true;
  const quantized: Partial<Record<LinearName, RuntimeLinear>> = {};
  const all = trueSequential ? null : await stageHessians(model, layer, inputs, GPTQ_STAGES);
  for (const stage of GPTQ_STAGES) {
    const acc = all ? all.get(stage[0])! : (await stageHessians(model, withLinears(layer, quantized), inputs, [stage])).get(stage[0])!;
    const factor = await gptqFactor(acc, { damp: o.damp, actOrder: o.actOrder });
    for (const name of stage) {
      const lin = layer.linears[name];
      if (lin.kind !== 'dense') throw new UsageError(`gptq: ${name} is already packed`);
      const layout = resolveLayout(lin.inFeatures, o.groupSize);
      const w = padColumns(lin.weight, lin.outFeatures, lin.inFeatures, layout.paddedIn);
      const { packed, loss } = await gptqQuantizeLinear(w, lin.outFeatures, layout.paddedIn, factor, {
        bits: o.bits as PackedBits,
        groupSize: layout.perChannel ? 'channel' : layout.groupSize,
        symmetric: o.symmetric ?? false,
        method: o.method ?? 'mse',
        blockSize: o.blockSize,
      });
      quantized[name] = packedLinear(packed, lin.bias, lin.inFeatures);
      o.onLinear?.({ layer: layer.index, linear: name, loss, deadColumns: factor.deadColumns, tokens: factor.tokens });
    }
  }
  return withLinears(layer, quantized);
}

/** hidden[s] <- layer `weights` applied to hidden[s], sequence by sequence (old arrays released). */
export function propagateLayer(model: RuntimeModel, weights: LayerWeights, hidden: Float32Array[]): void {
  for (let s = 0; s < hidden.length; s++) hidden[s] = runLayer(model, weights.index, hidden[s], { weights });
}

export interface CalibrationOptions {
  /** Text: a dataset name (tinystories, wikitext2) or a UTF-8 file. */
  data: string;
  samples: number;
  /** Tokens per sequence; capped at the model's context. */
  seqlen: number;
  seed: number;
}

/** Spec §6: 128 × 2048 tokens where the data allow (the context caps seqlen). */
export const CALIBRATION_DEFAULTS: CalibrationOptions = { data: 'tinystories', samples: 128, seqlen: 2048, seed: 0 };

export function checkCalibration(o: CalibrationOptions): void {
  if (!Number.isSafeInteger(o.samples) || o.samples < 1) throw new UsageError(`--calib-samples: expected a positive integer, got ${o.samples}`);
  if (!Number.isSafeInteger(o.seqlen) || o.seqlen < 2) throw new UsageError(`--calib-seqlen: expected an integer ≥ 2, got ${o.seqlen}`);
  if (typeof o.data !== 'string' || o.data === '') throw new UsageError('--calib-data: expected a dataset name or a file');
}

/**
 * Embedded calibration sequences: `samples` windows of min(seqlen, context) tokens at seeded
 * offsets of the tokenized text; `embedRows(ids)` returns embedding rows [ids.length, hidden].
 */
export async function calibrationInputs(modelDir: string, cfg: ModelConfig, o: CalibrationOptions, embedRows: (ids: number[]) => Float32Array): Promise<{ hidden: Float32Array[]; seqlen: number; tokens: number }> {
  checkCalibration(o);
  const tok = await loadTokenizer(modelDir);
  const seqlen = Math.min(o.seqlen, cfg.maxPositionEmbeddings);
  const seqs = sampleCalibration(tok.encode(loadEvalText(o.data).text, { addBos: true }), o.samples, seqlen, o.seed);
  const distinct = [...new Set(seqs.flatMap((s) => Array.from(s)))].sort((a, b) => a - b);
  const table = embedRows(distinct);
  const at = new Map(distinct.map((id, i) => [id, i]));
  const h = cfg.hiddenSize;
  const hidden = seqs.map((ids) => {
    const x = new Float32Array(ids.length * h);
    for (let t = 0; t < ids.length; t++) x.set(table.subarray(at.get(ids[t])! * h, (at.get(ids[t])! + 1) * h), t * h);
    return x;
  });
  return { hidden, seqlen, tokens: seqs.length * seqlen };
}
