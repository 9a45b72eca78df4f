/**
 * Bit allocation under an average-bit budget (spec: ../shared/docs/lieq-method.md §5).
 *
 * Inputs: a score per decoder layer (higher = more important), the number of decoder-linear
 * weights per layer n_l, the allowed bit widths and the nominal budget B̄ (payload bits of
 * decoder linears only, the paper's convention). Every method keeps Σ n_l·b_l ≤ B̄·Σ n_l.
 *
 * - greedy [derived]: all layers at b_min, then in descending score order promote each layer
 *   to the highest allowed width that still fits the remaining budget. With L equal layers,
 *   budget 2 + 2k/L promotes exactly k layers to 4 bits, which reproduces the paper's budgets.
 * - exact [ours]: knapsack maximising Σ S_l·g(b_l), g(b) = (b − b_min)/(b_max − b_min), by
 *   dynamic programming over budget units (n_l / gcd).
 * - baselines: uniform, random (seeded order, then greedy), inverse (ascending order, greedy).
 */
import { UsageError } from '../util/errors.js';

export type AllocationMethod = 'greedy' | 'exact' | 'uniform' | 'random' | 'inverse' | 'manual';

export interface AllocationInput {
  /** Score per layer (higher = gets bits first). Ignored by uniform. */
  scores: number[];
  /** Decoder-linear weight count per layer. */
  weights: number[];
  /** Allowed bit widths, e.g. [2, 3, 4]. */
  allowed: number[];
  /** Nominal average-bit budget. */
  budget: number;
}

export interface Allocation {
  bits: number[];
  method: AllocationMethod;
  /** Nominal average actually reached (≤ budget). */
  nominalBits: number;
  /** Layer order the method used (greedy/random/inverse), most important first. */
  order?: number[];
  seed?: number;
}

/** Tolerance for floating-point budgets such as 2 + 2/36 typed as 2.0556. */
const EPS = 1e-9;

function checkInput(inp: AllocationInput): { bmin: number; bmax: number; allowed: number[]; total: number } {
  const L = inp.weights.length;
  if (L === 0) throw new UsageError('allocation needs at least one layer');
  if (inp.scores.length !== L) throw new UsageError(`scores has ${inp.scores.length} entries, the model has ${L} layers`);
  if (!inp.weights.every((n) => Number.isSafeInteger(n) && n > 0)) throw new UsageError('layer weight counts must be positive integers');
  if (!inp.scores.every(Number.isFinite)) throw new UsageError('layer scores must be finite numbers (a NaN score usually means a metric failed)');
  const allowed = [...new Set(inp.allowed)].sort((a, b) => a - b);
  if (allowed.length === 0 || !allowed.every((b) => [2, 3, 4, 8].includes(b)))
    throw new UsageError(`--allowed: bit widths must be among 2, 3, 4, 8 (got ${inp.allowed.join(',')})`);
  const bmin = allowed[0];
  const bmax = allowed[allowed.length - 1];
  if (!(inp.budget >= bmin - EPS && inp.budget <= bmax + EPS))
    throw new UsageError(
      `--bits ${inp.budget}: budget cannot be met with allowed widths {${allowed.join(', ')}}; feasible nominal range is [${bmin}, ${bmax}]`,
    );
  const total = inp.weights.reduce((a, b) => a + b, 0);
  return { bmin, bmax, allowed, total };
}

export function nominalAverage(bits: number[], weights: number[]): number {
  let s = 0;
  let n = 0;
  for (let i = 0; i < bits.length; i++) {
    s += bits[i] * weights[i];
    n += weights[i];
  }
  return s / n;
}

/** Promote layers in `order` to the highest allowed width that fits the remaining budget. */
export function greedyInOrder(order: number[], inp: AllocationInput): number[] {
  const { bmin, allowed, total } = checkInput(inp);
  const bits = inp.weights.map(() => bmin);
  let spare = (inp.budget - bmin) * total + EPS * total;
  for (const l of order) {
    for (let j = allowed.length - 1; j > 0; j--) {
      const cost = (allowed[j] - bmin) * inp.weights[l];
      if (cost <= spare) {
        bits[l] = allowed[j];
        spare -= cost;
        break;
      }
    }
  }
  return bits;
}

