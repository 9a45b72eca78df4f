/**
 * The decoder forward pass, orchestrated layer by layer in TypeScript over native operators:
 *
 *   x = embed(ids)
 *   per layer:  h = rms(x);  q,k,v = h·Wqkvᵀ (+b);  [Qwen3: rms per head of q,k];  RoPE(q,k)
 *               x += o_proj(attention(q, K, V));  h = rms(x);  x += down(silu(gate(h)) * up(h))
 *   logits = rms(x) · lm_headᵀ
 *
 * Options add what analysis and calibration need: a KV cache (incremental decoding), layers
 * skipped (identity on the residual stream) or replaced, hooks that see each layer's input and
 * output and each linear's input, and stopping after a given layer.
 */
import type { LinearName } from '../io/config.js';
import { UsageError } from '../util/errors.js';
import { KvCache } from './kv-cache.js';
import { applyLinear } from './linear.js';
import { checkLayerWeights, type LayerWeights, type RuntimeModel } from './model.js';
import { addInPlace, attention, embedGather, kvStore, rmsNorm, ropeRotateHalf, siluMul } from './ops.js';

/**
 * Callbacks into a forward pass. Arrays passed in are views of the runtime's scratch buffers,
 * valid only during the call: copy (`.slice()`) what you keep. q/k/v_proj share one input, as
 * do gate/up_proj: the hook is called once for each name with the same array object.
 */
export interface ForwardHooks {
  /** Residual stream entering decoder layer `layer`, [tokens, hidden]. */
  layerInput?(layer: number, hidden: Float32Array, tokens: number): void;
  /** Residual stream leaving decoder layer `layer`, [tokens, hidden]. */
  layerOutput?(layer: number, hidden: Float32Array, tokens: number): void;
  /** Input activations of a linear, [tokens, inFeatures]. */
  linearInput?(layer: number, linear: LinearName, x: Float32Array, tokens: number): void;
}

export interface ForwardOptions {
  /** Append the tokens to this cache (positions continue at cache.length). Without it a
   *  temporary cache holds the sequence and positions start at 0. Layers not run (skipped, or
   *  after stopAfterLayer) leave their slots unfilled: use the same options for every call
   *  on one cache. */
  cache?: KvCache;
  /** 'all' (default): logits of every token; 'last': of the last token only; 'none'. */
  logits?: 'all' | 'last' | 'none';
  /** Layers to skip: their output is their input (identity on the residual stream). */
  skipLayers?: Iterable<number>;
  /** Layers to run with other weights for this call (e.g. quantized versions). */
  replaceLayers?: ReadonlyMap<number, LayerWeights>;
  hooks?: ForwardHooks;
  /** Run decoder layers 0..stopAfterLayer only: no final norm, no logits. */
  stopAfterLayer?: number;
}

export interface ForwardResult {
  tokens: number;
  /** [tokens, vocab] ('all'), [1, vocab] ('last') or null ('none' / stopAfterLayer). */
  logits: Float32Array | null;
  /** Residual stream after the last layer run, before the final norm: [tokens, hidden], caller-owned. */
  hidden: Float32Array;
}

/** Scratch buffers of one model, grown to the largest token count seen. */
class Workspace {
  rows = 0;
  h = new Float32Array(0);
  q = new Float32Array(0);
  k = new Float32Array(0);
  v = new Float32Array(0);
  att = new Float32Array(0);
  gate = new Float32Array(0);
  up = new Float32Array(0);
  tmp = new Float32Array(0);

  ensure(model: RuntimeModel, rows: number): this {
    if (rows <= this.rows) return this;
    const c = model.config;
    const qDim = c.numHeads * c.headDim;
    const kvDim = c.numKvHeads * c.headDim;
    this.rows = rows;
    this.h = new Float32Array(rows * c.hiddenSize);
    this.q = new Float32Array(rows * qDim);
    this.k = new Float32Array(rows * kvDim);
    this.v = new Float32Array(rows * kvDim);
    this.att = new Float32Array(rows * qDim);
    this.gate = new Float32Array(rows * c.intermediateSize);
    this.up = new Float32Array(rows * c.intermediateSize);
    this.tmp = new Float32Array(rows * c.hiddenSize);
    return this;
  }
}

