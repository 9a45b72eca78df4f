/**
 * `lieq eval ppl` and `lieq generate` through the built binary: JSON output equal to the
 * library's numbers, the reference greedy text, seeded sampling, and exit codes of the errors.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { lieq } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { dataPath } from '../../lib/util/data-dir.js';

const reference = JSON.parse(readFileSync(dataPath('reference.json'), 'utf8'));

describe('lieq eval ppl', () => {
  it('--json: the README protocol on the first 8 windows matches the float64 reference NLL', () => {
    const r = lieq(['eval', 'ppl', '--model', 'stories260K', '--dataset', 'tinystories', '--ctx', '512', '--limit', '8', '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    const want = reference.stories260K.tinystories_head_first8_windows_float64;
    expect(j).toMatchObject({ dataset: 'tinystories', textTokens: 393013, ctx: 512, stride: 512, mode: 'non-overlapping', windows: 8, scoredTokens: want.scored_tokens });
    expect(Math.abs(j.meanNll - want.mean_nll_nats)).toBeLessThan(2e-6);
    expect(j.perplexity).toBeCloseTo(want.ppl, 3);
    expect(j.peakRssBytes).toBeGreaterThan(1e6);
    expect(j.tokensPerSecond).toBeGreaterThan(0);
  });

  it('human output, sliding windows, in-memory packing and a text file', () => {
    const dir = tempDir();
    const f = join(dir, 'story.txt');
    writeFileSync(f, readFileSync(dataPath('text/tinystories/tinystories_valid_head.txt'), 'utf8').slice(0, 3000));
    const r = lieq(['eval', 'ppl', '--model', 'tinystories-656K', '--dataset', f, '--ctx', '64', '--stride', '32', '--pack-bits', '4', '--pack-group', '32']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/packing {5}4-bit, group 32, round-to-nearest: 14 linears/);
    expect(r.stdout).toMatch(/windows .* × 64 tokens, sliding, stride 32/);
    expect(r.stdout).toMatch(/perplexity {2}\d+\.\d{4}/);
    expect(r.stdout).toMatch(/peak RSS/);
  });

  it('errors: bad options exit 2, missing files 3, a --quantized dir that is not quantized 4', () => {
    const base = ['eval', 'ppl', '--model', 'stories260K', '--dataset', 'tinystories'];
    for (const [args, msg] of [
      [['--ctx', '1'], /--ctx: expected an integer >= 2/],
      [['--ctx', '64', '--stride', '65'], /--stride: must be <= --ctx \(64\)/],
      [['--limit', 'x'], /--limit/],
      [['--pack-bits', '5'], /--pack-bits: expected 2, 3, 4 or 8/],
      [['--pack-group', '48', '--pack-bits', '4'], /--pack-group/],
    ] as const) {
      const r = lieq([...base, ...args]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(msg);
    }
    const missing = lieq(['eval', 'ppl', '--model', 'stories260K', '--dataset', '/nonexistent/text.txt']);
    expect(missing.code).toBe(3);
    const dir = tempDir();
    const q = join(dir, 'packed');
    mkdirSync(q);
    const r = lieq([...base, '--quantized', q]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/packed\/config.json: file not found/);
    expect(lieq([...base, '--quantized', join(dir, 'none')]).code).toBe(3);
    const notQuantized = lieq([...base, '--quantized', dataPath('models/stories260K')]);
    expect(notQuantized.code).toBe(4);
    expect(notQuantized.stderr).toMatch(/not a lieq quantized model/);
  });
});

describe('lieq eval ppl --quantized', () => {
  it('evaluates a directory written by lieq quantize', () => {
    const out = join(tempDir(), 'q4');
    const q = lieq(['quantize', 'stories260K', '--uniform', '4', '--out', out, '--json']);
    expect(q.code, q.stderr).toBe(0);
    const r = lieq(['eval', 'ppl', '--model', 'stories260K', '--quantized', out, '--dataset', 'tinystories', '--ctx', '512', '--limit', '8', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.perplexity).toBeGreaterThan(3.7683);
    expect(j.perplexity).toBeLessThan(3.7683 * 1.25);
  });
});

describe('lieq generate', () => {
  it('greedy from BOS prints the reference story (stories260K)', () => {
    const r = lieq(['generate', '--model', 'stories260K', '--max-tokens', '64']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(reference.stories260K.greedy_text + '\n');
    expect(r.stderr).toMatch(/64 tokens, stopped by max-tokens/);
  });

  it('--json: prompt continuation, seeded sampling reproducible', () => {
    const args = ['generate', '--model', 'tinystories-656K', '--prompt', 'Once upon a time', '--max-tokens', '20', '--temperature', '0.9', '--top-p', '0.95', '--seed', '5', '--json'];
    const a = JSON.parse(lieq(args).stdout);
    const b = JSON.parse(lieq(args).stdout);
    expect(a.ids).toEqual(b.ids);
    expect(a.text).toBe(b.text);
    expect(a.promptIds[0]).toBe(1);
    expect(a.generatedTokens).toBe(a.ids.length);
    const c = JSON.parse(lieq([...args.slice(0, -2), '6', '--json']).stdout);
    expect(c.ids).not.toEqual(a.ids);
  });

  it('errors exit 2', () => {
    for (const [opt, v] of [['--temperature', '-1'], ['--top-p', '0'], ['--max-tokens', '1.5'], ['--seed', 'x']]) {
      const r = lieq(['generate', '--model', 'stories260K', opt, v]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(new RegExp(opt));
    }
  });
});
