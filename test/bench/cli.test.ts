/**
 * `lieq bench` through the built binary: the JSON report of a tiny run, one comparison table
 * for two models, the files of --out, and the exit codes of bad options (2) and of
 * --device cuda on a machine without a GPU (5).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { lieq } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

const tiny = ['--prompt', '16', '--gen', '8', '--repeat', '2'];

describe('lieq bench', () => {
  it('--json: f32 vs uniform 4-bit at batch 1 and 2, numbers consistent with each other', () => {
    const r = lieq(['bench', 'stories260K', '--plan', 'f32,uniform:4', '--batch', '1,2', ...tiny, '--json', '--threads', '1']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ format: 'lieq-bench/1', device: 'cpu', threads: 1, settings: { prompt: 16, gen: 8, repeat: 2, batches: [1, 2], isolated: true } });
    expect(j.bandwidth.usedGBs).toBeGreaterThan(0);
    expect(j.results.map((t: { label: string }) => t.label)).toEqual(['stories260K · f32', 'stories260K · uniform 4-bit']);
    const [f32, q4] = j.results;
    expect(q4.weightBytesPerStep).toBeLessThan(f32.weightBytesPerStep / 2);
    for (const t of j.results) {
      expect(t.peakRssBytes).toBeGreaterThan(10e6);
      expect(t.batches.map((b: { batch: number }) => b.batch)).toEqual([1, 2]);
      for (const b of t.batches) {
        expect(b.prefill.tokensPerSecond.n).toBe(2);
        expect(b.prefill.tokensPerSecond.mean).toBeGreaterThan(0);
        expect(b.decode.tokensPerSecond.stddev).toBeGreaterThanOrEqual(0);
        expect(b.decode.weightBytesPerToken).toBe(t.weightBytesPerStep / b.batch);
        // GB/s per repeat = bytes per step × steps / s = bytes per token × tokens/s
        expect(b.decode.effectiveGBs.mean).toBeCloseTo((b.decode.weightBytesPerToken * b.decode.tokensPerSecond.mean) / 1e9, 9);
        expect(b.decode.msPerStep.mean).toBeGreaterThan(0);
      }
    }
  });

  it('two models in one run: one table, and --out writes JSON, markdown, CSV and SVG charts', () => {
    const out = join(tempDir(), 'results');
    const r = lieq(['bench', 'stories260K', 'tinystories-656K', ...tiny, '--no-isolate', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/host read bandwidth [\d.]+ GB\/s/);
    expect(r.stdout).toMatch(/stories260K +│ f32/);
    expect(r.stdout).toMatch(/tinystories-656K +│ f32/);
    for (const f of ['bench.json', 'bench.md', 'bench.csv', 'bench-decode.svg', 'bench-prefill.svg']) expect(existsSync(join(out, f)), f).toBe(true);
    const csv = readFileSync(join(out, 'bench.csv'), 'utf8').trim().split('\n');
    expect(csv[0]).toMatch(/^model,plan,batch,weightBytes,ppTokensPerSecond/);
    expect(csv.slice(1).map((l) => l.split(',').slice(0, 3).join(','))).toEqual(['stories260K,f32,1', 'tinystories-656K,f32,1']);
    expect(readFileSync(join(out, 'bench.md'), 'utf8')).toMatch(/\| stories260K \| f32 \| 1 \|/);
    expect(readFileSync(join(out, 'bench-decode.svg'), 'utf8')).toMatch(/^<svg/);
    expect(JSON.parse(readFileSync(join(out, 'bench.json'), 'utf8')).results).toHaveLength(2);
  });

  it('bad options exit 2 with a message naming the option; --device cuda without a GPU exits 5', () => {
    for (const [args, msg] of [
      [['stories260K', '--batch', '0'], /--batch: must be ≥ 1/],
      [['stories260K', '--prompt', '0', '--gen', '0'], /nothing to measure/],
      [['stories260K', '--prompt', '500', '--gen', '100'], /exceeds the context .*512/],
      [['stories260K', '--plan', 'uniform:5'], /--plan uniform:5: uniform bits must be 2, 3, 4 or 8/],
      [['stories260K', '--json', '--csv'], /exclude each other/],
      [['--shape', 'llama-9b'], /--shape: unknown shape "llama-9b"/],
      [['stories260K', '--layers', '2'], /--layers applies to --shape/],
      [[], /nothing to benchmark/],
    ] as const) {
      const r = lieq(['bench', ...tiny, ...args]);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(msg);
    }
    const cuda = lieq(['bench', 'stories260K', '--device', 'cuda', ...tiny]);
    expect(cuda.code, cuda.stderr).toBe(5);
    expect(cuda.stderr).toMatch(/--device cuda: (this build of lieq has no CUDA|no CUDA device: .+)/);
  });
});
