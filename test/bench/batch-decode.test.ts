/**
 * Batched decoding (lib/runtime/batch-decode.ts): one step for B sequences at different
 * positions gives the logits that B separate single-sequence decodes give, with dense and
 * packed weights, on a trained model and on a Qwen3-style tiny model (q/k norms).
 */
import { describe, expect, it } from 'vitest';

import { plannedSource } from '../../lib/bench/plans.js';
import { allocateUniform } from '../../lib/lieq/allocate.js';
import { layerLinearWeights, makePlan } from '../../lib/lieq/plan.js';
import { decodeBatch } from '../../lib/runtime/batch-decode.js';
import { forward } from '../../lib/runtime/forward.js';
import { KvCache } from '../../lib/runtime/kv-cache.js';
import { checkpointSource, RuntimeModel, type WeightSource } from '../../lib/runtime/model.js';
import { openModel } from '../../lib/io/model.js';
import { dataPath } from '../../lib/util/data-dir.js';
import { UsageError } from '../../lib/util/errors.js';
import { maxScaledDiff, randomIds, randomTensors, tinyConfig, tinyModel } from '../runtime/reference-forward.js';

/** Prefill `prompts` into fresh caches, one per sequence. */
function prefilled(model: RuntimeModel, prompts: Int32Array[], capacity: number): KvCache[] {
  return prompts.map((p) => {
    const c = new KvCache(model.config, capacity);
    forward(model, p, { cache: c, logits: 'none' });
    return c;
  });
}

function checkEquivalence(model: RuntimeModel, seed: number): void {
  const V = model.config.vocabSize;
  const prompts = [5, 1, 9, 3].map((n, i) => randomIds(n, V, seed + i)); // different positions
  const batched = prefilled(model, prompts, 16);
  const single = prefilled(model, prompts, 16);
  for (let step = 0; step < 3; step++) {
    const ids = randomIds(prompts.length, V, seed + 100 + step);
    const got = decodeBatch(model, batched, ids)!;
    expect(got.length).toBe(prompts.length * V);
    for (let b = 0; b < prompts.length; b++) {
      const want = forward(model, ids.subarray(b, b + 1), { cache: single[b], logits: 'last' }).logits!;
      // f32 rounding only: kernels on 4 rows sum in another order than on 1 row (SIMD blocking).
      expect(maxScaledDiff(got.subarray(b * V, (b + 1) * V), want)).toBeLessThan(1e-4);
      expect(batched[b].length).toBe(single[b].length);
    }
  }
}

function stories(plan: 'f32' | 4 | 2): RuntimeModel {
  const m = openModel(dataPath('models/stories260K'));
  let src: WeightSource = checkpointSource(m);
  if (plan !== 'f32') {
    const cfg = m.config;
    src = plannedSource(src, makePlan(cfg, allocateUniform(new Array(cfg.numLayers).fill(layerLinearWeights(cfg)), plan).bits, { method: 'uniform', groupSize: 32 }));
  }
  return RuntimeModel.fromSource(src);
}

describe('decodeBatch', () => {
  it('stories260K f32: batch of 4 at positions 1..9 equals 4 single-sequence decodes', () => checkEquivalence(stories('f32'), 1));
  it('stories260K packed 4-bit and 2-bit (fused dequant-matmul on 4 rows)', () => {
    checkEquivalence(stories(4), 2);
    checkEquivalence(stories(2), 3);
  });
  it('Qwen3-style tiny model (q/k norms, GQA)', () => {
    const cfg = tinyConfig('qwen3');
    checkEquivalence(tinyModel(cfg, randomTensors(cfg, 7)), 4);
  });

  it('logits "none" advances the caches without the LM head; bad arguments are UsageErrors', () => {
    const model = stories('f32');
    const caches = prefilled(model, [randomIds(2, 512, 1), randomIds(3, 512, 2)], 4);
    expect(decodeBatch(model, caches, Int32Array.of(1, 2), { logits: 'none' })).toBeNull();
    expect(caches.map((c) => c.length)).toEqual([3, 4]);
    expect(() => decodeBatch(model, caches, Int32Array.of(1, 2))).toThrow(/cache: full/); // second is at capacity 4
    expect(() => decodeBatch(model, [caches[0], caches[0]], Int32Array.of(1, 2))).toThrow(/same KvCache/);
    expect(() => decodeBatch(model, caches, Int32Array.of(1))).toThrow(UsageError);
    expect(() => decodeBatch(model, caches.slice(0, 1), Int32Array.of(600))).toThrow(/outside the vocabulary/);
  });
});
