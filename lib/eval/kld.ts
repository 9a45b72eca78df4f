/**
 * KL divergence of a quantized model's next-token distributions from the full-precision ones,
 * as llama.cpp's `perplexity --kl-divergence` reports it: over every scored position of the
 * perplexity windows (runtime/perplexity.ts planWindows, same text and BOS protocol),
 *   KL(P‖Q) = Σ_v P(v) (log P(v) − log Q(v)),  P = softmax(full-precision logits), Q = quantized,
 * in nats, computed in float64; its mean (± standard error), median, 99th and 99.9th
 * percentiles (linear interpolation between order statistics, numpy's default), the maximum,
 * and top-1 agreement (argmax P == argmax Q, first index on ties).
 */
import { forward } from '../runtime/forward.js';
import { KvCache } from '../runtime/kv-cache.js';
import type { RuntimeModel } from '../runtime/model.js';
import { planWindows } from '../runtime/perplexity.js';
import { UsageError } from '../util/errors.js';
import { meanStderr } from './zero-shot.js';

export interface KldOptions {
  ctx: number;
  /** Evaluate the first `limit` windows only. */
  limit?: number;
  onProgress?(windowsDone: number, windowsTotal: number): void;
}

export interface KldResult {
  /** Positions compared (= scored tokens of the perplexity protocol). */
  tokens: number;
  windows: number;
  ctx: number;
  meanKld: number;
  stderrKld: number;
  medianKld: number;
  p99Kld: number;
  p999Kld: number;
  maxKld: number;
  /** Fraction of positions where both models' most likely next token is the same. */
  top1Agreement: number;
  /** Mean NLL (nats/token) of the targets under each model: a perplexity cross-check. */
  meanNllBase: number;
  meanNllQuantized: number;
  seconds: number;
}

/** log-softmax of one row into `out` (float64). */
function logSoftmaxRow(logits: Float32Array, off: number, vocab: number, out: Float64Array): void {
  let mx = -Infinity;
  for (let v = 0; v < vocab; v++) if (logits[off + v] > mx) mx = logits[off + v];
  let s = 0;
  for (let v = 0; v < vocab; v++) s += Math.exp(logits[off + v] - mx);
  const lse = mx + Math.log(s);
  for (let v = 0; v < vocab; v++) out[v] = logits[off + v] - lse;
}

function argmaxRow(logits: Float32Array, off: number, vocab: number): number {
  let best = 0;
  for (let v = 1; v < vocab; v++) if (logits[off + v] > logits[off + best]) best = v;
  return best;
}

/** KL(P‖Q) of one position from log-probabilities. */
export function klDivergence(logP: Float64Array, logQ: Float64Array): number {
  let kl = 0;
  for (let v = 0; v < logP.length; v++) kl += Math.exp(logP[v]) * (logP[v] - logQ[v]);
  return Math.max(0, kl);
}

/** Percentile q in [0, 1] of sorted values, linear interpolation (numpy.percentile default). */
export function percentile(sorted: Float64Array, q: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const pos = q * (n - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(n - 1, lo + 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** Compare `quantized` against `base` on the token stream `ids` (BOS already prepended). */
export async function kldCompare(base: RuntimeModel, quantized: RuntimeModel, ids: Int32Array, opts: KldOptions): Promise<KldResult> {
  const V = base.config.vocabSize;
  if (quantized.config.vocabSize !== V) throw new UsageError(`the models' vocabularies differ (${V} vs ${quantized.config.vocabSize})`);
  let windows = planWindows(ids.length, opts.ctx);
  if (opts.limit !== undefined) {
    if (!Number.isSafeInteger(opts.limit) || opts.limit < 1) throw new UsageError(`limit: expected a positive integer, got ${opts.limit}`);
    windows = windows.slice(0, opts.limit);
  }
  if (windows.length === 0) throw new UsageError(`the text has ${ids.length} tokens, fewer than one window of ctx = ${opts.ctx}`);
  const t0 = performance.now();
  const perWindow = opts.ctx - 1;
  const kls = new Float64Array(windows.length * perWindow);
  const cacheB = new KvCache(base.config, opts.ctx);
  const cacheQ = new KvCache(quantized.config, opts.ctx);
  const lp = new Float64Array(V);
  const lq = new Float64Array(V);
  let n = 0;
  let agree = 0;
  let nllB = 0;
  let nllQ = 0;
  for (let w = 0; w < windows.length; w++) {
    const { start, end } = windows[w];
    const input = ids.subarray(start, end - 1);
    cacheB.reset();
    cacheQ.reset();
    const lb = forward(base, input, { cache: cacheB, logits: 'all' }).logits!;
    const lqAll = forward(quantized, input, { cache: cacheQ, logits: 'all' }).logits!;
    for (let r = 0; r < input.length; r++) {
      const off = r * V;
      logSoftmaxRow(lb, off, V, lp);
      logSoftmaxRow(lqAll, off, V, lq);
      kls[n++] = klDivergence(lp, lq);
      if (argmaxRow(lb, off, V) === argmaxRow(lqAll, off, V)) agree++;
      const target = ids[start + r + 1];
      nllB -= lp[target];
      nllQ -= lq[target];
    }
    opts.onProgress?.(w + 1, windows.length);
    await new Promise((r) => setImmediate(r));
  }
  const { value: mean, stderr } = meanStderr(kls);
  const sorted = kls.slice().sort();
  return {
    tokens: n,
    windows: windows.length,
    ctx: opts.ctx,
    meanKld: mean,
    stderrKld: stderr,
    medianKld: percentile(sorted, 0.5),
    p99Kld: percentile(sorted, 0.99),
    p999Kld: percentile(sorted, 0.999),
    maxKld: sorted[n - 1],
    top1Agreement: agree / n,
    meanNllBase: nllB / n,
    meanNllQuantized: nllQ / n,
    seconds: (performance.now() - t0) / 1000,
  };
}
