/**
 * `lieq eval ppl`: perplexity of a model on a text (README protocol: whole text tokenized
 * once, BOS once, non-overlapping windows of --ctx; --stride for sliding windows).
 * `lieq eval tasks`: zero-shot accuracy on the seven LieQ tasks, scored like
 * lm-evaluation-harness (lib/eval, docs/eval.md); with --quantized, recovery vs --model.
 * `lieq eval kld`: KL divergence of --quantized's next-token distributions from --model's.
 */
import type { Command } from 'commander';

import { loadTokenizer } from '../../io/tokenizer.js';
import type { PackedBits } from '../../kernels/packed-format.js';
import { native } from '../../native.js';
import { packModel } from '../../runtime/model.js';
import { openEvalModel } from '../../quant/packed-source.js';
import { progressBar } from '../progress.js';
import { EVAL_DATASETS, loadEvalText, perplexity, planWindows, type PerplexityResult } from '../../runtime/perplexity.js';
import { UsageError } from '../../util/errors.js';
import { writeFileAtomic, writeJsonAtomic } from '../../util/atomic.js';
import { BOS_POLICIES, type BosPolicy } from '../../eval/loglikelihood.js';
import { kldCompare, type KldResult } from '../../eval/kld.js';
import { TASK_SPECS, type Metric } from '../../eval/prompts.js';
import { parseTaskList, TASK_NAMES, type TaskName } from '../../eval/tasks.js';
import { evaluateZeroShot, loadItems, recovery, type ZeroShotResult } from '../../eval/zero-shot.js';
import { formatBytes, printJson } from '../format.js';
import { addModelOptions, parseChoice, parseModelOptions, parseOptionalInteger, type ModelOptionValues } from '../options.js';

interface PplOptions extends ModelOptionValues {
  dataset: string;
  ctx?: string;
  stride?: string;
  packBits?: string;
  packGroup: string;
}

/** Requests scored together by default: 16 gained nothing over 8 on the shipped models
 *  (bench/eval-batch.ts, docs/eval.md), and each one more costs a KV cache of the window. */
const DEFAULT_BATCH = 8;

export function registerEval(program: Command): void {
  const evalCmd = program.command('eval').description('evaluate a model: perplexity, zero-shot tasks, KL divergence vs full precision');
  const ppl = evalCmd
    .command('ppl')
    .description('perplexity on a text: whole text tokenized once with BOS, non-overlapping windows of --ctx tokens (or sliding windows with --stride)');
  addModelOptions(ppl, { quantized: 'optional', quantizedHelp: 'quantized model directory of --model (written by `lieq quantize`): evaluated instead of --model', limitHelp: 'evaluate the first n windows only' })
    .option('--dataset <name|file>', `${Object.keys(EVAL_DATASETS).join(' | ')} | a UTF-8 text file`, 'wikitext2')
    .option('--ctx <n>', 'window length in tokens (default: min(2048, max_position_embeddings))')
    .option('--stride <n>', 'sliding windows every n tokens (< ctx), scoring only new targets')
    .option('--pack-bits <b>', 'pack every decoder linear in memory (round-to-nearest) at 2, 3, 4 or 8 bits first')
    .option('--pack-group <g>', 'group size for --pack-bits: 32, 64, 128 or channel', '128')
    .action(async (opts: PplOptions) => {
      const r = await runPpl(opts);
      if (opts.json) printJson(r);
      else process.stdout.write(renderPpl(r));
    });
  const tasks = evalCmd
    .command('tasks')
    .description('zero-shot accuracy scored like lm-evaluation-harness (docs/eval.md); with --quantized, both models and the recovery ratio');
  addModelOptions(tasks, {
    quantized: 'optional',
    quantizedHelp: 'quantized model directory of --model (written by `lieq quantize`): evaluated too, recovery = its mean / the full-precision mean',
    limitHelp: 'the first n documents of each task only (as the harness\'s --limit)',
  })
    .option('--tasks <list>', `comma-separated tasks (${TASK_NAMES.join(', ')})`, TASK_NAMES.join(','))
    .option('--batch <b>', 'requests scored together in batched forward passes (results equal --batch 1 up to float32 rounding)', String(DEFAULT_BATCH))
    .option('--bos <policy>', `${BOS_POLICIES.join(' | ')}: prepend BOS to every context (auto: the tokenizer's own policy)`, 'auto')
    .option('--max-length <n>', 'model window; longer pairs lose context tokens from the left (default: max_position_embeddings)')
    .option('--samples', 'keep every document\'s choice log-likelihoods in the JSON')
    .option('--out <file.json>', 'write the JSON report here (atomically)')
    .option('--markdown <file.md>', 'write the markdown table here (atomically)')
    .action(async (opts: TasksOptions) => {
      const r = await runTasks(opts);
      if (opts.out) writeJsonAtomic(opts.out, r);
      if (opts.markdown) writeFileAtomic(opts.markdown, renderTasksMarkdown(r));
      if (opts.json) printJson(r);
      else process.stdout.write(renderTasksMarkdown(r));
    });
  const kld = evalCmd
    .command('kld')
    .description('KL divergence of the quantized model\'s next-token distributions from the full-precision ones (mean, 99th percentile, top-1 agreement)');
  addModelOptions(kld, { quantized: 'required', quantizedHelp: 'quantized model directory of --model', limitHelp: 'the first n windows only' })
    .option('--dataset <name|file>', `${Object.keys(EVAL_DATASETS).join(' | ')} | a UTF-8 text file`, 'wikitext2')
    .option('--ctx <n>', 'window length in tokens (default: min(2048, max_position_embeddings))')
    .option('--out <file.json>', 'write the JSON report here (atomically)')
    .action(async (opts: KldOptionsCli) => {
      const r = await runKld(opts);
      if (opts.out) writeJsonAtomic(opts.out, r);
      if (opts.json) printJson(r);
      else process.stdout.write(renderKld(r));
    });
}

