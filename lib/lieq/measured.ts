/**
 * Measured sensitivity (`--score measured` / `hybrid`): for each decoder layer l and each
 * allowed width b, quantize only layer l at b bits with the configured backbone and measure,
 * on the calibration sequences, the increase in mean next-token NLL and the mean KL divergence
 * KL(p_fp ‖ p_q) of the next-token distributions (docs/scores.md).
 *
 * Prefix reuse: the hidden states entering layer l are the same for every b (layers before l
 * are full precision), so the walk keeps them and each (l, b) runs only layers l..L−1:
 * |bits|·Σ_l (L − l) layer runs instead of |bits|·L². The full-precision distributions are
 * not stored as log-probs (vocab × tokens can be gigabytes): the full-precision final hidden
 * states are kept and their logits recomputed through the LM head in row blocks next to the
 * quantized ones (kept whole only while small, see FP_LOGITS_MAX_FLOATS).
 *
 * Results are cached per (model fingerprint, settings) after every layer, like `analyze`:
 * an interrupted run resumes, a rerun (or a hybrid run after a full one) reads the cache.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { loadTokenizer } from '../io/tokenizer.js';
import { quantizeLayerGptq } from '../quant/gptq-calibrate.js';
import { quantizeLayerRtn } from '../quant/quantize-layer.js';
import { embedTokens, logitsFromHidden, runLayer } from '../runtime/forward.js';
import { RuntimeModel, type LayerWeights } from '../runtime/model.js';
import { logSoftmaxNll } from '../runtime/ops.js';
import { loadEvalText } from '../runtime/perplexity.js';
import { writeJsonAtomic } from '../util/atomic.js';
import { UsageError } from '../util/errors.js';
import { allocateMinCost, nominalAverage, refineAllocation, type Allocation, type Refinement } from './allocate.js';
import { defaultCacheDir, modelFingerprint, sampleCalibration } from './analyze.js';
import type { Analysis } from './analysis.js';
import type { Backbone } from './plan.js';

/** What a quantizer backbone gets besides the layer's weights. */
export interface LayerQuantizerContext {
  bits: number;
  groupSize: number;
  symmetric: boolean;
  model: RuntimeModel;
  /** Full-precision hidden states entering the layer, one array per calibration sequence
   *  (GPTQ calibrates its Hessians on them; RTN ignores them). */
  layerInputs: readonly Float32Array[];
}

/** Quantize one decoder layer's weights (returns a copy with packed linears). */
export type LayerQuantizer = (layerIndex: number, weights: LayerWeights, ctx: LayerQuantizerContext) => Promise<LayerWeights>;

/** Round-to-nearest with MSE clipping: the same tensors `lieq quantize` writes. */
export const rtnQuantizer: LayerQuantizer = (_l, w, c) => quantizeLayerRtn(w, c.bits, c.groupSize, c.symmetric);

/** GPTQ (true-sequential, MSE grid) calibrated on the layer's full-precision inputs. */
export const gptqQuantizer: LayerQuantizer = (_l, w, c) => quantizeLayerGptq(c.model, w, c.layerInputs, { bits: c.bits, groupSize: c.groupSize, symmetric: c.symmetric });

export function backboneQuantizer(backbone: Backbone): LayerQuantizer {
  if (backbone === 'rtn') return rtnQuantizer;
  if (backbone === 'gptq') return gptqQuantizer;
  throw new UsageError(`--backbone: expected rtn or gptq, got "${String(backbone)}"`);
}

/**
 * Quantized variants of layers, made once per (layer, bits) and kept: the sensitivity walk,
 * the refinement and the comparison all evaluate the same tensors.
 */
export class LayerVariants {
  private readonly made = new Map<string, LayerWeights>();
  constructor(
    readonly model: RuntimeModel,
    readonly quantizer: LayerQuantizer,
    readonly groupSize: number,
    readonly symmetric: boolean,
  ) {}

  has(layer: number, bits: number): boolean {
    return this.made.has(`${layer}:${bits}`);
  }

