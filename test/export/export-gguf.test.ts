/**
 * `lieq export gguf` on the shipped models, a random model whose widths take the K-quants,
 * and the Qwen2/Qwen3/LLaMA-3/Mistral fixtures: metadata and tensor tables parsed by
 * @huggingface/gguf, every tensor read back, dequantized by the TS decoders and compared with
 * the original weights (q/k permutation undone), tokenizer metadata against the tokenizer
 * files, fallbacks, CLI errors and atomic output.
 */
import { cpSync, existsSync, readdirSync, readFileSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { gguf } from '@huggingface/gguf';
import { describe, expect, it } from 'vitest';

import { exportGguf, type ExportGgufResult } from '../../lib/export/export-gguf.js';
import { readGguf, type GgufFile } from '../../lib/export/gguf-reader.js';
import { ggufTensorName, permuteQkRows } from '../../lib/export/tensor-names.js';
import { loadConfig, type ModelConfig } from '../../lib/io/config.js';
import { Checkpoint } from '../../lib/io/checkpoint.js';
import { readSpmModel } from '../../lib/io/sentencepiece.js';
import { writeRandomCheckpoint } from '../../lib/io/random-model.js';
import { makePlan } from '../../lib/lieq/plan.js';
import { dataPath } from '../../lib/util/data-dir.js';
import { DataError, FormatError, UnsupportedError } from '../../lib/util/errors.js';
import { lieq } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('lieq-export-');
const S260K = dataPath('models/stories260K');
const T656K = dataPath('models/tinystories-656K');
const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'arch');

/** Largest relative RMS error per ggml type over any tensor of a (small, real) model. */
const TYPE_BOUND: Record<string, number> = { F32: 0, F16: 1e-3, Q8_0: 0.01, Q5_0: 0.07, IQ4_NL: 0.12, Q4_K: 0.1, Q3_K: 0.2, Q2_K: 0.38 };

function relRmse(x: Float32Array, y: Float32Array): number {
  let e = 0;
  let s = 0;
  for (let i = 0; i < x.length; i++) {
    e += (x[i] - y[i]) ** 2;
    s += x[i] ** 2;
  }
  return s === 0 ? Math.sqrt(e) : Math.sqrt(e / s);
}

/** Compare every tensor of `file` with the model's weights; returns the worst error per type. */
function compareWithSource(file: GgufFile, modelDir: string, cfg: ModelConfig, res: ExportGgufResult): Record<string, number> {
  const ck = Checkpoint.open(modelDir);
  const worst: Record<string, number> = {};
  try {
    for (const t of res.tensors) {
      if (t.name === 'rope_freqs.weight') continue;
      let want = ck.readF32(t.source);
      const rows = t.dims.slice(1).reduce((a, b) => a * b, 1);
      const heads = /attn_q\./.test(t.name) ? cfg.numHeads : /attn_k\./.test(t.name) ? cfg.numKvHeads : 0;
      if (heads && res.architecture === 'llama') want = permuteQkRows(want, rows, t.dims.length === 1 ? 1 : t.dims[0], heads);
      const got = file.readTensorF32(t.name);
      expect(got.length, t.name).toBe(want.length);
      const err = relRmse(want, got);
      worst[t.type] = Math.max(worst[t.type] ?? 0, err);
      expect(err, `${t.name} (${t.type})`).toBeLessThanOrEqual(TYPE_BOUND[t.type]);
    }
  } finally {
    ck.close();
  }
  return worst;
}

