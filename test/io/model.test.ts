import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { Checkpoint } from '../../lib/io/checkpoint.js';
import { expectedTensors, linearShape, loadConfig, normaliseConfig } from '../../lib/io/config.js';
import { inspectModel, openModel } from '../../lib/io/model.js';
import { dataPath } from '../../lib/util/data-dir.js';
import { FileError, FormatError, UnsupportedError } from '../../lib/util/errors.js';
import { tempDir } from '../helpers/tmp.js';

const fixtures = join(import.meta.dirname, '..', 'fixtures', 'arch');
const dir = tempDir();

/** Independent parameter count from config.json fields (the README's numbers). */
function paramsFromConfig(c: Record<string, any>): number {
  const h = c.hidden_size, I = c.intermediate_size, L = c.num_hidden_layers, V = c.vocab_size;
  const hd = c.head_dim ?? h / c.num_attention_heads;
  const q = c.num_attention_heads * hd, kv = c.num_key_value_heads * hd;
  const perLayer = h * q + 2 * h * kv + q * h + 3 * h * I + 2 * h;
  return V * h + L * perLayer + h + (c.tie_word_embeddings ? 0 : V * h);
}

describe('shipped models', () => {
  it('stories260K: layers, shapes and parameter count match its config (260,032 floats)', () => {
    const r = inspectModel(dataPath('models/stories260K'));
    const cfgJson = JSON.parse(readFileSync(dataPath('models/stories260K/config.json'), 'utf8'));
    expect(r.layers).toBe(5);
    expect(r.parameters).toBe(260032);
    expect(r.parameters).toBe(paramsFromConfig(cfgJson));
    expect(r.config.numKvHeads).toBe(4);
    expect(r.config.headDim).toBe(8);
    expect(r.config.tieWordEmbeddings).toBe(true);
    const q0 = r.tensors.find((t) => t.name === 'model.layers.0.self_attn.q_proj.weight')!;
    expect(q0.shape).toEqual([64, 64]);
    expect(r.tensors.find((t) => t.name === 'model.layers.4.mlp.down_proj.weight')!.shape).toEqual([64, 172]);
    expect(r.tensors.filter((t) => !t.aliasOf)).toHaveLength(47);
  });
  it('TinyStories-656K: resolves the tied alias embed_tokens -> lm_head; 656,000 parameters', () => {
    const r = inspectModel(dataPath('models/tinystories-656K'));
    const cfgJson = JSON.parse(readFileSync(dataPath('models/tinystories-656K/config.json'), 'utf8'));
    expect(r.layers).toBe(2);
    expect(r.parameters).toBe(paramsFromConfig(cfgJson));
    const alias = r.tensors.find((t) => t.name === 'model.embed_tokens.weight')!;
    expect(alias.aliasOf).toBe('lm_head.weight');
    const m = openModel(dataPath('models/tinystories-656K'));
    const a = m.checkpoint.readF32('model.embed_tokens.weight');
    const b = m.checkpoint.readF32('lm_head.weight');
    expect(a).toEqual(b);
    expect(a.length).toBe(2048 * 128);
    m.close();
  });
});

describe('architecture fixtures made by transformers', () => {
  it('tiny-llama3: bf16, llama3 rope scaling from rope_parameters', () => {
    const c = loadConfig(join(fixtures, 'tiny-llama3'));
    expect(c.family).toBe('llama');
    expect(c.ropeTheta).toBe(500000);
    expect(c.ropeScaling).toEqual({ type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 32 });
    const m = openModel(join(fixtures, 'tiny-llama3'));
    expect(m.checkpoint.info('model.layers.0.self_attn.q_proj.weight').dtype).toBe('BF16');
    const w = m.checkpoint.readF32('model.layers.0.self_attn.q_proj.weight');
    expect(w.length).toBe(64 * 64);
    expect(w.every(Number.isFinite)).toBe(true);
    m.close();
  });
  it('tiny-qwen3: q/k norm, head_dim·heads != hidden', () => {
    const c = loadConfig(join(fixtures, 'tiny-qwen3'));
    expect(c.qkNorm).toBe(true);
    expect(c.headDim * c.numHeads).toBe(128);
    expect(linearShape(c, 'q_proj')).toEqual([128, 64]);
    expect(linearShape(c, 'o_proj')).toEqual([64, 128]);
    const r = inspectModel(join(fixtures, 'tiny-qwen3'));
    expect(r.tensors.some((t) => t.name === 'model.layers.2.self_attn.k_norm.weight')).toBe(true);
  });
  it('tiny-qwen2: sharded fp16 with q/k/v biases and untied lm_head', () => {
    const r = inspectModel(join(fixtures, 'tiny-qwen2'));
    expect(r.files).toHaveLength(4);
    expect(r.config.attentionBias).toBe(true);
    expect(r.tensors.some((t) => t.name === 'model.layers.0.self_attn.v_proj.bias')).toBe(true);
    expect(r.tensors.some((t) => t.name === 'lm_head.weight')).toBe(true);
    const summary = JSON.parse(readFileSync(join(fixtures, 'fixtures_summary.json'), 'utf8'));
    expect(r.parameters).toBe(summary['tiny-qwen2'].params);
  });
  it('every fixture: parameter count equals transformers\' own count', () => {
    const summary = JSON.parse(readFileSync(join(fixtures, 'fixtures_summary.json'), 'utf8'));
    for (const name of ['tiny-llama3', 'tiny-qwen3', 'tiny-qwen2', 'tiny-mistral']) {
      expect(inspectModel(join(fixtures, name)).parameters, name).toBe(summary[name].params);
    }
  });
});

