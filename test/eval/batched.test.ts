/**
 * Batched scoring (`--batch`): the runtime pieces it stands on (forwardBatch against separate
 * forwards, KvCache.copyPrefixFrom against re-running the prefix), the batched scorer on the
 * bigram stand-in (sums of table entries by hand, which passes run and what they cost), and on
 * the shipped models, full precision and 4-bit packed, every batch size against batch 1.
 */
import { describe, expect, it } from 'vitest';

import { loadTokenizer } from '../../lib/io/tokenizer.js';
import { LoglikelihoodScorer, RequestEncoder, type EncodedRequest } from '../../lib/eval/loglikelihood.js';
import { TASK_NAMES } from '../../lib/eval/tasks.js';
import { evaluateZeroShot, loadItems, type ZeroShotResult } from '../../lib/eval/zero-shot.js';
import { forwardBatch } from '../../lib/runtime/batch-decode.js';
import { forward } from '../../lib/runtime/forward.js';
import { KvCache } from '../../lib/runtime/kv-cache.js';
import { packModel, RuntimeModel } from '../../lib/runtime/model.js';
import { dataPath } from '../../lib/util/data-dir.js';
import { UsageError } from '../../lib/util/errors.js';
import { BOS, bigramModel, bigramTable, pieceTokenizer } from './stand-in.js';

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
};

describe('forwardBatch and KvCache.copyPrefixFrom (stories260K)', () => {
  const model = RuntimeModel.open(dataPath('models/stories260K'));
  const V = model.config.vocabSize;
  const seq = (n: number, seed: number) => Int32Array.from({ length: n }, (_, i) => (seed * 31 + i * 17) % V);

  it('several sequences of different lengths and start positions equal separate forwards', () => {
    const prefixes = [seq(5, 1), seq(0, 2), seq(12, 3)];
    const news = [seq(9, 4), seq(1, 5), seq(20, 6)];
    const fresh = () =>
      prefixes.map((p) => {
        const c = new KvCache(model.config, 64);
        if (p.length > 0) forward(model, p, { cache: c, logits: 'none' });
        return c;
      });
    const sep = fresh();
    const want = news.map((ids, i) => forward(model, ids, { cache: sep[i], logits: 'all' }).logits!);
    const batched = fresh();
    const all = forwardBatch(model, news.map((ids, i) => ({ ids, cache: batched[i] })), { logits: 'all' })!;
    expect(all.length).toBe((9 + 1 + 20) * V);
    let row = 0;
    news.forEach((ids, i) => {
      // equal up to float32 summation order (the GEMM blocks 30 rows unlike 1, 9 or 20)
      expect(maxAbsDiff(all.subarray(row * V, (row + ids.length) * V), want[i])).toBeLessThan(1e-4);
      row += ids.length;
      expect(batched[i].length).toBe(prefixes[i].length + ids.length);
    });
    const again = fresh();
    const last = forwardBatch(model, news.map((ids, i) => ({ ids, cache: again[i] })), { logits: 'last' })!;
    expect(last.length).toBe(3 * V);
    row = 0;
    news.forEach((ids, i) => {
      row += ids.length;
      expect(maxAbsDiff(last.subarray(i * V, (i + 1) * V), all.subarray((row - 1) * V, row * V))).toBeLessThan(1e-4);
    });
  });

  it('errors: the same cache twice, an empty sequence, overflow, no sequences', () => {
    const c = new KvCache(model.config, 4);
    expect(() => forwardBatch(model, [{ ids: seq(1, 1), cache: c }, { ids: seq(1, 2), cache: c }])).toThrow(/same KvCache/);
    expect(() => forwardBatch(model, [{ ids: new Int32Array(0), cache: c }])).toThrow(UsageError);
    expect(() => forwardBatch(model, [{ ids: seq(5, 1), cache: c }])).toThrow(/do not fit/);
    expect(() => forwardBatch(model, [])).toThrow(UsageError);
  });

  it('copyPrefixFrom: continuing from a copied prefix equals continuing from the original (bit for bit)', () => {
    const src = new KvCache(model.config, 48);
    forward(model, seq(30, 7), { cache: src, logits: 'none' });
    for (const capacity of [48, 20]) {
      const dst = new KvCache(model.config, capacity);
      dst.copyPrefixFrom(src, 17);
      expect(dst.length).toBe(17);
      const a = forward(model, seq(3, 8), { cache: dst, logits: 'all' }).logits!;
      const ref = new KvCache(model.config, 48);
      forward(model, seq(30, 7).subarray(0, 17), { cache: ref, logits: 'none' });
      const b = forward(model, seq(3, 8), { cache: ref, logits: 'all' }).logits!;
      expect(Array.from(a)).toEqual(Array.from(b));
    }
    const small = new KvCache(model.config, 8);
    expect(() => small.copyPrefixFrom(src, 9)).toThrow(UsageError);
    expect(() => src.copyPrefixFrom(src, 2)).toThrow(/same cache/);
  });
});

