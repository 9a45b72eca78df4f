/**
 * Hostile inputs for every reader of untrusted files (targets.ts): the stored corpus
 * (test/fuzz/corpus/<target>/, failures once found by scripts/fuzz.ts) is replayed, a few
 * hundred fresh mutations per target are run, and the named hostile cases of issue #11 are
 * checked one by one. The contract: accept, or throw a LieqError with a code; never another
 * exception type, never a hang, never an allocation out of proportion to the input.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';

import { FormatError, LieqError } from '../../lib/util/errors.js';
import { jsonSnippet } from '../../lib/util/json-snippet.js';
import { tempDir } from '../helpers/tmp.js';
import { loadCorpus, runInput, type Outcome } from './harness.js';
import { applyPlan, planArb, type FileSet } from './mutate.js';
import { TARGETS, targetByName } from './targets.js';

const RUNS = Number(process.env.LIEQ_FUZZ_TEST_RUNS ?? 400);
const corpusRoot = join(import.meta.dirname, 'corpus');
const scratch = tempDir('lieq-fuzz-test-');
const seeds = new Map<string, FileSet>();

beforeAll(async () => {
  for (const t of TARGETS) {
    const dir = join(scratch, `${t.name}-seed`);
    mkdirSync(dir, { recursive: true });
    seeds.set(t.name, await t.seed(dir));
  }
}, 120_000);

function explain(o: Outcome): string {
  return o.kind === 'failure' ? o.reason : o.kind;
}

describe.each(TARGETS.map((t) => [t.name]))('fuzz target %s', (name) => {
  const target = targetByName(name);
  const dir = () => join(scratch, name);

  it('accepts its own seed', async () => {
    const o = await runInput(target, dir(), seeds.get(name)!);
    expect(o.kind, explain(o)).toBe('accepted');
  });

  it('replays the stored corpus without a failure', async () => {
    for (const entry of loadCorpus(corpusRoot, name)) {
      const o = await runInput(target, dir(), entry.files);
      expect(o.kind, `${entry.path} (${entry.note.split('\n')[0]}): ${explain(o)}`).not.toBe('failure');
    }
  });

  it(`survives ${RUNS} random mutations`, async () => {
    await fc.assert(
      fc.asyncProperty(planArb, async (plan) => {
        const o = await runInput(target, dir(), applyPlan(seeds.get(name)!, plan, target.json));
        if (o.kind === 'failure') throw new Error(o.reason);
      }),
      { numRuns: RUNS, seed: 20261123 },
    );
  });
});

/** Run a target on its seed with one file replaced; returns the outcome. */
async function withFile(name: string, file: string, bytes: Uint8Array | string): Promise<Outcome> {
  const files = { ...seeds.get(name)!, [file]: typeof bytes === 'string' ? new TextEncoder().encode(bytes) : bytes };
  return runInput(targetByName(name), join(scratch, `${name}-named`), files);
}

function safetensorsWithHeader(header: unknown, dataBytes: number, lengthField?: bigint): Uint8Array {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthField ?? BigInt(json.length));
  return Uint8Array.from(Buffer.concat([len, json, Buffer.alloc(dataBytes)]));
}

function expectRejected(o: Outcome, code?: string | RegExp): void {
  expect(o.kind, explain(o)).toBe('rejected');
  if (code && o.kind === 'rejected') expect(o.code).toMatch(code);
}

const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);

