/**
 * loadTokenizer on the shipped data (shared/data README sections 2-4 and 6): tokenizer.json
 * (@huggingface/tokenizers) and tokenizer.model (our SentencePiece BPE) must give identical
 * ids on whole texts, the token counts of reference.json, the documented greedy samples,
 * BOS policy, round trips, streaming decode and named errors.
 */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { beforeAll, describe, expect, it } from 'vitest';

import { loadTokenizer, type Tokenizer } from '../../lib/io/tokenizer.js';
import { dataPath } from '../../lib/util/data-dir.js';
import { FileError, FormatError, UsageError } from '../../lib/util/errors.js';
import { tempDir } from '../helpers/tmp.js';

const STORIES = dataPath('models/stories260K');
const TS656K = dataPath('models/tinystories-656K');
const LLAMA2 = dataPath('tokenizers/llama2');
const reference = JSON.parse(readFileSync(dataPath('reference.json'), 'utf8'));
const tinystories = readFileSync(dataPath('text/tinystories/tinystories_valid_head.txt'), 'utf8');
const wiki = readFileSync(dataPath('text/wikitext-2/wiki.test.raw'), 'utf8');

/** karpathy/llama2.c doc/stories260K.md, the greedy sample from BOS. */
const KARPATHY_SAMPLE =
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. ' +
  'One day, she saw a big, red ball. She wanted to play with it, but it was too high.';

