/**
 * Whole-model GPU decode and prefill speed of a LLaMA-3.2-1B-shaped random model (lieq's
 * GpuModel), at fp16 (dense, the unpacked baseline), uniform 4-bit g128 and a LieQ-like plan
 * (15 layers at 2-bit + 1 at 3-bit, g128: 2.06 payload bits per weight), batch 1/4/16, with
 * CUDA graphs (and without, for the fp16 and 4-bit rows at batch 1).
 *
 * Weight values do not change the speed (never zeros, though): one random layer per width is
 * generated and uploaded to every layer position, so each layer still has its own device
 * copy (16 distinct copies: nothing is served from the 50 MB L2 across layers).
 *
 * Run on the GPU machine by scripts/device-bench.sh (bundled to .device/bench.mjs). Writes
 * JSON to the path in argv[2] (default ./cuda-decode.json). Env: QUICK=1 for a short run.
 */
import { writeFileSync } from 'node:fs';

import { shapeConfig } from '../../lib/io/random-model.js';
import { LINEAR_NAMES, linearShape, type LinearName } from '../../lib/io/config.js';
import { GpuModel } from '../../lib/cuda/gpu-model.js';
import { denseFromWeights, packDense, type DenseLinear, type RuntimeLinear } from '../../lib/runtime/linear.js';
import { RuntimeModel, type LayerWeights, type WeightSource } from '../../lib/runtime/model.js';

const quick = process.env.QUICK === '1';
const cfg = shapeConfig('llama-3.2-1b', quick ? { num_hidden_layers: 4 } : {});
const PROMPT = quick ? 32 : 128;
const DECODE_STEPS = quick ? 16 : 64;
const BATCHES = [1, 4, 16];

/** Fast uniform noise in [-a, a] (xorshift32): speed does not depend on the distribution. */
function noise(n: number, a: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = (s / 4294967296 - 0.5) * 2 * a;
  }
  return out;
}

function denseLayer(): Record<LinearName, RuntimeLinear> {
  const lin = {} as Record<LinearName, RuntimeLinear>;
  LINEAR_NAMES.forEach((name, i) => {
    const [out, inF] = linearShape(cfg, name);
    lin[name] = denseFromWeights(noise(out * inF, 0.03, 1000 + i), out, inF);
  });
  return lin;
}

