/**
 * GPU vs CPU truncated SVD and spectra (lib/cuda/svd.ts), and `lieq analyze` wall time with the
 * spectra on either device. Prints a table and writes JSON (after every row, so a cut-off run
 * keeps what it measured).
 *
 *   node bench-svd.mjs [--out FILE] [--reps N] [--quick] [--analyze-layers L]
 *
 * Rows (each: one warm-up, then N timed repeats; mean ± sd and best; error of the GPU result
 * against the CPU result of the same call):
 *   svd       top-64 (p = 10, q = 2, seed 0, with vectors) of 2048², 4096², 4096×14336, built
 *             as in bench/kernels/svd.ts (rank 512, σ_i = 10·0.95^i); err = max relative σ error;
 *   gram      all eigenvalues of ZᵀZ for analyze's activation batches of LLaMA-3.2-1B
 *             (32×512 tokens × q 2048 / k,v 512); err = max |Δλ| / λ₁;
 *   sv        all singular values of W_q [2048, 2048] and W_k [512, 2048]; err = max relative;
 *   eigen     the host eigenvalue step alone (sym_eigen of a d×d symmetric f64 matrix, values
 *             only): the part of the gram/sv rows that stays on the CPU on both devices.
 * --analyze-layers L: writes a random LLaMA-3.2-1B-shaped checkpoint with L layers (bf16, the
 * shipped Llama-2 tokenizer) and times analyzeModel (32×512 wikitext2 tokens, no cache) with
 * --device cpu and cuda, plus the largest metric difference.
 * --quick: small shapes, 1 repeat (checks the script; GPU rows are skipped where no GPU is).
 * Times include the host↔device copies (the call as analyze makes it).
 */
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';

import { cudaSvdUnavailableReason, gramEigenvaluesOn, singularValuesOn, truncatedSvd, type LinalgDevice } from '../../lib/cuda/svd.js';
import { MODEL_SHAPES, writeRandomCheckpoint } from '../../lib/io/random-model.js';
import { gaussianMatrix, gemmSync, symmetricEigen } from '../../lib/kernels/linalg.js';
import { analyzeModel } from '../../lib/lieq/analyze.js';
import { native } from '../../lib/native.js';
import { dataPath } from '../../lib/util/data-dir.js';

interface Stat {
  mean: number;
  stdev: number;
  best: number;
}
interface Row {
  kind: 'svd' | 'gram' | 'sv' | 'eigen' | 'analyze';
  shape: string;
  k?: number;
  cpu: Stat;
  gpu?: Stat;
  speedup?: number;
  /** GPU result vs CPU result (see the header). */
  err?: number;
  note?: string;
}

const args = process.argv.slice(2);
const arg = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const quick = args.includes('--quick');
const reps = Number(arg('--reps') ?? (quick ? 1 : 3));
const analyzeLayers = Number(arg('--analyze-layers') ?? 0);
const why = cudaSvdUnavailableReason();
const deviceName = why ? 'none' : native().cudaInfo().devices[0]?.name ?? 'unknown';
const out = arg('--out') ?? `bench/results/cuda-svd-2026-11-23-${why ? 'cpu-only' : deviceName.toLowerCase().replace(/[^a-z0-9]+/g, '-')}.json`;
if (why) console.log(`no usable GPU (${why}): CPU rows only`);

const stat = (xs: number[]): Stat => {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const stdev = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, xs.length - 1));
  return { mean, stdev, best: Math.min(...xs) };
};

/** One warm-up (its result returned), then `reps` timed calls. */
async function timed<T>(fn: () => Promise<T>): Promise<{ result: T; seconds: Stat }> {
  const result = await fn();
  const s: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await fn();
    s.push((performance.now() - t0) / 1e3);
  }
  return { result, seconds: stat(s) };
}

function maxRelErr(got: ArrayLike<number>, ref: ArrayLike<number>, count: number): number {
  let worst = 0;
  for (let i = 0; i < count; i++) worst = Math.max(worst, Number.isFinite(got[i]) ? Math.abs(got[i] - ref[i]) / Math.abs(ref[i]) : NaN);
  return worst;
}
function maxErrOverFirst(got: ArrayLike<number>, ref: ArrayLike<number>, count: number): number {
  let worst = 0;
  for (let i = 0; i < count; i++) worst = Math.max(worst, Number.isFinite(got[i]) ? Math.abs(got[i] - ref[i]) / ref[0] : NaN);
  return worst;
}

const rows: Row[] = [];
const fmt = (s?: Stat) => (s ? `${s.mean.toFixed(4)}±${s.stdev.toFixed(4)}` : '-');
console.log(`${'kind'.padEnd(8)} ${'shape'.padEnd(22)} ${'k'.padStart(4)} ${'CPU s'.padStart(16)} ${'GPU s'.padStart(16)} ${'speed-up'.padStart(8)} ${'GPU vs CPU'.padStart(10)}`);
function push(r: Row): void {
  if (r.gpu) r.speedup = r.cpu.mean / r.gpu.mean;
  rows.push(r);
  console.log(`${r.kind.padEnd(8)} ${r.shape.padEnd(22)} ${String(r.k ?? '-').padStart(4)} ${fmt(r.cpu).padStart(16)} ${fmt(r.gpu).padStart(16)} ${(r.speedup ? `${r.speedup.toFixed(1)}×` : '-').padStart(8)} ${(r.err === undefined ? '-' : r.err.toExponential(1)).padStart(10)}${r.note ? `  ${r.note}` : ''}`);
  writeFileSync(out, JSON.stringify({
    benchmark: 'cuda-svd', date: '2026-11-23', device: deviceName, cpuThreads: native().getThreads(), cpuModel: cpus()[0]?.model,
    reps, svdOptions: { oversample: 10, powerIters: 2, seed: 0, vectors: true }, rows,
  }, null, 2));
}

