/**
 * One decode step of a random model of a real shape, for a per-kernel breakdown under Nsight
 * Compute (scripts/device-run.sh profile runs it under ncu and skips to the last step).
 *
 * Sequence: load the variant (argv[2]: fp16 | 4bit | 2bit | lieq | lieq-q4, default 4bit) of the
 * shape argv[3] (default llama-3.2-1b; random-models.ts), prefill
 * PROMPT tokens as 16-row graph steps, then WARM batch-1 decode steps, then the host-timed steps:
 * their median wall time (JS await included) against the kernels' sum shows the per-step
 * overhead outside the kernels (launch gaps, host round trip). Prints the kernel count of one
 * step so the ncu launch-skip can be checked.
 */
import { GpuModel } from '../../lib/cuda/gpu-model.js';
import { RandomShape, VARIANTS } from './random-models.js';

export const PROMPT = 128;
export const WARM = 4;
const TIMED = 32;

const which = process.argv[2] ?? '4bit';
const names: Record<string, string> = {
  fp16: 'fp16', '4bit': 'uniform 4-bit', '2bit': 'uniform 2-bit', lieq: 'LieQ (1x4 + rest 2-bit)', 'lieq-q4': 'LieQ (1x4 + rest 2-bit), q4 head',
};
const variant = VARIANTS.find((v) => v.name === names[which]);
if (!variant) throw new Error(`profile-step: unknown variant ${which} (${Object.keys(names).join(', ')})`);
const shape = new RandomShape(process.argv[3] ?? 'llama-3.2-1b');
const bm = shape.build(variant);
const gpu = GpuModel.load(bm.model, { maxSeqs: 1, maxContext: PROMPT + WARM + TIMED + 8, lmHead: variant.head, copyLayerFrom: bm.copyLayerFrom });
const st = gpu.stats();
const layers = shape.cfg.numLayers;
// embed + per layer (norm, qkv, qkv_post, attention, o, norm, gate/up, silu_mul, down) + norm + head;
// a decode step of one row fuses qkv_post into attention (launch_qkv_post_attention): one fewer a
// layer. PROFILE_UNFUSED=1: an addon from before that fusion (`kernels` in decode steps too).
const kernels = 1 + layers * 9 + 2 + (layers - st.fusedQkvLayers) * 2 + (layers - st.fusedGateUpLayers);
const decodeKernels = process.env.PROFILE_UNFUSED === '1' ? kernels : kernels - layers;
console.log(`${shape.name} ${variant.name}: ${(st.weightBytes / 1e9).toFixed(3)} GB/step; ${kernels} kernels a step (no biases); ` +
  `ncu --launch-skip ${(PROMPT / 16) * kernels + WARM * decodeKernels} --launch-count ${decodeKernels}`);
const prompt = Int32Array.from({ length: PROMPT }, (_, i) => (i * 7919) % shape.cfg.vocabSize);
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
