/**
 * Seed-fixed random models: the LieQ reference model (same architecture, random init, §3 of
 * the method spec) and random-weight checkpoints of real shapes for benchmarks, so speed can
 * be measured without downloading weights.
 *
 * Init [ours, matching transformers' _init_weights for these architectures]: linear weights
 * and embeddings ~ N(0, initializer_range²), biases 0, RMSNorm weights 1. Each tensor draws
 * from its own stream seeded by (seed, tensor name), so a tensor's values do not depend on
 * which other tensors were generated first (layer-by-layer streaming gives the same model).
 */
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { native, NativeDType } from '../native.js';
import { expectedTensors, normaliseConfig, type ModelConfig } from './config.js';
import { numel, tempPathFor, writeSafetensors, type Dtype } from './safetensors.js';

/** 32-bit FNV-1a of a string, to derive per-tensor seeds. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** xorshift128+ on two 32-bit halves would be overkill; sfc32 is fast and well-tested. */
function sfc32(a: number, b: number, c: number, d: number): () => number {
  return () => {
    a >>>= 0; b >>>= 0; c >>>= 0; d >>>= 0;
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
}

/** Fill `out` with N(0, std²) samples from the stream named by (seed, name). Box–Muller. */
export function fillNormal(out: Float32Array, std: number, seed: number, name: string): Float32Array {
  const h = fnv1a(name);
  const r = sfc32(seed >>> 0, h, 0x9e3779b9 ^ h, (seed * 0x85ebca6b) >>> 0);
  for (let i = 0; i < 12; i++) r(); // warm up the state
  const n = out.length;
  let i = 0;
  for (; i + 1 < n; i += 2) {
    const u1 = 1 - r();
    const u2 = r();
    const rad = std * Math.sqrt(-2 * Math.log(u1));
    out[i] = rad * Math.cos(2 * Math.PI * u2);
    out[i + 1] = rad * Math.sin(2 * Math.PI * u2);
  }
  if (i < n) out[i] = std * Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  return out;
}

/**
 * Rows [rowStart, rowStart + rows) of one tensor of the random model (f32). Each row has its own
 * stream, so embedding rows for a handful of token ids cost only those rows.
 */
export function randomRows(cfg: ModelConfig, name: string, shape: number[], seed: number, rowStart: number, rows: number): Float32Array {
  const cols = shape.length > 1 ? numel(shape.slice(1)) : shape[0];
  const nRows = shape.length > 1 ? shape[0] : 1;
  if (rowStart < 0 || rowStart + rows > nRows) throw new RangeError(`${name}: rows [${rowStart}, ${rowStart + rows}) outside [0, ${nRows})`);
  const out = new Float32Array(rows * cols);
  if (name.endsWith('norm.weight')) return out.fill(1);
  if (name.endsWith('.bias')) return out;
  for (let r = 0; r < rows; r++) fillNormal(out.subarray(r * cols, (r + 1) * cols), cfg.initializerRange, seed, `${name}#${rowStart + r}`);
  return out;
}

/** The value of one whole tensor of the random model (f32). */
export function randomTensor(cfg: ModelConfig, name: string, shape: number[], seed: number): Float32Array {
  return randomRows(cfg, name, shape, seed, 0, shape.length > 1 ? shape[0] : 1);
}

/** The random model as named tensors (a runtime TensorReader). */
export function randomReader(cfg: ModelConfig, seed: number): { has(name: string): boolean; readF32(name: string): Float32Array; shape(name: string): number[] } {
  const shapes = new Map(expectedTensors(cfg).map((t) => [t.name, t.shape]));
  const shape = (name: string): number[] => {
    const s = shapes.get(name);
    if (!s) throw new RangeError(`random model of ${cfg.architecture} has no tensor "${name}"`);
    return s;
  };
  return { has: (name) => shapes.has(name), shape, readF32: (name) => randomTensor(cfg, name, shape(name), seed) };
}

/** Config.json objects of real model shapes (published configs; weights are random). */
export const MODEL_SHAPES: Record<string, Record<string, unknown>> = {
  'llama-3.2-1b': {
    architectures: ['LlamaForCausalLM'], hidden_size: 2048, intermediate_size: 8192, num_hidden_layers: 16,
    num_attention_heads: 32, num_key_value_heads: 8, head_dim: 64, vocab_size: 128256, max_position_embeddings: 131072,
    rms_norm_eps: 1e-5, rope_theta: 500000, tie_word_embeddings: true, initializer_range: 0.02, bos_token_id: 128000, eos_token_id: 128001,
    rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
  },
  'llama-3.2-3b': {
    architectures: ['LlamaForCausalLM'], hidden_size: 3072, intermediate_size: 8192, num_hidden_layers: 28,
    num_attention_heads: 24, num_key_value_heads: 8, head_dim: 128, vocab_size: 128256, max_position_embeddings: 131072,
    rms_norm_eps: 1e-5, rope_theta: 500000, tie_word_embeddings: true, initializer_range: 0.02, bos_token_id: 128000, eos_token_id: 128001,
    rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
  },
  'qwen3-4b': {
    architectures: ['Qwen3ForCausalLM'], hidden_size: 2560, intermediate_size: 9728, num_hidden_layers: 36,
    num_attention_heads: 32, num_key_value_heads: 8, head_dim: 128, vocab_size: 151936, max_position_embeddings: 40960,
    rms_norm_eps: 1e-6, rope_theta: 1000000, tie_word_embeddings: true, initializer_range: 0.02, bos_token_id: 151643, eos_token_id: 151645,
  },
  'qwen3-8b': {
    architectures: ['Qwen3ForCausalLM'], hidden_size: 4096, intermediate_size: 12288, num_hidden_layers: 36,
    num_attention_heads: 32, num_key_value_heads: 8, head_dim: 128, vocab_size: 151936, max_position_embeddings: 40960,
    rms_norm_eps: 1e-6, rope_theta: 1000000, tie_word_embeddings: false, initializer_range: 0.02, bos_token_id: 151643, eos_token_id: 151645,
  },
};

export function shapeConfig(shape: string, overrides: Record<string, unknown> = {}): ModelConfig {
  const raw = MODEL_SHAPES[shape];
  if (!raw) throw new RangeError(`--shape: unknown shape "${shape}" (known: ${Object.keys(MODEL_SHAPES).join(', ')})`);
  return normaliseConfig({ ...raw, ...overrides }, `shape ${shape}`);
}

/**
 * Write a random-weight checkpoint of `rawConfig` to `dir` (config.json + model.safetensors),
 * streaming one tensor at a time; the directory appears only when complete.
 */
export function writeRandomCheckpoint(dir: string, rawConfig: Record<string, unknown>, o: { seed?: number; dtype?: Dtype } = {}): void {
  const cfg = normaliseConfig(rawConfig, 'random config');
  const dtype = o.dtype ?? 'BF16';
  if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16') throw new RangeError(`dtype: expected F32, F16 or BF16, got ${dtype}`);
  const seed = o.seed ?? 0;
  const tmp = tempPathFor(dir);
  mkdirSync(tmp, { recursive: true });
  try {
    writeFileSync(join(tmp, 'config.json'), JSON.stringify({ ...rawConfig, torch_dtype: { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[dtype] }, null, 2));
    const code = { F32: NativeDType.F32, F16: NativeDType.F16, BF16: NativeDType.BF16 }[dtype];
    writeSafetensors(
      join(tmp, 'model.safetensors'),
      expectedTensors(cfg).map((t) => ({
        name: t.name,
        dtype,
        shape: t.shape,
        data: () => {
          const v = randomTensor(cfg, t.name, t.shape, seed);
          const bytes = new Uint8Array(v.length * (dtype === 'F32' ? 4 : 2));
          native().fromF32(v, code, bytes);
          return bytes;
        },
      })),
      { format: 'pt', lieq_random_seed: String(seed) },
    );
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}