/** Indices sorted by descending score; ties keep the lower layer index first (deterministic). */
export function descendingOrder(scores: number[]): number[] {
  return scores.map((s, i) => [s, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]).map(([, i]) => i);
}

export function allocateGreedy(inp: AllocationInput): Allocation {
  const order = descendingOrder(inp.scores);
  const bits = greedyInOrder(order, inp);
  return { bits, method: 'greedy', nominalBits: nominalAverage(bits, inp.weights), order };
}

export function allocateInverse(inp: AllocationInput): Allocation {
  const order = descendingOrder(inp.scores).reverse();
  const bits = greedyInOrder(order, inp);
  return { bits, method: 'inverse', nominalBits: nominalAverage(bits, inp.weights), order };
}

/** mulberry32: small, seedable, good enough to shuffle layer orders reproducibly. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function allocateRandom(inp: AllocationInput, seed: number): Allocation {
  const r = rng(seed);
  const order = inp.weights.map((_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const bits = greedyInOrder(order, inp);
  return { bits, method: 'random', nominalBits: nominalAverage(bits, inp.weights), order, seed };
}

export function allocateUniform(weights: number[], bits: number): Allocation {
  if (![2, 3, 4, 8].includes(bits)) throw new UsageError(`--uniform: bits must be 2, 3, 4 or 8 (got ${bits})`);
  const b = weights.map(() => bits);
  return { bits: b, method: 'uniform', nominalBits: bits };
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** Largest budget capacity (in units) the DP table is allowed to have before costs are coarsened. */
const MAX_DP_CELLS = 2e7;

export function allocateExact(inp: AllocationInput): Allocation {
  const { bmin, bmax, allowed, total } = checkInput(inp);
  const L = inp.weights.length;
  if (L > 128) throw new UsageError(`--method exact supports up to 128 layers (model has ${L}); use greedy`);
  let unit = inp.weights.reduce(gcd);
  let cap = Math.floor(((inp.budget - bmin) * total) / unit + 1e-6);
  // Coarsen units if the table would be huge (layers of very different sizes); costs are
  // rounded up, so the budget still holds.
  while (cap * L > MAX_DP_CELLS) {
    unit *= 2;
    cap = Math.floor(((inp.budget - bmin) * total) / unit + 1e-6);
  }
  const cost = (l: number, b: number) => Math.ceil(((b - bmin) * inp.weights[l]) / unit);
  const gain = (l: number, b: number) => (bmax === bmin ? 0 : (inp.scores[l] * (b - bmin)) / (bmax - bmin));
  // best[c] = best total gain using capacity exactly ≤ c after the layers processed so far.
  let best = new Float64Array(cap + 1);
  const choice: Int8Array[] = [];
  for (let l = 0; l < L; l++) {
    const next = new Float64Array(cap + 1).fill(-Infinity);
    const pick = new Int8Array(cap + 1);
    for (let c = 0; c <= cap; c++) {
      for (let j = 0; j < allowed.length; j++) {
        const k = cost(l, allowed[j]);
        if (k > c) continue;
        const v = best[c - k] + gain(l, allowed[j]);
        // Strictly better, or equal gain with fewer bits (prefer the cheaper plan on ties).
        if (v > next[c] + 1e-12) {
          next[c] = v;
          pick[c] = j;
        }
      }
    }
    best = next;
    choice.push(pick);
  }
  const bits = new Array<number>(L);
  let c = cap;
  for (let l = L - 1; l >= 0; l--) {
    const j = choice[l][c];
    bits[l] = allowed[j];
    c -= cost(l, allowed[j]);
  }
  return { bits, method: 'exact', nominalBits: nominalAverage(bits, inp.weights) };
}
