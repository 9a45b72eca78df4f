/**
 * SentencePiece `tokenizer.model` for BPE models (the LLaMA / Llama-2 / llama2.c family):
 * a minimal protobuf reader for `ModelProto` and an encoder/decoder with SentencePiece's
 * semantics (normalizer flags, highest-score-pair merging, byte fallback).
 *
 * Encoding = sentencepiece `bpe_model.cc` (and llama2.c `encode()`, which implements the
 * same rule): normalise, split into Unicode characters, then repeatedly merge the adjacent
 * pair whose concatenation is a piece with the highest score (ties: leftmost pair); a final
 * symbol that is not a piece becomes its UTF-8 bytes `<0xNN>` (byte_fallback) or `<unk>`.
 *
 * Speed: merging is done with a priority queue, and the normalised text is first cut at
 * "dead" boundaries — two neighbouring characters x|y such that no merge rule joins a
 * symbol ending in x with one starting with y. No merge can ever cross such a boundary, so
 * the chunks (about one word each) are encoded independently and cached; the result is
 * identical to merging over the whole string.
 *
 * Only what encoding needs is supported: an identity normaliser (no precompiled NFKC
 * charsmap), whitespace as prefix. Other models are refused with an UnsupportedError.
 */
import { readFile } from 'node:fs/promises';

import { FileError, FormatError, UnsupportedError } from '../util/errors.js';

/** `SentencePiece.Type` of sentencepiece_model.proto. */
export const PieceType = {
  Normal: 1,
  Unknown: 2,
  Control: 3,
  UserDefined: 4,
  Unused: 5,
  Byte: 6,
} as const;
export type PieceTypeCode = (typeof PieceType)[keyof typeof PieceType];

/** `TrainerSpec.ModelType`. */
export const SpmModelType = { Unigram: 1, Bpe: 2, Word: 3, Char: 4 } as const;
const MODEL_TYPE_NAMES: Record<number, string> = { 1: 'UNIGRAM', 2: 'BPE', 3: 'WORD', 4: 'CHAR' };

export interface SpmPiece {
  piece: string;
  score: number;
  type: PieceTypeCode;
}

/** The TrainerSpec fields that matter for encoding/decoding (proto defaults applied). */
export interface SpmTrainerSpec {
  modelType: number;
  vocabSize: number;
  byteFallback: boolean;
  treatWhitespaceAsSuffix: boolean;
  splitDigits: boolean;
  unkId: number;
  bosId: number;
  eosId: number;
  padId: number;
  unkSurface: string;
}

export interface SpmNormalizerSpec {
  name: string;
  /** Byte length of `precompiled_charsmap` (0 = identity mapping). */
  precompiledCharsmapBytes: number;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

export interface SpmModelProto {
  pieces: SpmPiece[];
  trainerSpec: SpmTrainerSpec;
  normalizerSpec: SpmNormalizerSpec;
}

/** U+2581 LOWER ONE EIGHTH BLOCK: SentencePiece's visible space. */
export const SPACE_SYMBOL = '\u2581';

// ---------------------------------------------------------------------------------------
// Protobuf wire format (only what ModelProto uses: varint, fixed32, length-delimited).

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

// ignoreBOM: a piece may be U+FEFF itself (Llama-2 has one); never strip it.
const utf8Strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Cursor over one protobuf message [pos, end) of `buf`; every read is bounds-checked. */
class ProtoReader {
  pos: number;
  private readonly view: DataView;
  constructor(
    private readonly buf: Uint8Array,
    start: number,
    readonly end: number,
    readonly file: string,
    private readonly where: string,
  ) {
    this.pos = start;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  private fail(detail: string): never {
    throw new FormatError(this.file, `malformed SentencePiece model (${this.where}, byte ${this.pos}): ${detail}`);
  }

  private need(n: number, what: string): void {
    if (this.end - this.pos < n) {
      this.fail(`truncated: ${what} needs ${n} bytes, only ${this.end - this.pos} left`);
    }
  }

  atEnd(): boolean {
    return this.pos >= this.end;
  }

  /**
   * Varint as { value (exact up to 2^53), low32 (the low 32 bits, for int32 fields: negative
   * int32 values are written as 10-byte two's-complement varints) }.
   */
  varint(what: string): { value: number; low32: number } {
    let value = 0;
    let low = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail(`truncated: varint ${what} runs past the end`);
      const b = this.buf[this.pos++];
      const digit = (b & 0x7f) * scale;
      value += digit;
      if (i < 5) low += digit; // bits 0..34: exact in a double
      if ((b & 0x80) === 0) return { value, low32: low % 0x1_0000_0000 };
      scale *= 128;
    }
    this.fail(`varint ${what} longer than 10 bytes`);
  }

