/**
 * Tokenizer of a model folder: `tokenizer.json` through @huggingface/tokenizers when the
 * folder has one, else the SentencePiece `tokenizer.model` (BPE, lib/io/sentencepiece.ts).
 * Both sit behind one `Tokenizer` interface with the model's BOS/EOS policy.
 *
 * BOS/EOS policy (what `encode` adds by default), first match wins:
 *   add BOS: tokenizer_config.json `add_bos_token`; else the tokenizer.json post-processor
 *            (a TemplateProcessing whose single-sequence template starts with a special
 *            token); else, for a folder with only tokenizer.model, yes (SentencePiece /
 *            LlamaTokenizer convention); else no.
 *   add EOS: tokenizer_config.json `add_eos_token`; else the template ends with a special
 *            token; else no.
 *   BOS id:  config.json `bos_token_id`; else the template's leading special token; else
 *            tokenizer_config.json `bos_token`; else the SentencePiece trainer's bos_id.
 *   EOS ids: config.json `eos_token_id` (number or list); else tokenizer_config.json
 *            `eos_token`; else the SentencePiece trainer's eos_id.
 *
 * Text policy: input strings are made well-formed first (a lone UTF-16 surrogate becomes
 * U+FFFD, as TextEncoder does). Decoding drops special/control tokens (the SentencePiece
 * backend renders <unk> as its unk_surface, the tokenizer.json one drops it as special).
 * Byte-fallback tokens that do not form valid UTF-8 decode to U+FFFD: one per invalid byte
 * with the SentencePiece backend (sentencepiece's rule), one per maximal invalid subsequence
 * with the tokenizer.json backend (WHATWG TextDecoder, as @huggingface/tokenizers does).
 *
 * Known backend differences, none reachable from encode() of ordinary text: tokenizer.json
 * recognises special-token strings such as "<s>" inside the text (SentencePiece encodes their
 * characters); decoding ids that start with several "▁" pieces strips one space
 * (tokenizer.json's Strip decoder) vs. all of them (sentencepiece with
 * remove_extra_whitespaces).
 *
 * Speed: @huggingface/tokenizers runs BPE over each pre-token as one word; Llama-style
 * tokenizer.json files have no pre-tokenizer, so we split at boundaries no merge can cross
 * (speedUpBpe, exact) and fix the library's Prepend-on-empty-text deviation from Rust
 * tokenizers (keepEmptyTextEmpty).
 */
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';

import { FileError, FormatError, LieqError, UsageError } from '../util/errors.js';
import { jsonSnippet } from '../util/json-snippet.js';
import { readSpmModel, SpmBpeTokenizer } from './sentencepiece.js';

export const TOKENIZER_JSON = 'tokenizer.json';
export const TOKENIZER_MODEL = 'tokenizer.model';
export const TOKENIZER_CONFIG = 'tokenizer_config.json';
export const MODEL_CONFIG = 'config.json';

export type TokenizerBackend = 'hf' | 'spm';

export interface LoadTokenizerOptions {
  /** Force a backend: 'hf' needs tokenizer.json, 'spm' needs tokenizer.model. */
  backend?: TokenizerBackend;
}

export interface EncodeOptions {
  /** Prepend BOS; default: the model's policy (`tokenizer.addsBos`). */
  addBos?: boolean;
  /** Append EOS; default: the model's policy (`tokenizer.addsEos`). */
  addEos?: boolean;
}

/** Turns generated ids into text as they arrive. */
export interface TokenStreamDecoder {
  /** Text completed by this token ('' while a multi-byte character is still incomplete). */
  next(id: number): string;
  /** Whatever is still held back (an incomplete byte sequence decodes to U+FFFD). */
  flush(): string;
}

