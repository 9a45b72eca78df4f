/**
 * One decode step of the LLaMA-3.2-1B-shaped random model, for a per-kernel breakdown under
 * Nsight Compute (scripts/device-run.sh profile runs it under ncu and skips to the last step).
 *
 * Sequence: load the variant (argv[2]: fp16 | 4bit | 2bit, default 4bit), prefill PROMPT tokens
 * as 16-row graph steps, then WARM batch-1 decode steps, then the host-timed steps: their
 * median wall time (JS await included) against the kernels' sum shows the per-step overhead
 * outside the kernels (launch gaps, host round trip). Prints the kernel count of one step so
 * the ncu launch-skip can be checked.
 */
import { GpuModel } from '../../lib/cuda/gpu-model.js';
import { RandomModels, VARIANTS } from './random-1b.js';

export const PROMPT = 128;
export const WARM = 4;
const TIMED = 32;

const which = process.argv[2] ?? '4bit';
const variant = VARIANTS[{ fp16: 0, '4bit': 1, '2bit': 2 }[which] ?? -1];
if (!variant) throw new Error(`profile-step: unknown variant ${which} (fp16, 4bit, 2bit)`);
const models = new RandomModels();
const gpu = GpuModel.load(models.model(variant), { maxSeqs: 1, maxContext: PROMPT + WARM + TIMED + 8 });
const st = gpu.stats();
const layers = models.cfg.numLayers;
// embed + per layer (norm, qkv, qkv_post, attention, o, norm, gate/up, silu_mul, down) + norm + head
const kernels = 1 + layers * 9 + 2 + (layers - st.fusedQkvLayers) * 2 + (layers - st.fusedGateUpLayers);
console.log(`${variant}: ${(st.weightBytes / 1e9).toFixed(3)} GB/step; ${kernels} kernels a step (no biases); ` +
  `ncu --launch-skip ${(PROMPT / 16 + WARM) * kernels} --launch-count ${kernels}`);
const prompt = Int32Array.from({ length: PROMPT }, (_, i) => (i * 7919) % models.cfg.vocabSize);
await gpu.run(prompt, new Int32Array(PROMPT));
const one = Int32Array.of(31), seq0 = Int32Array.of(0);
for (let i = 0; i < WARM; i++) await gpu.run(one, seq0);
const times: number[] = [];
for (let i = 0; i < TIMED; i++) {
  const t = performance.now();
  await gpu.run(one, seq0);
  times.push(performance.now() - t);
}
times.sort((a, b) => a - b);
console.log(`host-timed batch-1 decode step (context ${PROMPT + WARM}..${PROMPT + WARM + TIMED}): median ${times[TIMED >> 1].toFixed(3)} ms, min ${times[0].toFixed(3)} ms`);
gpu.dispose();
