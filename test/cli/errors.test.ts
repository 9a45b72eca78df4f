/**
 * The exit-code table of docs/cli.md, one real failure per row, and --verbose: without it an
 * error is one line naming the file or option; with it the cause chain follows ("caused by:"
 * and, for causes that are not lieq errors, their stack frames).
 */
import { copyFileSync, mkdirSync, openSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { SafetensorsFile } from '../../lib/io/safetensors.js';
import { dataPath } from '../../lib/util/data-dir.js';
import { lieq } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir();
const stories = dataPath('models/stories260K');

/** stories260K's config with a model.safetensors whose header is not JSON. */
function badHeaderModel(): string {
  const d = join(dir, 'bad-header');
  mkdirSync(d, { recursive: true });
  copyFileSync(join(stories, 'config.json'), join(d, 'config.json'));
  const header = Buffer.from('{"a": not json }');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  writeFileSync(join(d, 'model.safetensors'), Buffer.concat([len, header]));
  return d;
}

const lines = (s: string) => s.trimEnd().split('\n');

describe('exit codes (docs/cli.md)', () => {
  it('0: success', () => {
    expect(lieq(['doctor', '--json']).code).toBe(0);
  });
  it('2: usage errors, including commander parse errors of subcommands, name the option', () => {
    const missing = lieq(['quantize', 'stories260K']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/required option '-o, --out <dir>' not specified/);
    const unknown = lieq(['inspect', 'stories260K', '--bogus']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown option '--bogus'/);
    const group = lieq(['quantize', 'stories260K', '-o', join(dir, 'never'), '--uniform', '4', '--group', '48']);
    expect(group.code).toBe(2);
    expect(group.stderr).toMatch(/--group: expected one of 32, 64, 128, got "48"/);
  });
  it('3: a missing file is named, with the way to make it', () => {
    const r = lieq(['quantize', 'stories260K', '-o', join(dir, 'never'), '--plan', join(dir, 'no-plan.json')]);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(join(dir, 'no-plan.json'));
    expect(r.stderr).toMatch(/plan file not found \(write one with `lieq allocate`/);
  });
  it('4: a file breaking its format is named', () => {
    const d = badHeaderModel();
    const r = lieq(['inspect', d]);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(new RegExp(`${join(d, 'model.safetensors')}: header is not valid JSON`));
  });
  it('5: unsupported contents', () => {
    const d = join(dir, 'gpt2');
    mkdirSync(d);
    writeFileSync(join(d, 'config.json'), JSON.stringify({ architectures: ['GPT2LMHeadModel'] }));
    expect(lieq(['inspect', d]).code).toBe(5);
  });
  it('6: unusable data (a NaN weight) names the file and tensor; no output is left', () => {
    const d = join(dir, 'nan-model');
    mkdirSync(d);
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.model', 'tokenizer.json']) {
      try {
        copyFileSync(join(stories, f), join(d, f));
      } catch {
        /* optional tokenizer file */
      }
    }
    const name = 'model.layers.2.mlp.up_proj.weight';
    const f = SafetensorsFile.open(join(d, 'model.safetensors'));
    const { offset, dtype } = f.info(name);
    f.close();
    expect(dtype).toBe('F32');
    const fd = openSync(join(d, 'model.safetensors'), 'r+');
    writeSync(fd, Buffer.from([0x00, 0x00, 0xc0, 0x7f]), 0, 4, offset + 4 * 17); // a quiet NaN
    closeSync(fd);
    const out = join(dir, 'nan-out');
    const r = lieq(['quantize', d, '-o', out, '--uniform', '4', '--group', '32', '--no-sensitivity']);
    expect(r.code).toBe(6);
    expect(r.stderr).toMatch(new RegExp(`model\\.safetensors: tensor "${name.replace(/\./g, '\\.')}" has 1 NaN/Inf values`));
    expect(lieq(['inspect', out]).code).toBe(3); // nothing written
  });
});

describe('--verbose prints the cause chain', () => {
  it('one line without it; the cause and its stack with it, before or after the command', () => {
    const d = badHeaderModel();
    const plain = lieq(['inspect', d]);
    expect(lines(plain.stderr)).toHaveLength(1);
    expect(plain.stderr).not.toMatch(/caused by/);
    for (const args of [['--verbose', 'inspect', d], ['inspect', d, '--verbose']]) {
      const v = lieq(args);
      expect(v.code).toBe(4);
      const l = lines(v.stderr);
      expect(l[0]).toBe(lines(plain.stderr)[0]);
      expect(l[1]).toMatch(/^caused by: .*not valid JSON/); // the JSON.parse SyntaxError
      expect(l.slice(2).some((s) => /^\s+at .*safetensors/.test(s))).toBe(true);
    }
  });
});
