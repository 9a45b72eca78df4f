/**
 * `lieq export gguf`: write a llama.cpp-loadable GGUF v3 file of a model under a plan. Every
 * linear is re-quantized from the original full-precision weights into the ggml type of its
 * layer's planned bits (2 → Q2_K, 3 → Q3_K, 4 → Q4_K, 8 → Q8_0, 16 → F16 by default), with
 * llama.cpp's fallback for rows that do not fit the type's block (ggml-types.ts). Token
 * embeddings are F16 (or --embedding-type), norms/biases F32; the output head follows the
 * plan's lmHeadBits (16 = F16, or shared with token_embd when the embeddings are tied).
 *
 * Streams tensor by tensor (one linear in f32 at a time, the embedding in row blocks) into a
 * temp file that is renamed into place only when complete.
 */
import { existsSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';

import { LINEAR_NAMES, linearShape, linearTensorName, readConfigJson, type ModelConfig } from '../io/config.js';
import { openModel, type ModelDir } from '../io/model.js';
import { SafetensorsFile } from '../io/safetensors.js';
import { checkPlanFits, loadPlan, type Plan } from '../lieq/plan.js';
import { native, NativeDType } from '../native.js';
import { removeStaleTemps } from '../util/atomic.js';
import { DataError, FileError, UsageError } from '../util/errors.js';
import { DEFAULT_BITS_TYPES, fallbackType, fileTypeFor, ggmlRowBytes, ggmlTraits, type BitsTypeMap, type GgmlTypeName } from './ggml-types.js';
import { GgufWriter, type GgufKv, type GgufTensorSpec } from './gguf-writer.js';
import { ggufArchitecture, ggufTensorName, permuteQkRows, permutesQk, type GgufArchitecture } from './tensor-names.js';
import { tokenizerKvs, tokenizerMetadata, type TokenizerMetadata } from './tokenizer-metadata.js';

/** GGML_QNT_VERSION: the current quantization-format version of ggml block types. */
export const GGML_QUANTIZATION_VERSION = 2;

export interface ExportGgufOptions {
  /** Full-precision model directory (weights are re-quantized from it). */
  model: string;
  /** Bits per decoder layer and lm_head bits; or `uniform` for every layer. */
  plan?: Plan;
  /** Every layer at these bits (2, 3, 4, 8 or 16) when no plan is given. */
  uniform?: number;
  out: string;
  types?: BitsTypeMap;
  embeddingType?: GgmlTypeName;
  /** Folder holding the tokenizer (default: the model directory). */
  tokenizerDir?: string;
  force?: boolean;
  onProgress?(p: { done: number; total: number; stage: string }): void;
}

export interface ExportedTensor {
  name: string;
  source: string;
  type: GgmlTypeName;
  /** The type the plan asked for, when a fallback replaced it. */
  wanted?: GgmlTypeName;
  dims: number[];
  bytes: number;
}

export interface ExportGgufResult {
  out: string;
  architecture: GgufArchitecture;
  bytes: number;
  seconds: number;
  tensors: ExportedTensor[];
  /** Weights per ggml type over all tensors. */
  weightsByType: Partial<Record<GgmlTypeName, number>>;
  fallbacks: number;
  tokenizer: { model: string; tokens: number; padded: number; source: string };
  layerBits: number[];
}

/** Where a quantized lieq directory says its full-precision source lives, if it says. */
export function quantizedSource(dir: string): { plan?: string; model?: string } | null {
  let raw: Record<string, unknown>;
  try {
    raw = readConfigJson(dir) as Record<string, unknown>;
  } catch {
    return null;
  }
  const qc = raw.quantization_config as { quant_method?: string } | undefined;
  if (!qc || qc.quant_method !== 'lieq') return null;
  const planFile = join(dir, 'plan.json');
  let model: string | undefined;
  const st = join(dir, 'model.safetensors');
  if (existsSync(st)) {
    const f = SafetensorsFile.open(st);
    try {
      model = f.metadata.source;
    } finally {
      f.close();
    }
  }
  return { ...(existsSync(planFile) ? { plan: planFile } : {}), ...(model ? { model } : {}) };
}

/**
 * Resolve the command's inputs: SOURCE is a model directory (then --plan or --uniform) or a
 * quantized lieq directory (its plan.json and recorded source model, overridable).
 */
export function resolveExportInputs(source: string, o: { plan?: string; model?: string; uniform?: number }): { model: string; plan?: Plan; uniform?: number } {
  const src = resolve(source);
  if (!existsSync(src) || !statSync(src).isDirectory()) throw new FileError(src, 'not a directory (expected a model or a quantized lieq directory)');
  const q = quantizedSource(src);
  if (q) {
    const model = o.model ?? q.model;
    if (!model) throw new UsageError(`${src} is a quantized directory that does not record its source model: pass --model DIR (the full-precision model)`);
    if (!existsSync(model)) throw new FileError(model, `source model of ${src} not found (pass --model DIR)`);
    const planFile = o.plan ?? q.plan;
    if (o.uniform !== undefined) return { model: resolve(model), uniform: o.uniform };
    if (!planFile) throw new UsageError(`${src} has no plan.json: pass --plan FILE`);
    return { model: resolve(model), plan: loadPlan(planFile) };
  }
  if (o.model && resolve(o.model) !== src) throw new UsageError('--model is only for a quantized SOURCE directory; SOURCE is already a model');
  if ((o.plan === undefined) === (o.uniform === undefined)) throw new UsageError('pass exactly one of --plan FILE or --uniform B');
  return o.plan ? { model: src, plan: loadPlan(o.plan) } : { model: src, uniform: o.uniform };
}

interface PlannedTensor extends GgufTensorSpec {
  source: string;
  wanted?: GgmlTypeName;
  /** How to produce the f32 data (rows in ggml order: dims[1] rows of dims[0]). */
  kind: 'embedding' | 'matrix' | 'vector' | 'rope_freqs';
  permuteHeads?: number;
}

function typeFor(bits: number, types: BitsTypeMap, where: string): GgmlTypeName {
  const t = types[bits];
  if (!t) throw new UsageError(`${where}: no ggml type for ${bits} bits (give one with --types ${bits}=TYPE)`);
  return t;
}

/** llama3 rope scaling as llama.cpp wants it: per-frequency factors in a rope_freqs tensor. */
function llama3RopeFactors(cfg: ModelConfig): Float32Array | null {
  const s = cfg.ropeScaling;
  if (!s || s.type !== 'llama3') return null;
  const half = cfg.headDim / 2;
  const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const freq = 1 / cfg.ropeTheta ** ((2 * i) / cfg.headDim);
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = s.factor;
    else {
      const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      out[i] = 1 / ((1 - smooth) / s.factor + smooth);
    }
  }
  return out;
}

