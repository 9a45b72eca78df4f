import type { Command } from 'commander';

import { loadConfig } from '../../io/config.js';
import {
  allocateExact,
  allocateGreedy,
  allocateInverse,
  allocateRandom,
  allocateUniform,
  type Allocation,
  type Refinement,
} from '../../lieq/allocate.js';
import { combineScores, loadAnalysis, resolveMethod, resolveScore, SCORE_VERSIONS, parseScoreWeights, scoreNeedsMeasured } from '../../lieq/analysis.js';
import { allocateFromMeasuredAnalysis } from '../../lieq/measured.js';
import { accountPlan, makePlan, type Plan } from '../../lieq/plan.js';
import { writeJsonAtomic } from '../../util/atomic.js';
import { UsageError } from '../../util/errors.js';
import { formatBytes, printJson, table } from '../format.js';
import { addQuantizerOptions, parseBits, parseChoice, parseInteger, parseLmHeadBits, parseNumber, parseQuantizerOptions, type QuantizerOptionValues } from '../options.js';

export interface AllocateCliOptions extends QuantizerOptionValues {
  bits?: string;
  allowed: string;
  method: string;
  score: string;
  scoreWeights: string;
  lmHead: string;
  uniform?: string;
  random?: boolean;
  inverse?: boolean;
  seed: string;
  cost?: string;
  refineRounds?: string;
  out?: string;
  json?: boolean;
}

export function registerAllocate(program: Command): void {
  const cmd = program
    .command('allocate')
    .description('choose bits per layer under an average-bit budget from an analysis file; writes a plan JSON')
    .argument('<analysis>', 'analysis.json written by `lieq analyze`')
    .option('--bits <B>', 'nominal average-bit budget over decoder linears (e.g. 2.0556 = 2 + 2/36)')
    .option('--allowed <list>', 'allowed bit widths', '2,3,4')
    .option('--method <m>', 'auto | greedy | exact (with --score measured/hybrid: minimum summed measured cost, then refinement); auto: exact with measured costs, else greedy', 'auto')
    .option('--score <v>', 'auto | v2 (ΔRC, the paper) | v1 (PD + ΔRC + TEG) | pd | teg | weights (data-free ΔRC of W) | measured | hybrid; auto: measured/hybrid when the analysis has measured costs, else v2', 'auto')
    .option('--cost <m>', 'measured/hybrid: cost to minimise, kl | nll', 'kl')
    .option('--refine-rounds <n>', 'measured/hybrid with --method exact: refinement rounds re-measuring the plan and its neighbours (0: none)', '1')
    .option('--score-weights <pd,rc,teg>', 'weights of the v1 combination', '1,1,1')
    .option('--lm-head <bits>', 'lm_head storage: 16 | 8 | 4', '16');
  addQuantizerOptions(cmd);
  cmd
    .option('--uniform <B>', 'baseline: every layer at B bits')
    .option('--random', 'baseline: random layer order (with --seed), same budget')
    .option('--inverse', 'baseline: lowest scores get the bits')
    .option('--seed <s>', 'seed for --random', '0')
    .option('-o, --out <file>', 'write the plan here (atomically); default: print it')
    .option('--json', 'print the plan and accounting as JSON')
    .action(async (analysisPath: string, o: AllocateCliOptions) => {
      const { plan, allocation } = await allocateFromAnalysis(analysisPath, o);
      const cfg = loadConfig(loadAnalysis(analysisPath).model.dir);
      const acc = accountPlan(plan, cfg);
      if (o.out) writeJsonAtomic(o.out, plan);
      const refinement = 'refinement' in allocation ? (allocation.refinement as Refinement) : undefined;
      if (o.json) return printJson({ plan, accounting: acc, order: allocation.order, ...(refinement ? { refinement } : {}) });
      if (!o.out) printJson(plan);
      process.stdout.write(
        table(['layer', 'bits', 'group', 'bits/weight', 'bytes'], acc.perLayer.map((l) => [l.layer, l.bits, l.groupSize, l.bitsPerWeight.toFixed(3), formatBytes(l.bytes)]), ['right', 'right', 'right', 'right', 'right']) + '\n',
      );
      process.stdout.write(
        `nominal ${acc.nominalBits.toFixed(4)} bits (decoder linears, payload only); true ${acc.decoderBitsPerWeight.toFixed(4)} bits/weight with scales/zeros; ` +
          `whole model ${acc.modelBitsPerWeight.toFixed(3)} bits/weight, ${formatBytes(acc.packedBytes)} (fp16 ${formatBytes(acc.fp16Bytes)})\n`,
      );
      if (refinement)
        process.stdout.write(`refinement: measured ${o.cost ?? 'kl'} ${refinement.startCost.toFixed(4)} (DP plan) -> ${refinement.cost.toFixed(4)} after ${refinement.evaluations} plan measurements\n`);
      if (o.out) process.stdout.write(`plan written to ${o.out}\n`);
    });
}

export async function allocateFromAnalysis(analysisPath: string, o: AllocateCliOptions): Promise<{ plan: Plan; allocation: Allocation }> {
  const a = loadAnalysis(analysisPath);
  const cfg = loadConfig(a.model.dir);
  const score = resolveScore(o.score, a, (v) => parseChoice(v, '--score', SCORE_VERSIONS));
  const common = { ...parseQuantizerOptions(o), lmHeadBits: parseLmHeadBits(o.lmHead) };
  const baselines = [o.uniform !== undefined, !!o.random, !!o.inverse].filter(Boolean).length;
  if (baselines > 1) throw new UsageError('--uniform, --random and --inverse are alternatives: pass one');
  if (o.uniform !== undefined) {
    const allocation = allocateUniform(a.layerWeights, parseNumber(o.uniform, '--uniform'));
    return { allocation, plan: makePlan(cfg, allocation.bits, { ...common, method: 'uniform' }) };
  }
  if (o.bits === undefined) throw new UsageError('--bits: a budget is required (or pass --uniform B)');
  const metric = parseChoice(o.cost ?? 'kl', '--cost', ['kl', 'nll'] as const);
  const inp = { scores: combineScores(a, score, parseScoreWeights(o.scoreWeights), metric), weights: a.layerWeights, allowed: parseBits(o.allowed, '--allowed'), budget: parseNumber(o.bits, '--bits') };
  let allocation: Allocation;
  if (o.random) allocation = allocateRandom(inp, parseInteger(o.seed, '--seed', 0));
  else if (o.inverse) allocation = allocateInverse(inp);
  else {
    const method = resolveMethod(o.method, score, (v) => parseChoice(v, '--method', ['greedy', 'exact'] as const));
    if (method === 'exact' && scoreNeedsMeasured(score)) allocation = await allocateFromMeasuredAnalysis(analysisPath, a, { ...inp, metric, rounds: parseInteger(o.refineRounds ?? '1', '--refine-rounds', 0), common });
    else allocation = method === 'exact' ? allocateExact(inp) : allocateGreedy(inp);
  }
  const plan = makePlan(cfg, allocation.bits, { ...common, method: allocation.method, budget: inp.budget, score, seed: allocation.seed });
  return { plan, allocation };
}

