import { describe, expect, it } from 'vitest';

import {
  allocateExact,
  allocateGreedy,
  allocateInverse,
  allocateRandom,
  allocateUniform,
  nominalAverage,
  rng,
  type AllocationInput,
} from '../../lib/lieq/allocate.js';
import { UsageError } from '../../lib/util/errors.js';

/** Brute force over every assignment: the reference the exact method must match. */
function bruteForce(inp: AllocationInput): number {
  const allowed = [...new Set(inp.allowed)].sort((a, b) => a - b);
  const bmin = allowed[0];
  const bmax = allowed[allowed.length - 1];
  const L = inp.scores.length;
  const total = inp.weights.reduce((a, b) => a + b, 0);
  let best = -Infinity;
  const bits = new Array(L).fill(bmin);
  const rec = (l: number) => {
    if (l === L) {
      let used = 0;
      for (let i = 0; i < L; i++) used += bits[i] * inp.weights[i];
      if (used > inp.budget * total + 1e-9 * total) return;
      let g = 0;
      for (let i = 0; i < L; i++) g += (inp.scores[i] * (bits[i] - bmin)) / (bmax - bmin);
      best = Math.max(best, g);
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

const gain = (inp: AllocationInput, bits: number[]) => {
  const a = [...inp.allowed].sort((x, y) => x - y);
  return bits.reduce((s, b, i) => s + (inp.scores[i] * (b - a[0])) / (a[a.length - 1] - a[0]), 0);
};

describe('greedy allocation reproduces the paper budgets (2 + 2k/L)', () => {
  for (const [L, k] of [[36, 1], [28, 1], [36, 2], [16, 3], [5, 1], [2, 1]] as const) {
    it(`L=${L}, k=${k}: exactly the top-${k} layers at 4 bits`, () => {
      const scores = Array.from({ length: L }, (_, i) => Math.sin(i * 1.7) + i * 0.01);
      const weights = new Array(L).fill(1000);
      const budget = 2 + (2 * k) / L;
      const a = allocateGreedy({ scores, weights, allowed: [2, 3, 4], budget });
      const top = [...scores.keys()].sort((x, y) => scores[y] - scores[x]).slice(0, k).sort((x, y) => x - y);
      expect(a.bits.flatMap((b, i) => (b === 4 ? [i] : []))).toEqual(top);
      expect(a.bits.filter((b) => b !== 2 && b !== 4)).toEqual([]);
      expect(a.nominalBits).toBeCloseTo(budget, 12);
    });
  }
  it('Qwen3-4B "2.05" is 2 + 2/36 = 2.0556; a budget of exactly 2.05 cannot afford a 4-bit layer', () => {
    const scores = Array.from({ length: 36 }, (_, i) => i);
    const weights = new Array(36).fill(1);
    const a = allocateGreedy({ scores, weights, allowed: [2, 3, 4], budget: 2.05 });
    expect(a.bits.filter((b) => b === 4)).toHaveLength(0);
    expect(a.bits.filter((b) => b === 3)).toHaveLength(1);
    expect(a.nominalBits).toBeLessThanOrEqual(2.05);
  });
});

describe('every method keeps the budget; exact is optimal', () => {
  it('random instances: budget never exceeded, exact = brute force optimum', () => {
    const r = rng(42);
    for (let t = 0; t < 200; t++) {
      const L = 1 + Math.floor(r() * 6);
      const allowed = [[2, 3, 4], [2, 4], [2, 3, 4, 8], [3, 4], [2, 8]][t % 5];
      const scores = Array.from({ length: L }, () => r() * 2 - 0.3);
      const weights = Array.from({ length: L }, () => 1 + Math.floor(r() * 5) * 64);
      const lo = Math.min(...allowed);
      const hi = Math.max(...allowed);
      const budget = lo + r() * (hi - lo);
      const inp = { scores, weights, allowed, budget };
      for (const a of [allocateGreedy(inp), allocateExact(inp), allocateInverse(inp), allocateRandom(inp, t)]) {
        expect(nominalAverage(a.bits, weights)).toBeLessThanOrEqual(budget + 1e-9);
        expect(a.bits.every((b) => allowed.includes(b))).toBe(true);
      }
      const exact = allocateExact(inp);
      expect(gain(inp, exact.bits)).toBeCloseTo(bruteForce(inp), 9);
      expect(gain(inp, exact.bits)).toBeGreaterThanOrEqual(gain(inp, allocateGreedy(inp).bits) - 1e-9);
    }
  });
  it('random allocation is reproducible by seed and differs across seeds', () => {
    const inp = { scores: new Array(12).fill(0), weights: new Array(12).fill(1), allowed: [2, 4], budget: 2 + 2 / 12 };
    expect(allocateRandom(inp, 3).bits).toEqual(allocateRandom(inp, 3).bits);
    const distinct = new Set([0, 1, 2, 3, 4, 5, 6, 7].map((s) => allocateRandom(inp, s).bits.join('')));
    expect(distinct.size).toBeGreaterThan(3);
  });
  it('inverse gives the bits to the lowest scores', () => {
    const a = allocateInverse({ scores: [5, 1, 3, 9], weights: [1, 1, 1, 1], allowed: [2, 4], budget: 2.5 });
    expect(a.bits).toEqual([2, 4, 2, 2]);
  });
  it('uniform', () => {
    expect(allocateUniform([3, 3], 4).bits).toEqual([4, 4]);
    expect(() => allocateUniform([3], 5)).toThrow(UsageError);
  });
});

describe('unreachable budgets state the feasible range', () => {
  const base = { scores: [1, 2], weights: [10, 10], allowed: [2, 3, 4] };
  it('below b_min and above b_max', () => {
    expect(() => allocateGreedy({ ...base, budget: 1.5 })).toThrow(/feasible nominal range is \[2, 4\]/);
    expect(() => allocateExact({ ...base, budget: 4.5 })).toThrow(/feasible nominal range is \[2, 4\]/);
    expect(() => allocateGreedy({ ...base, allowed: [5], budget: 5 })).toThrow(/--allowed/);
  });
  it('NaN scores are refused', () => {
    expect(() => allocateGreedy({ ...base, scores: [NaN, 1], budget: 3 })).toThrow(/finite/);
  });
});

describe('scores from an analysis', async () => {
  const { combineScores, parseScoreWeights } = await import('../../lib/lieq/analysis.js');
  const layer = (i: number, deltaRC: number, teg: number, pd?: number) => ({
    layer: i, deltaRC, teg, pd, rc: { q: 0, k: 0, v: 0 }, rcReference: { q: 0, k: 0, v: 0 }, tegByK: {}, weightDeltaRC: -deltaRC, weightTeg: 0,
  });
  const a = { layers: [layer(0, 0.1, 0.3, 2), layer(1, 0.3, 0.1, 1), layer(2, 0.2, 0.2, 0)] } as never;
  it('v2, teg, weights, pd read one metric; v1 is the weighted min-max mean', () => {
    expect(combineScores(a, 'v2')).toEqual([0.1, 0.3, 0.2]);
    expect(combineScores(a, 'teg')).toEqual([0.3, 0.1, 0.2]);
    expect(combineScores(a, 'weights')).toEqual([-0.1, -0.3, -0.2]);
    expect(combineScores(a, 'pd')).toEqual([2, 1, 0]);
    // min-max: pd [1, .5, 0], rc [0, 1, .5], teg [1, 0, .5]
    const v1 = combineScores(a, 'v1');
    [2 / 3, 0.5, 1 / 3].forEach((x, i) => expect(v1[i]).toBeCloseTo(x, 12));
    const pdOnly = combineScores(a, 'v1', parseScoreWeights('1,0,0'));
    [1, 0.5, 0].forEach((x, i) => expect(pdOnly[i]).toBeCloseTo(x, 12));
    expect(() => parseScoreWeights('0,0,0')).toThrow(/score-weights/);
  });
  it('PD-based scores refuse an analysis without PD', () => {
    const noPd = { layers: [layer(0, 0.1, 0.3), layer(1, 0.2, 0.1)] } as never;
    expect(() => combineScores(noPd, 'v1')).toThrow(/needs Perplexity Drop/);
  });
});
