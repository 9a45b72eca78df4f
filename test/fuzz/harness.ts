/**
 * Runs one fuzz input against a target and judges the outcome. Accepted and LieqError are
 * fine; anything else is a failure: another exception type (TypeError, RangeError from
 * JSON.stringify, ...), an input that takes longer than SLOW_MS (a hang in the making), or
 * an ArrayBuffer allocation of more than MEMORY_SLACK bytes beyond what the input itself
 * could justify. Also the corpus format: one JSON file per input, files base64-encoded.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { LieqError } from '../../lib/util/errors.js';
import type { FileSet } from './mutate.js';
import type { FuzzTarget } from './targets.js';

// Generous: shared CI machines stall for a second or two; a real hang runs into the fuzz script's 30 s watchdog.
export const SLOW_MS = 5000;
/** External memory an input may leave allocated beyond 16× its own size. */
export const MEMORY_SLACK = 64 * 2 ** 20;

export type Outcome =
  | { kind: 'accepted'; ms: number }
  | { kind: 'rejected'; ms: number; code: string }
  | { kind: 'failure'; ms: number; reason: string };

/** Write `files` into `dir` (the files of one target always have the same names). */
export function materialize(dir: string, files: FileSet): void {
  mkdirSync(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(files)) writeFileSync(join(dir, name), bytes);
}

export async function runInput(target: FuzzTarget, dir: string, files: FileSet): Promise<Outcome> {
  materialize(dir, files);
  const inputBytes = Object.values(files).reduce((s, b) => s + b.length, 0);
  const before = process.memoryUsage().arrayBuffers;
  const t0 = performance.now();
  let outcome: Outcome;
  try {
    await target.run(dir);
    outcome = { kind: 'accepted', ms: performance.now() - t0 };
  } catch (err) {
    const ms = performance.now() - t0;
    if (err instanceof LieqError && typeof err.code === 'string' && err.code.length > 0 && err.message.length > 0) {
      outcome = { kind: 'rejected', ms, code: err.code };
    } else {
      const e = err as Error;
      outcome = { kind: 'failure', ms, reason: `${e?.constructor?.name ?? typeof err}: ${String(e?.message ?? err).slice(0, 300)}\n${(e?.stack ?? '').split('\n').slice(1, 6).join('\n')}` };
    }
  }
  if (outcome.kind !== 'failure' && outcome.ms > SLOW_MS) outcome = { kind: 'failure', ms: outcome.ms, reason: `slow: ${outcome.ms.toFixed(0)} ms (limit ${SLOW_MS} ms)` };
  const grown = process.memoryUsage().arrayBuffers - before;
  if (outcome.kind !== 'failure' && grown > MEMORY_SLACK + 16 * inputBytes)
    outcome = { kind: 'failure', ms: outcome.ms, reason: `memory: ${(grown / 2 ** 20).toFixed(0)} MiB of ArrayBuffers for a ${inputBytes}-byte input` };
  return outcome;
}

// ---- corpus ---------------------------------------------------------------------------------

export interface CorpusEntry {
  target: string;
  /** Why it is here (the failure it reproduced when found). */
  note: string;
  files: Record<string, string>;
}

export function corpusDir(root: string, target: string): string {
  return join(root, target);
}

/** Store an input as <root>/<target>/<sha1>.json; returns the path. */
export function saveCorpusEntry(root: string, target: string, files: FileSet, note: string): string {
  const entry: CorpusEntry = { target, note, files: Object.fromEntries(Object.entries(files).map(([k, v]) => [k, Buffer.from(v).toString('base64')])) };
  const text = JSON.stringify(entry, null, 1);
  const dir = corpusDir(root, target);
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${createHash('sha1').update(text).digest('hex').slice(0, 16)}.json`);
  writeFileSync(path, text);
  return path;
}

export function loadCorpus(root: string, target: string): { path: string; files: FileSet; note: string }[] {
  let names: string[];
  try {
    names = readdirSync(corpusDir(root, target)).filter((n) => n.endsWith('.json')).sort();
  } catch {
    return [];
  }
  return names.map((n) => {
    const path = join(corpusDir(root, target), n);
    const e = JSON.parse(readFileSync(path, 'utf8')) as CorpusEntry;
    return { path, note: e.note, files: Object.fromEntries(Object.entries(e.files).map(([k, v]) => [k, new Uint8Array(Buffer.from(v, 'base64'))])) };
  });
}