/** Every tensor of the GGUF file, in write order, with its type. */
export function planGgufTensors(cfg: ModelConfig, layerBits: number[], lmHeadBits: number, types: BitsTypeMap, embeddingType: GgmlTypeName): PlannedTensor[] {
  const arch = ggufArchitecture(cfg);
  const out: PlannedTensor[] = [];
  const matrix = (source: string, rows: number, cols: number, wanted: GgmlTypeName, extra: Partial<PlannedTensor> = {}, kind: PlannedTensor['kind'] = 'matrix') => {
    const type = fallbackType(wanted, cols);
    out.push({ name: ggufTensorName(source)!, source, dims: [cols, rows], type, ...(type !== wanted ? { wanted } : {}), kind, ...extra });
  };
  const vector = (source: string, n: number) => out.push({ name: ggufTensorName(source)!, source, dims: [n], type: 'F32', kind: 'vector' });

  matrix('model.embed_tokens.weight', cfg.vocabSize, cfg.hiddenSize, embeddingType, {}, 'embedding');
  if (llama3RopeFactors(cfg)) out.push({ name: 'rope_freqs.weight', source: '(llama3 rope scaling)', dims: [cfg.headDim / 2], type: 'F32', kind: 'rope_freqs' });
  for (let l = 0; l < cfg.numLayers; l++) {
    const p = `model.layers.${l}`;
    vector(`${p}.input_layernorm.weight`, cfg.hiddenSize);
    const wanted = typeFor(layerBits[l], types, `layer ${l}`);
    for (const lin of LINEAR_NAMES) {
      const [rows, cols] = linearShape(cfg, lin);
      const name = linearTensorName(l, lin);
      const heads = lin === 'q_proj' ? cfg.numHeads : lin === 'k_proj' ? cfg.numKvHeads : undefined;
      const permute = heads !== undefined && permutesQk(arch) ? { permuteHeads: heads } : {};
      matrix(name, rows, cols, wanted, permute);
      const isQkv = lin === 'q_proj' || lin === 'k_proj' || lin === 'v_proj';
      const isMlp = lin === 'gate_proj' || lin === 'up_proj' || lin === 'down_proj';
      if ((isQkv && cfg.attentionBias) || (lin === 'o_proj' && cfg.oProjBias) || (isMlp && cfg.mlpBias)) {
        vector(name.replace(/weight$/, 'bias'), rows);
        Object.assign(out[out.length - 1], permute);
      }
    }
    if (cfg.qkNorm) {
      vector(`${p}.self_attn.q_norm.weight`, cfg.headDim);
      vector(`${p}.self_attn.k_norm.weight`, cfg.headDim);
    }
    vector(`${p}.post_attention_layernorm.weight`, cfg.hiddenSize);
  }
  vector('model.norm.weight', cfg.hiddenSize);
  // Tied embeddings at 16 bits: llama.cpp reuses token_embd when output.weight is absent.
  if (!(lmHeadBits === 16 && cfg.tieWordEmbeddings)) {
    const src = cfg.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
    const wanted = typeFor(lmHeadBits, types, 'lm_head');
    const type = fallbackType(wanted, cfg.hiddenSize);
    out.push({ name: 'output.weight', source: src, dims: [cfg.hiddenSize, cfg.vocabSize], type, ...(type !== wanted ? { wanted } : {}), kind: 'embedding' });
  }
  return out;
}

