/**
 * The farm against a real Redis server and real worker processes on the shipped model:
 * every job completes exactly once, a worker killed with SIGKILL mid-stage hands its job on
 * (and its child process dies with it), a poison job fails after its attempts with the error
 * recorded, and resubmitting the same work adds nothing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { jobId, parseStages, type PlanJobSpec } from '../../lib/farm/jobs.js';
import { farmStatus, submitJobs } from '../../lib/farm/queue.js';
import { FarmStorage, type FarmLogLine } from '../../lib/farm/storage.js';
import { planSpecs } from '../../lib/cli/commands/farm.js';
import { dataPath } from '../../lib/util/data-dir.js';
import { LIEQ_BIN, lieq } from '../helpers/cli.js';
import { haveRedis, startRedis, type RedisServer } from '../helpers/redis.js';
import { tempDir } from '../helpers/tmp.js';

const stories = dataPath('models/stories260K');
const redisMissing = !haveRedis();
if (redisMissing && process.env.CI) throw new Error('redis-server is not installed: .ci/run installs it (apt-get install redis-server)');
if (redisMissing) process.stderr.write('test/farm: redis-server not found; farm tests skipped (apt-get install redis-server)\n');

const base = {
  bits: undefined as string | undefined,
  uniform: undefined as string | undefined,
  backbone: 'rtn',
  group: '32',
  evalDataset: 'tinystories',
  evalLimit: '2',
  calib: 'tinystories',
  samples: '4',
  seqlen: '64',
  stages: 'quantize,eval',
  attempts: '3',
  queue: 'q',
};

describe('job specs', () => {
  it('expands models × budgets × backbones with stable ids that differ when a setting differs', () => {
    const specs = planSpecs([stories], { ...base, bits: '2.5,3', uniform: '4', backbone: 'rtn,gptq' });
    expect(specs).toHaveLength(6);
    const ids = specs.map(jobId);
    expect(new Set(ids).size).toBe(6);
    expect(planSpecs([stories], { ...base, bits: '2.5,3', uniform: '4', backbone: 'rtn,gptq' }).map(jobId)).toEqual(ids);
    const other = planSpecs([stories], { ...base, bits: '2.5', group: '64' })[0];
    expect(jobId(other)).not.toBe(jobId(specs[0]));
    for (const id of ids) expect(id).not.toContain(':');
  });

  it('refuses bad options', () => {
    expect(() => planSpecs([stories], { ...base })).toThrow(/--bits/);
    expect(() => planSpecs([stories], { ...base, bits: '1' })).toThrow(/2\.\.16/);
    expect(() => parseStages('eval')).toThrow(/quantize is required/);
    expect(() => parseStages('quantize,nope')).toThrow(/unknown stage "nope"/);
    expect(parseStages('bench,quantize')).toEqual(['quantize', 'bench']);
  });
});

function startWorker(redis: string, queue: string, storage: string, extra: string[] = [], env: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, [LIEQ_BIN, 'farm', 'worker', '--redis', redis, '--queue', queue, '--storage', storage, '--lock-ms', '1500', '--job-threads', '1', '--exit-when-idle', ...extra], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...env },
  });
}

function exited(p: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => (p.exitCode !== null || p.signalCode !== null ? resolve(p.exitCode) : p.once('exit', (code) => resolve(code))));
}

/** Per job and stage, how many times it ran to 'done'. */
function doneCounts(log: FarmLogLine[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const l of log) if (l.event === 'done') m.set(`${l.job}/${l.stage}`, (m.get(`${l.job}/${l.stage}`) ?? 0) + 1);
  return m;
}

/** Processes whose environment names `pid` as their LIEQ_PARENT_PID (farm stage children). */
function childrenOf(pid: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const env = readFileSync(`/proc/${entry}/environ`, 'utf8');
      if (env.split('\0').includes(`LIEQ_PARENT_PID=${pid}`)) found.push(Number(entry));
    } catch {
      // gone, or not ours
    }
  }
  return found;
}

