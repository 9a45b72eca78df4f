/**
 * Loads the native addon (prebuilds/ or build/ through node-gyp-build; LIEQ_ADDON=<file.node>
 * overrides) and declares its typed surface. Other modules call the addon through the small
 * facades in this folder tree, never through untyped property access.
 */
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
/** Package root (one level above lib/ or dist/). */
export const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export interface BuildInfo {
  simd: string;
  simdUsable: boolean;
  buildSystem: string;
  cuda: boolean;
  compiler?: string;
  napiVersion: number;
}
export interface CpuInfo {
  avx2: boolean;
  fma: boolean;
  f16c: boolean;
  avx512f: boolean;
  neon: boolean;
  hardwareThreads: number;
  threads: number;
}
export interface CudaDevice {
  index: number;
  name: string;
  totalMemory: number;
  computeCapability: string;
  multiprocessors: number;
  memoryBusBits: number;
  memoryClockKHz: number;
  l2Bytes: number;
}
export interface CudaInfo {
  compiled: boolean;
  runtimeVersion: number;
  driverVersion: number;
  reason: string;
  devices: CudaDevice[];
}

/** dtype codes shared with native/core/common.h */
export const enum NativeDType {
  F32 = 0,
  F16 = 1,
  BF16 = 2,
}

/** A packed linear layer as the addon reads it (lib/kernels/quant.ts PackedLinear; docs/format.md). */
export interface NativePackedLayer {
  outFeatures: number;
  inFeatures: number;
  bits: number;
  groupSize: number;
  symmetric: boolean;
  qweight: Uint8Array;
  scales: Uint16Array;
  zeros?: Uint8Array;
}
/** Quantizer settings as the addon reads them (method 0 = min/max, 1 = MSE clipping search). */
export interface NativeQuantizeOptions {
  bits: number;
  groupSize: number;
  symmetric: boolean;
  method: 0 | 1;
  clipGrid: number;
  clipMaxShrink: number;
}
export interface NativePackedFormatInfo {
  blockCodes: number;
  blockBytes: number;
  rowBytes: number;
  bitsPerWeight: number;
  symmetricZero: number;
}

/** SVD settings as the addon reads them (method 0 = auto, 1 = exact, 2 = randomized). */
export interface NativeSvdOptions {
  oversample?: number;
  powerIters?: number;
  seed?: number | bigint;
  vectors?: boolean;
  method?: 0 | 1 | 2;
  lda?: number;
}
export interface NativeSvdResult {
  S: Float64Array;
  U?: Float32Array;
  V?: Float32Array;
  method: 'exact' | 'randomized';
}

/** Shape of a model uploaded to the GPU (native/cuda/gpu_model.h GpuModelConfig). */
export interface NativeGpuModelConfig {
  hidden: number;
  intermediate: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  layers: number;
  vocab: number;
  eps: number;
  window: number;
  maxSeqs: number;
  maxContext: number;
}
/** Opaque handle of a GPU model (a napi External). */
export type NativeGpuModelHandle = { readonly __gpuModel: unique symbol };
export interface NativeGpuModelStats {
  deviceName: string;
  deviceBytes: number;
  weightBytes: number;
  fusedQkvLayers: number;
  fusedGateUpLayers: number;
}

