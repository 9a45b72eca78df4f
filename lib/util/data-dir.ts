/**
 * Where the shipped real data lives: LIEQ_DATA_DIR, else ../shared/data beside the package
 * checkout. Tests and the default CLI model read from here; nothing is copied in.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { packageRoot } from '../native.js';

export function dataDir(): string {
  const env = process.env.LIEQ_DATA_DIR;
  if (env) return resolve(env);
  return resolve(packageRoot, '..', 'shared', 'data');
}

/** Path inside the data dir. */
export function dataPath(...parts: string[]): string {
  return join(dataDir(), ...parts);
}

export function hasData(): boolean {
  return existsSync(join(dataDir(), 'models'));
}

/** Shipped models by short name. */
export const SHIPPED_MODELS = {
  stories260K: 'models/stories260K',
  'tinystories-656K': 'models/tinystories-656K',
} as const;

/** Resolve a model argument: a shipped model's short name or a directory path. */
export function resolveModelArg(arg: string): string {
  if (arg in SHIPPED_MODELS) return dataPath(SHIPPED_MODELS[arg as keyof typeof SHIPPED_MODELS]);
  return resolve(arg);
}
