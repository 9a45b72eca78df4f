/**
 * GPU correctness checks, shared by the vitest file (gpu-model.test.ts, which skips without a
 * GPU) and the standalone device runner (device-checks.ts, bundled and run on the GPU machine,
 * which has no vitest). Each check draws fresh random inputs; the GPU outputs are NaN-poisoned
 * before every launch (native side), and a non-finite value fails the check.
 *
 *  - linears: every bit width × group (32/64/128/per-channel) × symmetric/asymmetric × 1..16
 *    rows through the packed GEMV, and fp16 dense GEMV, against a float64 reference of
 *    dequant(W)·x on fp16-exact inputs (relative error ≤ 1e-3);
 *  - whole models: GPU logits of token-by-token decode, chunked prefill and batched decode
 *    (rows of several sequences in one step), with and without CUDA graphs, against the CPU
 *    runtime (shipped models, dense and 4-bit) or the float64 reference forward (random tiny
 *    models covering GQA, llama3 rope scaling, Qwen3 q/k-norm, Qwen2 biases, sliding window);
 *    each model also decoded alone, one row a step (the single-row path, where attention does
 *    the q/k-norm, RoPE and KV store itself); tiny models at 300 positions, where decode
 *    attention splits every row's keys over up to 16 blocks and combines them.
 */
import type { ModelConfig } from '../../lib/io/config.js';
import { dequantize, quantizeLinearSync, type QuantizeOptions } from '../../lib/kernels/quant.js';
import { GpuModel, gpuLmHead, type GpuModelOptions } from '../../lib/cuda/gpu-model.js';
import { native } from '../../lib/native.js';
import { forward } from '../../lib/runtime/forward.js';
import { applyLinear, type RuntimeLinear } from '../../lib/runtime/linear.js';
import { packModel, RuntimeModel } from '../../lib/runtime/model.js';
import { rmsNorm } from '../../lib/runtime/ops.js';
import { openRuntimeModel } from '../../lib/quant/packed-source.js';
import { dataPath, SHIPPED_MODELS } from '../../lib/util/data-dir.js';
import { randomTensors, referenceForward, tinyConfig, tinyModel, type Variant } from '../runtime/reference-forward.js';

export interface CheckResult {
  name: string;
  /** ‖gpu − ref‖ / ‖ref‖ (NaN when an output was not finite). */
  relErr: number;
  tol: number;
  pass: boolean;
}

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

/** Values k/512, |k| <= 1024: exact in fp16, so the GPU's fp16 rounding of x loses nothing. */
function fp16ExactArray(n: number, r: () => number): Float32Array {
  return Float32Array.from({ length: n }, () => (Math.floor(r() * 2049) - 1024) / 512);
}

function relError(got: ArrayLike<number>, ref: ArrayLike<number>): number {
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
  for (let r = 0; r < rows; r++)
    for (let o = 0; o < out; o++) {
      let s = bias ? bias[o] : 0;
      for (let k = 0; k < inF; k++) s += w[o * inF + k] * x[r * inF + k];
      y[r * out + o] = s;
    }
  return y;
}

/** Packed and dense linears on the GPU against float64. */
export function linearChecks(seed = 1): CheckResult[] {
  const r = rng(seed);
  const out: CheckResult[] = [];
  const groups: QuantizeOptions['groupSize'][] = [32, 64, 128, 'channel'];
  // in = 96 (< one 128-column chunk), 320 (partial last chunk), 640; out not a multiple of 16.
  const shapes: [number, number][] = [[40, 96], [72, 320], [33, 640]];
  let i = 0;
  for (const bits of [2, 3, 4, 8] as const)
    for (const groupSize of groups)
      for (const [o, inF] of shapes) {
        if (typeof groupSize === 'number' && inF % groupSize !== 0) continue;
        const symmetric = i % 3 === 2;
        const rows = [1, 5, 16][i++ % 3];
        const w = Float32Array.from({ length: o * inF }, () => (r() * 2 - 1) * 0.5);
        const packed = quantizeLinearSync(w, o, inF, { bits, groupSize, symmetric });
        const bias = i % 4 === 0 ? Float32Array.from({ length: o }, () => r() - 0.5) : null;
        const x = fp16ExactArray(rows * inF, r);
        const y = native().cudaLinearApply({ kind: 'packed', outFeatures: o, inFeatures: inF, packed, bias }, x, rows);
        const ref = refLinear(dequantize(packed), o, inF, x, rows, bias);
        out.push(result(`packed ${bits}-bit g${groupSize}${symmetric ? ' sym' : ''} ${o}x${inF} rows ${rows}${bias ? ' +bias' : ''}`, relError(y, ref), 1e-3));
      }
  // Dense fp16: weights fp16-exact; in = 40 and 172 (not multiples of 8: padded rows).
  for (const [o, inF, rows] of [[64, 40, 1], [300, 172, 7], [129, 512, 16]] as const) {
    const w = Float32Array.from({ length: o * inF }, () => (Math.floor(r() * 2049) - 1024) / 2048);
    const x = fp16ExactArray(rows * inF, r);
    const y = native().cudaLinearApply({ kind: 'dense', outFeatures: o, inFeatures: inF, weight: w, bias: null }, x, rows);
    out.push(result(`dense fp16 ${o}x${inF} rows ${rows}`, relError(y, refLinear(w, o, inF, x, rows, null)), 1e-3));
  }
  return out;
}