  /** The layer at `bits` (16 or more = the full-precision layer). */
  async get(layer: number, bits: number, layerInputs: () => readonly Float32Array[]): Promise<LayerWeights> {
    if (bits >= 16) return this.model.layer(layer);
    const key = `${layer}:${bits}`;
    let w = this.made.get(key);
    if (!w) {
      w = await this.quantizer(layer, this.model.layer(layer), { bits, groupSize: this.groupSize, symmetric: this.symmetric, model: this.model, layerInputs: layerInputs() });
      this.made.set(key, w);
    }
    return w;
  }

  /**
   * Make every (layer, bits) of `plans` that is missing. A backbone that reads its layer's
   * inputs gets them from a full-precision walk of `scorer`'s sequences, advanced only as far
   * as asked (RTN never asks, so nothing runs).
   */
  async ensure(scorer: SequenceScorer, plans: readonly (readonly number[])[]): Promise<void> {
    let hs: Float32Array[] = scorer.embedded;
    let at = 0;
    for (let l = 0; l < this.model.numLayers; l++) {
      const inputs = () => {
        hs = scorer.runLayers(at, l - 1, hs, (j) => this.model.layer(j));
        at = l;
        return hs;
      };
      for (const b of new Set(plans.map((p) => p[l]))) if (b < 16 && !this.has(l, b)) await this.get(l, b, inputs);
    }
  }

  /** Layer weights of a plan (bits per layer), all made beforehand by ensure(). */
  planLayers(bits: readonly number[]): (l: number) => LayerWeights {
    return (l) => {
      if (bits[l] >= 16) return this.model.layer(l);
      const w = this.made.get(`${l}:${bits[l]}`);
      if (!w) throw new Error(`layer ${l} at ${bits[l]} bits was not quantized (call ensure first)`);
      return w;
    };
  }
}

/** NLL and KL of a quantized run against full precision, per scored token (nats). */
export interface RunScore {
  nll: number;
  kl: number;
}

/** Full-precision logits are kept whole below this many floats (256 MiB); above, recomputed per block. */
const FP_LOGITS_MAX_FLOATS = 1 << 26;
/** Rows per LM-head block when logits are computed on the fly. */
const LOGIT_BLOCK_FLOATS = 1 << 22;

/**
 * Token sequences with their full-precision reference: embeddings (the input of layer 0) and
 * final hidden states. Scores a run's final hidden states: NLL of each next token and
 * KL(p_fp ‖ p_q) over rows 0..n−2 of each sequence (the rows that have a target).
 */
export class SequenceScorer {
  readonly embedded: Float32Array[];
  readonly fpFinal: Float32Array[];
  readonly fpNll: number;
  readonly scoredTokens: number;
  /** Decoder layers run so far (one per layer per sequence set): the cost measure of docs/scores.md. */
  layerRuns = 0;
  private readonly fpLogits: (Float32Array | null)[];

  constructor(
    readonly model: RuntimeModel,
    readonly seqs: readonly Int32Array[],
  ) {
    if (seqs.length === 0 || seqs.some((s) => s.length < 2)) throw new UsageError('scoring needs sequences of at least 2 tokens');
    const c = model.config;
    this.embedded = seqs.map((ids) => embedTokens(model, ids));
    this.fpFinal = this.runLayers(0, c.numLayers - 1, this.embedded, (l) => model.layer(l));
    this.scoredTokens = seqs.reduce((s, ids) => s + ids.length - 1, 0);
    const keep = this.scoredTokens * c.vocabSize <= FP_LOGITS_MAX_FLOATS;
    this.fpLogits = this.fpFinal.map((h, s) => (keep ? logitsFromHidden(model, h, 0, seqs[s].length - 1) : null));
    this.fpNll = this.score(this.fpFinal).nll;
  }

