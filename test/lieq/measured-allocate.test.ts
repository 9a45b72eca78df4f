/**
 * Allocation with measured costs: the DP against brute force over every plan, the refinement
 * pass (never worse than its start, finds an interaction the additive model misses), its
 * neighbourhood, and allocateMeasured's handling of hybrid candidates and widths.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { additiveCost, allocateMinCost, planNeighbours, refineAllocation, rng, withinBudget } from '../../lib/lieq/allocate.js';
import { allocateMeasured, type MeasuredCosts } from '../../lib/lieq/measured.js';
import { UsageError } from '../../lib/util/errors.js';

/** Lowest Σ cost over every plan within the budget (the reference the DP must match). */
function bruteForce(costs: number[][], weights: number[], allowed: number[], budget: number): number {
  const L = weights.length;
  let best = Infinity;
  const bits = new Array<number>(L);
  const rec = (l: number) => {
    if (l === L) {
      if (withinBudget(bits, weights, budget)) best = Math.min(best, bits.reduce((s, b, i) => s + costs[i][allowed.indexOf(b)], 0));
      return;
    }
    for (const b of allowed) {
      bits[l] = b;
      rec(l + 1);
    }
  };
  rec(0);
  return best;
}

const costTables = fc
  .record({
    L: fc.integer({ min: 1, max: 6 }),
    allowed: fc.constantFrom([2, 4], [2, 3, 4], [2, 3, 4, 8], [3, 4]).map((a) => [...a]),
    sizes: fc.constantFrom('equal', 'mixed'),
    seed: fc.integer({ min: 0, max: 1e6 }),
    frac: fc.double({ min: 0, max: 1, noNaN: true }),
  })
  .map(({ L, allowed, sizes, seed, frac }) => {
    const r = rng(seed);
    const weights = Array.from({ length: L }, () => (sizes === 'equal' ? 1000 : 1000 * (1 + Math.floor(r() * 3))));
    // Costs fall with width, with random layer sensitivities; some layers forbid a width.
    const costs = weights.map(() => {
      const s = r() * 2;
      return allowed.map((b, j) => (j > 0 && r() < 0.1 ? Infinity : s * 2 ** -(b - allowed[0]) + 0.01 * r()));
    });
    const budget = allowed[0] + frac * (allowed[allowed.length - 1] - allowed[0]);
    return { costs, weights, allowed, budget };
  });

describe('allocateMinCost (exact DP over measured costs)', () => {
  it('equals brute force on random cost tables', () => {
    fc.assert(
      fc.property(costTables, ({ costs, weights, allowed, budget }) => {
        const a = allocateMinCost({ costs, weights, allowed, budget });
        expect(withinBudget(a.bits, weights, budget)).toBe(true);
        expect(a.predictedCost).toBeCloseTo(bruteForce(costs, weights, allowed, budget), 9);
        expect(a.predictedCost).toBeCloseTo(additiveCost(a.bits, { costs, allowed }), 12);
      }),
      { numRuns: 300, seed: 13 },
    );
  });

  it('hand case: two 3-bit layers beat one 4-bit layer when 3 bits removes most damage', () => {
    const costs = [[1, 0.2, 0.1], [0.9, 0.15, 0.1], [0.5, 0.1, 0.05]];
    const a = allocateMinCost({ costs, weights: [1, 1, 1], allowed: [2, 3, 4], budget: 2 + 2 / 3 });
    expect(a.bits).toEqual([3, 3, 2]);
    expect(a.predictedCost).toBeCloseTo(0.2 + 0.15 + 0.5, 12);
  });

  it('columns follow the order of `allowed`; bad tables are usage errors', () => {
    const a = allocateMinCost({ costs: [[0.1, 1], [0.2, 2]], weights: [1, 1], allowed: [4, 2], budget: 3 });
    expect(a.bits).toEqual([2, 4]);
    expect(() => allocateMinCost({ costs: [[1, NaN]], weights: [1], allowed: [2, 4], budget: 3 })).toThrow(UsageError);
    expect(() => allocateMinCost({ costs: [[Infinity, 1]], weights: [1], allowed: [2, 4], budget: 3 })).toThrow(/lowest width/);
    expect(() => allocateMinCost({ costs: [[1, 1]], weights: [1, 1], allowed: [2, 4], budget: 3 })).toThrow(/rows/);
  });
});

