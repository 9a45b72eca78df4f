/**
 * What a bench row is made of: weight bytes per decode step against an independent sum over
 * the plan (lib/lieq/plan.ts accounting), plan specs, a packed model saved to the bench cache
 * and loaded back (same logits), and the timing loop's structure (warm-up excluded).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import type { BenchBackend } from '../../lib/bench/backend.js';
import { createCpuBenchBackend, weightBytesPerStep } from '../../lib/bench/cpu-backend.js';
import { measureBackend, WARMUP_DECODE_STEPS } from '../../lib/bench/measure.js';
import { savePackedModel } from '../../lib/bench/models.js';
import { parsePlanSpec, plannedSource, resolvePlan } from '../../lib/bench/plans.js';
import { expectedTensors, loadConfig } from '../../lib/io/config.js';
import { openModel } from '../../lib/io/model.js';
import { accountPlan, type Plan } from '../../lib/lieq/plan.js';
import { openRuntimeModel } from '../../lib/quant/packed-source.js';
import { forward } from '../../lib/runtime/forward.js';
import { checkpointSource, RuntimeModel } from '../../lib/runtime/model.js';
import { dataPath } from '../../lib/util/data-dir.js';
import { FileError, UsageError } from '../../lib/util/errors.js';
import { tempDir } from '../helpers/tmp.js';

const dir = dataPath('models/stories260K');
const cfg = loadConfig(dir);
const defaults = { groupSize: 32, lmHeadBits: 16 as const, allowed: [2, 3, 4], seed: 3 };

function packed(plan: Plan): RuntimeModel {
  return RuntimeModel.fromSource(plannedSource(checkpointSource(openModel(dir)), plan));
}

describe('weight bytes per decode step', () => {
  it('f32: every tensor but the embedding, 4 bytes each, plus the tied head (= the embedding, read in full)', () => {
    const m = RuntimeModel.open(dir);
    const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);
    const nonEmbedding = expectedTensors(cfg).filter((t) => t.role !== 'embedding').reduce((s, t) => s + numel(t.shape), 0);
    expect(weightBytesPerStep(m)).toBe(4 * (nonEmbedding + cfg.vocabSize * cfg.hiddenSize));
  });

  for (const [spec, headBits] of [['uniform:4', 16], ['bits:3', 16], ['uniform:2', 8]] as const) {
    it(`${spec}, LM head ${headBits}: packed decoder bytes + f32 norms + the head, from the plan accounting`, () => {
      const plan = resolvePlan(parsePlanSpec(spec), cfg, { ...defaults, lmHeadBits: headBits })!;
      const acc = accountPlan(plan, cfg);
      const decoder = acc.perLayer.reduce((s, l) => s + l.bytes, 0);
      // the runtime holds a 16-bit head as f32 (the tied embedding); an 8-bit head as packed
      const head = headBits === 16 ? 4 * cfg.vocabSize * cfg.hiddenSize : acc.lmHeadBytes;
      expect(weightBytesPerStep(packed(plan))).toBe(decoder + acc.otherBytes + head);
    });
  }
});

describe('plan specs', () => {
  it('bits:B allocates a seeded random order under the budget; uniform:B is every layer at B', () => {
    const p = resolvePlan(parsePlanSpec('bits:3'), cfg, defaults)!;
    expect(p.method).toBe('random');
    expect(accountPlan(p, cfg).nominalBits).toBeLessThanOrEqual(3 + 1e-9);
    expect(p.layers.filter((l) => l.bits === 4).length).toBe(2); // 5 equal layers: 2 + 2·k/5 ≤ 3 → k = 2
    expect(resolvePlan(parsePlanSpec('bits:3'), cfg, defaults)).toEqual(p);
    expect(resolvePlan(parsePlanSpec('uniform:8'), cfg, defaults)!.layers.every((l) => l.bits === 8 && l.groupSize === 32)).toBe(true);
    expect(resolvePlan(parsePlanSpec('f32'), cfg, defaults)).toBeNull();
  });

  it('bad specs: UsageError; a missing plan file: FileError', () => {
    for (const bad of ['uniform:5', 'bits:1.5', 'bits:', 'int8:4']) expect(() => parsePlanSpec(bad), bad).toThrow(UsageError);
    expect(() => parsePlanSpec('/nonexistent/plan.json')).toThrow(FileError);
  });
});

describe('bench model cache', () => {
  it('a model packed in memory, saved as a packed directory, loads back with the same logits and bytes', async () => {
    const plan = resolvePlan(parsePlanSpec('bits:3'), cfg, { ...defaults, lmHeadBits: 8 })!;
    const model = packed(plan);
    const out = join(tempDir(), 'cached');
    await savePackedModel(model, plan, JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')), out);
    const loaded = openRuntimeModel(out);
    expect(weightBytesPerStep(loaded)).toBe(weightBytesPerStep(model));
    const ids = Int32Array.of(1, 40, 300, 7, 99);
    const a = forward(model, ids).logits!;
    const b = forward(loaded, ids).logits!;
    // the embedding is stored as f16 (the format's rule), so inputs differ by f16 rounding
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
    expect(worst).toBeLessThan(2e-2);
  });
});

describe('measureBackend', () => {
  it('runs one warm-up then R repeats per batch, with the shapes the backend expects', async () => {
    const calls: string[] = [];
    const fake: BenchBackend = {
      device: 'cpu', deviceName: 'fake', weightBytesPerStep: 1000, maxBatch: 4, maxContext: 10,
      reset: () => calls.push('reset'),
      prefill: async (ids, batch, p) => void calls.push(`prefill ${ids.length}=${batch}x${p}`),
      decode: async (ids, batch) => void calls.push(`decode ${ids.length}=${batch}`),
      memory: () => ({ hostRssBytes: 5 }),
      dispose: () => {},
    };
    const r = await measureBackend(fake, { batches: [1, 4], prompt: 3, gen: 6, repeat: 2, seed: 0, vocabSize: 10 });
    const count = (s: string) => calls.filter((c) => c === s).length;
    expect(count('prefill 3=1x3')).toBe(1 + 2);
    expect(count('prefill 12=4x3')).toBe(1 + 2);
    expect(count('decode 1=1')).toBe(WARMUP_DECODE_STEPS + 2 * 6);
    expect(count('decode 4=4')).toBe(WARMUP_DECODE_STEPS + 2 * 6);
    expect(r.map((b) => [b.batch, b.repeats, b.prefill!.tokensPerSecond.n, b.decode!.tokensPerSecond.n, b.decode!.weightBytesPerToken])).toEqual([
      [1, 2, 2, 2, 1000],
      [4, 2, 2, 2, 250],
    ]);
  });

  it('the CPU backend refuses a context beyond the model and batches beyond its size', async () => {
    const m = RuntimeModel.open(dir);
    expect(() => createCpuBenchBackend(m, { maxBatch: 1, maxContext: 513 })).toThrow(/max_position_embeddings \(512\)/);
    const be = createCpuBenchBackend(m, { maxBatch: 2, maxContext: 8 });
    await expect(be.decode(Int32Array.of(1, 2, 3), 3)).rejects.toThrow(UsageError);
  });
});
