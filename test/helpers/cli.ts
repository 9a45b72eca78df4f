/** Run the built `lieq` binary (dist/cli/main.js) and capture its output and exit code. */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

export const LIEQ_BIN = join(import.meta.dirname, '..', '..', process.env.LIEQ_DIST ?? 'dist', 'cli', 'main.js');

export function lieq(args: string[], env: Record<string, string> = {}): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [LIEQ_BIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 600_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