function modelKvs(cfg: ModelConfig, arch: GgufArchitecture, name: string, fileType: number, layerBits: number[], lmHeadBits: number, plan: Plan | undefined): GgufKv[] {
  const a = arch;
  const kvs: GgufKv[] = [
    { key: 'general.architecture', type: 'STRING', value: a },
    { key: 'general.name', type: 'STRING', value: name },
    { key: 'general.file_type', type: 'UINT32', value: fileType },
    { key: 'general.quantization_version', type: 'UINT32', value: GGML_QUANTIZATION_VERSION },
    { key: 'general.alignment', type: 'UINT32', value: 32 },
    { key: `${a}.context_length`, type: 'UINT32', value: cfg.maxPositionEmbeddings },
    { key: `${a}.embedding_length`, type: 'UINT32', value: cfg.hiddenSize },
    { key: `${a}.block_count`, type: 'UINT32', value: cfg.numLayers },
    { key: `${a}.feed_forward_length`, type: 'UINT32', value: cfg.intermediateSize },
    { key: `${a}.attention.head_count`, type: 'UINT32', value: cfg.numHeads },
    { key: `${a}.attention.head_count_kv`, type: 'UINT32', value: cfg.numKvHeads },
    { key: `${a}.attention.key_length`, type: 'UINT32', value: cfg.headDim },
    { key: `${a}.attention.value_length`, type: 'UINT32', value: cfg.headDim },
    { key: `${a}.attention.layer_norm_rms_epsilon`, type: 'FLOAT32', value: cfg.rmsNormEps },
    { key: `${a}.rope.dimension_count`, type: 'UINT32', value: cfg.headDim },
    { key: `${a}.rope.freq_base`, type: 'FLOAT32', value: cfg.ropeTheta },
    { key: `${a}.vocab_size`, type: 'UINT32', value: cfg.vocabSize },
  ];
  if (cfg.ropeScaling?.type === 'linear')
    kvs.push({ key: `${a}.rope.scaling.type`, type: 'STRING', value: 'linear' }, { key: `${a}.rope.scaling.factor`, type: 'FLOAT32', value: cfg.ropeScaling.factor });
  // lieq's own namespace: what the file was made from (the spec's community-key convention).
  kvs.push(
    { key: 'lieq.layer_bits', type: 'ARRAY', itemType: 'INT32', values: Int32Array.from(layerBits) },
    { key: 'lieq.lm_head_bits', type: 'UINT32', value: lmHeadBits },
    { key: 'lieq.plan_method', type: 'STRING', value: plan?.method ?? 'uniform' },
  );
  return kvs;
}

