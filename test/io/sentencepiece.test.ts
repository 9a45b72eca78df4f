/**
 * SentencePiece tokenizer.model reader + BPE encoder/decoder, checked against:
 *  - hand-built ModelProto files (a tiny protobuf writer below) for every field, default and
 *    malformation the reader handles;
 *  - an independent, naive port of llama2.c run.c `encode()` (O(n^2) string merging) over
 *    the llama2.c tokenizer files (`tok512.bin`, `tokenizer.bin`), which hold the same vocab
 *    in another format, so the reference shares no code or parsed data with the encoder.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

import {
  decodeUtf8Lenient,
  parseSpmModel,
  PieceType,
  readSpmModel,
  SpmBpeTokenizer,
  type PieceTypeCode,
} from '../../lib/io/sentencepiece.js';
import { dataPath } from '../../lib/util/data-dir.js';
import { FileError, FormatError, UnsupportedError } from '../../lib/util/errors.js';

// ---------------------------------------------------------------------------------------
// A minimal protobuf writer for test models.

function varint(v: number | bigint): number[] {
  let x = BigInt.asUintN(64, BigInt(v));
  const out: number[] = [];
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x > 0n) b |= 0x80;
    out.push(b);
  } while (x > 0n);
  return out;
}
const tag = (field: number, wire: number): number[] => varint(field * 8 + wire);
const vField = (field: number, v: number | bigint | boolean): number[] => [...tag(field, 0), ...varint(typeof v === 'boolean' ? (v ? 1 : 0) : v)];
const bField = (field: number, bytes: ArrayLike<number>): number[] => [...tag(field, 2), ...varint(bytes.length), ...Array.from(bytes)];
const sField = (field: number, s: string): number[] => bField(field, new TextEncoder().encode(s));
function fField(field: number, f: number): number[] {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, f, true);
  return [...tag(field, 5), ...b];
}

interface TestPiece {
  piece: string;
  score?: number;
  type?: PieceTypeCode;
}

interface TestModel {
  pieces: TestPiece[];
  trainer?: number[];
  normalizer?: number[] | null;
  byteFallback?: boolean;
}

function pieceMessage(p: TestPiece): number[] {
  const body = [...sField(1, p.piece)];
  if (p.score !== undefined) body.push(...fField(2, p.score));
  if (p.type !== undefined) body.push(...vField(3, p.type));
  return body;
}

function buildModel(m: TestModel): Uint8Array {
  const out: number[] = [];
  for (const p of m.pieces) out.push(...bField(1, pieceMessage(p)));
  const trainer = m.trainer ?? [...vField(3, 2), ...vField(35, m.byteFallback ?? false)];
  out.push(...bField(2, trainer));
  if (m.normalizer !== null) out.push(...bField(3, m.normalizer ?? sField(1, 'identity')));
  return Uint8Array.from(out);
}

const SPECIALS: TestPiece[] = [
  { piece: '<unk>', type: PieceType.Unknown },
  { piece: '<s>', type: PieceType.Control },
  { piece: '</s>', type: PieceType.Control },
];
const BYTES: TestPiece[] = Array.from({ length: 256 }, (_, b) => ({
  piece: `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`,
  type: PieceType.Byte,
}));

/** Small BPE vocab over {▁, a, b, c}; scores make the merge order non-trivial. */
const SMALL_PIECES: TestPiece[] = [
  { piece: 'ab', score: -1 },
  { piece: '▁a', score: -2 },
  { piece: 'bc', score: -2 }, // ties with ▁a: leftmost pair wins
  { piece: 'aa', score: -3 },
  { piece: '▁ab', score: -4 },
  { piece: 'abc', score: -5 },
  { piece: 'ca', score: -6 },
  { piece: '▁▁', score: -7 },
  { piece: '▁', score: -10 },
  { piece: 'a', score: -11 },
  { piece: 'b', score: -12 },
  { piece: 'c', score: -13 },
];

