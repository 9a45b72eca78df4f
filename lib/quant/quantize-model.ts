/**
 * `lieq quantize`: quantize a model layer by layer under a plan and write the packed model
 * directory (packed-model.ts); the output directory appears only when complete.
 * Memory: f32 weights are read into reused buffers (LinearBuffers), never into fresh arrays per
 * layer, so the peak does not wait on the garbage collector: an RTN layer holds one linear in
 * f32 at a time (one buffer sized to the largest linear), a GPTQ layer its seven linears (one
 * buffer per linear kind, since calibration runs the whole dense layer), plus the packed layer.
 * GPTQ layers are calibrated layer-sequentially (gptq-calibrate.ts): the calibration hidden
 * states of one layer boundary are then held as well. The embedding and lm_head are converted
 * in blocks of rows (memory-budget.ts).
 */
import { createHash } from 'node:crypto';
import { existsSync, writeFileSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import type { Checkpoint } from '../io/checkpoint.js';
import { CONFIG_FILE, linearShape, linearTensorName, LINEAR_NAMES, type LinearName, type ModelConfig } from '../io/config.js';
import { openModel } from '../io/model.js';
import { asBytes, SafetensorsWriter, type TensorSpec } from '../io/safetensors.js';
import { quantizeLinear, type PackedLinear, type QuantMethodName } from '../kernels/quant.js';
import type { PackedBits } from '../kernels/packed-format.js';
import { accountPlan, checkPlanFits, type Plan } from '../lieq/plan.js';
import { native, NativeDType } from '../native.js';
import { packedLinear, type RuntimeLinear } from '../runtime/linear.js';
import { hasBias, RuntimeModel, tensorSource, type LayerWeights } from '../runtime/model.js';
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

function checkFinite(x: Float32Array, file: string, name: string): void {
  const bad = native().countNonFinite(x);
  if (bad > 0) throw new DataError(`${file}: tensor "${name}" has ${bad} NaN/Inf values; refusing to quantize it`);
}

/**
 * Reused f32 destinations of the decoder linears' weights: one buffer per linear kind, each
 * allocated once. Reading layer l+1's q_proj overwrites layer l's, so the memory of a layer's
 * weights is reused at once instead of freed whenever V8 next collects (with a fresh array
 * per read the peak was about two layers' weights). The caller must be done with layer l's
 * dense weights before it reads layer l+1 (quantize walks the layers in order and keeps only
 * packed results).
 */
class LinearBuffers {
  private readonly slots = new Map<LinearName, Float32Array>();
  /** The linear kind with the most weights: RTN reads every linear into its buffer. */
  readonly largest: LinearName;

  constructor(private readonly cfg: ModelConfig, private readonly ck: Checkpoint, private readonly check: (x: Float32Array, name: string) => void) {
    const size = (n: LinearName) => linearShape(cfg, n)[0] * linearShape(cfg, n)[1];
    this.largest = LINEAR_NAMES.reduce((a, b) => (size(b) > size(a) ? b : a));
  }

  /** Linear `name` of layer `l` read into the buffer of kind `slot` (default: its own kind). */
  read(l: number, name: LinearName, slot: LinearName = name): Float32Array {
    const [out, inF] = linearShape(this.cfg, name);
    let buf = this.slots.get(slot);
    if (!buf) {
      const [so, si] = linearShape(this.cfg, slot);
      this.slots.set(slot, (buf = new Float32Array(so * si)));
    }
    const tensor = linearTensorName(l, name);
    const w = this.ck.readF32Into(tensor, buf.subarray(0, out * inF));
    this.check(w, tensor);
    return w;
  }

  /**
   * After the last layer: `n` values of the largest buffer for the embedding/lm_head blocks (so
   * the peak is the larger of the two phases, not their sum), or a new array if it is smaller.
   * Every other buffer is dropped; no layer may be read afterwards.
   */
  takeForBlocks(n: number): Float32Array {
    const big = [...this.slots.values()].reduce<Float32Array | undefined>((a, b) => (a && a.length >= b.length ? a : b), undefined);
    this.slots.clear();
    return big && big.length >= n ? big.subarray(0, n) : new Float32Array(n);
  }

  /** `tensor` if it is a decoder linear's weight: its layer and kind. */
  linearOf(tensor: string): { l: number; name: LinearName } | null {
    const m = /^model\.layers\.(\d+)\./.exec(tensor);
    if (!m) return null;
    const l = Number(m[1]);
    const name = LINEAR_NAMES.find((n) => linearTensorName(l, n) === tensor);
    return name ? { l, name } : null;
  }
}

/**
 * One decoder layer quantized with RTN as its plan entry says: linear by linear, each read into
 * the one buffer of the largest linear's size and packed before the next is read.
 */
async function quantizeLayerRtn(cfg: ModelConfig, l: number, buffers: LinearBuffers, read: (name: string) => Float32Array,
                                bits: number, groupSize: number, symmetric: boolean, rtn: QuantMethodName): Promise<LayerWeights> {
  const linears = {} as Record<LinearName, RuntimeLinear>;
  for (const name of LINEAR_NAMES) {
    const [out, inF] = linearShape(cfg, name);
    const w = buffers.read(l, name, buffers.largest);
    const bias = hasBias(cfg, name) ? read(linearTensorName(l, name).replace(/weight$/, 'bias')) : null;
    // Awaited before the next read: the native job reads `w` (or its padded copy) meanwhile.
    const p = await quantizeWeight(w, out, resolveLayout(inF, groupSize), bits, symmetric, rtn);
    linears[name] = packedLinear(p, bias, inF);
  }
  const p = `model.layers.${l}`;
  return {
    index: l,
    inputNorm: read(`${p}.input_layernorm.weight`),
    postAttentionNorm: read(`${p}.post_attention_layernorm.weight`),
    qNorm: cfg.qkNorm ? read(`${p}.self_attn.q_norm.weight`) : null,
    kNorm: cfg.qkNorm ? read(`${p}.self_attn.k_norm.weight`) : null,
    linears,
  };
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
    const buffers = new LinearBuffers(cfg, ck, (x, name) => checkFinite(x, ck.info(name).file, name));
    // GPTQ layers come through the runtime model (calibration runs them); their linears land in
    // the per-kind buffers. Norms and biases are small and read fresh.
    const readLayerTensor = (name: string) => {
      const lin = buffers.linearOf(name);
      return lin ? buffers.read(lin.l, lin.name) : read(name);
    };
    const layers = RuntimeModel.fromSource(tensorSource(cfg, { has: (n) => ck.has(n), readF32: readLayerTensor }, dir), { residency: 'streaming', layersOnly: true });
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
      const q = lp.backbone === 'gptq'
        ? await quantizeLayerGptq(layers, layers.layer(l), hidden!, { ...gptqOpts, bits: lp.bits, groupSize: lp.groupSize, symmetric: o.plan.symmetric })
        : await quantizeLayerRtn(cfg, l, buffers, read, lp.bits, lp.groupSize, o.plan.symmetric, rtn);
      sampleRss();
      work.write(l, layerSpecs(specs, l), layerTensors(cfg, specs, l, q));
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
    const H = cfg.hiddenSize;
    // Embedding and lm_head in blocks of rows through two reused block buffers: never the
    // whole vocab × hidden table in f32, and no per-block garbage for the collector to lag on.
    const blockF32 = buffers.takeForBlocks(Math.min(block, V) * H);
    const blockF16 = new Uint8Array(blockF32.length * 2);
    const rowsOf = (name: string, r0: number) => {
      const n = Math.min(block, V - r0);
      const ids = Array.from({ length: n }, (_, i) => r0 + i);
      const x = ck.readRowsF32(name, ids, blockF32.subarray(0, n * H));
      checkFinite(x, ck.info(name).file, name);
      return x;
    };
    const f16Block = (x: Float32Array) => {
      const b = blockF16.subarray(0, x.length * 2);
      native().fromF32(x, NativeDType.F16, b);
      return b;
    };
    // Checkpointed layer tensors are copied through one reused buffer too (the writer is synchronous).
    let copyBuf = new Uint8Array(0);
    await buildDirAtomic(
      out,
      async (tmp) => {
        const w = SafetensorsWriter.create(join(tmp, 'model.safetensors'), specs, { format: 'lieq-packed/1', source: dir });
        try {
          for (let r0 = 0; r0 < V; r0 += block) w.write(emb, f16Block(rowsOf(emb, r0)));
          o.onProgress?.({ done: ++done, total, stage: 'embeddings' });
          for (let l = 0; l < L; l++) {
            const f = work.open(l);
            try {
              for (const s of layerSpecs(specs, l)) {
                const n = f.info(s.name).byteLength;
                if (copyBuf.byteLength < n) copyBuf = new Uint8Array(n);
                w.write(s.name, f.readBytes(s.name, copyBuf.subarray(0, n)));
              }
            } finally {
              f.close();
            }
          }
          w.write('model.norm.weight', asBytes(read('model.norm.weight')));
          if (o.plan.lmHeadBits === 16) {
            if (!cfg.tieWordEmbeddings) for (let r0 = 0; r0 < V; r0 += block) w.write('lm_head.weight', f16Block(rowsOf('lm_head.weight', r0)));
          } else {
            // Rows quantize independently: quantize the head block by block and write each
            // block's codes at once (qweight comes first in the file); only the small scales
            // and zeros wait for the end.
            const src = cfg.tieWordEmbeddings ? emb : 'lm_head.weight';
            const layout = resolveLayout(H, o.plan.lmHeadGroupSize);
            const n = packedNames('lm_head.weight');
            const parts: PackedLinear[] = [];
            for (let r0 = 0; r0 < V; r0 += block) {
              const x = rowsOf(src, r0);
              const p = await quantizeWeight(x, x.length / H, layout, o.plan.lmHeadBits, o.plan.symmetric, rtn);
              w.write(n.qweight, p.qweight);
              parts.push({ ...p, qweight: new Uint8Array(0) });
            }
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

/** Layer `l`'s output tensors by name: norms (the source's), packed linears and biases of `q`. */
function layerTensors(cfg: ModelConfig, specs: readonly TensorSpec[], l: number, q: LayerWeights): Map<string, Uint8Array> {
  const p = `model.layers.${l}`;
  const t = new Map<string, Uint8Array>();
  t.set(`${p}.input_layernorm.weight`, asBytes(q.inputNorm));
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
    t.set(`${p}.self_attn.q_norm.weight`, asBytes(q.qNorm!));
    t.set(`${p}.self_attn.k_norm.weight`, asBytes(q.kNorm!));
  }
  t.set(`${p}.post_attention_layernorm.weight`, asBytes(q.postAttentionNorm));
  return t;
}
