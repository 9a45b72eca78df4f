/**
 * A model checkpoint: one `model.safetensors` or several shards listed in
 * `model.safetensors.index.json`, seen as one set of named tensors. Tied-weight aliases
 * recorded in a file's `__metadata__` (transformers' convention, e.g. the shipped
 * TinyStories-656K stores only `lm_head.weight` and names `model.embed_tokens.weight` as its
 * alias) are resolved here, so callers ask for either name.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { FileError, FormatError } from '../util/errors.js';
import { SafetensorsFile, type TensorInfo } from './safetensors.js';

export const INDEX_FILE = 'model.safetensors.index.json';
export const SINGLE_FILE = 'model.safetensors';

export class Checkpoint {
  readonly dir: string;
  readonly files: readonly SafetensorsFile[];
  /** Canonical tensor name -> file holding it. */
  private readonly where = new Map<string, SafetensorsFile>();
  /** Alias name -> canonical name (tied weights). */
  readonly aliases: ReadonlyMap<string, string>;

  private constructor(dir: string, files: SafetensorsFile[], weightMap?: Record<string, string>) {
    this.dir = dir;
    this.files = files;
    for (const f of files) {
      for (const name of f.tensors.keys()) {
        if (this.where.has(name))
          throw new FormatError(f.path, `tensor "${name}" is also stored in ${this.where.get(name)!.path}`);
        this.where.set(name, f);
      }
    }
    if (weightMap) {
      for (const [name, file] of Object.entries(weightMap)) {
        const f = this.where.get(name);
        if (!f) throw new FormatError(join(dir, INDEX_FILE), `weight_map names tensor "${name}" in ${file}, but no shard holds it`);
        if (!f.path.endsWith(file)) throw new FormatError(join(dir, INDEX_FILE), `weight_map puts "${name}" in ${file}, but it is in ${f.path}`);
      }
    }
    const aliases = new Map<string, string>();
    for (const f of files) {
      for (const [k, v] of Object.entries(f.metadata)) {
        if (!this.where.has(k) && this.where.has(v) && looksLikeTensorName(k)) aliases.set(k, v);
      }
    }
    this.aliases = aliases;
  }

  /** Open the safetensors checkpoint in `dir` (index.json if present, else model.safetensors, else the only *.safetensors). */
  static open(dir: string): Checkpoint {
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new FileError(dir, 'model directory not found');
    const indexPath = join(dir, INDEX_FILE);
    if (existsSync(indexPath)) {
      let index: { weight_map?: Record<string, string> };
      try {
        index = JSON.parse(readFileSync(indexPath, 'utf8'));
      } catch (err) {
        throw new FormatError(indexPath, `not valid JSON (${(err as Error).message})`, { cause: err });
      }
      const wm = index?.weight_map;
      if (typeof wm !== 'object' || wm === null || Array.isArray(wm) || !Object.values(wm).every((v) => typeof v === 'string'))
        throw new FormatError(indexPath, '"weight_map" must be an object mapping tensor names to shard file names');
      const shardNames = [...new Set(Object.values(wm))].sort();
      for (const s of shardNames) {
        if (s.length === 0 || s.includes('/') || s.includes('\\') || s.startsWith('.'))
          throw new FormatError(indexPath, `shard name "${s}" must be a plain file name in the model directory`);
      }
      return Checkpoint.fromFiles(dir, shardNames.map((s) => join(dir, s)), wm);
    }
    const single = join(dir, SINGLE_FILE);
    if (existsSync(single)) return Checkpoint.fromFiles(dir, [single]);
    const any = readdirSync(dir).filter((f) => f.endsWith('.safetensors') && !f.startsWith('.')).sort();
    if (any.length === 1) return Checkpoint.fromFiles(dir, [join(dir, any[0])]);
    if (any.length === 0) throw new FileError(dir, `no ${SINGLE_FILE} or ${INDEX_FILE} in the model directory`);
    throw new FileError(dir, `several .safetensors files but no ${INDEX_FILE} to say which are shards`);
  }

  private static fromFiles(dir: string, paths: string[], weightMap?: Record<string, string>): Checkpoint {
    const opened: SafetensorsFile[] = [];
    try {
      for (const p of paths) opened.push(SafetensorsFile.open(p));
      return new Checkpoint(dir, opened, weightMap);
    } catch (err) {
      for (const f of opened) f.close();
      throw err;
    }
  }

  /** Canonical (stored) tensor names, in file order. */
  names(): string[] {
    return [...this.where.keys()];
  }

  has(name: string): boolean {
    return this.where.has(name) || this.aliases.has(name);
  }

  /** Stored name for `name` (follows a tied-weight alias). */
  resolve(name: string): string {
    return this.aliases.get(name) ?? name;
  }

  info(name: string): TensorInfo {
    const real = this.resolve(name);
    const f = this.where.get(real);
    if (!f) throw new FormatError(this.dir, `checkpoint has no tensor "${name}"`, { code: 'E_NO_TENSOR' });
    return f.info(real);
  }

  readF32(name: string): Float32Array {
    const real = this.resolve(name);
    return this.fileOf(name).readF32(real);
  }

  /** `name` converted to f32 into `out`, which is reused memory (see SafetensorsFile.readF32Into). */
  readF32Into(name: string, out: Float32Array): Float32Array {
    return this.fileOf(name).readF32Into(this.resolve(name), out);
  }

  /** Rows of a matrix tensor as f32 [rows.length, cols], optionally into `out` (see SafetensorsFile.readRowsF32). */
  readRowsF32(name: string, rows: ArrayLike<number>, out?: Float32Array): Float32Array {
    return this.fileOf(name).readRowsF32(this.resolve(name), rows, out);
  }

  readBytes(name: string): Buffer {
    const real = this.resolve(name);
    return this.fileOf(name).readBytes(real);
  }

  /** Bytes on disk of all files (headers included). */
  sizeOnDisk(): number {
    return this.files.reduce((s, f) => s + f.fileSize, 0);
  }

  close(): void {
    for (const f of this.files) f.close();
  }

  private fileOf(name: string): SafetensorsFile {
    const f = this.where.get(this.resolve(name));
    if (!f) throw new FormatError(this.dir, `checkpoint has no tensor "${name}"`, { code: 'E_NO_TENSOR' });
    return f;
  }
}

function looksLikeTensorName(s: string): boolean {
  return /\.(weight|bias)$/.test(s);
}
