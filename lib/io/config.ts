/**
 * `config.json` of a Hugging Face causal LM, normalised into one typed ModelConfig for the
 * architectures lieq runs: LLaMA (incl. LLaMA-3 rope scaling), Qwen2 (q/k/v biases),
 * Qwen3 (q/k RMSNorm, explicit head_dim) and Mistral. Handles both the transformers 4
 * (`rope_theta`, `rope_scaling`) and 5 (`rope_parameters`) spellings. Anything else is
 * refused with an error naming the architecture or field.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { FileError, FormatError, UnsupportedError } from '../util/errors.js';
import { jsonSnippet } from '../util/json-snippet.js';

export type Family = 'llama' | 'qwen2' | 'qwen3' | 'mistral';

export const SUPPORTED_ARCHITECTURES: Record<string, Family> = {
  LlamaForCausalLM: 'llama',
  Qwen2ForCausalLM: 'qwen2',
  Qwen3ForCausalLM: 'qwen3',
  MistralForCausalLM: 'mistral',
};

export type RopeScaling =
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number }
  | { type: 'linear'; factor: number };

export interface ModelConfig {
  /** The `architectures[0]` string of config.json. */
  architecture: string;
  family: Family;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  rmsNormEps: number;
  tieWordEmbeddings: boolean;
  /** Qwen3: RMSNorm over each head of q and k before RoPE. */
  qkNorm: boolean;
  /** Qwen2: biases on q/k/v projections. */
  attentionBias: boolean;
  /** Bias on o_proj (LLaMA attention_bias applies to o too). */
  oProjBias: boolean;
  mlpBias: boolean;
  bosTokenId: number | null;
  eosTokenIds: number[];
  initializerRange: number;
  /** Keys older than this many positions are masked (Mistral); null = full causal attention. */
  slidingWindow: number | null;
  /** dtype the checkpoint says it was saved in ("float32", "bfloat16", ...), if stated. */
  torchDtype: string | null;
}

export const CONFIG_FILE = 'config.json';

/**
 * Limits far above any published model, low enough that what a hostile config.json implies
 * stays small: a layer count of 10^15 would otherwise make expectedTensors() build 10^16 names.
 */
export const MAX_LAYERS = 4096;
export const MAX_SIZE = 2 ** 24;

/** Read and normalise `<dir>/config.json`. */
export function loadConfig(dir: string): ModelConfig {
  return normaliseConfig(readConfigJson(dir), join(dir, CONFIG_FILE));
}

/** `<dir>/config.json` parsed but not normalised (callers that need extra fields, e.g. quantization_config). */
export function readConfigJson(dir: string): unknown {
  const path = join(dir, CONFIG_FILE);
  if (!existsSync(path)) throw new FileError(path, 'file not found (a model directory needs config.json)');
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new FormatError(path, `not valid JSON (${(err as Error).message})`, { cause: err });
  }
}

