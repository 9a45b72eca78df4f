/**
 * The shipped real models reproduce ../shared/data/reference.json (README §6): perplexity on
 * the TinyStories text with 512-token windows (all windows, within 0.5% relative), greedy
 * decoding from BOS token for token, and the float64 probe logits.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';

import { loadTokenizer, type Tokenizer } from '../../lib/io/tokenizer.js';
import { forward } from '../../lib/runtime/forward.js';
import { generateTokens } from '../../lib/runtime/generate.js';
import { RuntimeModel } from '../../lib/runtime/model.js';
import { loadEvalText, perplexity } from '../../lib/runtime/perplexity.js';
import { dataPath } from '../../lib/util/data-dir.js';

const reference = JSON.parse(readFileSync(dataPath('reference.json'), 'utf8'));

interface Case {
  name: 'stories260K' | 'tinystories-656K';
  dir: string;
}
const cases: Case[] = [
  { name: 'stories260K', dir: dataPath('models/stories260K') },
  { name: 'tinystories-656K', dir: dataPath('models/tinystories-656K') },
];

describe.each(cases)('$name', ({ name, dir }) => {
  const ref = reference[name];
  let model: RuntimeModel;
  let tok: Tokenizer;
  let text: string;
  beforeAll(async () => {
    model = RuntimeModel.open(dir);
    tok = await loadTokenizer(dir);
    text = loadEvalText('tinystories').text;
  });

  it('probe logits (last position of the first 48 tokens) match the float64 reference', () => {
    const probe = tok.encode(text.slice(0, 400), { addBos: true }).subarray(0, 48);
    expect([...probe.subarray(0, 16)]).toEqual(ref.probe_tokens);
    const { logits } = forward(model, probe, { logits: 'last' });
    const got = [...logits!.subarray(0, 8)];
    const want: number[] = ref.probe_last_logits_first8_float64;
    // reference values are rounded to 5 decimals; f32 adds ~1e-5
    for (let i = 0; i < 8; i++) expect(Math.abs(got[i] - want[i]), `logit ${i}: ${got[i]} vs ${want[i]}`).toBeLessThan(5e-5);
  });

  it('greedy decoding from BOS reproduces greedy_from_bos_64_ids', () => {
    const want: number[] = ref.greedy_from_bos_64_ids;
    const gen = [...generateTokens(model, Int32Array.of(1), { maxTokens: want.length - 1, temperature: 0, stopIds: [] })];
    expect([1, ...gen]).toEqual(want);
    expect(tok.decode(want)).toBe(ref.greedy_text);
  });

  it('perplexity on the TinyStories text, 512-token windows, all windows', async () => {
    const ids = tok.encode(text, { addBos: true });
    expect(ids.length).toBe(ref.tinystories_head_tokens);
    const want = ref.tinystories_head_ppl_float32;
    const r = await perplexity(model, ids, { ctx: 512 });
    console.info(`${name}: ppl ${r.perplexity.toFixed(4)} (ref ${want.ppl}), mean NLL ${r.meanNll.toFixed(6)} (ref ${want.mean_nll_nats}), ${r.windows} windows, ${r.scoredTokens} scored, ${r.seconds.toFixed(1)} s, ${r.tokensPerSecond.toFixed(0)} tok/s`);
    expect(r.windows).toBe(want.windows);
    expect(r.scoredTokens).toBe(want.scored_tokens);
    expect(Math.abs(r.perplexity / want.ppl - 1)).toBeLessThan(0.005);
    expect(Math.abs(r.meanNll - want.mean_nll_nats)).toBeLessThan(1e-4);
  });

  it('first 8 windows match the float64 reference NLL', async () => {
    const ids = tok.encode(text, { addBos: true });
    const want = ref.tinystories_head_first8_windows_float64;
    const r = await perplexity(model, ids, { ctx: 512, limit: 8 });
    expect(r.scoredTokens).toBe(want.scored_tokens);
    expect(Math.abs(r.meanNll - want.mean_nll_nats)).toBeLessThan(2e-6);
  });
});
