/**
 * Speed of `lieq eval tasks --batch B`: requests/s and tokens/s of the zero-shot scorer at each
 * batch size on the shipped models over the first --limit documents of every task, and how far
 * each batch size's log-likelihoods are from batch 1's (max |Δ|, max relative Δ, changed
 * predictions), so the speed-up and the equality come from the same run.
 *
 *   npx tsx bench/eval-batch.ts [--models stories260K,tinystories-656K] [--bits f32,4]
 *       [--batches 1,4,8,16] [--limit 100] [--tasks piqa,...] [--repeat 3] [--threads N]
 *       [--out bench/results/eval-batch-DATE.json]
 *
 * Each (model, bits) first runs a warm-up (batch 1, 5 documents per task: JIT, scratch
 * buffers, tokenizer caches), then every batch size --repeat times in one process; the
 * seconds include tokenisation, as `lieq eval tasks` spends them. tokens/s counts the tokens
 * run through the model (after prefix reuse); `requestTokens` is what scoring each request
 * from scratch would run. Wall and CPU seconds are both kept (mean ± stddev and the fastest
 * run): on a busy machine the CPU seconds of a single-threaded run (--threads 1) are the
 * steadier comparison. A smoke run on a shared machine is not a measurement.
 */
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { summarize, type Summary } from '../lib/bench/stats.js';
import { RequestEncoder } from '../lib/eval/loglikelihood.js';
import { parseTaskList, TASK_NAMES, type TaskName } from '../lib/eval/tasks.js';
import { evaluateZeroShot, loadItems, type ZeroShotResult } from '../lib/eval/zero-shot.js';
import { loadTokenizer } from '../lib/io/tokenizer.js';
import type { PackedBits } from '../lib/kernels/packed-format.js';
import { native } from '../lib/native.js';
import { packModel, RuntimeModel } from '../lib/runtime/model.js';
import { writeJsonAtomic } from '../lib/util/atomic.js';
import { resolveModelArg } from '../lib/util/data-dir.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function arg(name: string, d: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : d;
}
function ints(name: string, d: string): number[] {
  const xs = arg(name, d).split(',').map(Number);
  if (xs.some((n) => !Number.isSafeInteger(n) || n < 1)) throw new Error(`--${name}: expected positive integers, got "${arg(name, d)}"`);
  return xs;
}

interface Row {
  model: string;
  bits: 'f32' | number;
  batch: number;
  docs: number;
  requests: number;
  /** Tokens of every request's context + continuation (scoring each from scratch). */
  requestTokens: number;
  /** Tokens run through the model, and batched forward passes, per run. */
  forwardTokens: number;
  passes: number;
  seconds: Summary;
  cpuSeconds: Summary;
  requestsPerSecond: number;
  tokensPerSecond: number;
  /** Batch 1's mean wall seconds / this mean; and the same for CPU seconds. */
  speedupVsBatch1: number;
  cpuSpeedupVsBatch1: number;
  /** Against batch 1 of the same model and bits. */
  maxAbsDiff: number;
  maxRelDiff: number;
  changedPredictions: number;
}

function compare(a: ZeroShotResult, b: ZeroShotResult): { maxAbsDiff: number; maxRelDiff: number; changedPredictions: number } {
  let maxAbsDiff = 0;
  let maxRelDiff = 0;
  let changedPredictions = 0;
  a.tasks.forEach((t, ti) =>
    t.samples!.forEach((d, di) => {
      const e = b.tasks[ti].samples![di];
      if (d.pred !== e.pred || d.predNorm !== e.predNorm) changedPredictions++;
      d.lls.forEach((ll, c) => {
        const diff = Math.abs(ll - e.lls[c]);
        maxAbsDiff = Math.max(maxAbsDiff, diff);
        maxRelDiff = Math.max(maxRelDiff, diff / Math.max(1, Math.abs(ll)));
      });
    }),
  );
  return { maxAbsDiff, maxRelDiff, changedPredictions };
}

