/**
 * `lieq quantize`: quantize a model layer by layer under a plan and write the packed model
 * directory (packed-model.ts). Streams: one decoder layer's f32 weights are in memory at a time
 * (plus the embedding while it is converted); the output directory appears only when complete.
 * Layers whose plan backbone is 'gptq' are calibrated layer-sequentially (gptq-calibrate.ts):
 * the calibration hidden states of one layer boundary are then held as well.
 */
import { createHash } from 'node:crypto';
import { existsSync, writeFileSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { CONFIG_FILE, linearTensorName, LINEAR_NAMES, type ModelConfig } from '../io/config.js';
import { openModel } from '../io/model.js';
import { asBytes, SafetensorsWriter, type TensorSpec } from '../io/safetensors.js';
import { quantizeLinear, type PackedLinear, type QuantMethodName } from '../kernels/quant.js';
import type { PackedBits } from '../kernels/packed-format.js';
import { accountPlan, checkPlanFits, type Plan } from '../lieq/plan.js';
import { native, NativeDType } from '../native.js';
import { packedLinear, type RuntimeLinear } from '../runtime/linear.js';
import { RuntimeModel, tensorSource, withLinears, type LayerWeights } from '../runtime/model.js';
import { modelFingerprint } from '../lieq/analyze.js';
import { loadEvalText } from '../runtime/perplexity.js';
import { buildDirAtomic } from '../util/atomic.js';
import { DataError, FileError } from '../util/errors.js';
import { acquireOutputLock, type OutputLock } from '../util/lock.js';
import { checkpointLayer, LayerCheckpoints, layerSpecs } from './checkpoint.js';
import { estimateQuantizeMemory, planMemory } from './memory-budget.js';
import { calibrationInputs, CALIBRATION_DEFAULTS, propagateLayer, quantizeLayerGptq, type CalibrationOptions, type GptqLayerOptions } from './gptq-calibrate.js';
import { packedNames, quantizationConfig, quantizedTensorSpecs } from './packed-model.js';
import { padColumns, resolveLayout, type LinearLayout } from './layout.js';

export interface QuantizeModelOptions {
  plan: Plan;
  /** Output directory (must not exist unless `force`). */
  out: string;
  /** Replace an existing output; discard checkpoints of a run with different inputs. */
  force?: boolean;
  /** Reuse the layer checkpoints of an interrupted run with the same inputs (default true). */
  resume?: boolean;
  /** A lock on `out` the caller already holds (else one is taken and released here). */
  lock?: OutputLock;
  /** Refuse to start when one layer's working set (+ GPTQ calibration) would exceed this (memory-budget.ts). */
  maxMemoryBytes?: number;
  /** Warnings (stale lock taken over, corrupt checkpoint recomputed); default: stderr. */
  warn?: (msg: string) => void;
  /** RTN grid: 'mse' (clipping search, default [ours] per spec §6) or 'minmax'. */
  rtn?: QuantMethodName;
  /** Extra files to put in the output directory (report, charts), by relative name. */
  extraFiles?: (tmpDir: string, run: { resumedLayers: number; seconds: number; peakRssBytes: number }) => Promise<void> | void;
  onProgress?(p: { done: number; total: number; stage: string }): void;
  /** Settings of the layers whose plan backbone is 'gptq' (defaults: CALIBRATION_DEFAULTS, GPTQ_DEFAULTS). */
  gptq?: GptqModelOptions;
}

export interface GptqModelOptions extends Pick<GptqLayerOptions, 'damp' | 'actOrder' | 'blockSize' | 'trueSequential' | 'method' | 'onLinear'> {
  calibration?: Partial<CalibrationOptions>;
}

export interface QuantizeModelResult {
  out: string;
  seconds: number;
  bytesWritten: number;
  peakRssBytes: number;
  /** Calibration tokens of the GPTQ layers (0 when every layer is RTN). */
  calibrationTokens: number;
  /** Layers taken from the checkpoints of an interrupted run. */
  resumedLayers: number;
}

export async function quantizeWeight(w: Float32Array, out: number, layout: LinearLayout, bits: number, symmetric: boolean, rtn: QuantMethodName): Promise<PackedLinear> {
  const padded = padColumns(w, out, layout.inFeatures, layout.paddedIn);
  return quantizeLinear(padded, out, layout.paddedIn, {
    bits: bits as PackedBits,
    groupSize: layout.perChannel ? 'channel' : (layout.groupSize as 32 | 64 | 128),
    symmetric,
    method: rtn,
  });
}

function f16Bytes(x: Float32Array): Uint8Array {
  const b = new Uint8Array(x.length * 2);
  native().fromF32(x, NativeDType.F16, b);
  return b;
}

function checkFinite(x: Float32Array, file: string, name: string): void {
  const bad = native().countNonFinite(x);
  if (bad > 0) throw new DataError(`${file}: tensor "${name}" has ${bad} NaN/Inf values; refusing to quantize it`);
}

/** One decoder layer quantized with RTN as its plan entry says (all seven linears packed). */
async function quantizeLayerRtnPlan(layer: LayerWeights, bits: number, groupSize: number, symmetric: boolean, rtn: QuantMethodName): Promise<LayerWeights> {
  const linears: Partial<Record<(typeof LINEAR_NAMES)[number], RuntimeLinear>> = {};
  for (const name of LINEAR_NAMES) {
    const lin = layer.linears[name];
    if (lin.kind !== 'dense') throw new DataError(`layer ${layer.index} ${name}: already packed`);
    const p = await quantizeWeight(lin.weight, lin.outFeatures, resolveLayout(lin.inFeatures, groupSize), bits, symmetric, rtn);
    linears[name] = packedLinear(p, lin.bias, lin.inFeatures);
  }
  return withLinears(layer, linears);
}

/**
 * Test hook (test/quant/resume.test.ts): LIEQ_TEST_CRASH_AT=layer:K kills the process with
 * SIGKILL right after layer K's checkpoint is written; =assembled right before the finished
 * temp directory is renamed into place. Unset in normal use.
 */
function crashPoint(at: string): void {
  if (process.env.LIEQ_TEST_CRASH_AT === at) process.kill(process.pid, 'SIGKILL');
}

/** Package version (part of the resume key: a different lieq may write different bytes). */
function lieqVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** Everything that changes the output bytes: the resume key of the checkpoints. */
function resumeInputs(dir: string, plan: Plan, rtn: QuantMethodName, gptq: GptqModelOptions & { calibration: CalibrationOptions } | null): Record<string, unknown> {
  return {
    lieq: lieqVersion(),
    model: { dir, fingerprint: modelFingerprint(dir) },
    plan,
    rtn,
    gptq: gptq
      ? {
          damp: gptq.damp, actOrder: gptq.actOrder, blockSize: gptq.blockSize, trueSequential: gptq.trueSequential, method: gptq.method,
          calibration: { ...gptq.calibration, text: createHash('sha256').update(loadEvalText(gptq.calibration.data).text).digest('hex') },
        }
      : null,
  };
}

export async function quantizeModel(modelDir: string, o: QuantizeModelOptions): Promise<QuantizeModelResult> {
  const t0 = performance.now();
  const dir = resolve(modelDir);
  const out = resolve(o.out);
  const warn = o.warn ?? ((m: string) => process.stderr.write(`lieq: warning: ${m}\n`));
  const lock = o.lock ?? acquireOutputLock(out, 'quantize', warn);
  let m: ReturnType<typeof openModel> | undefined;
  let peakRss = process.memoryUsage().rss;
  const sampleRss = () => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  };
  try {
    if (existsSync(out) && !o.force) throw new FileError(out, 'output already exists (pass --force to replace it)');
    m = openModel(dir);
    const ck = m.checkpoint;
    const cfg: ModelConfig = m.config;
    checkPlanFits(o.plan, cfg);
    const rtn = o.rtn ?? 'mse';
    const specs = quantizedTensorSpecs(cfg, o.plan);
    const acc = accountPlan(o.plan, cfg);
    const L = cfg.numLayers;
    const anyGptq = o.plan.layers.some((lp) => lp.backbone === 'gptq');
    const gptqOpts = { ...o.gptq, calibration: { ...CALIBRATION_DEFAULTS, ...o.gptq?.calibration } };
    const mem = planMemory(cfg, estimateQuantizeMemory(cfg, o.plan, anyGptq ? gptqOpts.calibration : null, process.memoryUsage().rss), o.maxMemoryBytes, anyGptq ? gptqOpts.calibration : null);
    const work = LayerCheckpoints.open(out, resumeInputs(dir, o.plan, rtn, anyGptq ? gptqOpts : null), { force: o.force, resume: o.resume, numLayers: L, warn });
    const resumedLayers = work.count;

    const total = L + 2;
    let done = resumedLayers;
    let calibrationTokens = 0;
    if (resumedLayers > 0) o.onProgress?.({ done, total, stage: `resuming: ${resumedLayers} of ${L} layers checkpointed` });
    const read = (name: string) => {
      const x = ck.readF32(name);
      checkFinite(x, ck.info(name).file, name);
      return x;
    };
    const emb = 'model.embed_tokens.weight';

    // 1. Every layer without a checkpoint: quantize it and checkpoint its output tensors.
    const layers = RuntimeModel.fromSource(tensorSource(cfg, { has: (n) => ck.has(n), readF32: read }, dir), { residency: 'streaming', layersOnly: true });
    // Calibration states are needed up to the last GPTQ layer still to do (finished layers are
    // replayed from their checkpoints to rebuild them: the sequential protocol's inputs).
    const lastGptq = o.plan.layers.reduce((last, lp, i) => (lp.backbone === 'gptq' && !work.has(i) ? i : last), -1);
    let hidden: Float32Array[] | null = null;
    if (lastGptq >= 0) {
      const c = await calibrationInputs(dir, cfg, gptqOpts.calibration, (ids) => {
        const x = ck.readRowsF32(emb, ids);
        checkFinite(x, ck.info(emb).file, emb);
        return x;
      });
      hidden = c.hidden;
      calibrationTokens = c.tokens;
      o.onProgress?.({ done, total, stage: `calibration ${c.hidden.length} × ${c.seqlen} tokens` });
    } else if (anyGptq) {
      calibrationTokens = gptqOpts.calibration.samples * Math.min(gptqOpts.calibration.seqlen, cfg.maxPositionEmbeddings);
    }
    for (let l = 0; l < L; l++) {
      const lp = o.plan.layers[l];
      if (work.has(l)) {
        if (hidden && l < lastGptq) {
          const f = work.open(l);
          try {
            propagateLayer(layers, checkpointLayer(f, cfg, o.plan, l), hidden);
          } finally {
            f.close();
          }
          sampleRss();
        }
        continue;
      }
      const dense = layers.layer(l);
      const q = lp.backbone === 'gptq'
        ? await quantizeLayerGptq(layers, dense, hidden!, { ...gptqOpts, bits: lp.bits, groupSize: lp.groupSize, symmetric: o.plan.symmetric })
        : await quantizeLayerRtnPlan(dense, lp.bits, lp.groupSize, o.plan.symmetric, rtn);
      sampleRss();
      work.write(l, layerSpecs(specs, l), layerTensors(cfg, specs, l, dense, q));
      crashPoint(`layer:${l}`);
      // Sequential protocol: the next GPTQ layer sees the outputs of this quantized layer.
      if (hidden && l < lastGptq) {
        propagateLayer(layers, q, hidden);
        sampleRss();
      }
      o.onProgress?.({ done: ++done, total, stage: `layer ${l} at ${lp.bits} bits${lp.backbone === 'gptq' ? ' (gptq)' : ''}` });
    }
    hidden = null;

    // 2. Assemble the output from the checkpoints in a temp directory; rename it into place.
    const block = mem.blockRows;
    const V = cfg.vocabSize;
    // Embedding (and a packed tied head) in blocks of rows: never the whole vocab × hidden
    // table in f32 at once.
    const rowsOf = (name: string, r0: number) => {
      const ids = Array.from({ length: Math.min(block, V - r0) }, (_, i) => r0 + i);
      const x = ck.readRowsF32(name, ids);
      checkFinite(x, ck.info(name).file, name);
      return x;
    };
    await buildDirAtomic(
      out,
      async (tmp) => {
        const w = SafetensorsWriter.create(join(tmp, 'model.safetensors'), specs, { format: 'lieq-packed/1', source: dir });
        try {
          for (let r0 = 0; r0 < V; r0 += block) w.write(emb, f16Bytes(rowsOf(emb, r0)));
          o.onProgress?.({ done: ++done, total, stage: 'embeddings' });
          for (let l = 0; l < L; l++) {
            const f = work.open(l);
            try {
              for (const s of layerSpecs(specs, l)) w.write(s.name, f.readBytes(s.name));
            } finally {
              f.close();
            }
          }
          w.write('model.norm.weight', asBytes(read('model.norm.weight')));
          if (o.plan.lmHeadBits === 16) {
            if (!cfg.tieWordEmbeddings) w.write('lm_head.weight', f16Bytes(read('lm_head.weight')));
          } else {
            // Rows quantize independently: quantize the head block by block, then write the
            // packed parts tensor by tensor (qweight, scales, zeros).
            const src = cfg.tieWordEmbeddings ? emb : 'lm_head.weight';
            const layout = resolveLayout(cfg.hiddenSize, o.plan.lmHeadGroupSize);
            const parts: PackedLinear[] = [];
            for (let r0 = 0; r0 < V; r0 += block) {
              const x = rowsOf(src, r0);
              parts.push(await quantizeWeight(x, x.length / cfg.hiddenSize, layout, o.plan.lmHeadBits, o.plan.symmetric, rtn));
            }
            const n = packedNames('lm_head.weight');
            for (const p of parts) w.write(n.qweight, p.qweight);
            for (const p of parts) w.write(n.scales, asBytes(p.scales));
            if (!o.plan.symmetric) for (const p of parts) w.write(n.zeros, p.zeros!);
          }
          sampleRss();
          w.commit();
        } catch (err) {
          w.abort();
          throw err;
        }
        const srcConfig = JSON.parse(readFileSync(join(dir, CONFIG_FILE), 'utf8'));
        writeFileSync(
          join(tmp, CONFIG_FILE),
          JSON.stringify({ ...srcConfig, torch_dtype: 'float16', quantization_config: quantizationConfig(o.plan, acc.nominalBits) }, null, 2) + '\n',
        );
        writeFileSync(join(tmp, 'plan.json'), JSON.stringify(o.plan, null, 2) + '\n');
        for (const f of ['tokenizer.json', 'tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json']) {
          try {
            writeFileSync(join(tmp, f), readFileSync(join(dir, f)));
          } catch {
            /* optional file */
          }
        }
        await o.extraFiles?.(tmp, { resumedLayers, seconds: (performance.now() - t0) / 1000, peakRssBytes: peakRss });
        crashPoint('assembled');
        o.onProgress?.({ done: ++done, total, stage: 'written' });
      },
      o.force,
    );
    // The output is in place: the checkpoints are no longer needed (a crash before this line
    // leaves them behind; the next run with --force reuses them, any other run ignores them).
    work.remove();
    return { out, seconds: (performance.now() - t0) / 1000, bytesWritten: acc.packedBytes, peakRssBytes: peakRss, calibrationTokens, resumedLayers };
  } finally {
    m?.close();
    if (!o.lock) lock.release();
  }
}

