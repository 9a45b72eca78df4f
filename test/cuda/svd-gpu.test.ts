/**
 * The GPU truncated SVD and spectra (lib/cuda/svd.ts) against the CPU and float64 references
 * (test/cuda/svd-checks.ts says what each check does). Runs where a CUDA device is usable;
 * elsewhere it prints why and skips those, and checks that 'auto' falls back to the CPU, that
 * 'cuda' is refused with the reason, and that the native functions reject instead of crashing.
 */
import { describe, expect, it } from 'vitest';

import { cudaSvdUnavailableReason, resolveLinalgDevice, truncatedSvd } from '../../lib/cuda/svd.js';
import { svd } from '../../lib/kernels/linalg.js';
import { analyzeModel } from '../../lib/lieq/analyze.js';
import { native } from '../../lib/native.js';
import { resolveModelArg } from '../../lib/util/data-dir.js';
import { UnsupportedError, UsageError } from '../../lib/util/errors.js';
import { matrixWithSpectrum, Rng } from '../reference/linalg-f64.js';
import { analyzeChecks, formatChecks, nonFiniteChecks, spectrumChecks, svdChecks, type SvdCheck } from './svd-checks.js';

const why = cudaSvdUnavailableReason();
if (why) console.log(`test/cuda/svd-gpu: GPU checks skipped — ${why}`);

function expectAllPass(results: SvdCheck[]): void {
  console.log(formatChecks(results));
  expect(results.length).toBeGreaterThan(0);
  expect(results.filter((r) => !r.pass).map((r) => `${r.name}: ${r.err}`)).toEqual([]);
}

const seed = Date.now() & 0xffff;

describe.skipIf(!!why)('GPU truncated SVD and spectra', () => {
  it(`truncated SVD matches the known spectra, the CPU and f64 Jacobi (seed ${seed})`, async () => {
    expectAllPass(await svdChecks(seed));
  });
  it('Gram eigenvalues and weight singular values match the CPU and f64 Jacobi', async () => {
    expectAllPass(await spectrumChecks(seed));
  });
  it('NaN / Inf inputs are refused', async () => {
    expectAllPass(await nonFiniteChecks(seed));
  });
  it('analyze on stories260K gives the same metrics on the GPU as on the CPU', async () => {
    expectAllPass(await analyzeChecks(8, 128));
  }, 120_000);
  it('bad arguments throw before any work', async () => {
    const a = new Float32Array(12);
    await expect(truncatedSvd(a, 3, 4, 4, { device: 'cuda' })).rejects.toThrow(UsageError);
    await expect(truncatedSvd(a, 4, 4, 2, { device: 'cuda' })).rejects.toThrow(/needs 16 elements/);
    expect(() => native().cudaTruncatedSvd(a, 3, 4, 2, { powerIters: -1 } as never)).toThrow(RangeError);
  });
});

describe.runIf(!!why)('without a usable GPU', () => {
  it("'auto' runs on the CPU with the CPU's results; 'cuda' is refused with the reason", async () => {
    expect(resolveLinalgDevice('auto')).toBe('cpu');
    expect(() => resolveLinalgDevice('cuda')).toThrow(UnsupportedError);
    expect(() => resolveLinalgDevice('cuda')).toThrow(why);
    expect(() => resolveLinalgDevice('gpu' as never)).toThrow(UsageError);
    const [m, n, k] = [60, 40, 5];
    const a = matrixWithSpectrum(m, n, Array.from({ length: n }, (_, i) => 0.7 ** i), new Rng(seed));
    const auto = await truncatedSvd(a, m, n, k, { seed: 9 });
    const cpu = await svd(a, m, n, k, { seed: 9 });
    expect(auto.device).toBe('cpu');
    expect(Array.from(auto.S)).toEqual(Array.from(cpu.S));
  });
  it('the native GPU functions reject (not crash) and analyze --device cuda is refused', async () => {
    const a = new Float32Array(16).fill(1);
    if (!native().buildInfo().cuda) {
      await expect(native().cudaTruncatedSvd(a, 4, 4, 2)).rejects.toThrow(/built without CUDA/);
      await expect(native().cudaGramEigenvalues(a, 4, 4)).rejects.toThrow(/built without CUDA/);
      await expect(native().cudaSingularValues(a, 4, 4)).rejects.toThrow(/built without CUDA/);
    } else {
      await expect(native().cudaTruncatedSvd(a, 4, 4, 2)).rejects.toThrow(/CUDA/);
    }
    await expect(analyzeModel(resolveModelArg('stories260K'), { samples: 1, seqlen: 16, cacheDir: null, device: 'cuda' })).rejects.toThrow(UnsupportedError);
  });
});
