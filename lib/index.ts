/**
 * lieq library API. Import from 'lieq'; every export is typed. Native handles stay private.
 */
export { doctor, type DoctorReport } from './doctor.js';
export { native, nativePath, type BuildInfo, type CpuInfo, type CudaInfo, type CudaDevice } from './native.js';
export {
  SafetensorsFile,
  writeSafetensors,
  bytesToF32,
  numel,
  DTYPE_SIZES,
  MAX_HEADER_BYTES,
  type Dtype,
  type TensorInfo,
  type TensorToWrite,
} from './io/safetensors.js';
export { Checkpoint } from './io/checkpoint.js';
export {
  loadConfig,
  normaliseConfig,
  expectedTensors,
  linearShape,
  linearTensorName,
  LINEAR_NAMES,
  SUPPORTED_ARCHITECTURES,
  type ModelConfig,
  type Family,
  type RopeScaling,
  type LinearName,
} from './io/config.js';
export { openModel, inspectModel, type ModelDir, type InspectReport } from './io/model.js';
export { dataDir, dataPath, resolveModelArg } from './util/data-dir.js';
export * from './util/errors.js';
// ---- inference runtime (lib/runtime) ----
export {
  RuntimeModel,
  tensorSource,
  checkpointSource,
  packLayer,
  packModel,
  withLinears,
  checkLayerWeights,
  layerBytes,
  type LayerWeights,
  type WeightSource,
  type TensorReader,
  type Residency,
  type LoadOptions,
} from './runtime/model.js';
export {
  applyLinear,
  denseFromWeights,
  packedLinear,
  packDense,
  linearBits,
  linearEffectiveBits,
  linearBytes,
  type DenseLinear,
  type PackedRuntimeLinear,
  type RuntimeLinear,
} from './runtime/linear.js';
export {
  forward,
  runLayer,
  runDecoderLayer,
  embedTokens,
  logitsFromHidden,
  type ForwardHooks,
  type ForwardOptions,
  type ForwardResult,
  type LayerKv,
} from './runtime/forward.js';
export { KvCache } from './runtime/kv-cache.js';
export { captureActivations, type CaptureRequest, type CaptureResult } from './runtime/hooks.js';
export {
  perplexity,
  planWindows,
  windowNll,
  loadEvalText,
  gptqJoin,
  EVAL_DATASETS,
  type EvalWindow,
  type EvalDatasetName,
  type PerplexityOptions,
  type PerplexityResult,
} from './runtime/perplexity.js';
export { generate, generateTokens, type GenerateOptions, type GenerateStats, type StopReason } from './runtime/generate.js';
export { argmax, sampleToken, Rng, type SamplingOptions } from './runtime/sampling.js';
export { RopeTables, ropeInverseFrequencies } from './runtime/rope.js';
export { openEvalModel, openRuntimeModel, packedModelSource, isQuantizedDir, readQuantizationConfig } from './quant/packed-source.js';
