/**
 * `lieq analyze`: per-layer diagnostics of a model (spec: ../shared/docs/lieq-method.md §3).
 *
 * Walks the trained model and its seed-fixed random reference layer by layer on the same
 * calibration tokens, holding one layer's weights and the calibration hidden states at a time:
 *   for each layer l, for P in {q, k, v}: Z_P = P(RMSNorm_l(X_l)) of all calibration tokens,
 *   spectrum of the row-centred, row-normalised Z_P (native Gram eigenvalues), then
 *   ΔRC_l and TEG_l = mean over P of trained − reference;
 *   the data-free variant on the singular values of W_q, W_k, W_v;
 *   PD_l (optional, v1) = log PPL with layer l skipped − log PPL, on the calibration tokens.
 * Results are cached per (model fingerprint, settings) after every layer, so an interrupted
 * run resumes where it stopped and a rerun returns at once.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

import { Checkpoint } from '../io/checkpoint.js';
import { CONFIG_FILE, type LinearName, type ModelConfig } from '../io/config.js';
import { randomReader, randomRows } from '../io/random-model.js';
import { loadTokenizer } from '../io/tokenizer.js';
import { gramEigenvaluesOn, resolveLinalgDevice, singularValuesOn, type LinalgDevice } from '../cuda/svd.js';
import { forward, runLayer } from '../runtime/forward.js';
import { applyLinear, type RuntimeLinear } from '../runtime/linear.js';
import { RuntimeModel, tensorSource } from '../runtime/model.js';
import { logSoftmaxNll } from '../runtime/ops.js';
import { loadEvalText } from '../runtime/perplexity.js';
import { writeJsonAtomic } from '../util/atomic.js';
import { UsageError } from '../util/errors.js';
import { rng } from './allocate.js';
import { ANALYSIS_FORMAT, type Analysis, type AnalysisSettings, type LayerMetrics } from './analysis.js';
import { hybridCandidates, measureLayerSensitivity, resolveCandidates } from './measured.js';
import { layerLinearWeights, type Backbone } from './plan.js';
import { compactness, normaliseRows, resolveTopK, topKEnergy } from './spectrum.js';

export interface AnalyzeOptions {
  /** Calibration text: a dataset name (wikitext2, tinystories) or a UTF-8 file. */
  calib?: string;
  samples?: number;
  seqlen?: number;
  seed?: number;
  /** k of TEG: integer or percentage of d ("1%" default). */
  topk?: string;
  /** Measure Perplexity Drop (L+1 forward passes; needed by --score v1). */
  pd?: boolean;
  /** Measure single-layer costs (|allowed| suffix passes per layer measured; --score measured / hybrid). */
  measure?: MeasureRequest;
  /**
   * Where the spectra's Gram matrices are computed: 'auto' (default: the GPU when the addon has
   * CUDA and a device is visible), 'cpu' or 'cuda'. Same values either way (lib/cuda/svd.ts).
   */
  device?: LinalgDevice;
  /** Cache folder; null disables caching. Default: LIEQ_CACHE_DIR or ~/.cache/lieq. */
  cacheDir?: string | null;
  onProgress?(p: { stage: string; done: number; total: number }): void;
}

export interface MeasureRequest {
  /** 'all' layers (measured) or the v2 top candidates (hybrid). */
  layers: 'all' | 'hybrid';
  /** Hybrid candidate count: an integer or a percentage of the layers (default "50%", at least 2). */
  candidates?: string;
  allowed?: number[];
  groupSize?: number;
  symmetric?: boolean;
  backbone?: Backbone;
}

/** k values whose TEG ranking is reported for rank stability (§3). */
export const TEG_K_SPECS = ['1', '8', '32', '1%', '5%'];
const PROJ: { key: 'q' | 'k' | 'v'; linear: LinearName }[] = [
  { key: 'q', linear: 'q_proj' },
  { key: 'k', linear: 'k_proj' },
  { key: 'v', linear: 'v_proj' },
];

export function defaultCacheDir(): string {
  return process.env.LIEQ_CACHE_DIR ? resolve(process.env.LIEQ_CACHE_DIR) : join(homedir(), '.cache', 'lieq');
}

/** Identity of a checkpoint without reading its data: config, headers, sizes and mtimes. */
export function modelFingerprint(dir: string): string {
  const h = createHash('sha256');
  h.update(readFileSync(join(dir, CONFIG_FILE)));
  const ck = Checkpoint.open(dir);
  try {
    for (const f of ck.files) {
      const st = statSync(f.path);
      h.update(`${f.path}\0${st.size}\0${st.mtimeMs}\0${f.headerLength}`);
    }
  } finally {
    ck.close();
  }
  return h.digest('hex').slice(0, 16);
}