export interface Tokenizer {
  readonly backend: TokenizerBackend;
  /** The tokenizer.json or tokenizer.model the tokenizer was built from. */
  readonly file: string;
  /** Number of ids (incl. added/special tokens). */
  readonly vocabSize: number;
  readonly bosId: number | null;
  /** The first of `eosIds`, or null. */
  readonly eosId: number | null;
  /** All ids that end generation (config.json may list several). */
  readonly eosIds: readonly number[];
  /** Whether encode() prepends BOS / appends EOS by default. */
  readonly addsBos: boolean;
  readonly addsEos: boolean;
  encode(text: string, options?: EncodeOptions): Int32Array;
  /** Text of `ids`; special/control tokens are dropped, the dummy-prefix space removed. */
  decode(ids: ArrayLike<number>): string;
  /**
   * The text one token adds in the middle of a text: U+2581 becomes a space, a byte-fallback
   * token its character if that byte is a whole character (else U+FFFD), special tokens ''.
   * For generated text use streamDecoder(), which reassembles characters split over several
   * byte tokens and drops the leading dummy-prefix space, exactly as decode() does.
   */
  decodeToken(id: number): string;
  streamDecoder(): TokenStreamDecoder;
  /** Token string of an id (raw piece, e.g. "▁the", "<0x0A>"), undefined when out of range. */
  idToToken(id: number): string | undefined;
  tokenToId(token: string): number | undefined;
}

/** Load the tokenizer of a model folder. */
export async function loadTokenizer(modelDir: string, options: LoadTokenizerOptions = {}): Promise<Tokenizer> {
  const jsonFile = join(modelDir, TOKENIZER_JSON);
  const spmFile = join(modelDir, TOKENIZER_MODEL);
  const hasJson = existsSync(jsonFile);
  const hasSpm = existsSync(spmFile);
  const backend = options.backend ?? (hasJson ? 'hf' : hasSpm ? 'spm' : null);
  if (backend === null) {
    if (!existsSync(modelDir)) throw new FileError(modelDir, 'model folder not found');
    throw new FileError(modelDir, `no tokenizer: neither ${TOKENIZER_JSON} nor ${TOKENIZER_MODEL} is present`);
  }
  if (backend !== 'hf' && backend !== 'spm') throw new UsageError(`backend must be "hf" or "spm", got ${JSON.stringify(backend)}`);
  if (backend === 'hf' && !hasJson) throw new FileError(jsonFile, 'not found (the "hf" backend reads tokenizer.json)');
  if (backend === 'spm' && !hasSpm) throw new FileError(spmFile, 'not found (the "spm" backend reads tokenizer.model)');

  const tokenizerConfig = await readJsonObject(join(modelDir, TOKENIZER_CONFIG), true);
  const modelConfig = await readJsonObject(join(modelDir, MODEL_CONFIG), true);
  // The post-processor states the BOS/EOS template even when the SentencePiece backend is
  // forced, so both backends follow the same policy on the same folder.
  const needTemplate = typeof tokenizerConfig?.add_bos_token !== 'boolean' || typeof tokenizerConfig?.add_eos_token !== 'boolean';
  const tokenizerJson = backend === 'hf' || (hasJson && needTemplate) ? await readTokenizerJson(jsonFile) : null;

  const impl: Backend =
    backend === 'hf'
      ? new HfBackend(tokenizerJson!, tokenizerConfig ?? {}, jsonFile)
      : new SpmBackend(new SpmBpeTokenizer(await readSpmModel(spmFile), spmFile));
  const policy = resolvePolicy(impl, tokenizerJson, tokenizerConfig, modelConfig, modelDir);
  return new LoadedTokenizer(impl, policy);
}

// ---------------------------------------------------------------------------------------
// Backends: the tokenizer-specific part (ids without BOS/EOS, decode of valid ids).

interface Backend {
  readonly kind: TokenizerBackend;
  readonly file: string;
  readonly vocabSize: number;
  encode(text: string): Int32Array;
  decode(ids: number[]): string;
  idToToken(id: number): string | undefined;
  tokenToId(token: string): number | undefined;
  isSpecial(id: number): boolean;
  /** BOS/EOS ids the backend itself knows of (SentencePiece trainer spec), or null. */
  readonly ownBosId: number | null;
  readonly ownEosId: number | null;
  /** True for a folder whose only tokenizer is a SentencePiece model (add BOS by default). */
  readonly defaultAddBos: boolean;
}

