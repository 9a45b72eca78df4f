/**
 * Rotary position embedding tables, Hugging Face convention: inverse frequencies
 * theta^(-2i/head_dim) for i < head_dim/2 (adjusted by llama3 or linear rope scaling), and
 * cos/sin of position·inv_freq computed in double, stored as f32 [positions, head_dim/2].
 * The native op applies them in the rotate_half layout (pairs i, i + head_dim/2).
 */
import type { ModelConfig, RopeScaling } from '../io/config.js';

/** Inverse frequencies (double) of one head, with the config's rope scaling applied. */
export function ropeInverseFrequencies(headDim: number, theta: number, scaling: RopeScaling | null): Float64Array {
  const half = headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(theta, (2 * i) / headDim);
  if (!scaling) return inv;
  if (scaling.type === 'linear') {
    // Positions divided by the factor = frequencies divided by it.
    for (let i = 0; i < half; i++) inv[i] /= scaling.factor;
    return inv;
  }
  // llama3: long wavelengths (low frequencies) are slowed by `factor`, short ones kept, and the
  // band between original/lowFreqFactor and original/highFreqFactor is interpolated.
  const { factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: oldCtx } = scaling;
  const lowFreqWavelen = oldCtx / lowFreqFactor;
  const highFreqWavelen = oldCtx / highFreqFactor;
  for (let i = 0; i < half; i++) {
    const f = inv[i];
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highFreqWavelen) continue;
    if (wavelen > lowFreqWavelen) {
      inv[i] = f / factor;
      continue;
    }
    const smooth = (oldCtx / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
    inv[i] = (1 - smooth) * (f / factor) + smooth * f;
  }
  return inv;
}

/** cos/sin tables of a model, grown on demand (positions are never limited by the config). */
export class RopeTables {
  readonly headDim: number;
  readonly invFreq: Float64Array;
  private cosTable = new Float32Array(0);
  private sinTable = new Float32Array(0);
  private positions = 0;

  constructor(headDim: number, theta: number, scaling: RopeScaling | null) {
    this.headDim = headDim;
    this.invFreq = ropeInverseFrequencies(headDim, theta, scaling);
  }

  static forConfig(cfg: ModelConfig): RopeTables {
    return new RopeTables(cfg.headDim, cfg.ropeTheta, cfg.ropeScaling);
  }

  /** Tables covering at least positions [0, n). Views stay valid until the next growth. */
  ensure(n: number): { cos: Float32Array; sin: Float32Array } {
    if (n > this.positions) {
      const half = this.headDim / 2;
      const positions = Math.max(n, 2 * this.positions, 64);
      const cos = new Float32Array(positions * half);
      const sin = new Float32Array(positions * half);
      for (let p = 0; p < positions; p++) {
        for (let i = 0; i < half; i++) {
          const a = p * this.invFreq[i];
          cos[p * half + i] = Math.cos(a);
          sin[p * half + i] = Math.sin(a);
        }
      }
      this.cosTable = cos;
      this.sinTable = sin;
      this.positions = positions;
    }
    return { cos: this.cosTable, sin: this.sinTable };
  }
}
