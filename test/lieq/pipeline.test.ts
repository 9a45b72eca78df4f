/**
 * The analyze → allocate → quantize → load → perplexity path on the shipped real models,
 * plus the properties the spec asks for: PD of an identity layer is 0, the plan's budget is
 * respected, output directories appear only when complete.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { expectedTensors, normaliseConfig } from '../../lib/io/config.js';
import { randomTensor } from '../../lib/io/random-model.js';
import { writeSafetensors, asBytes } from '../../lib/io/safetensors.js';
import { loadTokenizer } from '../../lib/io/tokenizer.js';
import { allocateGreedy } from '../../lib/lieq/allocate.js';
import { analyzeModel } from '../../lib/lieq/analyze.js';
import { combineScores } from '../../lib/lieq/analysis.js';
import { accountPlan, makePlan } from '../../lib/lieq/plan.js';
import { openRuntimeModel } from '../../lib/quant/packed-source.js';
import { quantizeModel } from '../../lib/quant/quantize-model.js';
import { RuntimeModel } from '../../lib/runtime/model.js';
import { loadEvalText, perplexity } from '../../lib/runtime/perplexity.js';
import { dataPath } from '../../lib/util/data-dir.js';
import { writeFileSync, mkdirSync } from 'node:fs';
import { lieq } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir();
const stories = dataPath('models/stories260K');

describe('analyze on stories260K', () => {
  it('produces finite metrics for every layer, caches, and resumes from the cache', async () => {
    const cacheDir = join(dir, 'cache');
    const opts = { calib: 'tinystories', samples: 4, seqlen: 128, seed: 1, pd: true, cacheDir };
    const a = await analyzeModel(stories, opts);
    expect(a.layers).toHaveLength(5);
    for (const l of a.layers) {
      expect(Number.isFinite(l.deltaRC)).toBe(true);
      expect(Number.isFinite(l.teg)).toBe(true);
      expect(Number.isFinite(l.pd!)).toBe(true);
      expect(l.rc.q).toBeGreaterThan(0);
      expect(l.rc.q).toBeLessThanOrEqual(1);
    }
    // Skipping any trained layer of a real model hurts: PD > 0 for every layer.
    expect(a.layers.every((l) => l.pd! > 0)).toBe(true);
    expect(readdirSync(cacheDir).filter((f) => f.startsWith('analysis-'))).toHaveLength(1);
    let calls = 0;
    const again = await analyzeModel(stories, { ...opts, onProgress: () => calls++ });
    expect(again.layers).toEqual(a.layers);
    expect(calls).toBe(0);
  });
});

describe('PD of an identity layer is exactly 0', () => {
  it('a model whose layer 1 writes nothing to the residual stream', async () => {
    const raw = {
      architectures: ['LlamaForCausalLM'], hidden_size: 64, intermediate_size: 96, num_hidden_layers: 3, num_attention_heads: 4,
      num_key_value_heads: 2, vocab_size: 512, max_position_embeddings: 256, initializer_range: 0.1, tie_word_embeddings: true,
    };
    const cfg = normaliseConfig(raw);
    const m = join(dir, 'identity-layer');
    mkdirSync(m);
    writeFileSync(join(m, 'config.json'), JSON.stringify(raw));
    // layer 1's o_proj and down_proj are zero: its attention and MLP add nothing.
    writeSafetensors(join(m, 'model.safetensors'), expectedTensors(cfg).map((t) => {
      const zero = t.name === 'model.layers.1.self_attn.o_proj.weight' || t.name === 'model.layers.1.mlp.down_proj.weight';
      const v = zero ? new Float32Array(t.shape.reduce((a, b) => a * b, 1)) : randomTensor(cfg, t.name, t.shape, 5);
      return { name: t.name, dtype: 'F32' as const, shape: t.shape, data: asBytes(v) };
    }));
    for (const f of ['tokenizer.json', 'tokenizer.model', 'tokenizer_config.json']) writeFileSync(join(m, f), readFileSync(join(stories, f)));
    const a = await analyzeModel(m, { calib: 'tinystories', samples: 2, seqlen: 64, pd: true, cacheDir: null });
    expect(a.layers[1].pd).toBe(0);
    expect(Math.abs(a.layers[0].pd!)).toBeGreaterThan(1e-6);
  });
});

describe('quantize -> load -> perplexity round trip', () => {
  it('stories260K: uniform 8-bit within 1% of full precision; a LieQ plan keeps its budget; mixed bits load', async () => {
    const tok = await loadTokenizer(stories);
    const ids = tok.encode(loadEvalText('tinystories').text, { addBos: true });
    const fp = RuntimeModel.open(stories);
    const base = (await perplexity(fp, ids, { ctx: 512, limit: 24 })).perplexity;
    fp.close();
    const cfg = fp.config;

    const out8 = join(dir, 'q8');
    await quantizeModel(stories, { plan: makePlan(cfg, new Array(5).fill(8), { method: 'uniform' }), out: out8 });
    const q8 = openRuntimeModel(out8);
    const p8 = (await perplexity(q8, ids, { ctx: 512, limit: 24 })).perplexity;
    q8.close();
    expect(Math.abs(p8 / base - 1)).toBeLessThan(0.01);

    const a = await analyzeModel(stories, { calib: 'tinystories', samples: 4, seqlen: 128, cacheDir: null });
    const budget = 2 + 2 / 5;
    const alloc = allocateGreedy({ scores: combineScores(a, 'v2'), weights: a.layerWeights, allowed: [2, 3, 4], budget });
    const plan = makePlan(cfg, alloc.bits, { method: 'greedy', budget, score: 'v2' });
    expect(accountPlan(plan, cfg).nominalBits).toBeLessThanOrEqual(budget + 1e-12);
    expect(alloc.bits.filter((b) => b === 4)).toHaveLength(1);
    const outMixed = join(dir, 'mixed');
    await quantizeModel(stories, { plan, out: outMixed });
    const qm = openRuntimeModel(outMixed);
    const pm = (await perplexity(qm, ids, { ctx: 512, limit: 24 })).perplexity;
    expect(qm.layer(alloc.bits.indexOf(4)).linears.q_proj.kind).toBe('packed');
    qm.close();
    expect(pm).toBeGreaterThan(base);
    expect(Number.isFinite(pm)).toBe(true);
    const qc = JSON.parse(readFileSync(join(outMixed, 'config.json'), 'utf8')).quantization_config;
    expect(qc.layers.map((l: { bits: number }) => l.bits)).toEqual(alloc.bits);
  });
  it('a failure during quantize leaves no output, no temp directory and no lock; only the resumable checkpoints', async () => {
    const cfg = RuntimeModel.open(stories);
    const plan = makePlan(cfg.config, new Array(5).fill(4), { method: 'uniform' });
    cfg.close();
    const out = join(dir, 'failed-out');
    await expect(quantizeModel(stories, { plan, out, extraFiles: () => { throw new Error('disk full (simulated)'); } })).rejects.toThrow(/disk full/);
    expect(existsSync(out)).toBe(false);
    // The layers finished before the failure stay checkpointed for a rerun (test/quant/resume.test.ts).
    expect(readdirSync(dir).filter((f) => f.includes('failed-out'))).toEqual(['failed-out.lieq-partial']);
  });
});

describe('kill -9 during quantize', () => {
  it('never leaves a visible partial output; a rerun cleans the dead run\'s temp dir and completes', async () => {
    const { spawn } = await import('node:child_process');
    const { LIEQ_BIN } = await import('../helpers/cli.js');
    const out = join(dir, 'killed');
    const args = [LIEQ_BIN, 'quantize', 'tinystories-656K', '--uniform', '3', '--out', out, '--json'];
    for (const delay of [150, 300, 450, 600, 750]) {
      const child = spawn(process.execPath, args, { stdio: 'ignore' });
      // Listen before waiting: a run that finishes before the kill must not leave us waiting.
      const exited = new Promise((r) => child.on('exit', r));
      await new Promise((r) => setTimeout(r, delay));
      child.kill('SIGKILL');
      await exited;
      if (existsSync(out)) {
        // Finished before the kill: then it is complete and loadable.
        const m = openRuntimeModel(out);
        m.close();
        break;
      }
    }
    const r = lieq(['quantize', 'tinystories-656K', '--uniform', '3', '--out', out, '--force', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(dir).filter((f) => f.startsWith('.killed.tmp-') || f === 'killed.lock' || f === 'killed.lieq-partial')).toEqual([]);
    const m = openRuntimeModel(out);
    expect(m.layer(0).linears.q_proj.kind).toBe('packed');
    m.close();
  });
});

describe('lieq quantize (the README main job)', () => {
  it('prints the plan, the bit accounting and perplexity before/after; refuses to clobber', () => {
    const out = join(dir, 'cli-out');
    const args = ['quantize', 'stories260K', '--bits', '2.4', '--calib', 'tinystories', '--samples', '4', '--seqlen', '128', '--eval', 'tinystories', '--eval-limit', '8', '--out', out];
    const r = lieq(args, { LIEQ_CACHE_DIR: join(dir, 'cli-cache') });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/nominal 2\.4000/);
    expect(r.stdout).toMatch(/perplexity \(tinystories, 8×512\): full precision \d+\.\d+ -> quantized \d+\.\d+/);
    expect(r.stdout).toMatch(/Spearman/);
    for (const f of ['config.json', 'model.safetensors', 'plan.json', 'report.json', 'report.md', 'charts/bits.svg', 'charts/delta-rc.svg'])
      expect(existsSync(join(out, f)), f).toBe(true);
    expect(readFileSync(join(out, 'charts/bits.svg'), 'utf8')).toMatch(/^<svg/);
    const again = lieq(args, { LIEQ_CACHE_DIR: join(dir, 'cli-cache') });
    expect(again.code).toBe(3);
    expect(again.stderr).toMatch(/already exists/);
  });
});

describe('lieq analyze -> allocate -> quantize --plan (CLI)', () => {
  it('the three commands chain through their files; an unreachable budget exits 2 with the feasible range', () => {
    const env = { LIEQ_CACHE_DIR: join(dir, 'chain-cache') };
    const analysis = join(dir, 'chain-analysis.json');
    const a = lieq(['analyze', 'stories260K', '--calib', 'tinystories', '--samples', '2', '--seqlen', '64', '-o', analysis, '--json'], env);
    expect(a.code, a.stderr).toBe(0);
    expect(JSON.parse(a.stdout).layers).toHaveLength(5);
    const plan = join(dir, 'chain-plan.json');
    // The paper's score: exact allocation of the v2 ranking promotes two layers to 4 bits.
    const v2 = lieq(['allocate', analysis, '--bits', '2.8', '--score', 'v2', '--method', 'exact', '--json']);
    expect(v2.code, v2.stderr).toBe(0);
    const jv2 = JSON.parse(v2.stdout);
    expect(jv2.plan.score).toBe('v2');
    expect(jv2.plan.layers.filter((l: { bits: number }) => l.bits === 4)).toHaveLength(2);
    // The default (analyze measured costs, allocate auto): the DP over measured costs + refinement.
    const p = lieq(['allocate', analysis, '--bits', '2.8', '-o', plan, '--json']);
    expect(p.code, p.stderr).toBe(0);
    const j = JSON.parse(p.stdout);
    expect(j.plan.score).toBe('measured');
    expect(j.plan.method).not.toBe('greedy');
    expect(j.refinement).toBeDefined();
    expect(j.accounting.nominalBits).toBeLessThanOrEqual(2.8 + 1e-12);
    expect(j.refinement.cost).toBeLessThanOrEqual(j.refinement.startCost + 1e-12);
    const bad = lieq(['allocate', analysis, '--bits', '4.5']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/feasible nominal range is \[2, 4\]/);
    const out = join(dir, 'chain-out');
    const q = lieq(['quantize', 'stories260K', '--plan', plan, '--out', out, '--json']);
    expect(q.code, q.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(out, 'plan.json'), 'utf8'))).toEqual(j.plan);
  });
});
