/**
 * Rendering of a bench report: one comparison table (a row per target × batch) for the
 * terminal, CSV and markdown, bar charts (SVG), and `--out DIR` writing them all.
 */
import { join } from 'node:path';

import { barChartSvg, type BarDatum } from '../report/charts.js';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic.js';
import type { BenchReport, TargetResult } from './run.js';
import type { BatchResult } from './measure.js';

/** One row of the comparison: numbers only (formatting is per output). */
export interface BenchRow {
  model: string;
  plan: string;
  batch: number;
  weightBytes: number;
  ppTokensPerSecond: number | null;
  ppStddev: number | null;
  tgTokensPerSecond: number | null;
  tgStddev: number | null;
  msPerStep: number | null;
  weightBytesPerToken: number | null;
  effectiveGBs: number | null;
  /** Effective GB/s over the measured read bandwidth, percent. */
  bandwidthPercent: number | null;
  peakRssBytes: number;
  deviceBytes: number | null;
}

export function benchRows(r: BenchReport): BenchRow[] {
  // % BW compares with the memory the weights stream from: host RAM on CPU, the GPU's DRAM with CUDA.
  const ceiling = r.device === 'cpu' ? r.bandwidth.usedGBs : (r.deviceBandwidth?.usedGBs ?? null);
  return r.results.flatMap((t: TargetResult) =>
    t.batches.map((b: BatchResult) => ({
      model: t.model,
      plan: t.plan,
      batch: b.batch,
      weightBytes: t.weightBytes,
      ppTokensPerSecond: b.prefill?.tokensPerSecond.mean ?? null,
      ppStddev: b.prefill?.tokensPerSecond.stddev ?? null,
      tgTokensPerSecond: b.decode?.tokensPerSecond.mean ?? null,
      tgStddev: b.decode?.tokensPerSecond.stddev ?? null,
      msPerStep: b.decode?.msPerStep.mean ?? null,
      weightBytesPerToken: b.decode?.weightBytesPerToken ?? null,
      effectiveGBs: b.decode?.effectiveGBs.mean ?? null,
      bandwidthPercent: b.decode && ceiling ? (100 * b.decode.effectiveGBs.mean) / ceiling : null,
      peakRssBytes: t.peakRssBytes,
      deviceBytes: b.memory.deviceBytes ?? null,
    })),
  );
}

const pm = (mean: number | null, sd: number | null, digits: number) => (mean === null ? '-' : `${mean.toFixed(digits)} ± ${(sd ?? 0).toFixed(digits)}`);
const num = (x: number | null, digits: number) => (x === null ? '-' : x.toFixed(digits));
const tpsDigits = (x: number | null) => (x !== null && x < 100 ? 2 : 1);
const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(bytes < 10 * 2 ** 20 ? 2 : 0);

/** Header and formatted cells of the comparison table (terminal and markdown). */
export function benchCells(rows: BenchRow[], withDevice: boolean): { head: string[]; body: string[][] } {
  const head = ['model', 'plan', 'B', 'weights MiB', 'pp t/s', 'tg t/s', 'ms/step', 'MB/token', 'GB/s', '% BW', 'peak RSS MiB'];
  if (withDevice) head.push('GPU MiB');
  const body = rows.map((r) => {
    const c = [
      r.model,
      r.plan,
      String(r.batch),
      mib(r.weightBytes),
      pm(r.ppTokensPerSecond, r.ppStddev, tpsDigits(r.ppTokensPerSecond)),
      pm(r.tgTokensPerSecond, r.tgStddev, tpsDigits(r.tgTokensPerSecond)),
      num(r.msPerStep, 2),
      r.weightBytesPerToken === null ? '-' : (r.weightBytesPerToken / 1e6).toFixed(r.weightBytesPerToken < 1e7 ? 3 : 1),
      num(r.effectiveGBs, 2),
      num(r.bandwidthPercent, 0),
      mib(r.peakRssBytes),
    ];
    if (withDevice) c.push(r.deviceBytes === null ? '-' : mib(r.deviceBytes));
    return c;
  });
  return { head, body };
}