const workspaces = new WeakMap<RuntimeModel, Workspace>();

function workspace(model: RuntimeModel, rows: number): Workspace {
  let ws = workspaces.get(model);
  if (!ws) {
    ws = new Workspace();
    workspaces.set(model, ws);
  }
  return ws.ensure(model, rows);
}

/** Check token ids: integers in [0, vocab). */
export function checkTokenIds(model: RuntimeModel, ids: Int32Array): void {
  if (!(ids instanceof Int32Array)) throw new UsageError('ids: expected an Int32Array of token ids');
  if (model.layersOnly) throw new UsageError(`${model.source.label}: loaded with layersOnly (no embedding or LM head): use runLayer`);
  const v = model.config.vocabSize;
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] < 0 || ids[i] >= v) throw new UsageError(`ids[${i}] = ${ids[i]} is outside the vocabulary [0, ${v})`);
  }
}

/** Token embeddings [ids.length, hidden] (a fresh array). */
export function embedTokens(model: RuntimeModel, ids: Int32Array): Float32Array {
  checkTokenIds(model, ids);
  const out = new Float32Array(ids.length * model.config.hiddenSize);
  embedGather(model.embedding, model.config.hiddenSize, ids, out);
  return out;
}

/** One layer's slice of a KV cache: K [kvHeads, headDim, capacity] (transposed), V [kvHeads,
 *  capacity, headDim]; new tokens go at pos0... */
export interface LayerKv {
  k: Float32Array;
  v: Float32Array;
  capacity: number;
  pos0: number;
}

/** Consecutive rows of the residual stream that belong to one sequence, with its KV slice. */
export interface LayerSegment {
  rows: number;
  kv: LayerKv;
}

/**
 * Run decoder layer `w` in place on the residual stream x [tokens, hidden]; row t is at
 * position kv.pos0 + t and its key/value are stored in kv's slots.
 */
export function runDecoderLayer(model: RuntimeModel, w: LayerWeights, x: Float32Array, tokens: number, kv: LayerKv, hooks?: ForwardHooks): void {
  runDecoderLayerRows(model, w, x, [{ rows: tokens, kv }], hooks);
}

/**
 * Run decoder layer `w` in place on x, whose rows are the concatenated `segments` of several
 * independent sequences (batched decoding: one row each). Every linear runs once over all
 * rows, so packed weights are read once per call; RoPE, the KV store and attention run per
 * segment on its own positions and cache.
 */
