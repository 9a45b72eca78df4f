/**
 * `lieq eval ppl`: perplexity of a model on a text (README protocol: whole text tokenized
 * once, BOS once, non-overlapping windows of --ctx; --stride for sliding windows).
 */
import type { Command } from 'commander';

import { loadTokenizer } from '../../io/tokenizer.js';
import type { PackedBits } from '../../kernels/packed-format.js';
import { native } from '../../native.js';
import { packModel } from '../../runtime/model.js';
import { openEvalModel } from '../../quant/packed-source.js';
import { progressBar } from '../progress.js';
import { EVAL_DATASETS, loadEvalText, perplexity, planWindows, type PerplexityResult } from '../../runtime/perplexity.js';
import { resolveModelArg } from '../../util/data-dir.js';
import { UsageError } from '../../util/errors.js';
import { formatBytes, printJson } from '../format.js';

interface PplOptions {
  model: string;
  quantized?: string;
  dataset: string;
  ctx?: string;
  stride?: string;
  limit?: string;
  packBits?: string;
  packGroup: string;
  json?: boolean;
}

function intOption(name: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name}: expected an integer >= ${min}, got "${v}"`);
  return n;
}

export function registerEval(program: Command): void {
  const evalCmd = program.command('eval').description('evaluate a model (perplexity)');
  evalCmd
    .command('ppl')
    .description('perplexity on a text: whole text tokenized once with BOS, non-overlapping windows of --ctx tokens (or sliding windows with --stride)')
    .requiredOption('--model <dir>', 'model directory, or a shipped model name (stories260K, tinystories-656K)')
    .option('--quantized <dir>', 'quantized model directory of --model (written by `lieq quantize`)')
    .option('--dataset <name|file>', `${Object.keys(EVAL_DATASETS).join(' | ')} | a UTF-8 text file`, 'wikitext2')
    .option('--ctx <n>', 'window length in tokens (default: min(2048, max_position_embeddings))')
    .option('--stride <n>', 'sliding windows every n tokens (< ctx), scoring only new targets')
    .option('--limit <k>', 'evaluate the first k windows only')
    .option('--pack-bits <b>', 'pack every decoder linear in memory (round-to-nearest) at 2, 3, 4 or 8 bits first')
    .option('--pack-group <g>', 'group size for --pack-bits: 32, 64, 128 or channel', '128')
    .option('--json', 'print JSON for scripts (no progress bar)')
    .action(async (opts: PplOptions) => {
      const r = await runPpl(opts);
      if (opts.json) printJson(r);
      else process.stdout.write(renderPpl(r));
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
  const dir = resolveModelArg(opts.model);
  const stride = intOption('stride', opts.stride, 1);
  const limit = intOption('limit', opts.limit, 1);
  const ctxOpt = intOption('ctx', opts.ctx, 2);
  const packBits = intOption('pack-bits', opts.packBits, 2);
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
