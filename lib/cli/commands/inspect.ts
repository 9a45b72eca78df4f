import type { Command } from 'commander';

import { inspectModel, type InspectReport } from '../../io/model.js';
import { resolveModelArg } from '../../util/data-dir.js';
import { formatBytes, formatCount, printJson, table } from '../format.js';

export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description('architecture, layers and every tensor (shape, dtype, bytes) of a model directory')
    .argument('<model>', 'model directory, or a shipped model name (stories260K, tinystories-656K)')
    .option('--json', 'print JSON for scripts')
    .action((model: string, opts: { json?: boolean }) => {
      const report = inspectModel(resolveModelArg(model));
      if (opts.json) printJson(report);
      else process.stdout.write(renderInspect(report));
    });
}

export function renderInspect(r: InspectReport): string {
  const c = r.config;
  const lines: string[] = [];
  lines.push(`model        ${r.dir}`);
  lines.push(`architecture ${r.architecture} (${r.family})`);
  lines.push(`layers       ${r.layers}   hidden ${c.hiddenSize}   intermediate ${c.intermediateSize}   vocab ${c.vocabSize}`);
  lines.push(`attention    ${c.numHeads} heads, ${c.numKvHeads} KV heads, head_dim ${c.headDim}${c.qkNorm ? ', q/k norm' : ''}${c.attentionBias ? ', qkv bias' : ''}`);
  const scaling = c.ropeScaling ? `, ${c.ropeScaling.type} scaling ×${c.ropeScaling.factor}` : '';
  lines.push(`rope         theta ${c.ropeTheta}${scaling}   max positions ${c.maxPositionEmbeddings}   rms eps ${c.rmsNormEps}`);
  lines.push(`embeddings   ${c.tieWordEmbeddings ? 'tied to lm_head' : 'separate lm_head'}`);
  lines.push(`parameters   ${r.parameters.toLocaleString('en-US')} (${formatCount(r.parameters)}); decoder linears ${r.linearParameters.toLocaleString('en-US')}`);
  lines.push(`on disk      ${formatBytes(r.sizeOnDisk)} in ${r.files.length} file${r.files.length > 1 ? 's' : ''}`);
  lines.push('');
  const rows = r.tensors.map((t) => [
    t.name + (t.aliasOf ? ` -> ${t.aliasOf}` : ''),
    `[${t.shape.join(', ')}]`,
    t.dtype,
    t.aliasOf ? 'alias' : formatBytes(t.bytes),
  ]);
  lines.push(table(['tensor', 'shape', 'dtype', 'bytes'], rows, ['left', 'left', 'left', 'right']));
  if (r.unused.length) lines.push(`\nunused tensors: ${r.unused.join(', ')}`);
  return lines.join('\n') + '\n';
}