function firstDifference(a: Int32Array, b: Int32Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

function streamAll(tok: Tokenizer, ids: ArrayLike<number>): string {
  const s = tok.streamDecoder();
  let text = '';
  for (let i = 0; i < ids.length; i++) text += s.next(ids[i]);
  return text + s.flush();
}

/** SentencePiece remove_extra_whitespaces on the text (what decode(encode(x)) gives back). */
const collapseSpaces = (s: string): string => s.replace(/ {2,}/g, ' ').replace(/^ +| +$/g, '');

const timings: Record<string, number> = {};
function timed<T>(name: string, f: () => T): T {
  const t0 = performance.now();
  const r = f();
  timings[name] = Math.round(performance.now() - t0);
  return r;
}

describe('stories260K: tokenizer.json and tokenizer.model agree', () => {
  let hf: Tokenizer;
  let spm: Tokenizer;
  let tsHf: Int32Array; // the whole TinyStories text, both backends, default BOS policy
  let tsSpm: Int32Array;
  beforeAll(async () => {
    hf = await loadTokenizer(STORIES, { backend: 'hf' });
    spm = await loadTokenizer(STORIES, { backend: 'spm' });
    tsHf = timed('stories260K hf tinystories', () => hf.encode(tinystories));
    tsSpm = timed('stories260K spm tinystories', () => spm.encode(tinystories));
  });

  it('the default backend is tokenizer.json; both state the same vocabulary and BOS/EOS policy', async () => {
    expect((await loadTokenizer(STORIES)).backend).toBe('hf');
    for (const t of [hf, spm]) {
      expect(t).toMatchObject({ vocabSize: 512, bosId: 1, eosId: 2, addsBos: true, addsEos: false });
      expect(t.idToToken(1)).toBe('<s>');
      expect(t.idToToken(3)).toBe('<0x00>');
      expect(t.tokenToId('▁the')).toBe(hf.tokenToId('▁the'));
    }
    expect(hf.file).toMatch(/tokenizer\.json$/);
    expect(spm.file).toMatch(/tokenizer\.model$/);
  });

  it('identical ids on the whole TinyStories text: 393,013 tokens = 393,012 + the one BOS', () => {
    const a = tsHf;
    expect(firstDifference(a, tsSpm)).toBe(-1);
    // README table / reference.json count the whole file tokenized once with BOS prepended.
    expect(a.length).toBe(reference.stories260K.tinystories_head_tokens);
    expect(a.length).toBe(393_013);
    expect(a[0]).toBe(1);
    expect(spm.encode(tinystories, { addBos: false }).length).toBe(393_012);
    expect(Array.from(a.subarray(0, 16))).toEqual(reference.stories260K.probe_tokens);
  });

  it('identical ids on the whole of wiki.test.raw (809,285 tokens with BOS)', () => {
    const a = timed('stories260K hf wiki', () => hf.encode(wiki));
    const b = timed('stories260K spm wiki', () => spm.encode(wiki));
    expect(firstDifference(a, b)).toBe(-1);
    expect(a.length).toBe(reference.stories260K.wikitext2_test_raw_tokens);
  });

  it('decodes the reference greedy ids to Karpathy\'s documented sample', () => {
    const ids = reference.stories260K.greedy_from_bos_64_ids as number[];
    for (const t of [hf, spm]) {
      const text = t.decode(ids);
      expect(text).toBe(reference.stories260K.greedy_text);
      expect(text.startsWith(KARPATHY_SAMPLE)).toBe(true);
      expect(streamAll(t, ids)).toBe(text);
    }
  });

  it('decode(encode(text)) gives the text back with extra spaces removed (remove_extra_whitespaces)', () => {
    for (const t of [hf, spm]) {
      const ids = t.backend === 'hf' ? tsHf : tsSpm;
      const back = timed(`stories260K ${t.backend} decode`, () => t.decode(ids));
      expect(back).toBe(collapseSpaces(tinystories));
      expect(timed(`stories260K ${t.backend} stream`, () => streamAll(t, ids))).toBe(back);
    }
  });

  it('round-trips non-ASCII (byte fallback), whitespace runs, newlines and the empty string', () => {
    const samples = ['', ' ', 'Hello world', '  Hello   world  ', 'a\n\n\tb', 'Ünïcödé ✓ 日本語 😀 ok', 'x'.repeat(300)];
    for (const s of samples) {
      const a = hf.encode(s);
      expect(Array.from(spm.encode(s)), JSON.stringify(s)).toEqual(Array.from(a));
      expect(hf.decode(a)).toBe(collapseSpaces(s.replace('\u2581', ' ')));
      expect(spm.decode(a)).toBe(hf.decode(a));
    }
    expect(Array.from(hf.encode(''))).toEqual([1]);
    expect(Array.from(spm.encode('', { addBos: false }))).toEqual([]);
  });
});

describe('Llama-2 32k tokenizer (tokenizers/llama2)', () => {
  let hf: Tokenizer;
  let spm: Tokenizer;
  beforeAll(async () => {
    hf = await loadTokenizer(LLAMA2, { backend: 'hf' });
    spm = await loadTokenizer(LLAMA2, { backend: 'spm' });
  });

  it('"Hello world" → [1, 15043, 3186] with both backends', () => {
    expect(Array.from(hf.encode('Hello world'))).toEqual(reference.llama2_tokenizer.hello_world_ids);
    expect(Array.from(spm.encode('Hello world'))).toEqual([1, 15043, 3186]);
    for (const t of [hf, spm]) expect(t).toMatchObject({ vocabSize: 32000, bosId: 1, eosId: 2, addsBos: true, addsEos: false });
  });

  it('identical ids on the whole of wiki.test.raw: 335,687 tokens without BOS (335,688 with)', () => {
    const a = timed('llama2 hf wiki', () => hf.encode(wiki, { addBos: false }));
    const b = timed('llama2 spm wiki', () => spm.encode(wiki, { addBos: false }));
    expect(firstDifference(a, b)).toBe(-1);
    // reference.json `wikitext2_test_raw_tokens_plain` (verify_data.py encodes with bos=False).
    expect(a.length).toBe(reference.llama2_tokenizer.wikitext2_test_raw_tokens_plain);
    expect(a.length).toBe(335_687);
    expect(spm.encode(wiki).length).toBe(335_688);
  });

  it('GPTQ-style join of wiki rows: 341,469 tokens with BOS', () => {
    const rows = wiki.split('\n').slice(0, -1).map((l) => (l !== ' ' ? l + '\n' : ''));
    const text = rows.join('\n\n');
    const a = spm.encode(text);
    expect(a.length).toBe(reference.llama2_tokenizer.wikitext2_test_gptq_join_tokens_with_bos);
  });

  it('identical ids on the TinyStories text, and exact round trips (identity normaliser)', () => {
    const a = timed('llama2 hf tinystories', () => hf.encode(tinystories));
    expect(firstDifference(a, timed('llama2 spm tinystories', () => spm.encode(tinystories)))).toBe(-1);
    for (const t of [hf, spm]) {
      expect(t.decode(a)).toBe(tinystories);
      expect(streamAll(t, a)).toBe(tinystories);
    }
    const samples = ['', ' ', '  lead and trail  ', 'tabs\t\tand\r\nCRLF', 'é 😀 ü 日本語 \u00a0nbsp', 'a\uFEFFb', '\n\n\n'];
    for (const s of samples) {
      const ids = spm.encode(s);
      expect(Array.from(hf.encode(s)), JSON.stringify(s)).toEqual(Array.from(ids));
      expect(hf.decode(ids)).toBe(s);
      expect(spm.decode(ids)).toBe(s);
    }
  });

  it('lone surrogates are encoded as U+FFFD by both backends', () => {
    const ids = spm.encode('a\uD800b');
    expect(Array.from(hf.encode('a\uD800b'))).toEqual(Array.from(ids));
    expect(spm.decode(ids)).toBe('a\uFFFDb');
  });

  it('streaming reassembles characters split over byte tokens and drops only the dummy-prefix space', () => {
    for (const t of [hf, spm]) {
      const ids = t.encode('😀 é', { addBos: true });
      const s = t.streamDecoder();
      const parts = Array.from(ids, (id) => s.next(id));
      parts.push(s.flush());
      expect(parts.join('')).toBe('😀 é');
      expect(parts.filter((p) => p.length > 0).length).toBeLessThan(ids.length); // bytes held back
      // Generated continuation after BOS: the first space is the dummy prefix.
      expect(streamAll(t, [1, t.tokenToId('▁Hello')!, t.tokenToId('▁world')!])).toBe('Hello world');
      expect(streamAll(t, [t.tokenToId('<0xE2>')!])).toBe('\uFFFD'); // incomplete at the end
      // A long run of invalid bytes (each one U+FFFD) is released in bounded steps.
      const garbage = [1, ...Array(100).fill(t.tokenToId('<0xFF>')!), t.tokenToId('▁ok')!];
      expect(streamAll(t, garbage)).toBe(t.decode(garbage));
      expect(t.decode(garbage)).toBe('\uFFFD'.repeat(100) + ' ok');
    }
  });

  it('decodeToken gives a token\'s text in the middle of a text', () => {
    for (const t of [hf, spm]) {
      expect(t.decodeToken(t.tokenToId('▁the')!)).toBe(' the');
      expect(t.decodeToken(t.tokenToId('<0x41>')!)).toBe('A');
      expect(t.decodeToken(t.tokenToId('<0x0A>')!)).toBe('\n');
      expect(t.decodeToken(t.tokenToId('<0xE2>')!)).toBe('\uFFFD');
      expect(t.decodeToken(1)).toBe('');
      expect(t.decodeToken(2)).toBe('');
    }
  });

  it('the merge-boundary split of the tokenizer.json path gives exactly the library\'s unsplit ids', () => {
    const json = JSON.parse(readFileSync(join(LLAMA2, 'tokenizer.json'), 'utf8'));
    const plain = new HfTokenizer(json, JSON.parse(readFileSync(join(LLAMA2, 'tokenizer_config.json'), 'utf8')));
    const text = wiki.slice(200_000, 230_000) + tinystories.slice(0, 10_000);
    const ids = Int32Array.from(plain.encode(text).ids);
    expect(firstDifference(hf.encode(text), ids)).toBe(-1);
  });
});

describe('TinyStories-656K (tokenizer.json only)', () => {
  let tok: Tokenizer;
  beforeAll(async () => {
    tok = await loadTokenizer(TS656K);
  });

  it('BOS <|start_story|> (id 1) prepended by the post-processor; EOS <|end_story|>', () => {
    expect(tok).toMatchObject({ backend: 'hf', vocabSize: 2048, bosId: 1, eosId: 2, addsBos: true, addsEos: false });
    expect(tok.idToToken(1)).toBe('<|start_story|>');
    expect(tok.idToToken(2)).toBe('<|end_story|>');
    expect(tok.encode('Once upon a time')[0]).toBe(1);
    expect(tok.encode('Once upon a time', { addBos: false })[0]).not.toBe(1);
  });

  it('193,347 tokens on the TinyStories text (with BOS), first ids as in reference.json', () => {
    const ids = timed('656K hf tinystories', () => tok.encode(tinystories));
    expect(ids.length).toBe(reference['tinystories-656K'].tinystories_head_tokens);
    expect(ids.length).toBe(193_347);
    expect(Array.from(tok.encode(tinystories.slice(0, 400)).subarray(0, 16))).toEqual(reference['tinystories-656K'].probe_tokens);
    expect(timed('656K stream', () => streamAll(tok, ids))).toBe(tok.decode(ids));
  });

  it('decodes the reference greedy ids', () => {
    const ids = reference['tinystories-656K'].greedy_from_bos_64_ids as number[];
    expect(tok.decode(ids)).toBe(reference['tinystories-656K'].greedy_text);
    expect(streamAll(tok, ids)).toBe(reference['tinystories-656K'].greedy_text);
  });

  it('characters outside the vocabulary become one fused <unk>, which decode drops', () => {
    const ids = Array.from(tok.encode('a 😀é b', { addBos: false }));
    expect(ids.filter((id) => id === 0)).toHaveLength(1);
    expect(tok.decode(ids)).toBe('a  b');
    expect(tok.decode(tok.encode('Lily went to the park.\n\nShe  smiled.'))).toBe('Lily went to the park.\n\nShe  smiled.');
  });

  it('the merge-boundary split gives exactly the library\'s unsplit ids (pieces here span words)', () => {
    const json = JSON.parse(readFileSync(join(TS656K, 'tokenizer.json'), 'utf8'));
    const plain = new HfTokenizer(json, JSON.parse(readFileSync(join(TS656K, 'tokenizer_config.json'), 'utf8')));
    const text = tinystories.slice(300_000, 330_000) + wiki.slice(0, 5_000);
    expect(firstDifference(tok.encode(text), Int32Array.from(plain.encode(text).ids))).toBe(-1);
  });
});

describe('BOS/EOS policy from the folder\'s config files', () => {
  const root = tempDir('lieq-tok-');
  let n = 0;
  /** A copy of stories260K's tokenizer.model with the given JSON files beside it. */
  function folder(files: Record<string, unknown>, withJson = false): string {
    const dir = join(root, `m${n++}`);
    mkdirSync(dir);
    copyFileSync(join(STORIES, 'tokenizer.model'), join(dir, 'tokenizer.model'));
    if (withJson) copyFileSync(join(STORIES, 'tokenizer.json'), join(dir, 'tokenizer.json'));
    for (const [name, v] of Object.entries(files)) writeFileSync(join(dir, name), typeof v === 'string' ? v : JSON.stringify(v));
    return dir;
  }

  it('a bare tokenizer.model adds BOS by default (SentencePiece convention), ids from the trainer spec', async () => {
    const t = await loadTokenizer(folder({}));
    expect(t).toMatchObject({ backend: 'spm', bosId: 1, eosId: 2, addsBos: true, addsEos: false });
    expect(Array.from(t.encode('hi', { addEos: true }))).toEqual([1, ...Array.from(t.encode('hi', { addBos: false })), 2]);
  });

  it('tokenizer_config.json add_bos_token / add_eos_token win over the post-processor', async () => {
    const t = await loadTokenizer(folder({ 'tokenizer_config.json': { add_bos_token: false, add_eos_token: true, eos_token: '</s>' } }, true));
    expect(t).toMatchObject({ backend: 'hf', addsBos: false, addsEos: true });
    const ids = t.encode('hi');
    expect(ids[0]).not.toBe(1);
    expect(ids[ids.length - 1]).toBe(2);
    const s = await loadTokenizer(folder({ 'tokenizer_config.json': { add_bos_token: false } }));
    expect(s.addsBos).toBe(false);
  });

  it('config.json bos/eos ids win; eos_token_id may be a list', async () => {
    const t = await loadTokenizer(folder({ 'config.json': { bos_token_id: 2, eos_token_id: [1, 2] } }));
    expect(t).toMatchObject({ bosId: 2, eosId: 1, eosIds: [1, 2] });
    expect(t.encode('hi')[0]).toBe(2);
  });

  it('tokenizer_config.json bos_token names the BOS when config.json has none', async () => {
    const t = await loadTokenizer(folder({ 'tokenizer_config.json': { bos_token: { content: '</s>' }, eos_token: '<s>' } }));
    expect(t).toMatchObject({ bosId: 2, eosIds: [1] });
  });

  it('no BOS anywhere (tokenizer.json without a template): addsBos is false and addBos: true is a UsageError', async () => {
    const json = JSON.parse(readFileSync(join(STORIES, 'tokenizer.json'), 'utf8'));
    json.post_processor = null;
    const dir = folder({ 'tokenizer.json': json });
    const t = await loadTokenizer(dir);
    expect(t).toMatchObject({ backend: 'hf', bosId: null, eosId: null, addsBos: false, addsEos: false });
    expect(t.encode('hi')[0]).not.toBe(1);
    expect(() => t.encode('hi', { addBos: true })).toThrow(UsageError);
    expect(() => t.encode('hi', { addEos: true })).toThrow(/has no EOS token/);
    // The SentencePiece backend on the same folder knows <s> from its trainer spec.
    expect((await loadTokenizer(dir, { backend: 'spm' })).bosId).toBe(1);
  });

  it('bad ids and flags in the config files are FormatErrors naming the file', async () => {
    await expect(loadTokenizer(folder({ 'config.json': { bos_token_id: 999 } }))).rejects.toThrow(/config\.json: bos_token_id must be a token id in \[0, 512\)/);
    await expect(loadTokenizer(folder({ 'config.json': { eos_token_id: [2, -1] } }))).rejects.toThrow(FormatError);
    await expect(loadTokenizer(folder({ 'tokenizer_config.json': { add_bos_token: 'yes' } }))).rejects.toThrow(/tokenizer_config\.json: add_bos_token must be true or false/);
    await expect(loadTokenizer(folder({ 'tokenizer_config.json': { bos_token: '<nope>' } }))).rejects.toThrow(/bos_token "<nope>" is not a token/);
    // A flag asking for a token nobody defines.
    await expect(loadTokenizer(folder({ 'tokenizer_config.json': { add_eos_token: true } }, true))).rejects.toThrow(/add_eos_token is true but no EOS token is defined/);
  });
});

describe('errors', () => {
  const root = tempDir('lieq-tok-err-');
  let n = 0;
  function dirWith(files: Record<string, string | Uint8Array>): string {
    const dir = join(root, `d${n++}`);
    mkdirSync(dir);
    for (const [name, v] of Object.entries(files)) writeFileSync(join(dir, name), v);
    return dir;
  }
  async function rejection(p: Promise<unknown>): Promise<Error> {
    try {
      await p;
    } catch (e) {
      return e as Error;
    }
    throw new Error('expected a rejection');
  }

  it('missing folder, folder without tokenizer files, forced backend without its file', async () => {
    let e = await rejection(loadTokenizer(join(root, 'nope')));
    expect(e).toBeInstanceOf(FileError);
    expect(e.message).toMatch(/nope: model folder not found/);
    const empty = dirWith({ 'config.json': '{}' });
    e = await rejection(loadTokenizer(empty));
    expect(e).toBeInstanceOf(FileError);
    expect(e.message).toMatch(/no tokenizer: neither tokenizer\.json nor tokenizer\.model/);
    e = await rejection(loadTokenizer(TS656K, { backend: 'spm' }));
    expect(e).toBeInstanceOf(FileError);
    expect((e as FileError).file).toBe(join(TS656K, 'tokenizer.model'));
    e = await rejection(loadTokenizer(STORIES, { backend: 'bpe' as never }));
    expect(e).toBeInstanceOf(UsageError);
  });

  it('garbage, non-object and non-UTF-8 tokenizer.json; JSON without a model', async () => {
    const cases: Array<[string | Uint8Array, RegExp]> = [
      ['{"model": {"type": "BPE", ', /tokenizer\.json: invalid JSON/],
      ['[1, 2]', /tokenizer\.json: expected a JSON object/],
      [Uint8Array.of(0x7b, 0xff, 0x7d), /tokenizer\.json: is not valid UTF-8/],
      ['{"version": "1.0"}', /tokenizer\.json: not a tokenizer\.json: no "model" object/],
      ['{"model": {"type": "Nope", "vocab": {}}}', /tokenizer\.json: rejected by @huggingface\/tokenizers/],
    ];
    for (const [content, pattern] of cases) {
      const e = await rejection(loadTokenizer(dirWith({ 'tokenizer.json': content })));
      expect(e).toBeInstanceOf(FormatError);
      expect(e.message).toMatch(pattern);
    }
  });

  it('truncated and garbage tokenizer.model', async () => {
    const full = readFileSync(join(STORIES, 'tokenizer.model'));
    let e = await rejection(loadTokenizer(dirWith({ 'tokenizer.model': full.subarray(0, 3000) })));
    expect(e).toBeInstanceOf(FormatError);
    expect(e.message).toMatch(/tokenizer\.model: malformed SentencePiece model .*truncated/);
    e = await rejection(loadTokenizer(dirWith({ 'tokenizer.model': 'this is not a protobuf at all' })));
    expect(e).toBeInstanceOf(FormatError);
    expect((e as FormatError).file).toMatch(/tokenizer\.model$/);
  });

  it('malformed tokenizer_config.json / config.json name their file', async () => {
    const model = readFileSync(join(STORIES, 'tokenizer.model'));
    let e = await rejection(loadTokenizer(dirWith({ 'tokenizer.model': model, 'tokenizer_config.json': '{oops' })));
    expect(e).toBeInstanceOf(FormatError);
    expect(e.message).toMatch(/tokenizer_config\.json: invalid JSON/);
    e = await rejection(loadTokenizer(dirWith({ 'tokenizer.model': model, 'config.json': '' })));
    expect(e.message).toMatch(/config\.json: invalid JSON/);
  });

  it('decode and streaming reject ids outside the vocabulary; encode rejects non-strings', async () => {
    const t = await loadTokenizer(STORIES);
    expect(() => t.decode([1, 512])).toThrow(UsageError);
    expect(() => t.decode([1, 512])).toThrow(/ids\[1\] = 512 is not a token id in \[0, 512\)/);
    expect(() => t.decode([0.5])).toThrow(UsageError);
    expect(() => t.decodeToken(-1)).toThrow(UsageError);
    expect(() => t.streamDecoder().next(9999)).toThrow(UsageError);
    expect(() => t.encode(42 as unknown as string)).toThrow(UsageError);
    expect(t.decode([])).toBe('');
    expect(t.idToToken(512)).toBeUndefined();
    expect(t.tokenToId('no such token')).toBeUndefined();
  });
});

describe('timings (ms, informational)', () => {
  it('prints the encode/decode timings of the full-text tests', () => {
    console.log('tokenizer timings (ms):', JSON.stringify(timings));
    expect(Object.keys(timings).length).toBeGreaterThan(0);
  });
});
