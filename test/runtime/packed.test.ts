/**
 * Packed low-bit linears in the runtime: a model mixing 8/4/3/2-bit layers computes exactly what
 * a dense model holding the dequantized weights computes (so the runtime wires the fused
 * kernels correctly, for batch 1, small batches and prefill), KV decoding with packed weights
 * matches a full recompute, and 8-bit packing keeps the perplexity of a real model within 1%.
 */
import { beforeAll, describe, expect, it } from 'vitest';

import { linearTensorName, LINEAR_NAMES } from '../../lib/io/config.js';
import { loadTokenizer } from '../../lib/io/tokenizer.js';
import { dequantize, type QuantizeOptions } from '../../lib/kernels/quant.js';
import { forward } from '../../lib/runtime/forward.js';
import { KvCache } from '../../lib/runtime/kv-cache.js';
import { applyLinear, linearBits, linearEffectiveBits, packDense } from '../../lib/runtime/linear.js';
import { packLayer, RuntimeModel, withLinears } from '../../lib/runtime/model.js';
import { loadEvalText, perplexity } from '../../lib/runtime/perplexity.js';
import { dataPath } from '../../lib/util/data-dir.js';
import { UsageError } from '../../lib/util/errors.js';
import { maxScaledDiff, randomIds, randomTensors, tinyConfig, tinyModel, type Tensors } from './reference-forward.js';

describe('mixed-bit packed model on a random tiny model', () => {
  // every linear's inFeatures is a multiple of 32 (packed block size)
  const cfg = tinyConfig('qwen2', { hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 128 });
  const tensors = randomTensors(cfg, 21);
  const plans: QuantizeOptions[] = [
    { bits: 8, groupSize: 32 },
    { bits: 4, groupSize: 64 },
    { bits: 3, groupSize: 'channel', symmetric: true },
  ];
  const model = tinyModel(cfg, tensors);
  for (let l = 0; l < 3; l++) model.setLayer(l, packLayer(model.layer(l), (name) => (name === 'v_proj' && l === 2 ? { bits: 2, groupSize: 32 } : plans[l])));

  // dense twin holding the dequantized weights
  const deq: Tensors = new Map(tensors);
  for (let l = 0; l < 3; l++)
    for (const name of LINEAR_NAMES) {
      const lin = model.layer(l).linears[name];
      if (lin.kind !== 'packed') throw new Error('expected packed');
      deq.set(linearTensorName(l, name), dequantize(lin.packed));
    }
  const dense = tinyModel(cfg, deq);

  it('reports each layer’s own bit width', () => {
    expect(linearBits(model.layer(0).linears.q_proj)).toBe(8);
    expect(linearBits(model.layer(1).linears.up_proj)).toBe(4);
    expect(linearBits(model.layer(2).linears.down_proj)).toBe(3);
    expect(linearBits(model.layer(2).linears.v_proj)).toBe(2);
    expect(linearEffectiveBits(model.layer(1).linears.up_proj)).toBeCloseTo(4 + 24 / 64, 12);
    expect(model.layer(0).linears.q_proj.bias).not.toBeNull(); // Qwen2 bias kept in f32
    expect(model.residentBytes()).toBeLessThan(dense.residentBytes());
  });

  it.each([1, 5, 40])('%i tokens: packed forward = dense forward on dequantized weights', (n) => {
    const ids = randomIds(n, cfg.vocabSize, n);
    const a = forward(model, ids).logits!;
    const b = forward(dense, ids).logits!;
    expect(maxScaledDiff(a, b)).toBeLessThan(1e-4);
  });

  it('KV-cache decoding with packed weights matches a full recompute', () => {
    const ids = randomIds(12, cfg.vocabSize, 77);
    const full = forward(model, ids).logits!;
    const cache = new KvCache(cfg, 12);
    const first = forward(model, ids.subarray(0, 4), { cache }).logits!;
    const rest: number[] = [...first];
    for (let t = 4; t < 12; t++) rest.push(...forward(model, ids.subarray(t, t + 1), { cache }).logits!);
    expect(maxScaledDiff(Float32Array.from(rest), full)).toBeLessThan(1e-4);
  });

  it('withLinears takes one packed projection; a packed linear with a wrong bias is refused', () => {
    const l0 = tinyModel(cfg, tensors).layer(0);
    const q = l0.linears.q_proj;
    if (q.kind !== 'dense') throw new Error('expected dense');
    const swapped = withLinears(l0, { q_proj: packDense(q, { bits: 4, groupSize: 32 }) });
    const ids = randomIds(6, cfg.vocabSize, 1);
    const r = forward(tinyModel(cfg, tensors), ids, { replaceLayers: new Map([[0, swapped]]) });
    expect(r.logits!.every(Number.isFinite)).toBe(true);
    expect(() => packDense({ ...q, bias: new Float32Array(3) }, { bits: 4, groupSize: 32 })).toThrow(UsageError);
    // A width that is not a multiple of 32 is zero-padded: the packed layer computes x·Ŵᵀ over the 40 real columns.
    const w40 = Float32Array.from({ length: q.outFeatures * 40 }, (_, i) => Math.sin(i * 0.37) * 0.1);
    const p40 = packDense({ ...q, inFeatures: 40, weight: w40, bias: null }, { bits: 8, groupSize: 32 });
    expect(p40.inFeatures).toBe(40);
    expect(p40.packed.inFeatures).toBe(64);
    const deq = dequantize(p40.packed);
    const x = Float32Array.from({ length: 3 * 40 }, (_, i) => Math.cos(i));
    const y = new Float32Array(3 * q.outFeatures);
    applyLinear(p40, x, 3, y);
    for (let r = 0; r < 3; r++)
      for (let o = 0; o < q.outFeatures; o++) {
        let ref = 0;
        for (let k = 0; k < 40; k++) ref += x[r * 40 + k] * deq[o * 64 + k];
        expect(y[r * q.outFeatures + o]).toBeCloseTo(ref, 4);
      }
    for (let o = 0; o < q.outFeatures; o++) for (let k = 40; k < 64; k++) expect(Math.abs(deq[o * 64 + k])).toBeLessThan(1e-6);
  });
});

describe('TinyStories-656K with every decoder linear packed at 8 bits', () => {
  let fp: RuntimeModel;
  let q8: RuntimeModel;
  let ids: Int32Array;
  beforeAll(async () => {
    const dir = dataPath('models/tinystories-656K');
    fp = RuntimeModel.open(dir);
    q8 = RuntimeModel.open(dir);
    for (let l = 0; l < q8.numLayers; l++) q8.setLayer(l, packLayer(q8.layer(l), () => ({ bits: 8, groupSize: 128 })));
    ids = (await loadTokenizer(dir)).encode(loadEvalText('tinystories').text, { addBos: true });
  });

  it('perplexity within 1% of full precision (first 40 windows of 512)', async () => {
    const a = await perplexity(fp, ids, { ctx: 512, limit: 40 });
    const b = await perplexity(q8, ids, { ctx: 512, limit: 40 });
    console.info(`TinyStories-656K 40 windows: f32 ppl ${a.perplexity.toFixed(4)}, 8-bit g128 ppl ${b.perplexity.toFixed(4)} (${(100 * (b.perplexity / a.perplexity - 1)).toFixed(3)}%)`);
    expect(Math.abs(b.perplexity / a.perplexity - 1)).toBeLessThan(0.01);
    expect(b.perplexity).not.toBe(a.perplexity);
  });
});