  tag(): { field: number; wire: number } {
    const { value } = this.varint('tag');
    const field = Math.floor(value / 8);
    const wire = value % 8;
    if (field === 0) this.fail('field number 0');
    return { field, wire };
  }

  int32(what: string): number {
    return this.varint(what).low32 | 0;
  }

  uint(what: string): number {
    return this.varint(what).value;
  }

  bool(what: string): boolean {
    return this.varint(what).value !== 0;
  }

  float(what: string): number {
    this.need(4, what);
    const v = this.view.getFloat32(this.pos, true);
    this.pos += 4;
    return v;
  }

  /** A length-delimited field's payload range [start, end). */
  lengthDelimited(what: string): { start: number; end: number } {
    const { value: len } = this.varint(`length of ${what}`);
    this.need(len, what);
    const start = this.pos;
    this.pos += len;
    return { start, end: this.pos };
  }

  string(what: string): string {
    const { start, end } = this.lengthDelimited(what);
    // Most pieces are short ASCII: skip the TextDecoder call for those (3x faster loads).
    if (end - start <= 16) {
      let ascii = '';
      let i = start;
      for (; i < end && this.buf[i] < 0x80; i++) ascii += String.fromCharCode(this.buf[i]);
      if (i === end) return ascii;
    }
    try {
      return utf8Strict.decode(this.buf.subarray(start, end));
    } catch {
      this.pos = start;
      this.fail(`${what} is not valid UTF-8`);
    }
  }

  sub(what: string): ProtoReader {
    const { start, end } = this.lengthDelimited(what);
    return new ProtoReader(this.buf, start, end, this.file, what);
  }

  expectWire(field: number, wire: number, expected: number, what: string): void {
    if (wire !== expected) this.fail(`field ${field} (${what}) has wire type ${wire}, expected ${expected}`);
  }

