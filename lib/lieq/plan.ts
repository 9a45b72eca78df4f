/**
 * The allocation plan: a small JSON file (layer → bits, group size, quantizer backbone) that
 * `allocate` writes, users may edit, and `quantize` reads. Also the exact bit accounting of a
 * plan on a model: the paper's nominal average and the true storage cost.
 */
import { readFileSync } from 'node:fs';

import { linearShape, LINEAR_NAMES, type ModelConfig } from '../io/config.js';
import { packedBytes, resolveLayout } from '../quant/layout.js';
import { FileError, FormatError } from '../util/errors.js';
import { jsonSnippet } from '../util/json-snippet.js';
import type { AllocationMethod } from './allocate.js';

export const PLAN_FORMAT = 'lieq-plan/1';
export type Backbone = 'rtn' | 'gptq';
export const ALLOWED_BITS = [2, 3, 4, 8] as const;

export interface LayerPlan {
  layer: number;
  bits: number;
  groupSize: number;
  backbone: Backbone;
}

export interface Plan {
  format: typeof PLAN_FORMAT;
  /** What the plan was made for; quantize refuses a model whose layer count differs. */
  model: { architecture: string; numLayers: number; hiddenSize: number };
  method: AllocationMethod;
  /** Nominal budget asked for (absent for uniform/manual plans). */
  budget?: number;
  score?: string;
  seed?: number;
  symmetric: boolean;
  /** lm_head storage: 16 = fp16, or packed at 8/4 bits with lmHeadGroupSize. */
  lmHeadBits: 16 | 8 | 4;
  lmHeadGroupSize: number;
  layers: LayerPlan[];
}

export function makePlan(
  cfg: ModelConfig,
  bits: number[],
  o: { method: AllocationMethod; budget?: number; score?: string; seed?: number; groupSize?: number; backbone?: Backbone; symmetric?: boolean; lmHeadBits?: 16 | 8 | 4 },
): Plan {
  const g = o.groupSize ?? 128;
  return {
    format: PLAN_FORMAT,
    model: { architecture: cfg.architecture, numLayers: cfg.numLayers, hiddenSize: cfg.hiddenSize },
    method: o.method,
    ...(o.budget !== undefined ? { budget: o.budget } : {}),
    ...(o.score !== undefined ? { score: o.score } : {}),
    ...(o.seed !== undefined ? { seed: o.seed } : {}),
    symmetric: o.symmetric ?? false,
    lmHeadBits: o.lmHeadBits ?? 16,
    lmHeadGroupSize: g,
    layers: bits.map((b, layer) => ({ layer, bits: b, groupSize: g, backbone: o.backbone ?? 'rtn' })),
  };
}

/** Validate a parsed plan; `file` names the source in errors. */
export function validatePlan(raw: unknown, file = 'plan'): Plan {
  const fail = (msg: string): never => {
    throw new FormatError(file, msg, { code: 'E_PLAN' });
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return fail('a plan must be a JSON object');
  const p = raw as Record<string, unknown>;
  if (p.format !== PLAN_FORMAT) fail(`"format" must be "${PLAN_FORMAT}", got ${jsonSnippet(p.format)}`);
  const m = p.model as Record<string, unknown> | undefined;
  if (!m || typeof m.architecture !== 'string' || !Number.isSafeInteger(m.numLayers) || !Number.isSafeInteger(m.hiddenSize))
    fail('"model" must have architecture (string), numLayers and hiddenSize (integers)');
  if (typeof p.symmetric !== 'boolean') fail('"symmetric" must be true or false');
  if (![16, 8, 4].includes(p.lmHeadBits as number)) fail(`"lmHeadBits" must be 16, 8 or 4, got ${jsonSnippet(p.lmHeadBits)}`);
  if (!Number.isSafeInteger(p.lmHeadGroupSize) || (p.lmHeadGroupSize as number) <= 0) fail('"lmHeadGroupSize" must be a positive integer');
  if (!Array.isArray(p.layers)) fail('"layers" must be an array');
  const layers = p.layers as unknown[];
  if (layers.length !== (m as { numLayers: number }).numLayers)
    fail(`"layers" has ${layers.length} entries but model.numLayers is ${(m as { numLayers: number }).numLayers}`);
  layers.forEach((l, i) => {
    const e = l as Record<string, unknown>;
    const where = `layers[${i}]`;
    if (typeof e !== 'object' || e === null) fail(`${where} must be an object`);
    if (e.layer !== i) fail(`${where}.layer must be ${i} (layers in order), got ${jsonSnippet(e.layer)}`);
    if (!(ALLOWED_BITS as readonly number[]).includes(e.bits as number)) fail(`${where}.bits must be 2, 3, 4 or 8, got ${jsonSnippet(e.bits)}`);
    if (!Number.isSafeInteger(e.groupSize) || (e.groupSize as number) < 32) fail(`${where}.groupSize must be 32, 64, 128 or a per-channel size, got ${jsonSnippet(e.groupSize)}`);
    if (e.backbone !== 'rtn' && e.backbone !== 'gptq') fail(`${where}.backbone must be "rtn" or "gptq", got ${jsonSnippet(e.backbone)}`);
  });
  return p as unknown as Plan;
}

export function loadPlan(path: string): Plan {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new FileError(path, code === 'ENOENT' ? 'plan file not found (write one with `lieq allocate`, or pass --uniform B or --bits B instead of --plan)' : `cannot read plan file (${code ?? String(err)})`, { cause: err });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new FormatError(path, `not valid JSON (${(err as Error).message})`, { cause: err, code: 'E_PLAN' });
  }
  return validatePlan(raw, path);
}

