// The NEON kernels (native/core/*_neon.cpp) on an x86 machine: scripts/check-neon.sh cross-compiles
// the core for aarch64 with native/test/simd_check.cpp and runs it under qemu-user, comparing every
// NEON kernel with its scalar twin and float64 references. Skipped, with the reason printed, where
// the cross compiler or qemu is missing (Debian: g++-aarch64-linux-gnu qemu-user).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));

function missingTool(): string | undefined {
  for (const tool of ['aarch64-linux-gnu-g++', 'qemu-aarch64']) {
    const found = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' });
    if (found.status !== 0) return `${tool} not found (apt-get install g++-aarch64-linux-gnu qemu-user)`;
  }
  return undefined;
}

const missing = process.arch === 'x64' ? missingTool() : 'not an x86-64 host (the script cross-compiles from x86-64)';
if (missing) console.log(`neon.test.ts: skipped: ${missing}`);

describe('NEON kernels (aarch64 cross build under qemu)', () => {
  it.skipIf(missing !== undefined)(
    'match their scalar twins and float64 references: packed GEMV/dequant 2/3/4/8-bit, f32/f16 GEMV, GEMM, ops',
    () => {
      const run = spawnSync('bash', ['scripts/check-neon.sh'], {
        cwd: root,
        encoding: 'utf8',
        env: { ...process.env, LIEQ_NEON_REQUIRED: '1' },
        timeout: 600_000,
      });
      const out = `${run.stdout}${run.stderr}`;
      expect(run.status, out).toBe(0);
      // the binary itself refuses to pass unless the NEON path is compiled and in use
      expect(out).toMatch(/compiled SIMD path neon, in use: yes/);
      expect(out).toMatch(/simd_check: \d+ checks, 0 failures/);
      expect(out).not.toMatch(/^FAIL/m);
    },
    600_000,
  );
});