/** Layer `l`'s output tensors by name: norms from the source layer, packed linears and biases from `q`. */
function layerTensors(cfg: ModelConfig, specs: readonly TensorSpec[], l: number, dense: LayerWeights, q: LayerWeights): Map<string, Uint8Array> {
  const p = `model.layers.${l}`;
  const t = new Map<string, Uint8Array>();
  t.set(`${p}.input_layernorm.weight`, asBytes(dense.inputNorm));
  for (const name of LINEAR_NAMES) {
    const wn = linearTensorName(l, name);
    const lin = q.linears[name];
    if (lin.kind !== 'packed') throw new DataError(`layer ${l} ${name}: was not quantized`);
    const n = packedNames(wn);
    t.set(n.qweight, lin.packed.qweight);
    t.set(n.scales, asBytes(lin.packed.scales));
    if (lin.packed.zeros) t.set(n.zeros, lin.packed.zeros);
    const bias = wn.replace(/weight$/, 'bias');
    if (specs.some((s) => s.name === bias)) t.set(bias, asBytes(lin.bias!));
  }
  if (cfg.qkNorm) {
    t.set(`${p}.self_attn.q_norm.weight`, asBytes(dense.qNorm!));
    t.set(`${p}.self_attn.k_norm.weight`, asBytes(dense.kNorm!));
  }
  t.set(`${p}.post_attention_layernorm.weight`, asBytes(dense.postAttentionNorm));
  return t;
}
