/**
 * GPU truncated SVD and Gram spectra (native/cuda/svd_gpu.h) against the CPU versions and
 * float64 references. Shared by the vitest file (svd-gpu.test.ts, which skips without a GPU)
 * and, run directly, a plain program for the device machine (no vitest there):
 *   node svd-checks.mjs [SEED] [--no-analyze]   prints every check; exit 1 if any failed, 2 if no
 *   GPU (--no-analyze: the kernel checks only, e.g. under compute-sanitizer).
 *
 * Every check draws fresh seeded inputs (the seed is printed). The native outputs are
 * NaN-filled before the GPU writes them (binding and device buffers), and a non-finite value
 * makes the error NaN, which never passes.
 *  - truncated SVD of matrices with known spectra U·diag(s)·Vᵀ (f64-built, decaying s; tall,
 *    wide, exact-method, rank-deficient = Householder fallback, odd sizes and options):
 *    singular values vs the known s and vs the CPU (same seed), vectors orthonormal and
 *    reconstructing A to the Eckart–Young bound, aligned with the CPU's;
 *  - one small case vs the one-sided Jacobi SVD in f64 (test/reference/linalg-f64.ts);
 *  - Gram eigenvalues (tall and wide Z) and weight singular values vs the CPU and vs the
 *    Jacobi eigensolver on the f64 Gram matrix;
 *  - NaN / Inf inputs are refused;
 *  - `lieq analyze` metrics on the shipped stories260K: GPU vs CPU.
 */
import { pathToFileURL } from 'node:url';

import { analyzeModel } from '../../lib/lieq/analyze.js';
import type { Analysis } from '../../lib/lieq/analysis.js';
import { cudaSvdUnavailableReason, gramEigenvaluesOn, singularValuesOn, truncatedSvd } from '../../lib/cuda/svd.js';
import type { SvdOptions } from '../../lib/kernels/linalg.js';
import { resolveModelArg } from '../../lib/util/data-dir.js';
import {
  gemmF64,
  jacobiEigen,
  jacobiSvd,
  matrixWithSpectrum,
  orthonormalityError,
  reconstructionError,
  Rng,
  tailNorm,
} from '../reference/linalg-f64.js';

export interface SvdCheck {
  name: string;
  /** The check's error measure (NaN when an output was not finite). */
  err: number;
  tol: number;
  pass: boolean;
}

function check(name: string, err: number, tol: number): SvdCheck {
  return { name, err, tol, pass: err <= tol }; // NaN <= tol is false
}

export function formatChecks(rs: SvdCheck[]): string {
  return rs.map((r) => `${r.pass ? 'ok  ' : 'FAIL'} ${r.name.padEnd(64)} err ${r.err.toExponential(2)} (tol ${r.tol.toExponential(0)})`).join('\n');
}

/** max_i |got_i − ref_i| / max(|ref_i|, floor·ref_0): relative per value, absolute below the floor. */
function valuesError(got: ArrayLike<number>, ref: ArrayLike<number>, count: number, floor = 1e-3): number {
  let worst = 0;
  const scale = Math.abs(ref[0]);
  for (let i = 0; i < count; i++) {
    if (!Number.isFinite(got[i])) return NaN;
    worst = Math.max(worst, Math.abs(got[i] - ref[i]) / Math.max(Math.abs(ref[i]), floor * scale));
  }
  return worst;
}

/** 1 − min_i |⟨x_i, y_i⟩| over the k columns of X, Y [rows, k]: 0 when the vectors agree up to sign. */
function alignmentError(X: Float32Array, Y: Float32Array, rows: number, k: number, count = k): number {
  let worst = 0;
  for (let i = 0; i < count; i++) {
    let d = 0;
    for (let r = 0; r < rows; r++) d += X[r * k + i] * Y[r * k + i];
    if (!Number.isFinite(d)) return NaN;
    worst = Math.max(worst, 1 - Math.abs(d));
  }
  return worst;
}