describe('refineAllocation', () => {
  it('is never worse than its start, keeps the budget, and stops when no neighbour improves', async () => {
    await fc.assert(
      fc.asyncProperty(costTables, fc.integer({ min: 0, max: 1e6 }), async ({ costs, weights, allowed, budget }, seed) => {
        const start = allocateMinCost({ costs, weights, allowed, budget });
        // A non-additive truth: the additive costs plus random pairwise interactions.
        const r = rng(seed);
        const L = weights.length;
        const inter = Array.from({ length: L }, () => Array.from({ length: L }, () => (r() - 0.5) * 0.5));
        let calls = 0;
        const truth = async (bits: number[]) => {
          calls++;
          let c = additiveCost(bits, { costs: costs.map((row) => row.map((x) => (Number.isFinite(x) ? x : 1e9))), allowed });
          for (let i = 0; i < L; i++) for (let j = i + 1; j < L; j++) c += inter[i][j] * (bits[i] - allowed[0]) * (bits[j] - allowed[0]);
          return c;
        };
        const ref = await refineAllocation(start.bits, { weights, allowed, budget }, truth, { rounds: 3 });
        expect(ref.cost).toBeLessThanOrEqual(ref.startCost);
        expect(ref.cost).toBe(await truth(ref.bits));
        expect(ref.startCost).toBe(await truth(start.bits));
        expect(withinBudget(ref.bits, weights, budget)).toBe(true);
        expect(ref.evaluations).toBe(calls - 2);
      }),
      { numRuns: 100, seed: 7 },
    );
  });

  it('with an additive truth the DP plan is already optimal: no move is taken', async () => {
    const costs = [[1, 0.2, 0.1], [0.9, 0.15, 0.1], [0.5, 0.1, 0.05], [0.3, 0.1, 0]];
    const inp = { weights: [1, 1, 1, 1], allowed: [2, 3, 4], budget: 3 };
    const start = allocateMinCost({ costs, ...inp });
    const r = await refineAllocation(start.bits, inp, async (b) => additiveCost(b, { costs, allowed: inp.allowed }), { rounds: 2 });
    expect(r.bits).toEqual(start.bits);
    expect(r.cost).toBe(r.startCost);
    expect(r.rounds).toBe(1);
  });

  it('finds the better neighbour when two layers interact', async () => {
    // Additively layer 0 is the one to promote; in truth promoting 0 and 2 together... only one
    // fits, and layer 1 at 4 bits also repairs layer 0 (interaction), so [2,4,2] is best.
    const costs = [[1, 0], [0.8, 0], [0.1, 0]];
    const inp = { weights: [1, 1, 1], allowed: [2, 4], budget: 2 + 2 / 3 };
    const start = allocateMinCost({ costs, ...inp });
    expect(start.bits).toEqual([4, 2, 2]);
    const truth = async (b: number[]) => additiveCost(b, { costs, allowed: inp.allowed }) - (b[1] === 4 ? 1 : 0);
    const r = await refineAllocation(start.bits, inp, truth);
    expect(r.bits).toEqual([2, 4, 2]);
    expect(r.cost).toBeCloseTo(0.1, 12);
    expect(r.evaluations).toBe(1 + 2); // start + two swaps
  });

  it('refuses a start plan over the budget', async () => {
    await expect(refineAllocation([4, 4], { weights: [1, 1], allowed: [2, 4], budget: 3 }, async () => 0)).rejects.toThrow(UsageError);
  });
});

describe('planNeighbours', () => {
  it('swaps and one-step transfers within the budget, only among movable layers', () => {
    const inp = { weights: [1, 1, 1], allowed: [2, 3, 4], budget: 3 };
    const n = planNeighbours([4, 3, 2], inp).map((p) => p.join(','));
    // swaps: 3,4,2 / 2,3,4 / 4,2,3; transfers add 3,3,3 (layer 0 gives a step to layer 2).
    expect(n.sort()).toEqual(['2,3,4', '3,3,3', '3,4,2', '4,2,3']);
    for (const p of planNeighbours([4, 3, 2], inp)) expect(withinBudget(p, inp.weights, inp.budget)).toBe(true);
    expect(planNeighbours([4, 3, 2], { ...inp, movable: [1, 2] }).every((p) => p[0] === 4)).toBe(true);
  });
});

describe('allocateMeasured', () => {
  const m = (layers: number[], kl: number[][], allowed = [2, 3, 4]): MeasuredCosts => ({
    format: 'lieq-measured/1',
    settings: { calib: 'x', samples: 1, seqlen: 2, seed: 0, allowed, groupSize: 128, symmetric: false, backbone: 'rtn' },
    baseNll: 1,
    layers: layers.map((layer, i) => ({ layer, kl: kl[i], deltaNll: kl[i].map((x) => 2 * x) })),
    layerRuns: 0,
    seconds: 0,
  });

  it('unmeasured layers (hybrid) stay at the lowest width; widths may be a subset of those measured', async () => {
    const costs = m([1, 3], [[1, 0.1, 0], [0.5, 0.05, 0]]);
    const a = await allocateMeasured(costs, [1, 1, 1, 1], { budget: 3, allowed: [2, 3, 4], metric: 'kl' });
    expect(a.bits).toEqual([2, 4, 2, 4]);
    const b = await allocateMeasured(costs, [1, 1, 1, 1], { budget: 2.5, allowed: [2, 4], metric: 'kl' });
    expect(b.bits).toEqual([2, 4, 2, 2]);
    await expect(allocateMeasured(costs, [1, 1, 1, 1], { budget: 3, allowed: [2, 8], metric: 'kl' })).rejects.toThrow(/were not measured/);
  });

  it('refinement moves only measured layers', async () => {
    const costs = m([0, 1], [[1, 0.5, 0], [0.9, 0.5, 0]]);
    const seen: number[][] = [];
    const a = await allocateMeasured(costs, [1, 1, 1], { budget: 2 + 2 / 3, allowed: [2, 3, 4], metric: 'nll', evaluate: async (b) => (seen.push(b), b[1] === 4 ? 0 : 1) });
    expect(a.refinement!.evaluations).toBe(seen.length);
    expect(seen.every((b) => b[2] === 2)).toBe(true);
    expect(a.bits).toEqual([2, 4, 2]);
  });
});