export function settingsLine(r: BenchReport): string {
  const s = r.settings;
  return (
    `${r.device === 'cpu' ? r.machine.cpu : r.results[0]?.deviceName ?? r.device}, ${r.threads} threads; prompt ${s.prompt}, gen ${s.gen}, ` +
    `${s.repeat} repeats (mean ± stddev), warm-up excluded; host read bandwidth ${r.bandwidth.usedGBs.toFixed(2)} GB/s ` +
    `(start ${r.bandwidth.startGBs.toFixed(2)}, end ${r.bandwidth.endGBs.toFixed(2)})` +
    (r.deviceBandwidth
      ? `; GPU read bandwidth ${r.deviceBandwidth.usedGBs.toFixed(0)} GB/s (start ${r.deviceBandwidth.startGBs.toFixed(0)}, end ${r.deviceBandwidth.endGBs.toFixed(0)})`
      : '')
  );
}

export function renderBenchMarkdown(r: BenchReport): string {
  const { head, body } = benchCells(benchRows(r), r.device === 'cuda');
  const esc = (c: string) => c.replace(/\|/g, '\\|');
  const lines = [
    `# lieq bench (${r.date.slice(0, 10)})`,
    '',
    settingsLine(r) + '.',
    '',
    'pp: prompt tokens/s (B prompts, one forward each); tg: generated tokens/s (B sequences per step, decoded at context prompt..prompt+gen); ' +
      'MB/token: weight bytes read per generated token (bytes per step / B); GB/s: weight bytes per step × steps / decode time; % BW: of the measured read bandwidth (the GPU\'s with --device cuda).',
    '',
    `| ${head.join(' | ')} |`,
    `|${head.map((_, i) => (i < 2 ? '---' : '--:')).join('|')}|`,
    ...body.map((c) => `| ${c.map(esc).join(' | ')} |`),
    '',
  ];
  return lines.join('\n');
}

const CSV_COLUMNS: (keyof BenchRow)[] = [
  'model', 'plan', 'batch', 'weightBytes', 'ppTokensPerSecond', 'ppStddev', 'tgTokensPerSecond', 'tgStddev',
  'msPerStep', 'weightBytesPerToken', 'effectiveGBs', 'bandwidthPercent', 'peakRssBytes', 'deviceBytes',
];

export function renderBenchCsv(r: BenchReport): string {
  const quote = (v: unknown) => {
    const s = v === null || v === undefined ? '' : String(v);
    return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const rows = benchRows(r).map((row) => CSV_COLUMNS.map((c) => quote(row[c])).join(','));
  return [CSV_COLUMNS.join(','), ...rows].join('\n') + '\n';
}

/** Grouped bars: one group per target, one bar per batch size. */
export async function benchChartSvg(r: BenchReport, which: 'decode' | 'prefill'): Promise<string | null> {
  const data: BarDatum[] = [];
  for (const row of benchRows(r)) {
    const y = which === 'decode' ? row.tgTokensPerSecond : row.ppTokensPerSecond;
    if (y !== null) data.push({ x: `${row.model} · ${row.plan}`, y, series: `batch ${row.batch}` });
  }
  if (!data.length) return null;
  return barChartSvg(data, {
    title: which === 'decode' ? `decode (tg ${r.settings.gen}) tokens/s` : `prefill (pp ${r.settings.prompt}) tokens/s`,
    xTitle: 'model · plan',
    yTitle: 'tokens/s',
  });
}

/**
 * Write bench.json, bench.md, bench.csv and the charts (bench-decode.svg, bench-prefill.svg)
 * into `dir`. Everything is rendered first; each file then appears atomically.
 */
export async function writeBenchOutputs(r: BenchReport, dir: string): Promise<string[]> {
  const files: [string, string][] = [
    ['bench.md', renderBenchMarkdown(r)],
    ['bench.csv', renderBenchCsv(r)],
  ];
  for (const which of ['decode', 'prefill'] as const) {
    const svg = await benchChartSvg(r, which);
    if (svg) files.push([`bench-${which}.svg`, svg]);
  }
  const written = [join(dir, 'bench.json')];
  writeJsonAtomic(written[0], r);
  for (const [name, text] of files) {
    writeFileAtomic(join(dir, name), text);
    written.push(join(dir, name));
  }
  return written;
}
