/**
 * `lieq bench`: prefill/decode speed of models and plans, modelled on llama-bench (one
 * comparison table; JSON, CSV, markdown and SVG charts on request). The work is in lib/bench/.
 */
import { basename } from 'node:path';

import type { Command } from 'commander';

import type { BenchDevice } from '../../bench/backend.js';
import { BENCH_SHAPES, specConfig, type BenchModelSpec } from '../../bench/models.js';
import { parsePlanSpec, planLabel, resolvePlan, type PlanSpec } from '../../bench/plans.js';
import { renderBenchCsv, renderBenchMarkdown, writeBenchOutputs, benchCells, benchRows, settingsLine } from '../../bench/report.js';
import { runBench, type BenchReport, type BenchTarget } from '../../bench/run.js';
import { defaultCacheDir } from '../../lieq/analyze.js';
import { native } from '../../native.js';
import { isQuantizedDir, readQuantizationConfig } from '../../quant/packed-source.js';
import { resolveModelArg, SHIPPED_MODELS } from '../../util/data-dir.js';
import { UsageError } from '../../util/errors.js';
import { printJson, table } from '../format.js';
import { parseBits, parseChoice, parseInteger, parseIntList, parseLmHeadBits } from '../options.js';
import { progressBar } from '../progress.js';

interface BenchCli {
  shape: string[];
  layers?: string;
  plan: string[];
  group: string;
  lmHead: string;
  allowed: string;
  device: string;
  batch: string;
  prompt: string;
  gen: string;
  repeat: string;
  seed: string;
  cache: boolean;
  isolate: boolean;
  json?: boolean;
  csv?: boolean;
  md?: boolean;
  out?: string;
}

const collect = (v: string, prev: string[]) => [...prev, ...v.split(',').map((s) => s.trim()).filter(Boolean)];

export function registerBench(program: Command): void {
  program
    .command('bench')
    .description('prefill (pp) and decode (tg) speed of models and plans, llama-bench style: tokens/s mean ± stddev, weight bytes per token, GB/s and % of the measured read bandwidth, peak memory')
    .argument('[models...]', 'model directories (full precision or `lieq quantize` output) or shipped model names')
    .option('--shape <name>', `random-weight model of a real shape: ${BENCH_SHAPES.join(' | ')} (repeatable)`, collect, [])
    .option('--layers <n>', 'decoder layers of --shape models (default: the real count)')
    .option('--plan <spec>', 'f32 | uniform:B | bits:B (random allocation) | plan.json; comma-separated or repeated; applies to full-precision models (default f32)', collect, [])
    .option('--group <g>', 'group size of uniform:/bits: plans: 32 | 64 | 128', '128')
    .option('--lm-head <bits>', 'LM head of uniform:/bits: plans: 16 (kept f32 in memory) | 8 | 4', '16')
    .option('--allowed <list>', 'bit widths of bits:B plans', '2,3,4')
    .option('--device <d>', 'cpu | cuda', 'cpu')
    .option('--batch <list>', 'batch sizes (sequences decoded per step), e.g. 1,4,16', '1')
    .option('--prompt <n>', 'prompt tokens per sequence (0: no prefill)', '512')
    .option('--gen <n>', 'generated tokens per sequence (0: no decode)', '128')
    .option('--repeat <n>', 'timed repeats (after one warm-up)', '5')
    .option('--seed <s>', 'seed of random weights, token ids and bits: allocations', '0')
    .option('--no-cache', 'do not cache packed random models (LIEQ_CACHE_DIR or ~/.cache/lieq)')
    .option('--no-isolate', 'run every model in this process (default: one child process each, so peak RSS is per model)')
    .option('--json', 'print the report as JSON')
    .option('--csv', 'print the table as CSV')
    .option('--md', 'print the table as markdown')
    .option('--out <dir>', 'also write bench.json, bench.md, bench.csv and SVG charts into this directory')
    .action(async (models: string[], o: BenchCli) => {
      const machine = [o.json, o.csv, o.md].filter(Boolean).length;
      if (machine > 1) throw new UsageError('--json, --csv and --md exclude each other');
      const { targets, settings } = parseBench(models, o);
      const bar = progressBar('bench', 'models', machine === 0);
      let report: BenchReport;
      try {
        report = await runBench(targets, settings, {
          isolate: o.isolate,
          onEvent: (e) => bar.update(e.target - 1, e.targets, `${e.label}: ${e.stage}`),
        });
      } finally {
        bar.stop();
      }
      const written = o.out ? await writeBenchOutputs(report, o.out) : [];
      if (o.json) printJson(report);
      else if (o.csv) process.stdout.write(renderBenchCsv(report));
      else if (o.md) process.stdout.write(renderBenchMarkdown(report));
      else {
        process.stdout.write(renderBenchTerminal(report));
        for (const f of written) process.stdout.write(`wrote ${f}\n`);
      }
    });
}

