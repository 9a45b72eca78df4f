import { writeFileSync } from 'node:fs';

import type { Command } from 'commander';

import { compareMarkdown, compareScores } from '../../lieq/compare.js';
import { writeJsonAtomic } from '../../util/atomic.js';
import { resolveModelArg } from '../../util/data-dir.js';
import { UsageError } from '../../util/errors.js';
import { printJson } from '../format.js';
import {
  addCalibrationOptions,
  addQuantizerOptions,
  parseBits,
  parseCalibrationOptions,
  parseChoice,
  parseInteger,
  parseIntList,
  parseNumber,
  parseQuantizerOptions,
  type CalibrationOptionValues,
  type QuantizerOptionValues,
} from '../options.js';
import { loadConfig } from '../../io/config.js';

interface CompareCli extends CalibrationOptionValues, QuantizerOptionValues {
  bits?: string;
  promote?: string;
  allowed: string;
  eval: string;
  evalLimit: string;
  ctx: string;
  seeds: string;
  candidates: string;
  cost: string;
  refineRounds: string;
  exhaustiveMax: string;
  out?: string;
  markdown?: string;
  json?: boolean;
}

export function registerCompareScores(program: Command): void {
  const cmd = program
    .command('compare-scores')
    .description('every layer score (v2, v1, pd, teg, weights, measured, hybrid) vs uniform/random/inverse and the exhaustive optimum, at equal nominal bits')
    .argument('<model>', 'model directory, or a shipped model name')
    .option('--bits <list>', 'nominal budgets, e.g. 2.4,2.8')
    .option('--promote <list>', 'budgets as layers promoted from the lowest to the highest width, e.g. 1,2,3 (equal-sized layers)')
    .option('--allowed <list>', 'allowed bit widths', '2,3,4');
  addCalibrationOptions(cmd, { calib: 'tinystories', calibHelp: 'calibration text of the scores: tinystories | wikitext2 | FILE', seedHelp: 'seed of calibration sampling and of the random reference model' });
  addQuantizerOptions(cmd);
  cmd
    .option('--eval <list>', 'evaluation texts (the first decides the optimum)', 'tinystories')
    .option('--eval-limit <n>', 'evaluation windows per text', '32')
    .option('--ctx <n>', 'evaluation window length', '512')
    .option('--seeds <n>', 'random-allocation seeds', '10')
    .option('--candidates <n|p%>', 'hybrid: layers the v2 score pre-selects', '50%')
    .option('--cost <m>', 'measured cost: kl | nll', 'kl')
    .option('--refine-rounds <n>', 'refinement rounds after the DP', '1')
    .option('--exhaustive-max <n>', 'search all feasible plans when there are at most this many (0: never)', '1000')
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
        ...parseCalibrationOptions(o),
        evalTexts: o.eval.split(',').map((x) => x.trim()).filter(Boolean),
        evalLimit: parseInteger(o.evalLimit, '--eval-limit', 1),
        ctx: parseInteger(o.ctx, '--ctx', 2),
        randomSeeds: parseInteger(o.seeds, '--seeds', 1),
        candidates: o.candidates,
        cost: parseChoice(o.cost, '--cost', ['kl', 'nll'] as const),
        refineRounds: parseInteger(o.refineRounds, '--refine-rounds', 0),
        exhaustiveMax: parseInteger(o.exhaustiveMax, '--exhaustive-max', 0),
        ...parseQuantizerOptions(o),
        onProgress: quiet ? undefined : (stage) => process.stderr.write(`compare-scores: ${stage}\n`),
      });
      const md = compareMarkdown(report);
      if (o.out) writeJsonAtomic(o.out, report);
      if (o.markdown) writeFileSync(o.markdown, md);
      if (o.json) return printJson(report);
      process.stdout.write(md);
    });
}
