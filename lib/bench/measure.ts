/**
 * The timing loop of `lieq bench`, device-independent (any BenchBackend). Per batch size B:
 * one warm-up (a full prefill and a few decode steps, not counted), then R repeats of
 *   reset → prefill B prompts of P tokens (pp) → G decode steps of B tokens each (tg),
 * so decoding runs at context P..P+G like a real generation (llama-bench's tg starts from an
 * empty context instead). Token ids are seeded random: speed does not depend on them.
 */
import { Rng } from '../runtime/sampling.js';
import type { BenchBackend, BenchMemory } from './backend.js';
import { summarize, type Summary } from './stats.js';

export interface MeasureSettings {
  batches: number[];
  /** Prompt tokens per sequence (0: no prefill, decoding starts from an empty context). */
  prompt: number;
  /** Decode steps (0: no decode measurement). */
  gen: number;
  repeat: number;
  seed: number;
  vocabSize: number;
}

export interface BatchResult {
  batch: number;
  prompt: number;
  gen: number;
  repeats: number;
  /** Prompt processing: tokens/s = B·P / seconds; msPerToken = 1000 / tokens/s. */
  prefill: { tokensPerSecond: Summary; msPerToken: number } | null;
  /**
   * Generation: tokens/s = B·G / seconds; msPerStep = one step (one token for each of the B
   * sequences); weight bytes read per generated token = weightBytesPerStep / B; effective
   * GB/s = weightBytesPerStep × steps / seconds.
   */
  decode: { tokensPerSecond: Summary; msPerStep: Summary; weightBytesPerToken: number; effectiveGBs: Summary } | null;
  /** Largest memory seen after a repeat. */
  memory: BenchMemory;
}

export const WARMUP_DECODE_STEPS = 4;

function randomIds(rng: Rng, n: number, vocab: number): Int32Array {
  const ids = new Int32Array(n);
  for (let i = 0; i < n; i++) ids[i] = Math.floor(rng.next() * vocab);
  return ids;
}

function maxMemory(a: BenchMemory, b: BenchMemory): BenchMemory {
  const m: BenchMemory = { hostRssBytes: Math.max(a.hostRssBytes, b.hostRssBytes) };
  if (a.deviceBytes !== undefined || b.deviceBytes !== undefined) m.deviceBytes = Math.max(a.deviceBytes ?? 0, b.deviceBytes ?? 0);
  return m;
}

/** One run: prefill then decode; returns the seconds of each part. */
async function runOnce(be: BenchBackend, s: MeasureSettings, batch: number, gen: number, rng: Rng): Promise<{ prefill: number; decode: number }> {
  be.reset();
  const prompt = randomIds(rng, batch * s.prompt, s.vocabSize);
  const steps = Array.from({ length: gen }, () => randomIds(rng, batch, s.vocabSize));
  const t0 = performance.now();
  if (s.prompt > 0) await be.prefill(prompt, batch, s.prompt);
  const t1 = performance.now();
  for (const ids of steps) await be.decode(ids, batch);
  const t2 = performance.now();
  return { prefill: (t1 - t0) / 1000, decode: (t2 - t1) / 1000 };
}

export async function measureBackend(be: BenchBackend, s: MeasureSettings, onRepeat?: (batch: number, done: number, total: number) => void): Promise<BatchResult[]> {
  const results: BatchResult[] = [];
  const rng = new Rng(s.seed);
  for (const batch of s.batches) {
    await runOnce(be, s, batch, Math.min(s.gen, WARMUP_DECODE_STEPS), rng); // warm-up, not counted
    let memory = be.memory();
    const pp: number[] = [];
    const tg: number[] = [];
    const stepMs: number[] = [];
    const gbs: number[] = [];
    for (let r = 0; r < s.repeat; r++) {
      const t = await runOnce(be, s, batch, s.gen, rng);
      if (s.prompt > 0) pp.push((batch * s.prompt) / t.prefill);
      if (s.gen > 0) {
        tg.push((batch * s.gen) / t.decode);
        stepMs.push((1000 * t.decode) / s.gen);
        gbs.push((be.weightBytesPerStep * s.gen) / t.decode / 1e9);
      }
      memory = maxMemory(memory, be.memory());
      onRepeat?.(batch, r + 1, s.repeat);
    }
    const ppSummary = pp.length ? summarize(pp) : null;
    results.push({
      batch,
      prompt: s.prompt,
      gen: s.gen,
      repeats: s.repeat,
      prefill: ppSummary ? { tokensPerSecond: ppSummary, msPerToken: 1000 / ppSummary.mean } : null,
      decode: tg.length
        ? { tokensPerSecond: summarize(tg), msPerStep: summarize(stepMs), weightBytesPerToken: be.weightBytesPerStep / batch, effectiveGBs: summarize(gbs) }
        : null,
      memory,
    });
  }
  be.reset();
  return results;
}
