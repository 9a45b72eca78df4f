/**
 * Perplexity: window planning (non-overlapping protocol and HF-style sliding windows), the
 * NLL of a window against the float64 reference's log-softmax, dataset loading and errors.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { gptqJoin, loadEvalText, perplexity, planWindows, windowNll } from '../../lib/runtime/perplexity.js';
import { KvCache } from '../../lib/runtime/kv-cache.js';
import { FileError, UsageError } from '../../lib/util/errors.js';
import { tempDir } from '../helpers/tmp.js';
import { randomIds, randomTensors, referenceForward, tinyConfig, tinyModel } from './reference-forward.js';

describe('planWindows', () => {
  it('non-overlapping: floor(n / ctx) windows, trailing partial dropped, ctx-1 targets each', () => {
    expect(planWindows(10, 4)).toEqual([
      { start: 0, end: 4, scoreFrom: 1 },
      { start: 4, end: 8, scoreFrom: 5 },
    ]);
    expect(planWindows(8, 4, 4)).toEqual(planWindows(8, 4));
    expect(planWindows(3, 4)).toEqual([]);
    // the README's numbers: 393,013 tokens → 767 windows, 391,937 scored
    const w = planWindows(393013, 512);
    expect(w.length).toBe(767);
    expect(w.reduce((s, x) => s + x.end - x.scoreFrom, 0)).toBe(391937);
  });

  it.each([
    [20, 8, 3],
    [21, 8, 8],
    [9, 4, 1],
    [100, 16, 7],
    [5, 8, 2],
  ])('sliding n=%i ctx=%i stride=%i: every target once, with at least ctx-stride context after the first window', (n, ctx, stride) => {
    const ws = planWindows(n, ctx, stride);
    const seen = new Array(n).fill(0);
    for (const [i, w] of ws.entries()) {
      expect(w.end - w.start).toBeLessThanOrEqual(ctx);
      expect(w.scoreFrom).toBeGreaterThan(w.start);
      for (let t = w.scoreFrom; t < w.end; t++) {
        seen[t]++;
        if (i > 0 && stride < ctx) expect(t - w.start).toBeGreaterThanOrEqual(ctx - stride);
      }
    }
    if (stride === ctx) {
      // a window's first token is input only: targets at multiples of ctx are not scored
      for (let t = 1; t < Math.floor(n / ctx) * ctx; t++) expect(seen[t]).toBe(t % ctx === 0 ? 0 : 1);
    } else {
      expect(seen.slice(1).every((c) => c === 1)).toBe(true);
    }
    expect(seen[0]).toBe(0);
  });

  it('rejects bad ctx and stride', () => {
    expect(() => planWindows(10, 1)).toThrow(/ctx/);
    expect(() => planWindows(10, 4, 5)).toThrow(/stride: expected an integer in \[1, ctx = 4\]/);
    expect(() => planWindows(10, 4, 0)).toThrow(UsageError);
  });
});

describe('window NLL and perplexity against the float64 reference', () => {
  const cfg = tinyConfig('llama3-gqa');
  const tensors = randomTensors(cfg, 8);
  const model = tinyModel(cfg, tensors);
  const ids = randomIds(40, cfg.vocabSize, 4);

  /** Σ -log softmax(ref logits[t])[ids[t+1]] over the window's scored targets. */
  function refWindowNll(start: number, end: number, scoreFrom: number): number {
    const logits = referenceForward(cfg, tensors, ids.subarray(start, end - 1)).logits;
    let s = 0;
    for (let t = scoreFrom; t < end; t++) {
      const z = logits[t - 1 - start];
      const mx = Math.max(...z);
      const lse = mx + Math.log(z.reduce((a, v) => a + Math.exp(v - mx), 0));
      s += lse - z[ids[t]];
    }
    return s;
  }

  it('windowNll = reference for plain and sliding windows', () => {
    const cache = new KvCache(cfg, 16);
    for (const w of [...planWindows(40, 16), ...planWindows(40, 16, 5)]) {
      const got = windowNll(model, ids, w, cache);
      expect(Math.abs(got - refWindowNll(w.start, w.end, w.scoreFrom)) / (w.end - w.scoreFrom)).toBeLessThan(1e-5);
    }
  });

  it('perplexity = exp(mean NLL) over the windows; limit; progress callback', async () => {
    const progress: number[] = [];
    const r = await perplexity(model, ids, { ctx: 16, onProgress: (d, t) => progress.push(d / t) });
    const ws = planWindows(40, 16);
    const total = ws.reduce((s, w) => s + refWindowNll(w.start, w.end, w.scoreFrom), 0);
    expect(r.windows).toBe(2);
    expect(r.scoredTokens).toBe(30);
    expect(r.forwardTokens).toBe(30);
    expect(r.meanNll).toBeCloseTo(total / 30, 5);
    expect(Math.abs(r.perplexity / Math.exp(total / 30) - 1)).toBeLessThan(1e-5);
    expect(progress).toEqual([0.5, 1]);
    const one = await perplexity(model, ids, { ctx: 16, limit: 1 });
    expect(one.windows).toBe(1);
    const sliding = await perplexity(model, ids, { ctx: 16, stride: 4 });
    expect(sliding.scoredTokens).toBe(39);
    expect(sliding.stride).toBe(4);
  });

  it('errors: too short a text, bad limit, ids outside the vocabulary', async () => {
    await expect(perplexity(model, ids.subarray(0, 10), { ctx: 16 })).rejects.toThrow(/fewer than one window/);
    await expect(perplexity(model, ids, { ctx: 16, limit: 0 })).rejects.toThrow(/limit/);
    await expect(perplexity(model, Int32Array.of(...ids.subarray(0, 20), 99), { ctx: 16 })).rejects.toThrow(/ids\[20\] = 99/);
  });
});

describe('evaluation texts', () => {
  it('wikitext2 is the GPTQ join of the raw test rows; wikitext2-raw the file as is', () => {
    const raw = loadEvalText('wikitext2-raw').text;
    const joined = loadEvalText('wikitext2').text;
    expect(Buffer.byteLength(raw)).toBe(1290590);
    expect(joined).toBe(gptqJoin(raw));
    expect(joined.startsWith('\n\n = Robert Boulter = \n\n\n\n\n Robert Boulter is')).toBe(true);
  });

  it('gptqJoin: rows of " " become empty, others get their newline back, joined by blank lines', () => {
    expect(gptqJoin(' \n = A = \n \nx y\n')).toBe('\n\n = A = \n\n\n\n\nx y\n');
  });

  it('a file path, and a missing file', () => {
    const dir = tempDir();
    const f = join(dir, 'text.txt');
    writeFileSync(f, 'hello world');
    expect(loadEvalText(f)).toEqual({ name: f, path: f, text: 'hello world' });
    expect(() => loadEvalText(join(dir, 'nope.txt'))).toThrow(FileError);
    expect(() => loadEvalText('wikitext3')).toThrow(/named datasets: tinystories, wikitext2, wikitext2-raw/);
  });
});
