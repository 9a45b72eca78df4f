// GPTQ on the shipped stories260K: layer-output error below RTN's on every real linear at
// 2/3/4 bits, and `lieq quantize --backbone gptq` end to end (loads in `lieq eval ppl`, beats
// RTN perplexity at 3 and 4 bits), plus the CLI's option errors.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { LINEAR_NAMES, loadConfig, type LinearName } from '../../lib/io/config.js';
import { Checkpoint } from '../../lib/io/checkpoint.js';
import { loadTokenizer } from '../../lib/io/tokenizer.js';
import { dequantize, type QuantMethodName } from '../../lib/kernels/quant.js';
import { makePlan } from '../../lib/lieq/plan.js';
import { calibrationInputs, propagateLayer, quantizeLayerGptq } from '../../lib/quant/gptq-calibrate.js';
import { quantizeModel } from '../../lib/quant/quantize-model.js';
import { openRuntimeModel } from '../../lib/quant/packed-source.js';
import { runLayer } from '../../lib/runtime/forward.js';
import { packDense } from '../../lib/runtime/linear.js';
import { RuntimeModel } from '../../lib/runtime/model.js';
import { loadEvalText, perplexity } from '../../lib/runtime/perplexity.js';
import { dataPath } from '../../lib/util/data-dir.js';
import { lieq } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

const stories = dataPath('models/stories260K');
const dir = tempDir();

/** The last 60% of the TinyStories text: calibration that never overlaps the evaluation windows (the first ones). */
function heldOutCalibration(): string {
  const text = loadEvalText('tinystories').text;
  const file = join(dir, 'calib-tail.txt');
  if (!existsSync(file)) writeFileSync(file, text.slice(Math.floor(text.length * 0.4)));
  return file;
}

/** G = XᵀX in float64 for X [T, n]. */
function gram(X: Float32Array, T: number, n: number): Float64Array {
  const G = new Float64Array(n * n);
  for (let t = 0; t < T; t++)
    for (let i = 0; i < n; i++) {
      const xi = X[t * n + i];
      for (let j = 0; j < n; j++) G[i * n + j] += xi * X[t * n + j];
    }
  return G;
}

/** ‖X Wᵀ − X Ŵᵀ‖²_F = Σ_o Δw_oᵀ G Δw_o, W [out, in], Ŵ possibly zero-padded to paddedIn columns. */
function outputError(G: Float64Array, W: Float32Array, What: Float32Array, out: number, inF: number, paddedIn: number): number {
  let e = 0;
  const d = new Float64Array(inF);
  for (let o = 0; o < out; o++) {
    for (let k = 0; k < inF; k++) d[k] = W[o * inF + k] - What[o * paddedIn + k];
    for (let i = 0; i < inF; i++) {
      let s = 0;
      for (let j = 0; j < inF; j++) s += G[i * inF + j] * d[j];
      e += d[i] * s;
    }
  }
  return e;
}

