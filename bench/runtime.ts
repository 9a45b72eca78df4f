/**
 * Runtime benchmark: prefill and decode tokens/s, weight bytes and peak RSS of the shipped
 * models at full precision and with every packable decoder linear packed (round-to-nearest)
 * at 8/4/3/2 bits, plus the perplexity of the first windows of the TinyStories text as a
 * quality check. Optionally a synthetic model of a real shape (random weights, few layers).
 *
 *   npm run bench:runtime -- [--models stories260K,tinystories-656K] [--bits f32,8,4,3,2]
 *       [--group 128] [--prefill 256] [--decode 128] [--reps 5] [--ppl-windows 8]
 *       [--synthetic llama-3.2-1b --layers 2] [--out bench/results/runtime.json]
 *
 * Each (model, bits) runs in its own child process so peak RSS is that configuration's alone.
 * Prints a table and writes JSON (machine, commit, threads, reps, mean ± stdev per row).
 * A smoke run on a shared machine is not a measurement: re-run on a quiet one.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { ModelConfig } from '../lib/io/config.js';
import type { PackedBits } from '../lib/kernels/packed-format.js';

const here = dirname(fileURLToPath(import.meta.url));

/** The package root: the first ancestor with lieq's package.json (works from bench/ and bench/tmp/bench/). */
function packageRoot(): string {
  let d = here;
  for (;;) {
    const p = join(d, 'package.json');
    if (existsSync(p) && JSON.parse(readFileSync(p, 'utf8')).name === 'lieq') return d;
    const up = dirname(d);
    if (up === d) throw new Error('bench/runtime: cannot find the lieq package root');
    d = up;
  }
}

const root = packageRoot();
// The library is compiled next to this file (bench/tmp/lib): point it at the real addon and data.
process.env.LIEQ_DATA_DIR ??= resolve(root, '..', 'shared', 'data');
if (!process.env.LIEQ_ADDON) {
  const ngb = createRequire(import.meta.url)('node-gyp-build') as { resolve(dir: string): string };
  process.env.LIEQ_ADDON = ngb.resolve(root);
}

interface Args {
  models: string[];
  bits: ('f32' | PackedBits)[];
  group: number | 'channel';
  prefill: number;
  decode: number;
  reps: number;
  pplWindows: number;
  synthetic: string | null;
  layers: number;
  out: string;
}

