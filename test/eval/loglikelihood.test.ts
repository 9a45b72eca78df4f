/**
 * Harness-exact request encoding and log-likelihood scoring: a greedy piece tokenizer and a
 * bigram stand-in model whose answers are sums of table entries (computed by hand below), then
 * the real stories260K model with prefix reuse and left truncation, one request at a time and
 * batched, against plain full-sequence forwards scored in float64.
 */
import { describe, expect, it } from 'vitest';

import { loadTokenizer } from '../../lib/io/tokenizer.js';
import { LoglikelihoodScorer, RequestEncoder } from '../../lib/eval/loglikelihood.js';
import { buildItems } from '../../lib/eval/prompts.js';
import { loadTask } from '../../lib/eval/tasks.js';
import { evaluateTask } from '../../lib/eval/zero-shot.js';
import { forward } from '../../lib/runtime/forward.js';
import { RuntimeModel } from '../../lib/runtime/model.js';
import { dataPath } from '../../lib/util/data-dir.js';
import { DataError, UsageError } from '../../lib/util/errors.js';
import { BOS, bigramModel, bigramTable, pieceTokenizer } from './stand-in.js';

const PIECES = ['a', 'b', 'c', 'd', ' ', ':', 'Q', '\n', ' a', 'bc'];
const tok = pieceTokenizer(PIECES);
const id = (p: string) => tok.id(p);
const ids = (...ps: string[]) => Array.from(ps, (p) => (p === '<s>' ? BOS : id(p)));

describe('RequestEncoder (HFLM._encode_pair)', () => {
  const enc = new RequestEncoder(tok, 'auto');

  it('splits the whole encoding by the context token count; the leading space stays with the continuation', () => {
    const r = enc.encode({ context: 'Q:', continuation: ' a' });
    expect(Array.from(r.context)).toEqual(ids('<s>', 'Q', ':'));
    expect(Array.from(r.continuation)).toEqual(ids(' a'));
  });

  it('moves trailing context whitespace to the continuation', () => {
    // Without the move, encode("Q: ") = [Q, :, " "] and "Q: a" = [Q, :, " a"]: the split would lose " a".
    const r = enc.encode({ context: 'Q: ', continuation: 'a' });
    expect(Array.from(r.context)).toEqual(ids('<s>', 'Q', ':'));
    expect(Array.from(r.continuation)).toEqual(ids(' a'));
  });

  it('a merge across the boundary: the model input is ctx tokens + whole[len(ctx):], not whole', () => {
    // whole "abcd" = [a, bc, d]; ctx "ab" = [a, b] → continuation = whole[2:] = [d]
    const r = enc.encode({ context: 'ab', continuation: 'cd' });
    expect(Array.from(r.context)).toEqual(ids('<s>', 'a', 'b'));
    expect(Array.from(r.continuation)).toEqual(ids('d'));
  });

  it('a merge that swallows the whole continuation: the boundary moves back to the last shared token', () => {
    // ctx "ab" = [a, b]; whole "abc" = [a, bc]: the count split leaves nothing (the harness asserts)
    const e = new RequestEncoder(tok);
    const r = e.encode({ context: 'ab', continuation: 'c' });
    expect(Array.from(r.context)).toEqual(ids('<s>', 'a'));
    expect(Array.from(r.continuation)).toEqual(ids('bc'));
    expect([e.boundaryMerges, e.boundaryFallbacks]).toEqual([1, 1]);
    e.encode({ context: 'ab', continuation: 'cd' }); // merged, but a token is left: harness split
    e.encode({ context: 'Q:', continuation: ' a' });
    expect([e.boundaryMerges, e.boundaryFallbacks]).toEqual([2, 1]);
  });

  it('empty context → [BOS]; BOS policies', () => {
    expect(Array.from(enc.encode({ context: '', continuation: 'ab' }).context)).toEqual([BOS]);
    expect(Array.from(new RequestEncoder(tok, 'never').encode({ context: 'Q:', continuation: ' a' }).context)).toEqual(ids('Q', ':'));
    const noBosTok = pieceTokenizer(PIECES, false);
    expect(new RequestEncoder(noBosTok, 'auto').addBos).toBe(false);
    expect(Array.from(new RequestEncoder(noBosTok, 'always').encode({ context: 'Q:', continuation: ' a' }).context)).toEqual(ids('<s>', 'Q', ':'));
    expect(() => new RequestEncoder(tok, 'sometimes' as never)).toThrow(UsageError);
    expect(() => new RequestEncoder({ ...tok, bosId: null }, 'always')).toThrow(/no BOS/);
  });
});

