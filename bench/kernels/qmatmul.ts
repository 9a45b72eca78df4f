/**
 * Packed-weight GEMV benchmark: the fused dequant-matmul (lib/kernels/quant.ts qmatmulSync) at
 * the linear shapes of LLaMA-3.2-1B/3B and Qwen3-4B, batch 1 and 8, bits 2/3/4/8 (g128,
 * asymmetric), against the f32 and fp16-weight GEMV baselines and the machine's read bandwidth
 * measured in the same run (a multi-threaded sum-reduce over 512 MiB).
 *
 * Measured from memory, not cache: every variant rotates over enough distinct weight matrices
 * that one pass reads several times the last-level cache (default 4 × 32 MiB). Packed weights
 * are random bytes (timing does not depend on the values; every byte pattern is a valid block).
 *
 * Targets (issue 4, on the 2-core dev machine): 4-bit batch-1 GEMV ≥ 80% of the read bandwidth
 * and ≥ 5× the f32 GEMV.
 *
 *   tsx bench/kernels/qmatmul.ts [--quick] [--reps 5] [--threads N] [--out <file.json>]
 *
 * Prints a table and writes JSON (default bench/results/kernels-qmatmul-<date>.json).
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import { type MachineInfo, type Stat, machineInfo, parseCommonArgs, setThreadsOnce, stat, useRealAddon, writeResult } from './gemm.js';

export interface LinearShape {
  name: string;
  out: number;
  in: number;
}

export const QMATMUL_SHAPES: LinearShape[] = [
  { name: 'llama-3.2-1b attn 2048x2048', out: 2048, in: 2048 },
  { name: 'llama-3.2-1b mlp up 8192x2048', out: 8192, in: 2048 },
  { name: 'llama-3.2-1b mlp down 2048x8192', out: 2048, in: 8192 },
  { name: 'llama-3.2-3b attn 3072x3072', out: 3072, in: 3072 },
  { name: 'llama-3.2-3b mlp down 3072x8192', out: 3072, in: 8192 },
  { name: 'llama-3.2-3b mlp up 8192x3072', out: 8192, in: 3072 },
  { name: 'qwen3-4b mlp down 2560x9728', out: 2560, in: 9728 },
  { name: 'qwen3-4b mlp up 9728x2560', out: 9728, in: 2560 },
];

export type BenchBits = 2 | 3 | 4 | 8;

export interface QmatmulBenchOptions {
  shapes?: LinearShape[];
  batches?: number[];
  bits?: BenchBits[];
  groupSize?: number;
  reps?: number;
  threads?: number;
  /** Bytes one pass over the rotated copies must read at least (default 128 MiB = 4 × L3). */
  workingSetBytes?: number;
  log?: (line: string) => void;
}

export interface QmatmulBenchRow {
  shape: string;
  out: number;
  in: number;
  batch: number;
  /** 'f32', 'f16' or 'w<bits>g<group>' */
  kernel: string;
  bits?: number;
  /** Bytes the kernel reads per call: weights (+ scales + zeros). */
  bytes: number;
  copies: number;
  ms: Stat;
  /** bytes / mean time */
  gbPerSec: number;
  /** gbPerSec / measured read bandwidth (best of the probes) */
  ofReadBandwidth: number;
  /** f32 mean time / this mean time (same shape and batch) */
  speedupVsF32: number;
}

export interface QmatmulBenchResult {
  benchmark: 'kernels-qmatmul';
  machine: MachineInfo;
  threads: number;
  reps: number;
  groupSize: number;
  workingSetBytes: number;
  /**
   * probes: the sum-reduce probe at the start and the end; bestF32GBs: the fastest batch-1 f32
   * GEMV (also a streaming read); usedGBs = the highest of them, the denominator of every ratio.
   */
  readBandwidth: { startGBs: number; endGBs: number; bestF32GBs: number; usedGBs: number; bytes: number };
  packedKernels: 'avx2' | 'scalar';
  rows: QmatmulBenchRow[];
  targets: { shape: string; ofReadBandwidth: number; speedupVsF32: number; met: boolean }[];
}

const MiB = 2 ** 20;

/** Deterministic filler (xorshift32) for large typed arrays, fast enough for hundreds of MiB. */
function fillRandom(bytes: Uint8Array, seed: number): void {
  let s = seed >>> 0 || 1;
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
  for (let i = 0; i < words.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    words[i] = s >>> 0;
  }
  for (let i = words.length * 4; i < bytes.length; i++) bytes[i] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
}

