/**
 * Peak resident memory of `lieq quantize` (RTN, uniform bits) on a random-weight checkpoint of a
 * real model shape, streamed from disk, next to the working set of one decoder layer computed
 * from the shape. The claim checked: peak RSS = one layer's working set + a constant C (Node,
 * the addon, the embedding/lm_head block buffers, the read scratch), C independent of the layer
 * count; C is reported (peak - working set).
 *
 *   npx tsx scripts/bench-quantize-memory.ts --shape llama-3.2-3b --model-dir /data/lieq-3b \
 *       [--bits 4] [--group 128] [--threads 2] [--cli dist/cli/main.js] [--layers N --vocab V]
 *
 * The checkpoint (BF16, ~6.4 GB for 3B) is written to --model-dir unless it is there already;
 * --layers/--vocab shrink the shape for a dry run. Peak RSS is the child's VmHWM (the kernel's
 * high-water mark, so no peak is missed between polls). Writes
 * bench/results/quantize-memory-<shape>[-<layers>l].json.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';

import { linearShape, LINEAR_NAMES, normaliseConfig, type ModelConfig } from '../lib/io/config.js';
import { MODEL_SHAPES, writeRandomCheckpoint } from '../lib/io/random-model.js';
import { resolveLayout } from '../lib/quant/layout.js';

function arg(name: string, fallback?: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const root = resolve(import.meta.dirname, '..');
const shape = arg('shape', 'llama-3.2-3b')!;
const bits = Number(arg('bits', '4'));
const group = Number(arg('group', '128'));
const threads = arg('threads');
const cli = resolve(arg('cli', join(root, 'dist', 'cli', 'main.js'))!);
const layersOverride = arg('layers');
const vocabOverride = arg('vocab');
const modelDir = resolve(arg('model-dir', join(tmpdir(), `lieq-quantize-memory-${shape}${layersOverride ? `-${layersOverride}l` : ''}`))!);
const outDir = `${modelDir}-q${bits}`;

if (!MODEL_SHAPES[shape]) throw new Error(`--shape: unknown shape "${shape}" (known: ${Object.keys(MODEL_SHAPES).join(', ')})`);
if (!existsSync(cli)) throw new Error(`${cli} not found: build the CLI first (npx tsc -p tsconfig.build.json) or pass --cli`);
const raw: Record<string, unknown> = { ...MODEL_SHAPES[shape] };
if (layersOverride) raw.num_hidden_layers = Number(layersOverride);
if (vocabOverride) raw.vocab_size = Number(vocabOverride);
const cfg: ModelConfig = normaliseConfig(raw, `shape ${shape}`);

const MiB = 2 ** 20;
const paramsOf = (c: ModelConfig) => LINEAR_NAMES.reduce((s, n) => s + linearShape(c, n)[0] * linearShape(c, n)[1], 0);

/**
 * Bytes one RTN layer needs at once (lib/quant/quantize-model.ts): the one reused f32 buffer
 * every linear is read into (sized to the largest linear; BF16 is converted in 4 MiB chunks, so
 * no BF16 copy of a tensor exists), a zero-padded f32 copy when `in` is not a multiple of 32
 * (none for real shapes), and the layer's packed outputs (codes + fp16 scales + u8 zeros).
 * `sevenLinearsF32` is what the layer's weights take in f32 all at once (the GPTQ working set,
 * and what RTN held before the reused buffer), for comparison.
 */
function layerWorkingSet(c: ModelConfig): { bytes: number; parts: Record<string, number>; sevenLinearsF32: number } {
  let packed = 0;
  let largest = 0;
  let padded = 0;
  for (const n of LINEAR_NAMES) {
    const [o, i] = linearShape(c, n);
    const l = resolveLayout(i, group);
    const groups = l.paddedIn / l.groupSize;
    packed += o * (l.paddedIn / 32) * 4 * bits + o * groups * 3;
    largest = Math.max(largest, o * i);
    if (l.paddedIn !== i) padded = Math.max(padded, o * l.paddedIn * 4);
  }
  const parts = { f32LinearBuffer: 4 * largest, paddedCopy: padded, packedOutputs: packed };
  return { bytes: Object.values(parts).reduce((a, b) => a + b, 0), parts, sevenLinearsF32: 4 * paramsOf(c) };
}

