/**
 * Dense linear algebra on the native core: the blocked f32 GEMM (calibration forward passes,
 * prefill), the symmetric rank-k update (Gram matrices, GPTQ Hessians), truncated SVD and the
 * full spectra the LieQ metrics use. Matrices are row-major Float32Arrays passed to native code
 * without copies. Arguments are validated here; errors name the parameter, what was expected
 * and what came. Calls named `...Sync` block the caller; the others return Promises and run
 * off the event loop (on a libuv worker, which drives the core thread pool).
 */
import { native, type NativeSvdOptions } from '../native.js';
import { UsageError } from '../util/errors.js';

/** 'portable' runs the blocked path with the C++ micro-kernels, 'reference' the triple loop. */
export type GemmPath = 'auto' | 'portable' | 'reference';

export interface GemmOptions {
  /** op(A) = Aᵀ: A is stored [k, lda] instead of [m, lda]. */
  transA?: boolean;
  /** op(B) = Bᵀ: B is stored [n, ldb] instead of [k, ldb] (the y = x·Wᵀ case). */
  transB?: boolean;
  /** Default 1. */
  alpha?: number;
  /** Default 0: C is write-only (its old contents, NaN included, are ignored). */
  beta?: number;
  /** Row strides (elements); default the row length. */
  lda?: number;
  ldb?: number;
  ldc?: number;
  /** f32 [m, ldc] to write into (required when beta ≠ 0); else a new array. */
  out?: Float32Array;
  path?: GemmPath;
}

export interface SyrkOptions {
  /** false: C = alpha·A·Aᵀ with A [n, k]; true: C = alpha·Aᵀ·A with A [k, n] (default true). */
  trans?: boolean;
  alpha?: number;
  beta?: number;
  lda?: number;
  ldc?: number;
  out?: Float32Array;
}

export type SvdMethodName = 'auto' | 'exact' | 'randomized';

export interface SvdOptions {
  /** Extra sketch columns p (default 10). */
  oversample?: number;
  /** Subspace (power) iterations q (default 2). */
  powerIters?: number;
  /** Seed of the Gaussian sketch (default 0): same seed, same bits, any thread count. */
  seed?: number | bigint;
  /** false: singular values only (default true). */
  vectors?: boolean;
  /** 'auto' (default) uses the exact method when 2·(k + oversample) ≥ min(m, n). */
  method?: SvdMethodName;
}

export interface SvdResult {
  m: number;
  n: number;
  k: number;
  /** f64 [k], descending. */
  S: Float64Array;
  /** f32 [m, k] row-major, column i = i-th left singular vector (when vectors). */
  U?: Float32Array;
  /** f32 [n, k] row-major, column i = i-th right singular vector: A ≈ U·diag(S)·Vᵀ. */
  V?: Float32Array;
  method: 'exact' | 'randomized';
}

// ---- validation -----------------------------------------------------------------------------

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (ArrayBuffer.isView(v)) return `${v.constructor.name}(${(v as unknown as { length: number }).length})`;
  return typeof v;
}

function checkInt(name: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > 2 ** 30)
    throw new UsageError(`${name}: expected an integer in [${min}, 2^30], got ${String(v)}`);
  return v;
}

function checkNumber(name: string, v: unknown): number {
  if (typeof v !== 'number' || Number.isNaN(v)) throw new UsageError(`${name}: expected a number, got ${String(v)}`);
  return v;
}

function checkBool(name: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw new UsageError(`${name}: expected a boolean, got ${typeof v}`);
  return v;
}

/** Elements a row-major [rows, ld] matrix with `cols` used columns spans. */
function span(rows: number, cols: number, ld: number): number {
  return rows === 0 || cols === 0 ? 0 : (rows - 1) * ld + cols;
}

function checkMatrix<T extends Float32Array | Float64Array>(
  name: string,
  v: unknown,
  type: abstract new (...args: never[]) => T,
  rows: number,
  cols: number,
  ld: number,
  ldName: string,
): T {
  if (!(v instanceof type))
    throw new UsageError(`${name}: expected a ${type.name} holding a ${rows}×${cols} matrix, got ${describe(v)}`);
  if (ld < cols) throw new UsageError(`${ldName}: expected at least the row length ${cols}, got ${ld}`);
  const need = span(rows, cols, ld);
  if (v.length < need)
    throw new UsageError(
      `${name}: a ${rows}×${cols} matrix with row stride ${ld} needs ${need} elements, got ${v.length}`,
    );
  return v;
}

const PATH_CODE = { auto: 0, portable: 1, reference: 2 } as const;

interface GemmCall {
  args: Parameters<ReturnType<typeof native>['sgemmSync']>;
  out: Float32Array;
}