export function runDecoderLayerRows(model: RuntimeModel, w: LayerWeights, x: Float32Array, segments: readonly LayerSegment[], hooks?: ForwardHooks): void {
  const c = model.config;
  const H = c.hiddenSize;
  const hd = c.headDim;
  const qDim = c.numHeads * hd;
  const kvDim = c.numKvHeads * hd;
  const I = c.intermediateSize;
  let n = 0;
  let maxPos = 0;
  for (const s of segments) {
    n += s.rows;
    maxPos = Math.max(maxPos, s.kv.pos0 + s.rows);
  }
  const ws = workspace(model, n);
  const l = w.index;
  const L = w.linears;
  const view = (a: Float32Array, width: number) => a.subarray(0, n * width);

  hooks?.layerInput?.(l, view(x, H), n);
  // attention block
  rmsNorm(x, w.inputNorm, ws.h, n, H, c.rmsNormEps);
  if (hooks?.linearInput) {
    const shared = view(ws.h, H); // one object for the three: capture copies it once
    for (const name of ['q_proj', 'k_proj', 'v_proj'] as const) hooks.linearInput(l, name, shared, n);
  }
  applyLinear(L.q_proj, ws.h, n, ws.q);
  applyLinear(L.k_proj, ws.h, n, ws.k);
  applyLinear(L.v_proj, ws.h, n, ws.v);
  if (w.qNorm && w.kNorm) {
    rmsNorm(ws.q, w.qNorm, ws.q, n * c.numHeads, hd, c.rmsNormEps);
    rmsNorm(ws.k, w.kNorm, ws.k, n * c.numKvHeads, hd, c.rmsNormEps);
  }
  const { cos, sin } = model.rope.ensure(maxPos);
  let r = 0;
  for (const { rows, kv } of segments) {
    const q = ws.q.subarray(r * qDim, (r + rows) * qDim);
    const k = ws.k.subarray(r * kvDim, (r + rows) * kvDim);
    const v = ws.v.subarray(r * kvDim, (r + rows) * kvDim);
    const pos0 = kv.pos0;
    ropeRotateHalf(q, rows, c.numHeads, hd, pos0, cos, sin);
    ropeRotateHalf(k, rows, c.numKvHeads, hd, pos0, cos, sin);
    kvStore(k, kv.k, rows, c.numKvHeads, hd, kv.capacity, pos0, true);
    kvStore(v, kv.v, rows, c.numKvHeads, hd, kv.capacity, pos0, false);
    attention({
      q, k: kv.k, v: kv.v, out: ws.att.subarray(r * qDim, (r + rows) * qDim),
      nQ: rows, heads: c.numHeads, kvHeads: c.numKvHeads, headDim: hd,
      capacity: kv.capacity, pos0, window: c.slidingWindow ?? 0,
    });
    r += rows;
  }
  hooks?.linearInput?.(l, 'o_proj', view(ws.att, qDim), n);
  applyLinear(L.o_proj, ws.att, n, ws.tmp);
  addInPlace(x, ws.tmp, n * H);
  // MLP block
  rmsNorm(x, w.postAttentionNorm, ws.h, n, H, c.rmsNormEps);
  if (hooks?.linearInput) {
    const shared = view(ws.h, H);
    for (const name of ['gate_proj', 'up_proj'] as const) hooks.linearInput(l, name, shared, n);
  }
  applyLinear(L.gate_proj, ws.h, n, ws.gate);
  applyLinear(L.up_proj, ws.h, n, ws.up);
  siluMul(ws.gate, ws.up, ws.gate, n * I);
  hooks?.linearInput?.(l, 'down_proj', view(ws.gate, I), n);
  applyLinear(L.down_proj, ws.gate, n, ws.tmp);
  addInPlace(x, ws.tmp, n * H);
  hooks?.layerOutput?.(l, view(x, H), n);
}

/**
 * Logits of `rows` rows of the residual stream starting at row `rowStart`: final RMSNorm then
 * the LM head. Returns `out` (allocated when not given) [rows, vocab].
 */
export function logitsFromHidden(model: RuntimeModel, hidden: Float32Array, rowStart: number, rows: number, out?: Float32Array): Float32Array {
  const c = model.config;
  const H = c.hiddenSize;
  const normed = new Float32Array(rows * H);
  rmsNorm(hidden.subarray(rowStart * H, (rowStart + rows) * H), model.finalNorm, normed, rows, H, c.rmsNormEps);
  const y = out ?? new Float32Array(rows * c.vocabSize);
  applyLinear(model.lmHead, normed, rows, y);
  return y;
}

function layerSet(model: RuntimeModel, layers: Iterable<number> | undefined, what: string): Set<number> {
  const s = new Set<number>();
  if (!layers) return s;
  for (const l of layers) {
    if (!Number.isInteger(l) || l < 0 || l >= model.numLayers)
      throw new UsageError(`${what}: layer ${l} is not an integer in [0, ${model.numLayers})`);
    s.add(l);
  }
  return s;
}