  skip(field: number, wire: number): void {
    switch (wire) {
      case WIRE_VARINT:
        this.varint(`field ${field}`);
        return;
      case WIRE_FIXED64:
        this.need(8, `field ${field}`);
        this.pos += 8;
        return;
      case WIRE_LEN:
        this.lengthDelimited(`field ${field}`);
        return;
      case WIRE_FIXED32:
        this.need(4, `field ${field}`);
        this.pos += 4;
        return;
      default:
        this.fail(`field ${field} has unsupported wire type ${wire}`);
    }
  }
}

function readPiece(r: ProtoReader, index: number): SpmPiece {
  const out: SpmPiece = { piece: '', score: 0, type: PieceType.Normal };
  let sawPiece = false;
  while (!r.atEnd()) {
    const { field, wire } = r.tag();
    if (field === 1) {
      r.expectWire(field, wire, WIRE_LEN, 'piece');
      out.piece = r.string(`piece #${index}`);
      sawPiece = true;
    } else if (field === 2) {
      r.expectWire(field, wire, WIRE_FIXED32, 'score');
      out.score = r.float(`score of piece #${index}`);
    } else if (field === 3) {
      r.expectWire(field, wire, WIRE_VARINT, 'type');
      const t = r.int32(`type of piece #${index}`);
      if (t < 1 || t > 6) throw new FormatError(r.file, `piece #${index} has unknown type ${t}`);
      out.type = t as PieceTypeCode;
    } else {
      r.skip(field, wire);
    }
  }
  if (!sawPiece) throw new FormatError(r.file, `piece #${index} has no piece string`);
  return out;
}

function readTrainerSpec(r: ProtoReader): SpmTrainerSpec {
  // Defaults of sentencepiece_model.proto.
  const t: SpmTrainerSpec = {
    modelType: SpmModelType.Unigram,
    vocabSize: 8000,
    byteFallback: false,
    treatWhitespaceAsSuffix: false,
    splitDigits: false,
    unkId: 0,
    bosId: 1,
    eosId: 2,
    padId: -1,
    unkSurface: ' \u2047 ',
  };
  while (!r.atEnd()) {
    const { field, wire } = r.tag();
    const scalar = (name: string): void => r.expectWire(field, wire, WIRE_VARINT, name);
    switch (field) {
      case 3: scalar('model_type'); t.modelType = r.int32('model_type'); break;
      case 4: scalar('vocab_size'); t.vocabSize = r.int32('vocab_size'); break;
      case 24: scalar('treat_whitespace_as_suffix'); t.treatWhitespaceAsSuffix = r.bool('treat_whitespace_as_suffix'); break;
      case 25: scalar('split_digits'); t.splitDigits = r.bool('split_digits'); break;
      case 35: scalar('byte_fallback'); t.byteFallback = r.bool('byte_fallback'); break;
      case 40: scalar('unk_id'); t.unkId = r.int32('unk_id'); break;
      case 41: scalar('bos_id'); t.bosId = r.int32('bos_id'); break;
      case 42: scalar('eos_id'); t.eosId = r.int32('eos_id'); break;
      case 43: scalar('pad_id'); t.padId = r.int32('pad_id'); break;
      case 44:
        r.expectWire(field, wire, WIRE_LEN, 'unk_surface');
        t.unkSurface = r.string('unk_surface');
        break;
      default: r.skip(field, wire);
    }
  }
  return t;
}

function readNormalizerSpec(r: ProtoReader): SpmNormalizerSpec {
  const n: SpmNormalizerSpec = {
    name: '',
    precompiledCharsmapBytes: 0,
    addDummyPrefix: true,
    removeExtraWhitespaces: true,
    escapeWhitespaces: true,
  };
  while (!r.atEnd()) {
    const { field, wire } = r.tag();
    switch (field) {
      case 1: r.expectWire(field, wire, WIRE_LEN, 'name'); n.name = r.string('normalizer name'); break;
      case 2: {
        r.expectWire(field, wire, WIRE_LEN, 'precompiled_charsmap');
        const { start, end } = r.lengthDelimited('precompiled_charsmap');
        n.precompiledCharsmapBytes = end - start;
        break;
      }
      case 3: r.expectWire(field, wire, WIRE_VARINT, 'add_dummy_prefix'); n.addDummyPrefix = r.bool('add_dummy_prefix'); break;
      case 4:
        r.expectWire(field, wire, WIRE_VARINT, 'remove_extra_whitespaces');
        n.removeExtraWhitespaces = r.bool('remove_extra_whitespaces');
        break;
      case 5: r.expectWire(field, wire, WIRE_VARINT, 'escape_whitespaces'); n.escapeWhitespaces = r.bool('escape_whitespaces'); break;
      default: r.skip(field, wire);
    }
  }
  return n;
}

/**
 * Decode a serialized `ModelProto` (fields 1 pieces, 2 trainer_spec, 3 normalizer_spec;
 * others skipped). Structural problems throw FormatError naming `file`.
 */
export function parseSpmModel(bytes: Uint8Array, file: string): SpmModelProto {
  const r = new ProtoReader(bytes, 0, bytes.length, file, 'ModelProto');
  const pieces: SpmPiece[] = [];
  let trainerSpec: SpmTrainerSpec | null = null;
  let normalizerSpec: SpmNormalizerSpec | null = null;
  while (!r.atEnd()) {
    const { field, wire } = r.tag();
    if (field === 1) {
      r.expectWire(field, wire, WIRE_LEN, 'pieces');
      pieces.push(readPiece(r.sub(`piece #${pieces.length}`), pieces.length));
    } else if (field === 2) {
      r.expectWire(field, wire, WIRE_LEN, 'trainer_spec');
      trainerSpec = readTrainerSpec(r.sub('trainer_spec'));
    } else if (field === 3) {
      r.expectWire(field, wire, WIRE_LEN, 'normalizer_spec');
      normalizerSpec = readNormalizerSpec(r.sub('normalizer_spec'));
    } else {
      r.skip(field, wire);
    }
  }
  if (pieces.length === 0) throw new FormatError(file, 'SentencePiece model has no pieces (empty or not a tokenizer.model)');
  if (trainerSpec === null) throw new FormatError(file, 'SentencePiece model has no trainer_spec');
  if (normalizerSpec === null) normalizerSpec = readNormalizerSpec(new ProtoReader(bytes, 0, 0, file, 'normalizer_spec'));
  return { pieces, trainerSpec, normalizerSpec };
}

/** Read and decode a `tokenizer.model` file. */
export async function readSpmModel(file: string): Promise<SpmModelProto> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw new FileError(file, `cannot read SentencePiece model: ${(err as Error).message}`, { cause: err });
  }
  return parseSpmModel(bytes, file);
}

