import type { Command } from 'commander';

import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

import { loadConfig, type ModelConfig } from '../../io/config.js';
import { loadTokenizer } from '../../io/tokenizer.js';
import { allocateExact, allocateGreedy, allocateUniform } from '../../lieq/allocate.js';
import { combineScores, type Analysis, resolveMethod, resolveScore, SCORE_VERSIONS, parseScoreWeights, scoreNeedsMeasured, scoreNeedsPd } from '../../lieq/analysis.js';
import { allocateFromMeasuredAnalysis } from '../../lieq/measured.js';
import { analyzeModel } from '../../lieq/analyze.js';
import { accountPlan, layerLinearWeights, loadPlan, makePlan, type Plan } from '../../lieq/plan.js';
import { finaliseReport, measureSensitivity, writeReport, type QuantizeReport } from '../../lieq/report.js';
import { openRuntimeModel } from '../../quant/packed-source.js';
import { checkCalibration, type CalibrationOptions } from '../../quant/gptq-calibrate.js';
import { parseByteSize } from '../../quant/memory-budget.js';
import { quantizeModel, type GptqModelOptions } from '../../quant/quantize-model.js';
import { RuntimeModel } from '../../runtime/model.js';
import { loadEvalText, perplexity } from '../../runtime/perplexity.js';
import { resolveModelArg } from '../../util/data-dir.js';
import { FileError, UsageError } from '../../util/errors.js';
import { acquireOutputLock, type OutputLock } from '../../util/lock.js';
import { formatBytes, printJson, table } from '../format.js';
import {
  addCalibrationOptions,
  addQuantizerOptions,
  parseBits,
  parseCalibrationOptions,
  parseChoice,
  parseInteger,
  parseLmHeadBits,
  parseNumber,
  parseQuantizerOptions,
  type CalibrationOptionValues,
  type QuantizerOptionValues,
} from '../options.js';
import { progressBar } from '../progress.js';

interface QuantizeCli extends CalibrationOptionValues, QuantizerOptionValues {
  out: string;
  plan?: string;
  bits?: string;
  uniform?: string;
  allowed: string;
  method: string;
  score: string;
  scoreWeights: string;
  lmHead: string;
  eval: string;
  evalLimit: string;
  sensitivity: boolean;
  calibData: string;
  calibSamples: string;
  calibSeqlen: string;
  damp: string;
  actOrder?: boolean;
  gptqGrid: string;
  force?: boolean;
  resume: boolean;
  maxMemory?: string;
  json?: boolean;
}

/** The report of one run; `resumedLayers` counts the layers taken from an interrupted run's checkpoints. */
export type QuantizeRunReport = QuantizeReport & { resumedLayers: number };

export function registerQuantize(program: Command): void {
  const cmd = program
    .command('quantize')
    .description('quantize a model layer by layer under a plan (or a budget: analyze + allocate first); writes a packed model directory with a report')
    .argument('<model>', 'model directory, or a shipped model name')
    .requiredOption('-o, --out <dir>', 'output directory (appears only when complete)')
    .option('--plan <file>', 'plan JSON from `lieq allocate` (or hand-written)')
    .option('--bits <B>', 'nominal average-bit budget: runs analyze + allocate')
    .option('--uniform <B>', 'every layer at B bits')
    .option('--allowed <list>', 'allowed bit widths for --bits', '2,3,4')
    .option('--method <m>', 'allocation: auto | greedy | exact; auto: exact (DP + refinement) with measured costs, else greedy', 'auto')
    .option('--score <v>', 'measured (default: each layer quantized alone at each width, KL to full precision) | hybrid | v2 (the paper) | v1 | pd | teg | weights; docs/scores.md', 'measured')
    .option('--score-weights <pd,rc,teg>', 'weights of the v1 combination', '1,1,1')
    .option('--lm-head <bits>', 'lm_head: 16 | 8 | 4', '16');
  addQuantizerOptions(cmd);
  addCalibrationOptions(cmd, { calib: 'wikitext2', calibHelp: 'calibration text for analyze: wikitext2 | tinystories | FILE', seedHelp: 'seed of calibration sampling' });
  cmd
    .option('--eval <dataset>', 'perplexity before/after on: tinystories | wikitext2 | FILE | none', 'none')
    .option('--eval-limit <n>', 'evaluation windows (of the model context, ≤ 512 tokens)', '64')
    .option('--no-sensitivity', 'skip the single-layer sensitivity measurement of the report')
    .option('--calib-data <dataset>', 'GPTQ calibration text: tinystories | wikitext2 | FILE', 'tinystories')
    .option('--calib-samples <n>', 'GPTQ calibration sequences', '128')
    .option('--calib-seqlen <n>', 'GPTQ tokens per sequence (capped at the model context)', '2048')
    .option('--damp <f>', 'GPTQ damping, fraction of the mean Hessian diagonal', '0.01')
    .option('--act-order', 'GPTQ: quantize columns by descending Hessian diagonal (static groups)')
    .option('--gptq-grid <g>', 'GPTQ group grid: mse (clipping search, as RTN) | minmax', 'mse')
    .option('--force', 'replace an existing output directory; discard checkpoints of an interrupted run with other arguments')
    .option('--no-resume', 'recompute every layer even if an interrupted run with the same arguments left checkpoints')
    .option('--max-memory <size>', 'refuse to start unless one layer (+ GPTQ calibration) fits in this (e.g. 4GiB); bounds the embedding blocks')
    .option('--json', 'print the report JSON')
    .action(async (model: string, o: QuantizeCli) => {
      const report = await runQuantize(resolveModelArg(model), o);
      if (o.json) return printJson({ ...report, analysis: undefined });
      process.stdout.write(renderQuantize(report));
    });
}