describe('batched LoglikelihoodScorer on the bigram stand-in', () => {
  const PIECES = ['a', 'b', 'c', 'd', ' ', ':', 'Q', '\n', ' a', 'bc'];
  const tok = pieceTokenizer(PIECES);
  const id = (p: string) => tok.id(p);
  const model = bigramModel(
    bigramTable(tok.vocabSize, [
      [id(':'), id(' a'), 0.5],
      [id(':'), id(' '), 0.25],
      [id(' '), id('bc'), 0.5],
      [id('bc'), id('bc'), 0.9],
      [id('b'), id('d'), 0.8],
      [id('a'), id('b'), 0.6],
    ]),
  );
  const enc = new RequestEncoder(tok);
  // Two questions of two choices, then a merge across the boundary and a long continuation.
  const reqs: EncodedRequest[] = [
    { context: 'Q:', continuation: ' a' },
    { context: 'Q:', continuation: ' bcbcbc' },
    { context: 'Qa:', continuation: ' a' },
    { context: 'Qa:', continuation: ' bc' },
    { context: 'ab', continuation: 'cd' },
    { context: 'a', continuation: 'bd' },
  ].map((r) => enc.encode(r));
  const L = Math.log;
  const want = [L(0.5), L(0.25) + L(0.5) + 2 * L(0.9), L(0.5), L(0.25) + L(0.5), L(0.8), L(0.6) + L(0.8)];

  it('every batch size gives the sums of the table entries', () => {
    for (const batch of [1, 2, 3, 4, 6, 8]) {
      const s = new LoglikelihoodScorer(model, 64, batch);
      const got = s.scoreBatch(reqs);
      got.forEach((ll, i) => expect(ll, `batch ${batch}, request ${i}`).toBeCloseTo(want[i], 5));
    }
  });

  it('a batch runs its distinct contexts in one pass and its continuations in another', () => {
    // batch 4: [Q: ×2, Qa: ×2] → contexts "<s> Q :" and "<s> Q a :" (pass 1), three
    // continuations longer than one token (pass 2); then [ab→cd, a→bd]: two more passes.
    const s = new LoglikelihoodScorer(model, 64, 4);
    s.scoreBatch(reqs);
    expect(s.passes).toBe(4);
    // contexts 3 + 4 tokens; continuation inputs [" ", bc, bc] + [" "]; contexts "<s> a b" and
    // "<s> a" after the caches held "<s> Q …": 2 + 1 new tokens (BOS reused); input [b]
    expect(s.forwardTokens).toBe(3 + 4 + 3 + 1 + 2 + 1 + 1);
    // batch 1: a context pass for each new context (4), a continuation pass for each
    // continuation longer than one token (3)
    const one = new LoglikelihoodScorer(model, 64, 1);
    one.scoreBatch(reqs);
    expect(one.passes).toBe(4 + 3);
  });

  it('a question split across two batches reuses its context from the cache that kept it', () => {
    const s = new LoglikelihoodScorer(model, 64, 3);
    const q = [0, 1, 0, 1].map((i) => reqs[i]); // four choices of one context, batch 3
    s.scoreBatch(q).forEach((ll, i) => expect(ll).toBeCloseTo(want[[0, 1, 0, 1][i]], 5));
    // the context "<s> Q :" runs once; the second batch finds it whole in a kept cache
    expect(s.forwardTokens).toBe(3 + 3 + 3);
  });

  it('a continuation longer than the window is cut in chunks, also when batched', () => {
    for (const batch of [1, 4]) {
      const s = new LoglikelihoodScorer(model, 3, batch);
      expect(s.scoreBatch([reqs[1], reqs[0]])[0]).toBeCloseTo(want[1], 5);
      expect(s.longContinuations).toBe(1);
    }
  });

  it('errors: batch < 1; an empty continuation', () => {
    expect(() => new LoglikelihoodScorer(model, 64, 0)).toThrow(/batch: expected an integer >= 1/);
    expect(() => new LoglikelihoodScorer(model, 64, 4).scoreBatch([reqs[0], { context: Int32Array.of(BOS), continuation: new Int32Array(0) }])).toThrow(/continuation has no tokens/);
  });
});

describe('batched scoring on the shipped models equals batch 1', () => {
  // Float32 sums differ in their last bits between batch sizes (the native GEMM takes other
  // kernels for ≤ 8 dense or ≤ 32 packed rows): |Δ| stays within 4e-6 of |ll| (measured
  // ≤ 1.9e-6 on 880 requests per model, bench/eval-batch.ts), and no prediction changes.
  const limit = 3;
  const items = loadItems(TASK_NAMES, { limit });
  const compare = (a: ZeroShotResult, b: ZeroShotResult, what: string) => {
    a.tasks.forEach((t, ti) => {
      const u = b.tasks[ti];
      expect(u.metrics, what).toEqual(t.metrics);
      t.samples!.forEach((d, di) => {
        const e = u.samples![di];
        expect([e.pred, e.predNorm], `${what} ${t.task} doc ${di}`).toEqual([d.pred, d.predNorm]);
        d.lls.forEach((ll, c) => expect(Math.abs(e.lls[c] - ll), `${what} ${t.task} doc ${di} choice ${c}`).toBeLessThanOrEqual(4e-6 * Math.max(1, Math.abs(ll))));
      });
    });
  };

  for (const name of ['stories260K', 'tinystories-656K']) {
    it(`${name}: batch 3, 8, 16 against batch 1, full precision and 4-bit packed`, async () => {
      const dir = dataPath(`models/${name}`);
      const tokenizer = await loadTokenizer(dir);
      const model = RuntimeModel.open(dir);
      const packed = RuntimeModel.open(dir);
      packModel(packed, { bits: 4, groupSize: 32 });
      for (const [m, label] of [[model, 'fp'], [packed, 'packed']] as const) {
        const one = await evaluateZeroShot(m, tokenizer, items, { batch: 1, samples: true });
        expect(one.batch).toBe(1);
        for (const batch of [3, 8, 16]) {
          const r = await evaluateZeroShot(m, tokenizer, items, { batch, samples: true });
          compare(one, r, `${label} batch ${batch}`);
          const passes = (x: ZeroShotResult) => x.tasks.reduce((s, t) => s + t.passes, 0);
          expect(passes(r)).toBeLessThan(passes(one));
        }
      }
    });
  }
});
