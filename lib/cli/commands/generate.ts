/**
 * `lieq generate`: continue a prompt, streaming text to stdout as tokens are produced.
 * Greedy by default (deterministic); --temperature / --top-p / --seed for seeded sampling.
 * Timing goes to stderr (or into the JSON with --json, which prints once at the end).
 */
import type { Command } from 'commander';

import { loadTokenizer } from '../../io/tokenizer.js';
import { generateTokens, type GenerateStats } from '../../runtime/generate.js';
import { RuntimeModel } from '../../runtime/model.js';
import { resolveModelArg } from '../../util/data-dir.js';
import { UsageError } from '../../util/errors.js';
import { printJson } from '../format.js';

interface GenerateCliOptions {
  model: string;
  prompt: string;
  maxTokens: string;
  temperature: string;
  topP: string;
  seed: string;
  json?: boolean;
}

function num(name: string, v: string, check: (n: number) => boolean, want: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || !check(n)) throw new UsageError(`--${name}: expected ${want}, got "${v}"`);
  return n;
}

export function registerGenerate(program: Command): void {
  program
    .command('generate')
    .description('continue a prompt, streaming tokens as they are produced (greedy unless --temperature > 0)')
    .requiredOption('--model <dir>', 'model directory, or a shipped model name (stories260K, tinystories-656K)')
    .option('--prompt <text>', 'text to continue (BOS is added per the tokenizer; empty = start of text)', '')
    .option('--max-tokens <n>', 'tokens to generate at most', '128')
    .option('--temperature <t>', '0 = greedy (deterministic)', '0')
    .option('--top-p <p>', 'nucleus sampling threshold in (0, 1]', '1')
    .option('--seed <s>', 'sampling seed', '0')
    .option('--json', 'print the text, ids and timing as JSON at the end instead of streaming')
    .action(async (opts: GenerateCliOptions) => {
      const maxTokens = num('max-tokens', opts.maxTokens, (n) => Number.isSafeInteger(n) && n >= 0, 'an integer >= 0');
      const temperature = num('temperature', opts.temperature, (n) => n >= 0, 'a number >= 0');
      const topP = num('top-p', opts.topP, (n) => n > 0 && n <= 1, 'a number in (0, 1]');
      const seed = num('seed', opts.seed, Number.isSafeInteger, 'an integer');
      const dir = resolveModelArg(opts.model);
      const model = RuntimeModel.open(dir);
      try {
        const tok = await loadTokenizer(dir);
        const prompt = tok.encode(opts.prompt);
        const ids = prompt.length > 0 ? prompt : Int32Array.of(tok.bosId ?? model.config.bosTokenId ?? 0);
        const decoder = tok.streamDecoder();
        for (const id of ids) decoder.next(id); // context for the first generated piece (leading space etc.)
        const stopIds = tok.eosIds.length ? tok.eosIds : model.config.eosTokenIds;
        const out: number[] = [];
        let text = '';
        if (!opts.json) process.stdout.write(opts.prompt);
        const it = generateTokens(model, ids, { maxTokens, temperature, topP, seed, stopIds });
        let stats: GenerateStats;
        for (;;) {
          const r = it.next();
          if (r.done) {
            stats = r.value;
            break;
          }
          out.push(r.value);
          const piece = decoder.next(r.value);
          text += piece;
          if (!opts.json && piece) process.stdout.write(piece);
          await new Promise((res) => setImmediate(res)); // let stdout drain: tokens appear as produced
        }
        const tail = decoder.flush();
        text += tail;
        const decodeTps = stats.decodeSteps > 0 ? stats.decodeSteps / stats.decodeSeconds : 0;
        const timing = {
          promptTokens: stats.promptTokens,
          generatedTokens: stats.generatedTokens,
          stoppedBy: stats.stoppedBy,
          prefillSeconds: stats.prefillSeconds,
          prefillTokensPerSecond: stats.promptTokens / stats.prefillSeconds,
          decodeSeconds: stats.decodeSeconds,
          decodeTokensPerSecond: decodeTps,
        };
        if (opts.json) {
          printJson({ model: dir, prompt: opts.prompt, promptIds: [...ids], text, ids: out, temperature, topP, seed, ...timing });
        } else {
          process.stdout.write(tail + '\n');
          process.stderr.write(
            `\n[${stats.generatedTokens} tokens, stopped by ${stats.stoppedBy}; prefill ${stats.promptTokens} tokens in ${(1000 * stats.prefillSeconds).toFixed(1)} ms; ` +
              `decode ${decodeTps.toFixed(1)} tokens/s]\n`,
          );
        }
      } finally {
        model.close();
      }
    });
}
