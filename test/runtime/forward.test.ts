/**
 * The forward pass against the independent float64 reference (reference-forward.ts) on random
 * tiny models of every architecture variant: logits, hooks, skipped and replaced layers, KV
 * cache decoding, streaming layer by layer, and the error paths.
 *
 * Tolerance 1e-4 scaled (|Δ| / max(1, |ref|)): f32 vs f64 arithmetic over 3 small layers lands
 * around 1e-6; any structural mistake is > 1e-2.
 */
import { describe, expect, it } from 'vitest';

import { linearTensorName, normaliseConfig, type LinearName } from '../../lib/io/config.js';
import { embedTokens, forward, logitsFromHidden, runLayer } from '../../lib/runtime/forward.js';
import { captureActivations } from '../../lib/runtime/hooks.js';
import { KvCache } from '../../lib/runtime/kv-cache.js';
import { denseFromWeights } from '../../lib/runtime/linear.js';
import { withLinears } from '../../lib/runtime/model.js';
import { UsageError } from '../../lib/util/errors.js';
import {
  flat,
  maxScaledDiff,
  randomIds,
  randomTensors,
  referenceForward,
  tinyConfig,
  tinyModel,
  type Tensors,
  type Variant,
} from './reference-forward.js';

const TOL = 1e-4;
const variants: Variant[] = ['llama', 'llama3-gqa', 'qwen3', 'qwen2', 'mistral-window'];

