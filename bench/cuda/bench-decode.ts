/**
 * Whole-model GPU decode and prefill speed (lieq's GpuModel) with the memory roofline measured in
 * the same process: random weights of real shapes (LLaMA-3.2-1B/3B, Qwen3-4B/8B) and the shipped
 * real models, each in the variants of random-models.ts (fp16; uniform 4/3/2-bit g128; the LieQ
 * plan with one layer at 4 bits and the rest at 2; LM head fp16 or packed 4-bit), decode at batch
 * 1/4/16 with CUDA graphs, prefill of batch × PROMPT tokens.
 *
 * Bytes per step = the weights one step reads (GpuModel stats: linears, norms, LM head) + the KV
 * cache the step's attention reads (its rows' positions at the middle of the timed steps);
 * roofline tokens/s = batch × read ceiling / bytes per step, with the ceiling measured first
 * (read kernel over 1 GiB, native cudaMeasureBandwidth).
 *
 * Run on the GPU machine by scripts/device-run.sh bench (bundled to $DEVICE_DIR/bench.mjs).
 * argv[2]: JSON path (default ./cuda-decode.json). Env: QUICK=1 (2 layers, short run),
 * BENCH_MODELS=comma list of shapes / shipped names (default all), BENCH_VARIANTS=`|`-separated
 * variant names of random-models.ts (default all), BENCH_BATCHES=comma list (default 1,4,16),
 * BENCH_TC=0 (skip the tensor-core prefill).
 */
import { writeFileSync } from 'node:fs';

import { GpuModel } from '../../lib/cuda/gpu-model.js';
import { native } from '../../lib/native.js';
import { SHIPPED_MODELS } from '../../lib/util/data-dir.js';
import { nominalBits, RandomShape, ShippedModel, VARIANTS, type ModelFamily, type Variant } from './random-models.js';

const quick = process.env.QUICK === '1';
const PROMPT = quick ? 32 : 128;
const WARM = 4;
/** Prompt of the tensor-core prefill measurement (GpuModel.prefill, one sequence). */
const TC_PROMPT = quick ? 256 : 1024;
const DECODE_STEPS = quick ? 16 : 64;
const BATCHES = (process.env.BENCH_BATCHES ?? '1,4,16').split(',').map(Number);
const WANT_VARIANTS = process.env.BENCH_VARIANTS?.split('|').map((s) => s.trim());
const TENSOR_CORE_PREFILL = process.env.BENCH_TC !== '0';
const SHAPES = ['llama-3.2-1b', 'llama-3.2-3b', 'qwen3-4b', 'qwen3-8b'];
const MODELS = (process.env.BENCH_MODELS ?? [...SHAPES, ...Object.keys(SHIPPED_MODELS)].join(',')).split(',').map((s) => s.trim()).filter(Boolean);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

interface Row {
  model: string;
  kind: 'random' | 'shipped';
  variant: string;
  head: string;
  nominalBits: number;
  batch: number;
  graphs: boolean;
  decodeMsPerStep: number;
  decodeTokensPerSecond: number;
  prefillTokens: number;
  prefillTokensPerSecond: number;
  weightBytesPerStep: number;
  kvBytesPerStep: number;
  bytesPerToken: number;
  achievedTBps: number;
  rooflineTokensPerSecond: number;
  percentOfRoofline: number;
}

function family(name: string): ModelFamily {
  if (name in SHIPPED_MODELS) return new ShippedModel(name as keyof typeof SHIPPED_MODELS);
  return new RandomShape(name, quick ? 2 : undefined);
}

async function measure(fam: ModelFamily, v: Variant, gpu: GpuModel, batch: number, graphs: boolean, readTBps: number): Promise<Row> {
  const cfg = fam.cfg;
  gpu.graphs = graphs;
  gpu.reset();
  const prompt = Int32Array.from({ length: batch * PROMPT }, (_, i) => (i * 7919) % cfg.vocabSize);
  const seqs = Int32Array.from({ length: batch * PROMPT }, (_, i) => Math.floor(i / PROMPT));
  await gpu.run(prompt.subarray(0, 16), seqs.subarray(0, 16)); // warm-up (graph capture of 16-row steps)
  gpu.reset();
  const t0 = performance.now();
  await gpu.run(prompt, seqs);
  const prefillMs = performance.now() - t0;
  const ids = Int32Array.from({ length: batch }, (_, i) => (i * 31) % cfg.vocabSize);
  const bseqs = Int32Array.from({ length: batch }, (_, i) => i);
  for (let i = 0; i < WARM; i++) await gpu.run(ids, bseqs);
  const times: number[] = [];
  for (let i = 0; i < DECODE_STEPS; i++) {
    const t = performance.now();
    await gpu.run(ids, bseqs);
    times.push(performance.now() - t);
  }
  const ms = median(times);
  const wb = gpu.stats().weightBytes;
  // K and V rows (fp16) each decode row reads: positions 0..pos, at the middle timed step.
  const pos = PROMPT + WARM + DECODE_STEPS / 2;
  const kv = batch * 2 * cfg.numLayers * cfg.numKvHeads * cfg.headDim * (pos + 1) * 2;
  const perStep = wb + kv;
  const tps = (batch * 1000) / ms;
  const roof = (batch * readTBps * 1e12) / perStep;
  return {
    model: fam.name, kind: fam.kind, variant: v.name, head: v.head, nominalBits: nominalBits(v, cfg.numLayers), batch, graphs,
    decodeMsPerStep: ms, decodeTokensPerSecond: tps,
    prefillTokens: batch * PROMPT, prefillTokensPerSecond: (batch * PROMPT * 1000) / prefillMs,
    weightBytesPerStep: wb, kvBytesPerStep: kv, bytesPerToken: perStep / batch,
    achievedTBps: perStep / (ms * 1e-3) / 1e12, rooflineTokensPerSecond: roof, percentOfRoofline: (100 * tps) / roof,
  };
}

