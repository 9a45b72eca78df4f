/**
 * Independent float64 forward pass of a LLaMA/Qwen/Mistral decoder, written as plainly as
 * possible (loops over tokens, heads and dims; explicit causal/sliding-window mask) for the
 * runtime's tests. It records every layer's input/output and every linear's input, and can
 * skip layers or substitute weights. Also: random tiny models of each architecture variant.
 */
import { LINEAR_NAMES, linearShape, linearTensorName, normaliseConfig, type LinearName, type ModelConfig } from '../../lib/io/config.js';
import { RuntimeModel, tensorSource, type TensorReader } from '../../lib/runtime/model.js';
import { Rng } from '../../lib/runtime/sampling.js';

export type Tensors = Map<string, Float32Array>;

export interface RefTrace {
  /** [T][vocab] */
  logits: Float64Array[];
  layerInputs: Map<number, Float64Array[]>;
  layerOutputs: Map<number, Float64Array[]>;
  /** `${layer}.${linear}` → [T][in] */
  linearInputs: Map<string, Float64Array[]>;
}

const f64 = (a: ArrayLike<number>) => Float64Array.from(a);

function matvec(w: Float32Array, out: number, inF: number, x: Float64Array, bias?: Float32Array): Float64Array {
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = bias ? bias[o] : 0;
    for (let i = 0; i < inF; i++) s += w[o * inF + i] * x[i];
    y[o] = s;
  }
  return y;
}

function rms(x: Float64Array, g: Float32Array, eps: number, off = 0, n = x.length): void {
  let ss = 0;
  for (let i = 0; i < n; i++) ss += x[off + i] ** 2;
  const inv = 1 / Math.sqrt(ss / n + eps);
  for (let i = 0; i < n; i++) x[off + i] = x[off + i] * inv * g[i];
}

