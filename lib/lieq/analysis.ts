/**
 * The analysis file that `lieq analyze` writes and `lieq allocate` reads: per-layer metrics,
 * the settings they were computed with, and the combined score (spec §4).
 */
import { readFileSync } from 'node:fs';

import { FileError, FormatError, UsageError } from '../util/errors.js';
import type { CostMetric, MeasuredCosts } from './measured.js';
import { minMax } from './stats.js';

export const ANALYSIS_FORMAT = 'lieq-analysis/1';
/**
 * Scores [ours, spec §4 and the §7 ablation]: v2 = ΔRC (default), v1 = weighted min-max
 * combination of PD, ΔRC and TEG; pd / teg alone; weights = the data-free ΔRC of W_q,k,v;
 * measured = each layer's measured damage when quantized alone (lib/lieq/measured.ts);
 * hybrid = v2 pre-selects candidates, measured costs rank them. docs/scores.md has the costs.
 */
export const SCORE_VERSIONS = ['v2', 'v1', 'pd', 'teg', 'weights', 'measured', 'hybrid'] as const;
export type ScoreVersion = (typeof SCORE_VERSIONS)[number];

/**
 * The default score. Measured single-layer costs with the exact allocation found the
 * exhaustive optimum at every budget on both shipped models, where every geometry score (the
 * paper's v2 included) was 53–151% worse in perplexity (docs/scores.md, docs/results.md), so
 * `measured` is the default wherever costs can be measured; `auto` (for `lieq allocate`, which
 * reads an existing analysis) picks measured/hybrid when the analysis has costs, else v2.
 */
export const DEFAULT_SCORE: ScoreVersion = 'measured';

export function resolveScore(spec: string, a: Analysis | undefined, parse: (v: string) => ScoreVersion): ScoreVersion {
  if (spec !== 'auto') return parse(spec);
  if (!a) return DEFAULT_SCORE;
  if (a.measured) return a.measured.candidates ? 'hybrid' : 'measured';
  return 'v2';
}

/** `--method auto`: the exact DP where measured costs exist (greedy promotion wastes them), greedy otherwise. */
export function resolveMethod(spec: string, score: ScoreVersion, parse: (v: string) => 'greedy' | 'exact'): 'greedy' | 'exact' {
  if (spec !== 'auto') return parse(spec);
  return scoreNeedsMeasured(score) ? 'exact' : 'greedy';
}

/** Scores that need Perplexity Drop measured. */
export function scoreNeedsPd(v: ScoreVersion): boolean {
  return v === 'v1' || v === 'pd';
}

/** Scores that need measured single-layer costs (`analyze --score measured|hybrid`). */
export function scoreNeedsMeasured(v: ScoreVersion): boolean {
  return v === 'measured' || v === 'hybrid';
}

/** "1,1,1" -> weights of PD, ΔRC, TEG for --score v1. */
export function parseScoreWeights(s: string): ScoreWeights {
  const parts = s.split(',').map(Number);
  if (parts.length !== 3 || !parts.every((x) => Number.isFinite(x) && x >= 0) || parts.every((x) => x === 0))
    throw new UsageError(`--score-weights: expected three non-negative numbers "pd,rc,teg" (not all zero), got "${s}"`);
  return { pd: parts[0], rc: parts[1], teg: parts[2] };
}

export interface AnalysisSettings {
  calib: string;
  samples: number;
  seqlen: number;
  seed: number;
  /** k of TEG per projection width d (resolved from --topk). */
  topk: string;
  /** Whether PD (L+1 forward passes) was measured. */
  perplexityDrop: boolean;
}

export interface LayerMetrics {
  layer: number;
  /** ΔRC = mean over q,k,v of RC(trained) − RC(reference). */
  deltaRC: number;
  /** TEG = mean over q,k,v of E_k(trained) − E_k(reference). */
  teg: number;
  /** PD = log PPL(layer skipped) − log PPL(model); absent when not measured. */
  pd?: number;
  /** Per projection, for the report. */
  rc: { q: number; k: number; v: number };
  rcReference: { q: number; k: number; v: number };
  /** TEG at other k for rank-stability reporting, keyed by the k spec ("1", "8", "32", "1%", "5%"). */
  tegByK: Record<string, number>;
  /** Data-free variant on the singular values of W_q, W_k, W_v. */
  weightDeltaRC: number;
  weightTeg: number;
}

