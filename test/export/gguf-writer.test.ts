/**
 * GGUF writer checked with an independent parser (@huggingface/gguf): header, every metadata
 * type, tensor table (shapes, types, aligned offsets), the bytes at each offset; streaming
 * order errors and atomicity. Also the q/k permutation, checked by what it is for: HF
 * rotate-half RoPE on W·x equals llama.cpp's interleaved RoPE on the permuted W·x.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gguf } from '@huggingface/gguf';
import { describe, expect, it } from 'vitest';

import { readGguf } from '../../lib/export/gguf-reader.js';
import { GgufWriter, tensorBytes, type GgufKv, type GgufTensorSpec } from '../../lib/export/gguf-writer.js';
import { ggufTensorName, permuteQkRows } from '../../lib/export/tensor-names.js';
import { FormatError } from '../../lib/util/errors.js';
import { tempDir } from '../helpers/tmp.js';
import { randn, rng } from '../reference/quant-reference.js';

const dir = tempDir('lieq-gguf-');

const KVS: GgufKv[] = [
  { key: 'general.architecture', type: 'STRING', value: 'llama' },
  { key: 'general.alignment', type: 'UINT32', value: 32 },
  { key: 't.u8', type: 'UINT8', value: 200 },
  { key: 't.i8', type: 'INT8', value: -5 },
  { key: 't.u16', type: 'UINT16', value: 60000 },
  { key: 't.i16', type: 'INT16', value: -30000 },
  { key: 't.i32', type: 'INT32', value: -123456 },
  { key: 't.f32', type: 'FLOAT32', value: 1.5 },
  { key: 't.bool', type: 'BOOL', value: true },
  { key: 't.u64', type: 'UINT64', value: 2n ** 40n },
  { key: 't.i64', type: 'INT64', value: -(2n ** 40n) },
  { key: 't.f64', type: 'FLOAT64', value: Math.PI },
  { key: 't.str', type: 'STRING', value: 'ünïcödé ▁x' },
  { key: 't.strs', type: 'ARRAY', itemType: 'STRING', values: ['a', '', '▁b'] },
  { key: 't.f32s', type: 'ARRAY', itemType: 'FLOAT32', values: Float32Array.of(0.5, -2) },
  { key: 't.i32s', type: 'ARRAY', itemType: 'INT32', values: Int32Array.of(1, -2, 3) },
];
// Odd sizes so that padding between tensors matters.
const TENSORS: GgufTensorSpec[] = [
  { name: 'a.weight', dims: [3], type: 'F32' },
  { name: 'b.weight', dims: [32, 3], type: 'Q8_0' },
  { name: 'c.weight', dims: [5, 7], type: 'F16' },
  { name: 'd.weight', dims: [256, 2], type: 'Q2_K' },
];

function bytesFor(t: GgufTensorSpec, seed: number): Uint8Array {
  return Uint8Array.from({ length: tensorBytes(t) }, (_, i) => (i * 31 + seed * 7) & 255);
}

describe('GGUF writer', () => {
  it('writes a file @huggingface/gguf parses: metadata, tensor table, aligned offsets, data', async () => {
    const file = join(dir, 'ok.gguf');
    const w = GgufWriter.create(file, KVS, TENSORS);
    TENSORS.forEach((t, i) => {
      const b = bytesFor(t, i);
      w.write(t.name, b.subarray(0, 3)); // in parts
      w.write(t.name, b.subarray(3));
    });
    w.commit();

    const parsed = await gguf(file, { allowLocalFile: true });
    const md = parsed.metadata as unknown as Record<string, unknown>;
    expect(md.version).toBe(3);
    expect(md.tensor_count).toBe(BigInt(TENSORS.length));
    expect(md.kv_count).toBe(BigInt(KVS.length));
    expect(md['general.architecture']).toBe('llama');
    expect(md['t.u8']).toBe(200);
    expect(md['t.i8']).toBe(-5);
    expect(md['t.u16']).toBe(60000);
    expect(md['t.i16']).toBe(-30000);
    expect(md['t.i32']).toBe(-123456);
    expect(md['t.f32']).toBe(1.5);
    expect(md['t.bool']).toBe(true);
    expect(md['t.u64']).toBe(2n ** 40n);
    expect(md['t.i64']).toBe(-(2n ** 40n));
    expect(md['t.f64']).toBe(Math.PI);
    expect(md['t.str']).toBe('ünïcödé ▁x');
    expect(md['t.strs']).toEqual(['a', '', '▁b']);
    expect(md['t.f32s']).toEqual([0.5, -2]);
    expect(md['t.i32s']).toEqual([1, -2, 3]);

    const bytes = readFileSync(file);
    expect(Number(parsed.tensorDataOffset) % 32).toBe(0);
    parsed.tensorInfos.forEach((ti, i) => {
      const t = TENSORS[i];
      expect(ti.name).toBe(t.name);
      expect(ti.shape.map(Number)).toEqual(t.dims);
      expect(Number(ti.dtype)).toBe({ F32: 0, F16: 1, Q8_0: 8, Q2_K: 10 }[t.type as 'F32']);
      expect(Number(ti.offset) % 32).toBe(0);
      const at = Number(parsed.tensorDataOffset + ti.offset);
      expect(Buffer.from(bytes.subarray(at, at + tensorBytes(t))).equals(Buffer.from(bytesFor(t, i)))).toBe(true);
    });
    // our own reader agrees
    const own = readGguf(file);
    expect(own.dataOffset).toBe(Number(parsed.tensorDataOffset));
    expect(own.metadata.get('t.strs')).toEqual(['a', '', '▁b']);
    expect(own.tensors.map((t) => t.offset)).toEqual(parsed.tensorInfos.map((t) => Number(parsed.tensorDataOffset + t.offset)));
  });

  it('refuses out-of-order or oversized writes and incomplete commits, leaving no file', () => {
    const file = join(dir, 'bad.gguf');
    const w = GgufWriter.create(file, KVS, TENSORS);
    expect(() => w.write('b.weight', new Uint8Array(4))).toThrow(/out of order \(expected "a.weight"\)/);
    expect(() => w.write('a.weight', new Uint8Array(13))).toThrow(FormatError);
    w.write('a.weight', new Uint8Array(12));
    expect(() => w.commit()).toThrow(/only 1 of 4 tensors/);
    w.abort();
    expect(existsSync(file)).toBe(false);
    expect(readdirSync(dir).filter((n) => n.startsWith('.bad.gguf'))).toEqual([]);
  });

  it('rejects duplicate keys/names, bad dims and widths that do not fit the block', () => {
    const f = join(dir, 'x.gguf');
    expect(() => GgufWriter.create(f, [...KVS, KVS[2]], TENSORS)).toThrow(/duplicate metadata key "t.u8"/);
    expect(() => GgufWriter.create(f, KVS, [...TENSORS, TENSORS[0]])).toThrow(/duplicate tensor name/);
    expect(() => GgufWriter.create(f, KVS, [{ name: 'z', dims: [0], type: 'F32' }])).toThrow(/positive integers/);
    expect(() => GgufWriter.create(f, KVS, [{ name: 'z', dims: [100, 2], type: 'Q4_K' }])).toThrow(/multiple of 256/);
    expect(existsSync(f)).toBe(false);
  });
});

describe('tensor names and the q/k permutation', () => {
  it('maps HF names to llama.cpp names', () => {
    const cases: [string, string | undefined][] = [
      ['model.embed_tokens.weight', 'token_embd.weight'],
      ['model.norm.weight', 'output_norm.weight'],
      ['lm_head.weight', 'output.weight'],
      ['model.layers.3.input_layernorm.weight', 'blk.3.attn_norm.weight'],
      ['model.layers.3.post_attention_layernorm.weight', 'blk.3.ffn_norm.weight'],
      ['model.layers.0.self_attn.q_proj.weight', 'blk.0.attn_q.weight'],
      ['model.layers.0.self_attn.k_proj.bias', 'blk.0.attn_k.bias'],
      ['model.layers.0.self_attn.v_proj.weight', 'blk.0.attn_v.weight'],
      ['model.layers.0.self_attn.o_proj.weight', 'blk.0.attn_output.weight'],
      ['model.layers.11.mlp.gate_proj.weight', 'blk.11.ffn_gate.weight'],
      ['model.layers.11.mlp.up_proj.weight', 'blk.11.ffn_up.weight'],
      ['model.layers.11.mlp.down_proj.weight', 'blk.11.ffn_down.weight'],
      ['model.layers.2.self_attn.q_norm.weight', 'blk.2.attn_q_norm.weight'],
      ['model.layers.2.self_attn.k_norm.weight', 'blk.2.attn_k_norm.weight'],
      ['model.layers.2.self_attn.rotary_emb.inv_freq', undefined],
    ];
    for (const [hf, g] of cases) expect(ggufTensorName(hf), hf).toBe(g);
  });

  it('HF rotate-half RoPE of W·x equals interleaved RoPE (llama.cpp "llama") of permuted W·x, permuted', () => {
    const heads = 3;
    const hd = 8;
    const cols = 5;
    const r = rng(4);
    const W = Float32Array.from({ length: heads * hd * cols }, () => randn(r));
    const x = Float64Array.from({ length: cols }, () => randn(r));
    const matvec = (m: Float32Array) => Array.from({ length: heads * hd }, (_, i) => x.reduce((s, v, c) => s + m[i * cols + c] * v, 0));
    const pos = 7;
    const theta = (i: number) => pos * 10000 ** ((-2 * i) / hd);
    const ropeHalf = (q: number[]) =>
      q.map((_, k) => {
        const h = Math.floor(k / hd);
        const j = k % hd;
        const i = j % (hd / 2);
        const a = q[h * hd + i];
        const b = q[h * hd + i + hd / 2];
        return j < hd / 2 ? a * Math.cos(theta(i)) - b * Math.sin(theta(i)) : b * Math.cos(theta(i)) + a * Math.sin(theta(i));
      });
    const ropeInterleaved = (q: number[]) =>
      q.map((_, k) => {
        const h = Math.floor(k / hd);
        const j = k % hd;
        const i = j >> 1;
        const a = q[h * hd + 2 * i];
        const b = q[h * hd + 2 * i + 1];
        return j % 2 === 0 ? a * Math.cos(theta(i)) - b * Math.sin(theta(i)) : b * Math.cos(theta(i)) + a * Math.sin(theta(i));
      });
    const hf = ropeHalf(matvec(W));
    const perm = permuteQkRows(W, heads * hd, cols, heads);
    const gg = ropeInterleaved(matvec(perm));
    // Row k of the permuted layout is HF row (within head) s·hd/2 + i for k = 2i + s.
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < hd / 2; i++)
        for (let s = 0; s < 2; s++) expect(gg[h * hd + 2 * i + s]).toBeCloseTo(hf[h * hd + s * (hd / 2) + i], 4);
    // numpy reshape(heads, 2, hd/2, cols).swapaxes(1, 2) as flat index arithmetic
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < hd / 2; i++)
        for (let s = 0; s < 2; s++)
          for (let c = 0; c < cols; c++) expect(perm[((h * (hd / 2) + i) * 2 + s) * cols + c]).toBe(W[((h * 2 + s) * (hd / 2) + i) * cols + c]);
    expect(() => permuteQkRows(W, 15, 8, 3)).toThrow(RangeError);
  });
});
