/**
 * Activation capture for analysis and calibration (LieQ metrics, GPTQ Hessians): run a batch
 * of sequences and keep only the tensors asked for — decoder layers' input/output hidden
 * states and linears' input activations — copied out of the runtime's scratch buffers. The
 * forward pass stops after the deepest layer any request needs.
 *
 * For a model too large to hold, open it with residency 'streaming' and walk it with
 * embedTokens / runLayer (forward.ts) instead: one layer's weights and the calibration
 * activations of one layer boundary are all that is in memory.
 */
import { LINEAR_NAMES, type LinearName } from '../io/config.js';
import { UsageError } from '../util/errors.js';
import { forward, type ForwardHooks, type ForwardOptions } from './forward.js';
import type { RuntimeModel } from './model.js';

export interface CaptureRequest {
  /** Residual stream entering these layers, [tokens, hidden] per sequence. */
  layerInputs?: readonly number[] | 'all';
  /** Residual stream leaving these layers. */
  layerOutputs?: readonly number[] | 'all';
  /** Input activations of these linears, [tokens, inFeatures] per sequence. */
  linearInputs?: readonly { layer: number; linear: LinearName }[] | 'all';
}

export interface CaptureResult {
  /** Tokens of each sequence, in input order. */
  tokens: number[];
  /** layer → one array per sequence. */
  layerInputs: Map<number, Float32Array[]>;
  layerOutputs: Map<number, Float32Array[]>;
  /** layer → linear → one array per sequence. q/k/v_proj (and gate/up_proj) of one layer
   *  share their input: when several are requested they hold the same arrays. */
  linearInputs: Map<number, Map<LinearName, Float32Array[]>>;
}

function layerList(model: RuntimeModel, v: readonly number[] | 'all' | undefined, what: string): number[] {
  if (v === undefined) return [];
  if (v === 'all') return Array.from({ length: model.numLayers }, (_, i) => i);
  if (!Array.isArray(v)) throw new UsageError(`${what}: expected an array of layer indices or "all"`);
  for (const l of v)
    if (!Number.isInteger(l) || l < 0 || l >= model.numLayers) throw new UsageError(`${what}: layer ${l} is not an integer in [0, ${model.numLayers})`);
  return [...new Set(v)];
}

/** Run `sequences` and collect what `request` names (nothing else is kept). */
export function captureActivations(
  model: RuntimeModel,
  sequences: readonly Int32Array[],
  request: CaptureRequest,
  opts: Pick<ForwardOptions, 'skipLayers' | 'replaceLayers'> = {},
): CaptureResult {
  const inputs = layerList(model, request.layerInputs, 'layerInputs');
  const outputs = layerList(model, request.layerOutputs, 'layerOutputs');
  const linears: { layer: number; linear: LinearName }[] = [];
  if (request.linearInputs === 'all') {
    for (let l = 0; l < model.numLayers; l++) for (const linear of LINEAR_NAMES) linears.push({ layer: l, linear });
  } else if (request.linearInputs !== undefined) {
    if (!Array.isArray(request.linearInputs)) throw new UsageError('linearInputs: expected an array of { layer, linear } or "all"');
    for (const r of request.linearInputs) {
      layerList(model, [r.layer], 'linearInputs');
      if (!LINEAR_NAMES.includes(r.linear)) throw new UsageError(`linearInputs: "${String(r.linear)}" is not one of ${LINEAR_NAMES.join(', ')}`);
      linears.push(r);
    }
  }
  const result: CaptureResult = { tokens: [], layerInputs: new Map(), layerOutputs: new Map(), linearInputs: new Map() };
  for (const l of inputs) result.layerInputs.set(l, []);
  for (const l of outputs) result.layerOutputs.set(l, []);
  const wanted = new Map<number, Set<LinearName>>();
  for (const { layer, linear } of linears) {
    if (!wanted.has(layer)) wanted.set(layer, new Set());
    wanted.get(layer)!.add(linear);
    if (!result.linearInputs.has(layer)) result.linearInputs.set(layer, new Map());
    result.linearInputs.get(layer)!.set(linear, []);
  }
  const deepest = Math.max(-1, ...inputs, ...outputs, ...linears.map((r) => r.layer));
  if (deepest < 0) {
    result.tokens = sequences.map((s) => s.length);
    return result;
  }

  // Linears sharing an input get one copy per sequence.
  let lastSource: Float32Array | null = null;
  let lastCopy: Float32Array | null = null;
  const hooks: ForwardHooks = {
    layerInput: inputs.length ? (l, h) => result.layerInputs.get(l)?.push(h.slice()) : undefined,
    layerOutput: outputs.length ? (l, h) => result.layerOutputs.get(l)?.push(h.slice()) : undefined,
    linearInput: linears.length
      ? (l, name, x) => {
          if (!wanted.get(l)?.has(name)) return;
          if (x !== lastSource) {
            lastSource = x;
            lastCopy = x.slice();
          }
          result.linearInputs.get(l)!.get(name)!.push(lastCopy!);
        }
      : undefined,
  };
  for (const ids of sequences) {
    lastSource = null;
    forward(model, ids, { ...opts, hooks, stopAfterLayer: deepest });
    result.tokens.push(ids.length);
  }
  return result;
}