/** Run the model on `ids` (one sequence). See ForwardOptions for caching, skipping and hooks. */
export function forward(model: RuntimeModel, ids: Int32Array, opts: ForwardOptions = {}): ForwardResult {
  checkTokenIds(model, ids);
  const c = model.config;
  const n = ids.length;
  if (n === 0) throw new UsageError('ids: expected at least one token');
  const cache = opts.cache ?? new KvCache(c, n);
  if (cache.kvHeads !== c.numKvHeads || cache.headDim !== c.headDim || cache.k.length !== c.numLayers)
    throw new UsageError('cache: was made for a model of another shape');
  if (cache.free < n) throw new UsageError(`cache: ${n} tokens do not fit (${cache.length} of ${cache.capacity} positions used)`);
  const skip = layerSet(model, opts.skipLayers, 'skipLayers');
  const replace = opts.replaceLayers ?? new Map<number, LayerWeights>();
  for (const [l, w] of replace) {
    layerSet(model, [l], 'replaceLayers');
    checkLayerWeights(c, w, l);
  }
  const last = opts.stopAfterLayer ?? c.numLayers - 1;
  if (!Number.isInteger(last) || last < 0 || last >= c.numLayers)
    throw new UsageError(`stopAfterLayer: expected an integer in [0, ${c.numLayers}), got ${opts.stopAfterLayer}`);

  const x = new Float32Array(n * c.hiddenSize);
  embedGather(model.embedding, c.hiddenSize, ids, x);
  for (let l = 0; l <= last; l++) {
    if (skip.has(l)) continue;
    const kv = { k: cache.k[l], v: cache.v[l], capacity: cache.capacity, pos0: cache.length };
    runDecoderLayer(model, replace.get(l) ?? model.layer(l), x, n, kv, opts.hooks);
  }
  cache.advance(n);

  const mode = opts.stopAfterLayer !== undefined ? 'none' : (opts.logits ?? 'all');
  let logits: Float32Array | null = null;
  if (mode === 'all') logits = logitsFromHidden(model, x, 0, n);
  else if (mode === 'last') logits = logitsFromHidden(model, x, n - 1, 1);
  else if (mode !== 'none') throw new UsageError(`logits: expected "all", "last" or "none", got ${JSON.stringify(mode)}`);
  return { tokens: n, logits, hidden: x };
}

/**
 * Streaming: run decoder layer `layer` alone on one sequence's hidden states
 * [tokens, hidden] (positions 0..tokens-1) and return its output (a new array; the input is
 * not modified). `weights` overrides the model's layer (e.g. a quantized candidate). With a
 * model opened in 'streaming' residency this holds one layer at a time, so calibration can
 * walk a model layer by layer: embedTokens → runLayer(0) → runLayer(1) → ...
 */
export function runLayer(model: RuntimeModel, layer: number, hiddenIn: Float32Array, opts: { weights?: LayerWeights; hooks?: ForwardHooks } = {}): Float32Array {
  const H = model.config.hiddenSize;
  if (!(hiddenIn instanceof Float32Array) || hiddenIn.length === 0 || hiddenIn.length % H !== 0)
    throw new UsageError(`hiddenIn: expected a Float32Array of tokens × ${H} values, got ${hiddenIn?.length}`);
  layerSet(model, [layer], 'layer');
  const w = opts.weights ?? model.layer(layer);
  if (w.index !== layer) throw new UsageError(`weights: are those of layer ${w.index}, not ${layer}`);
  const n = hiddenIn.length / H;
  checkLayerWeights(model.config, w, layer);
  const x = hiddenIn.slice();
  const kvSize = model.config.numKvHeads * n * model.config.headDim;
  const kv = { k: new Float32Array(kvSize), v: new Float32Array(kvSize), capacity: n, pos0: 0 };
  runDecoderLayer(model, w, x, n, kv, opts.hooks);
  return x;
}
