/**
 * SVG charts rendered offline with vega-lite + vega (no DOM, no canvas). Used by the LieQ
 * reports (metric per layer, chosen bits) and by `lieq bench` (comparison bars).
 */
import type { TopLevelSpec } from 'vega-lite';

export interface BarDatum {
  /** Category on the x axis (layer index, model name, ...). */
  x: string | number;
  y: number;
  /** Optional series: grouped bars, one colour per series. */
  series?: string;
}

export interface BarChartOptions {
  title: string;
  xTitle: string;
  yTitle: string;
  width?: number;
  height?: number;
  /** Draw a horizontal rule at this y (e.g. the budget). */
  rule?: { y: number; label: string };
}

/** Render a vega-lite spec to an SVG string. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const [vl, vega] = await Promise.all([import('vega-lite'), import('vega')]);
  const compiled = vl.compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

export async function barChartSvg(data: BarDatum[], o: BarChartOptions): Promise<string> {
  const grouped = data.some((d) => d.series !== undefined);
  const bars: Record<string, unknown> = {
    mark: { type: 'bar', tooltip: true },
    encoding: {
      x: { field: 'x', type: 'ordinal', title: o.xTitle, sort: null },
      y: { field: 'y', type: 'quantitative', title: o.yTitle },
      ...(grouped ? { xOffset: { field: 'series' }, color: { field: 'series', type: 'nominal', title: null } } : {}),
    },
  };
  const layers: Record<string, unknown>[] = [bars];
  if (o.rule) {
    layers.push({
      data: { values: [{ y: o.rule.y, label: o.rule.label }] },
      mark: { type: 'rule', strokeDash: [4, 3], color: '#444' },
      encoding: { y: { field: 'y', type: 'quantitative' } },
    });
  }
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: o.title,
    width: o.width ?? Math.max(240, Math.min(900, 28 * new Set(data.map((d) => d.x)).size * (grouped ? 2 : 1))),
    height: o.height ?? 220,
    data: { values: data },
    layer: layers,
    config: { font: 'sans-serif', background: 'white' },
  } as unknown as TopLevelSpec;
  return renderSvg(spec);
}