function randomF32(n: number, seed: number, scale: number): Float32Array {
  const u = new Uint32Array(n);
  fillRandom(new Uint8Array(u.buffer), seed);
  const f = new Float32Array(n);
  for (let i = 0; i < n; i++) f[i] = (u[i] / 4294967296 - 0.5) * scale;
  return f;
}

function copiesFor(bytesPerCopy: number, workingSet: number): number {
  return Math.max(2, Math.ceil(workingSet / bytesPerCopy));
}

/** Times `call(copy)` over all copies per rep; returns ms per call. */
function timeRotating(copies: number, reps: number, call: (c: number) => void): Stat {
  for (let c = 0; c < copies; c++) call(c); // warm-up: page faults, pool start
  const samples: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    for (let c = 0; c < copies; c++) call(c);
    samples.push((performance.now() - t0) / copies);
  }
  return stat(samples);
}

export async function runQmatmulBench(opts: QmatmulBenchOptions = {}): Promise<QmatmulBenchResult> {
  useRealAddon();
  if (opts.threads) await setThreadsOnce(opts.threads);
  const { native } = await import('../../lib/native.js');
  const quant = await import('../../lib/kernels/quant.js');
  const { packedSizes } = await import('../../lib/kernels/packed-format.js');
  const log = opts.log ?? (() => {});
  const shapes = opts.shapes ?? QMATMUL_SHAPES;
  const batches = opts.batches ?? [1, 8];
  const bitsList = opts.bits ?? [2, 3, 4, 8];
  const groupSize = opts.groupSize ?? 128;
  const reps = opts.reps ?? 5;
  const workingSet = opts.workingSetBytes ?? 128 * MiB;
  const machine = await machineInfo();

  const probe = () => quant.measureReadBandwidth(512 * MiB, 5).bestGBs;
  const startGBs = probe();
  log(`read bandwidth (sum-reduce, 512 MiB, ${native().getThreads()} threads): ${startGBs.toFixed(2)} GB/s`);

  const rows: QmatmulBenchRow[] = [];
  for (const shape of shapes) {
    const n = shape.out * shape.in;
    const xs = new Map<number, Float32Array>();
    for (const b of batches) xs.set(b, randomF32(b * shape.in, 7 + b, 2));
    const timed: { kernel: string; bits?: number; bytes: number; copies: number; ms: Map<number, Stat> }[] = [];

    // f32 and fp16 baselines
    {
      const copies = copiesFor(4 * n, workingSet);
      const ws = Array.from({ length: copies }, (_, c) => randomF32(n, 100 + c, 0.1));
      const ms = new Map<number, Stat>();
      for (const b of batches) {
        const y = new Float32Array(b * shape.out);
        ms.set(b, timeRotating(copies, reps, (c) => quant.gemvF32(ws[c], shape.out, shape.in, xs.get(b)!, b, { out: y })));
      }
      timed.push({ kernel: 'f32', bytes: 4 * n, copies, ms });
    }
    {
      const copies = copiesFor(2 * n, workingSet);
      const ws = Array.from({ length: copies }, (_, c) => {
        const h = new Uint16Array(n);
        const f = randomF32(n, 200 + c, 0.1);
        native().fromF32(f, 1, new Uint8Array(h.buffer));
        return h;
      });
      const ms = new Map<number, Stat>();
      for (const b of batches) {
        const y = new Float32Array(b * shape.out);
        ms.set(b, timeRotating(copies, reps, (c) => quant.gemvF16(ws[c], shape.out, shape.in, xs.get(b)!, b, { out: y })));
      }
      timed.push({ kernel: 'f16', bytes: 2 * n, copies, ms });
    }
    // packed
    for (const bits of bitsList) {
      const sz = packedSizes(shape.out, shape.in, bits, groupSize, false);
      const copies = copiesFor(sz.totalBytes, workingSet);
      const layers = Array.from({ length: copies }, (_, c) => {
        const qweight = new Uint8Array(sz.qweightBytes);
        fillRandom(qweight, 300 + c);
        const scales = new Uint16Array(sz.groups).fill(0x211f); // ≈ 0.01 in fp16
        const zeros = new Uint8Array(sz.groups).fill(1 << (bits - 1));
        return { outFeatures: shape.out, inFeatures: shape.in, bits, groupSize, symmetric: false, qweight, scales, zeros };
      });
      const ms = new Map<number, Stat>();
      for (const b of batches) {
        const y = new Float32Array(b * shape.out);
        ms.set(b, timeRotating(copies, reps, (c) => quant.qmatmulSync(layers[c], xs.get(b)!, b, { out: y })));
      }
      timed.push({ kernel: `w${bits}g${groupSize}`, bits, bytes: sz.totalBytes, copies, ms });
    }

    for (const b of batches) {
      const f32 = timed[0].ms.get(b)!.mean;
      for (const t of timed) {
        const m = t.ms.get(b)!;
        const gbPerSec = t.bytes / (m.mean * 1e-3) / 1e9;
        const row: QmatmulBenchRow = {
          shape: shape.name,
          out: shape.out,
          in: shape.in,
          batch: b,
          kernel: t.kernel,
          bytes: t.bytes,
          copies: t.copies,
          ms: m,
          gbPerSec,
          ofReadBandwidth: gbPerSec / startGBs,
          speedupVsF32: f32 / m.mean,
        };
        if (t.bits !== undefined) row.bits = t.bits;
        rows.push(row);
        log(formatQmatmulRow(row));
      }
    }
  }

  const endGBs = probe();
  // On a shared machine a single probe can land in a busy moment; the f32 GEMV is a streaming
  // read too, so the ratios use the highest read rate seen anywhere in the run (the strict choice).
  const bestF32GBs = Math.max(...rows.filter((r) => r.kernel === 'f32' && r.batch === 1).map((r) => r.gbPerSec), 0);
  const usedGBs = Math.max(startGBs, endGBs, bestF32GBs);
  for (const r of rows) r.ofReadBandwidth = r.gbPerSec / usedGBs;
  log(`read bandwidth at the end: ${endGBs.toFixed(2)} GB/s; fastest f32 GEMV ${bestF32GBs.toFixed(2)} GB/s; ` +
    `ratios use the highest, ${usedGBs.toFixed(2)} GB/s`);
  const targets = rows
    .filter((r) => r.bits === 4 && r.batch === 1)
    .map((r) => ({
      shape: r.shape,
      ofReadBandwidth: r.ofReadBandwidth,
      speedupVsF32: r.speedupVsF32,
      met: r.ofReadBandwidth >= 0.8 && r.speedupVsF32 >= 5,
    }));
  return {
    benchmark: 'kernels-qmatmul',
    machine,
    threads: native().getThreads(),
    reps,
    groupSize,
    workingSetBytes: workingSet,
    readBandwidth: { startGBs, endGBs, bestF32GBs, usedGBs, bytes: 512 * MiB },
    packedKernels: quant.packedKernelsSimd() ? 'avx2' : 'scalar',
    rows,
    targets,
  };
}

