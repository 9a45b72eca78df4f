import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { lieq } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { dataPath } from '../../lib/util/data-dir.js';

describe('lieq inspect', () => {
  it('prints the shipped default model', () => {
    const r = lieq(['inspect', 'stories260K']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/architecture LlamaForCausalLM/);
    expect(r.stdout).toMatch(/layers\s+5/);
    expect(r.stdout).toMatch(/260,032/);
    expect(r.stdout).toMatch(/model\.layers\.4\.mlp\.down_proj\.weight\s+│ \[64, 172\]/);
  });
  it('--json is machine-readable and complete', () => {
    const r = lieq(['inspect', dataPath('models/tinystories-656K'), '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.layers).toBe(2);
    expect(j.parameters).toBe(656000);
    expect(j.tensors.find((t: { name: string }) => t.name === 'model.embed_tokens.weight').aliasOf).toBe('lm_head.weight');
  });
  it('a missing directory exits non-zero naming the file, with nothing on stdout', () => {
    const r = lieq(['inspect', '/definitely/not/here']);
    expect(r.code).toBe(3);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/\/definitely\/not\/here\/config.json: file not found/);
  });
  it('an unsupported architecture exits 5 and names it', () => {
    const d = join(tempDir(), 'gpt2');
    mkdirSync(d);
    writeFileSync(join(d, 'config.json'), JSON.stringify({ architectures: ['GPT2LMHeadModel'] }));
    const r = lieq(['inspect', d]);
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/architecture "GPT2LMHeadModel" is not supported/);
  });
  it('bad option values are usage errors (exit 2)', () => {
    const r = lieq(['--threads', 'zero', 'inspect', 'stories260K']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--threads/);
  });
});

describe('lieq doctor', () => {
  it('reports addon, SIMD, threads and CUDA (or why there is none)', () => {
    const r = lieq(['doctor', '--json'], { LIEQ_THREADS: '1' });
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.addon.path).toMatch(/\.node$/);
    expect(j.cpu.threads).toBe(1);
    expect(typeof j.cpu.avx2).toBe('boolean');
    if (j.cuda.devices.length === 0) expect(j.cuda.reason.length).toBeGreaterThan(0);
    const text = lieq(['doctor']);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^addon\s+\S+\.node/m);
    expect(text.stdout).toMatch(/^cuda\s+/m);
  });
});
