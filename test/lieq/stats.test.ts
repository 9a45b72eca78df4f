import { describe, expect, it } from 'vitest';

import { minMax, ranksDescending, spearman } from '../../lib/lieq/stats.js';

describe('stats', () => {
  it('ranks with ties', () => {
    expect(ranksDescending([10, 30, 20, 30])).toEqual([4, 1.5, 3, 1.5]);
  });
  it('spearman: perfect, reversed, a hand-computed case with ties', () => {
    expect(spearman([1, 2, 3, 4], [10, 20, 30, 40])).toBeCloseTo(1, 12);
    expect(spearman([1, 2, 3, 4], [4, 3, 2, 1])).toBeCloseTo(-1, 12);
    // d = rank differences without ties: x ranks [5,4,3,2,1], y ranks [4,5,3,1,2] -> d² sum = 1+1+0+1+1 = 4
    // rho = 1 - 6·4 / (5·24) = 0.8
    expect(spearman([1, 2, 3, 4, 5], [2, 1, 3, 5, 4])).toBeCloseTo(0.8, 12);
    // with ties: Pearson on average ranks; x = [1,1,2] ranks [2.5,2.5,1], y = [1,2,3] ranks [3,2,1]
    // centred: x [0.5,0.5,-1], y [1,0,-1] -> cov 1.5, |x|² 1.5, |y|² 2 -> 1.5/sqrt(3) = 0.8660
    expect(spearman([1, 1, 2], [1, 2, 3])).toBeCloseTo(Math.sqrt(3) / 2, 12);
    expect(spearman([1, 1, 1], [1, 2, 3])).toBeNaN();
  });
  it('min-max', () => {
    expect(minMax([2, 4, 3])).toEqual([0, 1, 0.5]);
    expect(minMax([5, 5])).toEqual([0, 0]);
  });
});