function parseArgs(argv: string[]): Args {
  const get = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const int = (name: string, d: number) => {
    const v = get(name);
    const n = v === undefined ? d : Number(v);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${name}: expected an integer >= 0, got ${v}`);
    return n;
  };
  const bits = (get('bits') ?? 'f32,8,4,3,2').split(',').map((b) => (b === 'f32' ? 'f32' : (Number(b) as PackedBits)));
  for (const b of bits) if (b !== 'f32' && ![2, 3, 4, 8].includes(b)) throw new Error(`--bits: ${b} is not f32, 2, 3, 4 or 8`);
  const g = get('group') ?? '128';
  return {
    models: (get('models') ?? 'stories260K,tinystories-656K').split(',').filter(Boolean),
    bits,
    group: g === 'channel' ? 'channel' : Number(g),
    prefill: int('prefill', 256),
    decode: int('decode', 128),
    reps: Math.max(1, int('reps', 5)),
    pplWindows: int('ppl-windows', 8),
    synthetic: get('synthetic') ?? null,
    layers: int('layers', 2),
    out: get('out') ?? join(root, 'bench', 'results', 'runtime.json'),
  };
}

interface Job {
  model: string;
  synthetic: boolean;
  layers: number;
  bits: 'f32' | PackedBits;
  group: number | 'channel';
  prefill: number;
  decode: number;
  reps: number;
  pplWindows: number;
}

interface Stat {
  mean: number;
  stdev: number;
  min: number;
  max: number;
}

interface Row {
  model: string;
  bits: 'f32' | PackedBits;
  groupSize: number | 'channel' | null;
  packedLinears: number;
  keptFullPrecision: number;
  weightBytes: number;
  prefillTokens: number;
  prefillTokensPerSecond: Stat;
  decodeTokens: number;
  decodeTokensPerSecond: Stat;
  perplexity: { windows: number; ctx: number; value: number } | null;
  loadSeconds: number;
  peakRssBytes: number;
}

function stat(xs: number[]): Stat {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const stdev = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, stdev, min: Math.min(...xs), max: Math.max(...xs) };
}

/** One configuration, in this (child) process. */
async function runJob(job: Job): Promise<Row> {
  const { RuntimeModel, tensorSource, packModel } = await import('../lib/runtime/model.js');
  const { forward } = await import('../lib/runtime/forward.js');
  const { generate } = await import('../lib/runtime/generate.js');
  const { perplexity, loadEvalText } = await import('../lib/runtime/perplexity.js');
  const { Rng } = await import('../lib/runtime/sampling.js');
  const { resolveModelArg } = await import('../lib/util/data-dir.js');

  const t0 = performance.now();
  let model;
  let cfg: ModelConfig;
  if (job.synthetic) {
    const { shapeConfig, randomReader } = await import('../lib/io/random-model.js');
    cfg = shapeConfig(job.model, { num_hidden_layers: job.layers });
    model = RuntimeModel.fromSource(tensorSource(cfg, randomReader(cfg, 0), `random ${job.model}`));
  } else {
    model = RuntimeModel.open(resolveModelArg(job.model));
    cfg = model.config;
  }
  let packed = 0;
  let kept = 0;
  if (job.bits !== 'f32') {
    const p = packModel(model, { bits: job.bits, groupSize: job.group });
    packed = p.packed;
    kept = p.kept.length;
  }
  const loadSeconds = (performance.now() - t0) / 1000;

  const rng = new Rng(1);
  const prefill = Math.min(job.prefill, cfg.maxPositionEmbeddings);
  const ids = Int32Array.from({ length: prefill }, () => 3 + Math.floor(rng.next() * (cfg.vocabSize - 3)));
  forward(model, ids.subarray(0, Math.min(16, prefill)), { logits: 'last' }); // warm-up
  const prefillTps: number[] = [];
  for (let r = 0; r < job.reps; r++) {
    const t = performance.now();
    forward(model, ids, { logits: 'last' });
    prefillTps.push(prefill / ((performance.now() - t) / 1000));
  }
  const prompt = ids.subarray(0, Math.min(16, prefill));
  const decode = Math.max(1, Math.min(job.decode, cfg.maxPositionEmbeddings - prompt.length));
  const decodeTps: number[] = [];
  for (let r = 0; r < job.reps; r++) {
    const { stats } = generate(model, prompt, { maxTokens: decode, stopIds: [] });
    decodeTps.push(stats.decodeSteps / stats.decodeSeconds);
  }

  let ppl: Row['perplexity'] = null;
  if (!job.synthetic && job.pplWindows > 0) {
    const { loadTokenizer } = await import('../lib/io/tokenizer.js');
    const tok = await loadTokenizer(resolveModelArg(job.model));
    const text = loadEvalText('tinystories').text.slice(0, 60_000 * Math.max(1, Math.ceil(job.pplWindows / 8)));
    const ctx = Math.min(512, cfg.maxPositionEmbeddings);
    const r = await perplexity(model, tok.encode(text, { addBos: true }), { ctx, limit: job.pplWindows });
    ppl = { windows: r.windows, ctx, value: r.perplexity };
  }
  return {
    model: job.synthetic ? `${job.model} (random, ${job.layers} layers)` : job.model,
    bits: job.bits,
    groupSize: job.bits === 'f32' ? null : job.group,
    packedLinears: packed,
    keptFullPrecision: kept,
    weightBytes: model.residentBytes(),
    prefillTokens: prefill,
    prefillTokensPerSecond: stat(prefillTps),
    decodeTokens: decode,
    decodeTokensPerSecond: stat(decodeTps),
    perplexity: ppl,
    loadSeconds,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
  };
}

function fmt(s: Stat): string {
  return `${s.mean.toFixed(0)} ± ${s.stdev.toFixed(0)}`;
}

function mib(n: number): string {
  return (n / 2 ** 20).toFixed(n < 2 ** 20 ? 2 : 1);
}

function printTable(rows: Row[]): void {
  const head = ['model', 'bits', 'linears packed', 'weights MiB', 'prefill tok/s', 'decode tok/s', 'ppl', 'peak RSS MiB'];
  const body = rows.map((r) => [
    r.model,
    r.bits === 'f32' ? 'f32' : `${r.bits} (g${r.groupSize})`,
    r.bits === 'f32' ? '-' : `${r.packedLinears}${r.keptFullPrecision ? ` (+${r.keptFullPrecision} f32)` : ''}`,
    mib(r.weightBytes),
    `${fmt(r.prefillTokensPerSecond)} (${r.prefillTokens})`,
    `${fmt(r.decodeTokensPerSecond)} (${r.decodeTokens})`,
    r.perplexity ? r.perplexity.value.toFixed(3) : '-',
    mib(r.peakRssBytes),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 3 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const b of body) console.log(line(b));
}

function gitCommit(): string | null {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
  } catch {
    return null;
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const childArg = argv.indexOf('--child');
  if (childArg >= 0) {
    const row = await runJob(JSON.parse(argv[childArg + 1]) as Job);
    process.stdout.write(JSON.stringify(row) + '\n');
    return;
  }
  const args = parseArgs(argv);
  const jobs: Job[] = [];
  const base = { layers: args.layers, group: args.group, prefill: args.prefill, decode: args.decode, reps: args.reps, pplWindows: args.pplWindows };
  for (const m of args.models) for (const bits of args.bits) jobs.push({ ...base, model: m, synthetic: false, bits });
  if (args.synthetic) for (const bits of args.bits) jobs.push({ ...base, model: args.synthetic, synthetic: true, bits });

  const rows: Row[] = [];
  for (const job of jobs) {
    process.stderr.write(`bench runtime: ${job.model} ${job.bits}...\n`);
    const r = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--child', JSON.stringify(job)], { encoding: 'utf8', env: process.env });
    if (r.status !== 0) throw new Error(`child for ${job.model} ${job.bits} failed:\n${r.stderr}`);
    rows.push(JSON.parse(r.stdout.trim().split('\n').pop()!) as Row);
  }
  printTable(rows);
  const { native } = await import('../lib/native.js');
  const report = {
    bench: 'runtime',
    date: new Date().toISOString(),
    commit: gitCommit(),
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memoryBytes: totalmem(), node: process.version },
    addon: native().buildInfo(),
    threads: native().getThreads(),
    settings: { group: args.group, prefill: args.prefill, decode: args.decode, reps: args.reps, pplWindows: args.pplWindows, packing: 'round-to-nearest, asymmetric' },
    rows,
  };
  mkdirSync(dirname(args.out), { recursive: true });
  writeFileSync(args.out, JSON.stringify(report, null, 2) + '\n');
  process.stderr.write(`bench runtime: wrote ${args.out}\n`);
}

main().catch((err) => {
  process.stderr.write(`bench runtime: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
