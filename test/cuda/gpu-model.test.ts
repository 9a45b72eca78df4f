/**
 * The GPU path against independent references (test/cuda/gpu-checks.ts says what each check
 * does). Runs where a CUDA device is usable (the device machine: see docs/gpu.md for the
 * command); elsewhere it prints why and skips, and checks that the GPU model refuses to load
 * with that reason instead of crashing.
 */
import { describe, expect, it } from 'vitest';

import { cudaUnavailableReason, GpuModel } from '../../lib/cuda/gpu-model.js';
import { UnsupportedError } from '../../lib/util/errors.js';
import { formatResults, linearChecks, shippedModelChecks, tinyVariantChecks, type CheckResult } from './gpu-checks.js';
import { randomTensors, tinyConfig, tinyModel } from '../runtime/reference-forward.js';

const why = cudaUnavailableReason();
if (why) console.log(`test/cuda: GPU checks skipped — ${why}`);

function expectAllPass(results: CheckResult[]): void {
  console.log(formatResults(results));
  expect(results.length).toBeGreaterThan(0);
  expect(results.filter((r) => !r.pass).map((r) => `${r.name}: ${r.relErr}`)).toEqual([]);
}

describe.skipIf(!!why)('CUDA kernels and GPU model', () => {
  it('packed and dense linears match float64 (all bit widths, groups, 1-16 rows)', () => {
    expectAllPass(linearChecks(Date.now() & 0xffff));
  });
  it('tiny random models (GQA, llama3 rope, q/k-norm, biases, window) match the float64 reference / CPU runtime', async () => {
    expectAllPass(await tinyVariantChecks(Date.now() & 0xffff));
  });
  it('shipped models (fp32 and 4-bit) match the CPU runtime', async () => {
    expectAllPass(await shippedModelChecks(Date.now() & 0xffff));
  });
});

describe.runIf(!!why)('without a usable GPU', () => {
  it('GpuModel.load refuses with the reason', () => {
    const cfg = tinyConfig('llama');
    const model = tinyModel(cfg, randomTensors(cfg, 1));
    expect(() => GpuModel.load(model, { maxSeqs: 1, maxContext: 8 })).toThrow(UnsupportedError);
    expect(() => GpuModel.load(model, { maxSeqs: 1, maxContext: 8 })).toThrow(why);
  });
});