function gemmCall(a: Float32Array, b: Float32Array, m: number, n: number, k: number, opts: GemmOptions): GemmCall {
  if (typeof opts !== 'object' || opts === null) throw new UsageError('options: expected an object');
  checkInt('m', m, 0);
  checkInt('n', n, 0);
  checkInt('k', k, 0);
  const transA = checkBool('transA', opts.transA ?? false);
  const transB = checkBool('transB', opts.transB ?? false);
  const alpha = checkNumber('alpha', opts.alpha ?? 1);
  const beta = checkNumber('beta', opts.beta ?? 0);
  const lda = checkInt('lda', opts.lda ?? Math.max(1, transA ? m : k), 1);
  const ldb = checkInt('ldb', opts.ldb ?? Math.max(1, transB ? k : n), 1);
  const ldc = checkInt('ldc', opts.ldc ?? Math.max(1, n), 1);
  const path = opts.path ?? 'auto';
  if (!(path in PATH_CODE)) throw new UsageError(`path: expected 'auto', 'portable' or 'reference', got ${String(path)}`);
  checkMatrix('a', a, Float32Array, transA ? k : m, transA ? m : k, lda, 'lda');
  checkMatrix('b', b, Float32Array, transB ? n : k, transB ? k : n, ldb, 'ldb');
  if (beta !== 0 && opts.out === undefined) throw new UsageError('out: required when beta is not 0 (C is read)');
  const out = opts.out ?? new Float32Array(span(m, n, ldc));
  checkMatrix('out', out, Float32Array, m, n, ldc, 'ldc');
  return {
    args: [transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, out, ldc, PATH_CODE[path]],
    out,
  };
}

// ---- GEMM -----------------------------------------------------------------------------------

/** C[m,n] = alpha·op(A)·op(B) + beta·C, op(A) [m,k], op(B) [k,n]. Returns C. */
export function gemmSync(a: Float32Array, b: Float32Array, m: number, n: number, k: number, opts: GemmOptions = {}): Float32Array {
  const call = gemmCall(a, b, m, n, k, opts);
  native().sgemmSync(...call.args);
  return call.out;
}

/** Async gemmSync: do not touch a, b or out until the Promise settles. */
export async function gemm(a: Float32Array, b: Float32Array, m: number, n: number, k: number, opts: GemmOptions = {}): Promise<Float32Array> {
  const call = gemmCall(a, b, m, n, k, opts);
  await native().sgemm(...call.args);
  return call.out;
}

/** The linear layer y = x·Wᵀ: x [rows, inFeatures], W [outFeatures, inFeatures] → y [rows, outFeatures]. */
export function linearSync(x: Float32Array, w: Float32Array, rows: number, inFeatures: number, outFeatures: number, out?: Float32Array): Float32Array {
  return gemmSync(x, w, rows, outFeatures, inFeatures, { transB: true, ...(out ? { out } : {}) });
}

// ---- SYRK -----------------------------------------------------------------------------------

function syrkCall(a: Float32Array, n: number, k: number, opts: SyrkOptions) {
  if (typeof opts !== 'object' || opts === null) throw new UsageError('options: expected an object');
  checkInt('n', n, 0);
  checkInt('k', k, 0);
  const trans = checkBool('trans', opts.trans ?? true);
  const alpha = checkNumber('alpha', opts.alpha ?? 1);
  const beta = checkNumber('beta', opts.beta ?? 0);
  // trans: A is [k, lda] with n used columns; else [n, lda] with k used columns.
  const lda = checkInt('lda', opts.lda ?? Math.max(1, trans ? n : k), 1);
  const ldc = checkInt('ldc', opts.ldc ?? Math.max(1, n), 1);
  checkMatrix('a', a, Float32Array, trans ? k : n, trans ? n : k, lda, 'lda');
  if (beta !== 0 && opts.out === undefined) throw new UsageError('out: required when beta is not 0 (C is read)');
  const out = opts.out ?? new Float32Array(span(n, n, ldc));
  checkMatrix('out', out, Float32Array, n, n, ldc, 'ldc');
  return { args: [trans, n, k, alpha, a, lda, beta, out, ldc] as const, out };
}

/** Symmetric C[n,n] = alpha·AᵀA + beta·C (trans, default) or alpha·A·Aᵀ + beta·C; about half a GEMM's work. */
export function syrkSync(a: Float32Array, n: number, k: number, opts: SyrkOptions = {}): Float32Array {
  const call = syrkCall(a, n, k, opts);
  native().ssyrkSync(...call.args);
  return call.out;
}

export async function syrk(a: Float32Array, n: number, k: number, opts: SyrkOptions = {}): Promise<Float32Array> {
  const call = syrkCall(a, n, k, opts);
  await native().ssyrk(...call.args);
  return call.out;
}

// ---- SVD and spectra ------------------------------------------------------------------------

