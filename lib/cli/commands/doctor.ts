import type { Command } from 'commander';

import { doctor } from '../../doctor.js';
import { formatBytes, printJson } from '../format.js';

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('which native addon loaded, its build flavour, CPU SIMD features, threads and CUDA devices')
    .option('--json', 'print JSON for scripts')
    .action((opts: { json?: boolean }) => {
      const r = doctor();
      if (opts.json) return printJson(r);
      const out: string[] = [];
      out.push(`addon     ${r.addon.path}`);
      out.push(`build     ${r.addon.flavour} (N-API ${r.addon.napiVersion}${r.addon.compiler ? `, gcc ${r.addon.compiler}` : ''})`);
      const feats = (['avx2', 'fma', 'f16c', 'avx512f', 'neon'] as const).filter((k) => r.cpu[k]);
      out.push(`cpu       ${r.cpu.model}`);
      out.push(`simd      detected: ${feats.join(', ') || 'none'}; kernels in use: ${r.cpu.simdPath}`);
      out.push(`threads   ${r.cpu.threads} used of ${r.cpu.hardwareThreads} hardware threads (LIEQ_THREADS or --threads to change)`);
      out.push(`memory    ${formatBytes(r.totalMemory)}`);
      if (!r.cuda.compiled) {
        out.push(`cuda      none: ${r.cuda.reason}`);
      } else if (r.cuda.devices.length === 0) {
        out.push(`cuda      compiled (runtime ${fmtCuda(r.cuda.runtimeVersion)}), no usable device: ${r.cuda.reason}`);
      } else {
        out.push(`cuda      runtime ${fmtCuda(r.cuda.runtimeVersion)}, driver ${fmtCuda(r.cuda.driverVersion)}`);
        for (const d of r.cuda.devices)
          out.push(`  [${d.index}] ${d.name}, ${formatBytes(d.totalMemory)}, compute ${d.computeCapability}, ${d.multiprocessors} SMs`);
      }
      out.push(`node      ${r.node} on ${r.platform}`);
      process.stdout.write(out.join('\n') + '\n');
    });
}

function fmtCuda(v: number): string {
  return v ? `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}` : 'none';
}