/**
 * Logits the GPU produces for three sequences of `T` tokens fed three ways: seq 1's first
 * `prefill` tokens as one prefill (16-row chunks); then per position a batched step of seq 0
 * (token by token), seq 2 and the rest of seq 1. Returns [seq][T * vocab].
 */
type LoadExtras = Pick<GpuModelOptions, 'lmHead' | 'copyLayerFrom'>;

async function gpuLogits(model: RuntimeModel, seqIds: Int32Array[], prefill: number, graphs: boolean, extras: LoadExtras = {}): Promise<Float32Array[]> {
  const T = seqIds[0].length;
  const V = model.config.vocabSize;
  const gpu = GpuModel.load(model, { maxSeqs: 3, maxContext: T, graphs, ...extras });
  try {
    const got = seqIds.map(() => new Float32Array(T * V));
    const pre = await gpu.run(seqIds[1].subarray(0, prefill), new Int32Array(prefill).fill(1), { logits: true });
    got[1].set(pre!);
    for (let t = 0; t < T; t++) {
      const ids: number[] = [seqIds[0][t], seqIds[2][t]];
      const seqs = [0, 2];
      if (prefill + t < T) ids.push(seqIds[1][prefill + t]), seqs.push(1);
      const lg = (await gpu.run(Int32Array.from(ids), Int32Array.from(seqs), { logits: true }))!;
      got[0].set(lg.subarray(0, V), t * V);
      got[2].set(lg.subarray(V, 2 * V), t * V);
      if (seqs.length === 3) got[1].set(lg.subarray(2 * V, 3 * V), (prefill + t) * V);
    }
    return got;
  } finally {
    gpu.dispose();
  }
}

/**
 * Logits of one sequence decoded one token per step (steps of a single row: the path where the
 * attention kernel also does the q/k-norm, RoPE and KV store, launch_qkv_post_attention).
 */
async function gpuSingleRowLogits(model: RuntimeModel, ids: Int32Array, graphs: boolean, extras: LoadExtras = {}): Promise<Float32Array> {
  const V = model.config.vocabSize;
  const gpu = GpuModel.load(model, { maxSeqs: 1, maxContext: ids.length, graphs, ...extras });
  try {
    const got = new Float32Array(ids.length * V);
    for (let t = 0; t < ids.length; t++) got.set((await gpu.run(ids.subarray(t, t + 1), Int32Array.of(0), { logits: true }))!, t * V);
    return got;
  } finally {
    gpu.dispose();
  }
}

function randomSeqs(vocab: number, T: number, seed: number): Int32Array[] {
  const r = rng(seed);
  return [0, 1, 2].map(() => Int32Array.from({ length: T }, () => Math.floor(r() * vocab)));
}

