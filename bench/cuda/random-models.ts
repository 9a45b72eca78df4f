/**
 * The models the GPU benchmarks decode (bench-decode.ts, profile-step.ts): random weights of a
 * real shape (lib/io/random-model.ts MODEL_SHAPES) or one of the shipped real models, in the
 * variants below (fp16, uniform 4/3/2-bit, the LieQ-style plan; LM head fp16 or packed 4-bit).
 *
 * Random shapes: weight values do not change the speed (never zeros, though), so one random
 * layer is generated (and packed once per width) and shared by every layer position. GpuModel
 * uploads the first layer of each width and makes every later layer of that width a device copy
 * of it (copyLayerFrom): each layer still has its own device memory, so nothing is served from
 * the 50 MB L2 across layers, and an 8B shape loads in seconds instead of repacking 36 layers.
 */
import { shapeConfig } from '../../lib/io/random-model.js';
import { LINEAR_NAMES, linearShape, type LinearName, type ModelConfig } from '../../lib/io/config.js';
import { gpuLmHead, type GpuLmHeadKind } from '../../lib/cuda/gpu-model.js';
import type { PackedBits } from '../../lib/kernels/packed-format.js';
import { denseFromWeights, packDense, type DenseLinear, type RuntimeLinear } from '../../lib/runtime/linear.js';
import { packLayer, RuntimeModel, type LayerWeights, type WeightSource } from '../../lib/runtime/model.js';
import { openRuntimeModel } from '../../lib/quant/packed-source.js';
import { dataPath, SHIPPED_MODELS } from '../../lib/util/data-dir.js';

/** Group size of every packed variant (the LM head's 'q4' uses the same). */
export const GROUP = 128;

export interface Variant {
  name: string;
  /** Decoder layers: fp16 (dense), uniform packed width, or LieQ-style (layer 0 at 4 bits, the rest 2). */
  layers: 'fp16' | 2 | 3 | 4 | 'lieq';
  head: GpuLmHeadKind;
}

export const VARIANTS: Variant[] = [
  { name: 'fp16', layers: 'fp16', head: 'fp16' },
  { name: 'uniform 4-bit', layers: 4, head: 'fp16' },
  { name: 'uniform 4-bit, q4 head', layers: 4, head: 'q4' },
  { name: 'uniform 3-bit', layers: 3, head: 'fp16' },
  { name: 'uniform 2-bit', layers: 2, head: 'fp16' },
  { name: 'LieQ (1x4 + rest 2-bit)', layers: 'lieq', head: 'fp16' },
  { name: 'LieQ (1x4 + rest 2-bit), q4 head', layers: 'lieq', head: 'q4' },
];

/** Payload bits of layer `l` in variant `v` (16 = fp16). */
export function layerBits(v: Variant, l: number): 16 | PackedBits {
  if (v.layers === 'fp16') return 16;
  if (v.layers === 'lieq') return l === 0 ? 4 : 2;
  return v.layers;
}

/** Average payload bits per decoder-layer weight (every layer has the same weight count). */
export function nominalBits(v: Variant, layers: number): number {
  let s = 0;
  for (let l = 0; l < layers; l++) s += layerBits(v, l);
  return s / layers;
}

/** A benchmark model: what GpuModel.load takes. */
export interface BenchModel {
  model: RuntimeModel;
  /** GpuModelOptions.copyLayerFrom (random shapes), or undefined (every layer uploaded). */
  copyLayerFrom?: (layer: number) => number | undefined;
}

export interface ModelFamily {
  /** Shape or shipped model name. */
  readonly name: string;
  readonly kind: 'random' | 'shipped';
  readonly cfg: ModelConfig;
  build(v: Variant): BenchModel;
}

/** Fast uniform noise in [-a, a] (xorshift32): speed does not depend on the distribution. */
export function noise(n: number, a: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = (s / 4294967296 - 0.5) * 2 * a;
  }
  return out;
}

