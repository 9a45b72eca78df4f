/**
 * `lieq compare-scores`: every layer score against every baseline at equal nominal bits, on
 * one model (docs/scores.md). Generalises scripts/experiment-lieq.ts.
 *
 * For each budget: the plan of each score (geometry scores v2, v1, pd, teg, weights: greedy,
 * the paper's allocation; measured: exact DP on the measured costs, without and with the
 * refinement pass; hybrid: DP + refinement over the v2 candidates), the baselines (uniform
 * where the budget is a width, random over N seeds with spread, inverse v2) and, when the
 * feasible plans are few enough, the exhaustive optimum over all of them (lowest perplexity
 * on the first evaluation text) as the ceiling. Each plan's perplexity and KL to full
 * precision on held-out windows, the seconds and layer runs each score took, and the Spearman
 * correlation of each score with measured single-layer sensitivity on the evaluation text.
 *
 * Every quantized layer is made once per (layer, bits) and shared by all plans; plans are
 * evaluated in one depth-first walk that reuses the hidden states of shared plan prefixes.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { loadTokenizer } from '../io/tokenizer.js';
import { RuntimeModel } from '../runtime/model.js';
import { loadEvalText, planWindows } from '../runtime/perplexity.js';
import { UsageError } from '../util/errors.js';
import {
  allocateGreedy,
  allocateInverse,
  allocateRandom,
  nominalAverage,
  withinBudget,
  type Allocation,
} from './allocate.js';
import { combineScores, type Analysis, type ScoreVersion } from './analysis.js';
import { analyzeModel } from './analyze.js';
import {
  allocateMeasured,
  backboneQuantizer,
  calibrationSequences,
  hybridCandidates,
  LayerVariants,
  measureLayerSensitivity,
  resolveCandidates,
  planCost,
  SequenceScorer,
  type CostMetric,
  type MeasuredCosts,
  type RunScore,
} from './measured.js';
import type { Backbone } from './plan.js';
import { measureSensitivity } from './report.js';
import { mean, spearman, stddev } from './stats.js';

export interface CompareOptions {
  /** Nominal budgets (average bits over decoder linears). */
  budgets: number[];
  allowed?: number[];
  calib?: string;
  samples?: number;
  seqlen?: number;
  seed?: number;
  /** Evaluation texts (first = the one the optimum and the verdict use). */
  evalTexts?: string[];
  /** Windows of `ctx` tokens per evaluation text. */
  evalLimit?: number;
  ctx?: number;
  /** Random-allocation seeds 0..randomSeeds−1. */
  randomSeeds?: number;
  /** Hybrid candidate count (integer or percentage of layers). */
  candidates?: string;
  cost?: CostMetric;
  refineRounds?: number;
  /** Largest number of feasible plans searched exhaustively per budget (0: never). */
  exhaustiveMax?: number;
  groupSize?: number;
  symmetric?: boolean;
  backbone?: Backbone;
  onProgress?(stage: string): void;
}

/** How one score was obtained: seconds, decoder layer runs and their full-pass equivalent. */
export interface ScoreCost {
  score: ScoreVersion;
  seconds: number;
  /** Decoder layer runs over the calibration set (one layer on every sequence = 1). */
  layerRuns: number;
  /** layerRuns / L: full forward passes over the calibration set. */
  fullPasses: number;
  note: string;
  values: number[];
  /** Spearman(score, single-layer sensitivity on the first evaluation text). */
  spearman: number;
}

export interface PlanRow {
  method: string;
  score?: ScoreVersion;
  bits: number[];
  nominalBits: number;
  /** Per evaluation text. */
  perplexity: Record<string, number>;
  kl: Record<string, number>;
  /** Allocation (+ refinement) seconds, on top of the score's own cost. */
  allocateSeconds: number;
  /** Plans re-measured by the refinement pass. */
  refineEvaluations?: number;
  /** perplexity / optimum perplexity − 1 on the first text (when the optimum is known). */
  gapToOptimum?: number;
}

