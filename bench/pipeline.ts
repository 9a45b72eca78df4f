/**
 * `npm run bench:pipeline` (issue 6): the whole LieQ pipeline on a LLaMA-3.2-1B-shaped
 * checkpoint with random bf16 weights (real shapes, 16 layers), timed per stage on this
 * machine: write the checkpoint, analyze (v2, 32×512 calibration tokens), allocate, quantize
 * with RTN and write. Each stage runs in its own child process so its peak RSS is its own.
 * Options (env): LIEQ_PIPE_SHAPE (default llama-3.2-1b), LIEQ_PIPE_LAYERS (default: all),
 * LIEQ_PIPE_SAMPLES (32), LIEQ_PIPE_SEQLEN (512). Writes bench/results/pipeline-<shape>-<date>.json.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { layerLinearWeights } from '../lib/lieq/plan.js';
import { MODEL_SHAPES, shapeConfig, writeRandomCheckpoint } from '../lib/io/random-model.js';
import { allocateGreedy } from '../lib/lieq/allocate.js';
import { analyzeModel } from '../lib/lieq/analyze.js';
import { combineScores } from '../lib/lieq/analysis.js';
import { makePlan } from '../lib/lieq/plan.js';
import { quantizeModel } from '../lib/quant/quantize-model.js';
import { native, packageRoot } from '../lib/native.js';
import { loadAnalysis } from '../lib/lieq/analysis.js';
import { dataPath } from '../lib/util/data-dir.js';

const shape = process.env.LIEQ_PIPE_SHAPE ?? 'llama-3.2-1b';
const samples = Number(process.env.LIEQ_PIPE_SAMPLES ?? 32);
const seqlen = Number(process.env.LIEQ_PIPE_SEQLEN ?? 512);

function rawConfig(): Record<string, unknown> {
  // bos/eos of the Llama-2 tokenizer used for the calibration text (see the write stage).
  const raw = { ...MODEL_SHAPES[shape], bos_token_id: 1, eos_token_id: 2 };
  if (process.env.LIEQ_PIPE_LAYERS) raw.num_hidden_layers = Number(process.env.LIEQ_PIPE_LAYERS);
  return raw;
}

/** Child: run one stage, print {seconds, ...} JSON on the last line. */
async function child(stage: string, work: string): Promise<void> {
  const t0 = performance.now();
  const model = join(work, 'model');
  let extra: Record<string, unknown> = {};
  if (stage === 'write') {
    writeRandomCheckpoint(model, rawConfig(), { seed: 1, dtype: 'BF16' });
    // Random weights have no tokenizer of their own: calibration text is tokenized with the
    // shipped Llama-2 tokenizer (ids < 32000 fit every shape's vocabulary; shape is what matters).
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'])
      copyFileSync(dataPath('tokenizers/llama2', f), join(model, f));
  } else if (stage === 'analyze') {
    const a = await analyzeModel(model, { calib: 'wikitext2', samples, seqlen, seed: 0, cacheDir: null });
    writeFileSync(join(work, 'analysis.json'), JSON.stringify(a));
  } else if (stage === 'allocate') {
    const a = loadAnalysis(join(work, 'analysis.json'));
    const L = a.layers.length;
    const alloc = allocateGreedy({ scores: combineScores(a, 'v2'), weights: a.layerWeights, allowed: [2, 3, 4], budget: 2 + 2 / L });
    const cfg = shapeConfig(shape, rawConfig());
    writeFileSync(join(work, 'plan.json'), JSON.stringify(makePlan(cfg, alloc.bits, { method: 'greedy', budget: 2 + 2 / L, score: 'v2' })));
    extra = { bits: alloc.bits };
  } else if (stage === 'quantize') {
    const { loadPlan } = await import('../lib/lieq/plan.js');
    const r = await quantizeModel(model, { plan: loadPlan(join(work, 'plan.json')), out: join(work, 'quantized') });
    extra = { bytesWritten: r.bytesWritten };
  }
  const seconds = (performance.now() - t0) / 1000;
  const ru = process.resourceUsage();
  console.log(JSON.stringify({ stage, seconds, peakRssBytes: ru.maxRSS * 1024, ...extra }));
}

async function main(): Promise<void> {
  if (process.argv[2] === '--child') return child(process.argv[3], process.argv[4]);
  const work = mkdtempSync(join(tmpdir(), 'lieq-pipeline-'));
  const cfg = shapeConfig(shape, rawConfig());
  const L = cfg.numLayers;
  const tokens = samples * Math.min(seqlen, cfg.maxPositionEmbeddings);
  const nLinear = layerLinearWeights(cfg);
  // Work of each stage in FLOPs (for GFLOP/s): analyze runs every layer's forward on the
  // calibration tokens for the trained and the reference model, plus q/k/v projections again
  // and Gram matrices (T·d² each) of q/k/v for both.
  const qkv = [cfg.numHeads * cfg.headDim, cfg.numKvHeads * cfg.headDim, cfg.numKvHeads * cfg.headDim];
  const analyzeFlops = 2 * L * (2 * nLinear * tokens + qkv.reduce((s, d) => s + 2 * tokens * d * cfg.hiddenSize + tokens * d * d, 0));
  const rows: Record<string, unknown>[] = [];
  try {
    for (const stage of ['write', 'analyze', 'allocate', 'quantize']) {
      process.stderr.write(`pipeline bench: ${stage}...\n`);
      const r = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--child', stage, work], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
      if (r.status !== 0) throw new Error(`stage ${stage} failed (exit ${r.status})`);
      const row = JSON.parse(r.stdout.trim().split('\n').pop()!);
      if (stage === 'analyze') row.gflops = analyzeFlops / row.seconds / 1e9;
      rows.push(row);
      process.stderr.write(`  ${row.seconds.toFixed(1)} s, peak RSS ${(row.peakRssBytes / 2 ** 30).toFixed(2)} GiB\n`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const total = rows.reduce((s, r) => s + (r.stage === 'write' ? 0 : (r.seconds as number)), 0);
  const out = {
    bench: 'pipeline',
    date: new Date().toISOString(),
    machine: { cpu: cpus()[0]?.model, cores: cpus().length, memoryBytes: totalmem(), threads: native().getThreads(), simd: native().buildInfo().simd },
    shape,
    layers: L,
    calibration: { samples, seqlen, tokens },
    stages: rows,
    pipelineSecondsExcludingCheckpointWrite: total,
    peakRssBytes: Math.max(...rows.map((r) => r.peakRssBytes as number)),
    targets: { seconds: 15 * 60, peakRssBytes: 3 * 2 ** 30 },
  };
  const dir = join(packageRoot, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `pipeline-${shape}${process.env.LIEQ_PIPE_LAYERS ? `-L${L}` : ''}-${out.date.slice(0, 10)}.json`);
  writeFileSync(file, JSON.stringify(out, null, 1) + '\n');
  console.log('| stage | seconds | peak RSS | GFLOP/s |\n|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.stage} | ${(r.seconds as number).toFixed(1)} | ${((r.peakRssBytes as number) / 2 ** 30).toFixed(2)} GiB | ${r.gflops ? (r.gflops as number).toFixed(1) : '-'} |`);
  console.log(`analyze + allocate + quantize: ${total.toFixed(1)} s (target ≤ 900 s); peak RSS ${(out.peakRssBytes / 2 ** 30).toFixed(2)} GiB (target ≤ 3 GiB). ${file}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
