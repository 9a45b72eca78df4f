/**
 * Property-based fuzzing of lieq's file readers (test/fuzz/targets.ts): each target gets N
 * mutated inputs (default 100,000). Every failure (an exception that is not a LieqError, an
 * input slower than 2 s, an oversized allocation) is written to test/fuzz/corpus/<target>/ as a
 * regression input that test/fuzz/readers.test.ts replays. A watchdog thread saves the
 * current input and exits if one input hangs for HANG_S seconds. A summary JSON goes to
 * bench/results/fuzz-readers.json.
 *
 *   npx tsx scripts/fuzz.ts [--runs 100000] [--targets safetensors,plan] [--seed 1]
 *   (env LIEQ_FUZZ_RUNS overrides the default run count)
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';

import fc from 'fast-check';

import { runInput, saveCorpusEntry } from '../test/fuzz/harness.js';
import { applyPlan, planArb } from '../test/fuzz/mutate.js';
import { optionalTargets, TARGETS } from '../test/fuzz/targets.js';

const HANG_S = 30;
const BATCH = 1000;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const root = resolve(import.meta.dirname, '..');
const corpusRoot = join(root, 'test', 'fuzz', 'corpus');
const runs = Number(arg('runs') ?? process.env.LIEQ_FUZZ_RUNS ?? 100_000);
const seed = Number(arg('seed') ?? 1);
const only = arg('targets')?.split(',');
if (!Number.isSafeInteger(runs) || runs < 1) throw new Error(`--runs: expected a positive integer, got ${runs}`);

// Watchdog: the main thread bumps a counter per input; a stalled counter means a hang.
const beat = new Int32Array(new SharedArrayBuffer(4));
const watchdogCode = `
const { workerData } = require('node:worker_threads');
const fs = require('node:fs'); const path = require('node:path'); const crypto = require('node:crypto');
const beat = new Int32Array(workerData.sab);
let last = -1, since = Date.now();
setInterval(() => {
  const now = Atomics.load(beat, 0);
  if (now !== last) { last = now; since = Date.now(); return; }
  if (Date.now() - since < workerData.hangMs) return;
  const t = fs.readFileSync(workerData.stateFile, 'utf8').split('\\n');
  const files = {};
  for (const n of fs.readdirSync(t[1])) files[n] = fs.readFileSync(path.join(t[1], n)).toString('base64');
  const text = JSON.stringify({ target: t[0], note: 'hang: no result after ' + workerData.hangMs / 1000 + ' s', files }, null, 1);
  const dir = path.join(workerData.corpusRoot, t[0]); fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, crypto.createHash('sha1').update(text).digest('hex').slice(0, 16) + '.json');
  fs.writeFileSync(file, text);
  process.stderr.write('\\nHANG in target ' + t[0] + ': input saved to ' + file + '\\n');
  // process.exit() here would end only this thread; the stuck main thread needs a signal.
  process.kill(process.pid, 'SIGKILL');
}, 1000);
`;
// Thousands of small files per second: a RAM file system when there is one.
const scratch = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'lieq-fuzz-'));
const stateFile = join(scratch, 'current');
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.on(sig, () => {
    rmSync(scratch, { recursive: true, force: true });
    process.exit(130);
  });
const watchdog = new Worker(watchdogCode, { eval: true, workerData: { sab: beat.buffer, hangMs: HANG_S * 1000, stateFile, corpusRoot } });
watchdog.unref();

interface TargetSummary {
  target: string;
  inputs: number;
  accepted: number;
  rejected: Record<string, number>;
  failures: { reason: string; file: string }[];
  seconds: number;
  slowestMs: number;
}

const summaries: TargetSummary[] = [];
const targets = [...TARGETS, ...(await optionalTargets())].filter((t) => !only || only.includes(t.name));
try {
  for (const target of targets) {
    const build = join(scratch, `${target.name}-seed`);
    mkdirSync(build, { recursive: true });
    const seedFiles = await target.seed(build);
    const dir = join(scratch, target.name);
    writeFileSync(stateFile, `${target.name}\n${dir}`);
    const s: TargetSummary = { target: target.name, inputs: 0, accepted: 0, rejected: {}, failures: [], seconds: 0, slowestMs: 0 };
    const seen = new Set<string>();
    const t0 = performance.now();
    for (let start = 0; start < runs; start += BATCH) {
      const plans = fc.sample(planArb, { numRuns: Math.min(BATCH, runs - start), seed: seed * 1_000_003 + start });
      for (const plan of plans) {
        const files = applyPlan(seedFiles, plan, target.json);
        Atomics.add(beat, 0, 1);
        const o = await runInput(target, dir, files);
        s.inputs++;
        s.slowestMs = Math.max(s.slowestMs, o.ms);
        if (o.kind === 'accepted') s.accepted++;
        else if (o.kind === 'rejected') s.rejected[o.code] = (s.rejected[o.code] ?? 0) + 1;
        else {
          const key = o.reason.split('\n').slice(0, 2).join('\n').replace(/\d+/g, 'N');
          if (seen.has(key) || s.failures.length >= 20) continue;
          seen.add(key);
          const file = saveCorpusEntry(corpusRoot, target.name, files, o.reason);
          s.failures.push({ reason: o.reason.split('\n')[0], file });
          process.stderr.write(`\n${target.name}: FAILURE ${o.reason}\n  saved ${file}\n`);
        }
      }
      process.stderr.write(`\r${target.name}: ${s.inputs}/${runs} inputs, ${s.failures.length} failures`);
    }
    s.seconds = (performance.now() - t0) / 1000;
    process.stderr.write(`\r${target.name}: ${s.inputs} inputs in ${s.seconds.toFixed(1)} s, ${s.accepted} accepted, ${s.failures.length} failures${' '.repeat(10)}\n`);
    summaries.push(s);
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
  await watchdog.terminate();
}

const out = join(root, 'bench', 'results', 'fuzz-readers.json');
mkdirSync(join(root, 'bench', 'results'), { recursive: true });
writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), node: process.version, runsPerTarget: runs, seed, targets: summaries }, null, 2) + '\n');
console.log('\ntarget            inputs   accepted  rejected  failures  seconds  slowest ms');
for (const s of summaries) {
  const rej = Object.values(s.rejected).reduce((a, b) => a + b, 0);
  console.log(`${s.target.padEnd(16)} ${String(s.inputs).padStart(7)} ${String(s.accepted).padStart(10)} ${String(rej).padStart(9)} ${String(s.failures.length).padStart(9)} ${s.seconds.toFixed(1).padStart(8)} ${s.slowestMs.toFixed(0).padStart(11)}`);
}
console.log(`summary: ${out}`);
process.exit(summaries.some((s) => s.failures.length > 0) ? 1 : 0);
