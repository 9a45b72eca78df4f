/**
 * Aggregation as lm-evaluation-harness does it (hand-computed values), and the KL-divergence
 * statistics: by-hand KL, numpy's percentile, a model against itself (0, full agreement) and
 * against its 4-bit round-to-nearest packing (positive, mostly agreeing).
 */
import { describe, expect, it } from 'vitest';

import { loadTokenizer } from '../../lib/io/tokenizer.js';
import { klDivergence, kldCompare, percentile } from '../../lib/eval/kld.js';
import { argmax, averageOf, meanStderr, predict, recovery, type TaskResult } from '../../lib/eval/zero-shot.js';
import { packModel, RuntimeModel } from '../../lib/runtime/model.js';
import { loadEvalText } from '../../lib/runtime/perplexity.js';
import { dataPath } from '../../lib/util/data-dir.js';
import { UsageError } from '../../lib/util/errors.js';

describe('zero-shot statistics', () => {
  it('meanStderr: sample std / sqrt(n)', () => {
    // [1, 0, 1, 1]: mean 0.75, sample var = (3·0.0625 + 0.5625)/3 = 0.25, stderr = 0.5/2
    expect(meanStderr([1, 0, 1, 1])).toEqual({ value: 0.75, stderr: 0.25 });
    expect(meanStderr([1])).toEqual({ value: 1, stderr: 0 });
    expect(Number.isNaN(meanStderr([]).value)).toBe(true);
  });

  it('argmax takes the first maximum; acc_norm divides by character length', () => {
    expect(argmax([-1, -0.5, -0.5])).toBe(1);
    // lls -3 ("abc", -1/char) vs -2 ("ab", -1/char): tie on acc_norm → first
    expect(predict([-3, -2], ['abc', 'ab'])).toEqual({ pred: 1, predNorm: 0 });
    expect(predict([-4, -3], ['abcdefgh', 'a'])).toEqual({ pred: 1, predNorm: 0 });
    // code points, not UTF-16 units: "😀😀" is 2 characters
    expect(predict([-2.1, -1], ['😀😀', 'x'])).toEqual({ pred: 1, predNorm: 1 });
    expect(predict([-2.1, -1.1], ['😀😀😀', 'x'])).toEqual({ pred: 1, predNorm: 0 });
  });

  it('averages are unweighted over tasks; recovery = quantized / FP', () => {
    const t = (task: TaskResult['task'], primary: 'acc' | 'acc_norm', acc: number, norm?: number) =>
      ({ task, primary, metrics: { acc: { value: acc, stderr: 0 }, ...(norm !== undefined ? { acc_norm: { value: norm, stderr: 0 } } : {}) } }) as TaskResult;
    const avg = averageOf([t('piqa', 'acc_norm', 0.5, 0.6), t('boolq', 'acc', 0.7)]);
    expect(avg.primary).toBeCloseTo(0.65, 12);
    expect(avg.acc).toBeCloseTo(0.6, 12);
    expect(recovery(0.5, 0.45)).toBeCloseTo(0.9, 12);
    expect(Number.isNaN(recovery(0, 0.1))).toBe(true);
  });
});

describe('KL divergence', () => {
  it('by hand and numpy percentiles', () => {
    const lp = Float64Array.from([0.5, 0.5].map(Math.log));
    const lq = Float64Array.from([0.25, 0.75].map(Math.log));
    // 0.5 ln 2 + 0.5 ln(2/3)
    expect(klDivergence(lp, lq)).toBeCloseTo(0.5 * Math.log(2) + 0.5 * Math.log(2 / 3), 12);
    expect(klDivergence(lp, lp)).toBe(0);
    const s = Float64Array.from([1, 2, 3, 4, 5]);
    expect(percentile(s, 0.5)).toBe(3);
    expect(percentile(s, 0.99)).toBeCloseTo(4.96, 12); // numpy.percentile([1..5], 99)
    expect(percentile(s, 1)).toBe(5);
  });

  it('a model against itself is 0 with full agreement; against 4-bit RTN it is positive', async () => {
    const dir = dataPath('models/stories260K');
    const tokenizer = await loadTokenizer(dir);
    const ids = tokenizer.encode(loadEvalText('tinystories').text.slice(0, 4000), { addBos: true, addEos: false });
    const base = RuntimeModel.open(dir);
    const same = await kldCompare(base, RuntimeModel.open(dir), ids, { ctx: 128, limit: 2 });
    expect(same).toMatchObject({ windows: 2, tokens: 254, maxKld: 0, top1Agreement: 1 });
    expect(same.meanNllBase).toBe(same.meanNllQuantized);
    const q = RuntimeModel.open(dir);
    packModel(q, { bits: 4, groupSize: 32 });
    const r = await kldCompare(base, q, ids, { ctx: 128, limit: 2 });
    expect(r.meanKld).toBeGreaterThan(1e-5);
    expect(r.p99Kld).toBeGreaterThan(r.medianKld);
    expect(r.maxKld).toBeGreaterThanOrEqual(r.p999Kld);
    expect(r.top1Agreement).toBeGreaterThan(0.7);
    expect(r.top1Agreement).toBeLessThanOrEqual(1);
    await expect(kldCompare(base, q, ids.subarray(0, 10), { ctx: 128 })).rejects.toThrow(UsageError);
  });
});