/** Random weights of a real shape; the random layer, its packed widths and the q4 head are made once. */
export class RandomShape implements ModelFamily {
  readonly kind = 'random';
  readonly cfg: ModelConfig;
  private readonly embedding: Float32Array;
  private readonly head: DenseLinear;
  private readonly dense: Record<LinearName, RuntimeLinear>;
  private readonly packed = new Map<number, Record<LinearName, RuntimeLinear>>();
  private q4Head: RuntimeLinear | null = null;

  constructor(readonly name: string, layers?: number) {
    this.cfg = shapeConfig(name, layers ? { num_hidden_layers: layers } : {});
    const c = this.cfg;
    this.embedding = noise(c.vocabSize * c.hiddenSize, 0.05, 7);
    this.head = denseFromWeights(c.tieWordEmbeddings ? this.embedding : noise(c.vocabSize * c.hiddenSize, 0.05, 8), c.vocabSize, c.hiddenSize);
    this.dense = {} as Record<LinearName, RuntimeLinear>;
    LINEAR_NAMES.forEach((n, i) => {
      const [out, inF] = linearShape(c, n);
      this.dense[n] = denseFromWeights(noise(out * inF, 0.03, 1000 + i), out, inF);
    });
  }

  build(v: Variant): BenchModel {
    const c = this.cfg;
    const ones = new Float32Array(c.hiddenSize).fill(1);
    const headOnes = c.qkNorm ? new Float32Array(c.headDim).fill(1) : null;
    const linears = (l: number) => {
      const bits = layerBits(v, l);
      return bits === 16 ? this.dense : this.packedLinears(bits);
    };
    const head = v.head === 'q4' ? (this.q4Head ??= gpuLmHead(this.plainModel(), 'q4')) : this.head;
    const source: WeightSource = {
      config: c,
      label: `random ${this.name}`,
      embedding: () => this.embedding,
      finalNorm: () => ones,
      lmHead: () => head,
      layer: (index): LayerWeights => ({ index, inputNorm: ones, postAttentionNorm: ones, qNorm: headOnes, kNorm: headOnes, linears: linears(index) }),
      close: () => {},
    };
    const first = new Map<number, number>();
    const firstOf: number[] = [];
    for (let l = 0; l < c.numLayers; l++) {
      const b = layerBits(v, l);
      if (!first.has(b)) first.set(b, l);
      firstOf.push(first.get(b)!);
    }
    return { model: RuntimeModel.fromSource(source), copyLayerFrom: (l) => (firstOf[l] < l ? firstOf[l] : undefined) };
  }

  /** The dense-head model gpuLmHead quantizes the head of (layers never read). */
  private plainModel(): RuntimeModel {
    return this.build({ name: 'fp16', layers: 'fp16', head: 'fp16' }).model;
  }

  private packedLinears(bits: PackedBits): Record<LinearName, RuntimeLinear> {
    let p = this.packed.get(bits);
    if (!p) {
      p = {} as Record<LinearName, RuntimeLinear>;
      for (const n of LINEAR_NAMES) p[n] = packDense(this.dense[n] as DenseLinear, { bits, groupSize: GROUP, symmetric: false });
      this.packed.set(bits, p);
    }
    return p;
  }
}

/** A shipped real model (f32 checkpoint), packed round-to-nearest per variant; every layer uploaded. */
export class ShippedModel implements ModelFamily {
  readonly kind = 'shipped';
  readonly cfg: ModelConfig;

  constructor(readonly name: keyof typeof SHIPPED_MODELS) {
    const m = openRuntimeModel(dataPath(SHIPPED_MODELS[name]));
    this.cfg = m.config;
    m.close();
  }

  build(v: Variant): BenchModel {
    const model = openRuntimeModel(dataPath(SHIPPED_MODELS[this.name]));
    for (let l = 0; l < model.numLayers; l++) {
      const bits = layerBits(v, l);
      if (bits !== 16) model.setLayer(l, packLayer(model.layer(l), () => ({ bits, groupSize: GROUP, symmetric: false })));
    }
    return { model };
  }
}
