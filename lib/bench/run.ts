/**
 * `lieq bench` orchestration: a list of targets (model × plan) measured one after another on
 * one device, each in its own child process by default (lib/bench/worker.ts) so the peak RSS
 * of a row is that model's alone and one model's freed memory cannot slow the next. The host's
 * read bandwidth is measured in the same run, before and after the targets, so "% of
 * bandwidth" compares with this machine in this state.
 */
import { fork } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';

import { expectedTensors, type ModelConfig } from '../io/config.js';
import { measureReadBandwidth } from '../kernels/quant.js';
import { accountPlan, type Plan } from '../lieq/plan.js';
import { native } from '../native.js';
import type { RuntimeModel } from '../runtime/model.js';
import { LieqError, UnsupportedError } from '../util/errors.js';
import type { BenchBackend, BenchDevice } from './backend.js';
import { createCpuBenchBackend, type BackendLimits } from './cpu-backend.js';
import { measureBackend, WARMUP_DECODE_STEPS, type BatchResult } from './measure.js';
import { openBenchModel, specConfig, specName, type BenchModelSpec } from './models.js';

export const BENCH_FORMAT = 'lieq-bench/1';

export interface BenchTarget {
  model: BenchModelSpec;
  /** Plan to pack a full-precision model with in memory; null runs the model as stored. */
  plan: Plan | null;
  planLabel: string;
}

export interface BenchSettings {
  device: BenchDevice;
  batches: number[];
  prompt: number;
  gen: number;
  repeat: number;
  seed: number;
  /** Native CPU threads. */
  threads: number;
  /** Cache folder of packed random models; null disables it. */
  cacheDir: string | null;
}

export interface TargetResult {
  /** "<model> · <plan>" as shown in tables. */
  label: string;
  model: string;
  plan: string;
  architecture: string;
  layers: number;
  parameters: number;
  /** Σ n_l·b_l / Σ n_l of the decoder linears (null for f32 and stored models). */
  nominalBits: number | null;
  /** Weights held in memory (embedding included). */
  weightBytes: number;
  weightBytesPerStep: number;
  load: { seconds: number; origin: string; cachePath: string | null };
  device: BenchDevice;
  deviceName: string;
  batches: BatchResult[];
  /** Peak resident set of the process that ran this target (its own child by default). */
  peakRssBytes: number;
  /** Device memory held by the backend (CUDA). */
  peakDeviceBytes?: number;
}

export interface BenchReport {
  format: typeof BENCH_FORMAT;
  date: string;
  machine: { cpu: string; cores: number; memoryBytes: number; node: string; addon: string };
  device: BenchDevice;
  threads: number;
  settings: Omit<BenchSettings, 'cacheDir' | 'device' | 'threads'> & { isolated: boolean; warmup: string };
  /** Host read bandwidth (native multi-threaded sum-reduce, best of 5 over 256 MiB), GB/s. */
  bandwidth: { startGBs: number; endGBs: number; usedGBs: number };
  /** With --device cuda: the GPU's read-kernel bandwidth over 1 GiB (cudaMeasureBandwidth), GB/s, the ceiling of "% BW". */
  deviceBandwidth?: { startGBs: number; endGBs: number; usedGBs: number };
  results: TargetResult[];
}

export type BenchEvent = { target: number; targets: number; label: string; stage: string };

/** Why CUDA cannot run here, or null when it can. */
export function cudaUnavailable(): string | null {
  const info = native().cudaInfo();
  if (!info.compiled) return 'this build of lieq has no CUDA (the addon was built without nvcc)';
  if (info.devices.length === 0) return `no CUDA device: ${info.reason || 'none found'}`;
  return null;
}

async function createBackend(device: BenchDevice, model: RuntimeModel, limits: BackendLimits): Promise<BenchBackend> {
  if (device === 'cpu') return createCpuBenchBackend(model, limits);
  const why = cudaUnavailable();
  if (why) throw new UnsupportedError(`--device cuda: ${why}`);
  // A variable specifier: the CUDA backend is optional (lib/cuda/ is absent in CPU-only builds).
  const spec = '../cuda/bench-backend.js';
  let mod: { createCudaBenchBackend?: (m: RuntimeModel, o: BackendLimits) => Promise<BenchBackend> };
  try {
    mod = await import(spec);
  } catch (err) {
    throw new UnsupportedError('--device cuda: this build of lieq has no CUDA bench backend (lib/cuda/bench-backend.js)', { cause: err });
  }
  if (typeof mod.createCudaBenchBackend !== 'function') throw new UnsupportedError('--device cuda: lib/cuda/bench-backend.js has no createCudaBenchBackend');
  return mod.createCudaBenchBackend(model, limits);
}

function parameterCount(cfg: ModelConfig): number {
  return expectedTensors(cfg).reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
}