export async function exportGguf(o: ExportGgufOptions): Promise<ExportGgufResult> {
  const t0 = performance.now();
  const out = resolve(o.out);
  if (existsSync(out) && !o.force) throw new FileError(out, 'output already exists (pass --force to replace it)');
  if (existsSync(out) && statSync(out).isDirectory()) throw new FileError(out, 'is a directory; --out names the .gguf file to write');
  const m: ModelDir = openModel(resolve(o.model));
  try {
    const cfg = m.config;
    let layerBits: number[];
    let lmHeadBits: number;
    if (o.plan) {
      checkPlanFits(o.plan, cfg);
      layerBits = o.plan.layers.map((l) => l.bits);
      lmHeadBits = o.plan.lmHeadBits;
    } else {
      const u = o.uniform;
      if (u === undefined || ![2, 3, 4, 8, 16].includes(u)) throw new UsageError(`--uniform: expected 2, 3, 4, 8 or 16, got ${String(u)}`);
      layerBits = new Array(cfg.numLayers).fill(u);
      lmHeadBits = 16; // the head stays F16 (or shares token_embd) unless a plan says otherwise
    }
    const types = o.types ?? DEFAULT_BITS_TYPES;
    const arch = ggufArchitecture(cfg);
    const tensors = planGgufTensors(cfg, layerBits, lmHeadBits, types, o.embeddingType ?? 'F16');
    const tok: TokenizerMetadata = await tokenizerMetadata(resolve(o.tokenizerDir ?? o.model), cfg, arch);

    // file_type: the type holding most linear weights.
    const weightsByType: Partial<Record<GgmlTypeName, number>> = {};
    const linearWeights: Partial<Record<GgmlTypeName, number>> = {};
    for (const t of tensors) {
      const n = t.dims.reduce((a, b) => a * b, 1);
      weightsByType[t.type] = (weightsByType[t.type] ?? 0) + n;
      if (t.kind === 'matrix') linearWeights[t.type] = (linearWeights[t.type] ?? 0) + n;
    }
    const major = (Object.entries(linearWeights) as [GgmlTypeName, number][]).sort((x, y) => y[1] - x[1])[0]?.[0] ?? 'F16';
    const name = basename(resolve(o.model));
    const kvs = [...modelKvs(cfg, arch, name, fileTypeFor(major), layerBits, lmHeadBits, o.plan), ...tokenizerKvs(tok)];

    removeStaleTemps(out);
    const w = GgufWriter.create(out, kvs, tensors);
    const total = tensors.length;
    try {
      const ropeFactors = llama3RopeFactors(cfg);
      for (let i = 0; i < tensors.length; i++) {
        const t = tensors[i];
        if (t.kind === 'rope_freqs') w.write(t.name, bytesOf(ropeFactors!));
        else if (t.kind === 'vector') {
          let x = readChecked(m, t.source);
          if (t.permuteHeads) x = permuteQkRows(x, x.length, 1, t.permuteHeads);
          w.write(t.name, bytesOf(x));
        } else if (t.kind === 'matrix') {
          const [cols, rows] = t.dims;
          let x = readChecked(m, t.source);
          if (t.permuteHeads) x = permuteQkRows(x, rows, cols, t.permuteHeads);
          w.write(t.name, await encodeRows(t.type, x, rows, cols));
        } else {
          // Embedding-sized tables: blocks of rows, never the whole vocab × hidden in f32.
          const [cols, rows] = t.dims;
          const block = Math.max(1, Math.floor((64 * 2 ** 20) / (4 * cols)));
          for (let r0 = 0; r0 < rows; r0 += block) {
            const ids = Array.from({ length: Math.min(block, rows - r0) }, (_, k) => r0 + k);
            const x = m.checkpoint.readRowsF32(t.source, ids);
            checkFinite(m, t.source, x);
            w.write(t.name, await encodeRows(t.type, x, ids.length, cols));
          }
        }
        o.onProgress?.({ done: i + 1, total, stage: t.name });
      }
      w.commit();
    } catch (err) {
      w.abort();
      throw err;
    }
    return {
      out,
      architecture: arch,
      bytes: w.bytesWritten,
      seconds: (performance.now() - t0) / 1000,
      tensors: tensors.map((t) => ({ name: t.name, source: t.source, type: t.type, ...(t.wanted ? { wanted: t.wanted } : {}), dims: t.dims, bytes: t.dims.slice(1).reduce((a, b) => a * b, 1) * ggmlRowBytes(t.type, t.dims[0]) })),
      weightsByType,
      fallbacks: tensors.filter((t) => t.wanted).length,
      tokenizer: { model: tok.model, tokens: tok.tokens.length, padded: tok.padded, source: tok.source },
      layerBits,
    };
  } finally {
    m.close();
  }
}

function bytesOf(x: Float32Array): Uint8Array {
  return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
}

function checkFinite(m: ModelDir, name: string, x: Float32Array): void {
  const bad = native().countNonFinite(x);
  if (bad > 0) throw new DataError(`${m.checkpoint.info(name).file}: tensor "${name}" has ${bad} NaN/Inf values; refusing to export it`);
}

function readChecked(m: ModelDir, name: string): Float32Array {
  const x = m.checkpoint.readF32(name);
  checkFinite(m, name, x);
  return x;
}

/** rows × cols f32 → bytes of `type` (native, multi-threaded over rows). */
export async function encodeRows(type: GgmlTypeName, x: Float32Array, rows: number, cols: number): Promise<Uint8Array> {
  if (type === 'F32') return bytesOf(x);
  const dst = new Uint8Array(rows * ggmlRowBytes(type, cols));
  if (type === 'F16') native().fromF32(x, NativeDType.F16, dst);
  else await native().ggmlQuantizeAsync(ggmlTraits(type).id, x, rows, cols, dst);
  return dst;
}