describe.each(variants)('%s', (variant) => {
  const cfg = tinyConfig(variant);
  const tensors = randomTensors(cfg, 11);
  const model = tinyModel(cfg, tensors);
  const ids = randomIds(13, cfg.vocabSize, 5);
  const ref = referenceForward(cfg, tensors, ids);

  it('logits match the float64 reference', () => {
    const r = forward(model, ids);
    expect(r.logits!.length).toBe(13 * cfg.vocabSize);
    expect(maxScaledDiff(r.logits!, flat(ref.logits))).toBeLessThan(TOL);
    const last = forward(model, ids, { logits: 'last' });
    expect(maxScaledDiff(last.logits!, ref.logits[12])).toBeLessThan(TOL);
    expect(forward(model, ids, { logits: 'none' }).logits).toBeNull();
  });

  it('hooks see exactly the reference’s layer inputs/outputs and linear inputs', () => {
    const seen: string[] = [];
    forward(model, ids, {
      hooks: {
        layerInput: (l, h, n) => {
          expect(n).toBe(13);
          expect(maxScaledDiff(h, flat(ref.layerInputs.get(l)!))).toBeLessThan(TOL);
          seen.push(`in${l}`);
        },
        layerOutput: (l, h) => {
          expect(maxScaledDiff(h, flat(ref.layerOutputs.get(l)!))).toBeLessThan(TOL);
          seen.push(`out${l}`);
        },
        linearInput: (l, name, x) => {
          expect(maxScaledDiff(x, flat(ref.linearInputs.get(`${l}.${name}`)!))).toBeLessThan(TOL);
          seen.push(`${l}.${name}`);
        },
      },
    });
    expect(seen.filter((s) => s.startsWith('in'))).toEqual(['in0', 'in1', 'in2']);
    expect(seen.filter((s) => /^\d\./.test(s))).toHaveLength(3 * 7);
  });

  it('KV-cache decoding gives the same logits as a full recompute', () => {
    const full = forward(model, ids).logits!;
    const V = cfg.vocabSize;
    const cache = new KvCache(cfg, 20);
    const parts: Float32Array[] = [];
    // prefix of 5, then single tokens, then a chunk of 3, then the rest one by one
    const cuts = [0, 5, 6, 7, 10, 11, 12, 13];
    for (let i = 0; i + 1 < cuts.length; i++) parts.push(forward(model, ids.subarray(cuts[i], cuts[i + 1]), { cache }).logits!);
    expect(cache.length).toBe(13);
    const inc = new Float32Array(13 * V);
    let o = 0;
    for (const p of parts) {
      inc.set(p, o);
      o += p.length;
    }
    expect(maxScaledDiff(inc, full)).toBeLessThan(1e-5);
  });

  it('a skipped layer is identity: same as the reference without it and as a model built without it', () => {
    for (const skip of [0, 1, 2]) {
      const r = forward(model, ids, { skipLayers: [skip] });
      const refSkip = referenceForward(cfg, tensors, ids, { skip: new Set([skip]) });
      expect(maxScaledDiff(r.logits!, flat(refSkip.logits))).toBeLessThan(TOL);
      // a 2-layer model holding the other layers' tensors, renumbered
      const smaller = normaliseConfig({ ...rawOf(cfg), num_hidden_layers: 2 });
      const t2: Tensors = new Map();
      for (const [name, v] of tensors) {
        const m = /^model\.layers\.(\d+)\.(.*)$/.exec(name);
        if (!m) t2.set(name, v);
        else if (Number(m[1]) !== skip) t2.set(`model.layers.${Number(m[1]) > skip ? Number(m[1]) - 1 : Number(m[1])}.${m[2]}`, v);
      }
      const without = forward(tinyModel(smaller, t2), ids).logits!;
      expect(maxScaledDiff(r.logits!, without)).toBeLessThan(1e-6);
    }
  });

  it('replaceLayers runs other weights for one call; setLayer for every later call', () => {
    const other = randomTensors(cfg, 99);
    const layer1 = tinyModel(cfg, other).layer(1);
    const refRep = referenceForward(cfg, tensors, ids, { layerTensors: new Map([[1, other]]) });
    const r = forward(model, ids, { replaceLayers: new Map([[1, layer1]]) });
    expect(maxScaledDiff(r.logits!, flat(refRep.logits))).toBeLessThan(TOL);
    // the model itself is unchanged
    expect(maxScaledDiff(forward(model, ids).logits!, flat(ref.logits))).toBeLessThan(TOL);
    const m2 = tinyModel(cfg, tensors);
    m2.setLayer(1, layer1);
    expect(maxScaledDiff(forward(m2, ids).logits!, flat(refRep.logits))).toBeLessThan(TOL);
    m2.restoreLayer(1);
    expect(maxScaledDiff(forward(m2, ids).logits!, flat(ref.logits))).toBeLessThan(TOL);
  });

  it('withLinears swaps single projections', () => {
    const other = randomTensors(cfg, 7);
    const name: LinearName = 'down_proj';
    const l0 = model.layer(0);
    const lin = l0.linears[name];
    const w = other.get(linearTensorName(0, name))!;
    const swapped = withLinears(l0, { [name]: denseFromWeights(w, lin.outFeatures, lin.inFeatures) });
    const t2 = new Map(tensors);
    t2.set(linearTensorName(0, name), w);
    const r = forward(model, ids, { replaceLayers: new Map([[0, swapped]]) });
    expect(maxScaledDiff(r.logits!, flat(referenceForward(cfg, t2, ids).logits))).toBeLessThan(TOL);
  });

  it('streaming: embedTokens → runLayer(0..L-1) → logitsFromHidden equals forward; one layer held', () => {
    const streaming = tinyModel(cfg, tensors, 'streaming');
    let h = embedTokens(streaming, ids);
    const before = h.slice();
    for (let l = 0; l < cfg.numLayers; l++) {
      const next = runLayer(streaming, l, h);
      expect(maxScaledDiff(next, flat(ref.layerOutputs.get(l)!))).toBeLessThan(TOL);
      h = next;
    }
    expect(embedTokens(streaming, ids)).toEqual(before);
    const logits = logitsFromHidden(streaming, h, 0, ids.length);
    expect(maxScaledDiff(logits, flat(ref.logits))).toBeLessThan(TOL);
    expect(streaming.residentBytes()).toBeLessThan(model.residentBytes());
    // forward works the same way in streaming residency
    expect(maxScaledDiff(forward(streaming, ids).logits!, flat(ref.logits))).toBeLessThan(TOL);
  });

  it('stopAfterLayer returns that layer’s output and no logits', () => {
    const r = forward(model, ids, { stopAfterLayer: 1 });
    expect(r.logits).toBeNull();
    expect(maxScaledDiff(r.hidden, flat(ref.layerOutputs.get(1)!))).toBeLessThan(TOL);
  });
});

