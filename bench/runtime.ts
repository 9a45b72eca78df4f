/**
 * Runtime benchmark script: the shipped models at f32 and packed uniformly at 8/4/3/2 bits
 * (round-to-nearest), optionally a random-weight model of a real shape, measured by the same
 * code as `lieq bench` (lib/bench: one child process per configuration, warm-up excluded,
 * mean ± stddev, GB/s and % of the read bandwidth measured in the same run), plus the
 * perplexity of the first TinyStories windows of each shipped configuration as a quality check.
 *
 *   npm run bench:runtime -- [--models stories260K,tinystories-656K] [--bits f32,8,4,3,2]
 *       [--group 128] [--prompt 256] [--gen 128] [--batch 1] [--repeat 5] [--ppl-windows 8]
 *       [--shape llama-3.2-1b --layers 2] [--out bench/results/runtime]
 *
 * Writes bench.json/.md/.csv and SVG charts into --out (a `ppl` table is added to bench.json).
 * A smoke run on a shared machine is not a measurement: re-run on a quiet one.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { openBenchModel, specConfig, type BenchModelSpec } from '../lib/bench/models.js';
import { parsePlanSpec, planLabel, resolvePlan } from '../lib/bench/plans.js';
import { renderBenchMarkdown, writeBenchOutputs } from '../lib/bench/report.js';
import { runBench, type BenchTarget } from '../lib/bench/run.js';
import { loadTokenizer } from '../lib/io/tokenizer.js';
import { defaultCacheDir } from '../lib/lieq/analyze.js';
import { native } from '../lib/native.js';
import { loadEvalText, perplexity } from '../lib/runtime/perplexity.js';
import { resolveModelArg } from '../lib/util/data-dir.js';
import { writeJsonAtomic } from '../lib/util/atomic.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function arg(name: string, d: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : d;
}
const int = (name: string, d: number) => {
  const n = Number(arg(name, String(d)));
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${name}: expected an integer >= 0`);
  return n;
};

async function main(): Promise<void> {
  const models = arg('models', 'stories260K,tinystories-656K').split(',').filter(Boolean);
  const bits = arg('bits', 'f32,8,4,3,2').split(',').map((b) => (b === 'f32' ? 'f32' : `uniform:${b}`));
  const shape = arg('shape', '');
  const layers = int('layers', 2);
  const defaults = { groupSize: int('group', 128), lmHeadBits: 16 as const, allowed: [2, 3, 4], seed: 0 };
  const out = resolve(arg('out', join(root, 'bench', 'results', 'runtime')));

  const specs: BenchModelSpec[] = models.map((m) => ({ kind: 'dir', dir: resolveModelArg(m), name: m }));
  if (shape) specs.push({ kind: 'shape', shape, layers, seed: 0 });
  const targets: BenchTarget[] = [];
  for (const m of specs) {
    const cfg = specConfig(m);
    for (const b of bits) {
      const spec = parsePlanSpec(b);
      const plan = resolvePlan(spec, cfg, defaults);
      targets.push({ model: m, plan, planLabel: planLabel(spec, plan, cfg) });
    }
  }
  const report = await runBench(
    targets,
    { device: 'cpu', batches: arg('batch', '1').split(',').map(Number), prompt: int('prompt', 256), gen: int('gen', 128), repeat: Math.max(1, int('repeat', 5)), seed: 0, threads: native().getThreads(), cacheDir: defaultCacheDir() },
    { onEvent: (e) => process.stderr.write(`bench runtime: [${e.target}/${e.targets}] ${e.label}: ${e.stage}\n`) },
  );

  // Quality check: perplexity of each shipped configuration (not for random models).
  const windows = int('ppl-windows', 8);
  const ppl: { label: string; windows: number; ctx: number; perplexity: number }[] = [];
  if (windows > 0) {
    const text = loadEvalText('tinystories').text.slice(0, 60_000 * Math.max(1, Math.ceil(windows / 8)));
    for (const t of targets) {
      if (t.model.kind !== 'dir') continue;
      const { model } = await openBenchModel(t.model, t.plan, null);
      const tok = await loadTokenizer(t.model.dir);
      const ctx = Math.min(512, model.config.maxPositionEmbeddings);
      const r = await perplexity(model, tok.encode(text, { addBos: true }), { ctx, limit: windows });
      ppl.push({ label: `${t.model.name} · ${t.planLabel}`, windows: r.windows, ctx, perplexity: r.perplexity });
      model.close();
    }
  }
  const files = await writeBenchOutputs(report, out);
  writeJsonAtomic(join(out, 'bench.json'), { ...report, ppl, commit: gitHead() });
  process.stdout.write(renderBenchMarkdown(report));
  for (const p of ppl) process.stdout.write(`ppl ${p.label}: ${p.perplexity.toFixed(4)} (${p.windows} × ${p.ctx})\n`);
  process.stderr.write(`bench runtime: wrote ${files.join(', ')}\n`);
}

function gitHead(): string | null {
  const head = join(root, '.git', 'HEAD');
  if (!existsSync(head)) return null;
  const ref = readFileSync(head, 'utf8').trim();
  if (!ref.startsWith('ref: ')) return ref.slice(0, 12);
  const p = join(root, '.git', ref.slice(5));
  return existsSync(p) ? readFileSync(p, 'utf8').trim().slice(0, 12) : null;
}

main().catch((err) => {
  process.stderr.write(`bench runtime: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