/** Measure one target in this process. */
export async function benchTarget(target: BenchTarget, s: BenchSettings, onStage: (stage: string) => void = () => {}): Promise<TargetResult> {
  onStage('loading');
  const opened = await openBenchModel(target.model, target.plan, s.cacheDir);
  const { model } = opened;
  try {
    const cfg = model.config;
    const limits = { maxBatch: Math.max(...s.batches), maxContext: s.prompt + s.gen };
    const be = await createBackend(s.device, model, limits);
    try {
      onStage('measuring');
      const batches = await measureBackend(be, { ...s, vocabSize: cfg.vocabSize }, (b, done, total) => onStage(`batch ${b}: repeat ${done}/${total}`));
      const peakRss = Math.max(be.memory().hostRssBytes, ...batches.map((b) => b.memory.hostRssBytes));
      const device = batches.map((b) => b.memory.deviceBytes).filter((x): x is number => x !== undefined);
      return {
        label: `${specName(target.model)} · ${target.planLabel}`,
        model: specName(target.model),
        plan: target.planLabel,
        architecture: cfg.architecture,
        layers: cfg.numLayers,
        parameters: parameterCount(cfg),
        nominalBits: target.plan ? accountPlan(target.plan, cfg).nominalBits : null,
        weightBytes: model.residentBytes(),
        weightBytesPerStep: be.weightBytesPerStep,
        load: { seconds: opened.loadSeconds, origin: opened.origin, cachePath: opened.cachePath },
        device: be.device,
        deviceName: be.deviceName,
        batches,
        peakRssBytes: peakRss,
        ...(device.length ? { peakDeviceBytes: Math.max(...device) } : {}),
      };
    } finally {
      be.dispose();
    }
  } finally {
    model.close();
  }
}

export interface WorkerJob {
  target: BenchTarget;
  settings: BenchSettings;
}

export type WorkerMessage =
  | { type: 'stage'; stage: string }
  | { type: 'result'; result: TargetResult }
  | { type: 'error'; error: { message: string; code: string; exitCode: number } };

/** The worker script beside this module (.ts when run through tsx, .js when compiled). */
function workerPath(): string {
  const self = fileURLToPath(import.meta.url);
  return self.replace(/run\.(ts|js)$/, 'worker.$1');
}

function benchInChild(job: WorkerJob, onStage: (stage: string) => void): Promise<TargetResult> {
  return new Promise((resolve, reject) => {
    const child = fork(workerPath(), [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], env: process.env });
    let settled = false;
    const settle = (f: () => void) => {
      if (!settled) {
        settled = true;
        f();
      }
    };
    child.on('message', (m: WorkerMessage) => {
      if (m.type === 'stage') onStage(m.stage);
      else if (m.type === 'result') settle(() => resolve(m.result));
      else if (m.type === 'error') settle(() => reject(new LieqError(m.error.code, m.error.message, { exitCode: m.error.exitCode })));
    });
    child.on('error', (err) => settle(() => reject(err)));
    child.on('exit', (code, signal) =>
      settle(() => reject(new Error(`bench worker for ${job.target.planLabel} exited (${signal ?? `code ${code}`}) without a result${signal === 'SIGKILL' ? ': out of memory?' : ''}`))),
    );
    child.send(job);
  });
}

const BANDWIDTH_BYTES = 256 * 2 ** 20;
/** Larger than the H100/H200's 50 MB L2 many times over, so the GPU figure is DRAM's. */
const DEVICE_BANDWIDTH_BYTES = 2 ** 30;

function deviceReadGBs(device: BenchDevice): number | null {
  return device === 'cuda' ? native().cudaMeasureBandwidth(DEVICE_BANDWIDTH_BYTES, 10).readTBps * 1000 : null;
}

export async function runBench(
  targets: BenchTarget[],
  s: BenchSettings,
  o: { isolate?: boolean; onEvent?: (e: BenchEvent) => void } = {},
): Promise<BenchReport> {
  const isolate = o.isolate ?? true;
  if (s.device === 'cuda') {
    const why = cudaUnavailable();
    if (why) throw new UnsupportedError(`--device cuda: ${why}`);
  }
  for (const t of targets) specConfig(t.model); // bad specs fail before any measurement
  native().setThreads(s.threads);
  const start = measureReadBandwidth(BANDWIDTH_BYTES, 5).bestGBs;
  const deviceStart = deviceReadGBs(s.device);
  const results: TargetResult[] = [];
  for (let i = 0; i < targets.length; i++) {
    const t = targets[i];
    const label = `${specName(t.model)} · ${t.planLabel}`;
    const onStage = (stage: string) => o.onEvent?.({ target: i + 1, targets: targets.length, label, stage });
    results.push(isolate ? await benchInChild({ target: t, settings: s }, onStage) : await benchTarget(t, s, onStage));
  }
  const end = measureReadBandwidth(BANDWIDTH_BYTES, 5).bestGBs;
  const deviceEnd = deviceReadGBs(s.device);
  const { cacheDir: _c, device: _d, threads: _t, ...settings } = s;
  return {
    format: BENCH_FORMAT,
    date: new Date().toISOString(),
    machine: {
      cpu: cpus()[0]?.model?.trim() ?? 'unknown',
      cores: cpus().length,
      memoryBytes: totalmem(),
      node: process.version,
      addon: `${native().buildInfo().buildSystem}, ${native().buildInfo().simd}`,
    },
    device: s.device,
    threads: s.threads,
    settings: { ...settings, isolated: isolate, warmup: `one run per batch (prefill + ${Math.min(s.gen, WARMUP_DECODE_STEPS)} decode steps), not counted` },
    bandwidth: { startGBs: start, endGBs: end, usedGBs: Math.max(start, end) },
    ...(deviceStart !== null && deviceEnd !== null
      ? { deviceBandwidth: { startGBs: deviceStart, endGBs: deviceEnd, usedGBs: Math.max(deviceStart, deviceEnd) } }
      : {}),
    results,
  };
}
