/**
 * Per-layer checkpoints of `lieq quantize`, so a killed run resumes where it stopped.
 *
 * Work folder `<out>.lieq-partial/` beside the output:
 *   manifest.json        { format, key, inputs }: `inputs` is everything that changes the
 *                        output bytes (model fingerprint, plan, RTN grid, GPTQ and calibration
 *                        settings, lieq version); `key` is its sha256
 *   layer-00012.safetensors  layer 12's tensors exactly as the output file holds them
 *                        (packed linears, norms, biases), metadata {key, layer, sha256 of the
 *                        data section}; written temp + fsync + rename, so a file is whole or absent
 * A rerun with the same key reuses every layer file whose checksum verifies; a different key is
 * refused (naming the inputs that differ) unless `force`, which discards the folder. The
 * output directory is assembled from the checkpoints and renamed into place; then the work
 * folder is removed.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { linearShape, linearTensorName, LINEAR_NAMES, type LinearName, type ModelConfig } from '../io/config.js';
import { SafetensorsFile, writeSafetensors, type TensorSpec } from '../io/safetensors.js';
import type { PackedBits } from '../kernels/packed-format.js';
import type { PackedLinear } from '../kernels/quant.js';
import type { Plan } from '../lieq/plan.js';
import { packedLinear, type RuntimeLinear } from '../runtime/linear.js';
import { hasBias, type LayerWeights } from '../runtime/model.js';
import { writeJsonAtomic } from '../util/atomic.js';
import { FormatError, UsageError } from '../util/errors.js';
import { resolveLayout } from './layout.js';
import { packedNames } from './packed-model.js';

export const RESUME_FORMAT = 'lieq-resume/1';

export interface ResumeManifest {
  format: typeof RESUME_FORMAT;
  key: string;
  inputs: Record<string, unknown>;
}

export function workDirFor(out: string): string {
  return `${out}.lieq-partial`;
}

/** Stable JSON (sorted keys), so the key does not depend on property order. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object')
    return `{${Object.keys(v as object).sort().filter((k) => (v as Record<string, unknown>)[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`;
  return JSON.stringify(v);
}

const layerFile = (l: number) => `layer-${String(l).padStart(5, '0')}.safetensors`;

/** Tensors of layer `l` in the output, in write order. */
export function layerSpecs(specs: readonly TensorSpec[], l: number): TensorSpec[] {
  const prefix = `model.layers.${l}.`;
  return specs.filter((s) => s.name.startsWith(prefix));
}

export class LayerCheckpoints {
  readonly dir: string;
  readonly key: string;
  /** Layers whose checkpoint file verified when the folder was opened (or was written since). */
  private readonly finished = new Set<number>();

  private constructor(dir: string, key: string) {
    this.dir = dir;
    this.key = key;
  }

  /**
   * Open (or create) the work folder of `out` for a run with `inputs`. `resume: false` or a
   * different key with `force` discards existing checkpoints; a different key without `force`
   * is a UsageError. Corrupt layer files are removed (reported through `warn`) and recomputed.
   */
  static open(out: string, inputs: Record<string, unknown>, o: { force?: boolean; resume?: boolean; numLayers: number; warn?: (m: string) => void }): LayerCheckpoints {
    const dir = workDirFor(out);
    const key = createHash('sha256').update(canonical({ format: RESUME_FORMAT, inputs })).digest('hex');
    const manifestPath = join(dir, 'manifest.json');
    if (existsSync(dir)) {
      let old: ResumeManifest | null = null;
      try {
        old = JSON.parse(readFileSync(manifestPath, 'utf8')) as ResumeManifest;
      } catch {
        old = null; // killed before the manifest was renamed into place: nothing to keep
      }
      const same = old?.format === RESUME_FORMAT && old.key === key;
      if (old && !same && o.resume !== false && !o.force) {
        const differ = old.inputs && typeof old.inputs === 'object' ? Object.keys({ ...old.inputs, ...inputs }).filter((k) => canonical(old!.inputs[k]) !== canonical(inputs[k])) : ['format'];
        throw new UsageError(
          `${dir} holds checkpoints of an interrupted quantize run with different inputs (${differ.join(', ') || 'format'} differ); rerun with the same arguments to resume it, or pass --force to discard it`,
        );
      }
      if (!same || o.resume === false) rmSync(dir, { recursive: true, force: true });
    }
    mkdirSync(dir, { recursive: true });
    if (!existsSync(manifestPath)) writeJsonAtomic(manifestPath, { format: RESUME_FORMAT, key, inputs } satisfies ResumeManifest);
    const c = new LayerCheckpoints(dir, key);
    for (const name of readdirSync(dir)) {
      const m = /^layer-(\d{5})\.safetensors$/.exec(name);
      if (!m) continue;
      const l = Number(m[1]);
      const problem = l < o.numLayers ? c.verify(l) : 'layer outside the model';
      if (problem === null) c.finished.add(l);
      else {
        o.warn?.(`${join(dir, name)}: ${problem}; recomputing layer ${l}`);
        rmSync(join(dir, name), { force: true });
      }
    }
    return c;
  }

