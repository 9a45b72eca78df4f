/**
 * The farm's queue, on BullMQ (Redis). Why BullMQ: it is the maintained Redis job queue of the
 * Node world and already has what a build farm needs — job locks renewed while a worker is
 * alive, a stalled-job check that hands a dead worker's job to another, retries with backoff,
 * and deduplication by job id. lieq adds idempotent stages on shared storage (storage.ts), so
 * at-least-once delivery never runs a stage to completion twice.
 *
 * Dependencies: a plan job needs its model's analysis. The analysis is its own job (one per
 * model and calibration setting, shared by every budget); a plan job that finds it unfinished
 * parks itself in the delayed set for a moment (BullMQ's move-to-delayed pattern, which does
 * not count as an attempt) and fails if the analysis job failed for good.
 */
import { hostname } from 'node:os';

import { DelayedError, type Job, Queue, UnrecoverableError, Worker, type ConnectionOptions } from 'bullmq';

import { UsageError } from '../util/errors.js';
import { analyzeSpecOf, jobId, type JobSpec, type PlanJobSpec } from './jobs.js';
import { runAnalyzeJob, runPlanJob, StageError, type AnalyzeJobResult, type PlanJobResult } from './runner.js';
import type { FarmStorage } from './storage.js';

export const DEFAULT_QUEUE = 'lieq-farm';
export const DEFAULT_REDIS = 'redis://127.0.0.1:6379';

/** redis://[user:pass@]host:port[/db] → connection options (BullMQ needs maxRetriesPerRequest null). */
export function redisConnection(url: string): ConnectionOptions {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`--redis: not a URL: "${url}" (expected redis://host:port)`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new UsageError(`--redis: expected a redis:// URL, got "${url}"`);
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new UsageError(`--redis: bad database number in "${url}"`);
  return {
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    db,
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
    maxRetriesPerRequest: null,
    // Fail fast when Redis is not there instead of retrying forever in the background.
    retryStrategy: (times: number) => (times > 20 ? null : Math.min(times * 200, 2000)),
  };
}

export interface FarmConnection {
  redis: string;
  queue?: string;
}

export interface SubmitOptions {
  /** Attempts per job before it is failed for good (crashes, killed workers, transient errors). */
  attempts?: number;
}

export interface SubmitResult {
  added: string[];
  existing: string[];
}

/** Enqueue every plan job and the analysis job of each model; ids already queued are kept. */
export async function submitJobs(conn: FarmConnection, plans: PlanJobSpec[], o: SubmitOptions = {}): Promise<SubmitResult> {
  const queue = new Queue(conn.queue ?? DEFAULT_QUEUE, { connection: redisConnection(conn.redis) });
  try {
    const attempts = o.attempts ?? 3;
    const specs = new Map<string, JobSpec>();
    for (const p of plans) {
      const a = analyzeSpecOf(p);
      if (!p.uniform) specs.set(jobId(a), a);
      specs.set(jobId(p), p);
    }
    const added: string[] = [];
    const existing: string[] = [];
    for (const [id, spec] of specs) {
      if (await queue.getJob(id)) {
        existing.push(id);
        continue;
      }
      await queue.add(spec.kind, spec, {
        jobId: id,
        attempts,
        backoff: { type: 'exponential', delay: 1000 },
        removeOnComplete: false,
        removeOnFail: false,
        // Analyses first: every plan of that model waits for it.
        priority: spec.kind === 'analyze' ? 1 : 10,
      });
      added.push(id);
    }
    return { added, existing };
  } finally {
    await queue.close();
  }
}

export interface WorkerOptions extends FarmConnection {
  storage: FarmStorage;
  concurrency?: number;
  /** Native threads per job (default: cores / concurrency). */
  threads: number;
  /** How long a job's lock lives without renewal: a killed worker's job is handed on after it. */
  lockMs?: number;
  /** How many times a job may be found stalled (its worker died) before it is failed. */
  maxStalled?: number;
  benchArgs?: string[];
  name?: string;
  log?(line: string): void;
}

const ANALYSIS_POLL_MS = 1500;

