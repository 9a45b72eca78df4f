import type { Command } from 'commander';

import { exportGguf, resolveExportInputs, type ExportGgufResult } from '../../export/export-gguf.js';
import { GGML_TYPE_NAMES, ggmlBitsPerWeight, parseBitsTypes, type GgmlTypeName } from '../../export/ggml-types.js';
import { resolveModelArg } from '../../util/data-dir.js';
import { formatBytes, formatCount, printJson, table } from '../format.js';
import { parseChoice, parseInteger } from '../options.js';
import { progressBar } from '../progress.js';

interface ExportGgufCli {
  out: string;
  plan?: string;
  uniform?: string;
  model?: string;
  types?: string;
  embeddingType: string;
  tokenizer?: string;
  force?: boolean;
  json?: boolean;
}

export function registerExport(program: Command): void {
  const exp = program.command('export').description('export a model to another runtime\'s format');
  exp
    .command('gguf')
    .description('write a llama.cpp GGUF v3 file: each layer re-quantized from the full-precision weights into the ggml type of its planned bits')
    .argument('<source>', 'model directory (or shipped model name), or a quantized lieq directory (its plan.json and source model are used)')
    .requiredOption('-o, --out <file>', 'output .gguf file (appears only when complete)')
    .option('--plan <file>', 'plan JSON (bits per layer); default for a quantized directory: its plan.json')
    .option('--uniform <B>', 'every layer at B bits: 2, 3, 4, 8 or 16 (instead of a plan)')
    .option('--model <dir>', 'full-precision model of a quantized SOURCE (default: the one it records)')
    .option('--types <map>', 'bits → ggml type, e.g. "2=Q2_K,3=Q3_K,4=Q4_K,8=Q8_0,16=F16" (entries replace these defaults)')
    .option('--embedding-type <t>', `token embedding type: ${GGML_TYPE_NAMES.join(' | ')}`, 'F16')
    .option('--tokenizer <dir>', 'folder with tokenizer.model or tokenizer.json (default: the model directory)')
    .option('--force', 'replace an existing output file')
    .option('--json', 'print the result as JSON')
    .action(async (source: string, o: ExportGgufCli) => {
      const inputs = resolveExportInputs(resolveModelArg(source), {
        ...(o.plan !== undefined ? { plan: o.plan } : {}),
        ...(o.model !== undefined ? { model: resolveModelArg(o.model) } : {}),
        ...(o.uniform !== undefined ? { uniform: parseInteger(o.uniform, '--uniform', 2) } : {}),
      });
      const bar = progressBar('export', 'tensors', !o.json);
      let res: ExportGgufResult;
      try {
        res = await exportGguf({
          model: inputs.model,
          ...(inputs.plan ? { plan: inputs.plan } : {}),
          ...(inputs.uniform !== undefined ? { uniform: inputs.uniform } : {}),
          out: o.out,
          types: parseBitsTypes(o.types),
          embeddingType: parseChoice(o.embeddingType.toUpperCase(), '--embedding-type', GGML_TYPE_NAMES) as GgmlTypeName,
          ...(o.tokenizer ? { tokenizerDir: o.tokenizer } : {}),
          force: !!o.force,
          onProgress: (p) => bar.update(p.done, p.total, p.stage),
        });
      } finally {
        bar.stop();
      }
      if (o.json) return printJson(res);
      process.stdout.write(renderExport(res));
    });
}

export function renderExport(r: ExportGgufResult): string {
  const rows = (Object.entries(r.weightsByType) as [GgmlTypeName, number][])
    .sort((a, b) => b[1] - a[1])
    .map(([t, n]) => [t, r.tensors.filter((x) => x.type === t).length, formatCount(n), ggmlBitsPerWeight(t).toFixed(4)]);
  const lines = [
    `architecture ${r.architecture}; layer bits [${r.layerBits.join(', ')}]; tokenizer ${r.tokenizer.model} (${r.tokenizer.tokens} tokens${r.tokenizer.padded ? `, ${r.tokenizer.padded} padding` : ''})`,
    table(['ggml type', 'tensors', 'weights', 'bits/weight'], rows),
  ];
  const fb = r.tensors.filter((t) => t.wanted);
  if (fb.length) {
    const kinds = new Map<string, number>();
    for (const t of fb) kinds.set(`${t.wanted} → ${t.type} (width ${t.dims[0]})`, (kinds.get(`${t.wanted} → ${t.type} (width ${t.dims[0]})`) ?? 0) + 1);
    lines.push(`fallbacks (row width not a multiple of the block): ${[...kinds].map(([k, n]) => `${n}× ${k}`).join('; ')}`);
  }
  lines.push(`wrote ${r.out} (${formatBytes(r.bytes)}, ${r.tensors.length} tensors) in ${r.seconds.toFixed(2)} s`);
  return lines.join('\n') + '\n';
}
