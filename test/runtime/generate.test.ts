/**
 * Generation and sampling: greedy decoding with the KV cache equals argmax over full
 * recomputes of the float64 reference, stop conditions, seeded sampling (reproducible, follows
 * softmax(logits / T), nucleus truncation) and argument errors.
 */
import { describe, expect, it } from 'vitest';

import { generate, generateTokens } from '../../lib/runtime/generate.js';
import { argmax, Rng, sampleToken } from '../../lib/runtime/sampling.js';
import { UsageError } from '../../lib/util/errors.js';
import { randomIds, randomTensors, referenceForward, tinyConfig, tinyModel } from './reference-forward.js';

const cfg = tinyConfig('mistral-window', { max_position_embeddings: 24, eos_token_id: 2 });
const tensors = randomTensors(cfg, 13);
const model = tinyModel(cfg, tensors);

describe('generate', () => {
  it('greedy = argmax of a full float64 recompute at every step (sliding window included)', () => {
    const prompt = randomIds(4, cfg.vocabSize, 9);
    const { ids, stats } = generate(model, prompt, { maxTokens: 12, stopIds: [] });
    const seq = [...prompt];
    for (let i = 0; i < 12; i++) {
      const last = referenceForward(cfg, tensors, seq).logits.at(-1)!;
      seq.push(argmax(Float32Array.from(last)));
    }
    expect(ids).toEqual(seq.slice(4));
    expect(stats).toMatchObject({ promptTokens: 4, generatedTokens: 12, stoppedBy: 'max-tokens', decodeSteps: 11 });
  });

  it('stops at EOS (not yielded), at maxTokens 0 and when the context is full', () => {
    const prompt = randomIds(3, cfg.vocabSize, 2);
    const free = generate(model, prompt, { maxTokens: 10, stopIds: [] }).ids;
    const eos = free[4];
    const stopped = generate(model, prompt, { maxTokens: 10, stopIds: [eos] });
    expect(stopped.ids).toEqual(free.slice(0, free.indexOf(eos)));
    expect(stopped.stats.stoppedBy).toBe('eos');
    expect(generate(model, prompt, { maxTokens: 0 }).ids).toEqual([]);
    const full = generate(model, prompt, { maxTokens: 100, stopIds: [] });
    expect(full.stats.stoppedBy).toBe('context');
    expect(prompt.length + full.ids.length).toBe(cfg.maxPositionEmbeddings + 1); // the last token needs no slot
    expect(generate(model, prompt, { maxTokens: 5, stopIds: [], contextLength: 6 }).stats.stoppedBy).toBe('context');
  });

  it('defaults to the config’s eos ids', () => {
    const prompt = randomIds(3, cfg.vocabSize, 2);
    const first = generate(model, prompt, { maxTokens: 1, stopIds: [] }).ids[0];
    const withEos = tinyModel(tinyConfig('mistral-window', { max_position_embeddings: 24, eos_token_id: [first, 30] }), tensors);
    const it = generateTokens(withEos, prompt, { maxTokens: 5 });
    const r = it.next();
    expect(r.done).toBe(true);
    expect(r.value).toMatchObject({ generatedTokens: 0, stoppedBy: 'eos' });
  });

  it('seeded sampling is reproducible; other seeds differ; tiny top-p is greedy', () => {
    const prompt = randomIds(3, cfg.vocabSize, 5);
    const a = generate(model, prompt, { maxTokens: 15, temperature: 1.5, seed: 42, stopIds: [] }).ids;
    const b = generate(model, prompt, { maxTokens: 15, temperature: 1.5, seed: 42, stopIds: [] }).ids;
    const c = generate(model, prompt, { maxTokens: 15, temperature: 1.5, seed: 43, stopIds: [] }).ids;
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    const greedy = generate(model, prompt, { maxTokens: 15, stopIds: [] }).ids;
    expect(generate(model, prompt, { maxTokens: 15, temperature: 1, topP: 1e-9, seed: 1, stopIds: [] }).ids).toEqual(greedy);
  });

  it('rejects bad options', () => {
    const p = Int32Array.of(1);
    const run = (o: object) => generate(model, p, { maxTokens: 2, ...o });
    expect(() => run({ temperature: -1 })).toThrow(/temperature/);
    expect(() => run({ topP: 0 })).toThrow(/topP/);
    expect(() => run({ topP: 1.5 })).toThrow(UsageError);
    expect(() => run({ maxTokens: -1 })).toThrow(/maxTokens/);
    expect(() => run({ seed: 1.5 })).toThrow(/seed/);
    expect(() => generate(model, new Int32Array(0), { maxTokens: 1 })).toThrow(/at least one token/);
    expect(() => generate(model, randomIds(30, cfg.vocabSize, 1), { maxTokens: 1 })).toThrow(/exceed the context length 24/);
  });
});

describe('sampling', () => {
  it('argmax takes the first maximum', () => {
    expect(argmax(Float32Array.of(1, 3, 3, 2))).toBe(1);
    expect(argmax(Float32Array.of(-Infinity, -5))).toBe(1);
  });

  it('Rng is uniform in [0, 1) and reproducible', () => {
    const r = new Rng(7);
    const xs = Array.from({ length: 20000 }, () => r.next());
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.01);
    const r2 = new Rng(7);
    expect(r2.next()).toBe(xs[0]);
  });

  it('draws follow softmax(logits / T) and the top-p nucleus', () => {
    const logits = Float32Array.of(2, 1, 0, -1, 0.5);
    const T = 0.7;
    const p = [...logits].map((z) => Math.exp(z / T));
    const sum = p.reduce((a, b) => a + b, 0);
    const rng = new Rng(3);
    const counts = new Array(5).fill(0);
    const N = 40000;
    for (let i = 0; i < N; i++) counts[sampleToken(logits, { temperature: T, topP: 1 }, rng)]++;
    for (let i = 0; i < 5; i++) {
      const want = p[i] / sum;
      expect(Math.abs(counts[i] / N - want)).toBeLessThan(4 * Math.sqrt((want * (1 - want)) / N) + 1e-3);
    }
    // top-p 0.8: the smallest prefix of sorted probs reaching 0.8 — here tokens 0 and 1 (0.63 + 0.15 < 0.8, so also 4)
    const sorted = [0, 1, 4, 2, 3];
    let acc = 0;
    const nucleus: number[] = [];
    for (const i of sorted) {
      nucleus.push(i);
      acc += p[i] / sum;
      if (acc >= 0.8) break;
    }
    const seen = new Set<number>();
    for (let i = 0; i < 5000; i++) seen.add(sampleToken(logits, { temperature: T, topP: 0.8 }, rng));
    expect([...seen].sort()).toEqual([...nucleus].sort());
  });
});
