/**
 * Loading a quantized model directory (packed-model.ts) as a runtime WeightSource, so eval,
 * generate and bench run packed models exactly like full-precision ones.
 */
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { Checkpoint } from '../io/checkpoint.js';
import { CONFIG_FILE, linearShape, linearTensorName, LINEAR_NAMES, loadConfig, normaliseConfig, readConfigJson, type LinearName, type ModelConfig } from '../io/config.js';
import type { PackedBits } from '../kernels/packed-format.js';
import type { PackedLinear } from '../kernels/quant.js';
import { denseFromWeights, packedLinear, type RuntimeLinear } from '../runtime/linear.js';
import { hasBias, RuntimeModel, type LayerWeights, type LoadOptions, type WeightSource } from '../runtime/model.js';
import { DataError, FileError, FormatError, UsageError } from '../util/errors.js';
import { jsonSnippet } from '../util/json-snippet.js';
import { resolveLayout } from './layout.js';
import { packedNames, PACKED_FORMAT, type QuantizationConfig } from './packed-model.js';

/** The lieq quantization_config of a directory, or null for a full-precision model. */
export function readQuantizationConfig(dir: string): QuantizationConfig | null {
  const path = join(dir, CONFIG_FILE);
  const raw = readConfigJson(dir);
  const q = (typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>).quantization_config : undefined) as QuantizationConfig | undefined;
  if (!q) return null;
  if (typeof q !== 'object' || q.quant_method !== 'lieq' || q.format !== PACKED_FORMAT)
    throw new FormatError(path, `quantization_config is not a lieq packed model (quant_method ${jsonSnippet(q.quant_method)}, format ${jsonSnippet(q.format)}); only ${PACKED_FORMAT} is supported`);
  return validateQuantizationConfig(q, path);
}

const PACKED_LAYER_BITS = [2, 3, 4, 8];
const LM_HEAD_BITS = [16, 8, 4];

/** Field types and values of a lieq quantization_config (the layer count is checked against the model later). */
function validateQuantizationConfig(q: QuantizationConfig, path: string): QuantizationConfig {
  const fail = (detail: string): never => {
    throw new FormatError(path, `quantization_config: ${detail}`, { code: 'E_QUANT_CONFIG' });
  };
  const group = (v: unknown, where: string): void => {
    if (!Number.isSafeInteger(v) || (v as number) < 32) fail(`${where}.group_size must be an integer >= 32, got ${jsonSnippet(v)}`);
  };
  if (typeof q.symmetric !== 'boolean') fail(`symmetric must be true or false, got ${jsonSnippet(q.symmetric)}`);
  if (!Array.isArray(q.layers)) fail(`layers must be an array, got ${jsonSnippet(q.layers)}`);
  q.layers.forEach((l, i) => {
    if (typeof l !== 'object' || l === null) fail(`layers[${i}] must be an object, got ${jsonSnippet(l)}`);
    if (!PACKED_LAYER_BITS.includes(l.bits)) fail(`layers[${i}].bits must be 2, 3, 4 or 8, got ${jsonSnippet(l.bits)}`);
    group(l.group_size, `layers[${i}]`);
  });
  const h = q.lm_head as unknown;
  if (typeof h !== 'object' || h === null) fail(`lm_head must be an object, got ${jsonSnippet(h)}`);
  if (!LM_HEAD_BITS.includes(q.lm_head.bits)) fail(`lm_head.bits must be 16, 8 or 4, got ${jsonSnippet(q.lm_head.bits)}`);
  if (q.lm_head.bits !== 16) group(q.lm_head.group_size, 'lm_head');
  return q;
}

export function isQuantizedDir(dir: string): boolean {
  return readQuantizationConfig(dir) !== null;
}

