/**
 * `lieq farm submit | worker | status`: many (model, budget, backbone) jobs over a fleet of
 * build servers through a Redis queue (lib/farm). docs/farm.md explains deployment.
 */
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';

import type { Command } from 'commander';

import { parseStages, type FarmBackbone, type PlanJobSpec } from '../../farm/jobs.js';
import { DEFAULT_QUEUE, DEFAULT_REDIS, farmIdle, farmStatus, startWorker, submitJobs } from '../../farm/queue.js';
import { FarmStorage } from '../../farm/storage.js';
import { resolveModelArg } from '../../util/data-dir.js';
import { UsageError } from '../../util/errors.js';
import { printJson, table } from '../format.js';
import { parseChoice, parseInteger, parseNumber } from '../options.js';

interface ConnOpts {
  redis?: string;
  queue: string;
}

function conn(o: ConnOpts): { redis: string; queue: string } {
  return { redis: o.redis ?? process.env.LIEQ_REDIS_URL ?? DEFAULT_REDIS, queue: o.queue };
}

function list(v: string, name: string): string[] {
  const items = v.split(',').map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) throw new UsageError(`${name}: expected a comma-separated list, got "${v}"`);
  return items;
}

interface SubmitCli extends ConnOpts {
  bits?: string;
  uniform?: string;
  backbone: string;
  group: string;
  evalDataset: string;
  evalLimit: string;
  calib: string;
  samples: string;
  seqlen: string;
  stages: string;
  attempts: string;
  json?: boolean;
}

export function planSpecs(models: string[], o: SubmitCli): PlanJobSpec[] {
  if (o.bits === undefined && o.uniform === undefined) throw new UsageError('pass --bits LIST (LieQ budgets) and/or --uniform LIST');
  const budgets = [
    ...(o.bits !== undefined ? list(o.bits, '--bits').map((b) => ({ bits: parseNumber(b, '--bits'), uniform: false })) : []),
    ...(o.uniform !== undefined ? list(o.uniform, '--uniform').map((b) => ({ bits: parseNumber(b, '--uniform'), uniform: true })) : []),
  ];
  for (const b of budgets) if (!(b.bits >= 2 && b.bits <= 16)) throw new UsageError(`budget ${b.bits}: expected 2..16 bits`);
  const backbones = list(o.backbone, '--backbone').map((b) => parseChoice(b, '--backbone', ['rtn', 'gptq'] as const) as FarmBackbone);
  const groupSize = Number(parseChoice(o.group, '--group', ['32', '64', '128'] as const));
  const stages = parseStages(o.stages);
  const specs: PlanJobSpec[] = [];
  for (const m of models) {
    const model = resolve(resolveModelArg(m));
    for (const b of budgets)
      for (const backbone of backbones)
        specs.push({
          kind: 'plan',
          model,
          bits: b.bits,
          uniform: b.uniform,
          backbone,
          groupSize,
          evalDataset: o.evalDataset,
          evalLimit: parseInteger(o.evalLimit, '--eval-limit', 1),
          calib: o.calib,
          samples: parseInteger(o.samples, '--samples', 1),
          seqlen: parseInteger(o.seqlen, '--seqlen', 2),
          stages,
        });
  }
  return specs;
}

interface WorkerCli extends ConnOpts {
  storage?: string;
  concurrency: string;
  jobThreads?: string;
  lockMs: string;
  maxStalled: string;
  benchArgs?: string;
  exitWhenIdle?: boolean;
  quiet?: boolean;
}

interface StatusCli extends ConnOpts {
  json?: boolean;
}

function storageOf(o: { storage?: string }): FarmStorage {
  const dir = o.storage ?? process.env.LIEQ_FARM_STORAGE;
  if (!dir) throw new UsageError('--storage DIR (or LIEQ_FARM_STORAGE): the shared folder every worker reads models from and writes outputs to');
  return new FarmStorage(dir).ensure();
}