describe('export of the shipped models', () => {
  it('stories260K under a mixed plan: llama metadata, SentencePiece vocab, fallbacks, every tensor close to the original', async () => {
    const cfg = loadConfig(S260K);
    const plan = makePlan(cfg, [2, 3, 4, 8, 4], { method: 'manual' });
    const out = join(dir, 's260k-mixed.gguf');
    const res = await exportGguf({ model: S260K, plan, out });
    const parsed = await gguf(out, { allowLocalFile: true });
    const md = parsed.metadata as unknown as Record<string, unknown>;
    expect(md['general.architecture']).toBe('llama');
    expect(md['general.quantization_version']).toBe(2);
    expect(md['llama.block_count']).toBe(5);
    expect(md['llama.embedding_length']).toBe(64);
    expect(md['llama.feed_forward_length']).toBe(172);
    expect(md['llama.attention.head_count']).toBe(8);
    expect(md['llama.attention.head_count_kv']).toBe(4);
    expect(md['llama.rope.dimension_count']).toBe(8);
    expect(md['llama.attention.layer_norm_rms_epsilon']).toBeCloseTo(1e-5, 10);
    expect(md['lieq.layer_bits']).toEqual([2, 3, 4, 8, 4]);

    // Tokenizer metadata = the pieces of tokenizer.model.
    const spm = await readSpmModel(join(S260K, 'tokenizer.model'));
    expect(md['tokenizer.ggml.model']).toBe('llama');
    expect(md['tokenizer.ggml.tokens']).toEqual(spm.pieces.map((p) => p.piece));
    expect((md['tokenizer.ggml.scores'] as number[]).map((s) => Math.fround(s))).toEqual(spm.pieces.map((p) => Math.fround(p.score)));
    const types = md['tokenizer.ggml.token_type'] as number[];
    expect(types.filter((t) => t === 6)).toHaveLength(256); // <0x00>..<0xFF>
    expect(types.filter((t) => t === 3)).toHaveLength(2); // <s>, </s>
    expect(types[0]).toBe(2); // <unk>
    expect(md['tokenizer.ggml.bos_token_id']).toBe(1);
    expect(md['tokenizer.ggml.eos_token_id']).toBe(2);
    expect(md['tokenizer.ggml.add_bos_token']).toBe(true);

    // Tied embeddings at 16-bit head: no output.weight; 5 layers × (2 norms + 7 linears) + embd + norm.
    expect(parsed.tensorInfos).toHaveLength(47);
    expect(parsed.tensorInfos.some((t) => t.name === 'output.weight')).toBe(false);
    const typeOf = (n: string) => res.tensors.find((t) => t.name === n)!.type;
    expect(typeOf('token_embd.weight')).toBe('F16');
    expect(typeOf('blk.0.attn_norm.weight')).toBe('F32');
    expect(typeOf('blk.0.attn_q.weight')).toBe('IQ4_NL'); // Q2_K, width 64
    expect(typeOf('blk.1.ffn_up.weight')).toBe('IQ4_NL'); // Q3_K, width 64
    expect(typeOf('blk.2.attn_output.weight')).toBe('Q5_0'); // Q4_K, width 64
    expect(typeOf('blk.3.attn_v.weight')).toBe('Q8_0'); // width 64 fits Q8_0
    for (let l = 0; l < 5; l++) expect(typeOf(`blk.${l}.ffn_down.weight`)).toBe('F16'); // width 172
    expect(res.fallbacks).toBe(4 * 7 + 1); // layers 0,1,2,4 (K-quants) whole; layer 3 (Q8_0) only ffn_down

    // Offsets: aligned, consecutive, inside the file.
    const size = readFileSync(out).length;
    const infos = parsed.tensorInfos;
    for (let i = 0; i < infos.length; i++) {
      expect(Number(infos[i].offset) % 32).toBe(0);
      const end = Number(infos[i].offset) + res.tensors[i].bytes;
      if (i + 1 < infos.length) expect(Number(infos[i + 1].offset)).toBe(Math.ceil(end / 32) * 32);
      else expect(Number(parsed.tensorDataOffset) + end).toBeLessThanOrEqual(size);
    }
    const worst = compareWithSource(readGguf(out), S260K, cfg, res);
    console.log('stories260K mixed plan, worst relative RMSE per type:', JSON.stringify(worst));
  });

  it('TinyStories-656K at 8 bits: tokenizer.json BPE exported as SentencePiece scores by merge rank', async () => {
    const out = join(dir, 't656k-q8.gguf');
    const res = await exportGguf({ model: T656K, uniform: 8, out });
    const f = readGguf(out);
    const tj = JSON.parse(readFileSync(join(T656K, 'tokenizer.json'), 'utf8'));
    const tokens = f.metadata.get('tokenizer.ggml.tokens') as string[];
    expect(tokens).toHaveLength(2048);
    for (const [tok, id] of Object.entries(tj.model.vocab as Record<string, number>)) expect(tokens[id]).toBe(tok);
    // The first merge gives the highest score among merged tokens, the second the next one.
    const scores = f.metadata.get('tokenizer.ggml.scores') as number[];
    const [m0, m1] = (tj.model.merges as string[]).slice(0, 2).map((m) => m.replace(' ', ''));
    expect(scores[tj.model.vocab[m0]]).toBe(-0);
    expect(scores[tj.model.vocab[m1]]).toBe(-1);
    expect(f.metadata.get('tokenizer.ggml.bos_token_id')).toBe(1);
    expect(f.metadata.get('tokenizer.ggml.eos_token_id')).toBe(2);
    expect((f.metadata.get('tokenizer.ggml.token_type') as number[]).slice(0, 3)).toEqual([2, 3, 3]);
    expect(res.tensors.filter((t) => t.type === 'Q8_0')).toHaveLength(14);
    compareWithSource(f, T656K, loadConfig(T656K), res);
  });
});