export interface Analysis {
  format: typeof ANALYSIS_FORMAT;
  model: { dir: string; architecture: string; numLayers: number; hiddenSize: number; fingerprint: string };
  settings: AnalysisSettings;
  /** Decoder-linear weight count per layer (allocation costs). */
  layerWeights: number[];
  /** Base log-perplexity of the calibration text, when PD was measured. */
  baseLogPpl?: number;
  layers: LayerMetrics[];
  /** Measured single-layer costs (all layers, or the hybrid candidates). */
  measured?: MeasuredCosts;
}

export interface ScoreWeights {
  pd: number;
  rc: number;
  teg: number;
}

/**
 * Combined score per layer. v2: S = ΔRC (geometry only). v1: min-max normalised PD, ΔRC and
 * TEG, weighted (equal by default) [ours].
 */
export function combineScores(a: Analysis, version: ScoreVersion, w: ScoreWeights = { pd: 1, rc: 1, teg: 1 }, metric: CostMetric = 'kl'): number[] {
  if (version === 'v2') return a.layers.map((l) => l.deltaRC);
  if (version === 'measured' || version === 'hybrid') return measuredScores(a, version, metric);
  if (version === 'teg') return a.layers.map((l) => l.teg);
  if (version === 'weights') return a.layers.map((l) => l.weightDeltaRC);
  if (a.layers.some((l) => l.pd === undefined))
    throw new UsageError(`--score ${version} needs Perplexity Drop: rerun \`lieq analyze\` with --pd (or --score ${version})`);
  if (version === 'pd') return a.layers.map((l) => l.pd as number);
  const pd = minMax(a.layers.map((l) => l.pd as number));
  const rc = minMax(a.layers.map((l) => l.deltaRC));
  const teg = minMax(a.layers.map((l) => l.teg));
  const total = w.pd + w.rc + w.teg;
  return a.layers.map((_, i) => (w.pd * pd[i] + w.rc * rc[i] + w.teg * teg[i]) / total);
}

/**
 * measured: each layer's cost at the lowest measured width (its damage when left at the
 * base). hybrid: candidates rank by that cost, in [1, 2], above every other layer, which
 * keeps its v2 order in [0, 0.5].
 */
function measuredScores(a: Analysis, version: 'measured' | 'hybrid', metric: CostMetric): number[] {
  const m = a.measured;
  const L = a.layers.length;
  const hint = `rerun \`lieq analyze\` with --score ${version}`;
  if (!m) throw new UsageError(`--score ${version} needs measured layer costs: ${hint}`);
  const cost = new Map(m.layers.map((l) => [l.layer, metric === 'kl' ? l.kl[0] : l.deltaNll[0]]));
  if (version === 'measured') {
    if (cost.size !== L) throw new UsageError(`--score measured needs every layer measured (the analysis has ${cost.size} of ${L}): ${hint}`);
    return a.layers.map((_, i) => cost.get(i)!);
  }
  const candidates = m.candidates ?? [...cost.keys()];
  if (candidates.some((c) => !cost.has(c))) throw new UsageError(`--score hybrid: candidate layers lack measured costs: ${hint}`);
  const scaled = minMax(candidates.map((c) => cost.get(c)!));
  const geometry = minMax(a.layers.map((l) => l.deltaRC));
  const out = geometry.map((g) => 0.5 * g);
  candidates.forEach((c, i) => (out[c] = 1 + scaled[i]));
  return out;
}

export function loadAnalysis(path: string): Analysis {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code) throw new FileError(path, code === 'ENOENT' ? 'analysis file not found (write one with `lieq analyze MODEL -o FILE`)' : `cannot read analysis file (${code})`, { cause: err });
    throw new FormatError(path, `not valid JSON (${(err as Error).message})`, { cause: err, code: 'E_ANALYSIS' });
  }
  const a = raw as Partial<Analysis>;
  if (a?.format !== ANALYSIS_FORMAT) throw new FormatError(path, `not a lieq analysis file ("format" must be "${ANALYSIS_FORMAT}")`, { code: 'E_ANALYSIS' });
  if (!Array.isArray(a.layers) || !Array.isArray(a.layerWeights) || a.layers.length !== a.layerWeights.length || a.layers.length === 0)
    throw new FormatError(path, '"layers" and "layerWeights" must be non-empty arrays of equal length', { code: 'E_ANALYSIS' });
  a.layers.forEach((l, i) => {
    if (l.layer !== i || !Number.isFinite(l.deltaRC) || !Number.isFinite(l.teg))
      throw new FormatError(path, `layers[${i}]: needs layer = ${i} and finite deltaRC and teg`, { code: 'E_ANALYSIS' });
  });
  return a as Analysis;
}
