// "% BW" of lieq bench: the ceiling is the memory the weights stream from (host RAM on CPU, the
// GPU's DRAM with --device cuda). Synthetic reports, so the CUDA case is checked without a GPU.
import { describe, expect, it } from 'vitest';

import { benchRows, settingsLine } from '../../lib/bench/report.js';
import type { BenchReport, TargetResult } from '../../lib/bench/run.js';
import { summarize } from '../../lib/bench/stats.js';

function report(device: 'cpu' | 'cuda', effectiveGBs: number, deviceGBs?: number): BenchReport {
  const target = {
    label: 'm · p',
    model: 'm',
    plan: 'p',
    weightBytes: 1e9,
    peakRssBytes: 1,
    deviceName: device === 'cuda' ? 'NVIDIA H100' : 'cpu',
    batches: [
      {
        batch: 1,
        prompt: 8,
        gen: 8,
        repeats: 2,
        prefill: null,
        decode: { tokensPerSecond: summarize([10, 12]), msPerStep: summarize([100, 80]), weightBytesPerToken: 1e8, effectiveGBs: summarize([effectiveGBs, effectiveGBs]) },
        memory: { hostRssBytes: 1 },
      },
    ],
  } as unknown as TargetResult;
  return {
    format: 'lieq-bench/1',
    date: '2026-11-23T00:00:00Z',
    machine: { cpu: 'test cpu', cores: 2, memoryBytes: 1, node: 'v20', addon: 'test' },
    device,
    threads: 2,
    settings: { batches: [1], prompt: 8, gen: 8, repeat: 2, seed: 0, isolated: false, warmup: 'x' },
    bandwidth: { startGBs: 20, endGBs: 25, usedGBs: 25 },
    ...(deviceGBs !== undefined ? { deviceBandwidth: { startGBs: deviceGBs - 100, endGBs: deviceGBs, usedGBs: deviceGBs } } : {}),
    results: [target],
  };
}

describe('bench report: % of the measured read bandwidth', () => {
  it('CPU: effective GB/s over the host read bandwidth', () => {
    expect(benchRows(report('cpu', 5))[0].bandwidthPercent).toBeCloseTo(20, 10);
  });

  it('CUDA: over the GPU read bandwidth measured in the run, not the host one', () => {
    const r = report('cuda', 1500, 3000);
    expect(benchRows(r)[0].bandwidthPercent).toBeCloseTo(50, 10);
    expect(settingsLine(r)).toMatch(/GPU read bandwidth 3000 GB\/s \(start 2900, end 3000\)/);
  });

  it('CUDA without a device measurement: no percentage rather than a wrong one', () => {
    expect(benchRows(report('cuda', 1500))[0].bandwidthPercent).toBeNull();
  });
});