export function registerFarm(program: Command): void {
  const farm = program.command('farm').description('run many quantization jobs on many machines through a Redis queue (BullMQ)');
  const common = (c: Command) =>
    c.option('--redis <url>', `Redis URL (default LIEQ_REDIS_URL or ${DEFAULT_REDIS})`).option('--queue <name>', 'queue name', DEFAULT_QUEUE);

  common(
    farm
      .command('submit')
      .description('enqueue one job per model × budget × backbone (the analysis of each model runs once and is shared)')
      .argument('<models...>', 'model directories on the shared storage (or shipped model names)')
      .option('--bits <list>', 'LieQ average-bit budgets, e.g. 2.05,2.5,3')
      .option('--uniform <list>', 'uniform bit widths, e.g. 4,8')
      .option('--backbone <list>', 'rtn and/or gptq', 'rtn')
      .option('--group <g>', 'group size: 32 | 64 | 128', '128')
      .option('--eval-dataset <name>', 'perplexity dataset of the eval stage', 'wikitext2')
      .option('--eval-limit <n>', 'evaluation windows', '16')
      .option('--calib <dataset>', 'calibration text of the analysis', 'wikitext2')
      .option('--samples <n>', 'calibration sequences', '32')
      .option('--seqlen <n>', 'calibration tokens per sequence', '512')
      .option('--stages <list>', 'quantize[,eval][,bench]', 'quantize,eval')
      .option('--attempts <n>', 'attempts per job before it fails for good', '3')
      .option('--json', 'print the job ids as JSON'),
  ).action(async (models: string[], o: SubmitCli) => {
    const specs = planSpecs(models, o);
    const r = await submitJobs(conn(o), specs, { attempts: parseInteger(o.attempts, '--attempts', 1) });
    if (o.json) return printJson(r);
    process.stdout.write(`queued ${r.added.length} job(s)${r.existing.length ? `; ${r.existing.length} already in the queue` : ''}\n`);
    for (const id of r.added) process.stdout.write(`  + ${id}\n`);
  });

  common(
    farm
      .command('worker')
      .description('take jobs from the queue and run them here until stopped (SIGINT/SIGTERM finish the running jobs first)')
      .option('--storage <dir>', 'shared storage folder (default LIEQ_FARM_STORAGE)')
      .option('--concurrency <n>', 'jobs at once on this machine', '1')
      .option('--job-threads <n>', 'native threads per job (default: cores / concurrency)')
      .option('--lock-ms <ms>', "a dead worker's job is handed on after this long", '30000')
      .option('--max-stalled <n>', 'times a job may lose its worker before it fails', '3')
      .option('--bench-args <args>', 'extra arguments of the bench stage, space-separated')
      .option('--exit-when-idle', 'exit once the queue has nothing waiting or running')
      .option('--quiet', 'no log lines'),
  ).action(async (o: WorkerCli) => {
    const c = conn(o);
    const storage = storageOf(o);
    const concurrency = parseInteger(o.concurrency, '--concurrency', 1);
    const threads = o.jobThreads !== undefined ? parseInteger(o.jobThreads, '--job-threads', 1) : Math.max(1, Math.floor(availableParallelism() / concurrency));
    const log = o.quiet ? undefined : (line: string) => process.stderr.write(`lieq farm: ${line}\n`);
    const worker = startWorker({
      ...c,
      storage,
      concurrency,
      threads,
      lockMs: parseInteger(o.lockMs, '--lock-ms', 500),
      maxStalled: parseInteger(o.maxStalled, '--max-stalled', 1),
      ...(o.benchArgs ? { benchArgs: o.benchArgs.split(/\s+/).filter(Boolean) } : {}),
      ...(log ? { log } : {}),
    });
    await worker.waitUntilReady();
    log?.(`worker ${worker.name} on ${c.queue}: concurrency ${concurrency}, ${threads} thread(s) per job, storage ${storage.root}`);
    await new Promise<void>((done) => {
      const stop = () => void worker.close().then(done);
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      if (o.exitWhenIdle) {
        const timer = setInterval(() => {
          void farmIdle(c).then((idle) => {
            if (idle) {
              clearInterval(timer);
              stop();
            }
          });
        }, 1000);
      }
    });
  });

  common(farm.command('status').description('queue depth, running jobs with progress, failures').option('--json', 'print JSON')).action(async (o: StatusCli) => {
    const s = await farmStatus(conn(o));
    if (o.json) return printJson(s);
    const c = s.counts;
    process.stdout.write(`queue ${s.queue}: ${(c.wait ?? 0) + (c.prioritized ?? 0)} waiting, ${c.delayed ?? 0} delayed, ${c.active ?? 0} running, ${c.completed ?? 0} completed, ${c.failed ?? 0} failed\n`);
    if (s.active.length)
      process.stdout.write(
        table(
          ['running', 'stage', 'worker', 'attempt'],
          s.active.map((a) => {
            const p = a.progress as { stage?: string; done?: number; total?: number } | undefined;
            return [a.id, p?.stage ? `${p.stage} ${p.done}/${p.total}` : '-', a.worker ?? '-', a.attempts + 1];
          }),
        ) + '\n',
      );
    if (s.failed.length) process.stdout.write(table(['failed', 'attempts', 'error'], s.failed.map((f) => [f.id, f.attempts, f.reason.slice(0, 120)])) + '\n');
  });
}
