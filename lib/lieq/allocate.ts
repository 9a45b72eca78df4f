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
 *   dynamic programming over budget units (n_l / gcd); with measured costs (allocateMinCost)
 *   the same DP minimises Σ cost(l, b_l), then refineAllocation corrects for interactions.
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
  const { bmin, bmax, allowed } = checkInput(inp);
  const gain = (l: number, j: number) => (bmax === bmin ? 0 : (inp.scores[l] * (allowed[j] - bmin)) / (bmax - bmin));
  const bits = knapsack(inp, allowed, gain);
  return { bits, method: 'exact', nominalBits: nominalAverage(bits, inp.weights) };
}

/**
 * Multiple-choice knapsack by dynamic programming over budget units (n_l / gcd): bits per
 * layer maximising Σ value(l, j) (j indexes `allowed`, ascending; −Infinity = not allowed)
 * with Σ n_l·b_l ≤ budget·Σ n_l. Exact when the table needs no coarsening (equal-sized layers
 * always), else costs are rounded up and the budget still holds.
 */
function knapsack(inp: Pick<AllocationInput, 'weights' | 'budget'>, allowed: number[], value: (l: number, j: number) => number): number[] {
  const L = inp.weights.length;
  const bmin = allowed[0];
  const total = inp.weights.reduce((a, b) => a + b, 0);
  if (L > 128) throw new UsageError(`--method exact supports up to 128 layers (model has ${L}); use greedy`);
  let unit = inp.weights.reduce(gcd);
  let cap = Math.floor(((inp.budget - bmin) * total) / unit + 1e-6);
  // Coarsen units if the table would be huge (layers of very different sizes).
  while (cap * L > MAX_DP_CELLS) {
    unit *= 2;
    cap = Math.floor(((inp.budget - bmin) * total) / unit + 1e-6);
  }
  const cost = (l: number, b: number) => Math.ceil(((b - bmin) * inp.weights[l]) / unit);
  // best[c] = best total value using capacity ≤ c after the layers processed so far.
  let best = new Float64Array(cap + 1);
  const choice: Int8Array[] = [];
  for (let l = 0; l < L; l++) {
    const next = new Float64Array(cap + 1).fill(-Infinity);
    const pick = new Int8Array(cap + 1);
    for (let c = 0; c <= cap; c++) {
      for (let j = 0; j < allowed.length; j++) {
        const k = cost(l, allowed[j]);
        if (k > c) continue;
        const v = best[c - k] + value(l, j);
        // Strictly better, or equal value with fewer bits (prefer the cheaper plan on ties).
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
  return bits;
}

export interface CostAllocationInput {
  /** costs[l][j]: measured cost of layer l at allowed[j] (Infinity: width not allowed for l). */
  costs: number[][];
  weights: number[];
  /** Allowed widths, the order of costs' columns. */
  allowed: number[];
  budget: number;
}

/** Σ_l costs[l][index of bits[l]]: the additive model's prediction for a plan. */
export function additiveCost(bits: readonly number[], inp: Pick<CostAllocationInput, 'costs' | 'allowed'>): number {
  return bits.reduce((s, b, l) => s + inp.costs[l][inp.allowed.indexOf(b)], 0);
}

/**
 * [ours] Bits per layer minimising the summed measured cost Σ_l cost(l, b_l) under the budget:
 * exact for the additive model (each layer's damage measured alone, see lib/lieq/measured.ts).
 */
export function allocateMinCost(inp: CostAllocationInput): Allocation & { predictedCost: number } {
  const L = inp.weights.length;
  const order = inp.allowed.map((b, j) => [b, j] as const).sort((a, b) => a[0] - b[0]);
  const allowed = order.map(([b]) => b);
  if (new Set(allowed).size !== allowed.length) throw new UsageError(`allowed widths must be distinct (got ${inp.allowed.join(',')})`);
  checkInput({ scores: new Array(L).fill(0), weights: inp.weights, allowed, budget: inp.budget });
  if (inp.costs.length !== L) throw new UsageError(`costs has ${inp.costs.length} rows, the model has ${L} layers`);
  inp.costs.forEach((row, l) => {
    if (row.length !== allowed.length || row.some((x) => Number.isNaN(x) || x === -Infinity))
      throw new UsageError(`costs[${l}]: expected ${allowed.length} numbers (or Infinity for a width not allowed)`);
    if (!Number.isFinite(row[order[0][1]])) throw new UsageError(`costs[${l}]: the lowest width must have a finite cost`);
  });
  const bits = knapsack(inp, allowed, (l, j) => -inp.costs[l][order[j][1]]);
  return { bits, method: 'exact', nominalBits: nominalAverage(bits, inp.weights), predictedCost: additiveCost(bits, inp) };
}

/** Does the plan keep Σ n_l·b_l ≤ budget·Σ n_l? */
export function withinBudget(bits: readonly number[], weights: readonly number[], budget: number): boolean {
  let used = 0;
  let total = 0;
  for (let l = 0; l < bits.length; l++) {
    used += bits[l] * weights[l];
    total += weights[l];
  }
  return used <= budget * total + EPS * total;
}

/**
 * Plans one move from `bits` that keep the budget: two layers swap their widths, or one layer
 * gives up one allowed step and another gains one ("move one promotion"). Only `movable`
 * layers change (all by default).
 */
export function planNeighbours(bits: readonly number[], inp: { weights: number[]; allowed: number[]; budget: number; movable?: number[] }): number[][] {
  const allowed = [...new Set(inp.allowed)].sort((a, b) => a - b);
  const layers = inp.movable ?? bits.map((_, i) => i);
  const seen = new Set<string>([bits.join(',')]);
  const out: number[][] = [];
  const add = (p: number[]) => {
    const k = p.join(',');
    if (!seen.has(k) && withinBudget(p, inp.weights, inp.budget)) {
      seen.add(k);
      out.push(p);
    }
  };
  for (const i of layers) {
    for (const j of layers) {
      if (i === j) continue;
      if (i < j && bits[i] !== bits[j]) {
        const p = [...bits];
        [p[i], p[j]] = [p[j], p[i]];
        add(p);
      }
      const di = allowed.indexOf(bits[i]);
      const dj = allowed.indexOf(bits[j]);
      if (di > 0 && dj >= 0 && dj < allowed.length - 1) {
        const p = [...bits];
        p[i] = allowed[di - 1];
        p[j] = allowed[dj + 1];
        add(p);
      }
    }
  }
  return out;
}

export interface Refinement {
  bits: number[];
  /** Measured cost of the returned plan and of the start plan. */
  cost: number;
  startCost: number;
  /** Plans measured (start included). */
  evaluations: number;
  rounds: number;
}

/**
 * [ours] Correct the additive model for interactions between layers: measure the plan itself
 * and every neighbour (planNeighbours), move to the best if it is better, repeat up to
 * `rounds` times. Only improvements are taken, so the result is never worse than the start
 * (as measured by `evaluate`).
 */
export async function refineAllocation(
  start: readonly number[],
  inp: { weights: number[]; allowed: number[]; budget: number; movable?: number[] },
  evaluate: (bits: number[]) => Promise<number>,
  o: { rounds?: number } = {},
): Promise<Refinement> {
  if (!withinBudget(start, inp.weights, inp.budget)) throw new UsageError('refine: the start plan exceeds the budget');
  const rounds = o.rounds ?? 1;
  let bits = [...start];
  const startCost = await evaluate(bits);
  let cost = startCost;
  let evaluations = 1;
  let r = 0;
  while (r < rounds) {
    r++;
    let best: { bits: number[]; cost: number } | null = null;
    for (const p of planNeighbours(bits, inp)) {
      const c = await evaluate(p);
      evaluations++;
      if (c < (best?.cost ?? cost)) best = { bits: p, cost: c };
    }
    if (!best) break;
    bits = best.bits;
    cost = best.cost;
  }
  return { bits, cost, startCost, evaluations, rounds: r };
}
