#!/usr/bin/env node
// npm "install" hook and `npm run build:native`: builds the addon offline.
//   1. Unless --force, keep a binary that already loads (prebuilds/ or build/).
//   2. Build with cmake-js (primary: CUDA when nvcc is found; LIEQ_CUDA=0|1 forces it).
//   3. If cmake is missing, build the CPU addon with node-gyp against the installed Node's headers.
// Env: LIEQ_BUILD_DIR (default build), LIEQ_CUDA, LIEQ_SIMD=0 (portable scalar build), LIEQ_DEBUG=1,
// LIEQ_SANITIZE=address,undefined (sanitizer build for scripts/sanitize.sh).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const force = process.argv.includes('--force');
const buildDir = process.env.LIEQ_BUILD_DIR || 'build';

function log(msg) {
  process.stderr.write(`lieq install: ${msg}\n`);
}

function loads() {
  try {
    require('node-gyp-build')(root);
    return true;
  } catch {
    return false;
  }
}

function run(cmd, args) {
  log(`${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: process.env });
  if (r.error) return { ok: false, missing: r.error.code === 'ENOENT' };
  return { ok: r.status === 0, missing: false };
}

function have(cmd) {
  const r = spawnSync(cmd, ['--version'], { stdio: 'ignore' });
  return !r.error && r.status === 0;
}

if (!force && buildDir === 'build' && loads()) {
  log('a built addon loads; nothing to do (npm run build:native rebuilds)');
  process.exit(0);
}

const bin = (name) => join(root, 'node_modules', '.bin', name);
if (have('cmake') && existsSync(bin('cmake-js'))) {
  const args = ['compile', '--out', buildDir, '--parallel', String(Math.max(1, (await import('node:os')).cpus().length))];
  if (process.env.LIEQ_CUDA) args.push(`--CDLIEQ_CUDA=${process.env.LIEQ_CUDA}`);
  if (process.env.LIEQ_SIMD === '0') args.push('--CDLIEQ_SIMD=OFF');
  if (process.env.LIEQ_SANITIZE) args.push(`--CDLIEQ_SANITIZE=${process.env.LIEQ_SANITIZE}`);
  if (process.env.LIEQ_DEBUG === '1') args.push('--debug');
  const r = run(bin('cmake-js'), args);
  process.exit(r.ok ? 0 : 1);
}

// Fallback: node-gyp, CPU only, headers from the Node installation that runs this script.
log('cmake/cmake-js not found: building the CPU addon with node-gyp');
const nodedir = dirname(dirname(process.execPath));
const gyp = existsSync(bin('node-gyp')) ? bin('node-gyp') : 'node-gyp';
const r = run(gyp, ['rebuild', `--nodedir=${nodedir}`]);
process.exit(r.ok ? 0 : 1);