describe('K-quants and other architectures', () => {
  it('a llama model with 256-multiple widths uses Q2_K/Q3_K/Q4_K/Q8_0 with no fallback; q/k are permuted', async () => {
    const model = join(dir, 'rand-llama');
    const raw = {
      architectures: ['LlamaForCausalLM'], hidden_size: 256, intermediate_size: 512, num_hidden_layers: 4, num_attention_heads: 4,
      num_key_value_heads: 2, vocab_size: 512, max_position_embeddings: 256, rms_norm_eps: 1e-5, tie_word_embeddings: false,
      bos_token_id: 1, eos_token_id: 2,
    };
    writeRandomCheckpoint(model, raw, { seed: 3, dtype: 'F32' });
    const cfg = loadConfig(model);
    const plan = { ...makePlan(cfg, [2, 3, 4, 8], { method: 'manual' }), lmHeadBits: 4 as const };
    const out = join(dir, 'rand.gguf');
    const res = await exportGguf({ model, plan, out, tokenizerDir: S260K });
    expect(res.fallbacks).toBe(0);
    const typeOf = (n: string) => res.tensors.find((t) => t.name === n)!.type;
    expect([0, 1, 2, 3].map((l) => typeOf(`blk.${l}.ffn_down.weight`))).toEqual(['Q2_K', 'Q3_K', 'Q4_K', 'Q8_0']);
    expect(typeOf('output.weight')).toBe('Q4_K');
    const worst = compareWithSource(readGguf(out), model, cfg, res);
    console.log('random llama 256-wide, worst relative RMSE per type:', JSON.stringify(worst));
    // Permutation really applied: the stored q rows are not the HF rows.
    const q = readGguf(out).readTensorF32('blk.3.attn_q.weight');
    const ck = Checkpoint.open(model);
    const hf = ck.readF32('model.layers.3.self_attn.q_proj.weight');
    ck.close();
    expect(relRmse(hf, q)).toBeGreaterThan(0.5);
  });

  it('Qwen3 (q/k norms, no permutation) with a byte-level BPE tokenizer → "gpt2" vocab with merges', async () => {
    const model = join(dir, 'qwen3');
    cpSync(join(FIXTURES, 'tiny-qwen3'), model, { recursive: true });
    writeFileSync(join(model, 'tokenizer.json'), JSON.stringify(byteLevelTokenizer()));
    const cfg = loadConfig(model);
    const out = join(dir, 'qwen3.gguf');
    const res = await exportGguf({ model, uniform: 8, out });
    const parsed = await gguf(out, { allowLocalFile: true });
    const md = parsed.metadata as unknown as Record<string, unknown>;
    expect(md['general.architecture']).toBe('qwen3');
    expect(md['qwen3.attention.key_length']).toBe(32);
    expect(md['tokenizer.ggml.model']).toBe('gpt2');
    expect(md['tokenizer.ggml.pre']).toBe('qwen2');
    expect(md['tokenizer.ggml.merges']).toEqual(['Ġ t', 'h e']);
    expect((md['tokenizer.ggml.tokens'] as string[]).length).toBe(cfg.vocabSize);
    expect((md['tokenizer.ggml.token_type'] as number[])[252]).toBe(3); // <|endoftext|>
    expect(res.tokenizer.padded).toBe(cfg.vocabSize - 253);
    const names = parsed.tensorInfos.map((t) => t.name);
    expect(names).toContain('blk.0.attn_q_norm.weight');
    expect(names).toContain('blk.1.attn_k_norm.weight');
    compareWithSource(readGguf(out), model, cfg, res); // no permutation for qwen3
  });

  it('Qwen2 (biases, shards, untied), LLaMA-3 (rope_freqs) and Mistral fixtures', async () => {
    for (const [fx, arch] of [['tiny-qwen2', 'qwen2'], ['tiny-llama3', 'llama'], ['tiny-mistral', 'llama']] as const) {
      const model = join(dir, fx);
      cpSync(join(FIXTURES, fx), model, { recursive: true });
      writeFileSync(join(model, 'tokenizer.json'), JSON.stringify(byteLevelTokenizer()));
      const cfg = loadConfig(model);
      const out = join(dir, `${fx}.gguf`);
      const res = await exportGguf({ model, uniform: 16, out });
      expect(res.architecture, fx).toBe(arch);
      const names = res.tensors.map((t) => t.name);
      if (fx === 'tiny-qwen2') {
        expect(names).toContain('blk.0.attn_q.bias');
        expect(names).toContain('output.weight');
      }
      if (fx === 'tiny-llama3') {
        const f = readGguf(out);
        const rf = f.readTensorF32('rope_freqs.weight');
        expect(rf.length).toBe(cfg.headDim / 2);
        expect(rf[0]).toBe(1); // highest frequency: unscaled
        expect(rf[rf.length - 1]).toBeGreaterThan(1);
      }
      compareWithSource(readGguf(out), model, cfg, res);
    }
  });
});

