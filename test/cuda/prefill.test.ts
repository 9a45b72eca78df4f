/**
 * The tensor-core prefill (test/cuda/prefill-checks.ts says what each check does). Runs where a
 * CUDA device is usable; elsewhere (CI) it prints why and skips, and checks that the prefill
 * entry points refuse with that reason instead of crashing.
 */
import { describe, expect, it } from 'vitest';

import { cudaUnavailableReason } from '../../lib/cuda/gpu-model.js';
import { native } from '../../lib/native.js';
import { formatResults, type CheckResult } from './gpu-checks.js';
import { prefillGemmChecks, prefillModelChecks } from './prefill-checks.js';

const why = cudaUnavailableReason();
if (why) console.log(`test/cuda/prefill: GPU checks skipped — ${why}`);

function expectAllPass(results: CheckResult[]): void {
  console.log(formatResults(results));
  expect(results.length).toBeGreaterThan(0);
  expect(results.filter((r) => !r.pass).map((r) => `${r.name}: ${r.relErr}`)).toEqual([]);
}

describe.skipIf(!!why)('tensor-core prefill', () => {
  it('GEMM over packed and dense weights matches float64 (all widths, groups, tiles, odd shapes)', () => {
    expectAllPass(prefillGemmChecks(Date.now() & 0xffff));
  });
  it('GpuModel.prefill matches the 16-row step path and the CPU / float64 reference, and decode continues', async () => {
    expectAllPass(await prefillModelChecks(Date.now() & 0xffff));
  }, 600_000);
});

describe.runIf(!!why)('prefill without a usable GPU', () => {
  it('the prefill GEMM entry point refuses with an error instead of crashing', () => {
    const linear = { kind: 'dense', outFeatures: 2, inFeatures: 8, weight: new Float32Array(16), bias: null };
    expect(() => native().cudaPrefillLinearApply(linear, new Float32Array(8 * 20), 20, 0)).toThrow(/CUDA|cuda|driver|device/);
  });
});
