/**
 * Error types of lieq. Every user-facing error names the file or option at fault and what
 * was expected; the CLI maps each class to an exit code (docs/cli.md).
 */

/** Base class: `code` is stable and machine-readable; `exitCode` is what the CLI exits with. */
export class LieqError extends Error {
  readonly code: string;
  readonly exitCode: number;
  constructor(code: string, message: string, options?: { cause?: unknown; exitCode?: number }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = new.target.name;
    this.code = code;
    this.exitCode = options?.exitCode ?? 1;
  }
}

/** A bad command-line option or API argument. */
export class UsageError extends LieqError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_USAGE', message, { ...options, exitCode: 2 });
  }
}

/** A file that is missing or cannot be read. */
export class FileError extends LieqError {
  readonly file: string;
  constructor(file: string, message: string, options?: { cause?: unknown }) {
    super('E_FILE', `${file}: ${message}`, { ...options, exitCode: 3 });
    this.file = file;
  }
}

/** A file whose contents break its format's rules (safetensors, config.json, tokenizer, plan). */
export class FormatError extends LieqError {
  readonly file: string;
  readonly detail: string;
  constructor(file: string, detail: string, options?: { cause?: unknown; code?: string }) {
    super(options?.code ?? 'E_FORMAT', `${file}: ${detail}`, { ...options, exitCode: 4 });
    this.file = file;
    this.detail = detail;
  }
}

/** A valid file describing something lieq does not support (architecture, dtype, ...). */
export class UnsupportedError extends LieqError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_UNSUPPORTED', message, { ...options, exitCode: 5 });
  }
}

/** Tensor data that cannot be used (NaN/Inf weights, shape mismatch between files). */
export class DataError extends LieqError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_DATA', message, { ...options, exitCode: 6 });
  }
}

/** Plain-text chain of causes for --verbose. */
export function describeError(err: unknown, verbose = false): string {
  const lines: string[] = [];
  let e: unknown = err;
  let depth = 0;
  while (e !== undefined && depth < 8) {
    if (e instanceof Error) {
      lines.push(depth === 0 ? e.message : `caused by: ${e.message}`);
      if (verbose && e.stack && !(e instanceof LieqError)) lines.push(e.stack.split('\n').slice(1, 6).join('\n'));
      e = (e as { cause?: unknown }).cause;
    } else {
      lines.push(String(e));
      break;
    }
    if (!verbose) break;
    depth++;
  }
  return lines.join('\n');
}
