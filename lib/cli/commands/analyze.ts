import type { Command } from 'commander';

import { LINALG_DEVICES } from '../../cuda/svd.js';
import { analyzeModel } from '../../lieq/analyze.js';
import { combineScores, type Analysis, SCORE_VERSIONS, parseScoreWeights, scoreNeedsMeasured, scoreNeedsPd, type ScoreVersion, type ScoreWeights } from '../../lieq/analysis.js';
import { ranksDescending, spearman } from '../../lieq/stats.js';
import { resolveModelArg } from '../../util/data-dir.js';
import { writeJsonAtomic } from '../../util/atomic.js';
import { printJson, table } from '../format.js';
import { parseBits, parseChoice, parseInteger } from '../options.js';
import { progressBar } from '../progress.js';

interface AnalyzeCli {
  calib: string;
  samples: string;
  seqlen: string;
  seed: string;
  score: string;
  scoreWeights: string;
  topk: string;
  pd?: boolean;
  allowed: string;
  group: string;
  symmetric?: boolean;
  backbone: string;
  candidates: string;
  out?: string;
  cache: boolean;
  json?: boolean;
  device: string;
}

export function registerAnalyze(program: Command): void {
  program
    .command('analyze')
    .description('per-layer LieQ diagnostics (ΔRC, TEG, PD, weight spectra) and the combined score')
    .argument('<model>', 'model directory, or a shipped model name')
    .option('--calib <dataset>', 'calibration text: wikitext2 | tinystories | FILE', 'wikitext2')
    .option('--samples <n>', 'calibration sequences', '32')
    .option('--seqlen <n>', 'tokens per sequence (capped at the model context)', '512')
    .option('--seed <s>', 'seed of calibration sampling and of the random reference model', '0')
    .option('--score <v>', 'v2 (ΔRC) | v1 (PD + ΔRC + TEG) | pd | teg | weights | measured | hybrid; v1 and pd measure PD, measured and hybrid measure single-layer costs (docs/scores.md); default measured, the best on every shipped model', 'measured')
    .option('--score-weights <pd,rc,teg>', 'weights of the v1 combination', '1,1,1')
    .option('--topk <k>', 'k of Top-k Energy Gain: an integer or a percentage of d', '1%')
    .option('--pd', 'also measure Perplexity Drop (implied by --score v1)')
    .option('--allowed <list>', 'measured/hybrid: bit widths to measure each layer at', '2,3,4')
    .option('--group <g>', 'measured/hybrid: group size of the quantizer', '128')
    .option('--symmetric', 'measured/hybrid: symmetric quantization')
    .option('--backbone <b>', 'measured/hybrid: quantizer rtn | gptq', 'rtn')
    .option('--candidates <n|p%>', 'hybrid: layers the v2 score pre-selects for measuring', '50%')
    .option('-o, --out <file>', 'write the analysis JSON here (atomically)', 'analysis.json')
    .option('--no-cache', 'recompute even if a cached analysis exists')
    .option('--device <d>', 'auto | cpu | cuda: where the spectra (Gram matrices) are computed; auto = the GPU when the addon has CUDA and a device is visible; same results', 'auto')
    .option('--json', 'print the analysis JSON instead of a table')
    .action(async (model: string, o: AnalyzeCli) => {
      const score = parseChoice(o.score, '--score', SCORE_VERSIONS);
      const device = parseChoice(o.device, '--device', LINALG_DEVICES);
      const bar = progressBar('analyze', 'steps', !o.json);
      let analysis: Analysis;
      try {
        analysis = await analyzeModel(resolveModelArg(model), {
          calib: o.calib,
          samples: parseInteger(o.samples, '--samples', 1),
          seqlen: parseInteger(o.seqlen, '--seqlen', 2),
          seed: parseInteger(o.seed, '--seed', 0),
          topk: o.topk,
          pd: !!o.pd || scoreNeedsPd(score),
          measure: scoreNeedsMeasured(score)
            ? {
                layers: score === 'hybrid' ? 'hybrid' : 'all',
                candidates: o.candidates,
                allowed: parseBits(o.allowed, '--allowed'),
                groupSize: parseInteger(o.group, '--group', 32),
                symmetric: !!o.symmetric,
                backbone: parseChoice(o.backbone, '--backbone', ['rtn', 'gptq'] as const),
              }
            : undefined,
          cacheDir: o.cache ? undefined : null,
          device,
          onProgress: (p) => bar.update(p.done, p.total, p.stage),
        });
      } finally {
        bar.stop();
      }
      if (o.out) writeJsonAtomic(o.out, analysis);
      if (o.json) return printJson(analysis);
      process.stdout.write(renderAnalysis(analysis, score, parseScoreWeights(o.scoreWeights)));
      if (o.out) process.stdout.write(`analysis written to ${o.out}\n`);
    });
}

export function renderAnalysis(a: Analysis, score: ScoreVersion, weights?: ScoreWeights): string {
  const scores = combineScores(a, score, weights);
  const rank = ranksDescending(scores);
  const m = a.measured;
  const measuredAt = new Map(m?.layers.map((x) => [x.layer, x]) ?? []);
  const rows = a.layers.map((l, i) => [
    l.layer,
    l.deltaRC.toExponential(3),
    l.teg.toExponential(3),
    l.pd === undefined ? '-' : l.pd.toFixed(4),
    l.weightDeltaRC.toExponential(3),
    ...(m ? m.settings.allowed.map((_b, j) => measuredAt.get(i)?.kl[j].toFixed(4) ?? '-') : []),
    scores[i].toFixed(4),
    rank[i],
  ]);
  const measuredHead = m ? m.settings.allowed.map((b) => `KL@${b}b`) : [];
  const out = [
    `model ${a.model.dir} (${a.model.architecture}, ${a.model.numLayers} layers); calibration ${a.settings.calib}, ${a.settings.samples}×${a.settings.seqlen} tokens, seed ${a.settings.seed}`,
    table(['layer', 'ΔRC', `TEG@${a.settings.topk}`, 'PD', 'ΔRC(W)', ...measuredHead, `score ${score}`, 'rank'], rows, rows[0].map(() => 'right' as const)),
  ];
  if (m)
    out.push(`measured: ${m.settings.backbone} g${m.settings.groupSize}, only that layer quantized, KL to full precision per calibration token; ${m.layerRuns} layer runs (${(m.layerRuns / a.model.numLayers).toFixed(1)} full passes), ${m.seconds.toFixed(1)} s${m.candidates ? `; hybrid candidates ${m.candidates.join(',')}` : ''}`);
  // Rank stability of TEG across k (Spearman of each k's ranking vs the chosen k).
  const base = a.layers.map((l) => l.teg);
  const stab = Object.keys(a.layers[0].tegByK).map((k) => `${k}: ${spearman(base, a.layers.map((l) => l.tegByK[k])).toFixed(2)}`);
  out.push(`TEG rank stability (Spearman vs k=${a.settings.topk}): ${stab.join(', ')}`);
  return out.join('\n') + '\n';
}
