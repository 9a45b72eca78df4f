/**
 * Whole-model GPU decode and prefill speed of a LLaMA-3.2-1B-shaped random model (lieq's
 * GpuModel), at fp16 (dense, the unpacked baseline), uniform 4-bit g128 and a LieQ-like plan
 * (15 layers at 2-bit + 1 at 3-bit, g128: 2.06 payload bits per weight), batch 1/4/16, with
 * CUDA graphs (and without, for the fp16 and 4-bit rows at batch 1).
 *
 * The models: random-1b.ts.
 *
 * Run on the GPU machine by scripts/device-bench.sh (bundled to .device/bench.mjs). Writes
 * JSON to the path in argv[2] (default ./cuda-decode.json). Env: QUICK=1 for a short run.
 */
import { writeFileSync } from 'node:fs';

import { GpuModel } from '../../lib/cuda/gpu-model.js';
import { RandomModels, VARIANTS } from './random-1b.js';

const quick = process.env.QUICK === '1';
const models = new RandomModels(quick ? 4 : undefined);
const cfg = models.cfg;
const PROMPT = quick ? 32 : 128;
const DECODE_STEPS = quick ? 16 : 64;
const BATCHES = [1, 4, 16];

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
  const rows: Row[] = [];
  let deviceName = '';
  for (const name of VARIANTS) {
    const tl = performance.now();
    const model = models.model(name);
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