function smallModel(opts: { byteFallback?: boolean; normalizer?: number[] | null; extra?: TestPiece[] } = {}): Uint8Array {
  const byteFallback = opts.byteFallback ?? true;
  return buildModel({
    pieces: [...SPECIALS, ...(byteFallback ? BYTES : []), ...SMALL_PIECES, ...(opts.extra ?? [])],
    byteFallback,
    normalizer: opts.normalizer,
  });
}

function tokenizerOf(bytes: Uint8Array): SpmBpeTokenizer {
  return new SpmBpeTokenizer(parseSpmModel(bytes, 'test.model'), 'test.model');
}

const pieceStrings = (tok: SpmBpeTokenizer, ids: Int32Array): string[] => Array.from(ids, (id) => tok.idToPiece(id)!);

// ---------------------------------------------------------------------------------------
// Naive reference: llama2.c run.c encode() over a vocab of (string with ' ' for ▁, score).

interface RefVocab {
  pieces: string[];
  scores: number[];
  index: Map<string, number>;
}

/** llama2.c tokenizer file: int32 max_token_length, then per token float32 score, int32 len, bytes. */
function readLlama2cVocab(file: string, vocabSize: number): RefVocab {
  const buf = readFileSync(file);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = 4;
  const pieces: string[] = [];
  const scores: number[] = [];
  const index = new Map<string, number>();
  const dec = new TextDecoder('utf-8', { ignoreBOM: true });
  for (let i = 0; i < vocabSize; i++) {
    scores.push(view.getFloat32(off, true));
    const len = view.getInt32(off + 4, true);
    const s = dec.decode(buf.subarray(off + 8, off + 8 + len));
    off += 8 + len;
    pieces.push(s);
    if (!index.has(s)) index.set(s, i);
  }
  expect(off).toBe(buf.length);
  return { pieces, scores, index };
}

/** run.c encode(): dummy prefix " ", per-code-point lookup or bytes + 3, best-score merges. */
function runcEncode(v: RefVocab, text: string): number[] {
  const tokens: number[] = [];
  if (text.length > 0) tokens.push(v.index.get(' ')!);
  for (const ch of text) {
    const id = v.index.get(ch);
    if (id !== undefined) tokens.push(id);
    else for (const b of new TextEncoder().encode(ch)) tokens.push(b + 3);
  }
  for (;;) {
    let best = -1e10;
    let bestId = -1;
    let bestIdx = -1;
    for (let i = 0; i + 1 < tokens.length; i++) {
      const id = v.index.get(v.pieces[tokens[i]] + v.pieces[tokens[i + 1]]);
      if (id !== undefined && v.scores[id] > best) {
        best = v.scores[id];
        bestId = id;
        bestIdx = i;
      }
    }
    if (bestIdx < 0) break;
    tokens.splice(bestIdx, 2, bestId);
  }
  return tokens;
}

/** The same rule over a test model's pieces (▁ kept as is), for random strings. */
function naiveEncode(pieces: TestPiece[], normalized: string, byteFallback: boolean): number[] {
  const all = new Map<string, number>();
  const mergeable = new Map<string, number>();
  pieces.forEach((p, id) => {
    all.set(p.piece, id);
    const t = p.type ?? PieceType.Normal;
    if (t === PieceType.Normal || t === PieceType.UserDefined || t === PieceType.Unused) mergeable.set(p.piece, id);
  });
  const syms = Array.from(normalized);
  for (;;) {
    let best = -Infinity;
    let at = -1;
    for (let i = 0; i + 1 < syms.length; i++) {
      const id = mergeable.get(syms[i] + syms[i + 1]);
      if (id !== undefined && (pieces[id].score ?? 0) > best) {
        best = pieces[id].score ?? 0;
        at = i;
      }
    }
    if (at < 0) break;
    syms.splice(at, 2, syms[at] + syms[at + 1]);
  }
  const out: number[] = [];
  for (const s of syms) {
    const id = all.get(s);
    if (id !== undefined) out.push(id);
    else if (byteFallback) for (const b of new TextEncoder().encode(s)) out.push(all.get(BYTES[b].piece)!);
    else if (out.length === 0 || out[out.length - 1] !== 0) out.push(0);
  }
  return out;
}

/** Deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------------------------------

describe('ModelProto reader', () => {
  it('reads pieces, scores, types and the trainer/normalizer fields', () => {
    const bytes = buildModel({
      pieces: [...SPECIALS, { piece: 'x', score: -1.5 }, { piece: 'y' }],
      trainer: [...vField(3, 2), ...vField(4, 5), ...vField(35, false), ...vField(25, true), ...vField(41, 1), ...vField(42, 2), ...vField(43, -1), ...sField(44, ' ?? ')],
      normalizer: [...sField(1, 'identity'), ...bField(2, []), ...vField(3, false), ...vField(4, false), ...vField(5, true)],
    });
    const m = parseSpmModel(bytes, 'x.model');
    expect(m.pieces.map((p) => p.piece)).toEqual(['<unk>', '<s>', '</s>', 'x', 'y']);
    expect(m.pieces.map((p) => p.type)).toEqual([2, 3, 3, 1, 1]);
    expect(m.pieces[3].score).toBe(-1.5);
    expect(m.pieces[4].score).toBe(0); // proto default
    expect(m.trainerSpec).toMatchObject({ modelType: 2, vocabSize: 5, byteFallback: false, splitDigits: true, bosId: 1, eosId: 2, padId: -1, unkSurface: ' ?? ' });
    expect(m.normalizerSpec).toEqual({ name: 'identity', precompiledCharsmapBytes: 0, addDummyPrefix: false, removeExtraWhitespaces: false, escapeWhitespaces: true });
  });

  it('applies proto defaults when fields are absent, and negative int32 (10-byte varints)', () => {
    const m = parseSpmModel(buildModel({ pieces: SPECIALS, trainer: [...vField(41, -1), ...vField(42, -1)], normalizer: null }), 'x.model');
    expect(m.trainerSpec.modelType).toBe(1); // UNIGRAM is the proto default
    expect(m.trainerSpec.bosId).toBe(-1);
    expect(m.trainerSpec.eosId).toBe(-1);
    expect(m.trainerSpec.unkId).toBe(0);
    expect(m.trainerSpec.unkSurface).toBe(' \u2047 ');
    expect(m.normalizerSpec).toMatchObject({ addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true });
  });

  it('skips unknown fields of every wire type', () => {
    const junk = [...vField(99, 7), ...tag(98, 1), 1, 2, 3, 4, 5, 6, 7, 8, ...bField(97, [1, 2, 3]), ...tag(96, 5), 0, 0, 0, 0];
    const base = buildModel({ pieces: [...SPECIALS, { piece: 'x', score: -1 }], trainer: [...vField(3, 2), ...junk] });
    const withJunk = Uint8Array.from([...junk, ...base, ...bField(4, [1, 2]), ...bField(1, [...sField(1, 'z'), ...junk])]);
    const m = parseSpmModel(withJunk, 'x.model');
    expect(m.pieces.map((p) => p.piece)).toEqual(['<unk>', '<s>', '</s>', 'x', 'z']);
    expect(m.trainerSpec.modelType).toBe(2);
  });

  it('reads the shipped models (stories260K 512 pieces, Llama-2 32000 incl. a U+FEFF piece)', async () => {
    const s = await readSpmModel(dataPath('models/stories260K/tokenizer.model'));
    expect(s.pieces).toHaveLength(512);
    expect(s.trainerSpec).toMatchObject({ modelType: 2, byteFallback: true, unkId: 0, bosId: 1, eosId: 2 });
    expect(s.normalizerSpec).toMatchObject({ name: 'identity', addDummyPrefix: true, removeExtraWhitespaces: true });
    expect(s.pieces.filter((p) => p.type === PieceType.Byte)).toHaveLength(256);
    const l = await readSpmModel(dataPath('tokenizers/llama2/tokenizer.model'));
    expect(l.pieces).toHaveLength(32000);
    expect(l.normalizerSpec.removeExtraWhitespaces).toBe(false);
    expect(l.trainerSpec.padId).toBe(-1);
    expect(l.pieces[30143].piece).toBe('\uFEFF'); // a BOM-only piece must not be stripped
    expect(l.pieces[15043]).toMatchObject({ piece: '▁Hello', type: PieceType.Normal });
  });
});

describe('ModelProto reader: malformed files', () => {
  const file = 'bad.model';
  const expectFormat = (bytes: ArrayLike<number>, pattern: RegExp): void => {
    let err: unknown;
    try {
      new SpmBpeTokenizer(parseSpmModel(Uint8Array.from(bytes), file), file);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FormatError);
    expect((err as FormatError).file).toBe(file);
    expect((err as Error).message).toMatch(pattern);
  };

  it('empty file and a file with no pieces', () => {
    expectFormat([], /no pieces/);
    expectFormat(bField(2, vField(3, 2)), /no pieces/);
  });
  it('missing trainer_spec', () => expectFormat(bField(1, sField(1, 'x')), /no trainer_spec/));
  it('truncated varint, length and fixed32', () => {
    expectFormat([0x0a], /truncated/);
    expectFormat([0x0a, 0x80], /truncated: varint/);
    expectFormat([0x0a, 10, 0x0a, 1], /truncated/);
    expectFormat(bField(1, [...sField(1, 'x'), ...tag(2, 5), 0, 0]), /truncated: score/);
  });
  it('varint longer than 10 bytes', () => expectFormat([...tag(99, 0), ...Array(11).fill(0xff), 0x01], /varint field 99 longer than 10 bytes/));
  it('wrong wire type for a known field, and group wire types', () => {
    expectFormat([...tag(1, 0), 5], /field 1 \(pieces\) has wire type 0, expected 2/);
    expectFormat(bField(1, [...tag(2, 0), 1]), /field 2 \(score\) has wire type 0/);
    expectFormat([...tag(7, 3)], /unsupported wire type 3/);
  });
  it('field number 0', () => expectFormat([0x02, 0x00], /field number 0/));
  it('invalid UTF-8 in a piece', () => expectFormat(bField(1, bField(1, [0x61, 0xff])), /piece #0 is not valid UTF-8/));
  it('piece without a string, unknown piece type, empty and duplicate pieces', () => {
    expectFormat([...bField(1, fField(2, 1)), ...bField(2, vField(3, 2))], /piece #0 has no piece string/);
    expectFormat([...bField(1, [...sField(1, 'x'), ...vField(3, 9)]), ...bField(2, vField(3, 2))], /unknown type 9/);
    expectFormat(buildModel({ pieces: [...SPECIALS, { piece: '' }] }), /piece #3 is empty/);
    expectFormat(buildModel({ pieces: [...SPECIALS, { piece: 'x' }, { piece: 'x' }] }), /appears twice \(ids 3 and 4\)/);
  });
  it('special ids that do not fit the pieces', () => {
    expectFormat(buildModel({ pieces: [{ piece: 'x' }, ...SPECIALS] }), /unk_id=0 names piece "x", which is not a UNKNOWN piece/);
    expectFormat(buildModel({ pieces: SPECIALS, trainer: [...vField(3, 2), ...vField(41, 9)] }), /bos_id=9 is outside the vocabulary/);
    expectFormat(buildModel({ pieces: SPECIALS, trainer: [...vField(3, 2), ...vField(40, -1)] }), /needs an unknown piece/);
  });
  it('byte_fallback without the 256 byte pieces', () => expectFormat(buildModel({ pieces: SPECIALS, byteFallback: true }), /<0x00> is missing/));

  it('unsupported but valid models are refused with UnsupportedError', () => {
    const unigram = buildModel({ pieces: SPECIALS, trainer: vField(3, 1) });
    expect(() => tokenizerOf(unigram)).toThrow(UnsupportedError);
    expect(() => tokenizerOf(unigram)).toThrow(/model_type UNIGRAM is not supported/);
    const nfkc = buildModel({ pieces: SPECIALS, normalizer: [...sField(1, 'nmt_nfkc'), ...bField(2, [1, 2, 3, 4])] });
    expect(() => tokenizerOf(nfkc)).toThrow(/normalizer "nmt_nfkc" with a precompiled charsmap is not supported/);
    const suffix = buildModel({ pieces: SPECIALS, trainer: [...vField(3, 2), ...vField(24, true)] });
    expect(() => tokenizerOf(suffix)).toThrow(/treat_whitespace_as_suffix/);
  });

  it('a missing file is a FileError naming it', async () => {
    await expect(readSpmModel('/nonexistent/tokenizer.model')).rejects.toThrow(FileError);
    await expect(readSpmModel('/nonexistent/tokenizer.model')).rejects.toThrow(/\/nonexistent\/tokenizer\.model: cannot read/);
  });

  it('every truncation of the real stories260K model and random garbage give FormatError or a valid parse, nothing else', () => {
    const full = readFileSync(dataPath('models/stories260K/tokenizer.model'));
    let formatErrors = 0;
    // Every cut in the trainer/normalizer tail, every 3rd among the pieces.
    for (let cut = 0; cut < full.length; cut += cut < full.length - 300 ? 3 : 1) {
      try {
        const m = parseSpmModel(full.subarray(0, cut), file);
        // Only a cut exactly at a message boundary after trainer_spec parses.
        expect(m.pieces).toHaveLength(512);
      } catch (e) {
        expect(e).toBeInstanceOf(FormatError);
        formatErrors++;
      }
    }
    expect(formatErrors).toBeGreaterThan(300 + (full.length - 300) / 3 - 3);
    const half = full.subarray(0, full.length >> 1);
    expect(() => parseSpmModel(half, file)).toThrow(/bad\.model: malformed SentencePiece model .*truncated/);

    const rand = rng(7);
    for (let k = 0; k < 2000; k++) {
      const junk = Uint8Array.from({ length: 1 + Math.floor(rand() * 64) }, () => Math.floor(rand() * 256));
      try {
        tokenizerOf(junk);
      } catch (e) {
        expect(e instanceof FormatError || e instanceof UnsupportedError).toBe(true);
      }
    }
  });
});

describe('BPE encoding rules', () => {
  const tok = tokenizerOf(smallModel());

  it('merges the highest-score pair first; equal scores merge the leftmost pair', () => {
    // "▁abc": ab (-1) first, then ▁+ab = ▁ab (-4) beats ab+c = abc (-5).
    expect(pieceStrings(tok, tok.encode('abc'))).toEqual(['▁ab', 'c']);
    expect(pieceStrings(tok, tok.encode('bc'))).toEqual(['▁', 'bc']);
    // "▁caaa": the two "aa" pairs tie at -3; merging the left one blocks "ca" (-6). The
    // right-first order would give [▁, ca, aa].
    expect(pieceStrings(tok, tok.encode('caaa'))).toEqual(['▁', 'c', 'aa', 'a']);
  });

  it('unknown characters fall back to UTF-8 byte pieces', () => {
    expect(pieceStrings(tok, tok.encode('aé'))).toEqual(['▁a', '<0xC3>', '<0xA9>']);
    expect(pieceStrings(tok, tok.encode('😀'))).toEqual(['▁', '<0xF0>', '<0x9F>', '<0x98>', '<0x80>']);
  });

  it('without byte_fallback a run of unknown characters is one <unk>', () => {
    const t = tokenizerOf(smallModel({ byteFallback: false }));
    expect(pieceStrings(t, t.encode('aéü😀b'))).toEqual(['▁a', '<unk>', 'b']);
    expect(pieceStrings(t, t.encode('é a ü'))).toEqual(['▁', '<unk>', '▁a', '▁', '<unk>']);
  });

  it('matches a naive O(n^2) merge on 3,000 random strings (with and without byte fallback)', () => {
    const rand = rng(42);
    const alphabet = ['a', 'b', 'c', ' ', '  ', 'é', '\n', 'ab', '▁'];
    for (const byteFallback of [true, false]) {
      const t = tokenizerOf(smallModel({ byteFallback }));
      const pieces = [...SPECIALS, ...(byteFallback ? BYTES : []), ...SMALL_PIECES];
      for (let k = 0; k < 1500; k++) {
        let s = '';
        const n = Math.floor(rand() * 24);
        for (let i = 0; i < n; i++) s += alphabet[Math.floor(rand() * alphabet.length)];
        const expected = naiveEncode(pieces, t.normalize(s), byteFallback);
        expect(Array.from(t.encode(s)), JSON.stringify(s)).toEqual(expected);
      }
    }
  });

  it('USER_DEFINED pieces are matched whole and never merged further', () => {
    // 'b<' (score 5) would win every merge if <x> were split into characters.
    const u = tokenizerOf(smallModel({ extra: [{ piece: '<x>', type: PieceType.UserDefined }, { piece: 'b<', score: 5 }] }));
    expect(pieceStrings(u, u.encode('ab<x>a'))).toEqual(['▁ab', '<x>', 'a']);
    expect(pieceStrings(u, u.encode('ab<a'))).toEqual(['▁a', 'b<', 'a']);
  });

  it('UNUSED pieces may be formed while merging but are re-split when emitted', () => {
    // 'bca' (UNUSED) forms from bc + a, then is emitted as its halves.
    const t = tokenizerOf(smallModel({ extra: [{ piece: 'bca', score: 10, type: PieceType.Unused }] }));
    expect(pieceStrings(t, t.encode('bca'))).toEqual(['▁', 'bc', 'a']);
  });
});

describe('normalisation', () => {
  const norm = (normalizer: number[] | null, s: string): string => tokenizerOf(smallModel({ normalizer })).normalize(s);
  const flags = (prefix: boolean, removeExtra: boolean, escape: boolean): number[] => [...vField(3, prefix), ...vField(4, removeExtra), ...vField(5, escape)];

  it('remove_extra_whitespaces drops leading/trailing spaces and collapses runs (U+0020 only)', () => {
    const n = flags(true, true, true);
    expect(norm(n, '  a   b  ')).toBe('▁a▁b');
    expect(norm(n, '   ')).toBe('');
    expect(norm(n, '')).toBe('');
    expect(norm(n, 'a\t\t b\n\n')).toBe('▁a\t\t▁b\n\n');
  });
  it('identity flags of Llama-2 (dummy prefix, no whitespace removal)', () => {
    const n = flags(true, false, true);
    expect(norm(n, '  a   b  ')).toBe('▁▁▁a▁▁▁b▁▁');
    expect(norm(n, ' ')).toBe('▁▁');
    expect(norm(n, '')).toBe('');
  });
  it('no dummy prefix, no escaping', () => {
    expect(norm(flags(false, false, true), 'a b')).toBe('a▁b');
    expect(norm(flags(true, false, false), 'a b')).toBe(' a b');
  });
});

describe('decoding', () => {
  const tok = tokenizerOf(smallModel());
  const ids = (...pieces: string[]): number[] => pieces.map((p) => tok.pieceToId(p)!);

  it('drops control pieces and the dummy-prefix space; ▁ becomes a space', () => {
    expect(tok.decode(ids('<s>', '▁ab', '▁', 'c', '</s>'))).toBe('ab c');
    expect(tok.decode([])).toBe('');
  });
  it('reassembles byte pieces into UTF-8 and replaces each invalid byte with U+FFFD', () => {
    expect(tok.decode(ids('▁a', '<0xC3>', '<0xA9>', 'b'))).toBe('aéb');
    expect(tok.decode(ids('a', '<0xE2>', '<0x82>', 'b'))).toBe('a\uFFFD\uFFFDb'); // truncated € : one per byte
    expect(tok.decode(ids('a', '<0xFF>'))).toBe('a\uFFFD');
    expect(tok.decode(ids('<0x20>', 'a'))).toBe(' a'); // a byte space is not the dummy prefix
  });
  it('renders <unk> as the trainer unk_surface', () => {
    expect(tok.decode(ids('a', '<unk>', 'b'))).toBe('a \u2047 b');
  });
  it('leading-space rule: strip the first ▁ only (Llama-2 flags), every leading ▁ (remove_extra_whitespaces)', () => {
    const llama = tokenizerOf(smallModel({ normalizer: [...vField(3, true), ...vField(4, false)] }));
    const l = (...p: string[]): number[] => p.map((x) => llama.pieceToId(x)!);
    expect(llama.decode(l('▁', '▁a'))).toBe(' a');
    expect(llama.decode(l('▁▁', 'a'))).toBe(' a');
    expect(tok.decode(ids('▁', '▁a'))).toBe('a');
  });
  it('round-trips text with bytes, runs of spaces and newlines (Llama-2 flags)', () => {
    const llama = tokenizerOf(smallModel({ normalizer: [...vField(3, true), ...vField(4, false)] }));
    for (const s of ['', ' ', 'abc', '  a  b\n\nc ', 'é😀\u00a0z', '\t']) expect(llama.decode(llama.encode(s))).toBe(s);
  });
});

describe('decodeUtf8Lenient', () => {
  it('equals TextDecoder on valid UTF-8 and keeps a BOM', () => {
    const s = '\uFEFFa€😀é\u0000';
    expect(decodeUtf8Lenient(new TextEncoder().encode(s))).toBe(s);
  });
  it('one U+FFFD per byte that does not start a complete valid character', () => {
    expect(decodeUtf8Lenient([0xe2, 0x82])).toBe('\uFFFD\uFFFD');
    expect(decodeUtf8Lenient([0xc0, 0xaf])).toBe('\uFFFD\uFFFD'); // overlong
    expect(decodeUtf8Lenient([0xed, 0xa0, 0x80])).toBe('\uFFFD\uFFFD\uFFFD'); // surrogate
    expect(decodeUtf8Lenient([0xf4, 0x90, 0x80, 0x80])).toBe('\uFFFD'.repeat(4)); // > U+10FFFF
    expect(decodeUtf8Lenient([0x61, 0xe2, 0x82, 0xac, 0x80])).toBe('a€\uFFFD');
  });
});

describe('against llama2.c run.c encode() on the llama2.c vocab files', () => {
  const tinystories = readFileSync(dataPath('text/tinystories/tinystories_valid_head.txt'), 'utf8');
  const wiki = readFileSync(dataPath('text/wikitext-2/wiki.test.raw'), 'utf8');

  it('stories260K tokenizer.model = run.c over tok512.bin (texts with spaces pre-collapsed, as run.c does not)', async () => {
    const ref = readLlama2cVocab(dataPath('models/stories260K/llama2c/tok512.bin'), 512);
    const tok = new SpmBpeTokenizer(await readSpmModel(dataPath('models/stories260K/tokenizer.model')), 'stories260K');
    const samples = [0, 100_000, 400_000].map((i) => tinystories.slice(i, i + 1200));
    samples.push(wiki.slice(5000, 6000), 'Ünïcödé ✓ 日本語 😀 tabs\tand\nnewlines', 'x');
    for (const raw of samples) {
      const s = raw.replace(/ +/g, ' ').replace(/^ | $/g, '');
      expect(Array.from(tok.encode(s))).toEqual(runcEncode(ref, s));
    }
  });

  it('Llama-2 tokenizer.model = run.c over tokenizer.bin', async () => {
    const ref = readLlama2cVocab(dataPath('tokenizers/llama2/tokenizer.bin'), 32000);
    const tok = new SpmBpeTokenizer(await readSpmModel(dataPath('tokenizers/llama2/tokenizer.model')), 'llama2');
    const samples = [wiki.slice(1000, 2000), wiki.slice(700_000, 701_000), tinystories.slice(0, 1000), '  Hello   world  ', 'Ünïcödé ✓ 日本語 😀\u00a0\uFEFF!'];
    for (const s of samples) expect(Array.from(tok.encode(s))).toEqual(runcEncode(ref, s));
    expect(Array.from(tok.encode('Hello world'))).toEqual([15043, 3186]);
  });
});