/** `samples` windows of `seqlen` tokens at seeded random offsets of the tokenized text. */
export function sampleCalibration(tokens: Int32Array, samples: number, seqlen: number, seed: number): Int32Array[] {
  if (tokens.length < seqlen + 1)
    throw new UsageError(`calibration text has ${tokens.length} tokens, fewer than --seqlen ${seqlen}: use a longer text or a shorter --seqlen`);
  const r = rng(seed);
  const out: Int32Array[] = [];
  for (let s = 0; s < samples; s++) {
    const start = Math.floor(r() * (tokens.length - seqlen));
    out.push(tokens.slice(start, start + seqlen));
  }
  return out;
}

interface Spectra {
  rc: number;
  tegByK: Record<string, number>;
}

function spectrumMetrics(eigs: ArrayLike<number>, d: number, ks: string[]): Spectra {
  const tegByK: Record<string, number> = {};
  for (const k of ks) tegByK[k] = topKEnergy(eigs, resolveTopK(k, d));
  return { rc: compactness(eigs), tegByK };
}

/** Spectra of q/k/v projections of the normalised inputs `x` [T, h]. */
async function projectionSpectra(x: Float32Array, T: number, linears: Record<LinearName, RuntimeLinear>, ks: string[], device: LinalgDevice): Promise<Record<'q' | 'k' | 'v', Spectra>> {
  const out = {} as Record<'q' | 'k' | 'v', Spectra>;
  for (const { key, linear } of PROJ) {
    const lin = linears[linear];
    const d = lin.outFeatures;
    const z = new Float32Array(T * d);
    applyLinear(lin, x, T, z);
    normaliseRows(z, T, d);
    const eigs = await gramEigenvaluesOn(device, z, T, d);
    out[key] = spectrumMetrics(eigs, d, ks);
  }
  return out;
}

/** Data-free variant: spectra (σ²) of W_q, W_k, W_v. */
async function weightSpectra(linears: Record<LinearName, RuntimeLinear>, ks: string[], device: LinalgDevice): Promise<Record<'q' | 'k' | 'v', Spectra>> {
  const out = {} as Record<'q' | 'k' | 'v', Spectra>;
  for (const { key, linear } of PROJ) {
    const lin = linears[linear];
    if (lin.kind !== 'dense') throw new UsageError('analyze needs a full-precision model (got packed weights)');
    const s = await singularValuesOn(device, lin.weight, lin.outFeatures, lin.inFeatures);
    out[key] = spectrumMetrics(Array.from(s, (v) => v * v), Math.min(lin.outFeatures, lin.inFeatures), ks);
  }
  return out;
}

const meanQkv = (a: Record<'q' | 'k' | 'v', number>) => (a.q + a.k + a.v) / 3;

/** Mean next-token NLL of the calibration sequences (optionally with one layer skipped). */
function calibrationNll(model: RuntimeModel, seqs: Int32Array[], skip?: number): number {
  let sum = 0;
  let n = 0;
  for (const ids of seqs) {
    const r = forward(model, ids, { logits: 'all', skipLayers: skip === undefined ? [] : [skip] });
    const rows = ids.length - 1;
    const nll = new Float64Array(rows);
    logSoftmaxNll(r.logits!, rows, model.config.vocabSize, ids.subarray(1), nll);
    for (const v of nll) sum += v;
    n += rows;
  }
  return sum / n;
}

/**
 * Embedding rows of each sequence, fetched once per distinct token id (`row(id)` reads or
 * draws one row): the full vocab × hidden table is never materialised.
 */
function embedSequences(seqs: Int32Array[], h: number, rows: (ids: number[]) => Float32Array): Float32Array[] {
  const distinct = [...new Set(seqs.flatMap((s) => Array.from(s)))].sort((a, b) => a - b);
  const table = rows(distinct);
  const at = new Map(distinct.map((id, i) => [id, i]));
  return seqs.map((ids) => {
    const out = new Float32Array(ids.length * h);
    for (let t = 0; t < ids.length; t++) {
      const i = at.get(ids[t])!;
      out.set(table.subarray(i * h, (i + 1) * h), t * h);
    }
    return out;
  });
}