  /** Run layers from..to (inclusive) on every sequence's hidden states; inputs are not modified. */
  runLayers(from: number, to: number, hs: readonly Float32Array[], layerAt: (l: number) => LayerWeights): Float32Array[] {
    let cur = hs as Float32Array[];
    for (let l = from; l <= to; l++) {
      const w = layerAt(l);
      cur = cur.map((x) => runLayer(this.model, l, x, { weights: w }));
      this.layerRuns++;
    }
    return cur;
  }

  /** Run the whole model with the given layers and score it. */
  evaluate(layerAt: (l: number) => LayerWeights): RunScore {
    return this.score(this.runLayers(0, this.model.numLayers - 1, this.embedded, layerAt));
  }

  /**
   * Mean NLL and mean KL(p_fp ‖ p_q) per scored token of final hidden states `hs`. With
   * `{ kl: false }` only the NLL (native kernel; kl is NaN): the exhaustive search ranks by it.
   */
  score(hs: readonly Float32Array[], o: { kl?: boolean } = {}): RunScore {
    const V = this.model.config.vocabSize;
    const block = Math.max(1, Math.floor(LOGIT_BLOCK_FLOATS / V));
    const withKl = o.kl ?? true;
    const rowNll = new Float64Array(block);
    let nll = 0;
    let kl = 0;
    for (let s = 0; s < this.seqs.length; s++) {
      const ids = this.seqs[s];
      const rows = ids.length - 1;
      for (let r0 = 0; r0 < rows; r0 += block) {
        const n = Math.min(block, rows - r0);
        const q = logitsFromHidden(this.model, hs[s], r0, n);
        if (!withKl) {
          logSoftmaxNll(q, n, V, ids.subarray(r0 + 1, r0 + 1 + n), rowNll);
          for (let r = 0; r < n; r++) nll += rowNll[r];
          continue;
        }
        const kept = this.fpLogits[s];
        const p = kept ? kept.subarray(r0 * V, (r0 + n) * V) : logitsFromHidden(this.model, this.fpFinal[s], r0, n);
        for (let r = 0; r < n; r++) {
          const row = rowKlNll(p, q, r * V, V, ids[r0 + r + 1]);
          nll += row.nll;
          kl += row.kl;
        }
      }
    }
    return { nll: nll / this.scoredTokens, kl: withKl ? kl / this.scoredTokens : NaN };
  }
}

function logSumExp(x: Float32Array, off: number, V: number): number {
  let m = -Infinity;
  for (let i = 0; i < V; i++) if (x[off + i] > m) m = x[off + i];
  let s = 0;
  for (let i = 0; i < V; i++) s += Math.exp(x[off + i] - m);
  return m + Math.log(s);
}

/** KL(softmax(p) ‖ softmax(q)) and −log softmax(q)[target] of one row, in float64. */
function rowKlNll(p: Float32Array, q: Float32Array, off: number, V: number, target: number): RunScore {
  const zp = logSumExp(p, off, V);
  const zq = logSumExp(q, off, V);
  let kl = 0;
  for (let i = 0; i < V; i++) {
    const lp = p[off + i] - zp;
    kl += Math.exp(lp) * (lp - (q[off + i] - zq));
  }
  return { nll: zq - q[off + target], kl: Math.max(0, kl) };
}

export const MEASURED_FORMAT = 'lieq-measured/1';

export interface MeasureSettings {
  calib: string;
  samples: number;
  seqlen: number;
  seed: number;
  /** Bit widths measured, ascending. */
  allowed: number[];
  groupSize: number;
  symmetric: boolean;
  backbone: Backbone;
}

/** Costs of one layer, per width of settings.allowed (same order). */
export interface MeasuredLayer {
  layer: number;
  /** Mean calibration NLL with only this layer at that width − full-precision NLL (nats/token). */
  deltaNll: number[];
  /** Mean KL(p_fp ‖ p_q) per calibration token (nats). */
  kl: number[];
}