class SpmBackend implements Backend {
  readonly kind = 'spm';
  readonly file: string;
  readonly vocabSize: number;
  readonly ownBosId: number | null;
  readonly ownEosId: number | null;
  readonly defaultAddBos: boolean;
  constructor(private readonly spm: SpmBpeTokenizer) {
    this.file = spm.source;
    this.vocabSize = spm.vocabSize;
    this.ownBosId = spm.bosId >= 0 ? spm.bosId : null;
    this.ownEosId = spm.eosId >= 0 ? spm.eosId : null;
    this.defaultAddBos = this.ownBosId !== null;
  }
  encode(text: string): Int32Array {
    return this.spm.encode(text);
  }
  decode(ids: number[]): string {
    return this.spm.decode(ids);
  }
  idToToken(id: number): string | undefined {
    return this.spm.idToPiece(id);
  }
  tokenToId(token: string): number | undefined {
    return this.spm.pieceToId(token);
  }
  isSpecial(id: number): boolean {
    return this.spm.isControl(id);
  }
}

/** A pre-tokenizer as the library calls it: text → words. */
type PreTokenize = (text: string, options?: unknown) => string[];

/** The fields of the library's BPE model that decide whether words may be split. */
interface BpeModelView {
  config?: { type?: string; dropout?: number | null; continuing_subword_prefix?: string | null };
  merges?: Array<[string, string]>;
  ignore_merges?: boolean;
  end_of_word_suffix?: string | null;
  continuing_subword_suffix?: string | null;
}

function lastCodePoint(s: string): number {
  const c = s.charCodeAt(s.length - 1);
  return c >= 0xdc00 && c < 0xe000 && s.length >= 2 ? s.codePointAt(s.length - 2)! : c;
}

/**
 * Cut each pre-token at code-point boundaries x|y no BPE merge can join (no merge (a, b)
 * with a ending in x and b starting with y). BPE applies merges by global rank, so the
 * pieces encode exactly as the whole word does, and being short they hit the library's word
 * cache. Without this a tokenizer.json with no pre-tokenizer (all the Llama-2-style ones)
 * runs BPE over the entire text as one word: 10-40 s for 1 MB instead of 1-2 s.
 * Only for plain rank-ordered BPE (no dropout, suffixes/prefixes or ignore_merges).
 */
function speedUpBpe(tok: HfTokenizer): void {
  const model = tok.model as unknown as BpeModelView | null;
  const cfg = model?.config;
  if (!model || cfg?.type !== 'BPE' || !Array.isArray(model.merges)) return;
  if (model.ignore_merges || model.end_of_word_suffix || model.continuing_subword_suffix || cfg.dropout || cfg.continuing_subword_prefix) return;
  const joinable = new Set<number>();
  for (const [a, b] of model.merges) {
    if (a.length === 0 || b.length === 0) continue;
    joinable.add(lastCodePoint(a) * 0x110000 + b.codePointAt(0)!);
  }
  const inner = tok.pre_tokenizer as unknown as PreTokenize | null;
  const split: PreTokenize = (text, options) => {
    const words = inner !== null ? inner(text, options) : [text];
    const out: string[] = [];
    for (const word of words) {
      let start = 0;
      let prev = -1;
      for (let i = 0; i < word.length; ) {
        const cp = word.codePointAt(i)!;
        if (prev >= 0 && !joinable.has(prev * 0x110000 + cp)) {
          out.push(word.slice(start, i));
          start = i;
        }
        prev = cp;
        i += cp > 0xffff ? 2 : 1;
      }
      if (start < word.length) out.push(word.slice(start));
    }
    return out;
  };
  // The library only ever calls its pre-tokenizer as a function.
  tok.pre_tokenizer = split as unknown as typeof tok.pre_tokenizer;
}

/**
 * The library's Prepend normalizer also prepends to an empty string, unlike the Rust
 * `tokenizers` it mirrors (and SentencePiece): " " would become "▁" instead of nothing once
 * the whitespace-stripping normalizers ran. Make Prepend leave "" alone.
 */
function keepEmptyTextEmpty(tok: HfTokenizer): void {
  interface NormalizerNode {
    config?: { type?: string };
    normalize?: (text: string) => string;
    normalizers?: NormalizerNode[];
  }
  const visit = (node: NormalizerNode | null | undefined): void => {
    if (!node) return;
    if (node.config?.type === 'Prepend' && typeof node.normalize === 'function') {
      const prepend = node.normalize.bind(node);
      node.normalize = (text: string): string => (text.length === 0 ? text : prepend(text));
    }
    if (Array.isArray(node.normalizers)) node.normalizers.forEach(visit);
  };
  visit(tok.normalizer as unknown as NormalizerNode | null);
}