// ---------------------------------------------------------------------------------------
// Merge queue: a binary max-heap of candidate pairs, ordered by score, then leftmost.

class MergeQueue {
  score = new Float64Array(64);
  left = new Int32Array(64);
  right = new Int32Array(64);
  leftSym = new Int32Array(64);
  rightSym = new Int32Array(64);
  merged = new Int32Array(64);
  private heap = new Int32Array(64);
  private count = 0; // entries allocated
  private size = 0; // entries in the heap

  reset(): void {
    this.count = 0;
    this.size = 0;
  }

  get length(): number {
    return this.size;
  }

  private grow(): void {
    const n = this.score.length * 2;
    const g32 = (a: Int32Array) => {
      const b = new Int32Array(n);
      b.set(a);
      return b;
    };
    const s = new Float64Array(n);
    s.set(this.score);
    this.score = s;
    this.left = g32(this.left);
    this.right = g32(this.right);
    this.leftSym = g32(this.leftSym);
    this.rightSym = g32(this.rightSym);
    this.merged = g32(this.merged);
    this.heap = g32(this.heap);
  }

  /** a before b: higher score, then smaller left position (SentencePiece's order). */
  private before(a: number, b: number): boolean {
    const sa = this.score[a];
    const sb = this.score[b];
    return sa > sb || (sa === sb && this.left[a] < this.left[b]);
  }

  push(score: number, left: number, right: number, leftSym: number, rightSym: number, merged: number): void {
    if (this.count === this.score.length) this.grow();
    const e = this.count++;
    this.score[e] = score;
    this.left[e] = left;
    this.right[e] = right;
    this.leftSym[e] = leftSym;
    this.rightSym[e] = rightSym;
    this.merged[e] = merged;
    const h = this.heap;
    let i = this.size++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(e, h[p])) break;
      h[i] = h[p];
      i = p;
    }
    h[i] = e;
  }

  /** Remove and return the best entry's index (valid until reset()). */
  pop(): number {
    const h = this.heap;
    const top = h[0];
    const last = h[--this.size];
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= this.size) break;
      const r = l + 1;
      const c = r < this.size && this.before(h[r], h[l]) ? r : l;
      if (!this.before(h[c], last)) break;
      h[i] = h[c];
      i = c;
    }
    h[i] = last;
    return top;
  }
}

// ---------------------------------------------------------------------------------------
// Encoder / decoder.

const CP_SPAN = 0x110000; // key of a code-point pair: x * CP_SPAN + y

function firstCodePoint(s: string): number {
  return s.codePointAt(0)!;
}

function lastCodePoint(s: string): number {
  const c = s.charCodeAt(s.length - 1);
  if (c >= 0xdc00 && c < 0xe000 && s.length >= 2) return s.codePointAt(s.length - 2)!;
  return c;
}

const utf8 = new TextEncoder();

/** Most chunks are one word; this bounds the memory of the per-chunk cache. */
const CACHE_MAX_ENTRIES = 200_000;
const CACHE_MAX_CHUNK = 128;

/**
 * A SentencePiece BPE tokenizer over a decoded ModelProto. `encode` returns ids without
 * BOS/EOS (the facade in tokenizer.ts adds them as the model's config says).
 */
export class SpmBpeTokenizer {
  readonly pieces: readonly SpmPiece[];
  readonly trainerSpec: SpmTrainerSpec;
  readonly normalizerSpec: SpmNormalizerSpec;
  readonly vocabSize: number;
  readonly unkId: number;
  /** -1 when the model has none. */
  readonly bosId: number;
  readonly eosId: number;

