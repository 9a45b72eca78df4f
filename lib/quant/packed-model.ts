/**
 * The on-disk layout of a quantized model directory (what `lieq quantize` writes and the
 * runtime loads):
 *   config.json       the source config + "quantization_config" (below)
 *   model.safetensors embeddings F16; norms and biases F32; per packed linear W:
 *                     <W>.qweight U8 [out, paddedIn/32 · 4·bits], <W>.scales F16 [out, paddedIn/g],
 *                     <W>.zeros U8 [out, paddedIn/g] (asymmetric only); lm_head F16 or packed
 *   plan.json, report.json, report.md, charts/*.svg
 * quantization_config = { quant_method: "lieq", format: "lieq-packed/1", symmetric,
 *   layers: [{ bits, group_size, backbone }], lm_head: { bits, group_size }, ... }.
 */
import type { LinearName, ModelConfig } from '../io/config.js';
import { expectedTensors, linearShape, linearTensorName, LINEAR_NAMES } from '../io/config.js';
import type { TensorSpec } from '../io/safetensors.js';
import type { Plan } from '../lieq/plan.js';
import { resolveLayout, type LinearLayout } from './layout.js';

export const PACKED_FORMAT = 'lieq-packed/1';

export interface QuantizationConfig {
  quant_method: 'lieq';
  format: typeof PACKED_FORMAT;
  symmetric: boolean;
  layers: { bits: number; group_size: number; backbone: string }[];
  lm_head: { bits: number; group_size: number };
  embeddings: { dtype: 'F16' };
  plan_method: string;
  nominal_bits?: number;
}

/** Where a packed linear's three tensors live. */
export function packedNames(weightName: string): { qweight: string; scales: string; zeros: string } {
  const base = weightName.replace(/\.weight$/, '');
  return { qweight: `${base}.qweight`, scales: `${base}.scales`, zeros: `${base}.zeros` };
}

export function packedSpecs(weightName: string, out: number, layout: LinearLayout, bits: number, symmetric: boolean): TensorSpec[] {
  const n = packedNames(weightName);
  const groups = layout.paddedIn / layout.groupSize;
  const specs: TensorSpec[] = [
    { name: n.qweight, dtype: 'U8', shape: [out, (layout.paddedIn / 32) * 4 * bits] },
    { name: n.scales, dtype: 'F16', shape: [out, groups] },
  ];
  if (!symmetric) specs.push({ name: n.zeros, dtype: 'U8', shape: [out, groups] });
  return specs;
}

/** Layout of linear `name` of layer `layer` under a plan. */
export function planLayout(cfg: ModelConfig, plan: Plan, layer: number, name: LinearName): { out: number; layout: LinearLayout; bits: number } {
  const [out, inF] = linearShape(cfg, name);
  const lp = plan.layers[layer];
  return { out, layout: resolveLayout(inF, lp.groupSize), bits: lp.bits };
}

/** Every tensor of the quantized checkpoint, in write order (layer by layer). */
export function quantizedTensorSpecs(cfg: ModelConfig, plan: Plan): TensorSpec[] {
  const specs: TensorSpec[] = [];
  for (const t of expectedTensors(cfg)) {
    if (t.role === 'embedding') specs.push({ name: t.name, dtype: 'F16', shape: t.shape });
    else if (t.role === 'norm' || t.role === 'bias') specs.push({ name: t.name, dtype: 'F32', shape: t.shape });
    else if (t.role === 'linear') {
      const name = LINEAR_NAMES.find((n) => t.name === linearTensorName(t.layer!, n))!;
      const { out, layout, bits } = planLayout(cfg, plan, t.layer!, name);
      specs.push(...packedSpecs(t.name, out, layout, bits, plan.symmetric));
    }
  }
  if (plan.lmHeadBits === 16) {
    if (!cfg.tieWordEmbeddings) specs.push({ name: 'lm_head.weight', dtype: 'F16', shape: [cfg.vocabSize, cfg.hiddenSize] });
  } else {
    specs.push(...packedSpecs('lm_head.weight', cfg.vocabSize, resolveLayout(cfg.hiddenSize, plan.lmHeadGroupSize), plan.lmHeadBits, plan.symmetric));
  }
  return specs;
}

export function quantizationConfig(plan: Plan, nominalBits?: number): QuantizationConfig {
  return {
    quant_method: 'lieq',
    format: PACKED_FORMAT,
    symmetric: plan.symmetric,
    layers: plan.layers.map((l) => ({ bits: l.bits, group_size: l.groupSize, backbone: l.backbone })),
    lm_head: { bits: plan.lmHeadBits, group_size: plan.lmHeadGroupSize },
    embeddings: { dtype: 'F16' },
    plan_method: plan.method,
    ...(nominalBits !== undefined ? { nominal_bits: nominalBits } : {}),
  };
}