describe('named hostile inputs (issue #11)', () => {
  it('a 2^60 safetensors header length is refused before anything is read', async () => {
    expectRejected(await withFile('safetensors', 'model.safetensors', safetensorsWithHeader({}, 0, 2n ** 60n)), 'E_HEADER_LENGTH');
  });

  it('a tensor claiming 10^15 elements is refused against the file size', async () => {
    const h = { t: { dtype: 'F32', shape: [1e15], data_offsets: [0, 4e15] } };
    expectRejected(await withFile('safetensors', 'model.safetensors', safetensorsWithHeader(h, 16)), /E_OFFSETS|E_SIZE/);
  });

  it('negative and overlapping offsets are refused', async () => {
    const neg = { t: { dtype: 'U8', shape: [4], data_offsets: [-4, 0] } };
    expectRejected(await withFile('safetensors', 'model.safetensors', safetensorsWithHeader(neg, 4)), 'E_HEADER_SCHEMA');
    const overlap = { a: { dtype: 'U8', shape: [4], data_offsets: [0, 4] }, b: { dtype: 'U8', shape: [4], data_offsets: [2, 6] } };
    expectRejected(await withFile('safetensors', 'model.safetensors', safetensorsWithHeader(overlap, 6)), 'E_OVERLAP');
  });

  it('NaN/Inf weights are read as data (quantize refuses them with a DataError)', async () => {
    const h = { t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
    const bytes = safetensorsWithHeader(h, 8);
    new DataView(bytes.buffer).setFloat32(bytes.length - 8, NaN, true);
    new DataView(bytes.buffer).setFloat32(bytes.length - 4, Infinity, true);
    expect((await withFile('safetensors', 'model.safetensors', bytes)).kind).toBe('accepted');
  });

  it('JSON nested 10^5 deep in each JSON file is refused, not a stack overflow', async () => {
    const deepHeader = `{"t":${deep(100_000)}}`;
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(deepHeader.length));
    expectRejected(await withFile('safetensors', 'model.safetensors', Uint8Array.from(Buffer.concat([len, Buffer.from(deepHeader)]))));
    expectRejected(await withFile('config', 'config.json', `{"architectures":["LlamaForCausalLM"],"hidden_size":${deep(100_000)}}`));
    expectRejected(await withFile('plan', 'plan.json', `{"format":${deep(100_000)}}`));
    expectRejected(await withFile('checkpoint', 'model.safetensors.index.json', `{"weight_map":${deep(100_000)}}`));
    expectRejected(await withFile('tokenizer-json', 'tokenizer.json', `{"model":{"vocab":${deep(100_000)}}}`));
    expectRejected(await withFile('tokenizer-json', 'tokenizer_config.json', `{"add_bos_token":${deep(100_000)}}`));
    expectRejected(await withFile('packed', 'config.json', `{"quantization_config":${deep(100_000)}}`));
  });

  it('invalid UTF-8 in tokenizer files is a FormatError', async () => {
    const bad = Uint8Array.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]); // {"\xff\xfe":1}
    expectRejected(await withFile('tokenizer-json', 'tokenizer.json', bad), 'E_FORMAT');
    expectRejected(await withFile('tokenizer-json', 'tokenizer_config.json', bad), 'E_FORMAT');
    // A piece string of tokenizer.model that is not UTF-8: field 1 (pieces) { field 1 (piece) "\xff" }.
    expectRejected(await withFile('tokenizer-model', 'tokenizer.model', Uint8Array.from([0x0a, 0x03, 0x0a, 0x01, 0xff])), 'E_FORMAT');
  });

  it('a config.json claiming 10^15 layers is refused instead of listing 10^16 tensors', async () => {
    const cfg = JSON.parse(new TextDecoder().decode(seeds.get('config')!['config.json']));
    expectRejected(await withFile('config', 'config.json', JSON.stringify({ ...cfg, num_hidden_layers: 1e15 })), 'E_FORMAT');
  });

  it('a field whose value cannot be turned into text still yields a FormatError', async () => {
    const cfg = JSON.parse(new TextDecoder().decode(seeds.get('config')!['config.json']));
    expectRejected(await withFile('config', 'config.json', JSON.stringify({ ...cfg, hidden_act: { toString: 1 } })));
    expectRejected(await withFile('config', 'config.json', JSON.stringify({ ...cfg, rope_scaling: { type: { toString: 1 } } })));
  });

  it('a packed model with an Inf fp16 scale is a DataError naming the tensor', async () => {
    const files = seeds.get('packed')!;
    const st = Buffer.from(files['model.safetensors']);
    const headerLen = Number(st.readBigUInt64LE(0));
    const header = JSON.parse(st.subarray(8, 8 + headerLen).toString('utf8'));
    const name = 'model.layers.1.mlp.down_proj.scales';
    const at = 8 + headerLen + header[name].data_offsets[0];
    st.writeUInt16LE(0x7c00, at + 2); // second scale = +Inf
    const o = await withFile('packed', 'model.safetensors', Uint8Array.from(st));
    expectRejected(o, 'E_DATA');
  });

  it('a packed model whose quantization_config or tensors disagree is a FormatError naming the problem', async () => {
    const cfg = JSON.parse(new TextDecoder().decode(seeds.get('packed')!['config.json']));
    const bad = (patch: object) => JSON.stringify({ ...cfg, quantization_config: { ...cfg.quantization_config, ...patch } });
    expectRejected(await withFile('packed', 'config.json', bad({ lm_head: null })), 'E_QUANT_CONFIG');
    expectRejected(await withFile('packed', 'config.json', bad({ layers: [{ bits: 5, group_size: 32 }, { bits: 4, group_size: 32 }] })), 'E_QUANT_CONFIG');
    // Layer 0 claims 8 bits, but its tensors were written at 4: the sizes disagree.
    expectRejected(await withFile('packed', 'config.json', bad({ layers: [{ bits: 8, group_size: 32, backbone: 'rtn' }, cfg.quantization_config.layers[1]] })), 'E_PACKED_SHAPE');
  });
});

describe('jsonSnippet', () => {
  it('matches JSON.stringify on small values and never throws on hostile ones', () => {
    for (const v of [null, true, 3, -1.5, 'a"b', [1, 'x'], { a: [1, 2] }, {}]) expect(jsonSnippet(v)).toBe(JSON.stringify(v));
    expect(jsonSnippet(undefined)).toBe('undefined');
    expect(jsonSnippet(JSON.parse(deep(100_000)))).toBe('[[[[…]]]]');
    expect(jsonSnippet({ toString: 1 })).toBe('{"toString":1}');
    expect(jsonSnippet('x'.repeat(1000)).length).toBeLessThanOrEqual(120);
  });

  it('is what the readers use: a FormatError quoting a deep value is still a LieqError', () => {
    const e = new FormatError('f', `got ${jsonSnippet(JSON.parse(deep(1000)))}`);
    expect(e).toBeInstanceOf(LieqError);
  });
});
