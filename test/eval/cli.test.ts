/**
 * `lieq eval tasks` and `lieq eval kld` through the built binary, on a few documents: the JSON
 * equals the library's numbers, recovery against a directory written by `lieq quantize`, the
 * markdown/JSON files, and the exit codes of bad options.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { loadTokenizer } from '../../lib/io/tokenizer.js';
import { evaluateZeroShot, loadItems } from '../../lib/eval/zero-shot.js';
import { RuntimeModel } from '../../lib/runtime/model.js';
import { dataPath } from '../../lib/util/data-dir.js';
import { lieq } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

describe('lieq eval tasks', () => {
  const dir = tempDir();
  const packed = join(dir, 'packed');

  it('--json equals the library; --quantized gives recovery; --out/--markdown written', async () => {
    const q = lieq(['quantize', 'stories260K', '--uniform', '4', '--group', '32', '--out', packed, '--json']);
    expect(q.code, q.stderr).toBe(0);
    const out = join(dir, 'r.json');
    const md = join(dir, 'r.md');
    const r = lieq(['eval', 'tasks', '--model', 'stories260K', '--quantized', packed, '--tasks', 'hellaswag,boolq,winogrande', '--limit', '4', '--batch', '3', '--samples', '--json', '--out', out, '--markdown', md]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(JSON.parse(readFileSync(out, 'utf8'))).toEqual(j);
    expect(j.rows.map((x: { task: string; metric: string }) => `${x.task}/${x.metric}`)).toEqual(['hellaswag/acc', 'hellaswag/acc_norm', 'boolq/acc', 'winogrande/acc']);
    expect(j.runs.fp.bos).toBe(true);
    expect([j.batch, j.runs.fp.batch, j.runs.quantized.batch]).toEqual([3, 3, 3]);

    // the same numbers from the library, in-process
    const modelDir = dataPath('models/stories260K');
    const lib = await evaluateZeroShot(RuntimeModel.open(modelDir), await loadTokenizer(modelDir), loadItems(['hellaswag', 'boolq', 'winogrande'], { limit: 4 }), { samples: true, batch: 3 });
    for (let t = 0; t < 3; t++) {
      const a = j.runs.fp.tasks[t].samples as { lls: number[] }[];
      const b = lib.tasks[t].samples!;
      expect(a.length).toBe(4);
      for (let d = 0; d < 4; d++) for (let c = 0; c < b[d].lls.length; c++) expect(a[d].lls[c]).toBeCloseTo(b[d].lls[c], 9);
    }
    expect(j.average.fp.primary).toBeCloseTo(lib.average.primary, 12);
    const qa = j.average.quantized.primary;
    expect(j.average.recovery.primary).toBeCloseTo(qa / j.average.fp.primary, 12);
    // 4-bit changes the log-likelihoods but not by much
    const dq = j.runs.quantized.tasks[0].samples[0].lls[0] - j.runs.fp.tasks[0].samples[0].lls[0];
    expect(dq).not.toBe(0);
    expect(Math.abs(dq)).toBeLessThan(5);
    const text = readFileSync(md, 'utf8');
    expect(text).toMatch(/\| hellaswag \| \*\*acc_norm\*\* \| 4 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.—]+ \|/);
    expect(text).toMatch(/\| \*\*average\*\* \| \*\*primary\*\* \|/);
    expect(text).toMatch(/[\d,]+ requests in [\d.]+ s \([\d,]+ requests\/s, batch 3\)/);
  });

  it('kld: the README protocol (FP NLL = the float64 reference), the quantized model differs a little; human output', () => {
    const r = lieq(['eval', 'kld', '--model', 'stories260K', '--quantized', packed, '--dataset', 'tinystories', '--ctx', '512', '--limit', '8', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    const want = JSON.parse(readFileSync(dataPath('reference.json'), 'utf8')).stories260K.tinystories_head_first8_windows_float64;
    expect(j).toMatchObject({ windows: 8, tokens: want.scored_tokens, ctx: 512, dataset: 'tinystories', textTokens: 393013 });
    expect(Math.abs(j.meanNllBase - want.mean_nll_nats)).toBeLessThan(2e-6);
    expect(j.meanNllQuantized).toBeGreaterThan(j.meanNllBase);
    expect(j.meanKld).toBeGreaterThan(0);
    expect(j.p99Kld).toBeGreaterThan(j.meanKld);
    const h = lieq(['eval', 'kld', '--model', 'stories260K', '--quantized', packed, '--dataset', 'tinystories', '--ctx', '64', '--limit', '1']);
    expect(h.code, h.stderr).toBe(0);
    expect(h.stdout).toMatch(/KL\(FP‖Q\) {5}mean \d\.\d{4}e[-+]\d+/);
    expect(h.stdout).toMatch(/top-1 agree {2}\d+\.\d\d %/);
  });

  it('human output is the markdown table', () => {
    const r = lieq(['eval', 'tasks', '--model', 'tinystories-656K', '--tasks', 'openbookqa', '--limit', '3']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/\| openbookqa \| acc \| 3 \| [\d.]+ \| [\d.]+ \|/);
    expect(r.stdout).not.toMatch(/recovery/);
  });

  it('errors: bad options exit 2 with no output file, missing data 3', () => {
    const out = join(dir, 'never.json');
    for (const [args, msg] of [
      [['--tasks', 'piqa,mmlu'], /unknown task "mmlu"/],
      [['--bos', 'maybe'], /--bos: expected one of auto, always, never/],
      [['--limit', '0'], /--limit: expected an integer >= 1, got "0"/],
      [['--max-length', '1'], /--max-length: expected an integer >= 2/],
      [['--batch', '0'], /--batch: expected an integer >= 1, got "0"/],
      [['--batch', '2.5'], /--batch: expected an integer >= 1, got "2.5"/],
    ] as const) {
      const r = lieq(['eval', 'tasks', '--model', 'stories260K', '--out', out, ...args]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(msg);
    }
    expect(existsSync(out)).toBe(false);
    const r = lieq(['eval', 'tasks', '--model', 'stories260K', '--tasks', 'piqa', '--limit', '1', '--out', out], { LIEQ_DATA_DIR: join(dir, 'nothing') });
    expect(r.code).toBe(3);
    expect(existsSync(out)).toBe(false);
  });
});
