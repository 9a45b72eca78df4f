/**
 * The score comparison (lib/lieq/compare.ts): the exhaustive enumeration against a brute-force
 * count, the prefix-sharing plan walk against one full evaluation per plan, the evaluation
 * windows against the perplexity protocol, and `lieq compare-scores` end to end (the optimum
 * is a ceiling: no plan beats it). Also `analyze --score measured` -> `allocate --method exact`.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { loadTokenizer } from '../../lib/io/tokenizer.js';
import { withinBudget } from '../../lib/lieq/allocate.js';
import { evaluatePlans, feasiblePlans, type CompareReport } from '../../lib/lieq/compare.js';
import { LayerVariants, rtnQuantizer, SequenceScorer } from '../../lib/lieq/measured.js';
import { RuntimeModel } from '../../lib/runtime/model.js';
import { loadEvalText, perplexity, planWindows } from '../../lib/runtime/perplexity.js';
import { dataPath } from '../../lib/util/data-dir.js';
import { lieq } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir();
const stories = dataPath('models/stories260K');

describe('feasiblePlans', () => {
  it('lists exactly the plans within the budget (brute-force count), or null past the cap', () => {
    const weights = [1, 2, 1, 1];
    const allowed = [2, 3, 4];
    for (const budget of [2, 2.4, 2.8, 3.3, 4]) {
      let count = 0;
      for (let code = 0; code < 3 ** 4; code++) {
        const bits = [0, 1, 2, 3].map((i) => allowed[Math.floor(code / 3 ** i) % 3]);
        if (withinBudget(bits, weights, budget)) count++;
      }
      const plans = feasiblePlans(weights, allowed, budget, 1000)!;
      expect(plans).toHaveLength(count);
      expect(new Set(plans.map((p) => p.join(','))).size).toBe(count);
      expect(plans.every((p) => withinBudget(p, weights, budget))).toBe(true);
    }
    expect(feasiblePlans(weights, allowed, 4, 80)).toBeNull();
    expect(feasiblePlans(weights, allowed, 4, 81)).toHaveLength(81);
  });
});

describe('plan evaluation on stories260K', () => {
  it('windows score like perplexity(); the prefix walk equals one full evaluation per plan', async () => {
    const model = RuntimeModel.open(stories);
    try {
      const ids = (await loadTokenizer(stories)).encode(loadEvalText('tinystories').text, { addBos: true });
      const seqs = planWindows(ids.length, 128).slice(0, 3).map((w) => ids.subarray(w.start, w.end));
      const scorer = new SequenceScorer(model, seqs);
      const ref = await perplexity(model, ids, { ctx: 128, limit: 3 });
      expect(Math.abs(Math.exp(scorer.fpNll) / ref.perplexity - 1)).toBeLessThan(1e-5);
      expect(scorer.evaluate((l) => model.layer(l)).kl).toBeLessThan(1e-9);

      const variants = new LayerVariants(model, rtnQuantizer, 128, false);
      const plans = [[2, 2, 2, 2, 2], [2, 2, 2, 2, 4], [2, 2, 4, 2, 2], [4, 3, 2, 2, 2], [2, 2, 2, 2, 4]];
      await variants.ensure(scorer, plans);
      const runsBefore = scorer.layerRuns;
      const walked = evaluatePlans(scorer, variants, plans);
      // 4 distinct plans share prefixes: 2 + 2 + 3 + 3 + 4 layer runs (tree nodes) instead of 20.
      expect(scorer.layerRuns - runsBefore).toBe(14);
      expect(walked.size).toBe(4);
      for (const p of plans) {
        const one = scorer.evaluate(variants.planLayers(p));
        const w = walked.get(p.join(','))!;
        expect(w.nll).toBeCloseTo(one.nll, 12);
        expect(w.kl).toBeCloseTo(one.kl, 12);
        // The quantized model under the runtime's own perplexity gives the same number.
        const q = await perplexity(model, ids, { ctx: 128, limit: 3, replaceLayers: new Map(p.map((_b, l) => [l, variants.planLayers(p)(l)])) });
        expect(Math.abs(Math.exp(w.nll) / q.perplexity - 1)).toBeLessThan(1e-5);
      }
      const nllOnly = evaluatePlans(scorer, variants, plans, { kl: false });
      expect(nllOnly.get('2,2,4,2,2')!.nll).toBeCloseTo(walked.get('2,2,4,2,2')!.nll, 6); // native f32-accumulated kernel
      expect(Number.isNaN(nllOnly.get('2,2,4,2,2')!.kl)).toBe(true);
    } finally {
      model.close();
    }
  });
});

describe('lieq compare-scores (CLI)', () => {
  it('stories260K at tiny settings: every score, the baselines, and an optimum no plan beats', () => {
    const out = join(dir, 'compare.json');
    const r = lieq(
      ['compare-scores', 'stories260K', '--promote', '1', '--samples', '2', '--seqlen', '64', '--eval', 'tinystories', '--eval-limit', '2', '--ctx', '128', '--seeds', '10', '-o', out, '--json'],
      { LIEQ_CACHE_DIR: join(dir, 'cache') },
    );
    expect(r.code, r.stderr).toBe(0);
    const rep = JSON.parse(r.stdout) as CompareReport;
    expect(rep.scores.map((s) => s.score)).toEqual(['v2', 'v1', 'pd', 'teg', 'weights', 'measured', 'hybrid']);
    for (const s of rep.scores) {
      expect(s.values).toHaveLength(5);
      expect(s.seconds).toBeGreaterThan(0);
      expect(s.spearman).toBeGreaterThanOrEqual(-1);
      expect(s.spearman).toBeLessThanOrEqual(1);
    }
    // measured: 3 widths × Σ_l (5 − l) = 45 suffix layer runs + the passes of full precision.
    expect(rep.scores.find((s) => s.score === 'measured')!.layerRuns).toBe(45 + 5 + 4);
    const [b] = rep.budgets;
    expect(b.budget).toBeCloseTo(2.4, 12);
    expect(b.promoted).toBe(1);
    expect(b.random.seeds).toBe(10);
    const methods = b.rows.map((x) => x.method);
    for (const m of ['v2 (greedy)', 'v1 (greedy)', 'pd (greedy)', 'teg (greedy)', 'weights (greedy)', 'measured (greedy)', 'measured (exact DP)', 'measured (DP + refine)', 'hybrid (DP + refine)', 'inverse (v2)', 'exhaustive optimum'])
      expect(methods).toContain(m);
    expect('bits' in b.optimum && b.optimum.plans).toBeGreaterThan(20);
    const opt = b.rows.find((x) => x.method === 'exhaustive optimum')!;
    for (const row of b.rows) {
      expect(row.nominalBits).toBeLessThanOrEqual(2.4 + 1e-9);
      expect(row.perplexity.tinystories).toBeGreaterThanOrEqual(opt.perplexity.tinystories * (1 - 1e-6));
      expect(row.gapToOptimum!).toBeGreaterThanOrEqual(-1e-6); // NLL-only search vs full scoring: float rounding
    }
    expect(b.random.perplexity.tinystories[2]).toBeGreaterThanOrEqual(opt.perplexity.tinystories * (1 - 1e-6));
    // Refinement never makes the DP plan worse on the calibration set it measures.
    const dp = b.rows.find((x) => x.method === 'measured (DP + refine)')!;
    expect(dp.refineEvaluations).toBeGreaterThan(1);
    const full = rep.uniform.find((u) => u.bits === 4)!;
    expect(full.perplexity.tinystories).toBeGreaterThan(rep.fullPrecision.perplexity.tinystories);
  });

  it('needs one of --bits / --promote (exit 2)', () => {
    const r = lieq(['compare-scores', 'stories260K']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--bits <list> or --promote <list>/);
  });
});

describe('lieq analyze --score measured -> allocate --method exact (CLI)', () => {
  it('measures every layer, then the DP plan is refined and keeps the budget', () => {
    const env = { LIEQ_CACHE_DIR: join(dir, 'cli-cache') };
    const analysis = join(dir, 'measured-analysis.json');
    const a = lieq(['analyze', 'stories260K', '--calib', 'tinystories', '--samples', '2', '--seqlen', '64', '--score', 'measured', '-o', analysis], env);
    expect(a.code, a.stderr).toBe(0);
    expect(a.stdout).toMatch(/KL@2b/);
    expect(a.stdout).toMatch(/measured: rtn g128/);
    const p = lieq(['allocate', analysis, '--score', 'measured', '--method', 'exact', '--bits', '2.4', '--json']);
    expect(p.code, p.stderr).toBe(0);
    const j = JSON.parse(p.stdout);
    expect(j.accounting.nominalBits).toBeLessThanOrEqual(2.4 + 1e-12);
    expect(j.refinement.cost).toBeLessThanOrEqual(j.refinement.startCost);
    expect(j.plan.score).toBe('measured');
    const mismatch = lieq(['allocate', analysis, '--score', 'measured', '--method', 'exact', '--bits', '2.4', '--group', '64']);
    expect(mismatch.code).toBe(2);
    expect(mismatch.stderr).toMatch(/measured with --group 128/);
    const v2only = join(dir, 'v2-analysis.json');
    expect(lieq(['analyze', 'stories260K', '--calib', 'tinystories', '--samples', '2', '--seqlen', '64', '--score', 'v2', '-o', v2only], env).code).toBe(0);
    const missing = lieq(['allocate', v2only, '--score', 'hybrid', '--bits', '2.4']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--score hybrid needs measured layer costs/);
  });
});