export interface BudgetResult {
  budget: number;
  /** Layers promoted from the lowest to the highest width that this budget pays for. */
  promoted: number;
  rows: PlanRow[];
  random: { seeds: number; perplexity: Record<string, [mean: number, std: number, min: number, max: number]>; kl: Record<string, [number, number, number, number]> };
  /** Exhaustive optimum over all feasible plans, or why it was skipped. */
  optimum: { bits: number[]; perplexity: number; plans: number; seconds: number } | { skipped: string };
}

export interface CompareReport {
  model: { dir: string; numLayers: number; architecture: string };
  settings: Required<Omit<CompareOptions, 'onProgress' | 'budgets'>>;
  fullPrecision: { perplexity: Record<string, number> };
  uniform: { bits: number; perplexity: Record<string, number>; kl: Record<string, number> }[];
  sensitivity: { bits: number; deltaLogPpl: number[]; text: string };
  scores: ScoreCost[];
  budgets: BudgetResult[];
  seconds: number;
  date: string;
}

/** Every plan within the budget (allowed widths per layer), or null once more than `max`. */
export function feasiblePlans(weights: readonly number[], allowed: readonly number[], budget: number, max: number): number[][] | null {
  const widths = [...new Set(allowed)].sort((a, b) => a - b);
  const L = weights.length;
  const total = weights.reduce((a, b) => a + b, 0);
  const cap = budget * total + 1e-9 * total;
  // Cheapest completion of layers l.. (all at the lowest width), to prune early.
  const rest = new Array<number>(L + 1).fill(0);
  for (let l = L - 1; l >= 0; l--) rest[l] = rest[l + 1] + widths[0] * weights[l];
  const out: number[][] = [];
  const bits = new Array<number>(L);
  const rec = (l: number, used: number): boolean => {
    if (l === L) {
      out.push([...bits]);
      return out.length <= max;
    }
    for (const b of widths) {
      const u = used + b * weights[l];
      if (u + rest[l + 1] > cap) break;
      bits[l] = b;
      if (!rec(l + 1, u)) return false;
    }
    return true;
  };
  return rec(0, 0) ? out : null;
}

/**
 * Score many plans on one sequence set, walking the tree of their shared prefixes: layers
 * common to several plans run once. `kl: false` scores NLL only.
 */
export function evaluatePlans(scorer: SequenceScorer, variants: LayerVariants, plans: readonly number[][], o: { kl?: boolean } = {}): Map<string, RunScore> {
  const out = new Map<string, RunScore>();
  const L = scorer.model.numLayers;
  const distinct = [...new Map(plans.map((p) => [p.join(','), p])).values()];
  const walk = (l: number, hs: Float32Array[], group: number[][]) => {
    const byBits = new Map<number, number[][]>();
    for (const p of group) {
      if (!byBits.has(p[l])) byBits.set(p[l], []);
      byBits.get(p[l])!.push(p);
    }
    for (const g of byBits.values()) {
      const next = scorer.runLayers(l, l, hs, () => variants.planLayers(g[0])(l));
      if (l === L - 1) out.set(g[0].join(','), scorer.score(next, o));
      else walk(l + 1, next, g);
    }
  };
  if (distinct.length) walk(0, scorer.embedded, distinct);
  return out;
}

const EVAL_WINDOW_SEQS = (ids: Int32Array, ctx: number, limit: number): Int32Array[] => {
  const windows = planWindows(ids.length, ctx).slice(0, limit);
  if (windows.length === 0) throw new UsageError(`the evaluation text has ${ids.length} tokens, fewer than one window of ${ctx}`);
  // Window w scores ids[start+1, end) from ids[start, end−1): the perplexity protocol.
  return windows.map((w) => ids.subarray(w.start, w.end));
};

