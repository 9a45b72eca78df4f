/**
 * Fuzz targets: every reader of untrusted files, each with a valid seed (a set of files) that
 * the mutators in mutate.ts damage, and a `run` that reads the files the way lieq does. The
 * contract checked by harness.ts: `run` returns or throws a LieqError; never another error
 * type, never a hang, never an allocation out of proportion to the input.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { Checkpoint, INDEX_FILE } from '../../lib/io/checkpoint.js';
import { expectedTensors, loadConfig } from '../../lib/io/config.js';
import { writeRandomCheckpoint } from '../../lib/io/random-model.js';
import { asBytes, DTYPE_SIZES, SafetensorsFile, writeSafetensors, type Dtype, type TensorToWrite } from '../../lib/io/safetensors.js';
import { loadTokenizer } from '../../lib/io/tokenizer.js';
import { exportGguf } from '../../lib/export/export-gguf.js';
import { readGguf } from '../../lib/export/gguf-reader.js';
import { qmatmulSync } from '../../lib/kernels/quant.js';
import { accountPlan, checkPlanFits, loadPlan, makePlan } from '../../lib/lieq/plan.js';
import { packedModelSource } from '../../lib/quant/packed-source.js';
import { quantizeModel } from '../../lib/quant/quantize-model.js';
import type { RuntimeLinear } from '../../lib/runtime/linear.js';
import { dataPath } from '../../lib/util/data-dir.js';
import { safetensorsHeaderJson, wholeFileJson, type FileSet, type JsonLocator } from './mutate.js';

export interface FuzzTarget {
  name: string;
  /** Valid files to start from; `scratch` is an empty directory for building them. */
  seed(scratch: string): Promise<FileSet>;
  /** Where each file's JSON is, for structure-aware mutations. */
  json: Record<string, JsonLocator>;
  /** Read the files in `dir` as lieq does (resolve = accepted, throw = rejected). */
  run(dir: string): Promise<void>;
}

const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16', 'F64']);

function readAllTensors(f: { names(): string[]; info(n: string): { dtype: Dtype; shape: number[] }; readF32(n: string): Float32Array; readBytes(n: string): Buffer; readRowsF32(n: string, rows: number[]): Float32Array }): void {
  for (const name of f.names()) {
    const t = f.info(name);
    if (FLOAT_DTYPES.has(t.dtype)) {
      f.readF32(name);
      if (t.shape.length >= 2 && t.shape[0] > 0) f.readRowsF32(name, [t.shape[0] - 1, 0]);
    } else {
      f.readBytes(name);
    }
  }
}

function bytesOf(dtype: Dtype, n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n * DTYPE_SIZES[dtype]);
  for (let i = 0; i < b.length; i++) b[i] = (i * 37 + seed * 11) & 0xff;
  if (dtype === 'F32') return asBytes(Float32Array.from({ length: n }, (_, i) => Math.sin(i + seed)));
  return b;
}

function tensor(name: string, dtype: Dtype, shape: number[], seed: number): TensorToWrite {
  return { name, dtype, shape, data: bytesOf(dtype, shape.reduce((a, b) => a * b, 1), seed) };
}

function readDir(dir: string, names: string[]): FileSet {
  return Object.fromEntries(names.map((n) => [n, new Uint8Array(readFileSync(join(dir, n)))]));
}

/** A small 2-layer LLaMA config (packed seed). */
const TINY_CONFIG = {
  architectures: ['LlamaForCausalLM'], hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 4,
  num_key_value_heads: 2, vocab_size: 48, max_position_embeddings: 128, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
};

/** The GGUF reader used by the export tests: header, metadata, tensor table, every tensor decoded. */
const GGUF_TARGET: FuzzTarget = {
  name: 'gguf',
  json: {},
  async seed(scratch) {
    // A real export: K-quant fallbacks, Q8_0 and F16 tensors, SentencePiece vocabulary arrays.
    const out = join(scratch, 'model.gguf');
    const cfg = loadConfig(dataPath('models', 'stories260K'));
    await exportGguf({ model: dataPath('models', 'stories260K'), plan: makePlan(cfg, [2, 3, 4, 8, 4], { method: 'manual', groupSize: 32, lmHeadBits: 8 }), out });
    return { 'model.gguf': new Uint8Array(readFileSync(out)) };
  },
  async run(dir) {
    const g = readGguf(join(dir, 'model.gguf'));
    for (const t of g.tensors) if (t.bytes <= 64 * 2 ** 20) g.readTensorF32(t.name);
  },
};