function modelName(arg: string): string {
  return arg in SHIPPED_MODELS ? arg : basename(resolveModelArg(arg));
}

/** Validate every option and build the targets (model × plan); nothing is measured yet. */
export function parseBench(models: string[], o: BenchCli): { targets: BenchTarget[]; settings: Parameters<typeof runBench>[1] } {
  const device = parseChoice(o.device, '--device', ['cpu', 'cuda'] as const) as BenchDevice;
  const batches = parseIntList(o.batch, '--batch');
  const prompt = parseInteger(o.prompt, '--prompt', 0);
  const gen = parseInteger(o.gen, '--gen', 0);
  if (prompt === 0 && gen === 0) throw new UsageError('--prompt and --gen are both 0: nothing to measure');
  const repeat = parseInteger(o.repeat, '--repeat', 1);
  const seed = parseInteger(o.seed, '--seed', 0);
  const group = parseInteger(o.group, '--group', 32);
  if (![32, 64, 128].includes(group)) throw new UsageError(`--group: expected 32, 64 or 128, got ${group}`);
  const defaults = {
    groupSize: group,
    lmHeadBits: parseLmHeadBits(o.lmHead),
    allowed: parseBits(o.allowed, '--allowed'),
    seed,
  };
  const layers = o.layers === undefined ? undefined : parseInteger(o.layers, '--layers', 1);
  if (layers !== undefined && o.shape.length === 0) throw new UsageError('--layers applies to --shape models only');
  if (models.length === 0 && o.shape.length === 0) throw new UsageError('nothing to benchmark: give model directories or --shape NAME');
  const specs: PlanSpec[] = (o.plan.length ? o.plan : ['f32']).map(parsePlanSpec);

  const modelSpecs: BenchModelSpec[] = [
    ...models.map((m): BenchModelSpec => ({ kind: 'dir', dir: resolveModelArg(m), name: modelName(m) })),
    ...o.shape.map((shape): BenchModelSpec => ({ kind: 'shape', shape, layers, seed })),
  ];
  const targets: BenchTarget[] = [];
  for (const m of modelSpecs) {
    const cfg = specConfig(m);
    if (prompt + gen > cfg.maxPositionEmbeddings)
      throw new UsageError(`--prompt ${prompt} + --gen ${gen} exceeds the context of ${m.kind === 'dir' ? m.dir : m.shape} (max_position_embeddings ${cfg.maxPositionEmbeddings})`);
    if (m.kind === 'dir' && isQuantizedDir(m.dir)) {
      // A quantized directory runs as stored, once, whatever --plan says.
      const q = readQuantizationConfig(m.dir)!;
      targets.push({ model: m, plan: null, planLabel: `stored ${q.plan_method}${q.nominal_bits !== undefined ? ` ${q.nominal_bits.toFixed(3)}-bit` : ''}` });
      continue;
    }
    for (const spec of specs) {
      const plan = resolvePlan(spec, cfg, defaults);
      targets.push({ model: m, plan, planLabel: planLabel(spec, plan, cfg) });
    }
  }
  const settings = { device, batches, prompt, gen, repeat, seed, threads: native().getThreads(), cacheDir: o.cache ? defaultCacheDir() : null };
  return { targets, settings };
}

export function renderBenchTerminal(r: BenchReport): string {
  const { head, body } = benchCells(benchRows(r), r.device === 'cuda');
  return `${settingsLine(r)}\n${table(head, body, head.map((_, i) => (i < 2 ? 'left' : 'right')))}\n`;
}
