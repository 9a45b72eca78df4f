/**
 * Checks of the tensor-core prefill (native/cuda/qgemm_prefill.cuh, GpuModel.prefill), shared by
 * the vitest file (prefill.test.ts, which skips without a GPU) and the device: this file is also
 * a plain program (bundled by the device run; exits 1 on a failure). Fresh random inputs per run
 * (the seed is printed); the native side fills every output with NaN before the launch, and a
 * non-finite value fails a check.
 *
 *  - GEMM: packed W (bits 2/3/4/8 × group 32/64/128/per-channel × symmetric/asymmetric) and dense
 *    fp16 W, odd shapes (out not a multiple of 16 or of the 64/128-row tile, `in` not a multiple
 *    of 128 or of 8, rows not a multiple of 64), every CTA tile, against a float64 reference of
 *    dequant(W)·x on fp16-exact x (relative error ≤ 1e-3);
 *  - whole models: the last prompt token's logits of GpuModel.prefill (several chunks, GEMM and
 *    GEMV tails) and three decode steps after it, against the 16-row step path (GpuModel.run) and
 *    against the CPU runtime or the float64 reference forward: shipped models (fp32 and 4-bit),
 *    tiny random variants (GQA, llama3 rope, Qwen3 q/k-norm, Qwen2 biases, sliding window), and
 *    a random LLaMA-3.2-1B-shaped model (2 layers, fp16 and 4-bit; against the step path only).
 */
import { pathToFileURL } from 'node:url';

import type { ModelConfig } from '../../lib/io/config.js';
import { cudaUnavailableReason, GpuModel } from '../../lib/cuda/gpu-model.js';
import { dequantize, quantizeLinearSync, type QuantizeOptions } from '../../lib/kernels/quant.js';
import { native } from '../../lib/native.js';
import { forward } from '../../lib/runtime/forward.js';
import { packModel, type RuntimeModel } from '../../lib/runtime/model.js';
import { openRuntimeModel } from '../../lib/quant/packed-source.js';
import { dataPath, SHIPPED_MODELS } from '../../lib/util/data-dir.js';
import { RandomShape } from '../../bench/cuda/random-models.js';
import { randomTensors, referenceForward, tinyConfig, tinyModel, type Variant } from '../runtime/reference-forward.js';
import { formatResults, MODEL_TOL, type CheckResult } from './gpu-checks.js';

/** Deterministic generator (mulberry32) so a failure can be replayed from its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Values k/512, |k| <= 1024: exact in fp16. */
function fp16ExactArray(n: number, r: () => number): Float32Array {
  return Float32Array.from({ length: n }, () => (Math.floor(r() * 2049) - 1024) / 512);
}

function relError(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (got.length !== ref.length) return NaN;
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    if (!Number.isFinite(got[i])) return NaN;
    num += (got[i] - ref[i]) ** 2;
    den += ref[i] ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-300));
}

function result(name: string, relErr: number, tol: number): CheckResult {
  return { name, relErr, tol, pass: Number.isFinite(relErr) && relErr <= tol };
}

/** y = x · Wᵀ (+ bias) in float64. */
function refLinear(w: Float32Array, out: number, inF: number, x: Float32Array, rows: number, bias: Float32Array | null): Float64Array {
  const y = new Float64Array(rows * out);
  const wr = new Float64Array(inF);
  for (let o = 0; o < out; o++) {
    for (let k = 0; k < inF; k++) wr[k] = w[o * inF + k];
    for (let r = 0; r < rows; r++) {
      let s = bias ? bias[o] : 0;
      const xo = r * inF;
      for (let k = 0; k < inF; k++) s += wr[k] * x[xo + k];
      y[r * out + o] = s;
    }
  }
  return y;
}

const TILE_NAMES = ['auto', '128x128', '128x64', '64x64', '128x256'];

