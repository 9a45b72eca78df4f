/**
 * The models `lieq bench` runs: a model directory (full precision, packed in memory by a plan,
 * or a quantized directory as stored), or a random-weight model of a real shape
 * (lib/io/random-model.ts) so speed can be measured without downloading weights.
 *
 * Drawing the weights of a 1B+ random model takes minutes (every weight is drawn in
 * TypeScript), so with a cache folder (<LIEQ_CACHE_DIR or ~/.cache/lieq>/bench-models/) they
 * are drawn once per (shape, layers, seed) into a BF16 checkpoint (2 bytes per weight: 2.5 GB
 * for llama-3.2-1b), which f32 targets load and plans pack from; each packed model is saved
 * too, as a lieq packed model directory keyed by its plan, so later runs just load it.
 * Without a cache everything is drawn in memory.
 */
import { createHash } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { LINEAR_NAMES, linearTensorName, loadConfig, type ModelConfig } from '../io/config.js';
import { MODEL_SHAPES, randomReader, shapeConfig, writeRandomCheckpoint } from '../io/random-model.js';
import { asBytes, SafetensorsWriter } from '../io/safetensors.js';
import { accountPlan, type Plan } from '../lieq/plan.js';
import { native, NativeDType } from '../native.js';
import { packedNames, quantizationConfig, quantizedTensorSpecs } from '../quant/packed-model.js';
import { isQuantizedDir, openRuntimeModel } from '../quant/packed-source.js';
import type { RuntimeLinear } from '../runtime/linear.js';
import { checkpointSource, RuntimeModel, tensorSource } from '../runtime/model.js';
import { openModel } from '../io/model.js';
import { buildDirAtomic } from '../util/atomic.js';
import { UsageError } from '../util/errors.js';
import { plannedSource } from './plans.js';

export const BENCH_SHAPES = Object.keys(MODEL_SHAPES);

export type BenchModelSpec =
  | { kind: 'dir'; dir: string; name: string }
  | { kind: 'shape'; shape: string; layers?: number; seed: number };

/** The config.json object of a shape spec (the published config, layers overridden). */
export function shapeRawConfig(spec: { shape: string; layers?: number }): Record<string, unknown> {
  const raw = MODEL_SHAPES[spec.shape];
  if (!raw) throw new UsageError(`--shape: unknown shape "${spec.shape}" (known: ${BENCH_SHAPES.join(', ')})`);
  return spec.layers !== undefined ? { ...raw, num_hidden_layers: spec.layers } : { ...raw };
}

export function specConfig(spec: BenchModelSpec): ModelConfig {
  if (spec.kind === 'dir') return loadConfig(spec.dir);
  shapeRawConfig(spec); // the UsageError for an unknown name
  return shapeConfig(spec.shape, spec.layers !== undefined ? { num_hidden_layers: spec.layers } : {});
}

export function specName(spec: BenchModelSpec): string {
  if (spec.kind === 'dir') return spec.name;
  return `${spec.shape}${spec.layers !== undefined ? ` (${spec.layers} layers)` : ''} random`;
}

/** Directory name of a cached random checkpoint (BF16). */
export function checkpointKey(spec: { shape: string; layers?: number; seed: number }): string {
  return `${spec.shape}${spec.layers !== undefined ? `-L${spec.layers}` : ''}-s${spec.seed}-bf16`;
}

/** Directory name of a cached packed random model. */
export function cacheKey(spec: { shape: string; layers?: number; seed: number }, plan: Plan): string {
  const key = JSON.stringify({
    v: 1,
    shape: spec.shape,
    layers: spec.layers ?? null,
    seed: spec.seed,
    symmetric: plan.symmetric,
    lmHead: [plan.lmHeadBits, plan.lmHeadGroupSize],
    layerPlan: plan.layers.map((l) => [l.bits, l.groupSize]),
  });
  const hash = createHash('sha256').update(key).digest('hex').slice(0, 12);
  return `${spec.shape}${spec.layers !== undefined ? `-L${spec.layers}` : ''}-s${spec.seed}-${accountPlan(plan, specConfig({ kind: 'shape', ...spec })).nominalBits.toFixed(3)}b-${hash}`;
}

export interface OpenedBenchModel {
  model: RuntimeModel;
  /** Seconds to generate/read and pack the weights. */
  loadSeconds: number;
  /** Where the weights came from: 'dir', 'generated', 'cache' (+ 'generated, cached' when saved now). */
  origin: string;
  cachePath: string | null;
}

/**
 * Open (and pack, when `plan` is given) the model of a spec. `cacheDir` null disables the
 * cache of packed random models.
 */