async function main(): Promise<void> {
  const models = arg('models', 'stories260K,tinystories-656K').split(',').filter(Boolean);
  const bitsList = arg('bits', 'f32').split(',').map((b) => (b === 'f32' ? 'f32' : Number(b))) as ('f32' | number)[];
  const batches = ints('batches', '1,4,8,16');
  if (batches[0] !== 1) batches.unshift(1); // the reference for speed-up and equality
  const [limit] = ints('limit', '100');
  const [repeat] = ints('repeat', '3');
  if (process.argv.includes('--threads')) native().setThreads(ints('threads', '1')[0]);
  const tasks: TaskName[] = parseTaskList(arg('tasks', TASK_NAMES.join(',')));
  const date = new Date().toISOString().slice(0, 10);
  const out = resolve(arg('out', join(root, 'bench', 'results', `eval-batch-${date}.json`)));

  const items = loadItems(tasks, { limit });
  const warmItems = loadItems(tasks, { limit: 5 });
  const rows: Row[] = [];
  for (const name of models) {
    const dir = resolveModelArg(name);
    const tokenizer = await loadTokenizer(dir);
    const requestTokens = (() => {
      const enc = new RequestEncoder(tokenizer);
      let n = 0;
      for (const list of items.values()) for (const it of list) for (const r of it.requests) {
        const e = enc.encode(r);
        n += e.context.length + e.continuation.length;
      }
      return n;
    })();
    for (const bits of bitsList) {
      const model = RuntimeModel.open(dir);
      if (bits !== 'f32') packModel(model, { bits: bits as PackedBits, groupSize: 32 });
      await evaluateZeroShot(model, tokenizer, warmItems, { batch: 1 });
      let reference: ZeroShotResult | null = null;
      let base = NaN;
      let cpuBase = NaN;
      for (const batch of batches) {
        const secs: number[] = [];
        const cpu: number[] = [];
        let last: ZeroShotResult | null = null;
        for (let r = 0; r < repeat; r++) {
          const c0 = process.cpuUsage();
          last = await evaluateZeroShot(model, tokenizer, items, { batch, samples: true });
          const c = process.cpuUsage(c0);
          cpu.push((c.user + c.system) / 1e6);
          secs.push(last.seconds);
        }
        const res = last!;
        reference ??= res;
        const seconds = summarize(secs);
        const cpuSeconds = summarize(cpu);
        if (batch === 1) [base, cpuBase] = [seconds.mean, cpuSeconds.mean];
        const requests = res.tasks.reduce((s, t) => s + t.requests, 0);
        const forwardTokens = res.tasks.reduce((s, t) => s + t.forwardTokens, 0);
        const row: Row = {
          model: name,
          bits,
          batch,
          docs: res.tasks.reduce((s, t) => s + t.docs, 0),
          requests,
          requestTokens,
          forwardTokens,
          passes: res.tasks.reduce((s, t) => s + t.passes, 0),
          seconds,
          cpuSeconds,
          requestsPerSecond: requests / seconds.mean,
          tokensPerSecond: forwardTokens / seconds.mean,
          speedupVsBatch1: base / seconds.mean,
          cpuSpeedupVsBatch1: cpuBase / cpuSeconds.mean,
          ...compare(reference, res),
        };
        rows.push(row);
        console.log(
          `${name} ${bits === 'f32' ? 'f32' : `${bits}-bit`} batch ${String(batch).padStart(2)}: ` +
            `${seconds.mean.toFixed(2)} ± ${seconds.stddev.toFixed(2)} s, ${row.requestsPerSecond.toFixed(0)} requests/s, ` +
            `${row.tokensPerSecond.toFixed(0)} tokens/s, ${row.passes} passes, ×${row.speedupVsBatch1.toFixed(2)} (CPU ${cpuSeconds.mean.toFixed(2)} s, ×${row.cpuSpeedupVsBatch1.toFixed(2)}); ` +
            `vs batch 1: max |Δll| ${row.maxAbsDiff.toExponential(1)} (rel ${row.maxRelDiff.toExponential(1)}), ${row.changedPredictions} predictions changed`,
        );
      }
      model.close();
    }
  }
  const report = {
    date,
    machine: { cpu: cpus()[0]?.model?.trim() ?? 'unknown', cores: cpus().length, node: process.version },
    threads: native().getThreads(),
    settings: { tasks, limit, repeat, batches, bits: bitsList, groupSize: 32 },
    command: `npx tsx bench/eval-batch.ts ${process.argv.slice(2).join(' ')}`.trim(),
    rows,
  };
  writeJsonAtomic(out, report);
  console.log(
    `\n| model | bits | batch | requests/s | tokens/s | wall s | speed-up | CPU s | CPU speed-up | passes | max abs Δll (rel) | changed predictions |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|`,
  );
  for (const r of rows)
    console.log(
      `| ${r.model} | ${r.bits} | ${r.batch} | ${r.requestsPerSecond.toFixed(0)} | ${r.tokensPerSecond.toFixed(0)} | ${r.seconds.mean.toFixed(2)} ± ${r.seconds.stddev.toFixed(2)} | ×${r.speedupVsBatch1.toFixed(2)} | ` +
        `${r.cpuSeconds.mean.toFixed(2)} ± ${r.cpuSeconds.stddev.toFixed(2)} | ×${r.cpuSpeedupVsBatch1.toFixed(2)} | ${r.passes} | ${r.maxAbsDiff.toExponential(1)} (${r.maxRelDiff.toExponential(1)}) | ${r.changedPredictions} |`,
    );
  console.log(`\nwrote ${out}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