/** The prefill GEMM on packed and dense linears against float64. */
export function prefillGemmChecks(seed = 1): CheckResult[] {
  const r = rng(seed);
  const out: CheckResult[] = [];
  const groups: QuantizeOptions['groupSize'][] = [32, 64, 128, 'channel'];
  // out: 40 (< one stripe pair), 200 (not a multiple of 16 / 64 / 128), 272; in: 96 (< one chunk),
  // 320 and 640 (partial last chunk); rows 17..300, never a multiple of 64.
  const shapes: [number, number][] = [[40, 96], [200, 320], [272, 640]];
  const rowsList = [17, 70, 131, 300];
  let i = 0;
  for (const bits of [2, 3, 4, 8] as const)
    for (const groupSize of groups)
      for (const [o, inF] of shapes) {
        if (typeof groupSize === 'number' && inF % groupSize !== 0) continue;
        const symmetric = i % 3 === 2;
        const rows = rowsList[i % rowsList.length];
        const tile = i % 5;
        i++;
        const w = Float32Array.from({ length: o * inF }, () => (r() * 2 - 1) * 0.5);
        const packed = quantizeLinearSync(w, o, inF, { bits, groupSize, symmetric });
        const bias = i % 4 === 0 ? Float32Array.from({ length: o }, () => r() - 0.5) : null;
        const x = fp16ExactArray(rows * inF, r);
        const got = native().cudaPrefillLinearApply({ kind: 'packed', outFeatures: o, inFeatures: inF, packed, bias }, x, rows, tile);
        const ref = refLinear(dequantize(packed), o, inF, x, rows, bias);
        out.push(result(`gemm ${bits}-bit g${groupSize}${symmetric ? ' sym' : ''} ${o}x${inF} rows ${rows} tile ${TILE_NAMES[tile]}${tile ? '' : `=${TILE_NAMES[got.tile]}`}${bias ? ' +bias' : ''}`, relError(got.y, ref), 1e-3));
      }
  // Every tile on a larger 4-bit shape (several CTAs both ways, a 1024-row chunk).
  for (const tile of [1, 2, 3, 4]) {
    const [o, inF, rows] = [520, 1152, 1024];
    const w = Float32Array.from({ length: o * inF }, () => (r() * 2 - 1) * 0.5);
    const packed = quantizeLinearSync(w, o, inF, { bits: 4, groupSize: 128, symmetric: false });
    const x = fp16ExactArray(rows * inF, r);
    const got = native().cudaPrefillLinearApply({ kind: 'packed', outFeatures: o, inFeatures: inF, packed, bias: null }, x, rows, tile);
    out.push(result(`gemm 4-bit g128 ${o}x${inF} rows ${rows} tile ${TILE_NAMES[tile]}`, relError(got.y, refLinear(dequantize(packed), o, inF, x, rows, null)), 1e-3));
  }
  // Dense fp16 (fp16-exact weights): in = 40 and 172 (padded to a multiple of 8), 200, 1000.
  const dense: [number, number, number][] = [[64, 40, 17], [300, 172, 77], [129, 200, 300], [1000, 1000, 129], [264, 520, 600]];
  dense.forEach(([o, inF, rows], k) => {
    const tile = k % 5;
    const w = Float32Array.from({ length: o * inF }, () => (Math.floor(r() * 2049) - 1024) / 2048);
    const bias = k % 2 ? Float32Array.from({ length: o }, () => r() - 0.5) : null;
    const x = fp16ExactArray(rows * inF, r);
    const got = native().cudaPrefillLinearApply({ kind: 'dense', outFeatures: o, inFeatures: inF, weight: w, bias }, x, rows, tile);
    out.push(result(`gemm dense fp16 ${o}x${inF} rows ${rows} tile ${TILE_NAMES[tile]}${bias ? ' +bias' : ''}`, relError(got.y, refLinear(w, o, inF, x, rows, bias)), 1e-3));
  });
  return out;
}

const DECODE_AFTER = 3;

/**
 * Prefill of T tokens (chunkRows per chunk) then DECODE_AFTER decode steps, on sequence 0; the
 * same tokens through the 16-row step path on sequence 1. Logits rows T-1 .. T+2 of both, and
 * of `reference` (all T + 3 rows, or null) when given.
 */
async function comparePrefill(name: string, model: RuntimeModel, T: number, chunkRows: number, reference: ((ids: Int32Array) => ArrayLike<number>) | null, seed: number): Promise<CheckResult[]> {
  const V = model.config.vocabSize;
  const r = rng(seed);
  const ids = Int32Array.from({ length: T + DECODE_AFTER }, () => Math.floor(r() * V));
  const gpu = GpuModel.load(model, { maxSeqs: 2, maxContext: T + DECODE_AFTER });
  const viaPrefill = new Float32Array((1 + DECODE_AFTER) * V);
  const viaSteps = new Float32Array((1 + DECODE_AFTER) * V);
  try {
    viaPrefill.set((await gpu.prefill(ids.subarray(0, T), 0, { logits: true, chunkRows }))!);
    const steps = (await gpu.run(ids.subarray(0, T), new Int32Array(T).fill(1), { logits: true }))!;
    viaSteps.set(steps.subarray((T - 1) * V, T * V));
    for (let t = 0; t < DECODE_AFTER; t++) {
      const lg = (await gpu.run(Int32Array.from([ids[T + t], ids[T + t]]), Int32Array.from([0, 1]), { logits: true }))!;
      viaPrefill.set(lg.subarray(0, V), (1 + t) * V);
      viaSteps.set(lg.subarray(V, 2 * V), (1 + t) * V);
    }
  } finally {
    gpu.dispose();
  }
  const label = `${name}: prefill ${T} (chunks of ${chunkRows})`;
  const res = [
    result(`${label}, last prompt row vs 16-row steps`, relError(viaPrefill.subarray(0, V), viaSteps.subarray(0, V)), MODEL_TOL),
    result(`${label}, ${DECODE_AFTER} decode steps after it vs after 16-row steps`, relError(viaPrefill.subarray(V), viaSteps.subarray(V)), MODEL_TOL),
  ];
  if (reference) {
    const ref = reference(ids);
    const tail = Array.from({ length: (1 + DECODE_AFTER) * V }, (_, i) => ref[(T - 1) * V + i]);
    res.push(result(`${label}, last prompt row + ${DECODE_AFTER} decode steps vs CPU/float64 reference`, relError(viaPrefill, tail), MODEL_TOL));
  }
  return res;
}