/** A plan must fit the model it is applied to. */
export function checkPlanFits(plan: Plan, cfg: ModelConfig, file = 'plan'): void {
  if (plan.model.numLayers !== cfg.numLayers || plan.model.hiddenSize !== cfg.hiddenSize)
    throw new FormatError(file, `plan is for a model with ${plan.model.numLayers} layers × hidden ${plan.model.hiddenSize}, this model has ${cfg.numLayers} × ${cfg.hiddenSize}`, { code: 'E_PLAN' });
  // A group size other than 32/64/128 means per channel, so it must cover every input width.
  const widths = [...new Set(LINEAR_NAMES.map((n) => linearShape(cfg, n)[1]))];
  const fits = (g: number, ins: number[]) => ins.every((i) => (ALLOWED_GROUPS as readonly number[]).includes(g) || g >= Math.ceil(i / 32) * 32);
  const need = (ins: number[]) => `32, 64, 128 or a per-channel size ≥ ${Math.max(...ins.map((i) => Math.ceil(i / 32) * 32))}`;
  plan.layers.forEach((lp, i) => {
    if (!fits(lp.groupSize, widths)) throw new FormatError(file, `layers[${i}].groupSize must be ${need(widths)} for this model, got ${lp.groupSize}`, { code: 'E_PLAN' });
  });
  if (plan.lmHeadBits !== 16 && !fits(plan.lmHeadGroupSize, [cfg.hiddenSize]))
    throw new FormatError(file, `lmHeadGroupSize must be ${need([cfg.hiddenSize])} for this model, got ${plan.lmHeadGroupSize}`, { code: 'E_PLAN' });
}

const ALLOWED_GROUPS = [32, 64, 128] as const;

/** Weights in the seven decoder linears of one layer. */
export function layerLinearWeights(cfg: ModelConfig): number {
  return LINEAR_NAMES.reduce((s, n) => {
    const [o, i] = linearShape(cfg, n);
    return s + o * i;
  }, 0);
}

export interface BitAccounting {
  /** Σ n_l·b_l / Σ n_l over decoder linears (the paper's "2.05 bits"). */
  nominalBits: number;
  /** Decoder linears incl. scales/zeros (and padding) per original weight. */
  decoderBitsPerWeight: number;
  /** Whole model: every stored byte × 8 / parameter count (embeddings, lm_head, norms included). */
  modelBitsPerWeight: number;
  packedBytes: number;
  fp16Bytes: number;
  parameters: number;
  perLayer: { layer: number; bits: number; groupSize: number; bytes: number; bitsPerWeight: number }[];
  embeddingBytes: number;
  lmHeadBytes: number;
  /** Norms and biases, stored as f32. */
  otherBytes: number;
}

/**
 * Exact storage cost of a plan on a model. Embeddings are fp16; lm_head fp16 or packed per
 * plan (tied embeddings keep one fp16 copy unless lm_head is packed, which then adds its own
 * packed copy); norms and biases f32.
 */
export function accountPlan(plan: Plan, cfg: ModelConfig): BitAccounting {
  const perLayer: BitAccounting['perLayer'] = [];
  let decoderBytes = 0;
  let nominalNum = 0;
  let decoderWeights = 0;
  let otherBytes = 0;
  for (const lp of plan.layers) {
    let bytes = 0;
    let n = 0;
    for (const name of LINEAR_NAMES) {
      const [o, i] = linearShape(cfg, name);
      bytes += packedBytes(o, resolveLayout(i, lp.groupSize), lp.bits, plan.symmetric);
      n += o * i;
    }
    perLayer.push({ layer: lp.layer, bits: lp.bits, groupSize: lp.groupSize, bytes, bitsPerWeight: (8 * bytes) / n });
    decoderBytes += bytes;
    nominalNum += lp.bits * n;
    decoderWeights += n;
    // norms (2 per layer, + q/k norms) and biases, in f32
    let other = 2 * cfg.hiddenSize + (cfg.qkNorm ? 2 * cfg.headDim : 0);
    if (cfg.attentionBias) other += (cfg.numHeads + 2 * cfg.numKvHeads) * cfg.headDim;
    otherBytes += 4 * other;
  }
  otherBytes += 4 * cfg.hiddenSize; // final norm
  const embedParams = cfg.vocabSize * cfg.hiddenSize;
  const embeddingBytes = 2 * embedParams;
  let lmHeadBytes = 0;
  if (plan.lmHeadBits === 16) lmHeadBytes = cfg.tieWordEmbeddings ? 0 : 2 * embedParams;
  else lmHeadBytes = packedBytes(cfg.vocabSize, resolveLayout(cfg.hiddenSize, plan.lmHeadGroupSize), plan.lmHeadBits, plan.symmetric);
  const parameters = decoderWeights + embedParams * (cfg.tieWordEmbeddings ? 1 : 2) + otherBytes / 4;
  const total = decoderBytes + embeddingBytes + lmHeadBytes + otherBytes;
  return {
    nominalBits: nominalNum / decoderWeights,
    decoderBitsPerWeight: (8 * decoderBytes) / decoderWeights,
    modelBitsPerWeight: (8 * total) / parameters,
    packedBytes: total,
    fp16Bytes: 2 * parameters,
    parameters,
    perLayer,
    embeddingBytes,
    lmHeadBytes,
    otherBytes,
  };
}
