/**
 * Perplexity over a token stream.
 *
 * Default protocol (GPTQ/AWQ papers; ../shared/data README §6): the whole text is tokenized
 * once with BOS prepended once, cut into consecutive non-overlapping windows of `ctx` tokens
 * (a trailing partial window is dropped), each window runs independently (positions from 0,
 * no BOS re-inserted) and its ctx-1 next-token predictions are scored. PPL = exp(mean NLL).
 *
 * Sliding windows (stride < ctx), as in the Hugging Face "perplexity of fixed-length models"
 * guide: windows start every `stride` tokens, each scores only the targets the previous window
 * did not, so every target after the first window sees at least ctx - stride tokens of
 * context; the last window may be shorter and ends at the last token.
 */
import { readFileSync } from 'node:fs';

import { dataPath } from '../util/data-dir.js';
import { FileError, UsageError } from '../util/errors.js';
import { forward, type ForwardOptions } from './forward.js';
import { KvCache } from './kv-cache.js';
import { applyLinear } from './linear.js';
import type { RuntimeModel } from './model.js';
import { logSoftmaxNll, rmsNorm } from './ops.js';

/** One forward window: input ids[start, end-1), targets ids[scoreFrom, end) (scoreFrom > start). */
export interface EvalWindow {
  start: number;
  end: number;
  scoreFrom: number;
}

/** Windows over n tokens; stride undefined or = ctx gives the non-overlapping protocol. */
export function planWindows(nTokens: number, ctx: number, stride?: number): EvalWindow[] {
  if (!Number.isSafeInteger(ctx) || ctx < 2) throw new UsageError(`ctx: expected an integer >= 2, got ${ctx}`);
  if (stride !== undefined && (!Number.isSafeInteger(stride) || stride < 1 || stride > ctx))
    throw new UsageError(`stride: expected an integer in [1, ctx = ${ctx}], got ${stride}`);
  const out: EvalWindow[] = [];
  if (stride === undefined || stride === ctx) {
    for (let s = 0; s + ctx <= nTokens; s += ctx) out.push({ start: s, end: s + ctx, scoreFrom: s + 1 });
    return out;
  }
  let prevEnd = 0;
  for (let s = 0; s < nTokens - 1; s += stride) {
    const end = Math.min(s + ctx, nTokens);
    const scoreFrom = Math.max(prevEnd, s + 1);
    if (scoreFrom < end) out.push({ start: s, end, scoreFrom });
    prevEnd = end;
    if (end === nTokens) break;
  }
  return out;
}

export interface PerplexityOptions {
  ctx: number;
  /** Sliding-window stride (< ctx); default: non-overlapping windows. */
  stride?: number;
  /** Evaluate only the first `limit` windows. */
  limit?: number;
  /** Called after each window. */
  onProgress?(windowsDone: number, windowsTotal: number): void;
  /** Skip or replace layers during evaluation (see ForwardOptions). */
  skipLayers?: ForwardOptions['skipLayers'];
  replaceLayers?: ForwardOptions['replaceLayers'];
}

export interface PerplexityResult {
  perplexity: number;
  /** Mean NLL in nats per scored token. */
  meanNll: number;
  /** Targets scored. */
  scoredTokens: number;
  /** Tokens run through the model (window inputs). */
  forwardTokens: number;
  windows: number;
  ctx: number;
  stride: number;
  seconds: number;
  /** forwardTokens / seconds. */
  tokensPerSecond: number;
}

/** Sum of NLL (nats) of targets ids[scoreFrom, end) given the window's forward pass. */
export function windowNll(model: RuntimeModel, ids: Int32Array, w: EvalWindow, cache: KvCache, fwd: Pick<ForwardOptions, 'skipLayers' | 'replaceLayers'> = {}): number {
  const c = model.config;
  const input = ids.subarray(w.start, w.end - 1);
  cache.reset();
  const { hidden } = forward(model, input, { ...fwd, cache, logits: 'none' });
  // Rows that predict scored targets: row r predicts ids[start + r + 1].
  const firstRow = w.scoreFrom - 1 - w.start;
  const rows = w.end - w.scoreFrom;
  // LM head in row blocks so a large vocabulary never needs [ctx, vocab] logits at once.
  const block = Math.max(1, Math.min(rows, Math.floor((1 << 22) / c.vocabSize)));
  const normed = new Float32Array(block * c.hiddenSize);
  const logits = new Float32Array(block * c.vocabSize);
  const nll = new Float64Array(block);
  let sum = 0;
  for (let r0 = 0; r0 < rows; r0 += block) {
    const n = Math.min(block, rows - r0);
    const h0 = (firstRow + r0) * c.hiddenSize;
    rmsNorm(hidden.subarray(h0, h0 + n * c.hiddenSize), model.finalNorm, normed, n, c.hiddenSize, c.rmsNormEps);
    applyLinear(model.lmHead, normed, n, logits);
    const targets = ids.subarray(w.scoreFrom + r0, w.scoreFrom + r0 + n);
    logSoftmaxNll(logits, n, c.vocabSize, targets, nll);
    for (let i = 0; i < n; i++) sum += nll[i];
  }
  return sum;
}

