/**
 * The `lieq` command. Each subcommand lives in commands/<name>.ts; errors are printed as one
 * clear line (the cause chain with --verbose) and mapped to documented exit codes.
 */
import { Command, CommanderError } from 'commander';

import { native } from '../native.js';
import { describeError, LieqError, UsageError } from '../util/errors.js';
import { registerDoctor } from './commands/doctor.js';
import { registerEval } from './commands/eval.js';
import { registerGenerate } from './commands/generate.js';
import { registerInspect } from './commands/inspect.js';
import { registerAllocate } from './commands/allocate.js';
import { registerCompareScores } from './commands/compare-scores.js';
import { registerAnalyze } from './commands/analyze.js';
import { registerQuantize } from './commands/quantize.js';
import { registerFarm } from './commands/farm.js';
import { registerBench } from './commands/bench.js';
import { registerExport } from './commands/export.js';

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('lieq')
    .description('LieQ: layer-wise mixed-bit quantization of small language models')
    .version('0.1.0')
    .option('--threads <n>', 'native threads (default: all cores, or LIEQ_THREADS)')
    .option('--verbose', 'print the cause chain of errors')
    // Before the subcommands are added, which copy it: their parse errors then reach main()'s
    // exit-code mapping (2) instead of commander's own process.exit(1).
    .exitOverride()
    .hook('preAction', (cmd) => {
      const t = cmd.opts().threads as string | undefined;
      if (t !== undefined) {
        const n = Number(t);
        if (!Number.isInteger(n) || n < 1) throw new UsageError(`--threads: expected a positive integer, got "${t}"`);
        native().setThreads(n);
      }
    });
  registerInspect(program);
  registerDoctor(program);
  registerEval(program);
  registerGenerate(program);
  registerAnalyze(program);
  registerAllocate(program);
  registerCompareScores(program);
  registerQuantize(program);
  registerFarm(program);
  registerBench(program);
  registerExport(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  program.exitOverride();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    const verbose = argv.includes('--verbose');
    process.stderr.write(`lieq: error: ${describeError(err, verbose)}\n`);
    return err instanceof LieqError ? err.exitCode : 1;
  }
}

