/**
 * Output locks: `<out>.lock` beside an output a command is writing, so two runs never build
 * (or resume) the same output at once. The lock holds {pid, host, started, command, token}.
 *
 * Creation is atomic: the content is written to a temp file which is then hard-linked to the
 * lock name (link fails with EEXIST when a lock exists), so a lock file is never seen empty or
 * half written, even after kill -9. A lock whose pid is dead on this same host is stale (its
 * owner was killed) and is taken over with a warning; a lock from another host is never
 * guessed stale. The lock is released on return, on errors, on process exit and on
 * SIGINT/SIGTERM (kill -9 cannot be caught: that is what the stale check is for).
 */
import { randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname } from 'node:path';

import { tempPathFor } from './atomic.js';
import { FileError } from './errors.js';

export interface LockInfo {
  pid: number;
  host: string;
  started: string;
  command: string;
  token: string;
}

export interface OutputLock {
  readonly path: string;
  readonly info: LockInfo;
  /** Remove the lock if it is still ours (idempotent). */
  release(): void;
}

export function lockPathFor(out: string): string {
  return `${out}.lock`;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readLock(path: string): LockInfo | null {
  try {
    const j = JSON.parse(readFileSync(path, 'utf8')) as LockInfo;
    return typeof j === 'object' && j !== null && Number.isInteger(j.pid) && typeof j.host === 'string' ? j : null;
  } catch {
    return null;
  }
}

/** Create the lock file atomically; false when one exists. */
function tryCreate(path: string, info: LockInfo): boolean {
  const tmp = tempPathFor(path);
  // The output's parent may not exist yet (quantize creates it): the lock comes first.
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(tmp, JSON.stringify(info) + '\n', { flag: 'wx' });
  try {
    linkSync(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new FileError(path, `cannot create the lock file (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err });
  } finally {
    rmSync(tmp, { force: true });
  }
}

/**
 * Lock `out` for `command` (e.g. "quantize"). Throws FileError naming the lock, the owner's
 * pid and host when another live run holds it. `warn` receives the stale-lock takeover notice.
 */
export function acquireOutputLock(out: string, command: string, warn: (msg: string) => void = (m) => process.stderr.write(`lieq: warning: ${m}\n`)): OutputLock {
  const path = lockPathFor(out);
  const info: LockInfo = { pid: process.pid, host: hostname(), started: new Date().toISOString(), command, token: randomBytes(8).toString('hex') };
  for (let attempt = 0; ; attempt++) {
    if (tryCreate(path, info)) break;
    const owner = readLock(path);
    const stale = owner !== null && owner.host === info.host && owner.pid !== process.pid && !pidAlive(owner.pid);
    if (!stale || attempt >= 2) {
      const who = owner ? `another lieq ${owner.command} (pid ${owner.pid} on ${owner.host}, started ${owner.started})` : 'another lieq run (unreadable lock file)';
      throw new FileError(path, `${who} is writing ${out}; if it is dead, remove ${path}`);
    }
    // Move the stale lock aside, then check we moved the one we judged (a racing run may have
    // taken it over in between: then put theirs back and report it as busy on the next pass).
    const aside = `${path}.stale-${process.pid}`;
    try {
      renameSync(path, aside);
    } catch {
      continue; // gone already: try again
    }
    const moved = readLock(aside);
    if (moved?.token !== owner.token) {
      try {
        linkSync(aside, path);
      } catch {
        /* a third run holds it now */
      }
      rmSync(aside, { force: true });
      continue;
    }
    rmSync(aside, { force: true });
    warn(`${path}: taking over a stale lock of pid ${owner.pid} on ${owner.host} (started ${owner.started}; that process is gone)`);
  }

  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    process.off('exit', release);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (readLock(path)?.token === info.token) rmSync(path, { force: true });
  };
  // On a signal: release, then die of the same signal (the default action) once our handler is gone.
  const onSignal = (sig: NodeJS.Signals) => {
    release();
    process.kill(process.pid, sig);
  };
  process.on('exit', release);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return { path, info, release };
}