/** HF inverse frequencies, written from transformers' _compute_llama3_parameters. */
function invFreq(cfg: ModelConfig): number[] {
  const d = cfg.headDim;
  const base = Array.from({ length: d / 2 }, (_, i) => 1 / cfg.ropeTheta ** ((2 * i) / d));
  const s = cfg.ropeScaling;
  if (!s) return base;
  if (s.type === 'linear') return base.map((f) => f / s.factor);
  const lowW = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highW = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  return base.map((f) => {
    const wl = (2 * Math.PI) / f;
    const scaled = wl > lowW ? f / s.factor : f;
    const medium = !(wl < highW) && !(wl > lowW);
    if (!medium) return scaled;
    const smooth = (s.originalMaxPositionEmbeddings / wl - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return (1 - smooth) * (scaled / s.factor) + smooth * scaled;
  });
}

function rope(x: Float64Array, heads: number, hd: number, pos: number, inv: number[]): void {
  const half = hd / 2;
  for (let h = 0; h < heads; h++) {
    const rot = new Float64Array(hd);
    for (let i = 0; i < hd; i++) rot[i] = i < half ? -x[h * hd + i + half] : x[h * hd + i - half];
    for (let i = 0; i < hd; i++) {
      const a = pos * inv[i % half];
      x[h * hd + i] = x[h * hd + i] * Math.cos(a) + rot[i] * Math.sin(a);
    }
  }
}

export interface RefOptions {
  skip?: Set<number>;
  /** Read a layer's tensors from here instead (same names). */
  layerTensors?: Map<number, Tensors>;
}

export function referenceForward(cfg: ModelConfig, w: Tensors, ids: ArrayLike<number>, opts: RefOptions = {}): RefTrace {
  const T = ids.length;
  const H = cfg.hiddenSize;
  const hd = cfg.headDim;
  const nh = cfg.numHeads;
  const nkv = cfg.numKvHeads;
  const inv = invFreq(cfg);
  const emb = w.get('model.embed_tokens.weight')!;
  let x: Float64Array[] = Array.from({ length: T }, (_, t) => f64(emb.subarray(ids[t] * H, (ids[t] + 1) * H)));
  const trace: RefTrace = { logits: [], layerInputs: new Map(), layerOutputs: new Map(), linearInputs: new Map() };
  const lin = (l: number, name: LinearName, src: Tensors, xs: Float64Array[]): Float64Array[] => {
    trace.linearInputs.set(`${l}.${name}`, xs.map(f64));
    const [out, inF] = linearShape(cfg, name);
    const wn = linearTensorName(l, name);
    return xs.map((v) => matvec(src.get(wn)!, out, inF, v, src.get(wn.replace(/weight$/, 'bias'))));
  };
  for (let l = 0; l < cfg.numLayers; l++) {
    if (opts.skip?.has(l)) continue;
    const src = opts.layerTensors?.get(l) ?? w;
    const p = `model.layers.${l}`;
    trace.layerInputs.set(l, x.map(f64));
    const h = x.map((v) => {
      const c = f64(v);
      rms(c, src.get(`${p}.input_layernorm.weight`)!, cfg.rmsNormEps);
      return c;
    });
    const q = lin(l, 'q_proj', src, h);
    const k = lin(l, 'k_proj', src, h);
    const v = lin(l, 'v_proj', src, h);
    for (let t = 0; t < T; t++) {
      if (cfg.qkNorm) {
        for (let hh = 0; hh < nh; hh++) rms(q[t], src.get(`${p}.self_attn.q_norm.weight`)!, cfg.rmsNormEps, hh * hd, hd);
        for (let hh = 0; hh < nkv; hh++) rms(k[t], src.get(`${p}.self_attn.k_norm.weight`)!, cfg.rmsNormEps, hh * hd, hd);
      }
      rope(q[t], nh, hd, t, inv);
      rope(k[t], nkv, hd, t, inv);
    }
    const att = Array.from({ length: T }, () => new Float64Array(nh * hd));
    for (let t = 0; t < T; t++) {
      for (let hh = 0; hh < nh; hh++) {
        const g = Math.floor(hh / (nh / nkv));
        const scores: number[] = [];
        const keys: number[] = [];
        for (let j = 0; j <= t; j++) {
          if (cfg.slidingWindow !== null && t - j >= cfg.slidingWindow) continue;
          let s = 0;
          for (let d = 0; d < hd; d++) s += q[t][hh * hd + d] * k[j][g * hd + d];
          scores.push(s / Math.sqrt(hd));
          keys.push(j);
        }
        const mx = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - mx));
        const sum = e.reduce((a, b) => a + b, 0);
        for (let i = 0; i < keys.length; i++)
          for (let d = 0; d < hd; d++) att[t][hh * hd + d] += (e[i] / sum) * v[keys[i]][g * hd + d];
      }
    }
    const o = lin(l, 'o_proj', src, att);
    x = x.map((r, t) => r.map((val, i) => val + o[t][i]));
    const h2 = x.map((r) => {
      const c = f64(r);
      rms(c, src.get(`${p}.post_attention_layernorm.weight`)!, cfg.rmsNormEps);
      return c;
    });
    const gate = lin(l, 'gate_proj', src, h2);
    const up = lin(l, 'up_proj', src, h2);
    const act = gate.map((gr, t) => gr.map((gv, i) => (gv / (1 + Math.exp(-gv))) * up[t][i]));
    const down = lin(l, 'down_proj', src, act);
    x = x.map((r, t) => r.map((val, i) => val + down[t][i]));
    trace.layerOutputs.set(l, x.map(f64));
  }
  const head = cfg.tieWordEmbeddings ? emb : w.get('lm_head.weight')!;
  for (let t = 0; t < T; t++) {
    const c = f64(x[t]);
    rms(c, w.get('model.norm.weight')!, cfg.rmsNormEps);
    trace.logits.push(matvec(head, cfg.vocabSize, H, c));
  }
  return trace;
}

// ---------------------------------------------------------------------------------------
// Random tiny models (odd sizes on purpose: hidden 40, 5 heads of 8 over 1 KV head, ...).

export type Variant = 'llama' | 'llama3-gqa' | 'qwen3' | 'qwen2' | 'mistral-window';

