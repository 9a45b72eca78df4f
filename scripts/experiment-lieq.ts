/**
 * The LieQ experiment of issue 6 on every shipped real model (reproduce: `npm run experiment:lieq`).
 *
 * For budgets of k = 1, 2, 3 promoted layers above a 2-bit base (nominal 2 + 2k/L) and uniform
 * 3/4 bits: perplexity on TinyStories and WikiText-2 (first N windows of 512 tokens) of
 *   full precision, uniform, LieQ v2 (ΔRC), LieQ v1 (PD+ΔRC+TEG), random allocation (5 seeds:
 *   mean ± std, min, max) and inverse allocation, all with the RTN backbone (MSE clipping, g128
 *   or per-channel where the layer is narrower).
 * Calibration for the diagnostics: 32 × 512 tokens of TinyStories (seed 0), a 4% sample of
 * the same text the TinyStories perplexity is measured on (the only in-domain text shipped).
 * Quantized layers are built once per (layer, bits) and swapped into the runtime in memory;
 * they are the same tensors `lieq quantize` writes.
 * GPTQ rows (issue 7; LIEQ_EXP_GPTQ=0 skips them): uniform 2/3/4 bits and the LieQ v2/v1 plans
 * with the GPTQ backbone (MSE grid, g128, damp 1%, layer-sequential, true-sequential), calibrated
 * on LIEQ_EXP_GPTQ_SAMPLES (128) × 512 tokens drawn from the last 60% of the TinyStories text, so
 * calibration never overlaps the evaluation windows (the first ones).
 * Writes bench/results/lieq-experiment-<date>.json and prints a markdown table.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpus, tmpdir } from 'node:os';

import { loadTokenizer } from '../lib/io/tokenizer.js';
import { allocateGreedy, allocateInverse, allocateRandom, allocateUniform, type Allocation } from '../lib/lieq/allocate.js';
import { analyzeModel } from '../lib/lieq/analyze.js';
import { combineScores } from '../lib/lieq/analysis.js';
import { measureSensitivity } from '../lib/lieq/report.js';
import { mean, spearman, stddev } from '../lib/lieq/stats.js';
import { Checkpoint } from '../lib/io/checkpoint.js';
import { calibrationInputs, propagateLayer, quantizeLayerGptq } from '../lib/quant/gptq-calibrate.js';
import { quantizeLayerRtn } from '../lib/quant/quantize-layer.js';
import type { LayerWeights } from '../lib/runtime/model.js';
import { RuntimeModel } from '../lib/runtime/model.js';
import { loadEvalText, perplexity } from '../lib/runtime/perplexity.js';
import { dataPath, packageRootDir } from './script-util.js';

const WINDOWS = Number(process.env.LIEQ_EXP_WINDOWS ?? 128);
const MODELS = ['stories260K', 'tinystories-656K'];
const SEEDS = [0, 1, 2, 3, 4];
const GROUP = 128;
const GPTQ = process.env.LIEQ_EXP_GPTQ !== '0';
const GPTQ_SAMPLES = Number(process.env.LIEQ_EXP_GPTQ_SAMPLES ?? 128);

/** The last 60% of the TinyStories text as a file: GPTQ calibration disjoint from the evaluation windows. */
function heldOutCalibrationFile(): string {
  const text = loadEvalText('tinystories').text;
  const file = join(mkdtempSync(join(tmpdir(), 'lieq-exp-')), 'tinystories-tail.txt');
  writeFileSync(file, text.slice(Math.floor(text.length * 0.4)));
  return file;
}

interface Row {
  model: string;
  budget: string;
  nominal: number;
  method: string;
  bits: number[] | null;
  tinystories: number;
  wikitext2: number;
  spread?: { tinystories: [number, number, number]; wikitext2: [number, number, number] };
}

