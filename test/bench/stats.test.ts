/** Bench statistics against hand-computed values. */
import { describe, expect, it } from 'vitest';

import { summarize } from '../../lib/bench/stats.js';

describe('summarize', () => {
  it('mean and sample stddev (n − 1) of a textbook set', () => {
    // mean 5; Σ(x − 5)² = 9+1+1+1+0+0+4+16 = 32; sample variance 32/7
    const s = summarize([2, 4, 4, 4, 5, 5, 7, 9]);
    expect(s).toMatchObject({ n: 8, mean: 5, min: 2, max: 9 });
    expect(s.stddev).toBeCloseTo(Math.sqrt(32 / 7), 12);
  });

  it('two values: stddev = |a − b| / √2; one value: 0; none: an error', () => {
    expect(summarize([10, 14]).stddev).toBeCloseTo(4 / Math.SQRT2, 12);
    expect(summarize([3.5])).toEqual({ n: 1, mean: 3.5, stddev: 0, min: 3.5, max: 3.5 });
    expect(() => summarize([])).toThrow(RangeError);
  });
});