export async function analyzeModel(modelDir: string, o: AnalyzeOptions = {}): Promise<Analysis> {
  const analysis = await analyzeGeometry(modelDir, o);
  if (!o.measure) return analysis;
  const L = analysis.model.numLayers;
  const candidates = o.measure.layers === 'hybrid' ? hybridCandidates(analysis.layers.map((l) => l.deltaRC), resolveCandidates(o.measure.candidates ?? '50%', L)) : undefined;
  const model = RuntimeModel.open(analysis.model.dir, { residency: 'all' });
  try {
    const { calib, samples, seqlen, seed } = analysis.settings;
    const { allowed, groupSize, symmetric, backbone } = o.measure;
    const measured = await measureLayerSensitivity(analysis.model.dir, model, {
      calib, samples, seqlen, seed, allowed, groupSize, symmetric, backbone,
      layers: candidates,
      cacheDir: o.cacheDir,
      onProgress: o.onProgress,
    });
    return { ...analysis, measured: { ...measured, ...(candidates ? { candidates } : {}) } };
  } finally {
    model.close();
  }
}

/** ΔRC, TEG, weight spectra and (optionally) PD of every layer; cached and resumable. */
async function analyzeGeometry(modelDir: string, o: AnalyzeOptions): Promise<Analysis> {
  const dir = resolve(modelDir);
  const settingsIn = { calib: o.calib ?? 'wikitext2', samples: o.samples ?? 32, seqlen: o.seqlen ?? 512, seed: o.seed ?? 0, topk: o.topk ?? '1%' };
  if (!Number.isSafeInteger(settingsIn.samples) || settingsIn.samples < 1) throw new UsageError(`--samples: expected a positive integer, got ${settingsIn.samples}`);
  if (!Number.isSafeInteger(settingsIn.seqlen) || settingsIn.seqlen < 2) throw new UsageError(`--seqlen: expected an integer ≥ 2, got ${settingsIn.seqlen}`);
  const device = resolveLinalgDevice(o.device ?? 'auto');
  const trained = RuntimeModel.open(dir, { residency: 'streaming', layersOnly: true });
  const cfg: ModelConfig = trained.config;
  const reference = RuntimeModel.fromSource(tensorSource(cfg, randomReader(cfg, settingsIn.seed), 'random reference'), { residency: 'streaming', layersOnly: true });
  try {
    const seqlen = Math.min(settingsIn.seqlen, cfg.maxPositionEmbeddings);
    const settings: AnalysisSettings = { ...settingsIn, seqlen, perplexityDrop: !!o.pd };
    const ks = [...new Set([settings.topk, ...TEG_K_SPECS])];
    resolveTopK(settings.topk, 8); // validate early

    const fingerprint = modelFingerprint(dir);
    // The device is not part of the key: the GPU forms the same f64 Gram matrices (exact
    // products of the f32 entries, summed in another order) and the host the same
    // eigenvalues, so the metrics agree to ~1e-12 and a cache from either device serves both.
    const key = createHash('sha256').update(JSON.stringify({ fingerprint, settings, format: ANALYSIS_FORMAT })).digest('hex').slice(0, 20);
    const cacheDir = o.cacheDir === undefined ? defaultCacheDir() : o.cacheDir;
    const cachePath = cacheDir ? join(cacheDir, `analysis-${key}.json`) : null;
    const L = cfg.numLayers;
    const analysis: Analysis = {
      format: ANALYSIS_FORMAT,
      model: { dir, architecture: cfg.architecture, numLayers: L, hiddenSize: cfg.hiddenSize, fingerprint },
      settings,
      layerWeights: new Array(L).fill(layerLinearWeights(cfg)),
      layers: [],
    };
    if (cachePath && existsSync(cachePath)) {
      const cached = JSON.parse(readFileSync(cachePath, 'utf8')) as Analysis;
      if (cached.format === ANALYSIS_FORMAT && cached.model.fingerprint === fingerprint) {
        analysis.layers = cached.layers;
        analysis.baseLogPpl = cached.baseLogPpl;
        // Complete only if every requested metric is there: a run killed during the PD stage
        // has all layers' geometry cached but not their PD.
        if (analysis.layers.length === L && (!o.pd || analysis.layers.every((l) => l.pd !== undefined))) return analysis;
      }
    }
    const save = () => {
      if (cachePath) writeJsonAtomic(cachePath, analysis);
    };

    const tokenizer = await loadTokenizer(dir);
    const text = loadEvalText(settings.calib).text;
    const seqs = sampleCalibration(tokenizer.encode(text, { addBos: true }), settings.samples, seqlen, settings.seed);
    const T = seqs.length * seqlen;
    const h = cfg.hiddenSize;
    // Hidden states of every calibration sequence, for both models: [seqs][seqlen × h].
    const embName = 'model.embed_tokens.weight';
    const ck = Checkpoint.open(dir);
    let hsTrained: Float32Array[];
    try {
      hsTrained = embedSequences(seqs, h, (ids) => ck.readRowsF32(embName, ids));
    } finally {
      ck.close();
    }
    let hsRef = embedSequences(seqs, h, (ids) => {
      const out = new Float32Array(ids.length * h);
      ids.forEach((id, i) => out.set(randomRows(cfg, embName, [cfg.vocabSize, h], settings.seed, id, 1), i * h));
      return out;
    });

    const pdTotal = o.pd ? L + 1 : 0;
    const total = L + pdTotal;
    let done = analysis.layers.length;
    o.onProgress?.({ stage: `layer ${done}/${L}`, done, total });

    // Walk both models through the layers already analysed (resume), then analyse the rest.
    const step = async (model: RuntimeModel, l: number, hs: Float32Array[], capture: boolean) => {
      const xs = capture ? new Float32Array(T * h) : null;
      const next = hs.map((x, s) =>
        runLayer(model, l, x, {
          hooks: xs ? { linearInput: (_l, name, inp) => { if (name === 'q_proj') xs.set(inp.subarray(0, seqlen * h), s * seqlen * h); } } : undefined,
        }),
      );
      const spectra = xs ? await projectionSpectra(xs, T, model.layer(l).linears, ks, device) : null;
      const wspec = capture ? await weightSpectra(model.layer(l).linears, ks, device) : null;
      return { next, spectra, wspec };
    };
    // Walk only as far as the last layer still missing (a resumed PD stage walks none).
    for (let l = 0; l < L && analysis.layers.length < L; l++) {
      const capture = l >= analysis.layers.length;
      const a = await step(trained, l, hsTrained, capture);
      const b = await step(reference, l, hsRef, capture);
      hsTrained = a.next;
      hsRef = b.next;
      if (!capture) continue;
      const s = a.spectra!, r = b.spectra!, ws = a.wspec!, wr = b.wspec!;
      const tegByK: Record<string, number> = {};
      for (const k of ks) tegByK[k] = meanQkv({ q: s.q.tegByK[k] - r.q.tegByK[k], k: s.k.tegByK[k] - r.k.tegByK[k], v: s.v.tegByK[k] - r.v.tegByK[k] });
      const m: LayerMetrics = {
        layer: l,
        deltaRC: meanQkv({ q: s.q.rc - r.q.rc, k: s.k.rc - r.k.rc, v: s.v.rc - r.v.rc }),
        teg: tegByK[settings.topk],
        rc: { q: s.q.rc, k: s.k.rc, v: s.v.rc },
        rcReference: { q: r.q.rc, k: r.k.rc, v: r.v.rc },
        tegByK,
        weightDeltaRC: meanQkv({ q: ws.q.rc - wr.q.rc, k: ws.k.rc - wr.k.rc, v: ws.v.rc - wr.v.rc }),
        weightTeg: meanQkv({
          q: ws.q.tegByK[settings.topk] - wr.q.tegByK[settings.topk],
          k: ws.k.tegByK[settings.topk] - wr.k.tegByK[settings.topk],
          v: ws.v.tegByK[settings.topk] - wr.v.tegByK[settings.topk],
        }),
      };
      analysis.layers.push(m);
      save();
      o.onProgress?.({ stage: `layer ${l + 1}/${L} analysed`, done: ++done, total });
    }
    hsTrained = [];
    hsRef = [];

    if (o.pd && analysis.layers.some((l) => l.pd === undefined)) {
      const full = RuntimeModel.open(dir, { residency: 'all' });
      try {
        const base = analysis.baseLogPpl ?? calibrationNll(full, seqs);
        analysis.baseLogPpl = base;
        o.onProgress?.({ stage: 'perplexity drop', done: ++done, total });
        for (const m of analysis.layers) {
          if (m.pd !== undefined) { done++; continue; }
          m.pd = calibrationNll(full, seqs, m.layer) - base;
          save();
          o.onProgress?.({ stage: 'perplexity drop', done: ++done, total });
        }
      } finally {
        full.close();
      }
    }
    return analysis;
  } finally {
    trained.close();
    reference.close();
  }
}