async function waitForAnalysis(job: Job, spec: PlanJobSpec, o: WorkerOptions, token: string | undefined): Promise<void> {
  if (spec.uniform) return;
  const id = jobId(analyzeSpecOf(spec));
  if (o.storage.stageDone(id, 'analysis')) return;
  const queue = new Queue(job.queueName, { connection: redisConnection(o.redis) });
  try {
    const dep = await queue.getJob(id);
    const state = dep ? await dep.getState() : 'missing';
    if (state === 'failed') throw new UnrecoverableError(`analysis job ${id} failed: ${dep?.failedReason ?? 'unknown reason'}`);
    if (state === 'missing') throw new UnrecoverableError(`analysis job ${id} is not in the queue (was it removed?); resubmit`);
    if (state === 'completed' && !o.storage.stageDone(id, 'analysis')) throw new UnrecoverableError(`analysis job ${id} completed but ${o.storage.stageFile(id, 'analysis')} is missing: is the storage shared by every worker?`);
  } finally {
    await queue.close();
  }
  await job.moveToDelayed(Date.now() + ANALYSIS_POLL_MS, token);
  throw new DelayedError();
}

export function startWorker(o: WorkerOptions): Worker {
  const name = o.name ?? `${hostname()}:${process.pid}`;
  const log = o.log ?? (() => {});
  const lockMs = o.lockMs ?? 30_000;
  const worker = new Worker(
    o.queue ?? DEFAULT_QUEUE,
    async (job: Job, token?: string): Promise<AnalyzeJobResult | PlanJobResult> => {
      const spec = job.data as JobSpec;
      const ctx = {
        storage: o.storage,
        jobId: job.id!,
        worker: name,
        threads: o.threads,
        benchArgs: o.benchArgs,
        onStage: (stage: string, done: number, total: number) => {
          void job.updateProgress({ stage, done, total });
          log(`${job.id}: ${stage} (${done}/${total})`);
        },
      };
      try {
        if (spec.kind === 'analyze') return await runAnalyzeJob(spec, ctx);
        await waitForAnalysis(job, spec, o, token);
        return await runPlanJob(spec, ctx);
      } catch (err) {
        if (err instanceof StageError && !err.retryable) throw new UnrecoverableError(err.message);
        throw err;
      }
    },
    {
      connection: redisConnection(o.redis),
      concurrency: o.concurrency ?? 1,
      lockDuration: lockMs,
      stalledInterval: Math.max(1000, Math.floor(lockMs / 2)),
      maxStalledCount: o.maxStalled ?? 3,
      name,
    },
  );
  worker.on('failed', (job, err) => log(`${job?.id ?? '?'}: failed (attempt ${job?.attemptsMade ?? '?'}): ${err.message}`));
  worker.on('completed', (job) => log(`${job.id}: completed`));
  return worker;
}

export interface FarmStatus {
  queue: string;
  counts: Record<string, number>;
  active: { id: string; progress: unknown; worker?: string; attempts: number; startedAt?: string }[];
  failed: { id: string; reason: string; attempts: number }[];
  completed: { id: string; result: unknown }[];
}

/** States in which a job still has work ahead of it. */
const PENDING_STATES = ['wait', 'prioritized', 'active', 'delayed', 'waiting-children'] as const;

async function withQueue<T>(conn: FarmConnection, use: (queue: Queue, name: string) => Promise<T>): Promise<T> {
  const name = conn.queue ?? DEFAULT_QUEUE;
  const queue = new Queue(name, { connection: redisConnection(conn.redis) });
  try {
    return await use(queue, name);
  } finally {
    await queue.close();
  }
}

/** True when no job waits, runs or is delayed (one round trip: cheap enough to poll). */
export async function farmIdle(conn: FarmConnection): Promise<boolean> {
  return withQueue(conn, async (queue) => Object.values(await queue.getJobCounts(...PENDING_STATES)).every((v) => v === 0));
}

export async function farmStatus(conn: FarmConnection, o: { completed?: number } = {}): Promise<FarmStatus> {
  return withQueue(conn, async (queue, name) => {
    const counts = await queue.getJobCounts('wait', 'prioritized', 'active', 'delayed', 'completed', 'failed');
    const active = await queue.getActive();
    const failed = await queue.getFailed();
    const completed = await queue.getCompleted(0, (o.completed ?? 1000) - 1);
    return {
      queue: name,
      counts,
      active: active.map((j) => ({
        id: j.id!,
        progress: j.progress,
        ...(j.processedBy ? { worker: j.processedBy } : {}),
        attempts: j.attemptsMade,
        ...(j.processedOn ? { startedAt: new Date(j.processedOn).toISOString() } : {}),
      })),
      failed: failed.map((j) => ({ id: j.id!, reason: j.failedReason, attempts: j.attemptsMade })),
      completed: completed.map((j) => ({ id: j.id!, result: j.returnvalue as unknown })),
    };
  });
}
