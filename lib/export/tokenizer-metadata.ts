/**
 * The tokenizer.ggml.* metadata of a GGUF file, from a model folder's tokenizer:
 *
 * - tokenizer.model (SentencePiece BPE) → model "llama": pieces, scores and piece types as
 *   stored (what llama.cpp's converter writes for LLaMA / Llama-2).
 * - tokenizer.json BPE over "▁"-words (Llama-style: Prepend/Replace "▁" normaliser, no
 *   byte-level pre-tokenizer) → model "llama" too, because llama.cpp's SentencePiece tokenizer
 *   is the one that understands "▁" and <0xNN> byte fallback. SentencePiece merges the pair
 *   whose result has the highest score, HF BPE the pair with the lowest merge rank, so each
 *   token gets score = -(rank of the first merge producing it); tokens no merge produces get
 *   -(merges + id) (never formed by merging anyway).
 * - tokenizer.json byte-level BPE (GPT-2 / Qwen style) → model "gpt2" with the vocab, token
 *   types and the merges list as "left right" strings, plus tokenizer.ggml.pre.
 *
 * Token types (llama_token_type): 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
 * 6 byte. BOS/EOS ids and the add-BOS/EOS policy come from lib/io/tokenizer.ts, so llama.cpp
 * frames text exactly as `lieq eval` does. The vocab is padded with "[PAD<id>]" (unused) up
 * to config.json's vocab_size, since llama.cpp sizes the embedding by the token count.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import type { ModelConfig } from '../io/config.js';
import { readSpmModel } from '../io/sentencepiece.js';
import { loadTokenizer, TOKENIZER_CONFIG, TOKENIZER_JSON, TOKENIZER_MODEL } from '../io/tokenizer.js';
import { FileError, FormatError, UnsupportedError } from '../util/errors.js';
import type { GgufKv } from './gguf-writer.js';
import type { GgufArchitecture } from './tensor-names.js';

export const TokenType = { Normal: 1, Unknown: 2, Control: 3, UserDefined: 4, Unused: 5, Byte: 6 } as const;

export interface TokenizerMetadata {
  model: 'llama' | 'gpt2';
  /** Where the vocabulary came from. */
  source: string;
  tokens: string[];
  scores?: Float32Array;
  types: Int32Array;
  merges?: string[];
  pre?: string;
  bosId: number | null;
  eosId: number | null;
  unkId: number | null;
  padId: number | null;
  addBos: boolean;
  addEos: boolean;
  /** Tokens appended to reach config.json's vocab_size. */
  padded: number;
}

const BYTE_TOKEN = /^<0x[0-9A-Fa-f]{2}>$/;

interface TokenizerJson {
  model?: { type?: string; vocab?: Record<string, number>; merges?: (string | [string, string])[]; unk_token?: string | null; byte_fallback?: boolean };
  added_tokens?: { id: number; content: string; special?: boolean }[];
  pre_tokenizer?: { type?: string; pretokenizers?: { type?: string }[] } | null;
  decoder?: { type?: string; decoders?: { type?: string }[] } | null;
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new FormatError(file, `not valid JSON (${(err as Error).message})`, { cause: err });
  }
}

function usesByteLevel(t: TokenizerJson): boolean {
  const kinds = (x: { type?: string; pretokenizers?: { type?: string }[]; decoders?: { type?: string }[] } | null | undefined) =>
    x ? [x.type, ...(x.pretokenizers ?? []).map((p) => p.type), ...(x.decoders ?? []).map((d) => d.type)] : [];
  return [...kinds(t.pre_tokenizer), ...kinds(t.decoder)].includes('ByteLevel');
}

/** Tokenizer metadata of `tokDir` (a model folder or a tokenizer folder) for a model of `cfg`. */
export async function tokenizerMetadata(tokDir: string, cfg: ModelConfig, arch: GgufArchitecture): Promise<TokenizerMetadata> {
  const spmFile = join(tokDir, TOKENIZER_MODEL);
  const jsonFile = join(tokDir, TOKENIZER_JSON);
  if (!existsSync(spmFile) && !existsSync(jsonFile))
    throw new FileError(tokDir, `no ${TOKENIZER_MODEL} or ${TOKENIZER_JSON}: a GGUF file needs the tokenizer (pass --tokenizer DIR)`);
  const policy = await loadTokenizer(tokDir);
  const tokCfg = existsSync(join(tokDir, TOKENIZER_CONFIG)) ? (readJson(join(tokDir, TOKENIZER_CONFIG)) as Record<string, unknown>) : {};

  let meta: Omit<TokenizerMetadata, 'padded' | 'bosId' | 'eosId' | 'addBos' | 'addEos' | 'padId'>;
  if (existsSync(spmFile)) {
    const spm = await readSpmModel(spmFile);
    meta = {
      model: 'llama',
      source: spmFile,
      tokens: spm.pieces.map((p) => p.piece),
      scores: Float32Array.from(spm.pieces, (p) => p.score),
      types: Int32Array.from(spm.pieces, (p) => p.type),
      unkId: spm.trainerSpec.unkId >= 0 ? spm.trainerSpec.unkId : null,
    };
  } else {
    meta = fromTokenizerJson(readJson(jsonFile) as TokenizerJson, jsonFile, cfg, arch);
  }

  const tokens = [...meta.tokens];
  const types = Array.from(meta.types);
  const scores = meta.scores ? Array.from(meta.scores) : undefined;
  if (tokens.length > cfg.vocabSize)
    throw new UnsupportedError(`${meta.source}: the tokenizer has ${tokens.length} tokens but config.json vocab_size is ${cfg.vocabSize} (the embedding has no rows for the extra ones)`);
  const padded = cfg.vocabSize - tokens.length;
  for (let id = tokens.length; id < cfg.vocabSize; id++) {
    tokens.push(`[PAD${id}]`);
    types.push(TokenType.Unused);
    scores?.push(-1e9);
  }
  const padToken = typeof tokCfg.pad_token === 'string' ? tokCfg.pad_token : null;
  const padId = padToken !== null ? tokens.indexOf(padToken) : -1;
  return {
    ...meta,
    tokens,
    types: Int32Array.from(types),
    ...(scores ? { scores: Float32Array.from(scores) } : {}),
    bosId: policy.bosId,
    eosId: policy.eosId,
    padId: padId >= 0 ? padId : null,
    addBos: policy.addsBos,
    addEos: policy.addsEos,
    padded,
  };
}

