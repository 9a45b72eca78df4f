import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { fillNormal, randomRows, randomTensor, shapeConfig, writeRandomCheckpoint, MODEL_SHAPES } from '../../lib/io/random-model.js';
import { inspectModel, openModel } from '../../lib/io/model.js';
import { tempDir } from '../helpers/tmp.js';

describe('random models', () => {
  it('normal samples have the asked std, are seed-deterministic and per-name independent', () => {
    const a = fillNormal(new Float32Array(200_000), 0.02, 7, 'x');
    let m = 0, v = 0;
    for (const x of a) m += x;
    m /= a.length;
    for (const x of a) v += (x - m) ** 2;
    const std = Math.sqrt(v / a.length);
    expect(Math.abs(m)).toBeLessThan(0.02 * 0.01);
    expect(std / 0.02).toBeGreaterThan(0.99);
    expect(std / 0.02).toBeLessThan(1.01);
    const unit = fillNormal(new Float32Array(5), 1, 7, 'x');
    unit.forEach((x, i) => expect(x * 0.02).toBeCloseTo(a[i], 7));
    expect(fillNormal(new Float32Array(5), 1, 7, 'y')).not.toEqual(fillNormal(new Float32Array(5), 1, 7, 'x'));
  });
  it('rows drawn on demand equal the same rows of the whole tensor', () => {
    const cfg = shapeConfig('llama-3.2-1b', { vocab_size: 50, hidden_size: 64, head_dim: 16, num_attention_heads: 4, num_key_value_heads: 2 });
    const whole = randomTensor(cfg, 'model.embed_tokens.weight', [50, 64], 11);
    expect(randomRows(cfg, 'model.embed_tokens.weight', [50, 64], 11, 17, 3)).toEqual(whole.subarray(17 * 64, 20 * 64));
    expect(() => randomRows(cfg, 'model.embed_tokens.weight', [50, 64], 11, 49, 2)).toThrow(RangeError);
  });
  it('real shapes are valid configs', () => {
    for (const s of Object.keys(MODEL_SHAPES)) expect(shapeConfig(s).numLayers).toBeGreaterThan(0);
    expect(shapeConfig('qwen3-4b').qkNorm).toBe(true);
    expect(() => shapeConfig('gpt-5')).toThrow(/unknown shape/);
  });
  it('writes a loadable bf16 checkpoint atomically', () => {
    const dir = join(tempDir(), 'rand');
    const raw = { ...MODEL_SHAPES['qwen3-4b'], hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16, vocab_size: 100 };
    writeRandomCheckpoint(dir, raw, { seed: 3 });
    const r = inspectModel(dir);
    expect(r.layers).toBe(2);
    expect(r.tensors.every((t) => t.dtype === 'BF16')).toBe(true);
    const m = openModel(dir);
    expect([...m.checkpoint.readF32('model.layers.1.self_attn.q_norm.weight')]).toEqual(new Array(16).fill(1));
    const w = m.checkpoint.readF32('model.layers.0.mlp.up_proj.weight');
    expect(w.some((x) => x !== 0)).toBe(true);
    m.close();
  });
});
