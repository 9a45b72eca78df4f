/**
 * Tensor-core prefill benchmark (issue 8), on a CUDA machine:
 *
 *  1. Kernel: the prefill GEMM (native/cuda/qgemm_prefill.cuh) on the fused linears of
 *     LLaMA-3.2-1B and Qwen3-4B (qkv, o, gate_up, down) at M = 64/256/512/2048 rows, fp16 dense
 *     and packed 4-bit / 2-bit g128 weights: median of 5 batches of 20 back-to-back launches, TFLOP/s
 *     = 2·M·out·in / time. cuBLAS fp16 (torch.matmul, bench/cuda/prefill_torch.py, the same
 *     device run) is merged in when its JSON is given.
 *  2. Whole model: prefill tokens/s of a random LLaMA-3.2-1B (16 layers, fp16 / uniform 4-bit /
 *     LieQ 1x4 + rest 2-bit) at prompts of 512 and 2048: GpuModel.prefill (chunks of 512, 1024,
 *     2048 rows) against the 16-row step path (GpuModel.run), median of 3 after a warm-up.
 *
 * Usage: node bench-prefill.mjs OUT.json [TORCH.json]   (QUICK=1: one shape per model, 4 layers)
 * Device: DEVICE_DIR=.device-NAME bash scripts/device-run.sh does not run it; see docs/gpu.md.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

import { GpuModel } from '../../lib/cuda/gpu-model.js';
import { packedSizes, type PackedBits } from '../../lib/kernels/packed-format.js';
import { native } from '../../lib/native.js';
import { noise, RandomShape, VARIANTS } from './random-models.js';

const quick = process.env.QUICK === '1';
const GROUP = 128;

/** Fused linears (out, in); prefill_torch.py has the same list. */
const SHAPES: [string, number, number][] = [
  ['llama-3.2-1b qkv', 3072, 2048],
  ['llama-3.2-1b o', 2048, 2048],
  ['llama-3.2-1b gate_up', 16384, 2048],
  ['llama-3.2-1b down', 2048, 8192],
  ['qwen3-4b qkv', 6144, 2560],
  ['qwen3-4b o', 2560, 4096],
  ['qwen3-4b gate_up', 19456, 2560],
  ['qwen3-4b down', 2560, 9728],
];
const ROWS = [64, 256, 512, 2048];
const TILE_NAMES = ['auto', '128x128', '128x64', '64x64', '128x256'];

/** A packed linear with random codes, scales ~0.01 and zeros (speed does not depend on values). */
function randomPacked(out: number, inF: number, bits: PackedBits): object {
  const sz = packedSizes(out, inF, bits, GROUP, false);
  const qweight = new Uint8Array(sz.qweightBytes);
  let s = 12345;
  for (let i = 0; i < qweight.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    qweight[i] = s >>> 24;
  }
  const scales = new Uint16Array(sz.groups).fill(0x211f); // fp16 ~0.01
  const zeros = new Uint8Array(sz.groups).fill(1 << (bits - 1));
  return { kind: 'packed', outFeatures: out, inFeatures: inF, bias: null, packed: { outFeatures: out, inFeatures: inF, bits, groupSize: GROUP, symmetric: false, qweight, scales, zeros } };
}

interface KernelRow {
  shape: string;
  out: number;
  in: number;
  rows: number;
  weights: string;
  tile: string;
  ms: number;
  tflops: number;
  cublasMs?: number;
  cublasTflops?: number;
}

function kernelBench(torchRows: { shape: string; rows: number; ms: number }[]): KernelRow[] {
  const rows: KernelRow[] = [];
  const shapes = quick ? SHAPES.filter((s) => s[0].endsWith('gate_up')) : SHAPES;
  for (const [shape, out, inF] of shapes) {
    const linears: [string, object][] = [
      ['fp16', { kind: 'dense', outFeatures: out, inFeatures: inF, weight: noise(out * inF, 0.03, 99), bias: null }],
      ['4-bit g128', randomPacked(out, inF, 4)],
      ['2-bit g128', randomPacked(out, inF, 2)],
    ];
    for (const [weights, lin] of linears)
      for (const m of ROWS) {
        const t = native().cudaPrefillLinearTime(lin, m, 20, 0);
        const flops = 2 * m * out * inF;
        const tr = torchRows.find((r) => r.shape === shape && r.rows === m);
        const row: KernelRow = { shape, out, in: inF, rows: m, weights, tile: TILE_NAMES[t.tile], ms: t.msMedian, tflops: flops / (t.msMedian * 1e-3) / 1e12 };
        if (tr) row.cublasMs = tr.ms, row.cublasTflops = flops / (tr.ms * 1e-3) / 1e12;
        rows.push(row);
        console.log(`${shape.padEnd(22)} ${weights.padEnd(10)} M=${String(m).padStart(5)} tile ${row.tile.padEnd(7)} ${row.ms.toFixed(4)} ms ${row.tflops.toFixed(1)} TFLOP/s${tr ? ` (cuBLAS fp16 ${row.cublasTflops!.toFixed(1)})` : ''}`);
      }
  }
  return rows;
}

interface SweepRow {
  shape: string;
  weights: string;
  rows: number;
  /** ms per tile, TILE_NAMES[1..]. */
  ms: Record<string, number>;
}