describe.skipIf(redisMissing)('farm on a real Redis server', () => {
  let redis: RedisServer;
  const dir = tempDir('lieq-farm-');
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('runs every job exactly once across two workers and shares the analysis', async () => {
    const storage = join(dir, 'storage-a');
    const specs = planSpecs([stories], { ...base, bits: '2.5,3', uniform: '4' });
    const sub = await submitJobs({ redis: redis.url, queue: 'a' }, specs);
    expect(sub.added).toHaveLength(4); // one analysis + three plans
    const again = await submitJobs({ redis: redis.url, queue: 'a' }, specs);
    expect(again.added).toHaveLength(0);
    expect(again.existing).toHaveLength(4);

    const workers = [startWorker(redis.url, 'a', storage), startWorker(redis.url, 'a', storage)];
    const codes = await Promise.all(workers.map(exited));
    expect(codes).toEqual([0, 0]);

    const status = await farmStatus({ redis: redis.url, queue: 'a' });
    expect(status.counts.completed).toBe(4);
    expect(status.counts.failed).toBe(0);
    const fs = new FarmStorage(storage);
    const counts = doneCounts(fs.readLog());
    for (const s of specs) {
      const id = jobId(s);
      const result = JSON.parse(readFileSync(fs.stageFile(id, 'result'), 'utf8'));
      expect(result.perplexity.value).toBeGreaterThan(1);
      expect(existsSync(join(fs.quantizedDir(id), 'report.json'))).toBe(true);
      for (const stage of ['quantize', 'eval', 'result']) expect(counts.get(`${id}/${stage}`)).toBe(1);
    }
    // One analysis for both budgets.
    expect([...counts.keys()].filter((k) => k.endsWith('/analyze'))).toHaveLength(1);
    // ...and the quantize stages found it in the shared cache instead of analysing again.
    // (one geometry analysis and one table of measured costs: a second of either would mean a miss).
    const cached = readdirSync(fs.cacheDir).filter((f) => f.endsWith('.json')).map((f) => f.split('-')[0]).sort();
    expect(cached).toEqual(['analysis', 'measured']);
    // Uniform 4 bits is close to full precision; a 2.5-bit plan is worse.
    const ppl = (i: number) => JSON.parse(readFileSync(fs.stageFile(jobId(specs[i]), 'result'), 'utf8')).perplexity.value as number;
    expect(ppl(2)).toBeLessThan(ppl(0));
    // status from the CLI agrees.
    const cli = lieq(['farm', 'status', '--redis', redis.url, '--queue', 'a', '--json']);
    expect(cli.code).toBe(0);
    expect(JSON.parse(cli.stdout).counts.completed).toBe(4);
  });

  it('hands a SIGKILLed worker’s job to another worker, kills its child, and still completes every job once', async () => {
    const storage = join(dir, 'storage-b');
    const fs = new FarmStorage(storage);
    const specs: PlanJobSpec[] = planSpecs([stories], { ...base, uniform: '3,4,8', evalLimit: '4' });
    await submitJobs({ redis: redis.url, queue: 'b' }, specs);
    const victim = startWorker(redis.url, 'b', storage);
    // Wait until the victim is inside a stage (its child lieq process is running), then kill it.
    const deadline = Date.now() + 60_000;
    while (!fs.readLog().some((l) => l.event === 'started' && l.pid === victim.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    expect(fs.readLog().some((l) => l.pid === victim.pid)).toBe(true);
    await new Promise((r) => setTimeout(r, 150));
    victim.kill('SIGKILL');
    await exited(victim);
    // Its stage child notices within its poll interval and exits.
    let orphans = childrenOf(victim.pid!);
    for (let i = 0; i < 40 && orphans.length; i++) {
      await new Promise((r) => setTimeout(r, 100));
      orphans = childrenOf(victim.pid!);
    }
    expect(orphans).toEqual([]);

    const rescuers = [startWorker(redis.url, 'b', storage), startWorker(redis.url, 'b', storage)];
    expect(await Promise.all(rescuers.map(exited))).toEqual([0, 0]);
    const status = await farmStatus({ redis: redis.url, queue: 'b' });
    expect(status.counts.completed).toBe(specs.length);
    expect(status.counts.failed).toBe(0);
    const log = fs.readLog();
    const counts = doneCounts(log);
    for (const s of specs) for (const stage of ['quantize', 'eval', 'result']) expect(counts.get(`${jobId(s)}/${stage}`)).toBe(1);
    // The killed worker started something it never finished.
    const victimLines = log.filter((l) => l.pid === victim.pid);
    expect(victimLines.some((l) => l.event === 'started')).toBe(true);
  });

  it('retries a quantize stage killed after layer 2 and resumes from its per-layer checkpoints', async () => {
    const storage = join(dir, 'storage-d');
    const fs = new FarmStorage(storage);
    const spec = planSpecs([stories], { ...base, uniform: '3' })[0];
    await submitJobs({ redis: redis.url, queue: 'd' }, [spec]);
    // The test hook SIGKILLs the quantize process right after it checkpoints layer 2 — only when
    // it computes layer 2, so the retry (which finds layers 0–2 checkpointed) runs through.
    const w = startWorker(redis.url, 'd', storage, [], { LIEQ_TEST_CRASH_AT: 'layer:2' });
    expect(await exited(w)).toBe(0);
    const status = await farmStatus({ redis: redis.url, queue: 'd' });
    expect(status.counts.completed).toBe(1);
    const id = jobId(spec);
    const log = fs.readLog().filter((l) => l.job === id && l.stage === 'quantize');
    expect(log.map((l) => l.event)).toEqual(['started', 'failed', 'started', 'done']);
    expect(log[1].error).toMatch(/SIGKILL/);
    const report = JSON.parse(readFileSync(join(fs.quantizedDir(id), 'report.json'), 'utf8'));
    expect(report.resumedLayers).toBe(3);
  });

  it('fails a poison job after its attempts and records the error', async () => {
    const storage = join(dir, 'storage-c');
    const missing = join(dir, 'no-such-model');
    const spec: PlanJobSpec = { ...planSpecs([stories], { ...base, uniform: '4' })[0], model: missing };
    await submitJobs({ redis: redis.url, queue: 'c' }, [spec], { attempts: 2 });
    const w = startWorker(redis.url, 'c', storage);
    expect(await exited(w)).toBe(0);
    const status = await farmStatus({ redis: redis.url, queue: 'c' });
    expect(status.counts.failed).toBe(1);
    expect(status.failed[0].id).toBe(jobId(spec));
    expect(status.failed[0].attempts).toBe(2);
    expect(status.failed[0].reason).toContain('no-such-model');
    const cli = lieq(['farm', 'status', '--redis', redis.url, '--queue', 'c']);
    expect(cli.stdout).toMatch(/1 failed/);
    expect(cli.stdout).toContain('no-such-model');
  });
});
