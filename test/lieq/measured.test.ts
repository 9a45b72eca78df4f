/**
 * Measured single-layer sensitivity (lib/lieq/measured.ts): the prefix-reuse walk against a
 * full forward recomputation scored by an independent float64 reference, cache and resume,
 * and the scores built from it.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { combineScores, type Analysis } from '../../lib/lieq/analysis.js';
import { calibrationSequences, hybridCandidates, LayerVariants, measureLayerSensitivity, resolveCandidates, rtnQuantizer, type LayerQuantizer, type MeasuredCosts } from '../../lib/lieq/measured.js';
import { captureActivations } from '../../lib/runtime/hooks.js';
import { quantizeLayerRtn } from '../../lib/quant/quantize-layer.js';
import { forward } from '../../lib/runtime/forward.js';
import { RuntimeModel, type LayerWeights } from '../../lib/runtime/model.js';
import { dataPath } from '../../lib/util/data-dir.js';
import { UsageError } from '../../lib/util/errors.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir();
const stories = dataPath('models/stories260K');
const settings = { calib: 'tinystories', samples: 2, seqlen: 64, seed: 3, allowed: [2, 4] };

/** Float64 log-softmax of one row. */
function logSoftmax(x: Float32Array, off: number, V: number): Float64Array {
  let m = -Infinity;
  for (let i = 0; i < V; i++) m = Math.max(m, x[off + i]);
  let s = 0;
  for (let i = 0; i < V; i++) s += Math.exp(x[off + i] - m);
  const z = m + Math.log(s);
  return Float64Array.from({ length: V }, (_, i) => x[off + i] - z);
}

/** Mean NLL and KL(fp ‖ q) from two full forward passes per sequence (no prefix reuse). */
function reference(model: RuntimeModel, seqs: Int32Array[], replace: Map<number, LayerWeights>): { nll: number; kl: number; fpNll: number } {
  const V = model.config.vocabSize;
  let nll = 0, kl = 0, fpNll = 0, n = 0;
  for (const ids of seqs) {
    const p = forward(model, ids, { logits: 'all' }).logits!;
    const q = forward(model, ids, { logits: 'all', replaceLayers: replace }).logits!;
    for (let r = 0; r < ids.length - 1; r++) {
      const lp = logSoftmax(p, r * V, V);
      const lq = logSoftmax(q, r * V, V);
      for (let i = 0; i < V; i++) kl += Math.exp(lp[i]) * (lp[i] - lq[i]);
      nll -= lq[ids[r + 1]];
      fpNll -= lp[ids[r + 1]];
      n++;
    }
  }
  return { nll: nll / n, kl: kl / n, fpNll: fpNll / n };
}

