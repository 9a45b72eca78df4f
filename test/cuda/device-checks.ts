/**
 * The GPU checks as a plain program, for the device machine (no vitest there): bundled by
 * scripts/device-prepare.sh into .device/checks.mjs, run by scripts/device-run.sh checks.
 * Prints every check and exits 1 if any failed. Seeds vary per run (printed) so each run draws
 * fresh inputs.
 */
import { copiedLayerChecks, formatResults, linearChecks, shippedModelChecks, tinyVariantChecks } from './gpu-checks.js';
import { cudaUnavailableReason } from '../../lib/cuda/gpu-model.js';

const why = cudaUnavailableReason();
if (why) {
  console.error(`GPU checks cannot run: ${why}`);
  process.exit(2);
}
const seed = Number(process.env.SEED ?? Date.now() & 0xffff);
console.log(`seed ${seed}`);
let failed = 0;
for (const [name, run] of [
  ['linears', async () => linearChecks(seed)],
  ['tiny models', () => tinyVariantChecks(seed)],
  ['shipped models', () => shippedModelChecks(seed)],
  ['copied layers', () => copiedLayerChecks(seed)],
] as const) {
  const t0 = performance.now();
  const res = await run();
  console.log(`== ${name} (${res.length} checks, ${((performance.now() - t0) / 1000).toFixed(1)} s)\n${formatResults(res)}`);
  failed += res.filter((r) => !r.pass).length;
}
console.log(failed ? `${failed} check(s) FAILED` : 'all GPU checks passed');
process.exit(failed ? 1 : 0);