/** The addon's exports. Each kernel family adds its functions here. */
export interface NativeAddon {
  buildInfo(): BuildInfo;
  cpuInfo(): CpuInfo;
  cudaInfo(): CudaInfo;
  // GPU model (native/binding/cuda_binding.cpp; facade lib/cuda/gpu-model.ts). Throw "built without CUDA" in CPU-only builds.
  cudaUnavailableReason(): string;
  cudaModelCreate(config: NativeGpuModelConfig, cos: Float32Array, sin: Float32Array, embedding: Float32Array, finalNorm: Float32Array): NativeGpuModelHandle;
  cudaModelSetLayer(handle: NativeGpuModelHandle, index: number, layer: object): void;
  cudaModelSetHead(handle: NativeGpuModelHandle, lmHead: object | null): void;
  cudaModelCopyLayer(handle: NativeGpuModelHandle, from: number, to: number): void;
  cudaModelStep(handle: NativeGpuModelHandle, ids: Int32Array, seqs: Int32Array, pos: Int32Array, logits: Float32Array | null, useGraph: boolean, vocab: number): Promise<void>;
  cudaModelStats(handle: NativeGpuModelHandle): NativeGpuModelStats;
  cudaModelDispose(handle: NativeGpuModelHandle): void;
  cudaLinearApply(linear: object, x: Float32Array, rows: number): Float32Array;
  // Tensor-core prefill (native/cuda/qgemm_prefill.cuh; facade GpuModel.prefill). tile: 0 auto, 1..4 forced (QgemmTile).
  cudaModelPrefill(handle: NativeGpuModelHandle, ids: Int32Array, seq: number, pos0: number, logits: Float32Array | null, vocab: number, chunkRows: number): Promise<void>;
  cudaPrefillLinearApply(linear: object, x: Float32Array, rows: number, tile: number): { y: Float32Array; tile: number };
  cudaPrefillLinearTime(linear: object, rows: number, iters: number, tile: number): { msMedian: number; msMin: number; tile: number };
  // GPU truncated SVD and Gram spectra (native/binding/svd_gpu_binding.cpp; facade lib/cuda/svd.ts). Reject "built without CUDA" in CPU-only builds.
  cudaSvdUnavailableReason(): string;
  cudaTruncatedSvd(A: Float32Array, m: number, n: number, k: number, opts?: NativeSvdOptions): Promise<NativeSvdResult>;
  cudaGramEigenvalues(Z: Float32Array, t: number, d: number, ld?: number): Promise<Float64Array>;
  cudaSingularValues(A: Float32Array, m: number, n: number, ld?: number): Promise<Float64Array>;
  /** Read-kernel and device-to-device copy bandwidth of the current GPU, measured now (TB/s). */
  cudaMeasureBandwidth(bytes: number, reps: number): { readTBps: number; copyTBps: number; bytes: number };
  setThreads(n: number): number;
  getThreads(): number;
  toF32(src: Uint8Array, dtype: NativeDType, dst: Float32Array): void;
  fromF32(src: Float32Array, dtype: NativeDType, dst: Uint8Array): void;
  countNonFinite(x: Float32Array): number;
  // matrix products, SVD, spectra (native/binding/linalg_binding.cpp; facade lib/kernels/linalg.ts). path 1 = portable, 2 = reference
  sgemm(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number, A: Float32Array, lda: number, B: Float32Array, ldb: number, beta: number, C: Float32Array, ldc: number, path?: 0 | 1 | 2): Promise<void>;
  sgemmSync(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number, A: Float32Array, lda: number, B: Float32Array, ldb: number, beta: number, C: Float32Array, ldc: number, path?: 0 | 1 | 2): void;
  ssyrk(trans: boolean, n: number, k: number, alpha: number, A: Float32Array, lda: number, beta: number, C: Float32Array, ldc: number): Promise<void>;
  ssyrkSync(trans: boolean, n: number, k: number, alpha: number, A: Float32Array, lda: number, beta: number, C: Float32Array, ldc: number): void;
  svd(A: Float32Array, m: number, n: number, k: number, opts?: NativeSvdOptions): Promise<NativeSvdResult>;
  svdSync(A: Float32Array, m: number, n: number, k: number, opts?: NativeSvdOptions): NativeSvdResult;
  gramEigenvalues(Z: Float32Array, t: number, d: number, ld?: number): Promise<Float64Array>;
  gramEigenvaluesSync(Z: Float32Array, t: number, d: number, ld?: number): Float64Array;
  singularValues(A: Float32Array, m: number, n: number, ld?: number): Promise<Float64Array>;
  singularValuesSync(A: Float32Array, m: number, n: number, ld?: number): Float64Array;
  symEigenSync(A: Float64Array, n: number, vectors: boolean): { values: Float64Array; vectors?: Float64Array };
  gaussianMatrix(rows: number, cols: number, seed: number | bigint): Float32Array;
  // packed low-bit weights (native/binding/quant_binding.cpp; facade lib/kernels/quant.ts). impl 1 = scalar reference
  packedFormatInfo(bits: number, groupSize: number, symmetric: boolean, inFeatures: number): NativePackedFormatInfo;
  packedKernelsSimd(): boolean;
  quantizeCodes(w: Float32Array, rows: number, cols: number, opts: NativeQuantizeOptions, codes: Uint8Array, scales: Uint16Array, zeros: Uint8Array | null): void;
  quantizeCodesAsync(w: Float32Array, rows: number, cols: number, opts: NativeQuantizeOptions, codes: Uint8Array, scales: Uint16Array, zeros: Uint8Array | null): Promise<void>;
  quantizePacked(w: Float32Array, rows: number, cols: number, opts: NativeQuantizeOptions, qweight: Uint8Array, scales: Uint16Array, zeros: Uint8Array | null): void;
  quantizePackedAsync(w: Float32Array, rows: number, cols: number, opts: NativeQuantizeOptions, qweight: Uint8Array, scales: Uint16Array, zeros: Uint8Array | null): Promise<void>;
  packCodes(codes: Uint8Array, rows: number, cols: number, bits: number, qweight: Uint8Array): void;
  unpackCodes(qweight: Uint8Array, rows: number, cols: number, bits: number, codes: Uint8Array): void;
  dequantizePacked(layer: NativePackedLayer, dst: Float32Array, impl?: 0 | 1): void;
  dequantizePackedAsync(layer: NativePackedLayer, dst: Float32Array): Promise<void>;
  qmatmul(layer: NativePackedLayer, x: Float32Array, batch: number, bias: Float32Array | null, y: Float32Array, impl?: 0 | 1): void;
  qmatmulAsync(layer: NativePackedLayer, x: Float32Array, batch: number, bias: Float32Array | null, y: Float32Array, impl?: 0 | 1): Promise<void>;
  gemvF32(w: Float32Array, outFeatures: number, inFeatures: number, x: Float32Array, batch: number, bias: Float32Array | null, y: Float32Array, impl?: 0 | 1): void;
  gemvF16(w: Uint16Array, outFeatures: number, inFeatures: number, x: Float32Array, batch: number, bias: Float32Array | null, y: Float32Array, impl?: 0 | 1): void;
  readBandwidth(bytes: number, reps: number): { bestGBs: number; meanGBs: number; bytes: number; reps: number };
  // decoder runtime operators (native/binding/runtime_binding.cpp; facade lib/runtime/ops.ts)
  rmsNorm(x: Float32Array, weight: Float32Array, y: Float32Array, rows: number, dim: number, eps: number): void;
  ropeRotateHalf(x: Float32Array, rows: number, heads: number, headDim: number, pos0: number, cos: Float32Array, sin: Float32Array): void;
  kvStore(src: Float32Array, cache: Float32Array, rows: number, kvHeads: number, headDim: number, capacity: number, pos0: number, transposed: boolean): void;
  attention(q: Float32Array, kCache: Float32Array, vCache: Float32Array, out: Float32Array, nQ: number, heads: number, kvHeads: number, headDim: number, capacity: number, pos0: number, window: number): void;
  attentionRef(q: Float32Array, kCache: Float32Array, vCache: Float32Array, out: Float32Array, nQ: number, heads: number, kvHeads: number, headDim: number, capacity: number, pos0: number, window: number): void;
  linear(x: Float32Array, rows: number, inFeatures: number, weight: Float32Array, outFeatures: number, bias: Float32Array | null, y: Float32Array): void;
  addBiasRows(y: Float32Array, bias: Float32Array, rows: number, n: number): void;
  siluMul(gate: Float32Array, up: Float32Array, out: Float32Array, n: number): void;
  siluMulRef(gate: Float32Array, up: Float32Array, out: Float32Array, n: number): void;
  addInPlace(x: Float32Array, y: Float32Array, n: number): void;
  embedGather(table: Float32Array, dim: number, ids: Int32Array, out: Float32Array): void;
  logSoftmaxNll(logits: Float32Array, rows: number, vocab: number, targets: Int32Array, nll: Float64Array): void;
  logSoftmaxNllRef(logits: Float32Array, rows: number, vocab: number, targets: Int32Array, nll: Float64Array): void;
  // ggml block quantizers for GGUF export (native/binding/gguf_binding.cpp; lib/export/export-gguf.ts). type = ggml type id
  ggmlQuantize(type: number, src: Float32Array, rows: number, cols: number, dst: Uint8Array): void;
  ggmlQuantizeAsync(type: number, src: Float32Array, rows: number, cols: number, dst: Uint8Array): Promise<void>;
  ggmlTypeInfo(type: number): { name: string; blockSize: number; blockBytes: number } | null;
  // GPTQ (native/binding/gptq_binding.cpp; facade lib/quant/gptq.ts)
  gptqAccumulate(hessian: Float64Array, n: number, x: Float32Array, tokens: number): Promise<void>;
  gptqPrepare(hessian: Float64Array, n: number, damp: number, actOrder: boolean, perm: Int32Array, dead: Uint8Array): Promise<{ damp: number; dead: number }>;
  gptqQuantize(w: Float32Array, rows: number, cols: number, factor: Float64Array, perm: Int32Array, dead: Uint8Array, opts: NativeQuantizeOptions & { blockSize: number; staticGroups: boolean }, codes: Uint8Array | null, qweight: Uint8Array | null, scales: Uint16Array, zeros: Uint8Array | null): Promise<number>;
}

let cached: { addon: NativeAddon; path: string } | undefined;

function load(): { addon: NativeAddon; path: string } {
  if (cached) return cached;
  const override = process.env.LIEQ_ADDON;
  let path: string;
  if (override) {
    path = resolve(override);
  } else {
    const ngb = require('node-gyp-build') as { resolve?: (dir: string) => string; path?: (dir: string) => string };
    const find = ngb.resolve ?? ngb.path;
    if (!find) throw new Error('node-gyp-build has no resolve()');
    try {
      path = find(packageRoot);
    } catch (err) {
      throw new Error(
        `lieq: the native addon is not built (looked in ${packageRoot}/prebuilds and build/). ` +
          'Run `npm run build:native`.',
        { cause: err },
      );
    }
  }
  const addon = require(path) as NativeAddon;
  cached = { addon, path };
  return cached;
}

/** The loaded addon (loads it on first use). */
export function native(): NativeAddon {
  return load().addon;
}

/** File the addon was loaded from. */
export function nativePath(): string {
  return load().path;
}