function modelOf(layerLinears: (l: number) => Record<LinearName, RuntimeLinear>, embedding: Float32Array): RuntimeModel {
  const ones = new Float32Array(cfg.hiddenSize).fill(1);
  const source: WeightSource = {
    config: cfg,
    label: 'random llama-3.2-1b',
    embedding: () => embedding,
    finalNorm: () => ones,
    lmHead: (e) => denseFromWeights(e, cfg.vocabSize, cfg.hiddenSize),
    layer: (index): LayerWeights => ({ index, inputNorm: ones, postAttentionNorm: ones, qNorm: null, kNorm: null, linears: layerLinears(index) }),
    close: () => {},
  };
  return RuntimeModel.fromSource(source);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

interface Row {
  variant: string;
  batch: number;
  graphs: boolean;
  decodeMsPerStep: number;
  decodeTokensPerSecond: number;
  prefillTokens: number;
  prefillMs: number;
  prefillTokensPerSecond: number;
  weightBytesPerStep: number;
  weightGBps: number;
}

async function measure(variant: string, gpu: GpuModel, batch: number, graphs: boolean): Promise<Row> {
  gpu.graphs = graphs;
  gpu.reset();
  const prompt = Int32Array.from({ length: batch * PROMPT }, (_, i) => (i * 7919) % cfg.vocabSize);
  const seqs = Int32Array.from({ length: batch * PROMPT }, (_, i) => Math.floor(i / PROMPT));
  await gpu.run(prompt.subarray(0, Math.min(16, prompt.length)), seqs.subarray(0, Math.min(16, prompt.length))); // warm-up (graph capture)
  gpu.reset();
  const t0 = performance.now();
  await gpu.run(prompt, seqs);
  const prefillMs = performance.now() - t0;
  const ids = Int32Array.from({ length: batch }, (_, i) => (i * 31) % cfg.vocabSize);
  const bseqs = Int32Array.from({ length: batch }, (_, i) => i);
  for (let i = 0; i < 4; i++) await gpu.run(ids, bseqs);
  const times: number[] = [];
  for (let i = 0; i < DECODE_STEPS; i++) {
    const t = performance.now();
    await gpu.run(ids, bseqs);
    times.push(performance.now() - t);
  }
  const ms = median(times);
  const wb = gpu.stats().weightBytes;
  return {
    variant, batch, graphs,
    decodeMsPerStep: ms, decodeTokensPerSecond: (batch * 1000) / ms,
    prefillTokens: batch * PROMPT, prefillMs, prefillTokensPerSecond: (batch * PROMPT * 1000) / prefillMs,
    weightBytesPerStep: wb, weightGBps: wb / (ms * 1e6),
  };
}

async function main(): Promise<void> {
  const outPath = process.argv[2] ?? 'cuda-decode.json';
  const t0 = performance.now();
  const embedding = noise(cfg.vocabSize * cfg.hiddenSize, 0.05, 7);
  const dense = denseLayer();
  console.log(`random weights: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const packAll = (bits: 2 | 3 | 4) => {
    const lin = {} as Record<LinearName, RuntimeLinear>;
    for (const name of LINEAR_NAMES) lin[name] = packDense(dense[name] as DenseLinear, { bits, groupSize: 128 });
    return lin;
  };
  const variants: [string, () => RuntimeModel][] = [
    ['fp16', () => modelOf(() => dense, embedding)],
    ['uniform 4-bit g128', () => { const p = packAll(4); return modelOf(() => p, embedding); }],
    ['LieQ-like 2.06-bit (15x2 + 1x3, g128)', () => { const p2 = packAll(2); const p3 = packAll(3); return modelOf((l) => (l === 1 ? p3 : p2), embedding); }],
  ];
  const rows: Row[] = [];
  let deviceName = '';
  for (const [name, make] of variants) {
    const tl = performance.now();
    const model = make();
    const gpu = GpuModel.load(model, { maxSeqs: 16, maxContext: PROMPT + DECODE_STEPS + 32 });
    const st = gpu.stats();
    deviceName = st.deviceName;
    console.log(`${name}: loaded in ${((performance.now() - tl) / 1000).toFixed(1)} s, ${(st.weightBytes / 1e9).toFixed(3)} GB weights/step, ${(st.deviceBytes / 1e9).toFixed(2)} GB on device, fused qkv ${st.fusedQkvLayers}/${cfg.numLayers}, gate/up ${st.fusedGateUpLayers}/${cfg.numLayers}`);
    for (const b of BATCHES) rows.push(await measure(name, gpu, b, true));
    if (!name.startsWith('LieQ')) rows.push(await measure(name, gpu, 1, false));
    gpu.dispose();
  }
  console.log('| variant | batch | graphs | decode ms/step | decode tok/s | weight GB/s | prefill tok/s (batch×prompt) |');
  console.log('|---|---:|---|---:|---:|---:|---:|');
  for (const r of rows)
    console.log(`| ${r.variant} | ${r.batch} | ${r.graphs ? 'yes' : 'no'} | ${r.decodeMsPerStep.toFixed(3)} | ${r.decodeTokensPerSecond.toFixed(0)} | ${r.weightGBps.toFixed(0)} | ${r.prefillTokensPerSecond.toFixed(0)} (${r.prefillTokens}) |`);
  writeFileSync(outPath, JSON.stringify({ format: 'lieq-cuda-decode/1', date: new Date().toISOString(), device: deviceName, shape: 'llama-3.2-1b', layers: cfg.numLayers, prompt: PROMPT, decodeSteps: DECODE_STEPS, rows }, null, 2));
}

await main();