class HfBackend implements Backend {
  readonly kind = 'hf';
  readonly vocabSize: number;
  readonly ownBosId = null;
  readonly ownEosId = null;
  readonly defaultAddBos = false;
  private readonly tok: HfTokenizer;
  private readonly specialIds = new Set<number>();

  constructor(
    json: Record<string, unknown>,
    config: Record<string, unknown>,
    readonly file: string,
  ) {
    try {
      this.tok = new HfTokenizer(json, config);
    } catch (err) {
      throw new FormatError(file, `rejected by @huggingface/tokenizers: ${(err as Error).message}`, { cause: err });
    }
    this.libraryCall(() => {
      keepEmptyTextEmpty(this.tok);
      speedUpBpe(this.tok);
    });
    this.vocabSize = this.libraryCall(() => this.tok.model!.vocab.length);
    if (!Number.isSafeInteger(this.vocabSize) || this.vocabSize <= 0) throw new FormatError(file, 'the model has an empty vocabulary');
    this.libraryCall(() => {
      for (const [id, token] of this.tok.get_added_tokens_decoder()) if (token.special) this.specialIds.add(id);
      // The library builds malformed pipelines without complaint and fails on first use (e.g.
      // a null post-processor template item): use it once now so such a file fails at load.
      this.tok.decode(this.tok.encode('a b', { add_special_tokens: true }).ids, { skip_special_tokens: true });
    });
  }