/** The CPU benchmark's test matrix: rank 512, σ_i = 10·0.95^i (bench/kernels/svd.ts). */
function testMatrix(m: number, n: number): Float32Array {
  const rank = Math.min(512, m, n);
  const g1 = gaussianMatrix(m, rank, 11);
  const g2 = gaussianMatrix(n, rank, 12);
  for (let i = 0; i < m; i++) for (let j = 0; j < rank; j++) g1[i * rank + j] *= (10 * 0.95 ** j) / Math.sqrt(m);
  for (let i = 0; i < g2.length; i++) g2[i] /= Math.sqrt(n);
  return gemmSync(g1, g2, m, n, rank, { transB: true });
}

const svdShapes = quick ? [[512, 512], [512, 1536]] : [[2048, 2048], [4096, 4096], [4096, 14336]];
const k = quick ? 16 : 64;
for (const [m, n] of svdShapes) {
  const a = testMatrix(m, n);
  const opts = { oversample: 10, powerIters: 2, seed: 0 };
  const cpu = await timed(() => truncatedSvd(a, m, n, k, { ...opts, device: 'cpu' }));
  const gpu = why ? undefined : await timed(() => truncatedSvd(a, m, n, k, { ...opts, device: 'cuda' }));
  push({ kind: 'svd', shape: `${m}×${n}`, k, cpu: cpu.seconds, gpu: gpu?.seconds, err: gpu && maxRelErr(gpu.result.S, cpu.result.S, k), note: cpu.result.method });
}

// analyze's activation batches: T = 32 × 512 tokens; q has d = 2048, k and v 512 (LLaMA-3.2-1B).
const T = quick ? 2048 : 32 * 512;
for (const d of quick ? [256, 64] : [2048, 512]) {
  const z = gaussianMatrix(T, d, 13);
  const cpu = await timed(() => gramEigenvaluesOn('cpu', z, T, d));
  const gpu = why ? undefined : await timed(() => gramEigenvaluesOn('cuda', z, T, d));
  push({ kind: 'gram', shape: `${T}×${d}`, cpu: cpu.seconds, gpu: gpu?.seconds, err: gpu && maxErrOverFirst(gpu.result, cpu.result, d) });
}
for (const [m, n] of quick ? [[256, 256], [64, 256]] : [[2048, 2048], [512, 2048]]) {
  const w = gaussianMatrix(m, n, 14);
  const cpu = await timed(() => singularValuesOn('cpu', w, m, n));
  const gpu = why ? undefined : await timed(() => singularValuesOn('cuda', w, m, n));
  push({ kind: 'sv', shape: `${m}×${n}`, cpu: cpu.seconds, gpu: gpu?.seconds, err: gpu && maxRelErr(gpu.result, cpu.result, Math.min(m, n)) });
}

for (const d of quick ? [256, 64] : [2048, 512]) {
  const g = Float64Array.from(gaussianMatrix(d, d, 15));
  const eig = await timed(async () => symmetricEigen(g, d, { vectors: false }));
  push({ kind: 'eigen', shape: `${d}×${d} (host, f64)`, cpu: eig.seconds, note: 'on the CPU for both devices' });
}

if (analyzeLayers > 0) {
  const work = mkdtempSync(join(tmpdir(), 'lieq-bench-svd-'));
  try {
    const model = join(work, 'model');
    const t0 = performance.now();
    writeRandomCheckpoint(model, { ...MODEL_SHAPES['llama-3.2-1b'], num_hidden_layers: analyzeLayers, bos_token_id: 1, eos_token_id: 2 }, { seed: 1, dtype: 'BF16' });
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) copyFileSync(dataPath('tokenizers/llama2', f), join(model, f));
    console.log(`random llama-3.2-1b checkpoint, ${analyzeLayers} layer(s), written in ${((performance.now() - t0) / 1e3).toFixed(1)} s`);
    const samples = quick ? 4 : 32, seqlen = quick ? 128 : 512;
    const run = async (device: LinalgDevice) => {
      const t = performance.now();
      const a = await analyzeModel(model, { calib: 'wikitext2', samples, seqlen, seed: 0, cacheDir: null, device });
      return { a, seconds: (performance.now() - t) / 1e3 };
    };
    const cpu = await run('cpu');
    const gpu = why ? undefined : await run('cuda');
    let err = 0;
    if (gpu)
      cpu.a.layers.forEach((l, i) => {
        const g = gpu.a.layers[i];
        for (const [x, y] of [[l.deltaRC, g.deltaRC], [l.teg, g.teg], [l.weightDeltaRC, g.weightDeltaRC], [l.weightTeg, g.weightTeg]]) err = Math.max(err, Number.isFinite(y) ? Math.abs(x - y) : NaN);
      });
    const one = (s: number): Stat => ({ mean: s, stdev: 0, best: s });
    push({ kind: 'analyze', shape: `llama-3.2-1b L=${analyzeLayers}, ${samples}×${seqlen}`, cpu: one(cpu.seconds), gpu: gpu && one(gpu.seconds), err: gpu && err, note: 'max |Δ| of ΔRC, TEG, ΔRC(W), TEG(W)' });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
console.log(`JSON: ${out}`);
