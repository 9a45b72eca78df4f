/**
 * Runs one farm job on this machine: each stage is a child `lieq` process (so a crash, a leak
 * or an OOM in one job cannot take the worker down, and each job gets a fresh heap), and each
 * stage is skipped when its output already exists on shared storage (so a retried job resumes
 * where the previous attempt stopped; `lieq quantize` itself refuses to clobber an output).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { LieqError } from '../util/errors.js';
import type { AnalyzeJobSpec, FarmStage, PlanJobSpec } from './jobs.js';
import type { FarmStorage } from './storage.js';

/** The `lieq` entry point of this installation (dist/cli/main.js next to this file's folder). */
export const LIEQ_MAIN = fileURLToPath(new URL('../cli/main.js', import.meta.url));

/** A stage's child process failed. `retryable` is false for errors that a retry repeats. */
export class StageError extends LieqError {
  readonly retryable: boolean;
  constructor(message: string, retryable: boolean) {
    super('E_FARM_STAGE', message, { exitCode: 1 });
    this.retryable = retryable;
  }
}

/** Exit codes of lieq's deterministic input errors (usage, format, unsupported, data): a
 *  retry would fail the same way. File errors (3) may be transient on network storage. */
const DETERMINISTIC_EXITS = new Set([2, 4, 5, 6]);

export interface RunContext {
  storage: FarmStorage;
  jobId: string;
  worker: string;
  /** Native threads of each child process. */
  threads: number;
  onStage?(stage: string, index: number, total: number): void;
  /** Extra arguments of the bench stage (e.g. ["--prompt", "64", "--gen", "16"]). */
  benchArgs?: string[];
}

interface ChildResult {
  stdout: string;
  seconds: number;
}

function runLieq(args: string[], ctx: RunContext, stage: string): Promise<ChildResult> {
  const t0 = performance.now();
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [LIEQ_MAIN, '--threads', String(ctx.threads), ...args], {
      env: { ...process.env, LIEQ_CACHE_DIR: ctx.storage.cacheDir, LIEQ_PARENT_PID: String(process.pid) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4000)));
    child.on('error', (err) => reject(new StageError(`${stage}: cannot start lieq (${err.message})`, true)));
    child.on('close', (code, signal) => {
      if (code === 0) return resolvePromise({ stdout, seconds: (performance.now() - t0) / 1000 });
      const last = stderr.trim().split('\n').filter(Boolean).pop() ?? '(no output)';
      const how = signal ? `killed by ${signal}` : `exit ${code}`;
      reject(new StageError(`${stage}: lieq ${args[0]} failed (${how}): ${last}`, !(code !== null && DETERMINISTIC_EXITS.has(code))));
    });
  });
}

async function stage(name: string, ctx: RunContext, done: () => boolean, work: () => Promise<number>): Promise<number> {
  if (done()) {
    ctx.storage.log({ job: ctx.jobId, stage: name, event: 'skipped', worker: ctx.worker });
    return 0;
  }
  ctx.storage.log({ job: ctx.jobId, stage: name, event: 'started', worker: ctx.worker });
  try {
    const seconds = await work();
    ctx.storage.log({ job: ctx.jobId, stage: name, event: 'done', worker: ctx.worker, seconds });
    return seconds;
  } catch (err) {
    ctx.storage.log({ job: ctx.jobId, stage: name, event: 'failed', worker: ctx.worker, error: (err as Error).message });
    throw err;
  }
}

export interface AnalyzeJobResult {
  kind: 'analyze';
  analysis: string;
  seconds: number;
}

export async function runAnalyzeJob(spec: AnalyzeJobSpec, ctx: RunContext): Promise<AnalyzeJobResult> {
  const { storage, jobId } = ctx;
  const file = storage.stageFile(jobId, 'analysis');
  ctx.onStage?.('analyze', 0, 1);
  const seconds = await stage('analyze', ctx, () => storage.stageDone(jobId, 'analysis'), async () => {
    const r = await runLieq(['analyze', spec.model, '--calib', spec.calib, '--samples', String(spec.samples), '--seqlen', String(spec.seqlen), '--group', String(spec.groupSize), '--backbone', spec.backbone, '--out', file], ctx, 'analyze');
    return r.seconds;
  });
  ctx.onStage?.('analyze', 1, 1);
  return { kind: 'analyze', analysis: file, seconds };
}