async function main() {
  const rows: Row[] = [];
  const meta: Record<string, unknown> = {};
  for (const name of MODELS) {
    const dir = dataPath(`models/${name}`);
    const model = RuntimeModel.open(dir);
    const L = model.config.numLayers;
    const tok = await loadTokenizer(dir);
    const texts = {
      tinystories: tok.encode(loadEvalText('tinystories').text, { addBos: true }),
      wikitext2: tok.encode(loadEvalText('wikitext2').text, { addBos: true }),
    };
    const ctx = Math.min(512, model.config.maxPositionEmbeddings);
    const analysis = await analyzeModel(dir, { calib: 'tinystories', samples: 32, seqlen: 512, seed: 0, pd: true, cacheDir: null });
    const v2 = combineScores(analysis, 'v2');
    const v1 = combineScores(analysis, 'v1');
    const weights = analysis.layerWeights;

    const qcache = new Map<string, LayerWeights>();
    const quantized = async (l: number, bits: number) => {
      const key = `${l}:${bits}`;
      if (!qcache.has(key)) qcache.set(key, await quantizeLayerRtn(model.layer(l), bits, GROUP, false));
      return qcache.get(key)!;
    };
    const evalBits = async (bits: number[] | null) => {
      const replace = new Map<number, LayerWeights>();
      if (bits) for (let l = 0; l < L; l++) replace.set(l, await quantized(l, bits[l]));
      const ppl = async (ids: Int32Array) => (await perplexity(model, ids, { ctx, limit: WINDOWS, replaceLayers: replace })).perplexity;
      return { tinystories: await ppl(texts.tinystories), wikitext2: await ppl(texts.wikitext2) };
    };

    const fp = await evalBits(null);
    rows.push({ model: name, budget: 'fp32', nominal: 32, method: 'full precision', bits: null, ...fp });
    for (const u of [2, 3, 4]) {
      const a = allocateUniform(weights, u);
      rows.push({ model: name, budget: `uniform ${u}`, nominal: u, method: 'uniform', bits: a.bits, ...(await evalBits(a.bits)) });
    }
    for (const k of [1, 2, 3]) {
      if (k > L) continue;
      const budget = 2 + (2 * k) / L;
      const label = `2+2·${k}/${L} = ${budget.toFixed(3)}`;
      const inp = (scores: number[]) => ({ scores, weights, allowed: [2, 3, 4], budget });
      const add = async (method: string, a: Allocation) => rows.push({ model: name, budget: label, nominal: a.nominalBits, method, bits: a.bits, ...(await evalBits(a.bits)) });
      await add('LieQ v2 (ΔRC)', allocateGreedy(inp(v2)));
      await add('LieQ v1 (PD+ΔRC+TEG)', allocateGreedy(inp(v1)));
      await add('inverse (v2)', allocateInverse(inp(v2)));
      const rs = [];
      for (const s of SEEDS) rs.push({ a: allocateRandom(inp(v2), s), ...(await evalBits(allocateRandom(inp(v2), s).bits)) });
      const ts = rs.map((r) => r.tinystories);
      const ws = rs.map((r) => r.wikitext2);
      rows.push({
        model: name, budget: label, nominal: rs[0].a.nominalBits, method: `random (${SEEDS.length} seeds)`, bits: null,
        tinystories: mean(ts), wikitext2: mean(ws),
        spread: { tinystories: [stddev(ts), Math.min(...ts), Math.max(...ts)], wikitext2: [stddev(ws), Math.min(...ws), Math.max(...ws)] },
      });
    }
    if (GPTQ) {
      // Layer-sequential GPTQ depends on every earlier layer's quantization: one run per plan.
      const calibFile = heldOutCalibrationFile();
      const ck = Checkpoint.open(dir);
      const gptqLayers = async (bits: number[]) => {
        const calib = await calibrationInputs(dir, model.config, { data: calibFile, samples: GPTQ_SAMPLES, seqlen: 512, seed: 0 }, (ids) => ck.readRowsF32('model.embed_tokens.weight', ids));
        const layers: LayerWeights[] = [];
        for (let l = 0; l < L; l++) {
          layers.push(await quantizeLayerGptq(model, model.layer(l), calib.hidden, { bits: bits[l], groupSize: GROUP }));
          if (l < L - 1) propagateLayer(model, layers[l], calib.hidden);
        }
        return layers;
      };
      const evalGptq = async (bits: number[]) => {
        const layers = await gptqLayers(bits);
        const replace = new Map(layers.map((w, l) => [l, w]));
        const ppl = async (ids: Int32Array) => (await perplexity(model, ids, { ctx, limit: WINDOWS, replaceLayers: replace })).perplexity;
        return { tinystories: await ppl(texts.tinystories), wikitext2: await ppl(texts.wikitext2) };
      };
      for (const u of [2, 3, 4]) {
        const a = allocateUniform(weights, u);
        rows.push({ model: name, budget: `uniform ${u}`, nominal: u, method: 'uniform + GPTQ', bits: a.bits, ...(await evalGptq(a.bits)) });
      }
      for (const k of [1, 2, 3]) {
        if (k > L) continue;
        const budget = 2 + (2 * k) / L;
        const label = `2+2·${k}/${L} = ${budget.toFixed(3)}`;
        const inp = (scores: number[]) => ({ scores, weights, allowed: [2, 3, 4], budget });
        for (const [method, scores] of [['LieQ v2 (ΔRC) + GPTQ', v2], ['LieQ v1 (PD+ΔRC+TEG) + GPTQ', v1]] as const) {
          const a = allocateGreedy(inp(scores));
          rows.push({ model: name, budget: label, nominal: a.nominalBits, method, bits: a.bits, ...(await evalGptq(a.bits)) });
        }
      }
      ck.close();
    }
    const sens = await measureSensitivity(model, texts.tinystories, { ctx, limit: WINDOWS, groupSize: GROUP, symmetric: false });
    meta[name] = {
      layers: L,
      analysis: analysis.layers,
      sensitivity: sens,
      spearman: { v2: spearman(v2, sens.deltaLogPpl), v1: spearman(v1, sens.deltaLogPpl), pd: spearman(analysis.layers.map((l) => l.pd!), sens.deltaLogPpl), teg: spearman(analysis.layers.map((l) => l.teg), sens.deltaLogPpl), weightDeltaRC: spearman(analysis.layers.map((l) => l.weightDeltaRC), sens.deltaLogPpl) },
    };
    model.close();
  }
  const date = new Date().toISOString().slice(0, 10);
  const out = { bench: 'lieq-experiment', date: new Date().toISOString(), machine: { cpu: cpus()[0]?.model, cores: cpus().length }, windows: WINDOWS, ctx: 512, group: GROUP, backbone: 'rtn (mse clip)', gptq: GPTQ ? { grid: 'mse', group: GROUP, damp: 0.01, actOrder: false, calibration: `${GPTQ_SAMPLES} × 512 tokens, last 60% of TinyStories` } : null, rows, models: meta };
  const dir = join(packageRootDir, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `lieq-experiment-${date}.json`), JSON.stringify(out, null, 1) + '\n');
  const fmt = (r: Row, key: 'tinystories' | 'wikitext2') => (r.spread ? `${r[key].toFixed(3)} ± ${r.spread[key][0].toFixed(3)} [${r.spread[key][1].toFixed(2)}, ${r.spread[key][2].toFixed(2)}]` : r[key].toFixed(3));
  const lines = ['| model | budget (nominal bits) | method | bits per layer | PPL TinyStories | PPL WikiText-2 |', '|---|---|---|---|---|---|'];
  for (const r of rows) lines.push(`| ${r.model} | ${r.budget} | ${r.method} | ${r.bits ? r.bits.join(',') : '-'} | ${fmt(r, 'tinystories')} | ${fmt(r, 'wikitext2')} |`);
  for (const [m, v] of Object.entries(meta)) {
    const s = (v as { spearman: Record<string, number> }).spearman;
    lines.push('', `${m}: Spearman vs single-layer 2-bit sensitivity — v2 ${s.v2.toFixed(2)}, v1 ${s.v1.toFixed(2)}, PD ${s.pd.toFixed(2)}, TEG ${s.teg.toFixed(2)}, data-free ΔRC(W) ${s.weightDeltaRC.toFixed(2)}`);
  }
  console.log(lines.join('\n'));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
