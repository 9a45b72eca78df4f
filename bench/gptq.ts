/**
 * `npm run bench:gptq` (issue 7): time to GPTQ-quantize every decoder linear.
 *
 *  - shipped models (stories260K, tinystories-656K): the whole `quantize` path, uniform 4-bit
 *    g128, layer-sequential calibration on TinyStories (samples × min(seqlen, context) tokens),
 *    forward passes included; RTN on the same plan for reference.
 *  - a model shape from lib/io/random-model.ts (default llama-3.2-1b): random weights and random
 *    calibration activations (speed depends on shapes only), per layer the four shared-input
 *    Hessians (q/k/v, o, gate/up, down) over `tokens` activations, their factorisations and the
 *    seven column loops — no forward passes. LIEQ_GPTQ_LAYERS times that many layers and
 *    scales to the model's layer count (every layer has the same shapes).
 *
 * Env: LIEQ_GPTQ_SHAPE (llama-3.2-1b), LIEQ_GPTQ_LAYERS (all), LIEQ_GPTQ_TOKENS (2048 × 8),
 * LIEQ_GPTQ_SAMPLES (128, shipped models), LIEQ_GPTQ_SKIP_SHIPPED=1, LIEQ_THREADS.
 * Prints a table and writes bench/results/gptq-<date>.json.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';

import { linearShape, LINEAR_NAMES, loadConfig } from '../lib/io/config.js';
import { MODEL_SHAPES, shapeConfig } from '../lib/io/random-model.js';
import { makePlan } from '../lib/lieq/plan.js';
import { native, packageRoot } from '../lib/native.js';
import { gptqFactor, gptqQuantizeLinear, HessianAccumulator } from '../lib/quant/gptq.js';
import { GPTQ_STAGES } from '../lib/quant/gptq-calibrate.js';
import { quantizeModel } from '../lib/quant/quantize-model.js';
import { dataPath } from '../lib/util/data-dir.js';

const shape = process.env.LIEQ_GPTQ_SHAPE ?? 'llama-3.2-1b';
const tokens = Number(process.env.LIEQ_GPTQ_TOKENS ?? 2048 * 8);
const samples = Number(process.env.LIEQ_GPTQ_SAMPLES ?? 128);

let peakRss = 0;
const sampleRss = () => (peakRss = Math.max(peakRss, process.memoryUsage().rss));

interface Row {
  model: string;
  backbone: string;
  layers: number;
  layersTimed: number;
  calibrationTokens: number;
  seconds: number;
  stages?: Record<string, number>;
  peakRssBytes: number;
}

async function shipped(name: string, tmp: string): Promise<Row[]> {
  const dir = dataPath(`models/${name}`);
  const cfg = loadConfig(dir);
  const rows: Row[] = [];
  for (const backbone of ['rtn', 'gptq'] as const) {
    peakRss = 0;
    const t0 = performance.now();
    const r = await quantizeModel(dir, {
      plan: makePlan(cfg, new Array(cfg.numLayers).fill(4), { method: 'uniform', backbone }),
      out: join(tmp, `${name}-${backbone}`),
      force: true,
      gptq: { calibration: { data: 'tinystories', samples, seqlen: 2048 } },
    });
    rows.push({ model: name, backbone, layers: cfg.numLayers, layersTimed: cfg.numLayers, calibrationTokens: r.calibrationTokens, seconds: (performance.now() - t0) / 1000, peakRssBytes: r.peakRssBytes });
  }
  return rows;
}

async function randomShape(): Promise<Row> {
  const cfg = shapeConfig(shape);
  const layers = Math.min(cfg.numLayers, Number(process.env.LIEQ_GPTQ_LAYERS ?? cfg.numLayers));
  const widths = [...new Set(GPTQ_STAGES.map((s) => linearShape(cfg, s[0])[1]))];
  // One random activation buffer per input width (values do not change the work).
  const acts = new Map(widths.map((n) => [n, native().gaussianMatrix(tokens, n, n)]));
  const stages = { hessian: 0, factor: 0, quantize: 0 };
  peakRss = 0;
  const t0 = performance.now();
  for (let l = 0; l < layers; l++) {
    for (const stage of GPTQ_STAGES) {
      const n = linearShape(cfg, stage[0])[1];
      let t = performance.now();
      const acc = new HessianAccumulator(n);
      const x = acts.get(n)!;
      for (let s = 0; s < tokens; s += 2048) {
        const k = Math.min(2048, tokens - s);
        await acc.add(x.subarray(s * n, (s + k) * n), k); // one calibration sequence at a time
      }
      stages.hessian += performance.now() - t;
      t = performance.now();
      const f = await gptqFactor(acc, { damp: 0.01 });
      stages.factor += performance.now() - t;
      for (const name of stage) {
        const [out, inF] = linearShape(cfg, name);
        const w = native().gaussianMatrix(out, inF, l * 16 + LINEAR_NAMES.indexOf(name));
        t = performance.now();
        await gptqQuantizeLinear(w, out, inF, f, { bits: 4, groupSize: 128, method: 'mse' });
        stages.quantize += performance.now() - t;
        sampleRss();
      }
    }
    console.error(`layer ${l + 1}/${layers}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const seconds = (performance.now() - t0) / 1000;
  const scale = cfg.numLayers / layers;
  return {
    model: `${shape} (random)`, backbone: 'gptq', layers: cfg.numLayers, layersTimed: layers, calibrationTokens: tokens,
    seconds: seconds * scale,
    stages: Object.fromEntries(Object.entries(stages).map(([k, v]) => [k, (v / 1000) * scale])),
    peakRssBytes: peakRss,
  };
}

async function main() {
  if (!(shape in MODEL_SHAPES)) throw new Error(`LIEQ_GPTQ_SHAPE: unknown shape ${shape} (${Object.keys(MODEL_SHAPES).join(', ')})`);
  const rows: Row[] = [];
  const tmp = mkdtempSync(join(tmpdir(), 'lieq-bench-gptq-'));
  try {
    if (process.env.LIEQ_GPTQ_SKIP_SHIPPED !== '1') for (const m of ['stories260K', 'tinystories-656K']) rows.push(...(await shipped(m, tmp)));
    rows.push(await randomShape());
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const threads = native().getThreads();
  const out = {
    bench: 'gptq', date: new Date().toISOString(),
    machine: { cpu: cpus()[0]?.model, cores: cpus().length, memoryBytes: totalmem(), threads },
    settings: { bits: 4, groupSize: 128, grid: 'mse', damp: 0.01, actOrder: false, blockSize: 128 },
    rows,
  };
  const dir = join(packageRoot, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `gptq-${out.date.slice(0, 10)}.json`);
  writeFileSync(file, JSON.stringify(out, null, 1) + '\n');
  const lines = ['| model | backbone | layers (timed) | calibration tokens | seconds | hessian / factor / quantize s | threads | peak RSS |', '|---|---|---|---|---|---|---|---|'];
  for (const r of rows)
    lines.push(`| ${r.model} | ${r.backbone} | ${r.layers} (${r.layersTimed}) | ${r.calibrationTokens} | ${r.seconds.toFixed(2)} | ${r.stages ? `${r.stages.hessian.toFixed(1)} / ${r.stages.factor.toFixed(1)} / ${r.stages.quantize.toFixed(1)}` : '-'} | ${threads} | ${(r.peakRssBytes / 2 ** 20).toFixed(0)} MiB |`);
  console.log(lines.join('\n'));
  console.log(`wrote ${file}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