/** Normalise a parsed config object; `path` names the file in errors. */
export function normaliseConfig(raw: unknown, path = CONFIG_FILE): ModelConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new FormatError(path, 'must be a JSON object');
  const c = raw as Record<string, unknown>;
  const archs = c.architectures;
  if (!Array.isArray(archs) || archs.length === 0 || typeof archs[0] !== 'string')
    throw new FormatError(path, '"architectures" must be a non-empty array of strings');
  const architecture = archs[0] as string;
  const family = SUPPORTED_ARCHITECTURES[architecture];
  if (!family)
    throw new UnsupportedError(
      `${path}: architecture "${architecture}" is not supported (supported: ${Object.keys(SUPPORTED_ARCHITECTURES).join(', ')})`,
    );

  const int = (key: string, fallback?: number, max = MAX_SIZE): number => {
    const v = c[key] ?? fallback;
    if (!Number.isSafeInteger(v) || (v as number) <= 0)
      throw new FormatError(path, `"${key}" must be a positive integer, got ${jsonSnippet(c[key])}`);
    if ((v as number) > max) throw new FormatError(path, `"${key}" is ${v as number}, more than the limit ${max} (corrupt config.json?)`);
    return v as number;
  };
  const num = (key: string, fallback?: number): number => {
    const v = c[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)
      throw new FormatError(path, `"${key}" must be a positive number, got ${jsonSnippet(c[key])}`);
    return v;
  };
  const bool = (key: string, fallback: boolean): boolean => {
    const v = c[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') throw new FormatError(path, `"${key}" must be true or false, got ${jsonSnippet(v)}`);
    return v;
  };

  const hiddenSize = int('hidden_size');
  const numLayers = int('num_hidden_layers', undefined, MAX_LAYERS);
  const numHeads = int('num_attention_heads');
  const numKvHeads = int('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0)
    throw new FormatError(path, `num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`);
  let headDim: number;
  if (c.head_dim === undefined || c.head_dim === null) {
    if (hiddenSize % numHeads !== 0)
      throw new FormatError(path, `hidden_size (${hiddenSize}) is not divisible by num_attention_heads (${numHeads}) and no head_dim is given`);
    headDim = hiddenSize / numHeads;
  } else {
    headDim = int('head_dim');
  }
  if (headDim % 2 !== 0) throw new FormatError(path, `head_dim (${headDim}) must be even for rotary embeddings`);
  const act = c.hidden_act ?? c.hidden_activation ?? 'silu';
  if (act !== 'silu') throw new UnsupportedError(`${path}: hidden_act ${jsonSnippet(act)} is not supported (only silu / SwiGLU)`);

  // Rope: transformers 5 folds theta and scaling into rope_parameters.
  const rp = (c.rope_parameters ?? null) as Record<string, unknown> | null;
  const ropeTheta = rp && typeof rp.rope_theta === 'number' ? rp.rope_theta : num('rope_theta', 10000);
  const scalingRaw = (c.rope_scaling ?? (rp && rp.rope_type !== undefined ? rp : null)) as Record<string, unknown> | null;
  const ropeScaling = parseRopeScaling(scalingRaw, path);

  // transformers' defaults for these four architectures: untied.
  const tie = bool('tie_word_embeddings', false);
  const eos = c.eos_token_id;
  const eosTokenIds = Array.isArray(eos) ? (eos.filter((x) => Number.isSafeInteger(x)) as number[]) : Number.isSafeInteger(eos) ? [eos as number] : [];
  const bos = Number.isSafeInteger(c.bos_token_id) ? (c.bos_token_id as number) : null;
  const attentionBiasFlag = bool('attention_bias', false);
  // Sliding-window attention (Mistral; Qwen with use_sliding_window): the runtime masks keys
  // older than the window. Qwen applies it only when use_sliding_window is true.
  const window = c.sliding_window;
  const useWindow = family === 'mistral' ? true : bool('use_sliding_window', false);
  const slidingWindow = useWindow && Number.isSafeInteger(window) && (window as number) > 0 ? (window as number) : null;
  if (useWindow && family !== 'mistral')
    throw new UnsupportedError(`${path}: use_sliding_window=true (per-layer windows) is not supported for ${architecture}`);

  return {
    architecture,
    family,
    hiddenSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    intermediateSize: int('intermediate_size'),
    vocabSize: int('vocab_size'),
    maxPositionEmbeddings: int('max_position_embeddings', 2048),
    ropeTheta,
    ropeScaling,
    rmsNormEps: num('rms_norm_eps', 1e-6),
    tieWordEmbeddings: tie,
    qkNorm: family === 'qwen3',
    // Qwen2 always has q/k/v biases (its config has no flag); LLaMA/Qwen3 follow attention_bias.
    attentionBias: family === 'qwen2' ? true : attentionBiasFlag,
    oProjBias: family === 'qwen2' ? false : attentionBiasFlag,
    mlpBias: bool('mlp_bias', false),
    bosTokenId: bos,
    eosTokenIds,
    initializerRange: typeof c.initializer_range === 'number' ? c.initializer_range : 0.02,
    slidingWindow,
    torchDtype: typeof c.torch_dtype === 'string' ? c.torch_dtype : typeof c.dtype === 'string' ? c.dtype : null,
  };
}

function parseRopeScaling(s: Record<string, unknown> | null, path: string): RopeScaling | null {
  if (!s) return null;
  const type = s.rope_type ?? s.type;
  if (type === undefined || type === 'default') return null;
  const factor = s.factor;
  if (typeof factor !== 'number' || !(factor > 0)) throw new FormatError(path, `rope scaling ${jsonSnippet(type)} needs a positive "factor"`);
  if (type === 'linear') return { type: 'linear', factor };
  if (type === 'llama3') {
    const need = (k: string): number => {
      const v = s[k];
      if (typeof v !== 'number' || !(v > 0)) throw new FormatError(path, `llama3 rope scaling needs a positive "${k}"`);
      return v;
    };
    return {
      type: 'llama3',
      factor,
      lowFreqFactor: need('low_freq_factor'),
      highFreqFactor: need('high_freq_factor'),
      originalMaxPositionEmbeddings: need('original_max_position_embeddings'),
    };
  }
  throw new UnsupportedError(`${path}: rope scaling type ${jsonSnippet(type)} is not supported (supported: default, linear, llama3)`);
}

/** The seven linear projections of a decoder layer, in the order lieq processes them. */
export const LINEAR_NAMES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export type LinearName = (typeof LINEAR_NAMES)[number];

export function linearTensorName(layer: number, linear: LinearName): string {
  const block = linear.endsWith('_proj') && ['gate_proj', 'up_proj', 'down_proj'].includes(linear) ? 'mlp' : 'self_attn';
  return `model.layers.${layer}.${block}.${linear}.weight`;
}

/** [out, in] of each linear of a decoder layer. */
export function linearShape(cfg: ModelConfig, linear: LinearName): [number, number] {
  const h = cfg.hiddenSize;
  const q = cfg.numHeads * cfg.headDim;
  const kv = cfg.numKvHeads * cfg.headDim;
  switch (linear) {
    case 'q_proj': return [q, h];
    case 'k_proj': return [kv, h];
    case 'v_proj': return [kv, h];
    case 'o_proj': return [h, q];
    case 'gate_proj': return [cfg.intermediateSize, h];
    case 'up_proj': return [cfg.intermediateSize, h];
    case 'down_proj': return [h, cfg.intermediateSize];
  }
}

export interface ExpectedTensor {
  name: string;
  shape: number[];
  role: 'embedding' | 'norm' | 'linear' | 'bias' | 'lm_head';
  layer?: number;
}

/** Every tensor a checkpoint of this config must provide (lm_head only when untied). */
export function expectedTensors(cfg: ModelConfig): ExpectedTensor[] {
  const out: ExpectedTensor[] = [{ name: 'model.embed_tokens.weight', shape: [cfg.vocabSize, cfg.hiddenSize], role: 'embedding' }];
  for (let l = 0; l < cfg.numLayers; l++) {
    const p = `model.layers.${l}`;
    out.push({ name: `${p}.input_layernorm.weight`, shape: [cfg.hiddenSize], role: 'norm', layer: l });
    for (const lin of LINEAR_NAMES) {
      const shape = linearShape(cfg, lin);
      out.push({ name: linearTensorName(l, lin), shape, role: 'linear', layer: l });
      const isQkv = lin === 'q_proj' || lin === 'k_proj' || lin === 'v_proj';
      const isMlp = lin === 'gate_proj' || lin === 'up_proj' || lin === 'down_proj';
      if ((isQkv && cfg.attentionBias) || (lin === 'o_proj' && cfg.oProjBias) || (isMlp && cfg.mlpBias))
        out.push({ name: linearTensorName(l, lin).replace(/weight$/, 'bias'), shape: [shape[0]], role: 'bias', layer: l });
    }
    if (cfg.qkNorm) {
      out.push({ name: `${p}.self_attn.q_norm.weight`, shape: [cfg.headDim], role: 'norm', layer: l });
      out.push({ name: `${p}.self_attn.k_norm.weight`, shape: [cfg.headDim], role: 'norm', layer: l });
    }
    out.push({ name: `${p}.post_attention_layernorm.weight`, shape: [cfg.hiddenSize], role: 'norm', layer: l });
  }
  out.push({ name: 'model.norm.weight', shape: [cfg.hiddenSize], role: 'norm' });
  if (!cfg.tieWordEmbeddings) out.push({ name: 'lm_head.weight', shape: [cfg.vocabSize, cfg.hiddenSize], role: 'lm_head' });
  return out;
}
