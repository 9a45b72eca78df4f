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
import { FileError, FormatError } from '../util/errors.js';
import { resolveLayout } from './layout.js';
import { packedNames, PACKED_FORMAT, type QuantizationConfig } from './packed-model.js';

/** The lieq quantization_config of a directory, or null for a full-precision model. */
export function readQuantizationConfig(dir: string): QuantizationConfig | null {
  const path = join(dir, CONFIG_FILE);
  const raw = readConfigJson(dir);
  const q = (typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>).quantization_config : undefined) as QuantizationConfig | undefined;
  if (!q) return null;
  if (q.quant_method !== 'lieq' || q.format !== PACKED_FORMAT)
    throw new FormatError(path, `quantization_config is not a lieq packed model (quant_method "${String(q.quant_method)}", format "${String(q.format)}"); only ${PACKED_FORMAT} is supported`);
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
    const layout = resolveLayout(inF, group);
    const bytes = (name: string) => {
      if (!ck.has(name)) throw new FormatError(dir, `quantized checkpoint lacks tensor "${name}"`, { code: 'E_NO_TENSOR' });
      return new Uint8Array(ck.readBytes(name));
    };
    const s = bytes(n.scales);
    const p: PackedLinear = {
      outFeatures: out,
      inFeatures: layout.paddedIn,
      bits: bits as PackedBits,
      groupSize: layout.groupSize,
      symmetric: q.symmetric,
      qweight: bytes(n.qweight),
      scales: new Uint16Array(s.buffer, s.byteOffset, s.byteLength / 2),
    };
    if (!q.symmetric) p.zeros = bytes(n.zeros);
    return p;
  };
  const linear = (weightName: string, out: number, inF: number, bits: number, group: number, bias: Float32Array | null): RuntimeLinear => {
    return packedLinear(packed(weightName, out, inF, bits, group), bias, inF);
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