export interface MeasuredCosts {
  format: typeof MEASURED_FORMAT;
  settings: MeasureSettings;
  /** Full-precision mean NLL of the calibration tokens. */
  baseNll: number;
  /** Measured layers, ascending (all of them, or the hybrid candidates). */
  layers: MeasuredLayer[];
  /** Hybrid: the layers the geometry score pre-selected. */
  candidates?: number[];
  /** Decoder layer runs this call made (0 when everything came from the cache). */
  layerRuns: number;
  seconds: number;
}

export type CostMetric = 'kl' | 'nll';

/** Cost of each measured layer at each allowed width, for the chosen metric. */
export function costTable(m: MeasuredCosts, metric: CostMetric): Map<number, number[]> {
  return new Map(m.layers.map((l) => [l.layer, metric === 'kl' ? l.kl : l.deltaNll]));
}

export interface MeasureOptions extends Partial<MeasureSettings> {
  /** Measure only these layers (hybrid); default all. */
  layers?: number[];
  cacheDir?: string | null;
  /** Reuse an open model (residency 'all') and its quantized variants (the comparison does). */
  variants?: LayerVariants;
  onProgress?(p: { stage: string; done: number; total: number }): void;
}

export function resolveMeasureSettings(o: Partial<MeasureSettings>, maxPositions: number): MeasureSettings {
  const s: MeasureSettings = {
    calib: o.calib ?? 'wikitext2',
    samples: o.samples ?? 32,
    seqlen: Math.min(o.seqlen ?? 512, maxPositions),
    seed: o.seed ?? 0,
    allowed: [...new Set(o.allowed ?? [2, 3, 4])].sort((a, b) => a - b),
    groupSize: o.groupSize ?? 128,
    symmetric: o.symmetric ?? false,
    backbone: o.backbone ?? 'rtn',
  };
  if (!Number.isSafeInteger(s.samples) || s.samples < 1) throw new UsageError(`--samples: expected a positive integer, got ${s.samples}`);
  if (!Number.isSafeInteger(s.seqlen) || s.seqlen < 2) throw new UsageError(`--seqlen: expected an integer ≥ 2, got ${s.seqlen}`);
  if (s.allowed.length === 0 || !s.allowed.every((b) => [2, 3, 4, 8].includes(b))) throw new UsageError(`--allowed: bit widths must be among 2, 3, 4, 8 (got ${s.allowed.join(',')})`);
  return s;
}

/** The calibration sequences of `analyze` for these settings (same text, offsets and seed). */
export async function calibrationSequences(modelDir: string, s: Pick<MeasureSettings, 'calib' | 'samples' | 'seqlen' | 'seed'>): Promise<Int32Array[]> {
  const tokenizer = await loadTokenizer(modelDir);
  return sampleCalibration(tokenizer.encode(loadEvalText(s.calib).text, { addBos: true }), s.samples, s.seqlen, s.seed);
}

interface CacheFile {
  format: typeof MEASURED_FORMAT;
  fingerprint: string;
  settings: MeasureSettings;
  baseNll: number;
  layers: MeasuredLayer[];
}

/**
 * Single-layer sensitivity of `model` (opened from `modelDir` with residency 'all') at every
 * allowed width, with prefix reuse; cached and resumable.
 */