describe('measureLayerSensitivity on stories260K', () => {
  it('prefix reuse gives the numbers of a full forward recomputation (within 1e-5)', async () => {
    const model = RuntimeModel.open(stories);
    try {
      const m = await measureLayerSensitivity(stories, model, { ...settings, cacheDir: null });
      expect(m.layers.map((l) => l.layer)).toEqual([0, 1, 2, 3, 4]);
      // Cost: one full-precision pass (5 layers) + per width Σ_l (L − l) = 15 suffix layers
      expect(m.layerRuns).toBe(5 + 2 * 15 + 4); // + the walk itself (layers 0..3)
      const seqs = await calibrationSequences(stories, settings);
      const close = (a: number, b: number) => expect(Math.abs(a - b), `${a} vs ${b}`).toBeLessThan(1e-5 * Math.max(1, Math.abs(b)));
      for (const l of [0, 2, 4]) {
        for (const [j, b] of settings.allowed.entries()) {
          const ref = reference(model, seqs, new Map([[l, await quantizeLayerRtn(model.layer(l), b, 128, false)]]));
          close(m.baseNll, ref.fpNll);
          close(m.layers[l].deltaNll[j], ref.nll - ref.fpNll);
          close(m.layers[l].kl[j], ref.kl);
        }
      }
      // More bits, less damage; 2-bit damage is real on a trained model.
      for (const l of m.layers) {
        expect(l.kl[0]).toBeGreaterThan(l.kl[1]);
        expect(l.kl[0]).toBeGreaterThan(1e-3);
      }
    } finally {
      model.close();
    }
  });

  it('caches after every layer: a subset first, then the rest resumes; a rerun reads the cache', async () => {
    const cacheDir = join(dir, 'cache');
    const model = RuntimeModel.open(stories);
    try {
      const part = await measureLayerSensitivity(stories, model, { ...settings, layers: [3, 1], cacheDir });
      expect(part.layers.map((l) => l.layer)).toEqual([1, 3]);
      // Suffixes from layers 1 and 3 only (4 + 2 layers per width), walk up to layer 3.
      expect(part.layerRuns).toBe(5 + 2 * (4 + 2) + 3);
      expect(readdirSync(cacheDir).filter((f) => f.startsWith('measured-'))).toHaveLength(1);
      const stages: string[] = [];
      const all = await measureLayerSensitivity(stories, model, { ...settings, cacheDir, onProgress: (p) => stages.push(p.stage) });
      expect(all.layers[1]).toEqual(part.layers[0]);
      expect(all.layers[3]).toEqual(part.layers[1]);
      expect(stages.some((s) => s.startsWith('layer 1 ') || s.startsWith('layer 3 '))).toBe(false);
      expect(stages.filter((s) => s.startsWith('layer '))).toHaveLength(3 * 2);
      let calls = 0;
      const again = await measureLayerSensitivity(stories, model, { ...settings, cacheDir, onProgress: () => calls++ });
      expect(again.layers).toEqual(all.layers);
      expect(again.layerRuns).toBe(0);
      expect(calls).toBe(0);
      // Other settings are another cache entry.
      const other = await measureLayerSensitivity(stories, model, { ...settings, seed: 4, layers: [4], cacheDir });
      expect(other.layerRuns).toBeGreaterThan(0);
    } finally {
      model.close();
    }
  });

  it('a backbone gets the full-precision inputs of its layer; gptq runs through it', async () => {
    const model = RuntimeModel.open(stories);
    try {
      const seqs = await calibrationSequences(stories, settings);
      const want = captureActivations(model, seqs, { layerInputs: [2] }).layerInputs.get(2)!;
      let checked = 0;
      const spy: LayerQuantizer = async (l, w, ctx) => {
        if (l === 2) {
          expect(ctx.layerInputs).toHaveLength(want.length);
          ctx.layerInputs.forEach((x, i) => expect(x).toEqual(want[i]));
          checked++;
        }
        return rtnQuantizer(l, w, ctx);
      };
      const variants = new LayerVariants(model, spy, 128, false);
      await measureLayerSensitivity(stories, model, { ...settings, allowed: [2], layers: [2], cacheDir: null, variants });
      expect(checked).toBe(1);
      const rtn = await measureLayerSensitivity(stories, model, { ...settings, allowed: [2], layers: [4], cacheDir: null });
      const gptq = await measureLayerSensitivity(stories, model, { ...settings, allowed: [2], layers: [4], backbone: 'gptq', cacheDir: null });
      expect(Number.isFinite(gptq.layers[0].kl[0])).toBe(true);
      expect(gptq.layers[0].kl[0]).not.toBe(rtn.layers[0].kl[0]);
    } finally {
      model.close();
    }
  });

  it('refuses widths outside 2/3/4/8 and layers outside the model', async () => {
    const model = RuntimeModel.open(stories);
    try {
      await expect(measureLayerSensitivity(stories, model, { ...settings, allowed: [5], cacheDir: null })).rejects.toThrow(UsageError);
      await expect(measureLayerSensitivity(stories, model, { ...settings, layers: [5], cacheDir: null })).rejects.toThrow(/not a layer/);
    } finally {
      model.close();
    }
  });
});

describe('measured and hybrid scores', () => {
  const measured = (layers: number[], kl: number[], candidates?: number[]): MeasuredCosts => ({
    format: 'lieq-measured/1',
    settings: { calib: 'x', samples: 1, seqlen: 2, seed: 0, allowed: [2, 4], groupSize: 128, symmetric: false, backbone: 'rtn' },
    baseNll: 1,
    layers: layers.map((l, i) => ({ layer: l, kl: [kl[i], kl[i] / 10], deltaNll: [-kl[i], 0] })),
    layerRuns: 0,
    seconds: 0,
    ...(candidates ? { candidates } : {}),
  });
  const analysis = (m?: MeasuredCosts): Analysis =>
    ({
      layers: [0.5, 0.1, 0.9, 0.3].map((rc, layer) => ({ layer, deltaRC: rc, teg: 0 })),
      layerWeights: [1, 1, 1, 1],
      ...(m ? { measured: m } : {}),
    }) as unknown as Analysis;

  it('measured = cost at the lowest width; nll metric selectable; needs every layer', () => {
    expect(combineScores(analysis(measured([0, 1, 2, 3], [0.2, 0.8, 0.1, 0.4])), 'measured')).toEqual([0.2, 0.8, 0.1, 0.4]);
    expect(combineScores(analysis(measured([0, 1, 2, 3], [0.2, 0.8, 0.1, 0.4])), 'measured', undefined, 'nll')).toEqual([-0.2, -0.8, -0.1, -0.4]);
    expect(() => combineScores(analysis(), 'measured')).toThrow(/--score measured/);
    expect(() => combineScores(analysis(measured([0, 2], [1, 2])), 'measured')).toThrow(/every layer/);
  });

  it('hybrid: candidates rank by measured cost above all others, which keep the v2 order', () => {
    const s = combineScores(analysis(measured([0, 2], [0.7, 0.1], [0, 2])), 'hybrid');
    const order = s.map((x, i) => [x, i]).sort((a, b) => b[0] - a[0]).map(([, i]) => i);
    expect(order).toEqual([0, 2, 3, 1]);
  });

  it('candidates: top of the geometry score; counts from integers or percentages', () => {
    expect(hybridCandidates([0.5, 0.1, 0.9, 0.3], 2)).toEqual([0, 2]);
    expect(resolveCandidates('50%', 5)).toBe(3);
    expect(resolveCandidates('1', 5)).toBe(2); // at least 2 where there are 2
    expect(resolveCandidates('9', 5)).toBe(5);
    expect(() => resolveCandidates('x', 5)).toThrow(UsageError);
  });
});