export async function runQuantize(dir: string, o: QuantizeCli): Promise<QuantizeRunReport> {
  const cfg = loadConfig(dir);
  const maxMemoryBytes = o.maxMemory !== undefined ? parseByteSize(o.maxMemory) : undefined;
  // Lock the output before any work (analysis, evaluation): a second run fails at once.
  const lock = acquireOutputLock(resolve(o.out), 'quantize');
  try {
    if (existsSync(o.out) && !o.force) throw new FileError(resolve(o.out), 'output already exists (pass --force to replace it)');
    return await runQuantizeLocked(dir, cfg, o, lock, maxMemoryBytes);
  } finally {
    lock.release();
  }
}

async function runQuantizeLocked(dir: string, cfg: ModelConfig, o: QuantizeCli, lock: OutputLock, maxMemoryBytes: number | undefined): Promise<QuantizeRunReport> {
  const quiet = !!o.json;
  const common = {
    ...parseQuantizerOptions(o),
    lmHeadBits: parseLmHeadBits(o.lmHead),
  };
  const gptq = parseGptqOptions(o);
  const sources = [o.plan, o.bits, o.uniform].filter((x) => x !== undefined).length;
  if (sources !== 1) throw new UsageError('pass exactly one of --plan FILE, --bits B or --uniform B');
  const score = resolveScore(o.score, undefined, (v) => parseChoice(v, '--score', SCORE_VERSIONS));
  const allowed = parseBits(o.allowed, '--allowed');

  let analysis: Analysis | undefined;
  let plan: Plan;
  if (o.plan) plan = loadPlan(o.plan);
  else if (o.uniform !== undefined) plan = makePlan(cfg, allocateUniform(new Array(cfg.numLayers).fill(layerLinearWeights(cfg)), parseNumber(o.uniform, '--uniform')).bits, { ...common, method: 'uniform' });
  else {
    const bar = progressBar('analyze', 'steps', !quiet);
    try {
      analysis = await analyzeModel(dir, {
        ...parseCalibrationOptions(o),
        pd: scoreNeedsPd(score),
        measure: scoreNeedsMeasured(score) ? { layers: score === 'hybrid' ? 'hybrid' : 'all', allowed, groupSize: common.groupSize, symmetric: common.symmetric, backbone: common.backbone } : undefined,
        onProgress: (p) => bar.update(p.done, p.total, p.stage),
      });
    } finally {
      bar.stop();
    }
    const inp = { scores: combineScores(analysis, score, parseScoreWeights(o.scoreWeights)), weights: analysis.layerWeights, allowed, budget: parseNumber(o.bits!, '--bits') };
    const method = resolveMethod(o.method, score, (v) => parseChoice(v, '--method', ['greedy', 'exact'] as const));
    const alloc =
      method === 'exact' && scoreNeedsMeasured(score)
        ? await allocateFromMeasuredAnalysis(dir, analysis, { ...inp, metric: 'kl', rounds: 1, common })
        : method === 'exact'
          ? allocateExact(inp)
          : allocateGreedy(inp);
    plan = makePlan(cfg, alloc.bits, { ...common, method: alloc.method, budget: inp.budget, score });
  }
  const accounting = accountPlan(plan, cfg);
  const scores = analysis ? combineScores(analysis, score, parseScoreWeights(o.scoreWeights)) : undefined;

  // Evaluation text (perplexity before/after and sensitivity).
  const evalName = o.eval;
  const limit = parseInteger(o.evalLimit, '--eval-limit', 1);
  const ctx = Math.min(512, cfg.maxPositionEmbeddings);
  let ids: Int32Array | undefined;
  let before: QuantizeReport['perplexityBefore'];
  let sensitivity: QuantizeReport['sensitivity'];
  if (evalName !== 'none') {
    const tok = await loadTokenizer(dir);
    ids = tok.encode(loadEvalText(evalName).text, { addBos: true });
    const fp = RuntimeModel.open(dir);
    try {
      before = { ...(await perplexity(fp, ids, { ctx, limit })), dataset: evalName };
      if (o.sensitivity && scores) {
        const bar = progressBar('sensitivity', 'evals', !quiet);
        try {
          sensitivity = await measureSensitivity(fp, ids, { ctx, limit, groupSize: common.groupSize, symmetric: common.symmetric, onProgress: (d, t) => bar.update(d, t, 'layer at 2 bits') });
        } finally {
          bar.stop();
        }
      }
    } finally {
      fp.close();
    }
  }

  const bar = progressBar('quantize', 'steps', !quiet);
  let report!: QuantizeRunReport;
  try {
    if (plan.layers.some((l) => l.backbone === 'gptq')) loadEvalText(gptq.calibration.data); // a missing file fails before any work
    const res = await quantizeModel(dir, {
      plan,
      out: o.out,
      force: o.force,
      resume: o.resume,
      lock,
      maxMemoryBytes,
      gptq,
      onProgress: (p) => bar.update(p.done, p.total, p.stage),
      extraFiles: async (tmp, run) => {
        let after: QuantizeReport['perplexityAfter'];
        if (ids) {
          const q = openRuntimeModel(tmp);
          try {
            after = { ...(await perplexity(q, ids, { ctx, limit })), dataset: evalName };
          } finally {
            q.close();
          }
        }
        report = { ...finaliseReport({
          model: dir,
          out: o.out,
          plan,
          accounting,
          ...(scores ? { score: { version: score, values: scores } } : {}),
          ...(analysis ? { analysis } : {}),
          ...(sensitivity ? { sensitivity } : {}),
          ...(before ? { perplexityBefore: before } : {}),
          ...(after ? { perplexityAfter: after } : {}),
          // Run facts (differ between runs; every other byte of the output is deterministic).
          quantizeSeconds: run.seconds,
          peakRssBytes: Math.max(run.peakRssBytes, process.memoryUsage().rss),
          date: new Date().toISOString(),
        }), resumedLayers: run.resumedLayers };
        await writeReport(tmp, report);
      },
    });
    report.quantizeSeconds = res.seconds;
    report.peakRssBytes = Math.max(report.peakRssBytes, res.peakRssBytes);
  } finally {
    bar.stop();
  }
  return report;
}

