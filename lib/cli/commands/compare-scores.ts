import { writeFileSync } from 'node:fs';

import type { Command } from 'commander';

import { compareMarkdown, compareScores } from '../../lieq/compare.js';
import { writeJsonAtomic } from '../../util/atomic.js';
import { resolveModelArg } from '../../util/data-dir.js';
import { UsageError } from '../../util/errors.js';
import { printJson } from '../format.js';
import { parseBits, parseChoice, parseInteger, parseIntList, parseNumber } from '../options.js';
import { loadConfig } from '../../io/config.js';

interface CompareCli {
  bits?: string;
  promote?: string;
  allowed: string;
  calib: string;
  samples: string;
  seqlen: string;
  seed: string;
  eval: string;
  evalLimit: string;
  ctx: string;
  seeds: string;
  candidates: string;
  cost: string;
  refineRounds: string;
  exhaustiveMax: string;
  group: string;
  symmetric?: boolean;
  backbone: string;
  out?: string;
  markdown?: string;
  json?: boolean;
}

export function registerCompareScores(program: Command): void {
  program
    .command('compare-scores')
    .description('every layer score (v2, v1, pd, teg, weights, measured, hybrid) vs uniform/random/inverse and the exhaustive optimum, at equal nominal bits')
    .argument('<model>', 'model directory, or a shipped model name')
    .option('--bits <list>', 'nominal budgets, e.g. 2.4,2.8')
    .option('--promote <list>', 'budgets as layers promoted from the lowest to the highest width, e.g. 1,2,3 (equal-sized layers)')
    .option('--allowed <list>', 'allowed bit widths', '2,3,4')
    .option('--calib <dataset>', 'calibration text of the scores: tinystories | wikitext2 | FILE', 'tinystories')
    .option('--samples <n>', 'calibration sequences', '32')
    .option('--seqlen <n>', 'tokens per calibration sequence', '512')
    .option('--seed <s>', 'seed of calibration sampling and of the random reference model', '0')
    .option('--eval <list>', 'evaluation texts (the first decides the optimum)', 'tinystories')
    .option('--eval-limit <n>', 'evaluation windows per text', '32')
    .option('--ctx <n>', 'evaluation window length', '512')
    .option('--seeds <n>', 'random-allocation seeds', '10')
    .option('--candidates <n|p%>', 'hybrid: layers the v2 score pre-selects', '50%')
    .option('--cost <m>', 'measured cost: kl | nll', 'kl')
    .option('--refine-rounds <n>', 'refinement rounds after the DP', '1')
    .option('--exhaustive-max <n>', 'search all feasible plans when there are at most this many (0: never)', '1000')
    .option('--group <g>', 'group size', '128')
    .option('--symmetric', 'symmetric quantization')
    .option('--backbone <b>', 'quantizer: rtn | gptq', 'rtn')
    .option('-o, --out <file>', 'write the JSON report here (atomically)')
    .option('--markdown <file>', 'write the markdown tables here')
    .option('--json', 'print the JSON report instead of the tables')
    .action(async (modelArg: string, o: CompareCli) => {
      const dir = resolveModelArg(modelArg);
      const allowed = parseBits(o.allowed, '--allowed').sort((a, b) => a - b);
      if ((o.bits === undefined) === (o.promote === undefined)) throw new UsageError('pass one of --bits <list> or --promote <list>');
      let budgets: number[];
      if (o.bits !== undefined) budgets = o.bits.split(',').map((x) => parseNumber(x, '--bits'));
      else {
        const L = loadConfig(dir).numLayers;
        const ks = parseIntList(o.promote!, '--promote');
        const bad = ks.find((k) => k > L);
        if (bad !== undefined) throw new UsageError(`--promote ${bad}: the model has only ${L} layers`);
        budgets = ks.map((k) => allowed[0] + ((allowed[allowed.length - 1] - allowed[0]) * k) / L);
      }
      const quiet = !!o.json || !process.stderr.isTTY;
      const report = await compareScores(dir, {
        budgets,
        allowed,
        calib: o.calib,
        samples: parseInteger(o.samples, '--samples', 1),
        seqlen: parseInteger(o.seqlen, '--seqlen', 2),
        seed: parseInteger(o.seed, '--seed', 0),
        evalTexts: o.eval.split(',').map((x) => x.trim()).filter(Boolean),
        evalLimit: parseInteger(o.evalLimit, '--eval-limit', 1),
        ctx: parseInteger(o.ctx, '--ctx', 2),
        randomSeeds: parseInteger(o.seeds, '--seeds', 1),
        candidates: o.candidates,
        cost: parseChoice(o.cost, '--cost', ['kl', 'nll'] as const),
        refineRounds: parseInteger(o.refineRounds, '--refine-rounds', 0),
        exhaustiveMax: parseInteger(o.exhaustiveMax, '--exhaustive-max', 0),
        groupSize: parseInteger(o.group, '--group', 32),
        symmetric: !!o.symmetric,
        backbone: parseChoice(o.backbone, '--backbone', ['rtn', 'gptq'] as const),
        onProgress: quiet ? undefined : (stage) => process.stderr.write(`compare-scores: ${stage}\n`),
      });
      const md = compareMarkdown(report);
      if (o.out) writeJsonAtomic(o.out, report);
      if (o.markdown) writeFileSync(o.markdown, md);
      if (o.json) return printJson(report);
      process.stdout.write(md);
    });
}