describe('captureActivations', () => {
  const cfg = tinyConfig('qwen2');
  const tensors = randomTensors(cfg, 3);
  const model = tinyModel(cfg, tensors);
  const seqs = [randomIds(9, cfg.vocabSize, 1), randomIds(4, cfg.vocabSize, 2), randomIds(1, cfg.vocabSize, 3)];

  it('keeps exactly what was asked, per sequence, equal to the float64 reference', () => {
    const r = captureActivations(model, seqs, {
      layerInputs: [1],
      layerOutputs: [0],
      linearInputs: [
        { layer: 0, linear: 'q_proj' },
        { layer: 0, linear: 'k_proj' },
        { layer: 1, linear: 'down_proj' },
        { layer: 1, linear: 'o_proj' },
      ],
    });
    expect(r.tokens).toEqual([9, 4, 1]);
    expect([...r.layerInputs.keys()]).toEqual([1]);
    expect([...r.layerOutputs.keys()]).toEqual([0]);
    expect([...r.linearInputs.keys()].sort()).toEqual([0, 1]);
    expect([...r.linearInputs.get(0)!.keys()].sort()).toEqual(['k_proj', 'q_proj']);
    expect([...r.linearInputs.get(1)!.keys()].sort()).toEqual(['down_proj', 'o_proj']);
    seqs.forEach((ids, s) => {
      const ref = referenceForward(cfg, tensors, ids);
      expect(maxScaledDiff(r.layerInputs.get(1)![s], flat(ref.layerInputs.get(1)!))).toBeLessThan(TOL);
      expect(maxScaledDiff(r.layerOutputs.get(0)![s], flat(ref.layerOutputs.get(0)!))).toBeLessThan(TOL);
      for (const [l, name] of [[0, 'q_proj'], [0, 'k_proj'], [1, 'down_proj'], [1, 'o_proj']] as const)
        expect(maxScaledDiff(r.linearInputs.get(l)!.get(name)![s], flat(ref.linearInputs.get(`${l}.${name}`)!))).toBeLessThan(TOL);
      // q and k share their input: one copy
      expect(r.linearInputs.get(0)!.get('q_proj')![s]).toBe(r.linearInputs.get(0)!.get('k_proj')![s]);
      expect(r.linearInputs.get(1)!.get('down_proj')![s].length).toBe(ids.length * cfg.intermediateSize);
    });
  });

  it('runs only as deep as the request needs', () => {
    let deepest = -1;
    const seen = new Set<number>();
    const spy = new Proxy(model, {
      get(target, prop, receiver) {
        if (prop === 'layer') return (l: number) => (seen.add(l), (deepest = Math.max(deepest, l)), target.layer(l));
        return Reflect.get(target, prop, receiver);
      },
    });
    captureActivations(spy, seqs, { layerOutputs: [0] });
    expect(deepest).toBe(0);
    const empty = captureActivations(model, seqs, {});
    expect(empty.tokens).toEqual([9, 4, 1]);
    expect(empty.layerInputs.size + empty.layerOutputs.size + empty.linearInputs.size).toBe(0);
  });

  it('"all" captures every layer and linear', () => {
    const r = captureActivations(model, seqs.slice(0, 1), { layerInputs: 'all', linearInputs: 'all' });
    expect(r.layerInputs.size).toBe(3);
    expect([...r.linearInputs.values()].every((m) => m.size === 7)).toBe(true);
  });

  it('rejects bad requests', () => {
    expect(() => captureActivations(model, seqs, { layerInputs: [3] })).toThrow(UsageError);
    expect(() => captureActivations(model, seqs, { layerOutputs: [-1] })).toThrow(/layerOutputs/);
    expect(() => captureActivations(model, seqs, { linearInputs: [{ layer: 0, linear: 'qkv' as LinearName }] })).toThrow(/qkv/);
  });
});

