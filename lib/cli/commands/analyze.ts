import type { Command } from 'commander';

import { analyzeModel } from '../../lieq/analyze.js';
import { combineScores, type Analysis, SCORE_VERSIONS, parseScoreWeights, scoreNeedsPd, type ScoreVersion, type ScoreWeights } from '../../lieq/analysis.js';
import { ranksDescending, spearman } from '../../lieq/stats.js';
import { resolveModelArg } from '../../util/data-dir.js';
import { writeJsonAtomic } from '../../util/atomic.js';
import { printJson, table } from '../format.js';
import { parseChoice, parseInteger } from '../options.js';
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
  out?: string;
  cache: boolean;
  json?: boolean;
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
    .option('--score <v>', 'v2 (ΔRC) | v1 (PD + ΔRC + TEG) | pd | teg | weights; v1 and pd measure PD', 'v2')
    .option('--score-weights <pd,rc,teg>', 'weights of the v1 combination', '1,1,1')
    .option('--topk <k>', 'k of Top-k Energy Gain: an integer or a percentage of d', '1%')
    .option('--pd', 'also measure Perplexity Drop (implied by --score v1)')
    .option('-o, --out <file>', 'write the analysis JSON here (atomically)', 'analysis.json')
    .option('--no-cache', 'recompute even if a cached analysis exists')
    .option('--json', 'print the analysis JSON instead of a table')
    .action(async (model: string, o: AnalyzeCli) => {
      const score = parseChoice(o.score, '--score', SCORE_VERSIONS);
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
          cacheDir: o.cache ? undefined : null,
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
  const rows = a.layers.map((l, i) => [
    l.layer,
    l.deltaRC.toExponential(3),
    l.teg.toExponential(3),
    l.pd === undefined ? '-' : l.pd.toFixed(4),
    l.weightDeltaRC.toExponential(3),
    scores[i].toFixed(4),
    rank[i],
  ]);
  const out = [
    `model ${a.model.dir} (${a.model.architecture}, ${a.model.numLayers} layers); calibration ${a.settings.calib}, ${a.settings.samples}×${a.settings.seqlen} tokens, seed ${a.settings.seed}`,
    table(['layer', 'ΔRC', `TEG@${a.settings.topk}`, 'PD', 'ΔRC(W)', `score ${score}`, 'rank'], rows, ['right', 'right', 'right', 'right', 'right', 'right', 'right']),
  ];
  // Rank stability of TEG across k (Spearman of each k's ranking vs the chosen k).
  const base = a.layers.map((l) => l.teg);
  const stab = Object.keys(a.layers[0].tegByK).map((k) => `${k}: ${spearman(base, a.layers.map((l) => l.tegByK[k])).toFixed(2)}`);
  out.push(`TEG rank stability (Spearman vs k=${a.settings.topk}): ${stab.join(', ')}`);
  return out.join('\n') + '\n';
}
