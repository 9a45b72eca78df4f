/**
 * Truncated SVD benchmark: seconds for the top-16/64/256 singular triplets of 2048², 4096² and
 * 4096×14336 f32 matrices (randomised SVD, p = 10, q = 2), one values-only row, and the full
 * spectrum of a d = 2048 activation batch (gramEigenvalues, what the LieQ metrics use).
 * Target: top-64 of 4096² ≤ 1 s.
 *
 * The matrices have a decaying spectrum (A = G₁·diag(s)·G₂ᵀ with Gaussian G₁, G₂ of rank 512,
 * s_i = 10·0.95^i), so the residual column ‖A·V − U·diag(S)‖_F / σ₁ says how much of the top-k
 * subspace the sketch caught (f32 round-off alone gives ~1e-6).
 *
 *   node bench/tmp/bench/kernels/svd.js [--threads N] [--reps 3] [--quick] [--full]
 *       [--out bench/results/svd.json]
 *
 * --quick: 2048² and 4096² only; --full adds the d = 4096 spectrum (tens of seconds).
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import {
  type MachineInfo,
  type Stat,
  machineInfo,
  parseCommonArgs,
  setThreadsOnce,
  stat,
  useRealAddon,
  writeResult,
} from './gemm.js';

export interface SvdBenchOptions {
  threads?: number;
  reps?: number;
  /** [m, n] pairs (default 2048², 4096², 4096×14336). */
  sizes?: Array<[number, number]>;
  ks?: number[];
  /** Spectrum rows: [t, d] pairs for gramEigenvalues (default [[4096, 2048]]). */
  spectra?: Array<[number, number]>;
  log?: (line: string) => void;
}

export interface SvdBenchRow {
  kind: 'svd' | 'svd values only' | 'gram spectrum';
  m: number;
  n: number;
  k: number;
  method: string;
  seconds: Stat;
  /** ‖A·V − U·diag(S)‖_F / σ₁ (svd rows with vectors). */
  residual?: number;
  target?: { seconds: number; met: boolean };
}

export interface SvdBenchResult {
  benchmark: 'svd';
  machine: MachineInfo;
  threads: number;
  reps: number;
  options: { oversample: number; powerIters: number; seed: number };
  rows: SvdBenchRow[];
}

export const SVD_TABLE_HEADER = `${'what'.padEnd(16)} ${'m×n'.padEnd(12)} ${'k'.padStart(5)} ${'method'.padEnd(11)} ${'s (mean±sd)'.padStart(16)} ${'best s'.padStart(8)} ${'residual'.padStart(9)}`;

export function formatSvdRow(r: SvdBenchRow): string {
  const s = `${r.seconds.mean.toFixed(3)}±${r.seconds.stdev.toFixed(3)}`;
  const res = r.residual === undefined ? '-' : r.residual.toExponential(1);
  const t = r.target ? `  (target ≤ ${r.target.seconds} s: ${r.target.met ? 'met' : 'MISSED'})` : '';
  return `${r.kind.padEnd(16)} ${`${r.m}×${r.n}`.padEnd(12)} ${String(r.k).padStart(5)} ${r.method.padEnd(11)} ${s.padStart(16)} ${r.seconds.best.toFixed(3).padStart(8)} ${res.padStart(9)}${t}`;
}

export async function run(opts: SvdBenchOptions = {}): Promise<SvdBenchResult> {
  useRealAddon();
  const log = opts.log ?? ((l: string) => console.log(l));
  const { native } = await import('../../lib/native.js');
  const linalg = await import('../../lib/kernels/linalg.js');
  const threads = opts.threads ?? native().getThreads();
  await setThreadsOnce(threads);
  const reps = Math.max(1, opts.reps ?? 3);
  const sizes = opts.sizes ?? [[2048, 2048], [4096, 4096], [4096, 14336]];
  const ks = opts.ks ?? [16, 64, 256];
  const spectra = opts.spectra ?? [[4096, 2048]];
  const svdOptions = { oversample: 10, powerIters: 2, seed: 0 };

  const time = (fn: () => void): Stat => {
    const seconds: number[] = [];
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      fn();
      seconds.push((performance.now() - t0) / 1e3);
    }
    return stat(seconds);
  };

  const rows: SvdBenchRow[] = [];
  const push = (row: SvdBenchRow) => {
    rows.push(row);
    log(formatSvdRow(row));
  };
  for (const [m, n] of sizes) {
    // A = G₁·diag(s)·G₂ᵀ, rank 512, s_i = 10·0.95^i; G scaled to ~orthonormal columns.
    const rank = Math.min(512, m, n);
    const g1 = linalg.gaussianMatrix(m, rank, 11);
    const g2 = linalg.gaussianMatrix(n, rank, 12);
    for (let i = 0; i < m; i++)
      for (let j = 0; j < rank; j++) g1[i * rank + j] *= (10 * 0.95 ** j) / Math.sqrt(m);
    for (let i = 0; i < g2.length; i++) g2[i] /= Math.sqrt(n);
    const a = linalg.gemmSync(g1, g2, m, n, rank, { transB: true });
    for (const k of ks) {
      if (k > Math.min(m, n)) continue;
      const last = linalg.svdSync(a, m, n, k, svdOptions); // warm-up, and the result checked below
      const seconds = time(() => linalg.svdSync(a, m, n, k, svdOptions));
      const av = linalg.gemmSync(a, last.V!, m, k, n);
      let res = 0;
      for (let i = 0; i < m; i++)
        for (let j = 0; j < k; j++) res += (av[i * k + j] - last.U![i * k + j] * last.S[j]) ** 2;
      const row: SvdBenchRow = { kind: 'svd', m, n, k, method: last.method, seconds, residual: Math.sqrt(res) / last.S[0] };
      if (m === 4096 && n === 4096 && k === 64) row.target = { seconds: 1, met: seconds.mean <= 1 };
      push(row);
    }
    if (m === 4096 && n === 4096) {
      const k = 64;
      const method = linalg.svdSync(a, m, n, k, { ...svdOptions, vectors: false }).method;
      push({ kind: 'svd values only', m, n, k, method, seconds: time(() => linalg.svdSync(a, m, n, k, { ...svdOptions, vectors: false })) });
    }
  }
  for (const [t, d] of spectra) {
    const z = linalg.gaussianMatrix(t, d, 13);
    linalg.gramEigenvaluesSync(z, t, d);
    push({ kind: 'gram spectrum', m: t, n: d, k: d, method: 'exact', seconds: time(() => linalg.gramEigenvaluesSync(z, t, d)) });
  }
  return { benchmark: 'svd', machine: await machineInfo(), threads, reps, options: svdOptions, rows };
}

async function main(): Promise<void> {
  const args = parseCommonArgs(process.argv.slice(2));
  const full = process.argv.includes('--full');
  console.log(SVD_TABLE_HEADER);
  const result = await run({
    threads: args.threads,
    reps: args.reps ?? (args.quick ? 2 : 3),
    sizes: args.quick ? [[2048, 2048], [4096, 4096]] : undefined,
    spectra: full ? [[4096, 2048], [8192, 4096]] : undefined,
  });
  const m = result.machine;
  console.log(`\n${m.cpu}, ${result.threads} thread(s), ${result.reps} reps, load ${m.loadAverage1m.toFixed(2)}`);
  console.log(`wrote ${writeResult(result, args.out ?? 'bench/results/svd.json')}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