/** Every CTA tile on the large linears (the data behind qgemm_auto_tile's choice). */
function tileSweep(): SweepRow[] {
  const out: SweepRow[] = [];
  const shapes = SHAPES.filter((s) => s[0].endsWith('gate_up') || s[0].endsWith('down') || s[0].endsWith('qkv'));
  for (const [shape, o, inF] of quick ? shapes.slice(0, 1) : shapes) {
    const linears: [string, object][] = [
      ['fp16', { kind: 'dense', outFeatures: o, inFeatures: inF, weight: noise(o * inF, 0.03, 99), bias: null }],
      ['4-bit g128', randomPacked(o, inF, 4)],
      ['2-bit g128', randomPacked(o, inF, 2)],
    ];
    for (const [weights, lin] of linears)
      for (const m of [256, 512, 2048]) {
        const row: SweepRow = { shape, weights, rows: m, ms: {} };
        for (let t = 1; t < TILE_NAMES.length; t++) row.ms[TILE_NAMES[t]] = native().cudaPrefillLinearTime(lin, m, 10, t).msMedian;
        out.push(row);
        console.log(`sweep ${shape.padEnd(22)} ${weights.padEnd(10)} M=${String(m).padStart(5)} ${Object.entries(row.ms).map(([k, v]) => `${k} ${v.toFixed(4)}`).join('  ')}`);
      }
  }
  return out;
}

interface ModelRow {
  variant: string;
  prompt: number;
  path: string;
  ms: number;
  tokensPerSecond: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function modelBench(): Promise<{ rows: ModelRow[]; device: string }> {
  const shape = new RandomShape('llama-3.2-1b', quick ? 4 : undefined);
  const V = shape.cfg.vocabSize;
  const prompts = quick ? [512] : [512, 2048];
  const rows: ModelRow[] = [];
  let device = '';
  const variants = VARIANTS.filter((v) => v.head === 'fp16' && (v.layers === 'fp16' || v.layers === 4 || v.layers === 'lieq'));
  for (const v of variants) {
    const { model, copyLayerFrom } = shape.build(v);
    const gpu = GpuModel.load(model, { maxSeqs: 1, maxContext: Math.max(...prompts), copyLayerFrom });
    device = gpu.stats().deviceName;
    try {
      for (const prompt of prompts) {
        const ids = Int32Array.from({ length: prompt }, (_, i) => (i * 7919) % V);
        const paths: [string, () => Promise<unknown>][] = [['16-row steps (GEMV)', () => gpu.run(ids, new Int32Array(prompt))]];
        for (const chunk of [512, 1024, 2048].filter((c) => c <= prompt || c === 512))
          paths.push([`prefill, chunks of ${chunk}`, () => gpu.prefill(ids, 0, { chunkRows: chunk })]);
        for (const [path, fn] of paths) {
          const times: number[] = [];
          for (let rep = 0; rep < 4; rep++) {
            gpu.reset();
            const t0 = performance.now();
            await fn();
            if (rep > 0) times.push(performance.now() - t0); // rep 0: warm-up (graph capture, scratch)
          }
          const ms = median(times);
          rows.push({ variant: v.name, prompt, path, ms, tokensPerSecond: (prompt * 1000) / ms });
          console.log(`${v.name.padEnd(26)} prompt ${String(prompt).padStart(5)} ${path.padEnd(24)} ${ms.toFixed(1)} ms ${((prompt * 1000) / ms).toFixed(0)} tok/s`);
        }
      }
    } finally {
      gpu.dispose();
    }
  }
  return { rows, device };
}

async function main(): Promise<void> {
  const outPath = process.argv[2] ?? 'cuda-prefill.json';
  const torchPath = process.argv[3];
  const torch = torchPath && existsSync(torchPath) ? (JSON.parse(readFileSync(torchPath, 'utf8')) as { device: string; torch: string; rows: { shape: string; rows: number; ms: number }[] }) : null;
  const kernels = kernelBench(torch?.rows ?? []);
  const sweep = tileSweep();
  const model = await modelBench();
  console.log('\n| shape (out x in) | weights | M | tile | ms | TFLOP/s | cuBLAS fp16 TFLOP/s | ratio |');
  console.log('|---|---|---:|---|---:|---:|---:|---:|');
  for (const r of kernels)
    console.log(`| ${r.shape} (${r.out}x${r.in}) | ${r.weights} | ${r.rows} | ${r.tile} | ${r.ms.toFixed(4)} | ${r.tflops.toFixed(1)} | ${r.cublasTflops?.toFixed(1) ?? '—'} | ${r.cublasTflops ? (r.tflops / r.cublasTflops).toFixed(2) : '—'} |`);
  console.log(`\n| shape | weights | M | ${TILE_NAMES.slice(1).join(' | ')} (ms) |`);
  console.log(`|---|---|---:|${TILE_NAMES.slice(1).map(() => '---:').join('|')}|`);
  for (const r of sweep) console.log(`| ${r.shape} | ${r.weights} | ${r.rows} | ${Object.values(r.ms).map((v) => v.toFixed(4)).join(' | ')} |`);
  console.log('\n| model | prompt | path | ms | tok/s |');
  console.log('|---|---:|---|---:|---:|');
  for (const r of model.rows) console.log(`| ${r.variant} | ${r.prompt} | ${r.path} | ${r.ms.toFixed(1)} | ${r.tokensPerSecond.toFixed(0)} |`);
  writeFileSync(outPath, JSON.stringify({ format: 'lieq-cuda-prefill/1', date: new Date().toISOString(), device: model.device, torch: torch ? { device: torch.device, version: torch.torch } : null, quick, kernels, tileSweep: sweep, model: model.rows }, null, 2));
}

await main();