describe('LoglikelihoodScorer on a bigram stand-in', () => {
  const V = tok.vocabSize;
  // P(" a" | ":") = 1/2, P(" " | ":") = 1/4; P("bc" | " ") = 1/2; P("bc" | "bc") = 0.9; P("d" | "b") = 0.8
  const table = bigramTable(V, [
    [id(':'), id(' a'), 0.5],
    [id(':'), id(' '), 0.25],
    [id(' '), id('bc'), 0.5],
    [id('bc'), id('bc'), 0.9],
    [id('b'), id('d'), 0.8],
  ]);
  const model = bigramModel(table);

  it('log P(continuation | context) is the sum of the table entries', () => {
    const s = new LoglikelihoodScorer(model);
    const e = new RequestEncoder(tok);
    expect(s.score(e.encode({ context: 'Q:', continuation: ' a' }))).toBeCloseTo(Math.log(0.5), 5);
    // " bcbcbc" = [" ", bc, bc, bc] after ":"
    expect(s.score(e.encode({ context: 'Q:', continuation: ' bcbcbc' }))).toBeCloseTo(Math.log(0.25) + Math.log(0.5) + 2 * Math.log(0.9), 5);
    // the boundary merge: the continuation [d] is scored after the context's last token "b"
    expect(s.score(e.encode({ context: 'ab', continuation: 'cd' }))).toBeCloseTo(Math.log(0.8), 5);
    expect(s.reusedTokens).toBeGreaterThan(0); // the second request reused "<s> Q :"
  });

  it('acc picks the likelier choice, acc_norm the likelier per character (by hand: -0.693 vs -2.290/6)', async () => {
    const item = {
      task: 'arc_easy' as const,
      index: 0,
      source: { file: 'hand', line: 1 },
      requests: [{ context: 'Q:', continuation: ' a' }, { context: 'Q:', continuation: ' bcbcbc' }],
      choices: ['a', 'bcbcbc'],
      gold: 1,
    };
    const r = await evaluateTask(new LoglikelihoodScorer(model), new RequestEncoder(tok), 'arc_easy', [item, { ...item, index: 1, gold: 0 }], { samples: true });
    expect(r.samples!.map((d) => [d.pred, d.predNorm])).toEqual([[0, 1], [0, 1]]);
    expect(r.metrics.acc!.value).toBe(0.5);
    expect(r.metrics.acc_norm!.value).toBe(0.5);
    expect(r.metrics.acc!.stderr).toBeCloseTo(0.5, 12); // sqrt(0.5/1)/sqrt(2)
  });

  it('a continuation longer than the window is scored in chunks (a bigram loses nothing)', () => {
    const s = new LoglikelihoodScorer(model, 3);
    const e = new RequestEncoder(tok);
    // [" ", bc, bc, bc] > 3 tokens: chunks [" ", bc, bc] after ":" and [bc] after "bc"
    expect(s.score(e.encode({ context: 'Q:', continuation: ' bcbcbc' }))).toBeCloseTo(Math.log(0.25) + Math.log(0.5) + 2 * Math.log(0.9), 5);
    expect(s.longContinuations).toBe(1);
  });

  it('errors: an empty continuation is a DataError naming the document', async () => {
    const s = new LoglikelihoodScorer(model, 3);
    const e = new RequestEncoder(tok);
    expect(() => s.score({ context: Int32Array.of(BOS), continuation: new Int32Array(0) })).toThrow(DataError);
    const item = { task: 'piqa' as const, index: 0, source: { file: 'f.jsonl', line: 7 }, requests: [{ context: 'Q:', continuation: '' }], choices: ['x'], gold: 0 };
    await expect(evaluateTask(s, e, 'piqa', [item])).rejects.toThrow(/f\.jsonl: line 7, choice 0: continuation has no tokens/);
    expect(() => new LoglikelihoodScorer(model, 1)).toThrow(UsageError);
  });
});

describe('LoglikelihoodScorer on stories260K', () => {
  const dir = dataPath('models/stories260K');
  const model = RuntimeModel.open(dir);

  /** Independent: run ctx+cont (truncated as the harness) in one forward, log-softmax in float64. */
  function reference(ctx: Int32Array, cont: Int32Array, maxLength: number): number {
    let full = Int32Array.from([...ctx, ...cont]);
    if (full.length > maxLength + 1) full = full.slice(full.length - (maxLength + 1));
    const input = full.slice(0, -1);
    const logits = forward(model, input).logits!;
    const V = model.config.vocabSize;
    let ll = 0;
    for (let k = 0; k < cont.length; k++) {
      const row = input.length - cont.length + k;
      let mx = -Infinity;
      for (let v = 0; v < V; v++) mx = Math.max(mx, logits[row * V + v]);
      let s = 0;
      for (let v = 0; v < V; v++) s += Math.exp(logits[row * V + v] - mx);
      ll += logits[row * V + cont[k]] - mx - Math.log(s);
    }
    return ll;
  }

  it('prefix reuse across choices and documents equals a full recompute; left truncation as the harness', async () => {
    const tokenizer = await loadTokenizer(dir);
    const enc = new RequestEncoder(tokenizer);
    const items = [...buildItems('piqa', loadTask('piqa', { limit: 2 })), ...buildItems('winogrande', loadTask('winogrande', { limit: 2 }))];
    const reqs = items.flatMap((item) => item.requests.map((r) => enc.encode(r)));
    let truncated = 0;
    for (const maxLength of [512, 100]) {
      const want = reqs.map((e) => reference(e.context, e.continuation, maxLength));
      truncated += reqs.filter((e) => e.context.length + e.continuation.length > maxLength + 1).length;
      const s = new LoglikelihoodScorer(model, maxLength);
      reqs.forEach((e, i) => expect(Math.abs(s.score(e) - want[i])).toBeLessThan(2e-4));
      expect(s.reusedTokens).toBeGreaterThan(0);
      // batched: contexts and continuations of three requests per pass, KV prefixes copied
      const b = new LoglikelihoodScorer(model, maxLength, 3);
      b.scoreBatch(reqs).forEach((ll, i) => expect(Math.abs(ll - want[i])).toBeLessThan(2e-4));
      expect(b.reusedTokens).toBeGreaterThan(0);
    }
    expect(truncated).toBeGreaterThan(0); // PIQA's long solutions exceed the 100-token window
  });
});