/** A WeightSource over a lieq packed model directory. */
export function packedModelSource(dirIn: string): WeightSource {
  const dir = resolve(dirIn);
  const path = join(dir, CONFIG_FILE);
  const raw = readConfigJson(dir);
  const q = readQuantizationConfig(dir);
  if (!q) throw new FormatError(path, 'not a quantized model (no quantization_config)');
  const config: ModelConfig = normaliseConfig(raw, path);
  if (!Array.isArray(q.layers) || q.layers.length !== config.numLayers)
    throw new FormatError(path, `quantization_config.layers has ${q.layers?.length} entries, the model has ${config.numLayers} layers`);
  const ck = Checkpoint.open(dir);
  const h = config.hiddenSize;
  const need = (name: string, numel: number): Float32Array => {
    if (!ck.has(name)) throw new FormatError(dir, `quantized checkpoint lacks tensor "${name}"`, { code: 'E_NO_TENSOR' });
    const t = ck.readF32(name);
    if (t.length !== numel) throw new FormatError(ck.info(name).file, `tensor "${name}" has ${t.length} values, expected ${numel}`);
    return t;
  };
  const packed = (weightName: string, out: number, inF: number, bits: number, group: number): PackedLinear => {
    const n = packedNames(weightName);
    let layout: ReturnType<typeof resolveLayout>;
    try {
      layout = resolveLayout(inF, group);
    } catch (err) {
      throw new FormatError(path, `quantization_config: group_size ${group} does not fit "${weightName}" (${inF} inputs): ${(err as Error).message}`, { cause: err, code: 'E_QUANT_CONFIG' });
    }
    const bytes = (name: string) => {
      if (!ck.has(name)) throw new FormatError(dir, `quantized checkpoint lacks tensor "${name}"`, { code: 'E_NO_TENSOR' });
      return new Uint8Array(ck.readBytes(name));
    };
    const s = bytes(n.scales);
    const scales = new Uint16Array(s.buffer, s.byteOffset, s.byteLength >> 1);
    // An fp16 scale with an all-ones exponent is Inf/NaN: every weight of its group would be.
    const bad = scales.findIndex((h) => (h & 0x7c00) === 0x7c00);
    if (bad >= 0) throw new DataError(`${ck.info(n.scales).file}: tensor "${n.scales}" has a NaN/Inf scale at index ${bad}; refusing to load it`);
    const p: PackedLinear = {
      outFeatures: out,
      inFeatures: layout.paddedIn,
      bits: bits as PackedBits,
      groupSize: layout.groupSize,
      symmetric: q.symmetric,
      qweight: bytes(n.qweight),
      scales,
    };
    if (!q.symmetric) p.zeros = bytes(n.zeros);
    return p;
  };
  const linear = (weightName: string, out: number, inF: number, bits: number, group: number, bias: Float32Array | null): RuntimeLinear => {
    const p = packed(weightName, out, inF, bits, group);
    try {
      return packedLinear(p, bias, inF);
    } catch (err) {
      // Sizes come from the file: name it and the tensor rather than an API argument.
      if (!(err instanceof UsageError)) throw err;
      throw new FormatError(ck.info(packedNames(weightName).qweight).file, `packed tensors of "${weightName}" do not match the config: ${err.message}`, { cause: err, code: 'E_PACKED_SHAPE' });
    }
  };
  return {
    config,
    label: dir,
    embedding: () => need('model.embed_tokens.weight', config.vocabSize * h),
    finalNorm: () => need('model.norm.weight', h),
    lmHead: (embedding) => {
      if (q.lm_head.bits === 16)
        return config.tieWordEmbeddings ? denseFromWeights(embedding, config.vocabSize, h) : denseFromWeights(need('lm_head.weight', config.vocabSize * h), config.vocabSize, h);
      return linear('lm_head.weight', config.vocabSize, h, q.lm_head.bits, q.lm_head.group_size, null);
    },
    layer: (index): LayerWeights => {
      const p = `model.layers.${index}`;
      const lq = q.layers[index];
      const linears = {} as Record<LinearName, RuntimeLinear>;
      for (const name of LINEAR_NAMES) {
        const [out, inF] = linearShape(config, name);
        const wn = linearTensorName(index, name);
        const bias = hasBias(config, name) ? need(wn.replace(/weight$/, 'bias'), out) : null;
        linears[name] = linear(wn, out, inF, lq.bits, lq.group_size, bias);
      }
      return {
        index,
        inputNorm: need(`${p}.input_layernorm.weight`, h),
        postAttentionNorm: need(`${p}.post_attention_layernorm.weight`, h),
        qNorm: config.qkNorm ? need(`${p}.self_attn.q_norm.weight`, config.headDim) : null,
        kNorm: config.qkNorm ? need(`${p}.self_attn.k_norm.weight`, config.headDim) : null,
        linears,
      };
    },
    close: () => ck.close(),
  };
}

/** Open a full-precision or lieq-quantized model directory for the runtime. */
export function openRuntimeModel(dir: string, opts: LoadOptions = {}): RuntimeModel {
  if (isQuantizedDir(dir)) return RuntimeModel.fromSource(packedModelSource(dir), opts);
  return RuntimeModel.open(dir, opts);
}

/**
 * The model to evaluate: `baseDir`, or its quantized version `quantizedDir` (which must be of
 * the same architecture and shape, so results compare like with like).
 */
export function openEvalModel(baseDir: string, quantizedDir?: string, opts: LoadOptions = {}): RuntimeModel {
  if (!quantizedDir) return openRuntimeModel(baseDir, opts);
  const q = resolve(quantizedDir);
  if (!existsSync(q) || !statSync(q).isDirectory()) throw new FileError(q, 'quantized model directory not found');
  if (!isQuantizedDir(q)) throw new FormatError(join(q, CONFIG_FILE), 'not a lieq quantized model (no quantization_config); pass it as --model instead');
  const base = loadConfig(baseDir);
  const model = RuntimeModel.fromSource(packedModelSource(q), opts);
  const c = model.config;
  if (c.architecture !== base.architecture || c.numLayers !== base.numLayers || c.hiddenSize !== base.hiddenSize || c.vocabSize !== base.vocabSize) {
    model.close();
    throw new FormatError(join(q, CONFIG_FILE), `quantized model (${c.architecture}, ${c.numLayers} layers × ${c.hiddenSize}) does not match --model ${baseDir} (${base.architecture}, ${base.numLayers} × ${base.hiddenSize})`);
  }
  return model;
}