export interface PplReport {
  model: string;
  quantized: string | null;
  packing: { bits: number; groupSize: number | 'channel'; packedLinears: number; keptFullPrecision: string[] } | null;
  dataset: string;
  datasetPath: string;
  textTokens: number;
  ctx: number;
  stride: number;
  mode: 'non-overlapping' | 'sliding';
  windows: number;
  scoredTokens: number;
  forwardTokens: number;
  perplexity: number;
  meanNll: number;
  seconds: number;
  tokensPerSecond: number;
  tokenizeSeconds: number;
  peakRssBytes: number;
  threads: number;
}

async function runPpl(opts: PplOptions): Promise<PplReport> {
  const { dir, limit } = parseModelOptions(opts);
  const stride = parseOptionalInteger(opts.stride, '--stride', 1);
  const ctxOpt = parseOptionalInteger(opts.ctx, '--ctx', 2);
  const packBits = parseOptionalInteger(opts.packBits, '--pack-bits', 2);
  if (packBits !== undefined && ![2, 3, 4, 8].includes(packBits)) throw new UsageError(`--pack-bits: expected 2, 3, 4 or 8, got ${packBits}`);
  const group = opts.packGroup === 'channel' ? 'channel' : Number(opts.packGroup);
  if (group !== 'channel' && ![32, 64, 128].includes(group)) throw new UsageError(`--pack-group: expected 32, 64, 128 or channel, got "${opts.packGroup}"`);
  if (packBits !== undefined && opts.quantized) throw new UsageError('--pack-bits and --quantized exclude each other');

  const model = openEvalModel(dir, opts.quantized);
  try {
    const ctx = ctxOpt ?? Math.min(2048, model.config.maxPositionEmbeddings);
    if (stride !== undefined && stride > ctx) throw new UsageError(`--stride: must be <= --ctx (${ctx}), got ${stride}`);
    if (ctx > model.config.maxPositionEmbeddings && !opts.json)
      process.stderr.write(`lieq: warning: --ctx ${ctx} exceeds the model's max_position_embeddings (${model.config.maxPositionEmbeddings})\n`);
    let packing: PplReport['packing'] = null;
    if (packBits !== undefined) {
      const p = packModel(model, { bits: packBits as PackedBits, groupSize: group });
      packing = { bits: packBits, groupSize: group, packedLinears: p.packed, keptFullPrecision: p.kept };
    }
    const tokenizer = await loadTokenizer(dir);
    const { name, path, text } = loadEvalText(opts.dataset);
    const t0 = performance.now();
    const ids = tokenizer.encode(text, { addBos: true, addEos: false });
    const tokenizeSeconds = (performance.now() - t0) / 1000;
    const total = Math.min(planWindows(ids.length, ctx, stride).length, limit ?? Infinity);

    const bar = progressBar('perplexity', 'windows', !opts.json);
    bar.update(0, total, name);
    let r: PerplexityResult;
    try {
      r = await perplexity(model, ids, { ctx, stride, limit, onProgress: (done) => bar.update(done, total, name) });
    } finally {
      bar.stop();
    }
    return {
      model: dir,
      quantized: opts.quantized ?? null,
      packing,
      dataset: name,
      datasetPath: path,
      textTokens: ids.length,
      ctx,
      stride: r.stride,
      mode: r.stride < ctx ? 'sliding' : 'non-overlapping',
      windows: r.windows,
      scoredTokens: r.scoredTokens,
      forwardTokens: r.forwardTokens,
      perplexity: r.perplexity,
      meanNll: r.meanNll,
      seconds: r.seconds,
      tokensPerSecond: r.tokensPerSecond,
      tokenizeSeconds,
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
      threads: native().getThreads(),
    };
  } finally {
    model.close();
  }
}

