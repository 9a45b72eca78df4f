/**
 * What `lieq bench --plan` accepts, and how a plan is applied to a full-precision model in
 * memory (round-to-nearest packing layer by layer as the layers are read, so the f32 weights
 * of one layer at a time are held):
 *
 *   f32          the model as it is (dense f32 linears)
 *   uniform:B    every decoder layer at B bits (2, 3, 4, 8)
 *   bits:B       a nominal budget of B bits, allocated over the allowed widths in a seeded
 *                random layer order (greedy fill). Speed depends on how many weights get each
 *                width, not on which layers get them, so random model shapes need no analysis;
 *                for a real model's LieQ plan pass the plan file that `lieq allocate` wrote.
 *   FILE.json    a plan file (lieq-plan/1); its backbone is ignored (RTN packs the same bytes
 *                GPTQ would, so the speed is the same)
 */
import { basename } from 'node:path';

import type { ModelConfig } from '../io/config.js';
import type { PackedBits } from '../kernels/packed-format.js';
import { allocateRandom, allocateUniform } from '../lieq/allocate.js';
import { accountPlan, checkPlanFits, layerLinearWeights, loadPlan, makePlan, type Plan } from '../lieq/plan.js';
import { packDense } from '../runtime/linear.js';
import { packLayer, type WeightSource } from '../runtime/model.js';
import { UsageError } from '../util/errors.js';

export type PlanSpec =
  | { kind: 'f32'; text: string }
  | { kind: 'uniform'; text: string; bits: number }
  | { kind: 'budget'; text: string; budget: number }
  | { kind: 'file'; text: string; path: string; plan: Plan };

export interface PlanDefaults {
  groupSize: number;
  lmHeadBits: 16 | 8 | 4;
  allowed: number[];
  seed: number;
}

/** Parse one --plan value (see the file comment); a plan file is read and validated now. */
export function parsePlanSpec(text: string): PlanSpec {
  const t = text.trim();
  if (t === 'f32' || t === 'fp32') return { kind: 'f32', text: t };
  const m = /^(uniform|bits):(.*)$/.exec(t);
  if (m) {
    const v = Number(m[2]);
    if (m[2].trim() === '' || !Number.isFinite(v)) throw new UsageError(`--plan ${t}: expected a number after "${m[1]}:"`);
    if (m[1] === 'uniform') {
      if (![2, 3, 4, 8].includes(v)) throw new UsageError(`--plan ${t}: uniform bits must be 2, 3, 4 or 8`);
      return { kind: 'uniform', text: t, bits: v };
    }
    if (!(v >= 2 && v <= 8)) throw new UsageError(`--plan ${t}: a budget must be between 2 and 8 bits`);
    return { kind: 'budget', text: t, budget: v };
  }
  if (/^[a-z][a-z0-9]*:/i.test(t) && !t.endsWith('.json')) throw new UsageError(`--plan ${t}: expected f32, uniform:B, bits:B or a plan JSON file`);
  return { kind: 'file', text: t, path: t, plan: loadPlan(t) };
}

/** The plan a spec gives for a model of config `cfg` (null for f32). */
export function resolvePlan(spec: PlanSpec, cfg: ModelConfig, d: PlanDefaults): Plan | null {
  const weights = new Array<number>(cfg.numLayers).fill(layerLinearWeights(cfg));
  const common = { groupSize: d.groupSize, lmHeadBits: d.lmHeadBits };
  switch (spec.kind) {
    case 'f32':
      return null;
    case 'uniform':
      return makePlan(cfg, allocateUniform(weights, spec.bits).bits, { ...common, method: 'uniform' });
    case 'budget': {
      const a = allocateRandom({ scores: weights.map(() => 0), weights, allowed: d.allowed, budget: spec.budget }, d.seed);
      return makePlan(cfg, a.bits, { ...common, method: 'random', budget: spec.budget, seed: d.seed });
    }
    case 'file':
      checkPlanFits(spec.plan, cfg, spec.path);
      return spec.plan;
  }
}

/** Short name of a plan in tables: "f32", "uniform 4-bit", "random 2.05-bit", "plan.json 2.06-bit". */
export function planLabel(spec: PlanSpec, plan: Plan | null, cfg: ModelConfig): string {
  if (!plan) return 'f32';
  const nominal = accountPlan(plan, cfg).nominalBits;
  const head = plan.lmHeadBits === 16 ? '' : `, head ${plan.lmHeadBits}-bit`;
  if (spec.kind === 'uniform') return `uniform ${spec.bits}-bit${head}`;
  if (spec.kind === 'budget') return `${spec.budget}-bit random alloc (${nominal.toFixed(3)})${head}`;
  return `${basename(spec.kind === 'file' ? spec.path : spec.text)} ${nominal.toFixed(3)}-bit${head}`;
}

/**
 * `source` with every decoder layer packed (round-to-nearest, min-max) as `plan` says when it
 * is read, and the LM head packed when plan.lmHeadBits < 16 (a tied head gets its own packed
 * copy; the embedding table stays for the token rows).
 */
export function plannedSource(source: WeightSource, plan: Plan): WeightSource {
  checkPlanFits(plan, source.config, source.label);
  return {
    config: source.config,
    label: source.label,
    embedding: () => source.embedding(),
    finalNorm: () => source.finalNorm(),
    lmHead: (embedding) => {
      const head = source.lmHead(embedding);
      if (plan.lmHeadBits === 16 || head.kind !== 'dense') return head;
      return packDense(head, { bits: plan.lmHeadBits as PackedBits, groupSize: plan.lmHeadGroupSize, symmetric: plan.symmetric });
    },
    layer: (index) => {
      const lp = plan.layers[index];
      return packLayer(source.layer(index), () => ({ bits: lp.bits as PackedBits, groupSize: lp.groupSize, symmetric: plan.symmetric }));
    },
    close: () => source.close(),
  };
}