export async function measureLayerSensitivity(modelDir: string, model: RuntimeModel, o: MeasureOptions = {}): Promise<MeasuredCosts> {
  const t0 = performance.now();
  const dir = resolve(modelDir);
  const L = model.numLayers;
  const settings = resolveMeasureSettings(o, model.config.maxPositionEmbeddings);
  const wanted = [...new Set(o.layers ?? Array.from({ length: L }, (_, i) => i))].sort((a, b) => a - b);
  for (const l of wanted) if (!Number.isInteger(l) || l < 0 || l >= L) throw new UsageError(`layers: ${l} is not a layer of this ${L}-layer model`);
  const variants = o.variants ?? new LayerVariants(model, backboneQuantizer(settings.backbone), settings.groupSize, settings.symmetric);
  if (variants.model !== model || variants.groupSize !== settings.groupSize || variants.symmetric !== settings.symmetric)
    throw new UsageError('measure: the layer variants were made for another model or quantization settings');

  const fingerprint = modelFingerprint(dir);
  const key = createHash('sha256').update(JSON.stringify({ fingerprint, settings, format: MEASURED_FORMAT })).digest('hex').slice(0, 20);
  const cacheDir = o.cacheDir === undefined ? defaultCacheDir() : o.cacheDir;
  const cachePath = cacheDir ? join(cacheDir, `measured-${key}.json`) : null;
  const cache: CacheFile = { format: MEASURED_FORMAT, fingerprint, settings, baseNll: NaN, layers: [] };
  if (cachePath && existsSync(cachePath)) {
    const c = JSON.parse(readFileSync(cachePath, 'utf8')) as CacheFile;
    if (c.format === MEASURED_FORMAT && c.fingerprint === fingerprint && Array.isArray(c.layers)) Object.assign(cache, { baseNll: c.baseNll, layers: c.layers });
  }
  const have = new Map(cache.layers.map((m) => [m.layer, m]));
  const todo = wanted.filter((l) => !have.has(l));
  const result = (layerRuns: number): MeasuredCosts => ({
    format: MEASURED_FORMAT,
    settings,
    baseNll: cache.baseNll,
    layers: wanted.map((l) => have.get(l)!),
    layerRuns,
    seconds: (performance.now() - t0) / 1000,
  });
  if (todo.length === 0 && Number.isFinite(cache.baseNll)) return result(0);

  const seqs = await calibrationSequences(dir, settings);
  const scorer = new SequenceScorer(model, seqs);
  cache.baseNll = scorer.fpNll;
  const total = todo.length * settings.allowed.length;
  let done = 0;
  o.onProgress?.({ stage: 'measured sensitivity', done, total });
  // Walk full precision; at each layer to measure, run the suffix once per width.
  let hs: Float32Array[] = scorer.embedded;
  const last = todo.length ? todo[todo.length - 1] : -1;
  for (let l = 0; l <= last; l++) {
    if (todo.includes(l)) {
      const m: MeasuredLayer = { layer: l, deltaNll: [], kl: [] };
      for (const b of settings.allowed) {
        const q = await variants.get(l, b, () => hs);
        const out = scorer.runLayers(l, L - 1, hs, (j) => (j === l ? q : model.layer(j)));
        const s = scorer.score(out);
        m.deltaNll.push(s.nll - scorer.fpNll);
        m.kl.push(s.kl);
        o.onProgress?.({ stage: `layer ${l} at ${b} bits`, done: ++done, total });
        await new Promise((r) => setImmediate(r));
      }
      have.set(l, m);
      cache.layers = [...have.values()].sort((a, b) => a.layer - b.layer);
      if (cachePath) writeJsonAtomic(cachePath, cache);
    }
    if (l < last) hs = scorer.runLayers(l, l, hs, (j) => model.layer(j));
  }
  return result(scorer.layerRuns);
}

/** Hybrid candidates: the top `count` layers of the geometry score (ties: lower index first). */
export function hybridCandidates(geometry: readonly number[], count: number): number[] {
  const order = geometry.map((s, i) => [s, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]).map(([, i]) => i);
  return order.slice(0, Math.max(1, Math.min(count, geometry.length))).sort((a, b) => a - b);
}

/** "50%" or "4" -> a candidate count for L layers (at least 2 where the model has them). */
export function resolveCandidates(spec: string, L: number): number {
  const m = /^(\d+(?:\.\d+)?)%$/.exec(spec.trim());
  const n = m ? Math.ceil((Number(m[1]) / 100) * L) : Number(spec);
  if (!Number.isFinite(n) || n < 1 || (!m && !Number.isInteger(n))) throw new UsageError(`--candidates: expected a positive integer or a percentage such as "50%", got "${spec}"`);
  return Math.min(L, Math.max(n, Math.min(2, L)));
}

