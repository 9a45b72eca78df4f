/**
 * The LLaMA-3.2-1B-shaped random models that the GPU benchmarks decode (bench-decode.ts,
 * profile-step.ts): fp16 (dense), uniform packed, or the LieQ-like plan (15 layers at 2-bit +
 * 1 at 3-bit, g128).
 *
 * Weight values do not change the speed (never zeros, though): one random layer per width is
 * generated and uploaded to every layer position, so each layer still has its own device
 * copy (16 distinct copies: nothing is served from the 50 MB L2 across layers).
 */
import { shapeConfig } from '../../lib/io/random-model.js';
import { LINEAR_NAMES, linearShape, type LinearName, type ModelConfig } from '../../lib/io/config.js';
import { denseFromWeights, packDense, type DenseLinear, type RuntimeLinear } from '../../lib/runtime/linear.js';
import { RuntimeModel, type LayerWeights, type WeightSource } from '../../lib/runtime/model.js';

export type Variant = 'fp16' | 'uniform 4-bit g128' | 'LieQ-like 2.06-bit (15x2 + 1x3, g128)';
export const VARIANTS: Variant[] = ['fp16', 'uniform 4-bit g128', 'LieQ-like 2.06-bit (15x2 + 1x3, g128)'];

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

/** Builds the variants of one shape; the random weights are generated once and shared. */
export class RandomModels {
  readonly cfg: ModelConfig;
  private readonly embedding: Float32Array;
  private readonly dense: Record<LinearName, RuntimeLinear>;

  constructor(layers?: number) {
    this.cfg = shapeConfig('llama-3.2-1b', layers ? { num_hidden_layers: layers } : {});
    this.embedding = noise(this.cfg.vocabSize * this.cfg.hiddenSize, 0.05, 7);
    this.dense = {} as Record<LinearName, RuntimeLinear>;
    LINEAR_NAMES.forEach((name, i) => {
      const [out, inF] = linearShape(this.cfg, name);
      this.dense[name] = denseFromWeights(noise(out * inF, 0.03, 1000 + i), out, inF);
    });
  }

  model(variant: Variant): RuntimeModel {
    if (variant === 'fp16') return this.modelOf(() => this.dense);
    if (variant === 'uniform 4-bit g128') {
      const p = this.packAll(4);
      return this.modelOf(() => p);
    }
    const p2 = this.packAll(2);
    const p3 = this.packAll(3);
    return this.modelOf((l) => (l === 1 ? p3 : p2));
  }

  private packAll(bits: 2 | 3 | 4): Record<LinearName, RuntimeLinear> {
    const lin = {} as Record<LinearName, RuntimeLinear>;
    for (const name of LINEAR_NAMES) lin[name] = packDense(this.dense[name] as DenseLinear, { bits, groupSize: 128 });
    return lin;
  }

  private modelOf(layerLinears: (l: number) => Record<LinearName, RuntimeLinear>): RuntimeModel {
    const cfg = this.cfg;
    const ones = new Float32Array(cfg.hiddenSize).fill(1);
    const source: WeightSource = {
      config: cfg,
      label: 'random llama-3.2-1b',
      embedding: () => this.embedding,
      finalNorm: () => ones,
      lmHead: (e) => denseFromWeights(e, cfg.vocabSize, cfg.hiddenSize),
      layer: (index): LayerWeights => ({ index, inputNorm: ones, postAttentionNorm: ones, qNorm: null, kNorm: null, linears: layerLinears(index) }),
      close: () => {},
    };
    return RuntimeModel.fromSource(source);
  }
}