const METHOD_CODE = { auto: 0, exact: 1, randomized: 2 } as const;

function svdArgs(a: Float32Array, m: number, n: number, k: number, opts: SvdOptions): NativeSvdOptions {
  if (typeof opts !== 'object' || opts === null) throw new UsageError('options: expected an object');
  checkInt('m', m, 1);
  checkInt('n', n, 1);
  checkInt('k', k, 1);
  if (k > Math.min(m, n)) throw new UsageError(`k: expected at most min(m, n) = ${Math.min(m, n)}, got ${k}`);
  checkMatrix('a', a, Float32Array, m, n, n, 'n');
  const o: NativeSvdOptions = {};
  if (opts.oversample !== undefined) o.oversample = checkInt('oversample', opts.oversample, 0);
  if (opts.powerIters !== undefined) {
    o.powerIters = checkInt('powerIters', opts.powerIters, 0);
    if (o.powerIters > 64) throw new UsageError(`powerIters: expected at most 64, got ${o.powerIters}`);
  }
  if (opts.seed !== undefined) {
    const s = opts.seed;
    const ok = typeof s === 'bigint' ? s >= 0n && s < 2n ** 64n : Number.isSafeInteger(s) && s >= 0;
    if (!ok) throw new UsageError(`seed: expected a non-negative safe integer or a BigInt below 2^64, got ${String(s)}`);
    o.seed = s;
  }
  if (opts.vectors !== undefined) o.vectors = checkBool('vectors', opts.vectors);
  if (opts.method !== undefined) {
    if (!(opts.method in METHOD_CODE))
      throw new UsageError(`method: expected 'auto', 'exact' or 'randomized', got ${String(opts.method)}`);
    o.method = METHOD_CODE[opts.method];
  }
  return o;
}

/** Top-k SVD of A [m, n]: A ≈ U·diag(S)·Vᵀ (see SvdOptions; native/core/svd.h for the method). */
export async function svd(a: Float32Array, m: number, n: number, k: number, opts: SvdOptions = {}): Promise<SvdResult> {
  const r = await native().svd(a, m, n, k, svdArgs(a, m, n, k, opts));
  return { m, n, k, ...r };
}

export function svdSync(a: Float32Array, m: number, n: number, k: number, opts: SvdOptions = {}): SvdResult {
  const r = native().svdSync(a, m, n, k, svdArgs(a, m, n, k, opts));
  return { m, n, k, ...r };
}

function spectrumArgs(what: [string, string, string], x: Float32Array, rows: number, cols: number): void {
  checkInt(what[1], rows, 1);
  checkInt(what[2], cols, 1);
  checkMatrix(what[0], x, Float32Array, rows, cols, cols, what[2]);
}

/** All min(m, n) singular values of A [m, n], descending (f64, from the f64 Gram matrix). */
export async function singularValues(a: Float32Array, m: number, n: number): Promise<Float64Array> {
  spectrumArgs(['a', 'm', 'n'], a, m, n);
  return native().singularValues(a, m, n);
}

export function singularValuesSync(a: Float32Array, m: number, n: number): Float64Array {
  spectrumArgs(['a', 'm', 'n'], a, m, n);
  return native().singularValuesSync(a, m, n);
}

/**
 * All d eigenvalues of ZᵀZ for activations Z [t, d], descending (f64). Uses the t×t Gram
 * matrix when t < d (the other d − t values are exactly 0). Cost ~ min(t,d)²·max(t,d) for the
 * Gram matrix plus (4/3)·min(t,d)³ for the eigenvalues.
 */
export async function gramEigenvalues(z: Float32Array, t: number, d: number): Promise<Float64Array> {
  spectrumArgs(['z', 't', 'd'], z, t, d);
  return native().gramEigenvalues(z, t, d);
}

export function gramEigenvaluesSync(z: Float32Array, t: number, d: number): Float64Array {
  spectrumArgs(['z', 't', 'd'], z, t, d);
  return native().gramEigenvaluesSync(z, t, d);
}

/** Eigen-decomposition of a symmetric f64 matrix [n, n] (lower triangle read; input untouched). */
export function symmetricEigen(a: Float64Array, n: number, opts: { vectors?: boolean } = {}): { values: Float64Array; vectors?: Float64Array } {
  checkInt('n', n, 1);
  checkMatrix('a', a, Float64Array, n, n, n, 'n');
  return native().symEigenSync(a, n, checkBool('vectors', opts.vectors ?? true));
}

/** The randomised SVD's Gaussian test matrix for a seed: f32 [rows, cols], N(0, 1). */
export function gaussianMatrix(rows: number, cols: number, seed: number | bigint = 0): Float32Array {
  checkInt('rows', rows, 0);
  checkInt('cols', cols, 0);
  return native().gaussianMatrix(rows, cols, seed);
}
