#!/usr/bin/env node
// Independent check of an exported GGUF file with llama.cpp itself, through node-llama-cpp
// (not a lieq dependency: install it anywhere and point NODE_LLAMA_CPP_DIR at that folder).
//
//   node scripts/verify-gguf-llamacpp.mjs FILE.gguf [--model DIR] [--text FILE] [--ctx 512] [--limit 8] [--greedy 64] [--threads 1]
//
// Prints JSON:
//   greedy     llama.cpp's greedy continuation of [BOS] (ids and text)
//   tokenizer  (with --model and a built lieq in dist/ or $LIEQ_DIST) llama.cpp's tokenization
//              of --text vs lieq's: token counts and the share of identical ids
//   perplexity llama.cpp's windowed perplexity of --text with lieq's protocol (ids = BOS + the
//              whole text tokenized once, non-overlapping windows of --ctx, each window run
//              alone, ctx-1 scored targets per window), on lieq's ids when --model is given
//              (so the number compares weights, not tokenizers), else on llama.cpp's ids.
//              Compare with `lieq eval ppl --model DIR --dataset FILE --ctx N --limit K --json`.
import { readFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    model: { type: 'string' },
    text: { type: 'string' },
    ctx: { type: 'string', default: '512' },
    limit: { type: 'string', default: '8' },
    greedy: { type: 'string', default: '64' },
    threads: { type: 'string', default: '1' },
    // llama.cpp aborts (std::out_of_range) on characters a byte_fallback vocabulary without
    // <0xNN> tokens cannot encode (TinyStories-656K): score lieq's ids without its tokenization.
    'skip-llama-tokenize': { type: 'boolean', default: false },
  },
});
if (positionals.length !== 1) {
  process.stderr.write('usage: node scripts/verify-gguf-llamacpp.mjs FILE.gguf [--model DIR] [--text FILE] [--ctx 512] [--limit 8] [--greedy 64]\n');
  process.exit(2);
}
const gguf = resolve(positionals[0]);

async function importLlama() {
  try {
    return await import('node-llama-cpp');
  } catch {
    const dir = process.env.NODE_LLAMA_CPP_DIR;
    if (!dir) throw new Error('node-llama-cpp is not installed here: install it in a folder of its own and set NODE_LLAMA_CPP_DIR=<that folder> (see docs/interop.md)');
    const req = createRequire(join(resolve(dir), 'package.json'));
    return import(pathToFileURL(req.resolve('node-llama-cpp')).href);
  }
}

async function importLieq() {
  const dist = join(root, process.env.LIEQ_DIST ?? 'dist', 'index.js');
  if (!existsSync(dist)) return null;
  return import(pathToFileURL(dist).href);
}

const { getLlama, LlamaLogLevel } = await importLlama();
const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath: gguf });
const ctxLen = Number(opt.ctx);
// One thread by default: llama.cpp's threads spin at barriers, which on a busy machine turns
// each evaluation into seconds; these models are tiny anyway.
const context = await model.createContext({ contextSize: ctxLen, batchSize: ctxLen, sequences: 1, threads: Number(opt.threads) });
const seq = context.getSequence();
const bos = model.tokens.bos;
const report = { file: gguf, llamaCpp: { buildType: llama.buildType, gpu: llama.gpu } };

// Greedy continuation of [BOS]: raw logits, argmax (no sampler in between).
{
  const n = Number(opt.greedy);
  const ids = [];
  let input = [bos];
  for (let i = 0; i < n; i++) {
    const last = input.length - 1;
    const res = await seq.controlledEvaluate(input.map((t, k) => (k === last ? [t, { generateNext: { logits: true } }] : t)));
    const logits = res[last].next.logits;
    let best = -1;
    let bestV = -Infinity;
    for (const [tok, v] of logits) if (v > bestV) { bestV = v; best = tok; }
    ids.push(best);
    input = [best];
  }
  await seq.clearHistory();
  report.greedy = { ids, text: model.detokenize(ids) };
}

if (opt.text) {
  const text = readFileSync(opt.text, 'utf8');
  const llamaIds = opt['skip-llama-tokenize'] ? [] : Array.from(model.tokenize(text));
  if (opt['skip-llama-tokenize'] && !opt.model) throw new Error('--skip-llama-tokenize needs --model (lieq tokenizes the text)');
  let ids = [bos, ...llamaIds];
  if (opt.model) {
    const lieq = await importLieq();
    if (!lieq) throw new Error(`--model needs a built lieq (${join(root, process.env.LIEQ_DIST ?? 'dist')}/index.js)`);
    const tok = await lieq.loadTokenizer(lieq.resolveModelArg(opt.model));
    const lieqIds = Array.from(tok.encode(text, { addBos: false }));
    let same = 0;
    const n = Math.min(lieqIds.length, llamaIds.length);
    for (let i = 0; i < n; i++) if (lieqIds[i] === llamaIds[i]) same++;
    let firstDiff = -1;
    for (let i = 0; i < n; i++) if (lieqIds[i] !== llamaIds[i]) { firstDiff = i; break; }
    if (!opt['skip-llama-tokenize']) report.tokenizer = { llamaCppTokens: llamaIds.length, lieqTokens: lieqIds.length, samePositionShare: same / Math.max(lieqIds.length, llamaIds.length), firstDifference: firstDiff };
    ids = [bos, ...lieqIds];
  }
  const limit = Number(opt.limit);
  let nll = 0;
  let scored = 0;
  let windows = 0;
  for (let s = 0; s + ctxLen <= ids.length && windows < limit; s += ctxLen, windows++) {
    const win = ids.slice(s, s + ctxLen);
    const res = await seq.controlledEvaluate(win.map((t, k) => (k < ctxLen - 1 ? [t, { generateNext: { logits: true } }] : t)));
    for (let k = 0; k < ctxLen - 1; k++) {
      const logits = res[k].next.logits;
      let max = -Infinity;
      for (const v of logits.values()) max = Math.max(max, v);
      let sum = 0;
      for (const v of logits.values()) sum += Math.exp(v - max);
      nll += max + Math.log(sum) - logits.get(win[k + 1]);
      scored++;
    }
    await seq.clearHistory();
  }
  report.perplexity = { ids: opt.model ? 'lieq' : 'llama.cpp', ctx: ctxLen, windows, scored, meanNll: nll / scored, perplexity: Math.exp(nll / scored) };
}

process.stdout.write(JSON.stringify(report, null, 2) + '\n');
await context.dispose();
await model.dispose();
await llama.dispose();
