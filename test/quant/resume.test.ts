/**
 * Crash safety and resume of `lieq quantize` (and `lieq analyze`) on stories260K:
 *  - kill -9 at seeded random moments (and at every layer boundary through the
 *    LIEQ_TEST_CRASH_AT hook): the output is never visible unless complete, and a rerun with the
 *    same arguments resumes and writes bytes identical to an uninterrupted run (RTN and GPTQ);
 *  - report.json records how many layers came from checkpoints;
 *  - checkpoints of a run with other arguments are refused (unless --force);
 *  - two runs on one output: the second is refused naming the lock, pid and host; a dead
 *    owner's lock is taken over;
 *  - --max-memory refuses what cannot fit, with the numbers.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { loadConfig } from '../../lib/io/config.js';
import { rng } from '../../lib/lieq/allocate.js';
import { makePlan } from '../../lib/lieq/plan.js';
import { estimateQuantizeMemory, parseByteSize, planMemory } from '../../lib/quant/memory-budget.js';
import { dataPath } from '../../lib/util/data-dir.js';
import { acquireOutputLock, lockPathFor } from '../../lib/util/lock.js';
import { lieq, LIEQ_BIN } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('lieq-resume-');
const stories = dataPath('models/stories260K');

/** Every file of a finished output; report.json/report.md without their run facts (documented as varying). */
function outputBytes(out: string): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (rel: string) => {
    for (const e of readdirSync(join(out, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(r);
      else files.set(r, readFileSync(join(out, r)).toString('base64'));
    }
  };
  walk('');
  const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
  for (const k of ['date', 'quantizeSeconds', 'peakRssBytes', 'resumedLayers']) {
    expect(report, k).toHaveProperty(k);
    delete report[k];
  }
  // The reference run wrote to another directory: its name is in the report.
  expect(report.out).toBe(out);
  delete report.out;
  files.set('report.json', JSON.stringify(report));
  files.set('report.md', readFileSync(join(out, 'report.md'), 'utf8').replace(/^- date: .*$/m, '').replace(/^- output: .*$/m, ''));
  return files;
}

const runFor = (args: string[], out: string) => ['quantize', 'stories260K', ...args, '--out', out, '--json'];

/** Start the CLI; resolves with its exit when it ends (by itself or by our kill). */
function start(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [LIEQ_BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: string | null; stderr: string }>((r) => child.on('close', (code, signal) => r({ code, signal, stderr })));
  return { child, exited };
}

/** After a kill: the output is absent or complete (then identical to the reference). */
function checkVisible(out: string, ref: Map<string, string>): boolean {
  if (!existsSync(out)) return false;
  expect(outputBytes(out)).toEqual(ref);
  return true;
}

/**
 * `kills` SIGKILLs at seeded random moments in [0, 1.3 × an uninterrupted run]; each rerun
 * resumes from what the killed ones left. A completed output is compared and removed (a new
 * chain starts). The chain is finished by a last uninterrupted rerun.
 */
async function randomKills(args: string[], out: string, ref: Map<string, string>, refMs: number, kills: number, seed: number): Promise<{ completedEarly: number }> {
  const r = rng(seed);
  let completedEarly = 0;
  for (let k = 0; k < kills; k++) {
    const run = start(runFor(args, out));
    const delay = Math.floor(r() * 1.3 * refMs);
    const timer = setTimeout(() => run.child.kill('SIGKILL'), delay);
    const res = await run.exited;
    clearTimeout(timer);
    if (res.signal === null) expect(res.code, res.stderr).toBe(0);
    if (checkVisible(out, ref)) {
      completedEarly++;
      rmSync(out, { recursive: true });
    } else {
      expect(res.signal, `${delay} ms: no output although the run exited`).toBe('SIGKILL');
    }
    // Nothing but the (resumable) work folder, a dead run's lock and hidden temps is left.
    for (const f of readdirSync(dir).filter((f) => f.startsWith(`${out.split('/').pop()}.`)))
      expect(f).toMatch(/\.(lieq-partial|lock)$/);
  }
  const last = lieq(runFor(args, out));
  expect(last.code, last.stderr).toBe(0);
  expect(outputBytes(out)).toEqual(ref);
  expect(existsSync(`${out}.lieq-partial`)).toBe(false);
  expect(existsSync(`${out}.lock`)).toBe(false);
  return { completedEarly };
}

/** Crash right after each layer's checkpoint (and before the final rename), resuming each time. */
function hookCrashes(args: string[], out: string, ref: Map<string, string>, layers: number[]): void {
  for (const l of layers) {
    const r = lieq(runFor(args, out), { LIEQ_TEST_CRASH_AT: `layer:${l}` });
    expect(r.code, r.stderr).toBe(-1); // killed by the signal
    expect(existsSync(out)).toBe(false);
  }
  const a = lieq(runFor(args, out), { LIEQ_TEST_CRASH_AT: 'assembled' });
  expect(a.code).toBe(-1);
  expect(existsSync(out)).toBe(false);
  expect(a.stderr).toMatch(/taking over a stale lock of pid \d+/);
  const done = lieq(runFor(args, out));
  expect(done.code, done.stderr).toBe(0);
  expect(JSON.parse(done.stdout).resumedLayers).toBe(5); // the 'assembled' crash had finished every layer
  expect(outputBytes(out)).toEqual(ref);
}

function reference(args: string[], name: string): { ref: Map<string, string>; ms: number } {
  const out = join(dir, name);
  const t0 = performance.now();
  const r = lieq(runFor(args, out));
  const ms = performance.now() - t0;
  expect(r.code, r.stderr).toBe(0);
  expect(JSON.parse(r.stdout).resumedLayers).toBe(0);
  return { ref: outputBytes(out), ms };
}

const RTN = ['--uniform', '3', '--lm-head', '8', '--group', '32'];
const GPTQ = ['--uniform', '3', '--backbone', 'gptq', '--calib-samples', '2', '--calib-seqlen', '64'];

describe('kill -9 during quantize, then resume', () => {
  it('RTN: 10 random kills and crashes after layers 1 and 3 and before the rename; every rerun ends byte-identical', async () => {
    const { ref, ms } = reference(RTN, 'rtn-ref');
    await randomKills(RTN, join(dir, 'rtn'), ref, ms, 10, 11);
    hookCrashes(RTN, join(dir, 'rtn-hook'), ref, [1, 3]);
  }, 120_000);

  it('GPTQ: 10 random kills and crashes after layers 0 and 3; calibration states rebuilt from the stored layers', async () => {
    const { ref, ms } = reference(GPTQ, 'gptq-ref');
    await randomKills(GPTQ, join(dir, 'gptq'), ref, ms, 10, 23);
    hookCrashes(GPTQ, join(dir, 'gptq-hook'), ref, [0, 3]);
  }, 120_000);
});

describe('checkpoints of other arguments', () => {
  it('are refused naming what differs; --force discards them; --no-resume recomputes', () => {
    const out = join(dir, 'mismatch');
    expect(lieq(runFor(['--uniform', '3'], out), { LIEQ_TEST_CRASH_AT: 'layer:2' }).code).toBe(-1);
    const other = lieq(runFor(['--uniform', '4'], out));
    expect(other.code).toBe(2);
    expect(other.stderr).toMatch(/mismatch\.lieq-partial holds checkpoints of an interrupted quantize run with different inputs \(plan differ\).*--force/);
    expect(existsSync(out)).toBe(false);
    const forced = lieq(runFor(['--uniform', '4', '--force'], out));
    expect(forced.code, forced.stderr).toBe(0);
    expect(JSON.parse(forced.stdout).resumedLayers).toBe(0);
    rmSync(out, { recursive: true });
    expect(lieq(runFor(['--uniform', '4'], out), { LIEQ_TEST_CRASH_AT: 'layer:1' }).code).toBe(-1);
    const fresh = lieq(runFor(['--uniform', '4', '--no-resume'], out));
    expect(fresh.code, fresh.stderr).toBe(0);
    expect(JSON.parse(fresh.stdout).resumedLayers).toBe(0);
  });

  it('a corrupt checkpoint is recomputed, not trusted', () => {
    const out = join(dir, 'corrupt');
    expect(lieq(runFor(RTN, out), { LIEQ_TEST_CRASH_AT: 'layer:2' }).code).toBe(-1);
    const f = join(`${out}.lieq-partial`, 'layer-00001.safetensors');
    const b = readFileSync(f);
    b[b.length - 3] ^= 0xff; // flip bits in the last tensor's data
    writeFileSync(f, b);
    const r = lieq(runFor(RTN, out));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/layer-00001\.safetensors: checksum mismatch; recomputing layer 1/);
    expect(JSON.parse(r.stdout).resumedLayers).toBe(2);
  });
});

