/**
 * The report written beside every quantized model (report.json, report.md, charts/*.svg):
 * the metrics per layer and the chosen bits, the bit accounting, perplexity before/after, and
 * the Spearman correlation between the score ranking and measured single-layer sensitivity
 * (ΔPPL with only that layer at 2 bits) — the paper's "functional saliency" claim, checked.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { barChartSvg, type BarDatum } from '../report/charts.js';
import { perplexity, type PerplexityResult } from '../runtime/perplexity.js';
import type { RuntimeModel } from '../runtime/model.js';
import { quantizeLayerRtn } from '../quant/quantize-layer.js';
import type { Analysis, ScoreVersion } from './analysis.js';
import type { BitAccounting, Plan } from './plan.js';
import { spearman } from './stats.js';

export interface Sensitivity {
  bits: number;
  basePerplexity: number;
  /** PPL with only layer l quantized to `bits` (RTN), per layer. */
  perplexity: number[];
  /** log PPL(layer l at `bits`) − log PPL(full precision). */
  deltaLogPpl: number[];
  windows: number;
}

/** Measure single-layer sensitivity on `ids` (limited windows). L+1 evaluations. */
export async function measureSensitivity(
  model: RuntimeModel,
  ids: Int32Array,
  o: { ctx: number; limit: number; bits?: number; groupSize: number; symmetric: boolean; onProgress?(done: number, total: number): void },
): Promise<Sensitivity> {
  const bits = o.bits ?? 2;
  const L = model.config.numLayers;
  const base = await perplexity(model, ids, { ctx: o.ctx, limit: o.limit });
  o.onProgress?.(1, L + 1);
  const ppl: number[] = [];
  for (let l = 0; l < L; l++) {
    const q = await quantizeLayerRtn(model.layer(l), bits, o.groupSize, o.symmetric);
    const r = await perplexity(model, ids, { ctx: o.ctx, limit: o.limit, replaceLayers: new Map([[l, q]]) });
    ppl.push(r.perplexity);
    o.onProgress?.(l + 2, L + 1);
  }
  return { bits, basePerplexity: base.perplexity, perplexity: ppl, deltaLogPpl: ppl.map((p) => Math.log(p) - Math.log(base.perplexity)), windows: base.windows };
}

export interface QuantizeReport {
  model: string;
  out: string;
  plan: Plan;
  accounting: BitAccounting;
  score?: { version: ScoreVersion; values: number[] };
  analysis?: Analysis;
  sensitivity?: Sensitivity;
  /** Spearman(score ranking, sensitivity ranking); NaN if either is missing or constant. */
  spearmanScoreVsSensitivity?: number;
  perplexityBefore?: PerplexityResult & { dataset: string };
  perplexityAfter?: PerplexityResult & { dataset: string };
  quantizeSeconds: number;
  peakRssBytes: number;
  date: string;
}

export function finaliseReport(r: QuantizeReport): QuantizeReport {
  if (r.score && r.sensitivity) r.spearmanScoreVsSensitivity = spearman(r.score.values, r.sensitivity.deltaLogPpl);
  return r;
}

const fmt = (x: number | undefined, d = 4) => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(d));

