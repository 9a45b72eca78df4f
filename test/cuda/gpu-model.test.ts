/**
 * The GPU path against independent references (test/cuda/gpu-checks.ts says what each check
 * does). Runs where a CUDA device is usable (the device machine: see docs/gpu.md for the
 * command); elsewhere it prints why and skips, and checks that the GPU model refuses to load
 * with that reason instead of crashing.
 */
import { describe, expect, it } from 'vitest';

import { cudaUnavailableReason, GpuModel, gpuLmHead, Q4_HEAD_GROUP } from '../../lib/cuda/gpu-model.js';
import { dequantize } from '../../lib/kernels/quant.js';
import { RuntimeModel } from '../../lib/runtime/model.js';
import { UnsupportedError } from '../../lib/util/errors.js';
import { copiedLayerChecks, formatResults, linearChecks, shippedModelChecks, tinyVariantChecks, type CheckResult } from './gpu-checks.js';
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
  it('shipped models (fp32, 4-bit, 4-bit + q4 LM head) match the CPU runtime', async () => {
    expectAllPass(await shippedModelChecks(Date.now() & 0xffff));
  });
  it('layers copied on the device equal uploaded layers (bitwise) and match the CPU runtime', async () => {
    expectAllPass(await copiedLayerChecks(Date.now() & 0xffff));
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

describe('the LM head GpuModel.load uploads (no GPU needed)', () => {
  it("'q4' packs a dense head to 4 bits (RTN, g128, asymmetric) within half a quantization step; 'fp16' keeps it", () => {
    const cfg = tinyConfig('llama', { hidden_size: 256, num_attention_heads: 4, num_key_value_heads: 2 });
    const model = tinyModel(cfg, randomTensors(cfg, 5));
    expect(gpuLmHead(model)).toBe(model.lmHead);
    expect(gpuLmHead(model, 'fp16')).toBe(model.lmHead);
    const q = gpuLmHead(model, 'q4');
    if (q.kind !== 'packed' || model.lmHead.kind !== 'dense') throw new Error('expected a packed head from a dense one');
    expect([q.packed.bits, q.packed.groupSize, q.packed.symmetric]).toEqual([4, Q4_HEAD_GROUP, false]);
    expect([q.outFeatures, q.inFeatures]).toEqual([cfg.vocabSize, 256]);
    // Min-max RTN: every weight is within half a step (range / 15 / 2) of its group's grid.
    const w = model.lmHead.weight;
    const d = dequantize(q.packed);
    let worst = 0; // largest |dequantized - original| in units of the group's half step
    for (let r = 0; r < cfg.vocabSize; r++)
      for (let g = 0; g < 256 / Q4_HEAD_GROUP; g++) {
        const at = r * 256 + g * Q4_HEAD_GROUP;
        const row = w.subarray(at, at + Q4_HEAD_GROUP);
        let lo = Infinity, hi = -Infinity;
        for (const v of row) (lo = Math.min(lo, v)), (hi = Math.max(hi, v));
        const halfStep = (hi - lo) / 15 / 2;
        for (let k = 0; k < Q4_HEAD_GROUP; k++) worst = Math.max(worst, Math.abs(d[at + k] - row[k]) / halfStep);
      }
    expect(worst).toBeGreaterThan(0.5); // a real rounding happened
    expect(worst).toBeLessThanOrEqual(1.05); // fp16 scales: a hair over half a step
    // A head that is already packed (a quantized directory) is uploaded as it is.
    const withPacked = RuntimeModel.fromSource({ ...model.source, lmHead: () => q });
    expect(gpuLmHead(withPacked, 'q4')).toBe(q);
    expect(gpuLmHead(withPacked, 'fp16')).toBe(q);
    expect(() => gpuLmHead(model, 'q8' as never)).toThrow(/lmHead/);
  });
});