  /** Every piece string → id (SentencePiece's PieceToId over all types). */
  private readonly pieceToIdMap = new Map<string, number>();
  /**
   * Merge symbols: ids < vocabSize are mergeable pieces (NORMAL, USER_DEFINED, UNUSED);
   * ids >= vocabSize are single characters that occur inside pieces but are not mergeable
   * pieces themselves.
   */
  private readonly symbolOf = new Map<string, number>();
  private readonly extraSymbolText: string[] = [];
  private readonly symbolCount: number;
  /** (left symbol * symbolCount + right symbol) → merged piece id. */
  private readonly pairToPiece = new Map<number, number>();
  /** Code-point pairs (x * CP_SPAN + y) that some merge can join. */
  private readonly liveBoundaries = new Set<number>();
  /** USER_DEFINED pieces by first UTF-16 unit, longest first: matched whole, never merged. */
  private readonly userDefined = new Map<number, string[]>();
  private readonly byteIds: Int32Array | null;
  private readonly scores: Float64Array;
  private readonly types: Uint8Array;
  private readonly surfaces: string[];
  private readonly cache = new Map<string, Int32Array>();
  private readonly queue = new MergeQueue();
  private symSym = new Int32Array(256);
  private symPrev = new Int32Array(256);
  private symNext = new Int32Array(256);
  private symCp = new Int32Array(256);
  private symAlive = new Uint8Array(256);
  private readonly file: string;