const checkpointBytes = (paramsOf(cfg) * cfg.numLayers + cfg.vocabSize * cfg.hiddenSize * (cfg.tieWordEmbeddings ? 1 : 2)) * 2;
if (!existsSync(join(modelDir, 'model.safetensors'))) {
  mkdirSync(dirname(modelDir), { recursive: true });
  const fs = statfsSync(dirname(modelDir));
  const free = fs.bavail * fs.bsize;
  // The checkpoint plus the packed output (~a quarter of it at 4 bits) must fit.
  if (free < checkpointBytes * 1.4)
    throw new Error(`${dirname(modelDir)}: ${(free / 2 ** 30).toFixed(1)} GiB free, the ${shape} checkpoint and its output need ~${((checkpointBytes * 1.4) / 2 ** 30).toFixed(1)} GiB`);
  process.stderr.write(`writing a random ${shape} checkpoint (${cfg.numLayers} layers, BF16, ${(checkpointBytes / 2 ** 30).toFixed(2)} GiB) to ${modelDir}\n`);
  const t = performance.now();
  writeRandomCheckpoint(modelDir, raw, { seed: 1, dtype: 'BF16' });
  process.stderr.write(`  written in ${((performance.now() - t) / 1000).toFixed(1)} s\n`);
}

/** Run the CLI with `args` and poll its VmHWM (peak RSS, kB) until it exits. */
async function peakOf(args: string[]): Promise<{ peakRssBytes: number; seconds: number; code: number | null }> {
  process.stderr.write(`node ${args.join(' ')}\n`);
  const t = performance.now();
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  let peakKb = 0;
  const poll = setInterval(() => {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      if (m) peakKb = Math.max(peakKb, Number(m[1]));
    } catch {
      /* exited between polls */
    }
  }, 50);
  const code = await new Promise<number | null>((res) => child.on('exit', (c) => res(c)));
  clearInterval(poll);
  return { peakRssBytes: peakKb * 1024, seconds: (performance.now() - t) / 1000, code };
}

const ws = layerWorkingSet(cfg);
// Node + the addon + the CLI's modules, doing nothing: the floor of C.
const idle = await peakOf([cli, 'doctor', '--json']);
rmSync(outDir, { recursive: true, force: true });
// --threads is a program-level option: it goes before the command.
const run = await peakOf([cli, ...(threads ? ['--threads', threads] : []), 'quantize', modelDir, '--uniform', String(bits), '--group', String(group), '--out', outDir, '--no-sensitivity', '--eval', 'none']);
if (run.code !== 0) throw new Error(`lieq quantize exited with ${run.code}`);
// Part of C: the embedding/lm_head block buffers (up to 64 MiB of f32 rows, kept in the linear
// buffer when it is large enough, + their f16 bytes; quantize-model.ts; --max-memory can shrink
// them) and the 4 MiB read scratch (safetensors.ts).
const blockRows = Math.min(cfg.vocabSize, Math.floor(64 * MiB / (4 * cfg.hiddenSize)));
const blockValues = blockRows * cfg.hiddenSize;
const embeddingBlockBytes = 2 * blockValues + (4 * blockValues > ws.parts.f32LinearBuffer ? 4 * blockValues : 0);
const overhead = run.peakRssBytes - ws.bytes;
const result = {
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, cpu: cpus()[0]?.model, totalMemBytes: totalmem(), node: process.version },
  shape, layers: cfg.numLayers, vocab: cfg.vocabSize, hidden: cfg.hiddenSize, bits, group, threads: threads ?? 'default',
  checkpointBytes,
  layerParams: paramsOf(cfg),
  layerWorkingSetBytes: ws.bytes,
  layerWorkingSetParts: ws.parts,
  layerSevenLinearsF32Bytes: ws.sevenLinearsF32,
  embeddingBlockBytes,
  idleCliPeakRssBytes: idle.peakRssBytes,
  peakRssBytes: run.peakRssBytes,
  /** C in "peak = one layer's working set + C". */
  overheadBeyondOneLayerBytes: overhead,
  loadAverage: loadavg(),
  peakOverCheckpoint: run.peakRssBytes / checkpointBytes,
  seconds: run.seconds,
};
const file = join(root, 'bench', 'results', `quantize-memory-${shape}${layersOverride ? `-${layersOverride}l` : ''}.json`);
mkdirSync(dirname(file), { recursive: true });
writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
const f = (b: number) => `${(b / MiB).toFixed(0)} MiB`;
console.log(`shape ${shape}: ${cfg.numLayers} layers, checkpoint ${f(checkpointBytes)} (BF16)`);
console.log(`one layer's working set   ${f(ws.bytes)}  (f32 linear buffer ${f(ws.parts.f32LinearBuffer)}, padded copy ${f(ws.parts.paddedCopy)}, packed ${f(ws.parts.packedOutputs)}; all seven linears in f32 would be ${f(ws.sevenLinearsF32)})`);
console.log(`peak RSS of lieq quantize ${f(run.peakRssBytes)}  = working set + C, C = ${f(overhead)}  (${(100 * run.peakRssBytes / checkpointBytes).toFixed(0)}% of the checkpoint)`);
console.log(`C: the idle CLI (lieq doctor) peaks at ${f(idle.peakRssBytes)}, the embedding block buffers are ${f(embeddingBlockBytes)}`);
console.log(`time ${run.seconds.toFixed(1)} s; results: ${file}`);
if (!process.argv.includes('--keep')) rmSync(outDir, { recursive: true, force: true });
