/**
 * The farm's shared storage: one directory every worker mounts at the same path (NFS, a
 * bind mount, a local disk for a one-machine farm). Layout:
 *
 *   STORAGE/cache/                 analysis cache shared by every job (LIEQ_CACHE_DIR of stages)
 *   STORAGE/jobs/<jobId>/          one folder per job
 *     quantized/                   `lieq quantize` output (appears whole, by rename)
 *     eval.json  bench.json        stage outputs (written to a temp file and renamed)
 *     result.json                  the job's summary, written last: its presence = job done
 *   STORAGE/farm-log.jsonl         append-only audit: one line per stage started/done/skipped
 *
 * Every output appears atomically, so "the file exists" means "the stage finished"; a retried
 * job skips finished stages instead of redoing them. That is what makes jobs idempotent.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { writeJsonAtomic } from '../util/atomic.js';
import { FileError } from '../util/errors.js';

export interface FarmLogLine {
  time: string;
  job: string;
  stage: string;
  event: 'started' | 'done' | 'skipped' | 'failed';
  worker: string;
  pid: number;
  seconds?: number;
  error?: string;
}

export class FarmStorage {
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  /** Create the layout (idempotent); refuses a path that exists and is not a directory. */
  ensure(): this {
    try {
      mkdirSync(join(this.root, 'jobs'), { recursive: true });
      mkdirSync(this.cacheDir, { recursive: true });
    } catch (err) {
      throw new FileError(this.root, `cannot use as farm storage (${(err as Error).message})`, { cause: err });
    }
    return this;
  }

  get cacheDir(): string {
    return join(this.root, 'cache');
  }

  jobDir(id: string): string {
    return join(this.root, 'jobs', id);
  }

  quantizedDir(id: string): string {
    return join(this.jobDir(id), 'quantized');
  }

  stageFile(id: string, stage: 'eval' | 'bench' | 'result' | 'analysis'): string {
    return join(this.jobDir(id), `${stage}.json`);
  }

  /** Has this stage's output appeared? (quantize: the packed directory with its report). */
  stageDone(id: string, stage: 'quantize' | 'eval' | 'bench' | 'result' | 'analysis'): boolean {
    if (stage === 'quantize') return existsSync(join(this.quantizedDir(id), 'report.json'));
    return existsSync(this.stageFile(id, stage));
  }

  readJson<T>(file: string): T {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  }

  writeStage(id: string, stage: 'eval' | 'bench' | 'result' | 'analysis', value: unknown): void {
    mkdirSync(this.jobDir(id), { recursive: true });
    writeJsonAtomic(this.stageFile(id, stage), value);
  }

  get logFile(): string {
    return join(this.root, 'farm-log.jsonl');
  }

  /** One line per write with O_APPEND: lines from concurrent workers never interleave. */
  log(line: Omit<FarmLogLine, 'time' | 'pid'>): void {
    appendFileSync(this.logFile, JSON.stringify({ time: new Date().toISOString(), pid: process.pid, ...line }) + '\n');
  }

  readLog(): FarmLogLine[] {
    if (!existsSync(this.logFile)) return [];
    return readFileSync(this.logFile, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as FarmLogLine);
  }
}