/** Measured cost of a whole plan on `scorer`'s sequences: the refinement's yardstick. */
export function planCost(scorer: SequenceScorer, variants: LayerVariants, metric: CostMetric): (bits: number[]) => Promise<number> {
  return async (bits) => {
    await variants.ensure(scorer, [bits]);
    const r = scorer.evaluate(variants.planLayers(bits));
    return metric === 'kl' ? r.kl : r.nll - scorer.fpNll;
  };
}

/**
 * `allocate --method exact` with measured costs: the DP over the additive model, then (with
 * `evaluate` and rounds > 0) the refinement pass. Layers without measured costs (not hybrid
 * candidates) stay at the lowest width.
 */
export async function allocateMeasured(
  m: MeasuredCosts,
  weights: number[],
  o: { budget: number; allowed: number[]; metric: CostMetric; rounds?: number; evaluate?: (bits: number[]) => Promise<number> },
): Promise<Allocation & { predictedCost: number; refinement?: Refinement }> {
  const allowed = [...new Set(o.allowed)].sort((a, b) => a - b);
  const missing = allowed.filter((b) => !m.settings.allowed.includes(b));
  if (missing.length)
    throw new UsageError(`--allowed ${allowed.join(',')}: widths ${missing.join(',')} were not measured (measured: ${m.settings.allowed.join(',')}); rerun \`lieq analyze\` with --allowed ${allowed.join(',')}`);
  const cols = allowed.map((b) => m.settings.allowed.indexOf(b));
  const table = costTable(m, o.metric);
  const costs = weights.map((_, l) => {
    const row = table.get(l);
    return row ? cols.map((j) => row[j]) : allowed.map((_b, j) => (j === 0 ? 0 : Infinity));
  });
  const start = allocateMinCost({ costs, weights, allowed, budget: o.budget });
  if (!o.evaluate || (o.rounds ?? 1) < 1) return start;
  const refinement = await refineAllocation(start.bits, { weights, allowed, budget: o.budget, movable: m.layers.map((l) => l.layer) }, o.evaluate, { rounds: o.rounds ?? 1 });
  return { ...start, bits: refinement.bits, nominalBits: nominalAverage(refinement.bits, weights), refinement };
}

/**
 * Allocation from an analysis's measured costs (`allocate --method exact`, and `quantize --bits`
 * with the default score): the DP over the additive model, then `rounds` refinement rounds that
 * re-measure whole plans on the analysis's calibration sequences (one forward pass per plan).
 * `label` names the analysis in errors (its file, or the model).
 */
export async function allocateFromMeasuredAnalysis(
  label: string,
  a: Analysis,
  o: { weights: number[]; allowed: number[]; budget: number; metric: CostMetric; rounds: number; common: { groupSize: number; backbone: Backbone; symmetric: boolean } },
): Promise<Allocation> {
  const m = a.measured;
  if (!m) throw new UsageError(`${label}: has no measured costs: run \`lieq analyze --score measured\` (or hybrid)`);
  const mismatch = (
    [
      ['--group', o.common.groupSize, m.settings.groupSize],
      ['--backbone', o.common.backbone, m.settings.backbone],
      ['--symmetric', o.common.symmetric, m.settings.symmetric],
    ] as const
  ).find(([, want, have]) => want !== have);
  if (mismatch) throw new UsageError(`${label}: costs were measured with ${mismatch[0]} ${mismatch[2]}, the plan asks for ${mismatch[1]}: pass the same setting or rerun \`lieq analyze\` with it`);
  if (o.rounds === 0) return allocateMeasured(m, o.weights, o);
  const model = RuntimeModel.open(a.model.dir, { residency: 'all' });
  try {
    const scorer = new SequenceScorer(model, await calibrationSequences(a.model.dir, m.settings));
    const variants = new LayerVariants(model, backboneQuantizer(m.settings.backbone), m.settings.groupSize, m.settings.symmetric);
    return await allocateMeasured(m, o.weights, { ...o, evaluate: planCost(scorer, variants, o.metric) });
  } finally {
    model.close();
  }
}
