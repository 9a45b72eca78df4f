/**
 * Autoregressive generation with the KV cache: one prefill of the prompt, then one token per
 * forward. Greedy (temperature 0) is deterministic; sampling is seeded (see sampling.ts).
 * Generation stops at an EOS id, after maxTokens, or when the context is full
 * (max_position_embeddings, or the explicit `contextLength`).
 */
import { UsageError } from '../util/errors.js';
import { forward, type ForwardOptions } from './forward.js';
import { KvCache } from './kv-cache.js';
import type { RuntimeModel } from './model.js';
import { checkSamplingOptions, Rng, sampleToken } from './sampling.js';

export interface GenerateOptions {
  maxTokens: number;
  /** 0 (default) = greedy. */
  temperature?: number;
  /** Nucleus sampling threshold in (0, 1]; default 1. */
  topP?: number;
  /** PRNG seed for sampling; default 0. */
  seed?: number;
  /** Ids that end generation (not yielded); default: the config's eos_token_id(s). */
  stopIds?: readonly number[];
  /** Positions the KV cache holds; default max_position_embeddings. */
  contextLength?: number;
  skipLayers?: ForwardOptions['skipLayers'];
  replaceLayers?: ForwardOptions['replaceLayers'];
}

export type StopReason = 'eos' | 'max-tokens' | 'context';

export interface GenerateStats {
  promptTokens: number;
  generatedTokens: number;
  stoppedBy: StopReason;
  prefillSeconds: number;
  /** Time of the single-token forwards (decodeSteps of them). */
  decodeSeconds: number;
  decodeSteps: number;
}

/** Yields generated token ids one by one; returns the stats when done. */
export function* generateTokens(model: RuntimeModel, prompt: Int32Array, opts: GenerateOptions): Generator<number, GenerateStats> {
  const sampling = { temperature: opts.temperature ?? 0, topP: opts.topP ?? 1 };
  checkSamplingOptions(sampling);
  if (!Number.isSafeInteger(opts.maxTokens) || opts.maxTokens < 0) throw new UsageError(`maxTokens: expected an integer >= 0, got ${opts.maxTokens}`);
  if (prompt.length === 0) throw new UsageError('prompt: expected at least one token (e.g. BOS)');
  const contextLength = opts.contextLength ?? model.config.maxPositionEmbeddings;
  if (!Number.isSafeInteger(contextLength) || contextLength < 1) throw new UsageError(`contextLength: expected a positive integer, got ${contextLength}`);
  if (prompt.length > contextLength)
    throw new UsageError(`prompt: ${prompt.length} tokens exceed the context length ${contextLength}`);
  const stop = new Set(opts.stopIds ?? model.config.eosTokenIds);
  const rng = new Rng(opts.seed ?? 0);
  const fwd = { skipLayers: opts.skipLayers, replaceLayers: opts.replaceLayers };
  const cache = new KvCache(model.config, Math.min(contextLength, prompt.length + opts.maxTokens));

  const t0 = performance.now();
  let logits = forward(model, prompt, { ...fwd, cache, logits: 'last' }).logits!;
  const prefillSeconds = (performance.now() - t0) / 1000;
  let decodeMs = 0;
  let steps = 0;
  let generated = 0;
  let stoppedBy: StopReason = 'max-tokens';
  while (generated < opts.maxTokens) {
    const next = sampleToken(logits, sampling, rng);
    if (stop.has(next)) {
      stoppedBy = 'eos';
      break;
    }
    generated++;
    yield next;
    if (generated === opts.maxTokens) break;
    if (cache.free === 0) {
      stoppedBy = 'context';
      break;
    }
    const t = performance.now();
    logits = forward(model, Int32Array.of(next), { ...fwd, cache, logits: 'last' }).logits!;
    decodeMs += performance.now() - t;
    steps++;
  }
  return { promptTokens: prompt.length, generatedTokens: generated, stoppedBy, prefillSeconds, decodeSeconds: decodeMs / 1000, decodeSteps: steps };
}

/** All generated ids at once, with the stats. */
export function generate(model: RuntimeModel, prompt: Int32Array, opts: GenerateOptions): { ids: number[]; stats: GenerateStats } {
  const ids: number[] = [];
  const it = generateTokens(model, prompt, opts);
  for (;;) {
    const r = it.next();
    if (r.done) return { ids, stats: r.value };
    ids.push(r.value);
  }
}