export const TARGETS: FuzzTarget[] = [
  {
    name: 'safetensors',
    json: { 'model.safetensors': safetensorsHeaderJson },
    async seed(scratch) {
      writeSafetensors(join(scratch, 'model.safetensors'), [
        tensor('a.weight', 'F32', [4, 8], 1),
        tensor('b.weight', 'F16', [2, 4], 2),
        tensor('c.weight', 'BF16', [3, 2], 3),
        tensor('d', 'U8', [5], 4),
        tensor('e', 'I64', [2], 5),
        tensor('f', 'F64', [1, 3], 6),
        tensor('g', 'F32', [0, 4], 7),
      ], { format: 'pt', 'lm_head.weight': 'a.weight' });
      return readDir(scratch, ['model.safetensors']);
    },
    async run(dir) {
      const f = SafetensorsFile.open(join(dir, 'model.safetensors'));
      try {
        readAllTensors(f);
      } finally {
        f.close();
      }
    },
  },
  {
    name: 'checkpoint',
    json: {
      [INDEX_FILE]: wholeFileJson,
      'model-00001-of-00002.safetensors': safetensorsHeaderJson,
      'model-00002-of-00002.safetensors': safetensorsHeaderJson,
    },
    async seed(scratch) {
      const shards = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
      writeSafetensors(join(scratch, shards[0]), [tensor('model.embed_tokens.weight', 'F32', [4, 4], 1), tensor('model.norm.weight', 'BF16', [4], 2)]);
      writeSafetensors(join(scratch, shards[1]), [tensor('lm_head.weight', 'F16', [4, 4], 3)], { 'model.tied.weight': 'lm_head.weight' });
      const index = {
        metadata: { total_size: 4 * 16 + 2 * 4 + 2 * 16 },
        weight_map: { 'model.embed_tokens.weight': shards[0], 'model.norm.weight': shards[0], 'lm_head.weight': shards[1] },
      };
      return reorder(readDir(scratch, shards), index, [INDEX_FILE, ...shards]);
    },
    async run(dir) {
      const ck = Checkpoint.open(dir);
      try {
        for (const name of [...ck.names(), ...ck.aliases.keys()]) {
          const t = ck.info(name);
          if (FLOAT_DTYPES.has(t.dtype)) ck.readF32(name);
          else ck.readBytes(name);
        }
      } finally {
        ck.close();
      }
    },
  },
  {
    name: 'config',
    json: { 'config.json': wholeFileJson },
    async seed() {
      const raw = JSON.parse(readFileSync(dataPath('models', 'stories260K', 'config.json'), 'utf8'));
      // Exercise the rope-scaling and sliding-window branches too.
      raw.rope_scaling = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 };
      raw.eos_token_id = [2, 3];
      return { 'config.json': new TextEncoder().encode(JSON.stringify(raw, null, 2)) };
    },
    async run(dir) {
      // openModel's first steps: the config, then every tensor name and shape it implies.
      expectedTensors(loadConfig(dir));
    },
  },
  {
    name: 'tokenizer-json',
    json: { 'tokenizer.json': wholeFileJson, 'tokenizer_config.json': wholeFileJson, 'config.json': wholeFileJson },
    async seed() {
      return readDir(dataPath('models', 'stories260K'), ['tokenizer.json', 'tokenizer_config.json', 'config.json']);
    },
    async run(dir) {
      const tok = await loadTokenizer(dir, { backend: 'hf' });
      const ids = tok.encode('Once upon a time, héllo wörld 123\n');
      tok.decode(ids);
    },
  },
  {
    name: 'tokenizer-model',
    json: { 'tokenizer_config.json': wholeFileJson },
    async seed() {
      return readDir(dataPath('models', 'stories260K'), ['tokenizer.model', 'tokenizer_config.json']);
    },
    async run(dir) {
      const tok = await loadTokenizer(dir, { backend: 'spm' });
      const ids = tok.encode('Once upon a time, héllo wörld 123\n');
      tok.decode(ids);
    },
  },
  {
    name: 'plan',
    json: { 'plan.json': wholeFileJson },
    async seed() {
      const cfg = loadConfig(dataPath('models', 'stories260K'));
      const plan = makePlan(cfg, [2, 3, 4, 8, 4], { method: 'greedy', budget: 4, score: 'delta_rc', seed: 1, groupSize: 32, lmHeadBits: 8 });
      return { 'plan.json': new TextEncoder().encode(JSON.stringify(plan, null, 2)) };
    },
    async run(dir) {
      // What quantize does with a plan file: validate, fit to the model, account its bits.
      const plan = loadPlan(join(dir, 'plan.json'));
      const cfg = loadConfig(dataPath('models', 'stories260K'));
      checkPlanFits(plan, cfg, 'plan.json');
      accountPlan(plan, cfg);
    },
  },
  {
    name: 'packed',
    json: { 'config.json': wholeFileJson, 'model.safetensors': safetensorsHeaderJson },
    async seed(scratch) {
      const base = join(scratch, 'base');
      writeRandomCheckpoint(base, TINY_CONFIG, { seed: 3, dtype: 'F32' });
      const cfg = loadConfig(base);
      const out = join(scratch, 'packed');
      await quantizeModel(base, { plan: makePlan(cfg, [4, 3], { method: 'manual', groupSize: 32, lmHeadBits: 8 }), out, rtn: 'minmax' });
      return readDir(out, ['config.json', 'model.safetensors']);
    },
    async run(dir) {
      // Load every weight the runtime would, then run one packed matmul on what was loaded.
      const src = packedModelSource(dir);
      try {
        const emb = src.embedding();
        src.finalNorm();
        const linears: RuntimeLinear[] = [src.lmHead(emb)];
        for (let l = 0; l < src.config.numLayers; l++) linears.push(...Object.values(src.layer(l).linears));
        for (const lin of linears) {
          if (lin.kind !== 'packed') continue;
          qmatmulSync(lin.packed, new Float32Array(lin.packed.inFeatures).fill(0.5), 1);
        }
      } finally {
        src.close();
      }
    },
  },
  GGUF_TARGET,
];

function reorder(shards: FileSet, index: object, names: string[]): FileSet {
  const all: FileSet = { ...shards, [INDEX_FILE]: new TextEncoder().encode(JSON.stringify(index, null, 2)) };
  return Object.fromEntries(names.map((n) => [n, all[n]]));
}

/** Targets that exist only in some builds (none now: the GGUF reader joined TARGETS). */
export async function optionalTargets(): Promise<FuzzTarget[]> {
  return [];
}

export function targetByName(name: string): FuzzTarget {
  const t = TARGETS.find((x) => x.name === name);
  if (!t) throw new Error(`unknown fuzz target "${name}" (known: ${TARGETS.map((x) => x.name).join(', ')})`);
  return t;
}
