/** Quantize one decoder layer's weights in memory (RTN), e.g. for sensitivity measurements. */
import { LINEAR_NAMES, type LinearName } from '../io/config.js';
import type { QuantMethodName } from '../kernels/quant.js';
import { packedLinear, type RuntimeLinear } from '../runtime/linear.js';
import type { LayerWeights } from '../runtime/model.js';
import { UsageError } from '../util/errors.js';
import { resolveLayout } from './layout.js';
import { quantizeWeight } from './quantize-model.js';

/** A packed runtime linear whose logical input width may be smaller than the packed one (zero padding). */
export async function quantizeRuntimeLinear(lin: RuntimeLinear, bits: number, groupSize: number, symmetric: boolean, rtn: QuantMethodName = 'mse'): Promise<RuntimeLinear> {
  if (lin.kind !== 'dense') throw new UsageError('quantize: the linear is already packed');
  const layout = resolveLayout(lin.inFeatures, groupSize);
  const p = await quantizeWeight(lin.weight, lin.outFeatures, layout, bits, symmetric, rtn);
  return packedLinear(p, lin.bias, lin.inFeatures);
}

export async function quantizeLayerRtn(layer: LayerWeights, bits: number, groupSize: number, symmetric: boolean, rtn: QuantMethodName = 'mse'): Promise<LayerWeights> {
  const linears = {} as Record<LinearName, RuntimeLinear>;
  for (const name of LINEAR_NAMES) linears[name] = await quantizeRuntimeLinear(layer.linears[name], bits, groupSize, symmetric, rtn);
  return { ...layer, linears };
}