describe('errors', () => {
  const cfg = tinyConfig('llama');
  const model = tinyModel(cfg, randomTensors(cfg, 1));

  it('token ids outside the vocabulary, empty input', () => {
    expect(() => forward(model, Int32Array.of(1, 37))).toThrow(/ids\[1\] = 37 is outside the vocabulary \[0, 37\)/);
    expect(() => forward(model, Int32Array.of(-1))).toThrow(UsageError);
    expect(() => forward(model, new Int32Array(0))).toThrow(/at least one token/);
    expect(() => forward(model, [1, 2] as unknown as Int32Array)).toThrow(/Int32Array/);
  });

  it('cache overflow and a cache of another model', () => {
    const cache = new KvCache(cfg, 4);
    forward(model, Int32Array.of(1, 2, 3), { cache });
    expect(() => forward(model, Int32Array.of(1, 2), { cache })).toThrow(/do not fit \(3 of 4 positions used\)/);
    expect(cache.length).toBe(3);
    const other = new KvCache(tinyConfig('qwen3'), 8);
    expect(() => forward(model, Int32Array.of(1), { cache: other })).toThrow(/another shape/);
    expect(() => new KvCache(cfg, 0)).toThrow(/capacity/);
    expect(() => cache.truncate(4)).toThrow(/truncate/);
  });

  it('bad layer options', () => {
    const ids = Int32Array.of(1, 2);
    expect(() => forward(model, ids, { skipLayers: [3] })).toThrow(/skipLayers: layer 3/);
    expect(() => forward(model, ids, { stopAfterLayer: 5 })).toThrow(/stopAfterLayer/);
    expect(() => forward(model, ids, { logits: 'some' as 'all' })).toThrow(/logits/);
    const wrong = tinyModel(tinyConfig('llama', { intermediate_size: 60 }), randomTensors(tinyConfig('llama', { intermediate_size: 60 }), 2)).layer(0);
    expect(() => forward(model, ids, { replaceLayers: new Map([[0, wrong]]) })).toThrow(/gate_proj is \[60, 40\], expected \[56, 40\]/);
    expect(() => model.setLayer(0, { ...model.layer(0), inputNorm: new Float32Array(3) })).toThrow(/inputNorm/);
    expect(() => runLayer(model, 0, new Float32Array(41))).toThrow(/hiddenIn/);
    expect(() => runLayer(model, 1, new Float32Array(40), { weights: model.layer(0) })).toThrow(/layer 0, not 1/);
    expect(() => model.layer(3)).toThrow(/layer: expected an integer in \[0, 3\)/);
  });
});

function rawOf(cfg: ReturnType<typeof tinyConfig>): Record<string, unknown> {
  return {
    architectures: [cfg.architecture],
    hidden_size: cfg.hiddenSize,
    intermediate_size: cfg.intermediateSize,
    num_hidden_layers: cfg.numLayers,
    num_attention_heads: cfg.numHeads,
    num_key_value_heads: cfg.numKvHeads,
    head_dim: cfg.headDim,
    vocab_size: cfg.vocabSize,
    max_position_embeddings: cfg.maxPositionEmbeddings,
    rms_norm_eps: cfg.rmsNormEps,
    rope_theta: cfg.ropeTheta,
    tie_word_embeddings: cfg.tieWordEmbeddings,
    sliding_window: cfg.slidingWindow,
    rope_scaling: cfg.ropeScaling && cfg.ropeScaling.type === 'llama3'
      ? { rope_type: 'llama3', factor: cfg.ropeScaling.factor, low_freq_factor: cfg.ropeScaling.lowFreqFactor, high_freq_factor: cfg.ropeScaling.highFreqFactor, original_max_position_embeddings: cfg.ropeScaling.originalMaxPositionEmbeddings }
      : null,
  };
}
