/**
 * Architecture conformance against Hugging Face transformers: fixtures made on the GPU machine
 * by ../shared/data/tools/make_arch_fixtures.py (test/fixtures/arch/). transformers ran the
 * saved (bf16 / fp16 / fp32) weights upcast to float64; lieq upcasts the same weights to f32
 * exactly and computes in f32, so the differences are f32 rounding only.
 *
 * Tolerance: |Δ| <= 2e-5 · max(1, |ref|) on logits and every hidden state. Why: the inputs
 * are identical (bf16/fp16 → f32 is exact), so only f32 arithmetic differs from float64: a few
 * ulps (6e-8 relative) per op over ~3 layers × a dozen ops with sums over 64..160 terms. The
 * measured worst case is ~3e-6 (scaled), so 2e-5 leaves ~7× room, while any real mistake (RoPE
 * pairing, rope scaling band, missing bias or q/k norm, wrong GQA head map) moves values by
 * 1e-2 or more.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { SafetensorsFile } from '../../lib/io/safetensors.js';
import { forward } from '../../lib/runtime/forward.js';
import { KvCache } from '../../lib/runtime/kv-cache.js';
import { RuntimeModel } from '../../lib/runtime/model.js';
import { argmax } from '../../lib/runtime/sampling.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'arch');
const TOL = 2e-5;

function readI32(f: SafetensorsFile, name: string): Int32Array {
  const b = f.readBytes(name);
  return new Int32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/** max over i of |a_i - b_i| / max(1, |b_i|). */
function maxScaledDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) / Math.max(1, Math.abs(b[i])));
  return m;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const cases = [
  { name: 'tiny-llama3', what: 'llama3 rope scaling, tied, bf16' },
  { name: 'tiny-qwen3', what: 'q/k norm, heads·head_dim ≠ hidden, bf16' },
  { name: 'tiny-qwen2', what: 'q/k/v biases, untied, fp16, sharded' },
  { name: 'tiny-mistral', what: 'untied, fp32' },
];

describe.each(cases)('$name ($what) vs transformers float64', ({ name }) => {
  const dir = join(FIXTURES, name);
  const ref = SafetensorsFile.open(join(dir, 'reference.safetensors'));
  const ids = readI32(ref, 'input_ids');
  const model = RuntimeModel.open(dir);
  const L = model.numLayers;

  it('logits and every layer’s hidden states', () => {
    const layerOut: Float32Array[] = [];
    let embedded: Float32Array | undefined;
    const r = forward(model, ids, {
      hooks: {
        layerInput: (l, h) => {
          if (l === 0) embedded = h.slice();
        },
        layerOutput: (_l, h) => layerOut.push(h.slice()),
      },
    });
    const diffs: Record<string, number> = {};
    diffs['hidden_states.0'] = maxScaledDiff(embedded!, ref.readF32('hidden_states.0'));
    for (let i = 1; i < L; i++) diffs[`hidden_states.${i}`] = maxScaledDiff(layerOut[i - 1], ref.readF32(`hidden_states.${i}`));
    // the last entry is after the final norm
    const normedLast = finalNormed(model, r.hidden);
    diffs[`hidden_states.${L}`] = maxScaledDiff(normedLast, ref.readF32(`hidden_states.${L}`));
    diffs.logits = maxScaledDiff(r.logits!, ref.readF32('logits'));
    console.info(`${name}: max scaled diff ${JSON.stringify(diffs)}; logits max |Δ| ${maxAbsDiff(r.logits!, ref.readF32('logits')).toExponential(2)}`);
    for (const [k, d] of Object.entries(diffs)) expect(d, k).toBeLessThan(TOL);
  });

  it('greedy continuation with the KV cache reproduces transformers’ ids', () => {
    const want = readI32(ref, 'greedy_ids');
    const prompt = ids.subarray(0, 8);
    const cache = new KvCache(model.config, want.length);
    let logits = forward(model, prompt, { cache, logits: 'last' }).logits!;
    const got = [...prompt];
    while (got.length < want.length) {
      const next = argmax(logits);
      got.push(next);
      logits = forward(model, Int32Array.of(next), { cache, logits: 'last' }).logits!;
    }
    expect(got).toEqual([...want]);
  });
});

/** rms(x)·g of every row, in double (the final norm the last hidden state entry includes). */
function finalNormed(model: RuntimeModel, hidden: Float32Array): Float32Array {
  const c = model.config;
  const out = new Float32Array(hidden.length);
  const rows = hidden.length / c.hiddenSize;
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < c.hiddenSize; i++) ss += hidden[r * c.hiddenSize + i] ** 2;
    const inv = 1 / Math.sqrt(ss / c.hiddenSize + c.rmsNormEps);
    for (let i = 0; i < c.hiddenSize; i++) out[r * c.hiddenSize + i] = hidden[r * c.hiddenSize + i] * inv * model.finalNorm[i];
  }
  return out;
}
