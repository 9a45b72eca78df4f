/**
 * Compile lib/ to dist/ once per test run, so CLI tests spawn the real `lieq` binary built
 * from the sources under test (tsc emits even when another file has type errors; `npm run
 * typecheck` is the strict gate). LIEQ_DIST picks another output folder (parallel work trees).
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

export default function setup(): void {
  const root = join(import.meta.dirname, '..');
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const outDir = process.env.LIEQ_DIST ?? 'dist';
  const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', outDir], { cwd: root, encoding: 'utf8' });
  if (r.status !== 0 && r.status !== 2) throw new Error(`tsc failed to run:\n${r.stdout}${r.stderr}`);
}