  constructor(model: SpmModelProto, file: string) {
    this.file = file;
    const { pieces, trainerSpec: ts, normalizerSpec: ns } = model;
    if (ts.modelType !== SpmModelType.Bpe) {
      const name = MODEL_TYPE_NAMES[ts.modelType] ?? `#${ts.modelType}`;
      throw new UnsupportedError(`${file}: SentencePiece model_type ${name} is not supported (only BPE); use a tokenizer.json instead`);
    }
    if (ns.precompiledCharsmapBytes > 0) {
      throw new UnsupportedError(
        `${file}: SentencePiece normalizer "${ns.name}" with a precompiled charsmap is not supported (only identity); use a tokenizer.json instead`,
      );
    }
    if (ts.treatWhitespaceAsSuffix) {
      throw new UnsupportedError(`${file}: treat_whitespace_as_suffix=true is not supported`);
    }
    this.pieces = pieces;
    this.trainerSpec = ts;
    this.normalizerSpec = ns;
    const v = pieces.length;
    this.vocabSize = v;
    this.scores = new Float64Array(v);
    this.types = new Uint8Array(v);
    this.surfaces = new Array<string>(v);

    for (let id = 0; id < v; id++) {
      const { piece, score, type } = pieces[id];
      if (piece.length === 0) throw new FormatError(file, `piece #${id} is empty`);
      const prev = this.pieceToIdMap.get(piece);
      if (prev !== undefined) throw new FormatError(file, `piece ${JSON.stringify(piece)} appears twice (ids ${prev} and ${id})`);
      this.pieceToIdMap.set(piece, id);
      this.scores[id] = score;
      this.types[id] = type;
      this.surfaces[id] = piece.replaceAll(SPACE_SYMBOL, ' ');
      if (type === PieceType.Normal || type === PieceType.UserDefined || type === PieceType.Unused) this.symbolOf.set(piece, id);
    }

    const checkId = (name: string, id: number, type: number | null): void => {
      if (id < 0) return;
      if (id >= v) throw new FormatError(file, `trainer_spec ${name}=${id} is outside the vocabulary (${v} pieces)`);
      if (type !== null && this.types[id] !== type) {
        const want = name === 'unk_id' ? 'UNKNOWN' : 'CONTROL';
        throw new FormatError(file, `trainer_spec ${name}=${id} names piece ${JSON.stringify(pieces[id].piece)}, which is not a ${want} piece`);
      }
    };
    if (ts.unkId < 0) throw new FormatError(file, `trainer_spec unk_id=${ts.unkId}: a model needs an unknown piece`);
    checkId('unk_id', ts.unkId, PieceType.Unknown);
    checkId('bos_id', ts.bosId, PieceType.Control);
    checkId('eos_id', ts.eosId, PieceType.Control);
    this.unkId = ts.unkId;
    this.bosId = ts.bosId;
    this.eosId = ts.eosId;

    if (ts.byteFallback) {
      this.byteIds = new Int32Array(256);
      for (let b = 0; b < 256; b++) {
        const name = `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
        const id = this.pieceToIdMap.get(name);
        if (id === undefined || this.types[id] !== PieceType.Byte) {
          throw new FormatError(file, `byte_fallback is on but byte piece ${name} is missing or not of type BYTE`);
        }
        this.byteIds[b] = id;
      }
    } else {
      this.byteIds = null;
    }

    // Symbols and merge rules: a mergeable piece P arises from any split P = L + R where
    // L and R are themselves possible symbols (mergeable pieces or single characters).
    const symbolIdOf = (s: string, isSingleChar: boolean): number | undefined => {
      const id = this.symbolOf.get(s);
      if (id !== undefined || !isSingleChar) return id;
      const extra = v + this.extraSymbolText.length;
      this.symbolOf.set(s, extra);
      this.extraSymbolText.push(s);
      return extra;
    };
    const rules: Array<[number, number, number]> = [];
    for (let id = 0; id < v; id++) {
      const t = this.types[id];
      if (t !== PieceType.Normal && t !== PieceType.UserDefined && t !== PieceType.Unused) continue;
      const cps = Array.from(pieces[id].piece);
      if (cps.length < 2) continue;
      let leftStr = '';
      for (let k = 1; k < cps.length; k++) {
        leftStr += cps[k - 1];
        const rightStr = cps.slice(k).join('');
        const l = symbolIdOf(leftStr, k === 1);
        const r = symbolIdOf(rightStr, k === cps.length - 1);
        if (l === undefined || r === undefined) continue;
        rules.push([l, r, id]);
        this.liveBoundaries.add(lastCodePoint(leftStr) * CP_SPAN + firstCodePoint(rightStr));
      }
    }
    this.symbolCount = v + this.extraSymbolText.length;
    for (const [l, r, id] of rules) this.pairToPiece.set(l * this.symbolCount + r, id);

    for (const p of pieces) {
      if (p.type !== PieceType.UserDefined) continue;
      const key = p.piece.charCodeAt(0);
      const list = this.userDefined.get(key) ?? [];
      list.push(p.piece);
      list.sort((a, b) => b.length - a.length);
      this.userDefined.set(key, list);
    }
  }

  pieceToId(piece: string): number | undefined {
    return this.pieceToIdMap.get(piece);
  }

  idToPiece(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 && id < this.vocabSize ? this.pieces[id].piece : undefined;
  }

  isControl(id: number): boolean {
    return this.types[id] === PieceType.Control;
  }

  /**
   * SentencePiece's identity normaliser: optionally drop leading/trailing spaces and collapse
   * runs of spaces (U+0020 only), add the dummy-prefix space, spaces → U+2581.
   */
  normalize(text: string): string {
    if (text.length === 0) return '';
    const ns = this.normalizerSpec;
    const space = ns.escapeWhitespaces ? SPACE_SYMBOL : ' ';
    let s = text;
    if (ns.removeExtraWhitespaces) s = s.replace(/^ +/, '').replace(/ {2,}/g, ' ');
    if (ns.escapeWhitespaces) s = s.replaceAll(' ', SPACE_SYMBOL);
    if (ns.addDummyPrefix) s = space + s;
    if (ns.removeExtraWhitespaces) {
      let end = s.length;
      while (end > 0 && s.endsWith(space, end)) end -= space.length;
      s = s.slice(0, end);
    }
    return s;
  }

  /** Token ids of `text` (no BOS/EOS). */
  encode(text: string): Int32Array {
    const normalized = this.normalize(text);
    const out: number[] = [];
    this.forEachChunk(normalized, (chunk, frozenId) => {
      if (frozenId >= 0) {
        out.push(frozenId);
        return;
      }
      let ids = chunk.length <= CACHE_MAX_CHUNK ? this.cache.get(chunk) : undefined;
      if (ids === undefined) {
        ids = this.encodeChunk(chunk);
        if (chunk.length <= CACHE_MAX_CHUNK) {
          if (this.cache.size >= CACHE_MAX_ENTRIES) this.cache.clear();
          this.cache.set(chunk, ids);
        }
      }
      for (let i = 0; i < ids.length; i++) {
        // Without byte fallback, a run of unknown characters is one <unk> (as SentencePiece).
        if (ids[i] === this.unkId && this.byteIds === null && out.length > 0 && out[out.length - 1] === this.unkId) continue;
        out.push(ids[i]);
      }
    });
    return Int32Array.from(out);
  }

  /**
   * Cut the normalised text at boundaries no merge can cross, and around USER_DEFINED
   * pieces (frozenId >= 0 for those).
   */
  private forEachChunk(s: string, emit: (chunk: string, frozenId: number) => void): void {
    let start = 0;
    let prevCp = -1;
    const ud = this.userDefined;
    for (let i = 0; i < s.length; ) {
      if (ud.size > 0) {
        const match = ud.get(s.charCodeAt(i))?.find((p) => s.startsWith(p, i));
        if (match !== undefined) {
          if (i > start) emit(s.slice(start, i), -1);
          emit(match, this.pieceToIdMap.get(match)!);
          i += match.length;
          start = i;
          prevCp = -1;
          continue;
        }
      }
      const cp = s.codePointAt(i)!;
      if (prevCp >= 0 && !this.liveBoundaries.has(prevCp * CP_SPAN + cp)) {
        emit(s.slice(start, i), -1);
        start = i;
      }
      prevCp = cp;
      i += cp > 0xffff ? 2 : 1;
    }
    if (start < s.length) emit(s.slice(start), -1);
  }

  private ensureSymbolCapacity(n: number): void {
    if (n <= this.symSym.length) return;
    let cap = this.symSym.length;
    while (cap < n) cap *= 2;
    this.symSym = new Int32Array(cap);
    this.symPrev = new Int32Array(cap);
    this.symNext = new Int32Array(cap);
    this.symCp = new Int32Array(cap);
    this.symAlive = new Uint8Array(cap);
  }

  private tryPair(left: number, right: number): void {
    if (left < 0 || right < 0) return;
    const ls = this.symSym[left];
    const rs = this.symSym[right];
    if (ls < 0 || rs < 0) return;
    const merged = this.pairToPiece.get(ls * this.symbolCount + rs);
    if (merged === undefined) return;
    this.queue.push(this.scores[merged], left, right, ls, rs, merged);
  }

  /** BPE over one chunk (a string of characters); returns final ids incl. byte fallback. */
  private encodeChunk(chunk: string): Int32Array {
    this.ensureSymbolCapacity(chunk.length);
    const sym = this.symSym;
    const prev = this.symPrev;
    const next = this.symNext;
    const cpOf = this.symCp;
    const alive = this.symAlive;
    let n = 0;
    for (const ch of chunk) {
      const s = this.symbolOf.get(ch);
      sym[n] = s === undefined ? -1 : s;
      cpOf[n] = ch.codePointAt(0)!;
      prev[n] = n - 1;
      next[n] = n + 1;
      alive[n] = 1;
      n++;
    }
    next[n - 1] = -1;

    const q = this.queue;
    q.reset();
    for (let i = 1; i < n; i++) this.tryPair(i - 1, i);
    // UNUSED pieces may be formed during merging but are re-split when emitted
    // (sentencepiece's resegmentation); remember which pair formed each.
    let unusedSplit: Map<number, [number, number]> | null = null;
    while (q.length > 0) {
      const e = q.pop();
      const l = q.left[e];
      const r = q.right[e];
      if (!alive[l] || !alive[r] || sym[l] !== q.leftSym[e] || sym[r] !== q.rightSym[e]) continue; // stale
      const merged = q.merged[e];
      if (this.types[merged] === PieceType.Unused) (unusedSplit ??= new Map()).set(merged, [sym[l], sym[r]]);
      sym[l] = merged;
      alive[r] = 0;
      next[l] = next[r];
      if (next[r] >= 0) prev[next[r]] = l;
      this.tryPair(prev[l], l);
      this.tryPair(l, next[l]);
    }

    const out: number[] = [];
    for (let i = 0; i >= 0 && i < n; i = next[i]) this.emitSymbol(sym[i], cpOf[i], unusedSplit, out);
    return Int32Array.from(out);
  }

  private emitSymbol(s: number, cp: number, unusedSplit: Map<number, [number, number]> | null, out: number[]): void {
    if (s >= 0 && s < this.vocabSize) {
      const split = this.types[s] === PieceType.Unused ? unusedSplit?.get(s) : undefined;
      if (split === undefined) {
        out.push(s);
        return;
      }
      this.emitSymbol(split[0], -1, unusedSplit, out);
      this.emitSymbol(split[1], -1, unusedSplit, out);
      return;
    }
    // A single character that is not a mergeable piece: look it up among all pieces, else
    // byte fallback / <unk>.
    const text = s >= this.vocabSize ? this.extraSymbolText[s - this.vocabSize] : String.fromCodePoint(cp);
    const id = this.pieceToIdMap.get(text);
    if (id !== undefined) {
      out.push(id);
    } else if (this.byteIds !== null) {
      for (const b of utf8.encode(text)) out.push(this.byteIds[b]);
    } else {
      out.push(this.unkId);
    }
  }

  private tokenSurface(id: number): string {
    const t = this.types[id];
    if (t === PieceType.Control) return '';
    if (t === PieceType.Unknown) return this.trainerSpec.unkSurface;
    return this.surfaces[id];
  }

  /**
   * SentencePiece DecodeIds: CONTROL pieces vanish, UNKNOWN becomes unk_surface, a run of
   * BYTE pieces is decoded as UTF-8 with sentencepiece's policy (every byte that does not
   * start a complete, valid UTF-8 character becomes U+FFFD), U+2581 → space. The leading
   * U+2581 of the first piece (the dummy prefix) is dropped; with remove_extra_whitespaces
   * every leading U+2581 is dropped until some text has been produced. Ids must be valid
   * (the facade checks them).
   */
  decode(ids: ArrayLike<number>): string {
    const ns = this.normalizerSpec;
    const stripsBosSpace = ns.addDummyPrefix || ns.removeExtraWhitespaces;
    let text = '';
    let bytes: number[] = [];
    let isBosWs = true;
    let bosWsSeen = false;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      const t = this.types[id];
      if (t === PieceType.Byte) {
        bytes.push(parseInt(this.pieces[id].piece.slice(3, 5), 16));
        continue;
      }
      if (bytes.length > 0) {
        text += decodeUtf8Lenient(bytes);
        bytes = [];
      }
      if (bosWsSeen || text.length > 0) isBosWs = false;
      bosWsSeen = false;
      let s = this.tokenSurface(id);
      if (isBosWs && stripsBosSpace && t !== PieceType.Control && t !== PieceType.Unknown && this.pieces[id].piece.startsWith(SPACE_SYMBOL)) {
        s = s.slice(1);
        bosWsSeen = !ns.removeExtraWhitespaces;
      }
      text += s;
    }
    if (bytes.length > 0) text += decodeUtf8Lenient(bytes);
    return text;
  }

  /** The file this model was read from (for error messages). */
  get source(): string {
    return this.file;
  }
}

/**
 * Length of the valid UTF-8 character starting at bytes[i], or 0 if the bytes there do not
 * form a complete, well-formed character (Unicode table 3-7: no overlongs, no surrogates,
 * nothing above U+10FFFF).
 */
function utf8CharLength(bytes: ArrayLike<number>, i: number): number {
  const b0 = bytes[i];
  if (b0 < 0x80) return 1;
  let n: number;
  let lo = 0x80;
  let hi = 0xbf;
  if (b0 >= 0xc2 && b0 <= 0xdf) n = 2;
  else if (b0 >= 0xe0 && b0 <= 0xef) {
    n = 3;
    if (b0 === 0xe0) lo = 0xa0;
    else if (b0 === 0xed) hi = 0x9f;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    n = 4;
    if (b0 === 0xf0) lo = 0x90;
    else if (b0 === 0xf4) hi = 0x8f;
  } else return 0;
  if (i + n > bytes.length) return 0;
  const b1 = bytes[i + 1];
  if (b1 < lo || b1 > hi) return 0;
  for (let k = 2; k < n; k++) {
    const b = bytes[i + k];
    if (b < 0x80 || b > 0xbf) return 0;
  }
  return n;
}

const utf8Lenient = new TextDecoder('utf-8', { ignoreBOM: true });

/**
 * Decode bytes the way sentencepiece decodes a run of byte pieces: valid characters as
 * they are, each byte that does not start a complete valid character → U+FFFD. (The WHATWG
 * TextDecoder would replace a truncated sequence with a single U+FFFD instead.)
 */
export function decodeUtf8Lenient(bytes: ArrayLike<number>): string {
  let out = '';
  let validStart = 0;
  let i = 0;
  const arr = Uint8Array.from(bytes);
  while (i < arr.length) {
    const n = utf8CharLength(arr, i);
    if (n > 0) {
      i += n;
      continue;
    }
    if (i > validStart) out += utf8Lenient.decode(arr.subarray(validStart, i));
    out += '\uFFFD';
    i += 1;
    validStart = i;
  }
  if (i > validStart) out += utf8Lenient.decode(arr.subarray(validStart, i));
  return out;
}
