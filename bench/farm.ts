/**
 * Farm throughput on this machine: jobs/hour with 1, 2 and 4 worker processes on the shipped
 * models, and what the queue costs per job (BullMQ round trip for a no-op job; and, for real
 * jobs, the wall time a job spends outside its stage processes: queueing, spawning, results).
 *
 *   npm run bench:farm [-- --workers 1,2,4 --out bench/results/farm.json]
 *
 * Starts its own Redis on loopback (redis-server from Debian's packages). Each worker count
 * runs the same job list on fresh storage (so nothing is served from a previous run's outputs).
 */
import { spawn, spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Queue, Worker } from 'bullmq';

import { planSpecs } from '../lib/cli/commands/farm.js';
import { farmStatus, redisConnection, submitJobs } from '../lib/farm/queue.js';
import { FarmStorage } from '../lib/farm/storage.js';
import { writeJsonAtomic } from '../lib/util/atomic.js';
import { dataPath } from '../lib/util/data-dir.js';
import { LIEQ_BIN } from '../test/helpers/cli.js';
import { startRedis } from '../test/helpers/redis.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : def;
}

const workerCounts = arg('--workers', '1,2,4').split(',').map(Number);
const out = arg('--out', 'bench/results/farm.json');
const models = [dataPath('models/stories260K'), dataPath('models/tinystories-656K')];
const specs = planSpecs(models, {
  bits: '2.5,3',
  uniform: '2,3,4,8',
  backbone: 'rtn',
  group: '32',
  evalDataset: 'tinystories',
  evalLimit: '8',
  calib: 'tinystories',
  samples: '8',
  seqlen: '128',
  stages: 'quantize,eval',
  attempts: '3',
  queue: 'x',
});

async function noopOverhead(redis: string, n: number): Promise<number> {
  const name = 'noop';
  const queue = new Queue(name, { connection: redisConnection(redis) });
  let done = 0;
  const t0 = performance.now();
  await queue.addBulk(Array.from({ length: n }, (_, i) => ({ name: 'noop', data: { i } })));
  await new Promise<void>((resolve) => {
    const w = new Worker(name, async () => 0, { connection: redisConnection(redis), concurrency: 1 });
    w.on('completed', () => {
      if (++done === n) void w.close().then(resolve);
    });
  });
  const ms = (performance.now() - t0) / n;
  await queue.close();
  return ms;
}

async function runFarm(redis: string, workers: number): Promise<Record<string, unknown>> {
  const root = mkdtempSync(join(tmpdir(), 'lieq-farm-bench-'));
  const queue = `bench-${workers}`;
  try {
    await submitJobs({ redis, queue }, specs);
    const t0 = performance.now();
    const threads = Math.max(1, Math.floor(cpus().length / workers));
    const procs = Array.from({ length: workers }, () =>
      spawn(process.execPath, [LIEQ_BIN, 'farm', 'worker', '--redis', redis, '--queue', queue, '--storage', root, '--job-threads', String(threads), '--exit-when-idle', '--quiet'], { stdio: 'inherit' }),
    );
    await Promise.all(procs.map((p) => new Promise((r) => p.once('exit', r))));
    const wall = (performance.now() - t0) / 1000;
    const status = await farmStatus({ redis, queue });
    const log = new FarmStorage(root).readLog();
    const stageSeconds = log.filter((l) => l.event === 'done' && l.seconds !== undefined).reduce((s, l) => s + l.seconds!, 0);
    const jobs = status.counts.completed ?? 0;
    return {
      workers,
      threadsPerJob: threads,
      jobs,
      failed: status.counts.failed ?? 0,
      wallSeconds: wall,
      jobsPerHour: (jobs / wall) * 3600,
      stageSeconds,
      // Worker-seconds not spent inside a stage process, per job.
      overheadSecondsPerJob: (wall * workers - stageSeconds) / jobs,
    };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  // Workers run the compiled CLI: compile lib/ first so they run the sources benchmarked.
  const tsc = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json', '--outDir', join(LIEQ_BIN, '..', '..')], { stdio: 'inherit' });
  if (tsc.status !== 0 && tsc.status !== 2) throw new Error('tsc failed');
  const redis = await startRedis();
  try {
    const noopMs = await noopOverhead(redis.url, 500);
    console.log(`BullMQ round trip of a no-op job: ${noopMs.toFixed(2)} ms`);
    const runs = [];
    for (const w of workerCounts) {
      const r = await runFarm(redis.url, w);
      console.log(`${w} worker(s): ${r.jobs} jobs in ${(r.wallSeconds as number).toFixed(1)} s = ${(r.jobsPerHour as number).toFixed(0)} jobs/hour; overhead ${(r.overheadSecondsPerJob as number).toFixed(2)} worker-s/job`);
      runs.push(r);
    }
    writeJsonAtomic(out, {
      bench: 'farm',
      date: new Date().toISOString(),
      machine: { cpu: cpus()[0]?.model, cores: cpus().length },
      workload: { models: models.map((m) => m.split('/').pop()), jobsPerRun: specs.length, stages: 'quantize,eval', note: 'plus one shared analysis job per model for the --bits budgets' },
      noopRoundTripMs: noopMs,
      runs,
    });
    console.log(`wrote ${out}`);
  } finally {
    await redis.stop();
  }
}

await main();