  has(l: number): boolean {
    return this.finished.has(l);
  }

  get count(): number {
    return this.finished.size;
  }

  path(l: number): string {
    return join(this.dir, layerFile(l));
  }

  /** Write layer `l`'s tensors (`specs` order; `bytes` by name) atomically with their checksum. */
  write(l: number, specs: readonly TensorSpec[], bytes: ReadonlyMap<string, Uint8Array>): void {
    const h = createHash('sha256');
    const tensors = specs.map((s) => {
      const data = bytes.get(s.name);
      if (!data) throw new FormatError(this.path(l), `checkpoint of layer ${l} lacks tensor "${s.name}"`);
      h.update(data);
      return { ...s, data };
    });
    writeSafetensors(this.path(l), tensors, { format: RESUME_FORMAT, key: this.key, layer: String(l), sha256: h.digest('hex') });
    this.finished.add(l);
  }

  /** Open a verified layer checkpoint (the caller closes it). */
  open(l: number): SafetensorsFile {
    if (!this.finished.has(l)) throw new UsageError(`layer ${l} has no checkpoint`);
    return SafetensorsFile.open(this.path(l));
  }

  /** Remove the work folder (after the output is in place). */
  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** null when layer `l`'s file is whole and belongs to this run, else what is wrong. */
  private verify(l: number): string | null {
    let f: SafetensorsFile;
    try {
      f = SafetensorsFile.open(this.path(l));
    } catch (err) {
      return (err as Error).message;
    }
    try {
      if (f.metadata.key !== this.key || f.metadata.layer !== String(l)) return 'checkpoint of another run';
      const h = createHash('sha256');
      for (const t of [...f.tensors.values()].sort((a, b) => a.offset - b.offset)) h.update(f.readBytes(t.name));
      return h.digest('hex') === f.metadata.sha256 ? null : 'checksum mismatch';
    } catch (err) {
      return (err as Error).message;
    } finally {
      f.close();
    }
  }
}

/**
 * Layer `l` as runtime weights from its checkpoint (packed linears, norms, biases): what a
 * resumed GPTQ run propagates its calibration hidden states through, bit for bit the layer
 * the interrupted run had in memory.
 */
export function checkpointLayer(f: SafetensorsFile, cfg: ModelConfig, plan: Plan, l: number): LayerWeights {
  // Fresh, aligned copies: typed views need their element alignment.
  const bytes = (name: string) => new Uint8Array(f.readBytes(name));
  const f32 = (name: string) => new Float32Array(bytes(name).buffer);
  const lp = plan.layers[l];
  const linears = {} as Record<LinearName, RuntimeLinear>;
  for (const name of LINEAR_NAMES) {
    const [out, inF] = linearShape(cfg, name);
    const wn = linearTensorName(l, name);
    const n = packedNames(wn);
    const layout = resolveLayout(inF, lp.groupSize);
    const p: PackedLinear = {
      outFeatures: out,
      inFeatures: layout.paddedIn,
      bits: lp.bits as PackedBits,
      groupSize: layout.groupSize,
      symmetric: plan.symmetric,
      qweight: bytes(n.qweight),
      scales: new Uint16Array(bytes(n.scales).buffer),
    };
    if (!plan.symmetric) p.zeros = bytes(n.zeros);
    linears[name] = packedLinear(p, hasBias(cfg, name) ? f32(wn.replace(/weight$/, 'bias')) : null, inF);
  }
  const p = `model.layers.${l}`;
  return {
    index: l,
    inputNorm: f32(`${p}.input_layernorm.weight`),
    postAttentionNorm: f32(`${p}.post_attention_layernorm.weight`),
    qNorm: cfg.qkNorm ? f32(`${p}.self_attn.q_norm.weight`) : null,
    kNorm: cfg.qkNorm ? f32(`${p}.self_attn.k_norm.weight`) : null,
    linears,
  };
}