interface SvdCase {
  name: string;
  m: number;
  n: number;
  k: number;
  spectrum: number[];
  opts: SvdOptions;
  /** Values compared vs the known spectrum and vectors vs the CPU (all k unless rank-deficient). */
  compared?: number;
}

function svdCases(): SvdCase[] {
  const geometric = (count: number, top: number, ratio: number) => Array.from({ length: count }, (_, i) => top * ratio ** i);
  return [
    { name: 'tall 600×300 k=12 (randomised)', m: 600, n: 300, k: 12, spectrum: geometric(300, 10, 0.75), opts: { seed: 1 } },
    { name: 'wide 257×700 k=20 (randomised)', m: 257, n: 700, k: 20, spectrum: geometric(257, 5, 0.8), opts: { seed: 2 } },
    { name: 'exact method 120×90 k=40 (auto)', m: 120, n: 90, k: 40, spectrum: geometric(90, 3, 0.85), opts: { seed: 3 } },
    // l = k + p = 18 > rank 5: CholeskyQR breaks down, the Householder fallback runs.
    { name: 'rank 5, 400×300 k=8 (Householder fallback)', m: 400, n: 300, k: 8, spectrum: [5, 4, 3, 2, 1], opts: { seed: 4, method: 'randomized' }, compared: 5 },
    { name: 'odd 131×77 k=3, p=2 q=1 (randomised)', m: 131, n: 77, k: 3, spectrum: geometric(77, 2, 0.3), opts: { seed: 5, method: 'randomized', oversample: 2, powerIters: 1 } },
  ];
}

/** Truncated SVD on the GPU vs the known spectrum and vs the CPU with the same options. */
export async function svdChecks(seed: number): Promise<SvdCheck[]> {
  const out: SvdCheck[] = [];
  const rng = new Rng(seed);
  for (const c of svdCases()) {
    const a = matrixWithSpectrum(c.m, c.n, c.spectrum, rng);
    const gpu = await truncatedSvd(a, c.m, c.n, c.k, { ...c.opts, device: 'cuda' });
    const cpu = await truncatedSvd(a, c.m, c.n, c.k, { ...c.opts, device: 'cpu' });
    const known = Float64Array.from({ length: c.k }, (_, i) => c.spectrum[i] ?? 0);
    const cmp = c.compared ?? c.k;
    out.push(check(`${c.name}: method ${gpu.method} = CPU's (0 = same)`, gpu.method === cpu.method && gpu.device === 'cuda' ? 0 : 1, 0));
    out.push(check(`${c.name}: σ vs known spectrum`, valuesError(gpu.S, known, c.k), 1e-4));
    out.push(check(`${c.name}: σ vs CPU`, valuesError(gpu.S, cpu.S, c.k), 1e-4));
    const U = gpu.U!, V = gpu.V!;
    out.push(check(`${c.name}: U, V orthonormal (max |QᵀQ − I|)`, Math.max(orthonormalityError(U, c.m, c.k), orthonormalityError(V, c.n, c.k)), 1e-4));
    // Eckart–Young: the best rank-k error is the tail norm; f32 storage adds ~1e-7·‖A‖.
    const recon = reconstructionError(a, c.m, c.n, gpu.S, U, V, c.k);
    const bound = tailNorm(c.spectrum, c.k);
    out.push(check(`${c.name}: ‖A − USVᵀ‖ − tail norm, / σ₁`, Math.max(0, recon - bound) / c.spectrum[0], 1e-4));
    out.push(check(`${c.name}: U, V columns vs CPU (1 − |cos|)`, Math.max(alignmentError(U, cpu.U!, c.m, c.k, cmp), alignmentError(V, cpu.V!, c.n, c.k, cmp)), 1e-4));
  }
  // An independent f64 reference of the f32 matrix itself (not the f64 spectrum it came from).
  const m = 70, n = 50, k = 10;
  const a = matrixWithSpectrum(m, n, Array.from({ length: n }, (_, i) => 1 / (1 + i) ** 2), rng);
  const ref = jacobiSvd(a, m, n).S;
  const gpu = await truncatedSvd(a, m, n, k, { device: 'cuda', method: 'randomized', seed: 6, powerIters: 4 });
  out.push(check('70×50 k=10 (σ_i = 1/i², q=4): σ vs one-sided Jacobi SVD (f64)', valuesError(gpu.S, ref, k), 1e-4));
  const exact = await truncatedSvd(a, m, n, k, { device: 'cuda', method: 'exact' });
  out.push(check('70×50 k=10 exact method: σ vs one-sided Jacobi SVD (f64)', valuesError(exact.S, ref, k), 1e-6));
  return out;
}