/** GPTQ settings from the command line (used by the layers whose plan backbone is gptq). */
function parseGptqOptions(o: QuantizeCli): GptqModelOptions & { calibration: CalibrationOptions } {
  const damp = parseNumber(o.damp, '--damp');
  if (damp < 0 || damp > 10) throw new UsageError(`--damp: expected a fraction in [0, 10], got ${damp}`);
  const calibration: CalibrationOptions = {
    data: o.calibData,
    samples: parseInteger(o.calibSamples, '--calib-samples', 1),
    seqlen: parseInteger(o.calibSeqlen, '--calib-seqlen', 2),
    seed: parseInteger(o.seed, '--seed', 0),
  };
  checkCalibration(calibration);
  const method = parseChoice(o.gptqGrid, '--gptq-grid', ['mse', 'minmax'] as const);
  return { damp, actOrder: !!o.actOrder, method, calibration };
}

export function renderQuantize(r: QuantizeReport): string {
  const a = r.accounting;
  const lines: string[] = [];
  lines.push(`plan: ${r.plan.method}${r.plan.budget !== undefined ? ` under ${r.plan.budget} bits` : ''}${r.plan.score ? ` (score ${r.plan.score})` : ''}`);
  lines.push(
    table(
      ['layer', 'bits', 'group', ...(r.score ? ['score'] : []), ...(r.sensitivity ? ['ΔlogPPL@2b'] : []), 'bits/weight'],
      r.plan.layers.map((l, i) => [l.layer, l.bits, a.perLayer[i].groupSize, ...(r.score ? [r.score.values[i].toExponential(3)] : []), ...(r.sensitivity ? [r.sensitivity.deltaLogPpl[i].toFixed(4)] : []), a.perLayer[i].bitsPerWeight.toFixed(3)]),
    ),
  );
  lines.push(`bits: nominal ${a.nominalBits.toFixed(4)} (decoder linears, payload); ${a.decoderBitsPerWeight.toFixed(4)} with scales/zeros; whole model ${a.modelBitsPerWeight.toFixed(3)} bits/weight`);
  lines.push(`size: ${formatBytes(a.packedBytes)} packed vs ${formatBytes(a.fp16Bytes)} fp16`);
  if (r.perplexityBefore) lines.push(`perplexity (${r.perplexityBefore.dataset}, ${r.perplexityBefore.windows}×${r.perplexityBefore.ctx}): full precision ${r.perplexityBefore.perplexity.toFixed(4)} -> quantized ${r.perplexityAfter?.perplexity.toFixed(4)}`);
  if (r.spearmanScoreVsSensitivity !== undefined) lines.push(`Spearman(score, single-layer sensitivity) = ${r.spearmanScoreVsSensitivity.toFixed(3)}`);
  const resumed = (r as Partial<QuantizeRunReport>).resumedLayers;
  if (resumed) lines.push(`resumed: ${resumed} of ${r.plan.layers.length} layers from the checkpoints of an interrupted run`);
  lines.push(`wrote ${r.out} (report.md, report.json, charts/) in ${r.quantizeSeconds.toFixed(2)} s; peak RSS ${formatBytes(r.peakRssBytes)}`);
  return lines.join('\n') + '\n';
}
