/** Summary statistics of repeated measurements (llama-bench style: mean ± sample stddev). */

export interface Summary {
  /** Number of measurements. */
  n: number;
  mean: number;
  /** Sample standard deviation (n − 1 in the denominator); 0 for a single measurement. */
  stddev: number;
  min: number;
  max: number;
}

export function summarize(xs: readonly number[]): Summary {
  const n = xs.length;
  if (n === 0) throw new RangeError('summarize: no measurements');
  let sum = 0;
  for (const x of xs) sum += x;
  const mean = sum / n;
  let ss = 0;
  for (const x of xs) ss += (x - mean) ** 2;
  return { n, mean, stddev: n > 1 ? Math.sqrt(ss / (n - 1)) : 0, min: Math.min(...xs), max: Math.max(...xs) };
}
