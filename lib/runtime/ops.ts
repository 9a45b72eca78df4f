/**
 * Typed facade over the native runtime operators (native/core/ops.h, runtime_binding.cpp).
 * Sizes are explicit so callers can pass prefixes of reusable scratch buffers; the binding
 * checks that each buffer is long enough and throws RangeError otherwise.
 */
import { native } from '../native.js';

/** y[r,:] = x[r,:] / sqrt(mean(x[r,:]²) + eps) * weight, for `rows` rows of width `dim` (y may be x). */
export function rmsNorm(x: Float32Array, weight: Float32Array, y: Float32Array, rows: number, dim: number, eps: number): void {
  native().rmsNorm(x, weight, y, rows, dim, eps);
}

/** In-place HF rotate_half RoPE of x [rows, heads*headDim]; row t is position pos0 + t. */
export function ropeRotateHalf(x: Float32Array, rows: number, heads: number, headDim: number, pos0: number, cos: Float32Array, sin: Float32Array): void {
  native().ropeRotateHalf(x, rows, heads, headDim, pos0, cos, sin);
}

/** Copy `rows` tokens of src [rows, kvHeads*headDim] into slots pos0... of a value cache
 *  [kvHeads, capacity, headDim], or (transposed) of a key cache [kvHeads, headDim, capacity]. */
export function kvStore(src: Float32Array, cache: Float32Array, rows: number, kvHeads: number, headDim: number, capacity: number, pos0: number, transposed: boolean): void {
  native().kvStore(src, cache, rows, kvHeads, headDim, capacity, pos0, transposed);
}

export interface AttentionArgs {
  /** [nQ, heads*headDim], RoPE applied. */
  q: Float32Array;
  /** Keys, transposed: [kvHeads, headDim, capacity]; slots 0..pos0+nQ-1 filled. */
  k: Float32Array;
  /** Values: [kvHeads, capacity, headDim]. */
  v: Float32Array;
  /** [nQ, heads*headDim] */
  out: Float32Array;
  nQ: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  capacity: number;
  /** Position of q row 0. */
  pos0: number;
  /** 0 = full causal attention; else keys older than `window` positions are masked. */
  window: number;
}

/** Causal grouped-query attention against a KV cache (scale 1/sqrt(headDim)). */
export function attention(a: AttentionArgs, reference = false): void {
  const f = reference ? native().attentionRef : native().attention;
  f(a.q, a.k, a.v, a.out, a.nQ, a.heads, a.kvHeads, a.headDim, a.capacity, a.pos0, a.window);
}

/** y [rows, outFeatures] = x [rows, inFeatures] · weightᵀ (+ bias). */
export function denseLinear(x: Float32Array, rows: number, inFeatures: number, weight: Float32Array, outFeatures: number, bias: Float32Array | null, y: Float32Array): void {
  native().linear(x, rows, inFeatures, weight, outFeatures, bias, y);
}

export function addBiasRows(y: Float32Array, bias: Float32Array, rows: number, n: number): void {
  native().addBiasRows(y, bias, rows, n);
}

/** out = silu(gate) * up over the first n elements (`reference`: the scalar kernel). */
export function siluMul(gate: Float32Array, up: Float32Array, out: Float32Array, n: number, reference = false): void {
  (reference ? native().siluMulRef : native().siluMul)(gate, up, out, n);
}

/** x += y over the first n elements. */
export function addInPlace(x: Float32Array, y: Float32Array, n: number): void {
  native().addInPlace(x, y, n);
}

/** out[t,:] = table[ids[t],:]; throws RangeError for an id outside the table. */
export function embedGather(table: Float32Array, dim: number, ids: Int32Array, out: Float32Array): void {
  native().embedGather(table, dim, ids, out);
}

/** nll[r] = logsumexp(logits[r,:]) - logits[r, targets[r]] (`reference`: the scalar kernel). */
export function logSoftmaxNll(logits: Float32Array, rows: number, vocab: number, targets: Int32Array, nll: Float64Array, reference = false): void {
  (reference ? native().logSoftmaxNllRef : native().logSoftmaxNll)(logits, rows, vocab, targets, nll);
}