interface TcPrefill {
  tokens: number;
  ms: number;
  tokensPerSecond: number;
  error?: string;
}

/** One sequence's prompt through GpuModel.prefill (tensor-core GEMMs), median of 3 after a warm-up. */
async function tensorCorePrefill(gpu: GpuModel, tokens: number, vocab: number): Promise<TcPrefill> {
  const ids = Int32Array.from({ length: tokens }, (_, i) => (i * 7919 + 13) % vocab);
  try {
    const times: number[] = [];
    for (let i = 0; i < 4; i++) {
      gpu.reset();
      const t = performance.now();
      await gpu.prefill(ids, 0);
      if (i > 0) times.push(performance.now() - t);
    }
    const ms = median(times);
    return { tokens, ms, tokensPerSecond: (tokens * 1000) / ms };
  } catch (err) {
    return { tokens, ms: NaN, tokensPerSecond: NaN, error: (err as Error).message };
  }
}

async function main(): Promise<void> {
  const outPath = process.argv[2] ?? 'cuda-decode.json';
  const bw = native().cudaMeasureBandwidth(1 << 30, 20);
  console.log(`ceilings: read kernel ${bw.readTBps.toFixed(3)} TB/s, device-to-device copy ${bw.copyTBps.toFixed(3)} TB/s (read + write), 1 GiB buffers`);
  const rows: Row[] = [];
  const prefills: ({ model: string; variant: string } & TcPrefill)[] = [];
  const loads: { model: string; variant: string; seconds: number; weightBytes: number; deviceBytes: number }[] = [];
  let deviceName = '';
  const write = () =>
    writeFileSync(outPath, JSON.stringify({
      format: 'lieq-cuda-decode/2', date: new Date().toISOString(), device: deviceName, readTBps: bw.readTBps, copyTBps: bw.copyTBps,
      prompt: PROMPT, decodeSteps: DECODE_STEPS, quick, loads, rows, tensorCorePrefill: prefills,
    }, null, 2));
  for (const name of MODELS) {
    const tf = performance.now();
    const fam = family(name);
    console.log(`== ${name} (${fam.kind}, ${fam.cfg.numLayers} layers): host weights in ${((performance.now() - tf) / 1000).toFixed(1)} s`);
    for (const v of VARIANTS) {
      if (WANT_VARIANTS && !WANT_VARIANTS.includes(v.name)) continue;
      const tl = performance.now();
      const bm = fam.build(v);
      const maxContext = Math.min(fam.cfg.maxPositionEmbeddings, Math.max(PROMPT + WARM + DECODE_STEPS + 16, TC_PROMPT));
      const gpu = GpuModel.load(bm.model, { maxSeqs: 16, maxContext, lmHead: v.head, copyLayerFrom: bm.copyLayerFrom });
      const st = gpu.stats();
      deviceName = st.deviceName;
      const seconds = (performance.now() - tl) / 1000;
      loads.push({ model: name, variant: v.name, seconds, weightBytes: st.weightBytes, deviceBytes: st.deviceBytes });
      console.log(`${v.name}: loaded in ${seconds.toFixed(1)} s, ${(st.weightBytes / 1e9).toFixed(3)} GB weights/step, fused qkv ${st.fusedQkvLayers}/${fam.cfg.numLayers}, gate/up ${st.fusedGateUpLayers}/${fam.cfg.numLayers}`);
      const first = rows.length;
      try {
        for (const b of BATCHES) rows.push(await measure(fam, v, gpu, b, true, bw.readTBps));
        if (name === SHAPES[0] && (v.layers === 'fp16' || (v.layers === 4 && v.head === 'fp16'))) rows.push(await measure(fam, v, gpu, 1, false, bw.readTBps));
        if (TENSOR_CORE_PREFILL) {
          prefills.push({ model: name, variant: v.name, ...(await tensorCorePrefill(gpu, Math.min(TC_PROMPT, maxContext), fam.cfg.vocabSize)) });
          console.log(`  tensor-core prefill (${prefills.at(-1)!.tokens} tokens): ${prefills.at(-1)!.error ?? `${prefills.at(-1)!.tokensPerSecond.toFixed(0)} tok/s`}`);
        }
      } finally {
        gpu.dispose();
        bm.model.close();
      }
      for (const r of rows.slice(first))
        console.log(`  batch ${String(r.batch).padStart(2)}${r.graphs ? '' : ' (no graphs)'}: ${r.decodeTokensPerSecond.toFixed(0).padStart(6)} tok/s (${r.decodeMsPerStep.toFixed(3)} ms/step, ${r.percentOfRoofline.toFixed(0)}% of roofline), prefill ${r.prefillTokensPerSecond.toFixed(0)} tok/s`);
      write();
    }
  }
  console.log('\n| model | variant | bits | batch | graphs | ms/step | decode tok/s | MB/token | TB/s | % roofline | prefill tok/s |');
  console.log('|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|');
  for (const r of rows)
    console.log(`| ${r.model} | ${r.variant} | ${r.nominalBits.toFixed(3)} | ${r.batch} | ${r.graphs ? 'yes' : 'no'} | ${r.decodeMsPerStep.toFixed(3)} | ${r.decodeTokensPerSecond.toFixed(0)} | ${(r.bytesPerToken / 1e6).toFixed(1)} | ${r.achievedTBps.toFixed(2)} | ${r.percentOfRoofline.toFixed(0)}% | ${r.prefillTokensPerSecond.toFixed(0)} |`);
  write();
}

await main();