export async function openBenchModel(spec: BenchModelSpec, plan: Plan | null, cacheDir: string | null): Promise<OpenedBenchModel> {
  const t0 = performance.now();
  const done = (model: RuntimeModel, origin: string, cachePath: string | null = null): OpenedBenchModel => ({
    model,
    loadSeconds: (performance.now() - t0) / 1000,
    origin,
    cachePath,
  });
  if (spec.kind === 'dir') {
    if (!plan) return done(openRuntimeModel(spec.dir), 'dir');
    if (isQuantizedDir(spec.dir)) throw new UsageError(`${spec.dir}: is already quantized; a --plan other than f32 applies to full-precision models only`);
    const m = openModel(spec.dir);
    try {
      return done(RuntimeModel.fromSource(plannedSource(checkpointSource(m), plan)), 'dir, packed in memory');
    } catch (err) {
      m.close();
      throw err;
    }
  }
  const cfg = specConfig(spec);
  if (!cacheDir) {
    const random = tensorSource(cfg, randomReader(cfg, spec.seed), `random ${spec.shape}`);
    return done(RuntimeModel.fromSource(plan ? plannedSource(random, plan) : random), 'generated');
  }
  // The random weights are drawn once per (shape, layers, seed) into a BF16 checkpoint; every
  // plan then packs from it (reading and packing is much faster than drawing).
  const ckpt = join(cacheDir, 'bench-models', checkpointKey(spec));
  let origin = 'cache';
  if (!existsSync(join(ckpt, 'model.safetensors'))) {
    writeRandomCheckpoint(ckpt, shapeRawConfig(spec), { seed: spec.seed, dtype: 'BF16' });
    origin = 'generated, cached';
  }
  if (!plan) return done(RuntimeModel.open(ckpt), `${origin} (bf16 checkpoint)`, ckpt);
  const path = join(cacheDir, 'bench-models', cacheKey(spec, plan));
  if (existsSync(join(path, 'model.safetensors'))) return done(openRuntimeModel(path), 'cache (packed)', path);
  const m = openModel(ckpt);
  let model: RuntimeModel;
  try {
    model = RuntimeModel.fromSource(plannedSource(checkpointSource(m), plan));
  } catch (err) {
    m.close();
    throw err;
  }
  await savePackedModel(model, plan, shapeRawConfig(spec), path);
  return done(model, `${origin}, packed and cached`, path);
}

function f16Bytes(x: Float32Array): Uint8Array {
  const b = new Uint8Array(x.length * 2);
  native().fromF32(x, NativeDType.F16, b);
  return b;
}

function linearTensors(lin: RuntimeLinear, weightName: string, put: (name: string, bytes: Uint8Array) => void): void {
  if (lin.kind !== 'packed') throw new UsageError(`${weightName}: expected a packed linear when saving a packed model`);
  const n = packedNames(weightName);
  put(n.qweight, lin.packed.qweight);
  put(n.scales, asBytes(lin.packed.scales));
  if (lin.packed.zeros) put(n.zeros, lin.packed.zeros);
  if (lin.bias) put(weightName.replace(/weight$/, 'bias'), asBytes(lin.bias));
}

/**
 * Write a model packed in memory by `plan` as a lieq packed model directory (the format
 * `lieq quantize` writes, so openRuntimeModel loads it); the directory appears when complete.
 */
export async function savePackedModel(model: RuntimeModel, plan: Plan, rawConfig: Record<string, unknown>, dest: string): Promise<void> {
  const cfg = model.config;
  const specs = quantizedTensorSpecs(cfg, plan);
  await buildDirAtomic(
    dest,
    (tmp) => {
      // Every tensor by name, produced lazily in the writer's (declared) order.
      const tensors = new Map<string, () => Uint8Array>();
      const lazy = (name: string, bytes: () => Uint8Array) => tensors.set(name, bytes);
      lazy('model.embed_tokens.weight', () => f16Bytes(model.embedding));
      for (let l = 0; l < cfg.numLayers; l++) {
        const p = `model.layers.${l}`;
        lazy(`${p}.input_layernorm.weight`, () => {
          const w = model.layer(l);
          for (const name of LINEAR_NAMES) linearTensors(w.linears[name], linearTensorName(l, name), (n, b) => tensors.set(n, () => b));
          if (w.qNorm && w.kNorm) {
            tensors.set(`${p}.self_attn.q_norm.weight`, () => asBytes(w.qNorm!));
            tensors.set(`${p}.self_attn.k_norm.weight`, () => asBytes(w.kNorm!));
          }
          tensors.set(`${p}.post_attention_layernorm.weight`, () => asBytes(w.postAttentionNorm));
          return asBytes(w.inputNorm);
        });
      }
      lazy('model.norm.weight', () => asBytes(model.finalNorm));
      if (plan.lmHeadBits !== 16) linearTensors(model.lmHead, 'lm_head.weight', (n, b) => tensors.set(n, () => b));
      else if (!cfg.tieWordEmbeddings) lazy('lm_head.weight', () => f16Bytes((model.lmHead as { weight: Float32Array }).weight));

      const w = SafetensorsWriter.create(join(tmp, 'model.safetensors'), specs, { format: 'lieq-packed/1', source: 'lieq bench random model' });
      try {
        for (const s of specs) {
          const get = tensors.get(s.name);
          if (!get) throw new UsageError(`saving ${dest}: no tensor "${s.name}" in the packed model`);
          w.write(s.name, get());
        }
        w.commit();
      } catch (err) {
        w.abort();
        throw err;
      }
      const q = quantizationConfig(plan, accountPlan(plan, cfg).nominalBits);
      writeFileSync(join(tmp, 'config.json'), JSON.stringify({ ...rawConfig, torch_dtype: 'float16', quantization_config: q }, null, 2) + '\n');
      writeFileSync(join(tmp, 'plan.json'), JSON.stringify(plan, null, 2) + '\n');
    },
    true,
  );
}
