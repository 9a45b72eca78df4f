/**
 * `--max-memory` for `lieq quantize`: what the run holds at once, estimated from the shapes,
 * checked against a cap before any work, and the one knob it sets (embedding/lm_head block rows).
 *
 * The estimate (bytes; see quantize-model.ts and gptq-calibrate.ts for where each part lives):
 *   base         the process's resident memory when the run starts (Node, the addon, the plan)
 *   layer        the reused f32 weight buffers (quantize-model.ts LinearBuffers): RTN the largest
 *                linear, GPTQ all seven linears of a layer; a zero-padded f32 copy of the
 *                largest; the packed layer (codes, scales, zeros)
 *   activations  one calibration sequence through one layer (GPTQ only): the residual input
 *                and output, q/k/v/o, gate/up/down, attention scores, the caught stage input
 *   hessians     GPTQ only: the f64 Hessian and its f64 factor of the widest linear input
 *   calibration  GPTQ only: the hidden states of every calibration sequence at one layer
 *                boundary, plus one sequence being replaced
 *   blocks       embedding / lm_head rows converted at a time (f32 + f16/packed output)
 * The calibration set is never shrunk behind the user's back: when it cannot fit, the error
 * says how many --calib-samples would. The block rows are the only thing the cap changes (the
 * output bytes do not depend on them).
 */
import { linearShape, LINEAR_NAMES, type ModelConfig } from '../io/config.js';
import type { Plan } from '../lieq/plan.js';
import { UsageError } from '../util/errors.js';
import { packedBytes, resolveLayout } from './layout.js';

/** Default embedding/lm_head block: 64 MiB of f32 rows. */
export const DEFAULT_BLOCK_BYTES = 64 * 2 ** 20;

export interface MemoryEstimate {
  base: number;
  layer: number;
  activations: number;
  hessians: number;
  calibration: number;
  /** Bytes per embedding/lm_head row in flight (f32 in, f16 or packed out). */
  perBlockRow: number;
}

export function estimateQuantizeMemory(cfg: ModelConfig, plan: Plan, calib: { samples: number; seqlen: number } | null, base: number): MemoryEstimate {
  const gptq = plan.layers.some((l) => l.backbone === 'gptq');
  let dense = 0;
  let largest = 0;
  let largestPadded = 0;
  let packed = 0;
  let widestIn = 0;
  const maxBits = Math.max(...plan.layers.map((l) => l.bits));
  for (const name of LINEAR_NAMES) {
    const [out, inF] = linearShape(cfg, name);
    const layout = resolveLayout(inF, Math.max(...plan.layers.map((l) => l.groupSize)));
    dense += out * inF * 4;
    largest = Math.max(largest, out * inF * 4);
    largestPadded = Math.max(largestPadded, out * layout.paddedIn * 4);
    packed += packedBytes(out, resolveLayout(inF, 32), maxBits, plan.symmetric); // smallest group: most scales
    widestIn = Math.max(widestIn, layout.paddedIn);
  }
  const h = cfg.hiddenSize;
  const seqlen = calib ? Math.min(calib.seqlen, cfg.maxPositionEmbeddings) : 0;
  const qkvo = (cfg.numHeads + 2 * cfg.numKvHeads) * cfg.headDim + h;
  const activations = gptq && calib ? seqlen * (2 * h + qkvo + 3 * cfg.intermediateSize + widestIn) * 4 + cfg.numHeads * seqlen * seqlen * 4 : 0;
  return {
    base,
    layer: (gptq ? dense : largest) + largestPadded + packed,
    activations,
    hessians: gptq ? 2 * widestIn * widestIn * 8 : 0,
    calibration: gptq && calib ? (calib.samples + 1) * seqlen * h * 4 : 0,
    perBlockRow: h * (4 + 2),
  };
}

/**
 * Check `cap` against the estimate; returns the embedding/lm_head block rows to use. Throws a
 * UsageError naming the part that does not fit and what would.
 */
export function planMemory(cfg: ModelConfig, e: MemoryEstimate, cap: number | undefined, calib: { samples: number; seqlen: number } | null): { blockRows: number } {
  const defaultRows = Math.max(1, Math.floor(DEFAULT_BLOCK_BYTES / (4 * cfg.hiddenSize)));
  if (cap === undefined) return { blockRows: defaultRows };
  const fixed = e.base + e.layer + e.activations + e.hessians;
  const f = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (fixed + e.perBlockRow > cap)
    throw new UsageError(
      `--max-memory ${f(cap)}: one layer's working set does not fit (process ${f(e.base)} + layer weights ${f(e.layer)}${e.hessians ? ` + GPTQ Hessians ${f(e.hessians)} + activations ${f(e.activations)}` : ''} = ${f(fixed)}); raise --max-memory`,
    );
  if (calib && fixed + e.calibration > cap) {
    const perSample = e.calibration / (calib.samples + 1);
    const fit = Math.floor((cap - fixed) / perSample) - 1;
    throw new UsageError(
      `--max-memory ${f(cap)}: the GPTQ calibration hidden states (${calib.samples} × ${Math.min(calib.seqlen, cfg.maxPositionEmbeddings)} tokens × ${cfg.hiddenSize} × 4 bytes = ${f(e.calibration)}) do not fit beside one layer's working set (${f(fixed)}); ` +
        (fit >= 1 ? `at most --calib-samples ${fit} fit` : 'lower --calib-seqlen') + ', or raise --max-memory',
    );
  }
  // Blocks are converted while writing the output, when no layer or calibration state is held.
  return { blockRows: Math.max(1, Math.min(defaultRows, Math.floor((cap - e.base) / e.perBlockRow))) };
}

/** "4GiB", "512M", "1.5 GB", "1000000" (bytes) -> bytes. Binary (Ki/Mi/Gi) and decimal (K/M/G) units. */
export function parseByteSize(s: string, option = '--max-memory'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?)?B?\s*$/i.exec(s);
  if (!m) throw new UsageError(`${option}: expected a size like 4GiB, 512MiB or 2G, got "${s}"`);
  const unit = (m[2] ?? '').toUpperCase();
  const pow = { '': 0, K: 1, M: 2, G: 3, T: 4 }[unit[0] ?? ''] ?? 0;
  const bytes = Number(m[1]) * (unit.endsWith('I') ? 1024 : 1000) ** pow;
  if (!Number.isFinite(bytes) || bytes < 1) throw new UsageError(`${option}: expected a positive size, got "${s}"`);
  return Math.floor(bytes);
}