describe('GPTQ layer-output error on stories260K', () => {
  it('is below RTN (same grid) on every linear of every layer at 2, 3 and 4 bits', async () => {
    const model = RuntimeModel.open(stories);
    const ck = Checkpoint.open(stories);
    const calib = await calibrationInputs(stories, model.config, { data: heldOutCalibration(), samples: 8, seqlen: 256, seed: 3 }, (ids) => ck.readRowsF32('model.embed_tokens.weight', ids));
    ck.close();
    const hidden = calib.hidden;
    const T = calib.tokens;
    for (let l = 0; l < model.numLayers; l++) {
      const layer = model.layer(l);
      // The linears' inputs from the full-precision layer (what trueSequential: false calibrates on).
      const G = new Map<LinearName, Float64Array>();
      const parts = new Map<LinearName, Float32Array[]>();
      for (const x of hidden)
        runLayer(model, l, x, { hooks: { linearInput: (_l, name, a) => { if (!parts.has(name)) parts.set(name, []); parts.get(name)!.push(a.slice()); } } });
      for (const [name, ps] of parts) {
        const all = new Float32Array(ps.reduce((s, p) => s + p.length, 0));
        let o = 0;
        for (const p of ps) all.set(p, (o += p.length) - p.length);
        G.set(name, gram(all, T, all.length / T));
      }
      for (const bits of [2, 3, 4] as const)
        for (const method of ['mse', 'minmax'] as QuantMethodName[]) {
          const g = await quantizeLayerGptq(model, layer, hidden, { bits, groupSize: 128, method, trueSequential: false });
          for (const name of LINEAR_NAMES) {
            const lin = layer.linears[name];
            const q = g.linears[name];
            if (lin.kind !== 'dense' || q.kind !== 'packed') throw new Error('unexpected linear kinds');
            const rtn = packDense(lin, { bits, groupSize: 128, method });
            const eG = outputError(G.get(name)!, lin.weight, dequantize(q.packed), lin.outFeatures, lin.inFeatures, q.packed.inFeatures);
            const eR = outputError(G.get(name)!, lin.weight, dequantize(rtn.packed), lin.outFeatures, lin.inFeatures, rtn.packed.inFeatures);
            expect(eG, `layer ${l} ${name} ${bits}-bit ${method}: GPTQ ${eG} vs RTN ${eR}`).toBeLessThan(eR);
          }
        }
      propagateLayer(model, layer, hidden);
    }
    model.close();
  });
});

describe('lieq quantize --backbone gptq', () => {
  it('writes a directory `lieq eval ppl --quantized` loads, with lower perplexity than RTN at 3 and 4 bits', async () => {
    const calib = heldOutCalibration();
    const tok = await loadTokenizer(stories);
    const ids = tok.encode(loadEvalText('tinystories').text, { addBos: true });
    const cfg = loadConfig(stories);
    for (const bits of [3, 4]) {
      const out = join(dir, `gptq-${bits}`);
      const q = lieq(['quantize', stories, '--uniform', String(bits), '--backbone', 'gptq', '--calib-data', calib, '--calib-samples', '16', '--calib-seqlen', '256', '-o', out, '--json']);
      expect(q.code, q.stderr).toBe(0);
      expect(JSON.parse(readFileSync(join(out, 'plan.json'), 'utf8')).layers.every((l: { backbone: string }) => l.backbone === 'gptq')).toBe(true);
      const e = lieq(['eval', 'ppl', '--model', stories, '--quantized', out, '--dataset', 'tinystories', '--ctx', '512', '--limit', '16', '--json']);
      expect(e.code, e.stderr).toBe(0);
      const gptqPpl = JSON.parse(e.stdout).perplexity as number;
      const rtnOut = join(dir, `rtn-${bits}`);
      await quantizeModel(stories, { plan: makePlan(cfg, new Array(cfg.numLayers).fill(bits), { method: 'uniform' }), out: rtnOut });
      const r = openRuntimeModel(rtnOut);
      const rtnPpl = (await perplexity(r, ids, { ctx: 512, limit: 16 })).perplexity;
      r.close();
      expect(gptqPpl, `${bits}-bit: GPTQ ${gptqPpl} vs RTN ${rtnPpl}`).toBeLessThan(rtnPpl);
      expect(gptqPpl).toBeGreaterThan(1);
    }
  });

  it('bad GPTQ options are usage errors (exit 2) and leave no output', () => {
    const base = ['quantize', stories, '--uniform', '3', '--backbone', 'gptq'];
    for (const [flag, value, msg] of [
      ['--damp', '-1', /--damp/],
      ['--calib-samples', '0', /--calib-samples/],
      ['--calib-seqlen', 'x', /--calib-seqlen/],
      ['--gptq-grid', 'l1', /--gptq-grid/],
    ] as const) {
      const out = join(dir, `bad-${flag.slice(2)}`);
      const r = lieq([...base, flag, value, '-o', out]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(msg);
      expect(existsSync(out)).toBe(false);
    }
    const out = join(dir, 'bad-calib-file');
    const r = lieq([...base, '--calib-data', join(dir, 'no-such-text.txt'), '-o', out]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/no-such-text\.txt/);
    expect(existsSync(out)).toBe(false);
  });
});
