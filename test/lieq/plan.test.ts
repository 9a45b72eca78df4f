import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { normaliseConfig } from '../../lib/io/config.js';
import { allocateGreedy } from '../../lib/lieq/allocate.js';
import { accountPlan, layerLinearWeights, loadPlan, makePlan, validatePlan } from '../../lib/lieq/plan.js';
import { packedBytes, resolveLayout } from '../../lib/quant/layout.js';
import { FormatError } from '../../lib/util/errors.js';
import { tempDir } from '../helpers/tmp.js';

// Qwen3-4B's published config.json fields (shape only).
const qwen3_4b = normaliseConfig({
  architectures: ['Qwen3ForCausalLM'], hidden_size: 2560, num_hidden_layers: 36, num_attention_heads: 32,
  num_key_value_heads: 8, head_dim: 128, intermediate_size: 9728, vocab_size: 151936, tie_word_embeddings: true,
  max_position_embeddings: 40960, rope_theta: 1000000, rms_norm_eps: 1e-6,
});

describe('bit accounting', () => {
  it('Qwen3-4B LieQ 2.05 plan: nominal 2 + 2/36, true cost adds scales and zeros', () => {
    const L = qwen3_4b.numLayers;
    const n = layerLinearWeights(qwen3_4b);
    // independent count: q 4096×2560, k/v 1024×2560, o 2560×4096, gate/up 9728×2560, down 2560×9728
    expect(n).toBe(4096 * 2560 * 2 + 1024 * 2560 * 2 + 9728 * 2560 * 3);
    const alloc = allocateGreedy({ scores: Array.from({ length: L }, (_, i) => (i === 3 ? 1 : 0)), weights: new Array(L).fill(n), allowed: [2, 3, 4], budget: 2 + 2 / 36 });
    const plan = makePlan(qwen3_4b, alloc.bits, { method: 'greedy', budget: 2 + 2 / 36, lmHeadBits: 4 });
    const acc = accountPlan(plan, qwen3_4b);
    expect(acc.nominalBits).toBeCloseTo(2.0556, 4);
    // g128 asymmetric: fp16 scale (16/128) + u8 zero (8/128) = 0.1875 bit per weight
    expect(acc.decoderBitsPerWeight).toBeCloseTo(2 + 2 / 36 + 0.1875, 9);
    // per-token weight bytes (decoder + 4-bit lm_head): about 1.22 GB
    const perToken = acc.packedBytes - acc.embeddingBytes - acc.otherBytes;
    expect(perToken / 1e9).toBeCloseTo(((36 * n * (2 + 2 / 36 + 0.1875)) / 8 + (151936 * 2560 * 4.1875) / 8) / 1e9, 6);
    expect(acc.modelBitsPerWeight).toBeGreaterThan(acc.decoderBitsPerWeight);
  });
  it('symmetric mode stores no zeros; tied fp16 lm_head costs nothing extra', () => {
    const plan = makePlan(qwen3_4b, new Array(36).fill(4), { method: 'uniform', symmetric: true });
    const acc = accountPlan(plan, qwen3_4b);
    expect(acc.decoderBitsPerWeight).toBeCloseTo(4 + 16 / 128, 9);
    expect(acc.lmHeadBytes).toBe(0);
  });
  it('odd input sizes are padded to 32 and take the largest group that divides', () => {
    expect(resolveLayout(172, 128)).toEqual({ inFeatures: 172, paddedIn: 192, groupSize: 64, perChannel: false });
    expect(resolveLayout(64, 128)).toEqual({ inFeatures: 64, paddedIn: 64, groupSize: 64, perChannel: true });
    expect(resolveLayout(2560, 128)).toEqual({ inFeatures: 2560, paddedIn: 2560, groupSize: 128, perChannel: false });
    expect(resolveLayout(96, 64)).toEqual({ inFeatures: 96, paddedIn: 96, groupSize: 32, perChannel: false });
    expect(packedBytes(10, resolveLayout(256, 128), 3, false)).toBe(10 * 8 * 12 + 10 * 2 * 3);
    expect(() => resolveLayout(256, 48)).toThrow(/groupSize/);
  });
});

describe('plan files', () => {
  const dir = tempDir();
  it('round-trips through JSON and validates', () => {
    const plan = makePlan(qwen3_4b, new Array(36).fill(2), { method: 'uniform' });
    const p = join(dir, 'plan.json');
    writeFileSync(p, JSON.stringify(plan));
    expect(loadPlan(p)).toEqual(plan);
  });
  it('hand-written mistakes are named', () => {
    const plan = makePlan(qwen3_4b, new Array(36).fill(2), { method: 'manual' });
    const bad = (mut: (x: any) => void) => {
      const c = structuredClone(plan) as any;
      mut(c);
      return () => validatePlan(c, 'my-plan.json');
    };
    expect(bad((c) => (c.layers[5].bits = 5))).toThrow(/my-plan.json: layers\[5\].bits must be 2, 3, 4 or 8, got 5/);
    expect(bad((c) => c.layers.pop())).toThrow(/35 entries but model.numLayers is 36/);
    expect(bad((c) => (c.layers[1].backbone = 'awq'))).toThrow(/backbone/);
    expect(bad((c) => (c.format = 'x'))).toThrow(FormatError);
    expect(bad((c) => (c.lmHeadBits = 2))).toThrow(/lmHeadBits/);
    writeFileSync(join(dir, 'broken.json'), '{');
    expect(() => loadPlan(join(dir, 'broken.json'))).toThrow(/broken.json: not valid JSON/);
  });
});