export function tinyConfig(variant: Variant, overrides: Record<string, unknown> = {}): ModelConfig {
  const base: Record<string, unknown> = {
    architectures: ['LlamaForCausalLM'],
    hidden_size: 40, intermediate_size: 56, num_hidden_layers: 3, num_attention_heads: 5, num_key_value_heads: 1,
    vocab_size: 37, max_position_embeddings: 64, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
  };
  const v: Record<string, Record<string, unknown>> = {
    llama: { tie_word_embeddings: true },
    'llama3-gqa': {
      hidden_size: 48, num_attention_heads: 6, num_key_value_heads: 2, rope_theta: 500000, tie_word_embeddings: true,
      rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8 },
    },
    qwen3: { architectures: ['Qwen3ForCausalLM'], head_dim: 16, num_attention_heads: 4, num_key_value_heads: 2, tie_word_embeddings: true },
    qwen2: { architectures: ['Qwen2ForCausalLM'], num_attention_heads: 5, num_key_value_heads: 5 },
    'mistral-window': { architectures: ['MistralForCausalLM'], hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, sliding_window: 5 },
  };
  return normaliseConfig({ ...base, ...v[variant], ...overrides });
}

/** Random weights (norm gains around 1, linears ~N(0, 0.2²)-ish uniform) for every tensor of cfg. */
export function randomTensors(cfg: ModelConfig, seed: number): Tensors {
  const rng = new Rng(seed);
  const u = (n: number, scale: number, center = 0) => Float32Array.from({ length: n }, () => center + (rng.next() * 2 - 1) * scale);
  const t: Tensors = new Map();
  const H = cfg.hiddenSize;
  t.set('model.embed_tokens.weight', u(cfg.vocabSize * H, 1));
  for (let l = 0; l < cfg.numLayers; l++) {
    const p = `model.layers.${l}`;
    t.set(`${p}.input_layernorm.weight`, u(H, 0.3, 1));
    t.set(`${p}.post_attention_layernorm.weight`, u(H, 0.3, 1));
    if (cfg.qkNorm) {
      t.set(`${p}.self_attn.q_norm.weight`, u(cfg.headDim, 0.3, 1));
      t.set(`${p}.self_attn.k_norm.weight`, u(cfg.headDim, 0.3, 1));
    }
    for (const name of LINEAR_NAMES) {
      const [out, inF] = linearShape(cfg, name);
      const wn = linearTensorName(l, name);
      t.set(wn, u(out * inF, 1.5 / Math.sqrt(inF)));
      const isQkv = name === 'q_proj' || name === 'k_proj' || name === 'v_proj';
      if (isQkv && cfg.attentionBias) t.set(wn.replace(/weight$/, 'bias'), u(out, 0.2));
    }
  }
  t.set('model.norm.weight', u(H, 0.3, 1));
  if (!cfg.tieWordEmbeddings) t.set('lm_head.weight', u(cfg.vocabSize * H, 1 / Math.sqrt(H)));
  return t;
}

export function mapReader(t: Tensors): TensorReader {
  return {
    has: (n) => t.has(n),
    readF32: (n) => {
      const a = t.get(n);
      if (!a) throw new Error(`no tensor ${n}`);
      return a.slice();
    },
  };
}

export function tinyModel(cfg: ModelConfig, t: Tensors, residency: 'all' | 'streaming' = 'all'): RuntimeModel {
  return RuntimeModel.fromSource(tensorSource(cfg, mapReader(t), 'tiny'), { residency });
}

export function randomIds(n: number, vocab: number, seed: number): Int32Array {
  const rng = new Rng(seed);
  return Int32Array.from({ length: n }, () => Math.floor(rng.next() * vocab));
}

/** max |a - b| / max(1, |b|) over all entries. */
export function maxScaledDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) / Math.max(1, Math.abs(b[i])));
  return m;
}

export function flat(rows: Float64Array[]): Float64Array {
  const out = new Float64Array(rows.reduce((s, r) => s + r.length, 0));
  let o = 0;
  for (const r of rows) {
    out.set(r, o);
    o += r.length;
  }
  return out;
}