describe('two runs writing one output', () => {
  it('the second is refused naming the lock, pid and host; a dead owner\'s lock is taken over', async () => {
    const out = join(dir, 'locked');
    const a = start(runFor(GPTQ, out));
    const lock = lockPathFor(out);
    while (!existsSync(lock)) await new Promise((r) => setTimeout(r, 5));
    a.child.kill('SIGSTOP'); // alive but frozen: certainly still holding the lock
    try {
      const b = lieq(runFor(GPTQ, out));
      expect(b.code).toBe(3);
      expect(b.stderr).toContain(`${lock}: another lieq quantize (pid ${a.child.pid} on ${hostname()}`);
      expect(b.stderr).toContain(`is writing ${out}; if it is dead, remove ${lock}`);
    } finally {
      a.child.kill('SIGKILL');
    }
    await a.exited;
    expect(existsSync(lock)).toBe(true); // kill -9 cannot clean up
    const c = lieq(runFor(GPTQ, out));
    expect(c.code, c.stderr).toBe(0);
    expect(c.stderr).toMatch(new RegExp(`taking over a stale lock of pid ${a.child.pid}`));
    expect(existsSync(lock)).toBe(false);
  });

  it('in one process: held locks refuse, released ones do not; another host\'s lock is never guessed stale', () => {
    const out = join(dir, 'lib-lock');
    const l1 = acquireOutputLock(out, 'quantize');
    expect(() => acquireOutputLock(out, 'quantize')).toThrow(/another lieq quantize \(pid \d+ on .*\) is writing/);
    l1.release();
    l1.release(); // idempotent
    const l2 = acquireOutputLock(out, 'analyze');
    l2.release();
    writeFileSync(lockPathFor(out), JSON.stringify({ pid: 1, host: 'elsewhere', started: 'x', command: 'quantize', token: 't' }));
    expect(() => acquireOutputLock(out, 'quantize')).toThrow(/pid 1 on elsewhere/);
  });
});