/** Whole-model logits against `reference(ids)` [T * vocab] for each sequence. */
async function compareModel(name: string, model: RuntimeModel, reference: (ids: Int32Array) => ArrayLike<number>, tol: number, seed: number, extras: LoadExtras = {}, T = 24): Promise<CheckResult[]> {
  const seqs = randomSeqs(model.config.vocabSize, T, seed);
  const refs = seqs.map(reference);
  const res: CheckResult[] = [];
  const withGraphs = await gpuLogits(model, seqs, 19, true, extras);
  for (let s = 0; s < 3; s++) res.push(result(`${name}: ${['decode', 'prefill 19 + decode', 'batched decode'][s]}`, relError(withGraphs[s], refs[s]), tol));
  // Graph replay and direct launches run the same kernels on the same data: identical output.
  const direct = await gpuLogits(model, seqs, 19, false, extras);
  let same = true;
  for (let s = 0; s < 3; s++) for (let i = 0; i < direct[s].length; i++) if (!Object.is(direct[s][i], withGraphs[s][i])) same = false;
  res.push(result(`${name}: CUDA graph = direct launches (bitwise)`, same ? 0 : NaN, 0));
  const single = await gpuSingleRowLogits(model, seqs[0], true, extras);
  const singleDirect = await gpuSingleRowLogits(model, seqs[0], false, extras);
  res.push(result(`${name}: single-row decode`, relError(single, refs[0]), tol));
  const singleSame = single.every((v, i) => Object.is(v, singleDirect[i]));
  res.push(result(`${name}: single-row decode, CUDA graph = direct launches (bitwise)`, singleSame ? 0 : NaN, 0));
  return res;
}

/** Logits tolerance of a whole fp16 model against f32/f64: activations and weights are rounded to fp16. */
export const MODEL_TOL = 1e-2;

/**
 * CPU runtime logits of `model` with `head` as the LM head: the runtime's forward to the last
 * hidden state, its final RMSNorm, then `head` through the CPU linear (packed: the native
 * dequant-matmul). The reference of GpuModel.load(..., { lmHead: 'q4' }) with head = gpuLmHead(model, 'q4').
 */
function cpuLogitsWithHead(model: RuntimeModel, head: RuntimeLinear): (ids: Int32Array) => Float32Array {
  const c = model.config;
  return (ids) => {
    const { hidden, tokens } = forward(model, ids, { logits: 'none' });
    const normed = new Float32Array(tokens * c.hiddenSize);
    rmsNorm(hidden, model.finalNorm, normed, tokens, c.hiddenSize, c.rmsNormEps);
    const y = new Float32Array(tokens * c.vocabSize);
    applyLinear(head, normed, tokens, y);
    return y;
  };
}

export async function shippedModelChecks(seed = 2): Promise<CheckResult[]> {
  const res: CheckResult[] = [];
  for (const name of Object.keys(SHIPPED_MODELS) as (keyof typeof SHIPPED_MODELS)[]) {
    for (const mode of ['fp32', '4-bit g32', '4-bit g32, q4 lm_head'] as const) {
      const model = openRuntimeModel(dataPath(SHIPPED_MODELS[name]));
      if (mode !== 'fp32') packModel(model, { bits: 4, groupSize: 32 });
      if (mode === '4-bit g32, q4 lm_head') {
        // The same packed head on both sides: the CPU reference runs gpuLmHead's RTN 4-bit head.
        const head = gpuLmHead(model, 'q4');
        if (head.kind !== 'packed') throw new Error(`${name}: gpuLmHead(q4) returned a ${head.kind} head`);
        res.push(...(await compareModel(`${name} ${mode}`, model, cpuLogitsWithHead(model, head), MODEL_TOL, seed, { lmHead: 'q4' })));
      } else {
        res.push(...(await compareModel(`${name} ${mode}`, model, (ids) => forward(model, ids).logits!, MODEL_TOL, seed)));
      }
      model.close();
    }
  }
  return res;
}

export async function tinyVariantChecks(seed = 3): Promise<CheckResult[]> {
  const res: CheckResult[] = [];
  const variants: [Variant, Record<string, unknown>][] = [
    ['llama3-gqa', { max_position_embeddings: 64 }],
    ['qwen3', {}],
    ['qwen2', {}],
    ['mistral-window', {}],
  ];
  for (const [variant, overrides] of variants) {
    const cfg: ModelConfig = tinyConfig(variant, overrides);
    const tensors = randomTensors(cfg, seed);
    const model = tinyModel(cfg, tensors);
    const ref = (ids: Int32Array) => {
      const rows = referenceForward(cfg, tensors, ids).logits;
      const flat = new Float64Array(rows.length * cfg.vocabSize);
      rows.forEach((row, t) => flat.set(row, t * cfg.vocabSize));
      return flat;
    };
    res.push(...(await compareModel(`tiny ${variant} (vs float64 reference)`, model, ref, MODEL_TOL, seed)));
    // Packed: the same model, 4-bit g32 / 8-bit, against the CPU runtime on the same packed weights.
    const packedModel = tinyModel(cfg, tensors);
    packModel(packedModel, { bits: variant === 'qwen2' ? 8 : 4, groupSize: 32 });
    res.push(...(await compareModel(`tiny ${variant} packed (vs CPU runtime)`, packedModel, (ids) => forward(packedModel, ids).logits!, MODEL_TOL, seed)));
    // And with the LM head packed to 4 bits (tied and untied heads; widths 40/48 pad to 64, per-channel).
    res.push(...(await compareModel(`tiny ${variant} packed + q4 lm_head (vs CPU runtime, same head)`, packedModel, cpuLogitsWithHead(packedModel, gpuLmHead(packedModel, 'q4')), MODEL_TOL, seed, { lmHead: 'q4' })));
  }
  res.push(...(await longContextChecks(seed)));
  return res;
}