export async function compareScores(modelDir: string, o: CompareOptions): Promise<CompareReport> {
  const t0 = performance.now();
  const dir = resolve(modelDir);
  const model = RuntimeModel.open(dir, { residency: 'all' });
  const scratch = mkdtempSync(join(tmpdir(), 'lieq-compare-'));
  try {
    const L = model.numLayers;
    const s: CompareReport['settings'] = {
      allowed: [...new Set(o.allowed ?? [2, 3, 4])].sort((a, b) => a - b),
      calib: o.calib ?? 'tinystories',
      samples: o.samples ?? 32,
      seqlen: Math.min(o.seqlen ?? 512, model.config.maxPositionEmbeddings),
      seed: o.seed ?? 0,
      evalTexts: o.evalTexts ?? ['tinystories'],
      evalLimit: o.evalLimit ?? 32,
      ctx: Math.min(o.ctx ?? 512, model.config.maxPositionEmbeddings),
      randomSeeds: o.randomSeeds ?? 10,
      candidates: o.candidates ?? '50%',
      cost: o.cost ?? 'kl',
      refineRounds: o.refineRounds ?? 1,
      exhaustiveMax: o.exhaustiveMax ?? 1000,
      groupSize: o.groupSize ?? 128,
      symmetric: o.symmetric ?? false,
      backbone: o.backbone ?? 'rtn',
    };
    if (o.budgets.length === 0) throw new UsageError('--bits: give at least one budget');
    if (s.randomSeeds < 1) throw new UsageError('--seeds: expected at least 1');
    if (s.evalTexts.length === 0) throw new UsageError('--eval: give at least one text');
    const bmin = s.allowed[0];
    const bmax = s.allowed[s.allowed.length - 1];
    const progress = o.onProgress ?? (() => {});
    const calib = { calib: s.calib, samples: s.samples, seqlen: s.seqlen, seed: s.seed };
    const quant = { allowed: s.allowed, groupSize: s.groupSize, symmetric: s.symmetric, backbone: s.backbone };

    // --- scores, each timed on its own (fresh caches) ---
    progress('geometry (ΔRC, TEG, weight spectra)');
    let t = performance.now();
    const geometry = await analyzeModel(dir, { ...calib, pd: false, cacheDir: scratch });
    const geoSeconds = (performance.now() - t) / 1000;
    progress('perplexity drop');
    t = performance.now();
    const withPd = await analyzeModel(dir, { ...calib, pd: true, cacheDir: scratch }); // geometry from the cache: times PD alone
    const pdSeconds = (performance.now() - t) / 1000;
    progress('measured sensitivity (all layers)');
    const variants = new LayerVariants(model, backboneQuantizer(s.backbone), s.groupSize, s.symmetric);
    const measured = await measureLayerSensitivity(dir, model, { ...calib, ...quant, cacheDir: null, variants });
    progress('hybrid (measured candidates)');
    const candidates = hybridCandidates(geometry.layers.map((l) => l.deltaRC), resolveCandidates(s.candidates, L));
    const hybridVariants = new LayerVariants(model, backboneQuantizer(s.backbone), s.groupSize, s.symmetric);
    const hybrid = await measureLayerSensitivity(dir, model, { ...calib, ...quant, layers: candidates, cacheDir: null, variants: hybridVariants });
    const analysis: Analysis = { ...withPd, measured };
    const hybridAnalysis: Analysis = { ...withPd, measured: { ...hybrid, candidates } };
    const scoreValues = (v: ScoreVersion) => combineScores(v === 'hybrid' ? hybridAnalysis : analysis, v, undefined, s.cost);

    // --- evaluation texts and the single-layer sensitivity the scores are checked against ---
    const tokenizer = await loadTokenizer(dir);
    const texts = s.evalTexts.map((name) => ({ name, ids: tokenizer.encode(loadEvalText(name).text, { addBos: true }) }));
    const scorers = texts.map((x) => new SequenceScorer(model, EVAL_WINDOW_SEQS(x.ids, s.ctx, s.evalLimit)));
    progress(`single-layer sensitivity at ${bmin} bits (${texts[0].name})`);
    const sens = await measureSensitivity(model, texts[0].ids, { ctx: s.ctx, limit: s.evalLimit, bits: bmin, groupSize: s.groupSize, symmetric: s.symmetric });

    const geoRuns = 2 * L; // trained + random reference walks (plus the q/k/v spectra)
    const pdRuns = (L + 1) * L;
    const costs: Omit<ScoreCost, 'values' | 'spearman'>[] = [
      { score: 'v2', seconds: geoSeconds, layerRuns: geoRuns, fullPasses: 2, note: 'trained + random reference walk, q/k/v spectra' },
      { score: 'v1', seconds: geoSeconds + pdSeconds, layerRuns: geoRuns + pdRuns, fullPasses: 2 + L + 1, note: 'geometry + PD (L+1 passes)' },
      { score: 'pd', seconds: pdSeconds, layerRuns: pdRuns, fullPasses: L + 1, note: 'one pass per skipped layer + base' },
      { score: 'teg', seconds: geoSeconds, layerRuns: geoRuns, fullPasses: 2, note: 'same walk as v2' },
      { score: 'weights', seconds: geoSeconds, layerRuns: geoRuns, fullPasses: 2, note: 'same walk as v2 (the weight spectra alone need no data)' },
      { score: 'measured', seconds: measured.seconds, layerRuns: measured.layerRuns, fullPasses: measured.layerRuns / L, note: `${s.allowed.length} widths × every layer, suffixes only` },
      {
        score: 'hybrid', seconds: geoSeconds + hybrid.seconds, layerRuns: geoRuns + hybrid.layerRuns, fullPasses: (geoRuns + hybrid.layerRuns) / L,
        note: `v2 walk + ${s.allowed.length} widths × ${candidates.length} candidates (${candidates.join(',')})`,
      },
    ];
    const scores: ScoreCost[] = costs.map((c) => {
      const values = scoreValues(c.score);
      return { ...c, values, spearman: spearman(values, sens.deltaLogPpl) };
    });

    // --- plan evaluation on every text, memoised ---
    const evaluated = new Map<string, { perplexity: Record<string, number>; kl: Record<string, number> }>();
    const evaluateAll = async (plans: number[][]) => {
      const todo = plans.filter((p) => !evaluated.has(p.join(',')));
      if (!todo.length) return;
      await variants.ensure(scorers[0], todo);
      const per = scorers.map((sc) => evaluatePlans(sc, variants, todo));
      for (const p of todo) {
        const k = p.join(',');
        const e = { perplexity: {} as Record<string, number>, kl: {} as Record<string, number> };
        texts.forEach((x, i) => {
          e.perplexity[x.name] = Math.exp(per[i].get(k)!.nll);
          e.kl[x.name] = per[i].get(k)!.kl;
        });
        evaluated.set(k, e);
      }
    };
    const fullPrecision = { perplexity: Object.fromEntries(texts.map((x, i) => [x.name, Math.exp(scorers[i].fpNll)])) };
    const uniformPlans = s.allowed.map((b) => new Array<number>(L).fill(b));
    await evaluateAll(uniformPlans);
    const uniform = s.allowed.map((b, i) => ({ bits: b, ...evaluated.get(uniformPlans[i].join(','))! }));

    // Refinement measures whole plans on the calibration set with the chosen metric.
    const calibScorer = new SequenceScorer(model, await calibrationSequences(dir, calib));
    const evaluate = planCost(calibScorer, variants, s.cost);

    const budgets: BudgetResult[] = [];
    for (const budget of o.budgets) {
      progress(`budget ${budget}`);
      const inp = (scores: number[]) => ({ scores, weights: withPd.layerWeights, allowed: s.allowed, budget });
      const rows: PlanRow[] = [];
      const timed = async (method: string, score: ScoreVersion | undefined, make: () => Allocation | Promise<Allocation & { refineEvaluations?: number }>) => {
        const t1 = performance.now();
        const a = await make();
        rows.push({ method, ...(score ? { score } : {}), bits: a.bits, nominalBits: a.nominalBits, perplexity: {}, kl: {}, allocateSeconds: (performance.now() - t1) / 1000, ...('refineEvaluations' in a ? { refineEvaluations: a.refineEvaluations } : {}) });
      };
      if (s.allowed.includes(budget)) await timed('uniform', undefined, () => ({ bits: new Array<number>(L).fill(budget), method: 'uniform', nominalBits: budget }));
      for (const v of ['v2', 'v1', 'pd', 'teg', 'weights'] as const) await timed(`${v} (greedy)`, v, () => allocateGreedy(inp(scoreValues(v))));
      const measuredPlan = (m: MeasuredCosts, rounds: number) => async () => {
        const a = await allocateMeasured(m, withPd.layerWeights, { budget, allowed: s.allowed, metric: s.cost, rounds, evaluate });
        return { ...a, ...(a.refinement ? { refineEvaluations: a.refinement.evaluations } : {}) };
      };
      // Ranking alone (promote to the top width in measured order), then the cost model's DP.
      await timed('measured (greedy)', 'measured', () => allocateGreedy(inp(scoreValues('measured'))));
      await timed('measured (exact DP)', 'measured', measuredPlan(measured, 0));
      await timed('measured (DP + refine)', 'measured', measuredPlan(measured, s.refineRounds));
      await timed('hybrid (DP + refine)', 'hybrid', measuredPlan({ ...hybrid, candidates }, s.refineRounds));
      await timed('inverse (v2)', undefined, () => allocateInverse(inp(scoreValues('v2'))));
      const randoms = Array.from({ length: s.randomSeeds }, (_, seed) => allocateRandom(inp(scoreValues('v2')), seed));
      await evaluateAll([...rows.map((r) => r.bits), ...randoms.map((r) => r.bits)]);
      for (const r of rows) Object.assign(r, evaluated.get(r.bits.join(','))!);
      const spread = (key: 'perplexity' | 'kl') =>
        Object.fromEntries(texts.map((x) => {
          const v = randoms.map((r) => evaluated.get(r.bits.join(','))![key][x.name]);
          return [x.name, [mean(v), stddev(v), Math.min(...v), Math.max(...v)] as [number, number, number, number]];
        }));

      // Exhaustive optimum: every feasible plan, NLL only on the first text, in one prefix walk.
      let optimum: BudgetResult['optimum'];
      const t2 = performance.now();
      const all = s.exhaustiveMax > 0 ? feasiblePlans(withPd.layerWeights, s.allowed, budget, s.exhaustiveMax) : null;
      if (!all) optimum = { skipped: s.exhaustiveMax > 0 ? `more than ${s.exhaustiveMax} feasible plans` : 'disabled' };
      else {
        progress(`budget ${budget}: exhaustive search over ${all.length} plans`);
        await variants.ensure(scorers[0], all);
        const nll = evaluatePlans(scorers[0], variants, all, { kl: false });
        let best = all[0];
        for (const p of all) if (nll.get(p.join(','))!.nll < nll.get(best.join(','))!.nll) best = p;
        optimum = { bits: best, perplexity: Math.exp(nll.get(best.join(','))!.nll), plans: all.length, seconds: (performance.now() - t2) / 1000 };
        await evaluateAll([best]);
        rows.push({ method: 'exhaustive optimum', bits: best, nominalBits: nominalAverage(best, withPd.layerWeights), ...evaluated.get(best.join(','))!, allocateSeconds: optimum.seconds });
        for (const r of rows) r.gapToOptimum = r.perplexity[texts[0].name] / optimum.perplexity - 1;
      }
      for (const r of rows) if (!withinBudget(r.bits, withPd.layerWeights, budget)) throw new Error(`internal: ${r.method} exceeds the budget`);
      const total = withPd.layerWeights.reduce((a, b) => a + b, 0);
      budgets.push({
        budget,
        promoted: Math.floor(((budget - bmin) * total) / ((bmax - bmin) * Math.max(...withPd.layerWeights)) + 1e-9),
        rows,
        random: { seeds: s.randomSeeds, perplexity: spread('perplexity'), kl: spread('kl') },
        optimum,
      });
    }
    return {
      model: { dir, numLayers: L, architecture: model.config.architecture },
      settings: s,
      fullPrecision,
      uniform,
      sensitivity: { bits: bmin, deltaLogPpl: sens.deltaLogPpl, text: texts[0].name },
      scores,
      budgets,
      seconds: (performance.now() - t0) / 1000,
      date: new Date().toISOString(),
    };
  } finally {
    model.close();
    rmSync(scratch, { recursive: true, force: true });
  }
}