/** f64 Gram matrix of Z [t, d]: ZᵀZ (d×d) when t ≥ d, else ZZᵀ (t×t); its eigenvalues by Jacobi, descending. */
function referenceGramEigenvalues(z: Float32Array, t: number, d: number): Float64Array {
  const tall = t >= d;
  const r = tall ? d : t;
  const G = tall
    ? gemmF64(true, false, d, d, t, 1, z, d, z, d, 0, new Float64Array(d * d), d)
    : gemmF64(false, true, t, t, d, 1, z, d, z, d, 0, new Float64Array(t * t), t);
  return jacobiEigen(G, r).values;
}

function activations(t: number, d: number, rng: Rng): Float32Array {
  const z = new Float32Array(t * d);
  for (let i = 0; i < t; i++) {
    // A few strong directions plus noise: a spread-out spectrum like real activations.
    const row = rng.normals(d);
    for (let j = 0; j < d; j++) z[i * d + j] = row[j] * (1 + 8 / (1 + j)) + 0.3;
  }
  return z;
}

/** Gram eigenvalues (analyze's activation spectra) and weight singular values: GPU vs CPU vs f64. */
export async function spectrumChecks(seed: number): Promise<SvdCheck[]> {
  const out: SvdCheck[] = [];
  const rng = new Rng(seed ^ 0x5bd1e995);
  for (const [t, d] of [[500, 64], [40, 100], [1000, 257]] as const) {
    const z = activations(t, d, rng);
    const gpu = await gramEigenvaluesOn('cuda', z, t, d);
    const cpu = await gramEigenvaluesOn('cpu', z, t, d);
    const scale = cpu[0];
    let worst = 0;
    for (let i = 0; i < d; i++) worst = Math.max(worst, Number.isFinite(gpu[i]) ? Math.abs(gpu[i] - cpu[i]) / scale : NaN);
    out.push(check(`Gram eigenvalues Z ${t}×${d}: GPU vs CPU, max |Δλ| / λ₁`, worst, 1e-12));
    if (t * d <= 64000) {
      const ref = referenceGramEigenvalues(z, t, d);
      let worstRef = 0;
      for (let i = 0; i < d; i++) worstRef = Math.max(worstRef, Number.isFinite(gpu[i]) ? Math.abs(gpu[i] - (ref[i] ?? 0)) / ref[0] : NaN);
      out.push(check(`Gram eigenvalues Z ${t}×${d}: GPU vs Jacobi on the f64 Gram, / λ₁`, worstRef, 1e-11));
    }
  }
  for (const [m, n] of [[300, 200], [96, 320]] as const) {
    const w = Float32Array.from(rng.normals(m * n), (x) => x * 0.02);
    const gpu = await singularValuesOn('cuda', w, m, n);
    const cpu = await singularValuesOn('cpu', w, m, n);
    out.push(check(`weight singular values ${m}×${n}: GPU vs CPU`, valuesError(gpu, cpu, Math.min(m, n), 1e-6), 1e-10));
  }
  return out;
}