/** Perplexity of `ids` (BOS already prepended by the caller). Yields to the event loop between windows. */
export async function perplexity(model: RuntimeModel, ids: Int32Array, opts: PerplexityOptions): Promise<PerplexityResult> {
  let windows = planWindows(ids.length, opts.ctx, opts.stride);
  if (opts.limit !== undefined) {
    if (!Number.isSafeInteger(opts.limit) || opts.limit < 1) throw new UsageError(`limit: expected a positive integer, got ${opts.limit}`);
    windows = windows.slice(0, opts.limit);
  }
  if (windows.length === 0)
    throw new UsageError(`the text has ${ids.length} tokens, fewer than one window of ctx = ${opts.ctx}`);
  for (let i = 0; i < ids.length; i++)
    if (ids[i] < 0 || ids[i] >= model.config.vocabSize) throw new UsageError(`ids[${i}] = ${ids[i]} is outside the vocabulary [0, ${model.config.vocabSize})`);
  const cache = new KvCache(model.config, opts.ctx);
  const t0 = performance.now();
  let nll = 0;
  let scored = 0;
  let forwarded = 0;
  for (let i = 0; i < windows.length; i++) {
    const w = windows[i];
    nll += windowNll(model, ids, w, cache, { skipLayers: opts.skipLayers, replaceLayers: opts.replaceLayers });
    scored += w.end - w.scoreFrom;
    forwarded += w.end - 1 - w.start;
    opts.onProgress?.(i + 1, windows.length);
    await new Promise((r) => setImmediate(r));
  }
  const seconds = (performance.now() - t0) / 1000;
  const meanNll = nll / scored;
  return {
    perplexity: Math.exp(meanNll),
    meanNll,
    scoredTokens: scored,
    forwardTokens: forwarded,
    windows: windows.length,
    ctx: opts.ctx,
    stride: opts.stride ?? opts.ctx,
    seconds,
    tokensPerSecond: forwarded / seconds,
  };
}

/** Named evaluation texts in the shared data folder. */
export const EVAL_DATASETS = {
  /** TinyStories validation prefix (794 KB), the shipped models' reference text. */
  tinystories: 'text/tinystories/tinystories_valid_head.txt',
  /** WikiText-2 raw test, rows joined GPTQ-style: "\n\n".join(rows) (README §4). */
  wikitext2: 'text/wikitext-2/wiki.test.raw',
  /** WikiText-2 raw test file as one string (the README's stories260K reference number). */
  'wikitext2-raw': 'text/wikitext-2/wiki.test.raw',
} as const;

export type EvalDatasetName = keyof typeof EVAL_DATASETS;

/** Text of a named dataset or of a UTF-8 file path. */
export function loadEvalText(dataset: string): { name: string; path: string; text: string } {
  const named = (EVAL_DATASETS as Record<string, string>)[dataset];
  const path = named ? dataPath(named) : dataset;
  let raw: string;
  try {
    raw = readFileSync(path, 'utf8');
  } catch (err) {
    const hint = named ? ' (is the shared data folder present? set LIEQ_DATA_DIR)' : ` (not a file; named datasets: ${Object.keys(EVAL_DATASETS).join(', ')})`;
    throw new FileError(path, `cannot read the evaluation text${hint}`, { cause: err });
  }
  if (dataset === 'wikitext2') raw = gptqJoin(raw);
  return { name: named ? dataset : path, path, text: raw };
}

/** HF wikitext-2-raw-v1 rows rebuilt from wiki.test.raw and joined with "\n\n" (GPTQ's eval text). */
export function gptqJoin(raw: string): string {
  const lines = raw.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map((l) => (l !== ' ' ? l + '\n' : '')).join('\n\n');
}