const f = (x: number | undefined, d = 3) => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(d));

/** The report as markdown: score costs and correlations, then one table per budget. */
export function compareMarkdown(r: CompareReport): string {
  const t0 = r.settings.evalTexts[0];
  const texts = r.settings.evalTexts;
  const lines: string[] = [];
  lines.push(`## ${r.model.dir.split('/').pop()} (${r.model.numLayers} layers)`, '');
  lines.push(
    `Calibration ${r.settings.calib} ${r.settings.samples}×${r.settings.seqlen} (seed ${r.settings.seed}); evaluation ${texts.join(', ')}: first ${r.settings.evalLimit} windows of ${r.settings.ctx}; ` +
      `${r.settings.backbone} g${r.settings.groupSize} ${r.settings.symmetric ? 'symmetric' : 'asymmetric'}; widths {${r.settings.allowed.join(', ')}}; measured cost = ${r.settings.cost}; ` +
      `refinement ${r.settings.refineRounds} round(s); random ${r.settings.randomSeeds} seeds.`,
    '',
  );
  lines.push(`Full precision: ${texts.map((x) => `PPL ${x} ${f(r.fullPrecision.perplexity[x])}`).join(', ')}. Uniform: ${r.uniform.map((u) => `${u.bits}-bit ${f(u.perplexity[t0])}`).join(', ')} (${t0}).`, '');
  lines.push('| score | seconds | layer runs (full passes) | Spearman vs sensitivity | how |', '|---|---|---|---|---|');
  for (const s of r.scores) lines.push(`| ${s.score} | ${f(s.seconds, 2)} | ${s.layerRuns} (${f(s.fullPasses, 1)}) | ${f(s.spearman, 2)} | ${s.note} |`);
  lines.push('', `Sensitivity: Δ log PPL on ${r.sensitivity.text} with only that layer at ${r.sensitivity.bits} bits: ${r.sensitivity.deltaLogPpl.map((x) => f(x, 3)).join(', ')}.`, '');
  const head = ['budget', 'method', 'bits', ...texts.map((x) => `PPL ${x}`), ...texts.map((x) => `KL ${x}`), 'vs optimum', 'alloc s'];
  lines.push(`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`);
  for (const b of r.budgets) {
    const label = `${f(b.budget, 3)} (k=${b.promoted})`;
    const best = Math.min(...b.rows.filter((x) => x.method !== 'exhaustive optimum').map((x) => x.perplexity[t0]));
    for (const row of b.rows) {
      const ppl = texts.map((x) => (x === t0 && row.perplexity[x] === best ? `**${f(row.perplexity[x])}**` : f(row.perplexity[x])));
      lines.push(`| ${label} | ${row.method} | ${row.bits.join(',')} | ${ppl.join(' | ')} | ${texts.map((x) => f(row.kl[x], 4)).join(' | ')} | ${row.gapToOptimum === undefined ? '-' : `${Math.abs(row.gapToOptimum) < 5e-4 ? '0.0' : (100 * row.gapToOptimum).toFixed(1)}%`} | ${f(row.allocateSeconds, 2)} |`);
    }
    const rp = texts.map((x) => `${f(b.random.perplexity[x][0])} ± ${f(b.random.perplexity[x][1])} [${f(b.random.perplexity[x][2], 2)}, ${f(b.random.perplexity[x][3], 2)}]`);
    const rk = texts.map((x) => `${f(b.random.kl[x][0], 4)} ± ${f(b.random.kl[x][1], 4)}`);
    lines.push(`| ${label} | random (${b.random.seeds} seeds) | - | ${rp.join(' | ')} | ${rk.join(' | ')} | - | - |`);
    if ('skipped' in b.optimum) lines.push(`| ${label} | exhaustive optimum | skipped: ${b.optimum.skipped} | ${texts.map(() => '-').join(' | ')} | ${texts.map(() => '-').join(' | ')} | - | - |`);
  }
  return lines.join('\n') + '\n';
}
