/**
 * What the farm runs. A submission is expanded into one job per (model × plan); jobs of one
 * model share its analysis, which runs once as its own job before the plan jobs are released
 * (see queue.ts). Job ids are content hashes of the spec, so submitting the same work twice
 * adds nothing (BullMQ ignores an add whose id exists) and a job's outputs have a fixed place.
 */
import { createHash } from 'node:crypto';
import { basename } from 'node:path';

import { UsageError } from '../util/errors.js';

export type FarmBackbone = 'rtn' | 'gptq';
export type FarmStage = 'quantize' | 'eval' | 'bench';
export const FARM_STAGES: readonly FarmStage[] = ['quantize', 'eval', 'bench'];

/** One model at one budget: analyze (shared) → allocate + quantize → eval → bench. */
export interface PlanJobSpec {
  kind: 'plan';
  /** Absolute model directory, visible to every worker (shared storage). */
  model: string;
  /** Average-bit budget (LieQ allocation) or, with `uniform`, every layer at this width. */
  bits: number;
  uniform: boolean;
  backbone: FarmBackbone;
  groupSize: number;
  /** Perplexity dataset of the eval stage. */
  evalDataset: string;
  evalLimit: number;
  /** Calibration settings of the shared analysis. */
  calib: string;
  samples: number;
  seqlen: number;
  stages: FarmStage[];
}

/** The analysis of one model (cached on shared storage), then the release of its plan jobs. */
export interface AnalyzeJobSpec {
  kind: 'analyze';
  model: string;
  calib: string;
  samples: number;
  seqlen: number;
  /** The default score measures each layer with the plan's quantizer: same group and backbone. */
  groupSize: number;
  backbone: FarmBackbone;
}

export type JobSpec = PlanJobSpec | AnalyzeJobSpec;

function slug(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 40) || 'model';
}

function digest(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 12);
}

/** Stable id: readable prefix + hash of everything that changes the result. No ':' (BullMQ). */
export function jobId(spec: JobSpec): string {
  const name = slug(basename(spec.model));
  if (spec.kind === 'analyze') return `analyze-${name}-${digest(spec)}`;
  const label = `${spec.uniform ? 'u' : 'b'}${spec.bits}-${spec.backbone}`;
  return `plan-${name}-${label}-${digest(spec)}`;
}

/** The analysis job that a plan job depends on. */
export function analyzeSpecOf(p: PlanJobSpec): AnalyzeJobSpec {
  return { kind: 'analyze', model: p.model, calib: p.calib, samples: p.samples, seqlen: p.seqlen, groupSize: p.groupSize, backbone: p.backbone };
}

export function parseStages(list: string): FarmStage[] {
  const stages = list.split(',').map((s) => s.trim()).filter(Boolean);
  if (stages.length === 0) throw new UsageError('--stages: expected a comma-separated list of quantize, eval, bench');
  for (const s of stages) if (!FARM_STAGES.includes(s as FarmStage)) throw new UsageError(`--stages: unknown stage "${s}" (expected quantize, eval, bench)`);
  if (!stages.includes('quantize')) throw new UsageError('--stages: quantize is required (eval and bench run on its output)');
  // Keep the pipeline order whatever order was typed.
  return FARM_STAGES.filter((s) => stages.includes(s));
}