describe('bad model directories give named errors', () => {
  const base = { architectures: ['LlamaForCausalLM'], hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 8, intermediate_size: 128, vocab_size: 100 };
  it('unsupported architecture names it and the supported list', () => {
    expect(() => normaliseConfig({ ...base, architectures: ['GPT2LMHeadModel'] }, 'x/config.json')).toThrow(UnsupportedError);
    expect(() => normaliseConfig({ ...base, architectures: ['GPT2LMHeadModel'] }, 'x/config.json')).toThrow(/GPT2LMHeadModel.*LlamaForCausalLM/);
  });
  it('wrong config fields', () => {
    expect(() => normaliseConfig({ ...base, hidden_size: -3 }, 'c.json')).toThrow(/c.json: "hidden_size" must be a positive integer/);
    expect(() => normaliseConfig({ ...base, num_key_value_heads: 3 }, 'c.json')).toThrow(/multiple of num_key_value_heads/);
    expect(() => normaliseConfig({ ...base, hidden_act: 'gelu' }, 'c.json')).toThrow(/hidden_act "gelu"/);
    expect(() => normaliseConfig({ ...base, rope_scaling: { rope_type: 'yarn', factor: 4 } }, 'c.json')).toThrow(/"yarn" is not supported/);
    expect(() => normaliseConfig({ ...base, architectures: [] }, 'c.json')).toThrow(FormatError);
  });
  it('missing directory, missing config, malformed config', () => {
    expect(() => openModel(join(dir, 'none'))).toThrow(FileError);
    mkdirSync(join(dir, 'empty'));
    expect(() => openModel(join(dir, 'empty'))).toThrow(/config.json: file not found/);
    writeFileSync(join(dir, 'empty', 'config.json'), '{"architectures": [');
    expect(() => openModel(join(dir, 'empty'))).toThrow(/config.json: not valid JSON/);
  });
  it('config that disagrees with the checkpoint names the tensor and both shapes', () => {
    const d = join(dir, 'mismatch');
    cpSync(dataPath('models/stories260K'), d, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
    writeFileSync(join(d, 'config.json'), JSON.stringify({ ...cfg, intermediate_size: 176 }));
    expect(() => openModel(d)).toThrow(/gate_proj.weight" has shape \[172, 64\], config.json implies \[176, 64\]/);
    writeFileSync(join(d, 'config.json'), JSON.stringify({ ...cfg, num_hidden_layers: 6 }));
    expect(() => openModel(d)).toThrow(/lacks tensor "model.layers.5.input_layernorm.weight"/);
  });
  it('sharded index pointing at a missing shard', () => {
    const d = join(dir, 'shards');
    cpSync(join(fixtures, 'tiny-qwen2'), d, { recursive: true });
    const idx = JSON.parse(readFileSync(join(d, 'model.safetensors.index.json'), 'utf8'));
    idx.weight_map['model.norm.weight'] = 'model-00009-of-00004.safetensors';
    writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify(idx));
    expect(() => Checkpoint.open(d)).toThrow(/model-00009-of-00004.safetensors: file not found/);
  });
  it('expectedTensors lists lm_head only when untied', () => {
    const c = normaliseConfig(base);
    expect(expectedTensors(c).some((t) => t.name === 'lm_head.weight')).toBe(true);
    expect(expectedTensors({ ...c, tieWordEmbeddings: true }).some((t) => t.name === 'lm_head.weight')).toBe(false);
  });
});