/**
 * Long contexts, where decode attention splits each row's keys over several blocks and combines
 * them (up to 16 parts of >= 16 keys at 300 positions): GQA with Qwen3 q/k-norm (head_dim 16),
 * a sliding window of 100 (the split covers the window only), and head_dim 6 (the kernel's
 * 2-wide path), against the float64 reference; graph replays = direct launches bitwise.
 */
export async function longContextChecks(seed = 5): Promise<CheckResult[]> {
  const T = 300;
  const res: CheckResult[] = [];
  const cases: [string, ModelConfig][] = [
    ['qwen3 GQA', tinyConfig('qwen3', { max_position_embeddings: 512 })],
    ['mistral window 100', tinyConfig('mistral-window', { sliding_window: 100, max_position_embeddings: 512 })],
    ['llama head_dim 6', tinyConfig('llama', { hidden_size: 48, num_attention_heads: 8, num_key_value_heads: 2, max_position_embeddings: 512 })],
  ];
  for (const [name, cfg] of cases) {
    const tensors = randomTensors(cfg, seed);
    const model = tinyModel(cfg, tensors);
    const ref = (ids: Int32Array) => {
      const rows = referenceForward(cfg, tensors, ids).logits;
      const flat = new Float64Array(rows.length * cfg.vocabSize);
      rows.forEach((row, t) => flat.set(row, t * cfg.vocabSize));
      return flat;
    };
    res.push(...(await compareModel(`tiny ${name}, ${T} positions (vs float64 reference)`, model, ref, MODEL_TOL, seed, {}, T)));
  }
  return res;
}

/**
 * Layers uploaded once and copied on the device (GpuModelOptions.copyLayerFrom, what the
 * benchmarks use): a tiny model whose layers all hold layer 0's weights, 4-bit packed, with a q4
 * LM head, loaded with every layer copied from layer 0 and with every layer uploaded: identical
 * logits (bitwise), and both match the CPU runtime.
 */
export async function copiedLayerChecks(seed = 4): Promise<CheckResult[]> {
  const cfg = tinyConfig('llama3-gqa', { max_position_embeddings: 64 });
  const base = tinyModel(cfg, randomTensors(cfg, seed)).source;
  const model = RuntimeModel.fromSource({ ...base, layer: (index) => ({ ...base.layer(0), index }) });
  packModel(model, { bits: 4, groupSize: 32 });
  const head = gpuLmHead(model, 'q4');
  const seqs = randomSeqs(cfg.vocabSize, 24, seed);
  const copied = await gpuLogits(model, seqs, 19, true, { lmHead: 'q4', copyLayerFrom: (l) => (l > 0 ? 0 : undefined) });
  const uploaded = await gpuLogits(model, seqs, 19, true, { lmHead: 'q4' });
  let same = true;
  for (let s = 0; s < 3; s++) for (let i = 0; i < copied[s].length; i++) if (!Object.is(copied[s][i], uploaded[s][i])) same = false;
  const ref = cpuLogitsWithHead(model, head);
  return [
    result('tiny llama3-gqa, repeated layer 4-bit + q4 head: device-copied layers = uploaded layers (bitwise)', same ? 0 : NaN, 0),
    result('tiny llama3-gqa, repeated layer 4-bit + q4 head, copied layers: decode vs CPU runtime', relError(copied[0], ref(seqs[0])), MODEL_TOL),
  ];
}

export function formatResults(results: CheckResult[]): string {
  return results.map((r) => `${r.pass ? 'ok  ' : 'FAIL'} ${r.relErr.toExponential(2).padStart(9)} (tol ${r.tol.toExponential(0)})  ${r.name}`).join('\n');
}