/** NaN / Inf anywhere in the input is refused on the GPU path, as on the CPU. */
export async function nonFiniteChecks(seed: number): Promise<SvdCheck[]> {
  const rng = new Rng(seed ^ 0x2545f491);
  const refused = async (what: string, run: () => Promise<unknown>) => {
    try {
      await run();
      return check(`${what} is refused`, 1, 0);
    } catch (err) {
      return check(`${what} is refused (${(err as Error).message.slice(0, 40)}…)`, /NaN or Inf/.test((err as Error).message) ? 0 : 1, 0);
    }
  };
  const m = 200, n = 150;
  const a = Float32Array.from(rng.normals(m * n));
  const at = Math.floor(rng.uniform() * m * n);
  a[at] = NaN;
  const z = Float32Array.from(rng.normals(m * n));
  z[m * n - 1] = Infinity;
  return [
    await refused(`svd with a NaN at ${at}`, () => truncatedSvd(a, m, n, 8, { device: 'cuda' })),
    await refused('Gram eigenvalues with an Inf at the last entry', () => gramEigenvaluesOn('cuda', z, m, n)),
  ];
}

/** Every number of two analyses' layer metrics side by side (name, a, b). */
function metricPairs(a: Analysis, b: Analysis): [string, number, number][] {
  const out: [string, number, number][] = [];
  const walk = (path: string, x: unknown, y: unknown) => {
    if (typeof x === 'number') out.push([path, x, typeof y === 'number' ? y : NaN]);
    else if (x && typeof x === 'object') for (const key of Object.keys(x)) walk(`${path}.${key}`, (x as Record<string, unknown>)[key], (y as Record<string, unknown> | undefined)?.[key]);
  };
  a.layers.forEach((l, i) => walk(`layer ${i}`, l, b.layers[i]));
  return out;
}

/** `lieq analyze` (geometry metrics) on stories260K with the spectra on the GPU vs the CPU. */
export async function analyzeChecks(samples = 8, seqlen = 128): Promise<SvdCheck[]> {
  const dir = resolveModelArg('stories260K');
  const opts = { calib: 'tinystories', samples, seqlen, cacheDir: null };
  const cpu = await analyzeModel(dir, { ...opts, device: 'cpu' });
  const gpu = await analyzeModel(dir, { ...opts, device: 'cuda' });
  const pairs = metricPairs(cpu, gpu);
  let worst = 0;
  let where = 'none: all equal';
  for (const [name, x, y] of pairs) {
    const e = Number.isFinite(y) && Number.isFinite(x) ? Math.abs(x - y) : NaN;
    if (!(e <= worst)) [worst, where] = [e, name];
  }
  return [
    check(`analyze stories260K (${samples}×${seqlen} tokens): ${pairs.length} metrics, layers ${cpu.layers.length} = ${gpu.layers.length}`, cpu.layers.length === gpu.layers.length && pairs.length > 0 ? 0 : 1, 0),
    check(`analyze stories260K: max |GPU − CPU| over ΔRC, TEG, RC, weight spectra (worst: ${where})`, worst, 1e-9),
  ];
}

async function main(): Promise<void> {
  const why = cudaSvdUnavailableReason();
  if (why) {
    console.error(`GPU SVD checks cannot run: ${why}`);
    process.exit(2);
  }
  const args = process.argv.slice(2);
  const seed = Number(args.find((a) => /^\d+$/.test(a)) ?? Date.now() & 0xffff);
  console.log(`seed ${seed}`);
  let failed = 0;
  for (const [name, run] of [
    ['truncated SVD', () => svdChecks(seed)],
    ['spectra', () => spectrumChecks(seed)],
    ['non-finite input', () => nonFiniteChecks(seed)],
    ['analyze stories260K (default calibration: 32×512 tokens)', () => (args.includes('--no-analyze') ? Promise.resolve([]) : analyzeChecks(32, 512))],
  ] as const) {
    const t0 = performance.now();
    const res = await run();
    console.log(`== ${name} (${res.length} checks, ${((performance.now() - t0) / 1000).toFixed(1)} s)\n${formatChecks(res)}`);
    failed += res.filter((r) => !r.pass).length;
  }
  console.log(failed ? `${failed} check(s) FAILED` : 'all GPU SVD checks passed');
  process.exit(failed ? 1 : 0);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