describe('errors and atomic output', () => {
  it('bad plan, vocabulary larger than the embedding, NaN weights: clear errors, no file, no temp', async () => {
    const cfg656 = loadConfig(T656K);
    const wrongPlan = makePlan(cfg656, [4, 4], { method: 'manual' });
    const out = join(dir, 'fail.gguf');
    await expect(exportGguf({ model: S260K, plan: wrongPlan, out })).rejects.toThrow(FormatError);
    await expect(exportGguf({ model: join(FIXTURES, 'tiny-mistral'), uniform: 8, out, tokenizerDir: S260K })).rejects.toThrow(UnsupportedError);

    const nanModel = join(dir, 'nan-model');
    cpSync(S260K, nanModel, { recursive: true });
    const ck = Checkpoint.open(nanModel);
    const info = ck.info('model.layers.3.mlp.up_proj.weight');
    ck.close();
    const fd = openSync(info.file, 'r+');
    writeSync(fd, Buffer.from(new Float32Array([NaN]).buffer), 0, 4, info.offset + 40);
    closeSync(fd);
    await expect(exportGguf({ model: nanModel, uniform: 4, out })).rejects.toThrow(DataError);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir).filter((n) => n.includes('fail.gguf'))).toEqual([]);
  });

  it('CLI: JSON result, quantized directory as source, refusals with exit codes', () => {
    const out = join(dir, 'cli.gguf');
    const r = lieq(['export', 'gguf', 'stories260K', '--uniform', '8', '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.architecture).toBe('llama');
    expect(j.layerBits).toEqual([8, 8, 8, 8, 8]);
    expect(j.tensors.find((t: { name: string }) => t.name === 'blk.0.ffn_down.weight')).toMatchObject({ type: 'F16', wanted: 'Q8_0' });

    const again = lieq(['export', 'gguf', 'stories260K', '--uniform', '8', '--out', out]);
    expect(again.code).toBe(3);
    expect(again.stderr).toMatch(/already exists/);
    expect(lieq(['export', 'gguf', 'stories260K', '--out', join(dir, 'x.gguf')]).code).toBe(2);
    const planFile = join(dir, 'plan-656k.json');
    writeFileSync(planFile, JSON.stringify(makePlan(loadConfig(T656K), [4, 4], { method: 'manual' })));
    const bad = lieq(['export', 'gguf', 'stories260K', '--plan', planFile, '--out', join(dir, 'y.gguf')]);
    expect(bad.code).toBe(4);
    expect(bad.stderr).toMatch(/plan is for a model with 2 layers/);
    expect(existsSync(join(dir, 'y.gguf'))).toBe(false);
    expect(lieq(['export', 'gguf', 'stories260K', '--uniform', '4', '--types', '4=Q7_K', '--out', join(dir, 'z.gguf')]).code).toBe(2);

    // A quantized directory: its plan.json and recorded source model are used.
    const qdir = join(dir, 'q260k');
    const q = lieq(['quantize', 'stories260K', '--uniform', '3', '--out', qdir, '--no-sensitivity']);
    expect(q.code, q.stderr).toBe(0);
    const r2 = lieq(['export', 'gguf', qdir, '--out', join(dir, 'from-q.gguf'), '--json']);
    expect(r2.code, r2.stderr).toBe(0);
    expect(JSON.parse(r2.stdout).layerBits).toEqual([3, 3, 3, 3, 3]);
    // Without the recorded source model, --model is required.
    const moved = join(dir, 'q260k-copy');
    cpSync(qdir, moved, { recursive: true });
    const st = readFileSync(join(moved, 'model.safetensors'));
    const patched = Buffer.from(st.toString('latin1').replace(/"source":"[^"]*"/, (m) => `"source":"${'/nonexistent'.padEnd(m.length - 11, '_')}"`), 'latin1');
    writeFileSync(join(moved, 'model.safetensors'), patched);
    const r3 = lieq(['export', 'gguf', moved, '--out', join(dir, 'q2.gguf')]);
    expect(r3.code).toBe(3);
    expect(r3.stderr).toMatch(/pass --model/);
  });
});

/** A tiny byte-level BPE tokenizer.json (GPT-2 / Qwen style): 250 byte symbols, 2 merges, 1 special. */
function byteLevelTokenizer(): unknown {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++)
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  const vocab: Record<string, number> = {};
  for (let i = 0; i < 250; i++) vocab[String.fromCodePoint(cs[i])] = i;
  vocab['Ġt'] = 250;
  vocab.he = 251;
  if (vocab['Ġ'] === undefined || vocab.t === undefined) throw new Error('fixture: Ġ/t not in the first 250 symbols');
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [{ id: 252, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: ['Ġ t', 'h e'] },
  };
}