function fromTokenizerJson(t: TokenizerJson, file: string, cfg: ModelConfig, arch: GgufArchitecture): Omit<TokenizerMetadata, 'padded' | 'bosId' | 'eosId' | 'addBos' | 'addEos' | 'padId'> {
  const m = t.model;
  if (!m || m.type !== 'BPE' || typeof m.vocab !== 'object' || m.vocab === null)
    throw new UnsupportedError(`${file}: only BPE tokenizer.json files can be exported to GGUF (model.type is ${JSON.stringify(m?.type)})`);
  const added = t.added_tokens ?? [];
  const size = Math.max(-1, ...Object.values(m.vocab), ...added.map((a) => a.id)) + 1;
  const tokens: (string | undefined)[] = new Array(size);
  for (const [tok, id] of Object.entries(m.vocab)) tokens[id] = tok;
  for (const a of added) tokens[a.id] = a.content;
  const holes = tokens.findIndex((x) => x === undefined);
  if (holes >= 0) throw new FormatError(file, `token id ${holes} has no token (ids must be contiguous from 0)`);
  const merges = (m.merges ?? []).map((x) => (Array.isArray(x) ? `${x[0]} ${x[1]}` : x));
  const special = new Set(added.filter((a) => a.special).map((a) => a.id));
  const userDefined = new Set(added.filter((a) => !a.special).map((a) => a.id));
  const unkId = m.unk_token != null && m.vocab[m.unk_token] !== undefined ? m.vocab[m.unk_token] : null;
  const types = Int32Array.from(tokens as string[], (tok, id) =>
    id === unkId ? TokenType.Unknown : special.has(id) ? TokenType.Control : userDefined.has(id) ? TokenType.UserDefined : BYTE_TOKEN.test(tok) ? TokenType.Byte : TokenType.Normal,
  );

  if (usesByteLevel(t)) {
    // llama.cpp picks its pre-tokenizer regex by name; these are the names its converter
    // writes for the families lieq supports with byte-level vocabularies.
    const pre = arch === 'qwen2' || arch === 'qwen3' ? 'qwen2' : cfg.family === 'llama' ? 'llama-bpe' : 'default';
    return { model: 'gpt2', source: file, tokens: tokens as string[], types, merges, pre, unkId };
  }
  // "▁"-word BPE: SentencePiece scores from merge ranks (see the file comment).
  const firstRank = new Map<string, number>();
  merges.forEach((mg, rank) => {
    const sp = mg.indexOf(' ', 1);
    const merged = mg.slice(0, sp) + mg.slice(sp + 1);
    if (!firstRank.has(merged)) firstRank.set(merged, rank);
  });
  const scores = Float32Array.from(tokens as string[], (tok, id) => {
    const r = firstRank.get(tok);
    return r !== undefined && !special.has(id) ? -r : -(merges.length + id);
  });
  return { model: 'llama', source: file, tokens: tokens as string[], scores, types, unkId };
}

/** The tokenizer.ggml.* key/values. */
export function tokenizerKvs(t: TokenizerMetadata): GgufKv[] {
  const kvs: GgufKv[] = [
    { key: 'tokenizer.ggml.model', type: 'STRING', value: t.model },
    ...(t.pre ? [{ key: 'tokenizer.ggml.pre', type: 'STRING' as const, value: t.pre }] : []),
    { key: 'tokenizer.ggml.tokens', type: 'ARRAY', itemType: 'STRING', values: t.tokens },
    ...(t.scores ? [{ key: 'tokenizer.ggml.scores', type: 'ARRAY' as const, itemType: 'FLOAT32' as const, values: t.scores }] : []),
    { key: 'tokenizer.ggml.token_type', type: 'ARRAY', itemType: 'INT32', values: t.types },
    ...(t.merges ? [{ key: 'tokenizer.ggml.merges', type: 'ARRAY' as const, itemType: 'STRING' as const, values: t.merges }] : []),
  ];
  const id = (key: string, v: number | null) => (v !== null ? [{ key, type: 'UINT32' as const, value: v }] : []);
  kvs.push(
    ...id('tokenizer.ggml.bos_token_id', t.bosId),
    ...id('tokenizer.ggml.eos_token_id', t.eosId),
    ...id('tokenizer.ggml.unknown_token_id', t.unkId),
    ...id('tokenizer.ggml.padding_token_id', t.padId),
    { key: 'tokenizer.ggml.add_bos_token', type: 'BOOL', value: t.addBos },
    { key: 'tokenizer.ggml.add_eos_token', type: 'BOOL', value: t.addEos },
  );
  return kvs;
}