export interface PlanJobResult {
  kind: 'plan';
  job: string;
  model: string;
  bits: number;
  uniform: boolean;
  backbone: string;
  quantized: string;
  nominalBits: number;
  packedBytes: number;
  perplexity?: { dataset: string; value: number; windows: number };
  bench?: unknown;
  stageSeconds: Partial<Record<FarmStage, number>>;
  worker: string;
  finished: string;
}

export async function runPlanJob(spec: PlanJobSpec, ctx: RunContext): Promise<PlanJobResult> {
  const { storage, jobId } = ctx;
  if (storage.stageDone(jobId, 'result')) {
    storage.log({ job: jobId, stage: 'result', event: 'skipped', worker: ctx.worker });
    return storage.readJson<PlanJobResult>(storage.stageFile(jobId, 'result'));
  }
  const qdir = storage.quantizedDir(jobId);
  const seconds: Partial<Record<FarmStage, number>> = {};
  const total = spec.stages.length;
  for (const [i, name] of spec.stages.entries()) {
    ctx.onStage?.(name, i, total);
    if (name === 'quantize') {
      seconds.quantize = await stage('quantize', ctx, () => storage.stageDone(jobId, 'quantize'), async () => {
        const budget = spec.uniform ? ['--uniform', String(spec.bits)] : ['--bits', String(spec.bits)];
        const args = ['quantize', spec.model, ...budget, '--backbone', spec.backbone, '--group', String(spec.groupSize), '--calib', spec.calib, '--samples', String(spec.samples), '--seqlen', String(spec.seqlen), '--out', qdir, '--json'];
        return (await runLieq(args, ctx, 'quantize')).seconds;
      });
    } else if (name === 'eval') {
      seconds.eval = await stage('eval', ctx, () => storage.stageDone(jobId, 'eval'), async () => {
        const r = await runLieq(['eval', 'ppl', '--model', spec.model, '--quantized', qdir, '--dataset', spec.evalDataset, '--limit', String(spec.evalLimit), '--json'], ctx, 'eval');
        storage.writeStage(jobId, 'eval', JSON.parse(r.stdout));
        return r.seconds;
      });
    } else {
      seconds.bench = await stage('bench', ctx, () => storage.stageDone(jobId, 'bench'), async () => {
        const r = await runLieq(['bench', qdir, ...(ctx.benchArgs ?? []), '--json'], ctx, 'bench');
        storage.writeStage(jobId, 'bench', JSON.parse(r.stdout));
        return r.seconds;
      });
    }
  }
  ctx.onStage?.('result', total, total);
  const report = storage.readJson<{ accounting: { nominalBits: number; packedBytes: number } }>(`${qdir}/report.json`);
  const ev = storage.stageDone(jobId, 'eval') ? storage.readJson<{ perplexity: number; windows: number; dataset?: string }>(storage.stageFile(jobId, 'eval')) : undefined;
  const result: PlanJobResult = {
    kind: 'plan',
    job: jobId,
    model: spec.model,
    bits: spec.bits,
    uniform: spec.uniform,
    backbone: spec.backbone,
    quantized: qdir,
    nominalBits: report.accounting.nominalBits,
    packedBytes: report.accounting.packedBytes,
    ...(ev ? { perplexity: { dataset: spec.evalDataset, value: ev.perplexity, windows: ev.windows } } : {}),
    ...(storage.stageDone(jobId, 'bench') ? { bench: storage.readJson<unknown>(storage.stageFile(jobId, 'bench')) } : {}),
    stageSeconds: seconds,
    worker: ctx.worker,
    finished: new Date().toISOString(),
  };
  storage.writeStage(jobId, 'result', result);
  storage.log({ job: jobId, stage: 'result', event: 'done', worker: ctx.worker });
  return result;
}
