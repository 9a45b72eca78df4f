/**
 * Truncated SVD and the full spectra of `lieq analyze` on the CPU or a CUDA GPU, with the same
 * results: native/cuda/svd_gpu.h runs the CPU's algorithms (same Gaussian sketch from the same
 * seed, oversampling, power iterations, CholeskyQR2) with the products on the GPU: fp32 FFMA
 * where the CPU uses its f32 sgemm, f64 sums of the exact products of f32 entries where it
 * uses dgemm/dsyrk (Gram matrices). The small eigen-decompositions run on the host with the CPU
 * code. Measured on an H100 (test/cuda/svd-checks.ts, bench/cuda/bench-svd.ts): randomised
 * singular values within 1e-8 relative of the CPU's (fp32 rounding through the sketch), Gram
 * spectra within 1.4e-14·λ₁, analyze metrics on stories260K bit-identical.
 *
 * Where the time goes: the eigenvalue step of the full spectra stays on the host (0.48 s of the
 * 0.52 s a 16384×2048 activation spectrum takes on the H100 machine), so the GPU path mostly
 * saves the Gram matrix (~0.3 s → ~0.04 s there).
 *
 * `device`: 'cpu', 'cuda', or 'auto' = the GPU when the addon was built with CUDA and a device
 * is visible, else the CPU.
 */
import {
  gramEigenvalues,
  singularValues,
  svd,
  type SvdMethodName,
  type SvdOptions,
  type SvdResult,
} from '../kernels/linalg.js';
import { native, type NativeSvdOptions } from '../native.js';
import { UnsupportedError, UsageError } from '../util/errors.js';

export const LINALG_DEVICES = ['auto', 'cpu', 'cuda'] as const;
export type LinalgDevice = (typeof LINALG_DEVICES)[number];

/** '' when the GPU SVD can run here, else why not (CPU-only addon, no driver, no device). */
export function cudaSvdUnavailableReason(): string {
  try {
    return native().cudaSvdUnavailableReason();
  } catch (err) {
    return `the lieq addon has no GPU SVD: ${(err as Error).message}`;
  }
}

let autoDevice: 'cpu' | 'cuda' | undefined;

/** 'auto' → 'cuda' when usable, else 'cpu'; 'cuda' where no GPU can be used → UnsupportedError naming why. */
export function resolveLinalgDevice(device: LinalgDevice = 'auto'): 'cpu' | 'cuda' {
  if (!(LINALG_DEVICES as readonly string[]).includes(device))
    throw new UsageError(`device: expected one of ${LINALG_DEVICES.join(', ')}, got ${String(device)}`);
  if (device === 'cpu') return 'cpu';
  if (device === 'auto') return (autoDevice ??= cudaSvdUnavailableReason() ? 'cpu' : 'cuda');
  const why = cudaSvdUnavailableReason();
  if (why) throw new UnsupportedError(`--device cuda: CUDA is not usable here: ${why}`);
  return 'cuda';
}

// ---- validation (the binding re-checks lengths; these give the facade's UsageError messages) ----

function checkDim(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 2 ** 30)
    throw new UsageError(`${name}: expected an integer in [1, 2^30], got ${String(v)}`);
  return v;
}

function checkMatrix(name: string, a: unknown, rows: number, cols: number): Float32Array {
  if (!(a instanceof Float32Array)) throw new UsageError(`${name}: expected a Float32Array holding a ${rows}×${cols} matrix`);
  if (a.length < rows * cols) throw new UsageError(`${name}: a ${rows}×${cols} matrix needs ${rows * cols} elements, got ${a.length}`);
  return a;
}

const METHOD_CODE: Record<SvdMethodName, 0 | 1 | 2> = { auto: 0, exact: 1, randomized: 2 };

function nativeSvdOptions(opts: SvdOptions): NativeSvdOptions {
  if (typeof opts !== 'object' || opts === null) throw new UsageError('options: expected an object');
  const o: NativeSvdOptions = {};
  const int = (name: string, v: number | undefined, hi: number) => {
    if (v === undefined) return undefined;
    if (!Number.isInteger(v) || v < 0 || v > hi) throw new UsageError(`${name}: expected an integer in [0, ${hi}], got ${String(v)}`);
    return v;
  };
  if (opts.oversample !== undefined) o.oversample = int('oversample', opts.oversample, 2 ** 30);
  if (opts.powerIters !== undefined) o.powerIters = int('powerIters', opts.powerIters, 64);
  if (opts.seed !== undefined) {
    const s = opts.seed;
    const ok = typeof s === 'bigint' ? s >= 0n && s < 2n ** 64n : Number.isSafeInteger(s) && s >= 0;
    if (!ok) throw new UsageError(`seed: expected a non-negative safe integer or a BigInt below 2^64, got ${String(s)}`);
    o.seed = s;
  }
  if (opts.vectors !== undefined) {
    if (typeof opts.vectors !== 'boolean') throw new UsageError(`vectors: expected a boolean, got ${typeof opts.vectors}`);
    o.vectors = opts.vectors;
  }
  if (opts.method !== undefined) {
    if (!(opts.method in METHOD_CODE)) throw new UsageError(`method: expected 'auto', 'exact' or 'randomized', got ${String(opts.method)}`);
    o.method = METHOD_CODE[opts.method];
  }
  return o;
}

// ---- the functions ----------------------------------------------------------------------------

export interface DeviceSvdResult extends SvdResult {
  device: 'cpu' | 'cuda';
}

/**
 * Top-k SVD of A [m, n] (row-major f32): A ≈ U·diag(S)·Vᵀ, on `device` (default 'auto').
 * Options and results as lib/kernels/linalg.ts svd(); do not touch `a` until it settles.
 */
export async function truncatedSvd(
  a: Float32Array,
  m: number,
  n: number,
  k: number,
  opts: SvdOptions & { device?: LinalgDevice } = {},
): Promise<DeviceSvdResult> {
  const { device = 'auto', ...svdOpts } = opts;
  const where = resolveLinalgDevice(device);
  if (where === 'cpu') return { ...(await svd(a, m, n, k, svdOpts)), device: where };
  checkDim('m', m);
  checkDim('n', n);
  checkDim('k', k);
  if (k > Math.min(m, n)) throw new UsageError(`k: expected at most min(m, n) = ${Math.min(m, n)}, got ${k}`);
  checkMatrix('a', a, m, n);
  const r = await native().cudaTruncatedSvd(a, m, n, k, nativeSvdOptions(svdOpts));
  return { m, n, k, ...r, device: where };
}

/** All d eigenvalues of ZᵀZ for Z [t, d], descending (linalg.ts gramEigenvalues) on `device`. */
export async function gramEigenvaluesOn(device: LinalgDevice, z: Float32Array, t: number, d: number): Promise<Float64Array> {
  if (resolveLinalgDevice(device) === 'cpu') return gramEigenvalues(z, t, d);
  checkMatrix('z', z, checkDim('t', t), checkDim('d', d));
  return native().cudaGramEigenvalues(z, t, d);
}

/** All min(m, n) singular values of A [m, n], descending (linalg.ts singularValues) on `device`. */
export async function singularValuesOn(device: LinalgDevice, a: Float32Array, m: number, n: number): Promise<Float64Array> {
  if (resolveLinalgDevice(device) === 'cpu') return singularValues(a, m, n);
  checkMatrix('a', a, checkDim('m', m), checkDim('n', n));
  return native().cudaSingularValues(a, m, n);
}
