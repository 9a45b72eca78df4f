/**
 * `lieq quantize`: quantize a model layer by layer under a plan and write the packed model
 * directory (packed-model.ts). Streams: one decoder layer's f32 weights are in memory at a time
 * (plus the embedding while it is converted); the output directory appears only when complete.
 * Layers whose plan backbone is 'gptq' are calibrated layer-sequentially (gptq-calibrate.ts):
 * the calibration hidden states of one layer boundary are then held as well.
 */
import { writeFileSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { CONFIG_FILE, linearShape, linearTensorName, LINEAR_NAMES, type ModelConfig } from '../io/config.js';
import { openModel } from '../io/model.js';
import { asBytes, SafetensorsWriter } from '../io/safetensors.js';
import { quantizeLinear, type PackedLinear, type QuantMethodName } from '../kernels/quant.js';
import type { PackedBits } from '../kernels/packed-format.js';
import { accountPlan, checkPlanFits, type Plan } from '../lieq/plan.js';
import { native, NativeDType } from '../native.js';
import { packedLinear, type RuntimeLinear } from '../runtime/linear.js';
import { RuntimeModel, tensorSource, withLinears, type LayerWeights } from '../runtime/model.js';
import { buildDirAtomic } from '../util/atomic.js';
import { DataError } from '../util/errors.js';
import { calibrationInputs, CALIBRATION_DEFAULTS, propagateLayer, quantizeLayerGptq, type CalibrationOptions, type GptqLayerOptions } from './gptq-calibrate.js';
import { packedNames, quantizationConfig, quantizedTensorSpecs } from './packed-model.js';
import { padColumns, resolveLayout, type LinearLayout } from './layout.js';

export interface QuantizeModelOptions {
  plan: Plan;
  /** Output directory (must not exist unless `force`). */
  out: string;
  force?: boolean;
  /** RTN grid: 'mse' (clipping search, default [ours] per spec §6) or 'minmax'. */
  rtn?: QuantMethodName;
  /** Extra files to put in the output directory (report, charts), by relative name. */
  extraFiles?: (tmpDir: string) => Promise<void> | void;
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

function writePacked(w: SafetensorsWriter, weightName: string, p: PackedLinear): void {
  const n = packedNames(weightName);
  w.write(n.qweight, p.qweight);
  w.write(n.scales, asBytes(p.scales));
  if (!p.symmetric) w.write(n.zeros, p.zeros!);
}

export async function quantizeModel(modelDir: string, o: QuantizeModelOptions): Promise<QuantizeModelResult> {
  const t0 = performance.now();
  const dir = resolve(modelDir);
  const m = openModel(dir);
  let peakRss = process.memoryUsage().rss;
  const sampleRss = () => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  };
  try {
    const cfg: ModelConfig = m.config;
    checkPlanFits(o.plan, cfg);
    const rtn = o.rtn ?? 'mse';
    const specs = quantizedTensorSpecs(cfg, o.plan);
    const acc = accountPlan(o.plan, cfg);
    const total = cfg.numLayers + 2;
    let done = 0;
    let calibrationTokens = 0;
    await buildDirAtomic(
      resolve(o.out),
      async (tmp) => {
        const file = join(tmp, 'model.safetensors');
        const w = SafetensorsWriter.create(file, specs, { format: 'lieq-packed/1', source: dir });
        try {
          const read = (name: string) => {
            const x = m.checkpoint.readF32(name);
            checkFinite(x, m.checkpoint.info(name).file, name);
            return x;
          };
          // Embedding (and a packed tied head) in blocks of rows: never the whole vocab × hidden
          // table in f32 at once.
          const emb = 'model.embed_tokens.weight';
          const V = cfg.vocabSize;
          const block = Math.max(1, Math.floor((64 * 2 ** 20) / (4 * cfg.hiddenSize)));
          const rowsOf = (name: string, r0: number) => {
            const ids = Array.from({ length: Math.min(block, V - r0) }, (_, i) => r0 + i);
            const x = m.checkpoint.readRowsF32(name, ids);
            checkFinite(x, m.checkpoint.info(name).file, name);
            return x;
          };
          for (let r0 = 0; r0 < V; r0 += block) w.write(emb, f16Bytes(rowsOf(emb, r0)));
          o.onProgress?.({ done: ++done, total, stage: 'embeddings' });
          // Decoder layers as LayerWeights (f32, checked finite), read one at a time.
          const layers = RuntimeModel.fromSource(tensorSource(cfg, { has: (n) => m.checkpoint.has(n), readF32: read }, dir), { residency: 'streaming', layersOnly: true });
          const lastGptq = o.plan.layers.reduce((last, lp, i) => (lp.backbone === 'gptq' ? i : last), -1);
          const gptqOpts = o.gptq ?? {};
          let calib: { model: RuntimeModel; hidden: Float32Array[] } | null = null;
          if (lastGptq >= 0) {
            const c = await calibrationInputs(dir, cfg, { ...CALIBRATION_DEFAULTS, ...gptqOpts.calibration }, (ids) => {
              const x = m.checkpoint.readRowsF32(emb, ids);
              checkFinite(x, m.checkpoint.info(emb).file, emb);
              return x;
            });
            calib = { model: layers, hidden: c.hidden };
            calibrationTokens = c.tokens;
            o.onProgress?.({ done, total, stage: `calibration ${c.hidden.length} × ${c.seqlen} tokens` });
          }
          for (let l = 0; l < cfg.numLayers; l++) {
            const lp = o.plan.layers[l];
            const p = `model.layers.${l}`;
            const dense = layers.layer(l);
            // The unit of work (and of a future resume): one layer in, its packed tensors out.
            const q = lp.backbone === 'gptq'
              ? await quantizeLayerGptq(calib!.model, dense, calib!.hidden, { ...gptqOpts, bits: lp.bits, groupSize: lp.groupSize, symmetric: o.plan.symmetric })
              : await quantizeLayerRtnPlan(dense, lp.bits, lp.groupSize, o.plan.symmetric, rtn);
            sampleRss();
            w.write(`${p}.input_layernorm.weight`, asBytes(dense.inputNorm));
            for (const name of LINEAR_NAMES) {
              const wn = linearTensorName(l, name);
              const lin = q.linears[name];
              if (lin.kind !== 'packed') throw new DataError(`layer ${l} ${name}: was not quantized`);
              writePacked(w, wn, lin.packed);
              const bias = wn.replace(/weight$/, 'bias');
              if (specs.some((s) => s.name === bias)) w.write(bias, asBytes(lin.bias!));
            }
            if (cfg.qkNorm) {
              w.write(`${p}.self_attn.q_norm.weight`, asBytes(dense.qNorm!));
              w.write(`${p}.self_attn.k_norm.weight`, asBytes(dense.kNorm!));
            }
            w.write(`${p}.post_attention_layernorm.weight`, asBytes(dense.postAttentionNorm));
            // Sequential protocol: the next GPTQ layer sees the outputs of this quantized layer.
            if (calib && l < lastGptq) {
              propagateLayer(calib.model, q, calib.hidden);
              sampleRss();
            }
            o.onProgress?.({ done: ++done, total, stage: `layer ${l} at ${lp.bits} bits${lp.backbone === 'gptq' ? ' (gptq)' : ''}` });
          }
          if (calib) calib.hidden.length = 0;
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
        await o.extraFiles?.(tmp);
        o.onProgress?.({ done: ++done, total, stage: 'written' });
      },
      o.force,
    );
    return { out: resolve(o.out), seconds: (performance.now() - t0) / 1000, bytesWritten: acc.packedBytes, peakRssBytes: peakRss, calibrationTokens };
  } finally {
    m.close();
  }
}