export const QMATMUL_TABLE_HEADER =
  `${'shape'.padEnd(34)} ${'batch'.padStart(5)} ${'kernel'.padEnd(7)} ${'ms (mean±sd)'.padStart(16)} ` +
  `${'GB/s'.padStart(7)} ${'of read'.padStart(8)} ${'vs f32'.padStart(7)}`;

export function formatQmatmulRow(r: QmatmulBenchRow): string {
  const ms = `${r.ms.mean.toFixed(3)}±${r.ms.stdev.toFixed(3)}`;
  return (
    `${r.shape.padEnd(34)} ${String(r.batch).padStart(5)} ${r.kernel.padEnd(7)} ${ms.padStart(16)} ` +
    `${r.gbPerSec.toFixed(2).padStart(7)} ${`${(100 * r.ofReadBandwidth).toFixed(0)}%`.padStart(8)} ` +
    `${`${r.speedupVsF32.toFixed(2)}x`.padStart(7)}`
  );
}

async function main(): Promise<void> {
  const args = parseCommonArgs(process.argv.slice(2));
  console.log(QMATMUL_TABLE_HEADER);
  const result = await runQmatmulBench({
    threads: args.threads,
    reps: args.reps ?? (args.quick ? 3 : 5),
    shapes: args.quick ? QMATMUL_SHAPES.slice(0, 2) : undefined,
    log: (l) => console.log(l),
  });
  const m = result.machine;
  console.log(`\n${m.cpu}, ${result.threads} thread(s), ${result.reps} reps, load ${m.loadAverage1m.toFixed(2)}, packed kernels ${result.packedKernels}`);
  for (const t of result.targets)
    console.log(
      `${t.shape}: 4-bit batch 1 at ${(100 * t.ofReadBandwidth).toFixed(0)}% of read bandwidth (goal ≥ 80%), ` +
        `${t.speedupVsF32.toFixed(2)}x f32 (goal ≥ 5x)${t.met ? '' : '  [not met]'}`,
    );
  const date = new Date().toISOString().slice(0, 10);
  console.log(`wrote ${writeResult(result, args.out ?? `bench/results/kernels-qmatmul-${date}.json`)}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