export async function prefillModelChecks(seed = 2, opts: { big?: boolean } = {}): Promise<CheckResult[]> {
  const res: CheckResult[] = [];
  for (const name of Object.keys(SHIPPED_MODELS) as (keyof typeof SHIPPED_MODELS)[]) {
    for (const mode of ['fp32', '4-bit g32'] as const) {
      const model = openRuntimeModel(dataPath(SHIPPED_MODELS[name]));
      if (mode !== 'fp32') packModel(model, { bits: 4, groupSize: 32 });
      const cpu = (ids: Int32Array) => forward(model, ids).logits!;
      // 3 GEMM chunks + a 10-row GEMV tail; then 2 GEMM chunks of 60 and 40.
      res.push(...(await comparePrefill(`${name} ${mode}`, model, 100, 30, cpu, seed)));
      res.push(...(await comparePrefill(`${name} ${mode}`, model, 100, 60, cpu, seed + 1)));
      model.close();
    }
  }
  // Head dims 64 and 128 take the tensor-core prefill attention (prefill_attention.cuh), the
  // others the decode attention kernel; T = 150 in chunks of 70 spans several key tiles.
  const variants: [Variant, Record<string, unknown>, number, number][] = [
    ['llama3-gqa', {}, 50, 20], ['qwen3', {}, 50, 20], ['qwen2', {}, 50, 20], ['mistral-window', {}, 50, 20],
    ['llama3-gqa', { head_dim: 64, max_position_embeddings: 256 }, 150, 70],
    ['qwen3', { head_dim: 128, max_position_embeddings: 256 }, 150, 70],
    ['mistral-window', { head_dim: 64, sliding_window: 90, max_position_embeddings: 256 }, 150, 70],
  ];
  for (const [variant, overrides, T, chunk] of variants) {
    const cfg: ModelConfig = tinyConfig(variant, overrides);
    const tensors = randomTensors(cfg, seed);
    const ref = (ids: Int32Array) => {
      const rows = referenceForward(cfg, tensors, ids).logits;
      const flat = new Float64Array(rows.length * cfg.vocabSize);
      rows.forEach((row, t) => flat.set(row, t * cfg.vocabSize));
      return flat;
    };
    const name = `tiny ${variant}${overrides.head_dim ? ` head_dim ${overrides.head_dim}` : ''}`;
    res.push(...(await comparePrefill(`${name} (vs float64)`, tinyModel(cfg, tensors), T, chunk, ref, seed)));
    const packed = tinyModel(cfg, tensors);
    packModel(packed, { bits: variant === 'qwen2' ? 8 : 4, groupSize: 32 });
    res.push(...(await comparePrefill(`${name} packed (vs CPU runtime)`, packed, T, chunk, (ids) => forward(packed, ids).logits!, seed)));
  }
  if (opts.big) {
    const shape = new RandomShape('llama-3.2-1b', 2);
    for (const v of [{ name: 'fp16', layers: 'fp16', head: 'fp16' }, { name: '4-bit', layers: 4, head: 'fp16' }] as const) {
      const { model } = shape.build(v);
      res.push(...(await comparePrefill(`random llama-3.2-1b x2 layers ${v.name}`, model, 300, 1024, null, seed)));
      res.push(...(await comparePrefill(`random llama-3.2-1b x2 layers ${v.name}`, model, 300, 128, null, seed + 1)));
    }
  }
  return res;
}

async function main(): Promise<void> {
  const why = cudaUnavailableReason();
  if (why) {
    console.error(`prefill checks cannot run: ${why}`);
    process.exit(2);
  }
  const seed = Number(process.env.SEED ?? Date.now() & 0xffff);
  console.log(`seed ${seed}`);
  let failed = 0;
  for (const [name, run] of [
    ['prefill GEMM', async () => prefillGemmChecks(seed)],
    ['prefill models', () => prefillModelChecks(seed, { big: true })],
  ] as const) {
    const t0 = performance.now();
    const res = await run();
    console.log(`== ${name} (${res.length} checks, ${((performance.now() - t0) / 1000).toFixed(1)} s)\n${formatResults(res)}`);
    failed += res.filter((c) => !c.pass).length;
  }
  console.log(failed ? `${failed} prefill check(s) FAILED` : 'all prefill checks passed');
  process.exit(failed ? 1 : 0);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