export function renderPpl(r: PplReport): string {
  const n = (x: number) => x.toLocaleString('en-US');
  const lines = [
    `model       ${r.model}${r.quantized ? ` (packed: ${r.quantized})` : ''}`,
    ...(r.packing
      ? [`packing     ${r.packing.bits}-bit, group ${r.packing.groupSize}, round-to-nearest: ${r.packing.packedLinears} linears${r.packing.keptFullPrecision.length ? `; kept f32 (shape not packable): ${r.packing.keptFullPrecision.join(', ')}` : ''}`]
      : []),
    `dataset     ${r.dataset} (${n(r.textTokens)} tokens with BOS)`,
    `windows     ${n(r.windows)} × ${r.ctx} tokens, ${r.mode}${r.mode === 'sliding' ? `, stride ${r.stride}` : ''}`,
    `perplexity  ${r.perplexity.toFixed(4)}   (mean NLL ${r.meanNll.toFixed(6)} nats/token)`,
    `tokens      ${n(r.scoredTokens)} scored, ${n(r.forwardTokens)} run in ${r.seconds.toFixed(1)} s (${n(Math.round(r.tokensPerSecond))} tokens/s, ${r.threads} threads)`,
    `peak RSS    ${formatBytes(r.peakRssBytes)}`,
  ];
  return lines.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------
// eval tasks

interface TasksOptions extends ModelOptionValues {
  tasks: string;
  batch: string;
  bos: string;
  maxLength?: string;
  samples?: boolean;
  out?: string;
  markdown?: string;
}

export interface TaskRow {
  task: TaskName;
  metric: Metric;
  primary: boolean;
  docs: number;
  fp: number;
  fpStderr: number;
  quantized: number | null;
  quantizedStderr: number | null;
  recovery: number | null;
}

export interface TasksReport {
  model: string;
  quantized: string | null;
  tasks: TaskName[];
  limit: number | null;
  bos: BosPolicy;
  batch: number;
  rows: TaskRow[];
  average: {
    fp: ZeroShotResult['average'];
    quantized: ZeroShotResult['average'] | null;
    recovery: { primary: number; acc: number } | null;
  };
  runs: { fp: ZeroShotResult; quantized: ZeroShotResult | null };
  threads: number;
  peakRssBytes: number;
}

async function runTasks(opts: TasksOptions): Promise<TasksReport> {
  const { dir, limit } = parseModelOptions(opts);
  const tasks = parseTaskList(opts.tasks);
  const batch = parseOptionalInteger(opts.batch, '--batch', 1)!;
  const maxLength = parseOptionalInteger(opts.maxLength, '--max-length', 2);
  const bos = parseChoice(opts.bos, '--bos', BOS_POLICIES);
  const items = loadItems(tasks, { limit });
  const tokenizer = await loadTokenizer(dir);
  const perModel = [...items.values()].reduce((s, l) => s + l.length, 0);
  const runs = opts.quantized ? 2 : 1;
  const bar = progressBar('zero-shot', 'docs', !opts.json);
  let doneBefore = 0;
  const evalOne = async (quantizedDir: string | undefined, label: string): Promise<ZeroShotResult> => {
    const model = openEvalModel(dir, quantizedDir);
    try {
      const offsets = new Map<TaskName, number>();
      let acc = doneBefore;
      for (const [t, l] of items) {
        offsets.set(t, acc);
        acc += l.length;
      }
      const r = await evaluateZeroShot(model, tokenizer, items, {
        bos,
        maxLength,
        batch,
        samples: opts.samples,
        onProgress: (task, done) => bar.update(offsets.get(task)! + done, perModel * runs, `${label} ${task}`),
      });
      doneBefore += perModel;
      return r;
    } finally {
      model.close();
    }
  };
  bar.update(0, perModel * runs, 'fp');
  let fp: ZeroShotResult;
  let q: ZeroShotResult | null = null;
  try {
    fp = await evalOne(undefined, 'fp');
    if (opts.quantized) q = await evalOne(opts.quantized, 'quantized');
  } finally {
    bar.stop();
  }
  const rows: TaskRow[] = [];
  for (const t of fp.tasks) {
    const qt = q?.tasks.find((x) => x.task === t.task);
    for (const metric of TASK_SPECS[t.task].metrics) {
      const a = t.metrics[metric]!;
      const b = qt?.metrics[metric] ?? null;
      rows.push({
        task: t.task, metric, primary: metric === t.primary, docs: t.docs,
        fp: a.value, fpStderr: a.stderr,
        quantized: b ? b.value : null, quantizedStderr: b ? b.stderr : null,
        recovery: b ? recovery(a.value, b.value) : null,
      });
    }
  }
  return {
    model: dir,
    quantized: opts.quantized ?? null,
    tasks,
    limit: limit ?? null,
    bos,
    batch,
    rows,
    average: {
      fp: fp.average,
      quantized: q?.average ?? null,
      recovery: q ? { primary: recovery(fp.average.primary, q.average.primary), acc: recovery(fp.average.acc, q.average.acc) } : null,
    },
    runs: { fp, quantized: q },
    threads: native().getThreads(),
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
  };
}

const pct = (x: number | null) => (x === null || !Number.isFinite(x) ? '—' : (100 * x).toFixed(2));

/** Markdown: one row per task and metric (primary metric in bold), then the averages. */
export function renderTasksMarkdown(r: TasksReport): string {
  const hasQ = r.quantized !== null;
  const head = ['task', 'metric', 'n', 'FP %', '± stderr', ...(hasQ ? ['quantized %', '± stderr', 'recovery %'] : [])];
  const lines = [
    `model: ${r.model}${hasQ ? `  \nquantized: ${r.quantized}` : ''}  `,
    `zero-shot, lm-evaluation-harness scoring (docs/eval.md); BOS ${r.runs.fp.bos ? 'prepended' : 'not prepended'} (--bos ${r.bos}); window ${r.runs.fp.maxLength} tokens${r.limit !== null ? `; first ${r.limit} documents per task` : ''}`,
    '',
    `| ${head.join(' | ')} |`,
    `|${head.map((_, i) => (i < 2 ? '---' : '---:')).join('|')}|`,
  ];
  for (const row of r.rows) {
    const m = row.primary ? `**${row.metric}**` : row.metric;
    const cells = [row.task, m, String(row.docs), pct(row.fp), pct(row.fpStderr), ...(hasQ ? [pct(row.quantized), pct(row.quantizedStderr), pct(row.recovery)] : [])];
    lines.push(`| ${cells.join(' | ')} |`);
  }
  const avg = (label: string, key: 'primary' | 'acc') => {
    const cells = [label, key === 'primary' ? '**primary**' : 'acc', '', pct(r.average.fp[key]), '', ...(hasQ ? [pct(r.average.quantized![key]), '', pct(r.average.recovery![key])] : [])];
    lines.push(`| ${cells.join(' | ')} |`);
  };
  avg('**average**', 'primary');
  avg('average', 'acc');
  const merged = r.runs.fp.tasks.filter((t) => t.boundaryMerges > 0);
  if (merged.length > 0) {
    const list = merged.map((t) => `${t.task} ${t.boundaryMerges}/${t.requests}${t.boundaryFallbacks ? ` (${t.boundaryFallbacks} empty → shared-token boundary)` : ''}`).join(', ');
    lines.push('', `Tokens merged across the context/continuation boundary (split by token count, as the harness): ${list}.`);
  }
  const long = r.runs.fp.tasks.filter((t) => t.longContinuations > 0);
  if (long.length > 0)
    lines.push('', `Continuations longer than the ${r.runs.fp.maxLength}-token window, scored in chunks: ${long.map((t) => `${t.task} ${t.longContinuations}`).join(', ')}.`);
  const runs = [r.runs.fp, ...(r.runs.quantized ? [r.runs.quantized] : [])];
  const secs = runs.reduce((s, x) => s + x.seconds, 0);
  const requests = runs.reduce((s, x) => s + x.tasks.reduce((t, y) => t + y.requests, 0), 0);
  lines.push('', `primary = acc_norm where the harness reports it, else acc${hasQ ? '; recovery = quantized / FP' : ''}. ${requests.toLocaleString('en-US')} requests in ${secs.toFixed(1)} s (${Math.round(requests / secs).toLocaleString('en-US')} requests/s, batch ${r.batch}), ${r.threads} thread${r.threads === 1 ? '' : 's'}, peak RSS ${formatBytes(r.peakRssBytes)}.`);
  return lines.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------
// eval kld

interface KldOptionsCli extends ModelOptionValues {
  quantized: string;
  dataset: string;
  ctx?: string;
  out?: string;
}

export interface KldReport extends KldResult {
  model: string;
  quantized: string;
  dataset: string;
  textTokens: number;
  threads: number;
}

async function runKld(opts: KldOptionsCli): Promise<KldReport> {
  const { dir, limit } = parseModelOptions(opts);
  const ctxOpt = parseOptionalInteger(opts.ctx, '--ctx', 2);
  const base = openEvalModel(dir);
  try {
    const q = openEvalModel(dir, opts.quantized);
    try {
      const ctx = ctxOpt ?? Math.min(2048, base.config.maxPositionEmbeddings);
      const tokenizer = await loadTokenizer(dir);
      const { name, text } = loadEvalText(opts.dataset);
      const ids = tokenizer.encode(text, { addBos: true, addEos: false });
      const total = Math.min(planWindows(ids.length, ctx).length, limit ?? Infinity);
      const bar = progressBar('kl divergence', 'windows', !opts.json);
      bar.update(0, total, name);
      let r: KldResult;
      try {
        r = await kldCompare(base, q, ids, { ctx, limit, onProgress: (done) => bar.update(done, total, name) });
      } finally {
        bar.stop();
      }
      return { model: dir, quantized: opts.quantized, dataset: name, textTokens: ids.length, ...r, threads: native().getThreads() };
    } finally {
      q.close();
    }
  } finally {
    base.close();
  }
}

export function renderKld(r: KldReport): string {
  const n = (x: number) => x.toLocaleString('en-US');
  return [
    `model        ${r.model}`,
    `quantized    ${r.quantized}`,
    `dataset      ${r.dataset} (${n(r.windows)} windows × ${r.ctx} tokens, ${n(r.tokens)} positions)`,
    `KL(FP‖Q)     mean ${r.meanKld.toExponential(4)} ± ${r.stderrKld.toExponential(2)} nats, median ${r.medianKld.toExponential(3)}, p99 ${r.p99Kld.toExponential(3)}, p99.9 ${r.p999Kld.toExponential(3)}, max ${r.maxKld.toExponential(3)}`,
    `top-1 agree  ${(100 * r.top1Agreement).toFixed(2)} %`,
    `mean NLL     FP ${r.meanNllBase.toFixed(6)}, quantized ${r.meanNllQuantized.toFixed(6)} nats/token`,
    `time         ${r.seconds.toFixed(1)} s (${r.threads} threads)`,
  ].join('\n') + '\n';
}
