/** Parsing of CLI option values; each failure is a UsageError naming the option. */
import type { Command } from 'commander';

import { resolveModelArg } from '../util/data-dir.js';
import { UsageError } from '../util/errors.js';

export function parseNumber(v: string, name: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new UsageError(`${name}: expected a number, got "${v}"`);
  return n;
}

export function parseInteger(v: string, name: string, min = Number.MIN_SAFE_INTEGER): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isSafeInteger(n)) throw new UsageError(`${name}: expected an integer, got "${v}"`);
  if (n < min) throw new UsageError(`${name}: must be ≥ ${min}, got ${n}`);
  return n;
}

export function parseChoice<T extends string>(v: string, name: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(v)) throw new UsageError(`${name}: expected one of ${choices.join(', ')}, got "${v}"`);
  return v as T;
}

/** "2,3,4" -> [2, 3, 4] (each must be a supported bit width). */
export function parseBits(v: string, name: string): number[] {
  const parts = v.split(',').map((s) => s.trim()).filter(Boolean);
  const bits = parts.map((p) => parseInteger(p, name));
  if (bits.length === 0 || bits.some((b) => ![2, 3, 4, 8].includes(b))) throw new UsageError(`${name}: bit widths must be among 2, 3, 4, 8 (got "${v}")`);
  return bits;
}

/** "1,4,16" -> [1, 4, 16] positive integers. */
export function parseIntList(v: string, name: string): number[] {
  const out = v.split(',').map((s) => parseInteger(s.trim(), name, 1));
  if (out.length === 0) throw new UsageError(`${name}: expected a comma-separated list`);
  return out;
}

/** An optional integer option with a lower bound: undefined when not given. */
export function parseOptionalInteger(v: string | undefined, name: string, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isSafeInteger(n) || n < min) throw new UsageError(`${name}: expected an integer >= ${min}, got "${v}"`);
  return n;
}

// ---------------------------------------------------------------------------------------
// The option group of commands that evaluate a model, alone or against its quantized
// version (eval ppl, eval tasks, eval kld): declared and parsed in one place.

export interface ModelOptionValues {
  model: string;
  quantized?: string;
  limit?: string;
  json?: boolean;
}

export interface ModelOptions {
  /** The model directory (a shipped model name resolved to its folder). */
  dir: string;
  quantized: string | undefined;
  limit: number | undefined;
}

/** Add --model, --quantized (optional or required), --limit and --json to `cmd`. */
export function addModelOptions(cmd: Command, o: { quantized: 'optional' | 'required'; quantizedHelp: string; limitHelp: string }): Command {
  cmd.requiredOption('--model <dir>', 'full-precision model directory, or a shipped model name (stories260K, tinystories-656K)');
  if (o.quantized === 'required') cmd.requiredOption('--quantized <dir>', o.quantizedHelp);
  else cmd.option('--quantized <dir>', o.quantizedHelp);
  cmd.option('--limit <n>', o.limitHelp);
  cmd.option('--json', 'print JSON for scripts (no progress bar)');
  return cmd;
}

/** The values of addModelOptions' options, checked. */
export function parseModelOptions(opts: ModelOptionValues): ModelOptions {
  return {
    dir: resolveModelArg(opts.model),
    quantized: opts.quantized,
    limit: parseOptionalInteger(opts.limit, '--limit', 1),
  };
}

// ---------------------------------------------------------------------------------------
// The calibration and quantizer option groups of the commands that score or quantize layers
// (analyze, quantize, allocate, compare-scores): declared and parsed in one place.

export interface CalibrationOptionValues {
  calib: string;
  samples: string;
  seqlen: string;
  seed: string;
}

export interface CalibrationOptions {
  calib: string;
  samples: number;
  seqlen: number;
  seed: number;
}

/** Add --calib, --samples, --seqlen and --seed: the text the layer scores are measured on. */
export function addCalibrationOptions(cmd: Command, o: { calib: string; calibHelp: string; seedHelp: string }): Command {
  return cmd
    .option('--calib <dataset>', o.calibHelp, o.calib)
    .option('--samples <n>', 'calibration sequences', '32')
    .option('--seqlen <n>', 'tokens per calibration sequence (capped at the model context)', '512')
    .option('--seed <s>', o.seedHelp, '0');
}

export function parseCalibrationOptions(o: CalibrationOptionValues): CalibrationOptions {
  return {
    calib: o.calib,
    samples: parseInteger(o.samples, '--samples', 1),
    seqlen: parseInteger(o.seqlen, '--seqlen', 2),
    seed: parseInteger(o.seed, '--seed', 0),
  };
}

export interface QuantizerOptionValues {
  group: string;
  symmetric?: boolean;
  backbone: string;
}

export interface QuantizerOptions {
  groupSize: number;
  symmetric: boolean;
  backbone: 'rtn' | 'gptq';
}

/** Add --group, --symmetric and --backbone (`prefix` says which use of the quantizer they set). */
export function addQuantizerOptions(cmd: Command, prefix = ''): Command {
  return cmd
    .option('--group <g>', `${prefix}group size: 32 | 64 | 128`, '128')
    .option('--symmetric', `${prefix}symmetric quantization (no zero points)`)
    .option('--backbone <b>', `${prefix}quantizer: rtn | gptq`, 'rtn');
}

export function parseQuantizerOptions(o: QuantizerOptionValues): QuantizerOptions {
  return {
    groupSize: Number(parseChoice(o.group, '--group', ['32', '64', '128'] as const)),
    symmetric: !!o.symmetric,
    backbone: parseChoice(o.backbone, '--backbone', ['rtn', 'gptq'] as const),
  };
}

/** --lm-head: how the LM head is stored (16 keeps it in full precision). */
export function parseLmHeadBits(v: string): 16 | 8 | 4 {
  return Number(parseChoice(v, '--lm-head', ['16', '8', '4'] as const)) as 16 | 8 | 4;
}
