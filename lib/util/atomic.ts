/**
 * Atomic outputs: write to a temp path beside the destination, fsync, rename. A crash or an
 * error leaves the destination as it was (absent or the previous complete version).
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, writeSync, existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

import { FileError } from './errors.js';

/** A temp path beside `dest` (same file system, so rename is atomic). */
export function tempPathFor(dest: string): string {
  return join(dirname(dest), `.${basename(dest)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

export function writeFileAtomic(dest: string, data: string | Uint8Array): void {
  mkdirSync(dirname(dest), { recursive: true });
  const tmp = tempPathFor(dest);
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx');
    let done = 0;
    while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, dest);
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
    throw new FileError(dest, `cannot write (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err });
  }
}

export function writeJsonAtomic(dest: string, value: unknown): void {
  writeFileAtomic(dest, JSON.stringify(value, null, 2) + '\n');
}

/**
 * Build a directory atomically: `fill(tmpDir)` writes into a temp directory beside `dest`,
 * which is renamed to `dest` only when `fill` returns. Refuses to replace an existing `dest`
 * unless `overwrite` is set (then the old one is swapped out and removed after the rename).
 */
export async function buildDirAtomic(dest: string, fill: (tmpDir: string) => Promise<void> | void, overwrite = false): Promise<void> {
  if (existsSync(dest) && !overwrite) throw new FileError(dest, 'output already exists (pass --force to replace it)');
  mkdirSync(dirname(dest), { recursive: true });
  removeStaleTemps(dest);
  const tmp = tempPathFor(dest);
  mkdirSync(tmp);
  try {
    await fill(tmp);
    if (existsSync(dest)) {
      const old = tempPathFor(dest) + '.old';
      renameSync(dest, old);
      renameSync(tmp, dest);
      rmSync(old, { recursive: true, force: true });
    } else {
      renameSync(tmp, dest);
    }
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Remove temp files/dirs beside `dest` left by a process that was killed (kill -9, power
 * loss) before it could clean up: names `.<base>.tmp-<pid>-<hex>` whose pid is not running.
 */
export function removeStaleTemps(dest: string): string[] {
  const prefix = `.${basename(dest)}.tmp-`;
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dirname(dest));
  } catch {
    return removed;
  }
  for (const n of names) {
    if (!n.startsWith(prefix)) continue;
    const pid = Number(n.slice(prefix.length).split('-')[0]);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || alive(pid)) continue;
    rmSync(join(dirname(dest), n), { recursive: true, force: true });
    removed.push(n);
  }
  return removed;
}