describe('--max-memory', () => {
  it('the estimate is hand-checkable and refusals name the numbers', () => {
    const cfg = loadConfig(stories);
    const plan = makePlan(cfg, new Array(5).fill(3), { method: 'uniform', backbone: 'gptq' });
    const calib = { samples: 128, seqlen: 2048 };
    const e = estimateQuantizeMemory(cfg, plan, calib, 0);
    // 129 sequences (one being replaced) × min(2048, context 512) × hidden 64 × 4 bytes.
    expect(e.calibration).toBe(129 * 512 * 64 * 4);
    const fixed = e.layer + e.activations + e.hessians;
    expect(() => planMemory(cfg, e, fixed - 1, calib)).toThrow(/one layer's working set does not fit/);
    expect(() => planMemory(cfg, e, fixed + 10.5 * 512 * 64 * 4, calib)).toThrow(/at most --calib-samples 9 fit/);
    // Blocks are written after the layers: the whole cap (less the process) is theirs; 64 MiB of f32 rows at most.
    expect(e.perBlockRow).toBe(64 * 6);
    expect(planMemory(cfg, e, fixed + e.calibration, calib).blockRows).toBe(Math.floor((fixed + e.calibration) / 384));
    expect(planMemory(cfg, e, undefined, calib).blockRows).toBe(2 ** 26 / 256);
    expect(parseByteSize('4GiB')).toBe(4 * 2 ** 30);
    expect(parseByteSize('1.5 MB')).toBe(1_500_000);
    expect(() => parseByteSize('lots')).toThrow(/--max-memory: expected a size/);
    const r = lieq(runFor(['--uniform', '3', '--max-memory', '1MiB'], join(dir, 'tiny-cap')));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--max-memory 1\.0 MiB: one layer's working set does not fit/);
  });
});

describe('kill -9 during analyze, then resume', () => {
  // Needs the PD-resume fix in lib/lieq/analyze.ts (a cache with every layer but not every PD returned early, without PD).
  it('per-layer cache: reruns after random kills give the same analysis JSON as an uninterrupted run', async () => {
    const args = (o: string, cache: string) => ({ a: ['analyze', 'stories260K', '--calib', 'tinystories', '--samples', '4', '--seqlen', '256', '--score', 'v1', '-o', o, '--json'], env: { LIEQ_CACHE_DIR: cache } });
    const ref = args(join(dir, 'analysis-ref.json'), join(dir, 'cache-ref'));
    const t0 = performance.now();
    expect(lieq(ref.a, ref.env).code).toBe(0);
    const ms = performance.now() - t0;
    const want = readFileSync(join(dir, 'analysis-ref.json'), 'utf8');
    const cur = args(join(dir, 'analysis.json'), join(dir, 'cache'));
    const r = rng(5);
    for (let k = 0; k < 4; k++) {
      const run = start(cur.a, cur.env);
      const timer = setTimeout(() => run.child.kill('SIGKILL'), Math.floor(r() * ms));
      await run.exited;
      clearTimeout(timer);
      if (existsSync(join(dir, 'analysis.json'))) expect(readFileSync(join(dir, 'analysis.json'), 'utf8')).toBe(want);
    }
    expect(lieq(cur.a, cur.env).code).toBe(0);
    expect(readFileSync(join(dir, 'analysis.json'), 'utf8')).toBe(want);
  }, 60_000);
});