export function reportMarkdown(r: QuantizeReport): string {
  const a = r.accounting;
  const lines: string[] = [];
  lines.push(`# lieq quantization report`, '');
  lines.push(`- model: \`${r.model}\``, `- output: \`${r.out}\``, `- plan: ${r.plan.method}${r.plan.budget !== undefined ? `, budget ${r.plan.budget}` : ''}${r.plan.score ? `, score ${r.plan.score}` : ''}; backbone ${[...new Set(r.plan.layers.map((l) => l.backbone))].join('/')}; ${r.plan.symmetric ? 'symmetric' : 'asymmetric'}; lm_head ${r.plan.lmHeadBits}-bit`);
  lines.push(`- date: ${r.date}; quantize time ${r.quantizeSeconds.toFixed(2)} s; peak RSS ${(r.peakRssBytes / 2 ** 20).toFixed(0)} MiB`, '');
  lines.push('## Bit accounting', '');
  lines.push('| quantity | value |', '|---|---|');
  lines.push(`| nominal average (decoder linears, payload; the paper's convention) | ${a.nominalBits.toFixed(4)} bits |`);
  lines.push(`| decoder linears incl. scales/zeros | ${a.decoderBitsPerWeight.toFixed(4)} bits/weight |`);
  lines.push(`| whole model (embeddings, lm_head, norms included) | ${a.modelBitsPerWeight.toFixed(4)} bits/weight |`);
  lines.push(`| packed size | ${a.packedBytes.toLocaleString('en-US')} bytes (fp16: ${a.fp16Bytes.toLocaleString('en-US')}) |`, '');
  if (r.perplexityBefore || r.perplexityAfter) {
    lines.push('## Perplexity', '');
    lines.push('| model | dataset | windows × ctx | perplexity |', '|---|---|---|---|');
    for (const [name, p] of [['full precision', r.perplexityBefore], ['quantized', r.perplexityAfter]] as const)
      if (p) lines.push(`| ${name} | ${p.dataset} | ${p.windows} × ${p.ctx} | ${p.perplexity.toFixed(4)} |`);
    lines.push('');
  }
  lines.push('## Layers', '');
  const hasA = !!r.analysis;
  lines.push(`| layer | bits | ${hasA ? 'ΔRC | TEG | PD | ' : ''}${r.score ? 'score | ' : ''}${r.sensitivity ? `ΔlogPPL @${r.sensitivity.bits}b | ` : ''}bits/weight |`);
  lines.push(`|---|---|${hasA ? '---|---|---|' : ''}${r.score ? '---|' : ''}${r.sensitivity ? '---|' : ''}---|`);
  r.plan.layers.forEach((lp, i) => {
    const m = r.analysis?.layers[i];
    lines.push(
      `| ${i} | ${lp.bits} | ${hasA ? `${m!.deltaRC.toExponential(3)} | ${m!.teg.toExponential(3)} | ${fmt(m!.pd)} | ` : ''}${r.score ? `${fmt(r.score.values[i])} | ` : ''}${r.sensitivity ? `${fmt(r.sensitivity.deltaLogPpl[i])} | ` : ''}${a.perLayer[i].bitsPerWeight.toFixed(3)} |`,
    );
  });
  lines.push('');
  if (r.spearmanScoreVsSensitivity !== undefined)
    lines.push(`Spearman correlation between the ${r.score?.version} score ranking and measured single-layer sensitivity: **${fmt(r.spearmanScoreVsSensitivity, 3)}** (${r.plan.layers.length} layers; ${r.sensitivity?.windows} evaluation windows).`, '');
  lines.push('## Charts', '', '![bits per layer](charts/bits.svg)');
  if (hasA) lines.push('', '![ΔRC per layer](charts/delta-rc.svg)', '', '![TEG per layer](charts/teg.svg)');
  if (r.analysis?.layers.every((l) => l.pd !== undefined)) lines.push('', '![PD per layer](charts/pd.svg)');
  if (r.sensitivity) lines.push('', '![sensitivity per layer](charts/sensitivity.svg)');
  return lines.join('\n') + '\n';
}

/** Write report.json, report.md and charts/*.svg into `dir`. */
export async function writeReport(dir: string, r: QuantizeReport): Promise<void> {
  const charts = join(dir, 'charts');
  mkdirSync(charts, { recursive: true });
  const per = (vals: number[]): BarDatum[] => vals.map((y, x) => ({ x, y }));
  const nominal = r.accounting.nominalBits;
  const svgs: [string, Promise<string>][] = [
    ['bits.svg', barChartSvg(per(r.plan.layers.map((l) => l.bits)), { title: 'Bits per layer', xTitle: 'layer', yTitle: 'bits', rule: { y: nominal, label: 'nominal average' } })],
  ];
  if (r.analysis) {
    svgs.push(['delta-rc.svg', barChartSvg(per(r.analysis.layers.map((l) => l.deltaRC)), { title: 'ΔRC (trained − random reference)', xTitle: 'layer', yTitle: 'ΔRC' })]);
    svgs.push(['teg.svg', barChartSvg(per(r.analysis.layers.map((l) => l.teg)), { title: `Top-k energy gain (k = ${r.analysis.settings.topk})`, xTitle: 'layer', yTitle: 'TEG' })]);
    if (r.analysis.layers.every((l) => l.pd !== undefined))
      svgs.push(['pd.svg', barChartSvg(per(r.analysis.layers.map((l) => l.pd as number)), { title: 'Perplexity drop (layer skipped)', xTitle: 'layer', yTitle: 'Δ log PPL' })]);
  }
  if (r.sensitivity)
    svgs.push(['sensitivity.svg', barChartSvg(per(r.sensitivity.deltaLogPpl), { title: `Sensitivity: Δ log PPL with only that layer at ${r.sensitivity.bits} bits`, xTitle: 'layer', yTitle: 'Δ log PPL' })]);
  for (const [name, svg] of svgs) writeFileSync(join(charts, name), await svg);
  writeFileSync(join(dir, 'report.json'), JSON.stringify(r, null, 2) + '\n');
  writeFileSync(join(dir, 'report.md'), reportMarkdown(r));
}