  /** Runs a library call; its own exceptions (a malformed tokenizer.json) become FormatErrors. */
  private libraryCall<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof LieqError) throw err;
      throw new FormatError(this.file, `rejected by @huggingface/tokenizers: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    }
  }

  encode(text: string): Int32Array {
    return this.libraryCall(() => Int32Array.from(this.tok.encode(text, { add_special_tokens: false }).ids));
  }
  decode(ids: number[]): string {
    if (ids.length === 0) return '';
    return this.libraryCall(() => this.tok.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false }));
  }
  idToToken(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 && id < this.vocabSize ? this.tok.id_to_token(id) : undefined;
  }
  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }
  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }
}

// ---------------------------------------------------------------------------------------
// BOS/EOS policy.

interface Policy {
  bosId: number | null;
  eosIds: number[];
  addsBos: boolean;
  addsEos: boolean;
}

/** Names of the special tokens the tokenizer.json post-processor puts around a single sequence. */
function templateSpecials(tokenizerJson: Record<string, unknown> | null): { first: string | null; last: string | null } {
  const none = { first: null, last: null };
  let pp = tokenizerJson?.post_processor as Record<string, unknown> | null | undefined;
  if (pp && pp.type === 'Sequence' && Array.isArray(pp.processors)) {
    pp = (pp.processors as Array<Record<string, unknown>>).find((p) => p?.type === 'TemplateProcessing');
  }
  if (!pp || pp.type !== 'TemplateProcessing' || !Array.isArray(pp.single) || pp.single.length === 0) return none;
  const single = pp.single as Array<Record<string, { id?: unknown }>>;
  const name = (item: Record<string, { id?: unknown }> | undefined): string | null => {
    const id = item?.SpecialToken?.id;
    return typeof id === 'string' ? id : null;
  };
  return { first: name(single[0]), last: single.length > 1 ? name(single[single.length - 1]) : null };
}

function templateTokenId(tokenizerJson: Record<string, unknown> | null, name: string, impl: Backend): number | undefined {
  const pp = tokenizerJson?.post_processor as Record<string, unknown> | null | undefined;
  const procs = pp?.type === 'Sequence' && Array.isArray(pp.processors) ? (pp.processors as Array<Record<string, unknown>>) : [pp];
  for (const p of procs) {
    const ids = (p?.special_tokens as Record<string, { ids?: unknown }> | undefined)?.[name]?.ids;
    if (Array.isArray(ids) && ids.length === 1 && Number.isInteger(ids[0])) return ids[0] as number;
  }
  return impl.tokenToId(name);
}

function specialTokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return null;
}

function resolvePolicy(
  impl: Backend,
  tokenizerJson: Record<string, unknown> | null,
  tokenizerConfig: Record<string, unknown> | null,
  modelConfig: Record<string, unknown> | null,
  modelDir: string,
): Policy {
  const configFile = join(modelDir, MODEL_CONFIG);
  const tcFile = join(modelDir, TOKENIZER_CONFIG);
  const checkId = (file: string, field: string, v: unknown): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= impl.vocabSize) {
      throw new FormatError(file, `${field} must be a token id in [0, ${impl.vocabSize}) of ${impl.file}, got ${jsonSnippet(v)}`);
    }
    return v;
  };
  const byName = (field: string): number | null => {
    const content = specialTokenContent(tokenizerConfig?.[field]);
    if (content === null) return null;
    const id = impl.tokenToId(content);
    if (id === undefined) throw new FormatError(tcFile, `${field} ${JSON.stringify(content)} is not a token of ${impl.file}`);
    return id;
  };
  const template = templateSpecials(tokenizerJson);

  let bosId: number | null = null;
  if (modelConfig?.bos_token_id != null) bosId = checkId(configFile, 'bos_token_id', modelConfig.bos_token_id);
  else if (template.first !== null) {
    const id = templateTokenId(tokenizerJson, template.first, impl);
    if (id !== undefined) bosId = checkId(impl.file, `post_processor token ${JSON.stringify(template.first)}`, id);
  }
  bosId ??= byName('bos_token') ?? impl.ownBosId;

  let eosIds: number[] = [];
  const eosField = modelConfig?.eos_token_id;
  if (Array.isArray(eosField)) eosIds = eosField.map((v) => checkId(configFile, 'eos_token_id', v));
  else if (eosField != null) eosIds = [checkId(configFile, 'eos_token_id', eosField)];
  else {
    const byTc = byName('eos_token') ?? impl.ownEosId;
    if (byTc !== null) eosIds = [byTc];
  }

  const flag = (field: string): boolean | null => {
    const v = tokenizerConfig?.[field];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'boolean') throw new FormatError(tcFile, `${field} must be true or false, got ${jsonSnippet(v)}`);
    return v;
  };
  const bosFlag = flag('add_bos_token');
  const eosFlag = flag('add_eos_token');
  if (bosFlag === true && bosId === null) {
    throw new FormatError(tcFile, 'add_bos_token is true but no BOS token is defined (config.json bos_token_id, bos_token)');
  }
  if (eosFlag === true && eosIds.length === 0) {
    throw new FormatError(tcFile, 'add_eos_token is true but no EOS token is defined (config.json eos_token_id, eos_token)');
  }
  const addsBos = bosFlag ?? (tokenizerJson !== null ? template.first !== null : impl.defaultAddBos);
  const addsEos = eosFlag ?? (tokenizerJson !== null && template.last !== null);
  return { bosId, eosIds, addsBos: addsBos && bosId !== null, addsEos: addsEos && eosIds.length > 0 };
}

// ---------------------------------------------------------------------------------------
// The facade.

/** Lone UTF-16 surrogates → U+FFFD, so both backends see the same well-formed text. */
function wellFormed(text: string): string {
  if (!/[\uD800-\uDFFF]/.test(text)) return text;
  return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

class LoadedTokenizer implements Tokenizer {
  readonly backend: TokenizerBackend;
  readonly file: string;
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly eosIds: readonly number[];
  readonly addsBos: boolean;
  readonly addsEos: boolean;
  private anchor: { id: number; text: string } | null = null;

  constructor(
    private readonly impl: Backend,
    policy: Policy,
  ) {
    this.backend = impl.kind;
    this.file = impl.file;
    this.vocabSize = impl.vocabSize;
    this.bosId = policy.bosId;
    this.eosIds = Object.freeze([...policy.eosIds]);
    this.eosId = policy.eosIds[0] ?? null;
    this.addsBos = policy.addsBos;
    this.addsEos = policy.addsEos;
  }

  encode(text: string, options: EncodeOptions = {}): Int32Array {
    if (typeof text !== 'string') throw new UsageError(`encode: text must be a string, got ${typeof text}`);
    const addBos = options.addBos ?? this.addsBos;
    const addEos = options.addEos ?? this.addsEos;
    if (addBos && this.bosId === null) throw new UsageError(`encode: addBos is set but ${this.file} has no BOS token`);
    if (addEos && this.eosId === null) throw new UsageError(`encode: addEos is set but ${this.file} has no EOS token`);
    const body = this.impl.encode(wellFormed(text));
    if (!addBos && !addEos) return body;
    const out = new Int32Array(body.length + (addBos ? 1 : 0) + (addEos ? 1 : 0));
    if (addBos) out[0] = this.bosId!;
    out.set(body, addBos ? 1 : 0);
    if (addEos) out[out.length - 1] = this.eosId!;
    return out;
  }

  private checkIds(ids: ArrayLike<number>, what: string): number[] {
    const out = new Array<number>(ids.length);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new UsageError(`${what}: ids[${i}] = ${id} is not a token id in [0, ${this.vocabSize})`);
      }
      out[i] = id;
    }
    return out;
  }

  decode(ids: ArrayLike<number>): string {
    return this.impl.decode(this.checkIds(ids, 'decode'));
  }

  /**
   * A token whose text is one plain character: decoding [anchor, ...ids] and cutting the
   * anchor's text off gives the text of ids as they read in the middle of a text (no
   * start-of-text space removal).
   */
  private getAnchor(): { id: number; text: string } {
    if (this.anchor !== null) return this.anchor;
    const plain = (id: number | undefined): boolean => id !== undefined && !this.impl.isSpecial(id) && /^[A-Za-z.]$/.test(this.impl.decode([id]));
    let id = ['a', 'e', '.', '\u2581a'].map((t) => this.impl.tokenToId(t)).find(plain);
    for (let i = 0; id === undefined && i < this.vocabSize; i++) if (plain(i)) id = i;
    if (id === undefined) throw new FormatError(this.file, 'no token decodes to a single plain character (needed for streaming decode)');
    this.anchor = { id, text: this.impl.decode([id]) };
    return this.anchor;
  }

  private decodeMidText(ids: number[]): string {
    const a = this.getAnchor();
    return this.impl.decode([a.id, ...ids]).slice(a.text.length);
  }

  decodeToken(id: number): string {
    const [checked] = this.checkIds([id], 'decodeToken');
    return this.decodeMidText([checked]);
  }

  streamDecoder(): TokenStreamDecoder {
    // Pending ids are decoded together until their text is complete (non-empty, not ending
    // in U+FFFD, which may be an unfinished multi-byte character). The first text comes from
    // a plain decode (start-of-text rules), later ones from mid-text decodes. Held ids are
    // re-decoded at each step, so a run of invalid bytes (always ending in U+FFFD) is
    // released after MAX_PENDING ids to keep the cost bounded.
    const MAX_PENDING = 32;
    let pending: number[] = [];
    let started = false;
    const render = (): string => (started ? this.decodeMidText(pending) : this.impl.decode(pending));
    return {
      next: (id: number): string => {
        pending.push(this.checkIds([id], 'streamDecoder.next')[0]);
        const text = render();
        if ((text.length === 0 || text.endsWith('\uFFFD')) && pending.length < MAX_PENDING) return '';
        pending = [];
        if (text.length > 0) started = true;
        return text;
      },
      flush: (): string => {
        if (pending.length === 0) return '';
        const text = render();
        pending = [];
        if (text.length > 0) started = true;
        return text;
      },
    };
  }

  idToToken(id: number): string | undefined {
    return this.impl.idToToken(id);
  }

  tokenToId(token: string): number | undefined {
    return this.impl.tokenToId(token);
  }
}

// ---------------------------------------------------------------------------------------
// Files.

const utf8Strict = new TextDecoder('utf-8', { fatal: true });

async function readJsonObject(file: string, optional: true): Promise<Record<string, unknown> | null>;
async function readJsonObject(file: string, optional: false): Promise<Record<string, unknown>>;
async function readJsonObject(file: string, optional: boolean): Promise<Record<string, unknown> | null> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (err) {
    if (optional && (err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new FileError(file, `cannot read: ${(err as Error).message}`, { cause: err });
  }
  let text: string;
  try {
    text = utf8Strict.decode(bytes);
  } catch (err) {
    throw new FormatError(file, 'is not valid UTF-8', { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new FormatError(file, `invalid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new FormatError(file, 'expected a JSON object at the top level');
  return value as Record<string, unknown>;
}

async function readTokenizerJson(file: string): Promise<Record<string, unknown>> {
  const json = await readJsonObject(file, false);
  const model = json.model as Record<string, unknown> | undefined;
  if (!model || typeof model !== 'object') throw new FormatError(file, 'not a tokenizer.json: no "model" object');
  if (typeof model.vocab !== 'object' || model.vocab === null) throw new FormatError(file, 'not a tokenizer.json: "model" has no "vocab"');
  return json;
}
