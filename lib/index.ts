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

// LieQ: diagnostics, allocation, plans, reports
export { analyzeModel, sampleCalibration, modelFingerprint, type AnalyzeOptions } from './lieq/analyze.js';
export { combineScores, loadAnalysis, ANALYSIS_FORMAT, type Analysis, type LayerMetrics, type AnalysisSettings, type ScoreVersion } from './lieq/analysis.js';
export {
  allocateGreedy,
  allocateExact,
  allocateUniform,
  allocateRandom,
  allocateInverse,
  nominalAverage,
  type Allocation,
  type AllocationInput,
  type AllocationMethod,
} from './lieq/allocate.js';
export { makePlan, loadPlan, validatePlan, accountPlan, layerLinearWeights, PLAN_FORMAT, type Plan, type LayerPlan, type BitAccounting, type Backbone } from './lieq/plan.js';
export { compactness, topKEnergy, normaliseRows, resolveTopK } from './lieq/spectrum.js';
export { spearman, ranksDescending } from './lieq/stats.js';
export { measureSensitivity, writeReport, type QuantizeReport, type Sensitivity } from './lieq/report.js';
// Quantization and the packed model format
export { quantizeModel, type QuantizeModelOptions, type QuantizeModelResult } from './quant/quantize-model.js';
export { quantizeLayerRtn, quantizeRuntimeLinear } from './quant/quantize-layer.js';
export { resolveLayout, packedBytes, type LinearLayout } from './quant/layout.js';
export { PACKED_FORMAT, type QuantizationConfig } from './quant/packed-model.js';
export { writeRandomCheckpoint, shapeConfig, MODEL_SHAPES, randomReader } from './io/random-model.js';
export { loadTokenizer, type Tokenizer } from './io/tokenizer.js';
// Zero-shot tasks (lm-evaluation-harness scoring) and KL divergence vs full precision
export { loadTask, parseTaskList, TASK_NAMES, TASK_FILES, type TaskName, type TaskDocs, type DocSource } from './eval/tasks.js';
export { buildItems, primaryMetric, TASK_SPECS, type McItem, type ChoiceRequest, type Metric } from './eval/prompts.js';
export { RequestEncoder, LoglikelihoodScorer, BOS_POLICIES, type BosPolicy, type EncodedRequest, type EvalTokenizer } from './eval/loglikelihood.js';
export { evaluateZeroShot, evaluateTask, loadItems, meanStderr, recovery, averageOf, type ZeroShotResult, type ZeroShotOptions, type TaskResult, type MetricValue, type DocScore } from './eval/zero-shot.js';
export { kldCompare, klDivergence, type KldOptions, type KldResult } from './eval/kld.js';
// ---- GGUF export (lib/export) ----
export { exportGguf, resolveExportInputs, planGgufTensors, type ExportGgufOptions, type ExportGgufResult, type ExportedTensor } from './export/export-gguf.js';
export { GgufWriter, encodeGgufHeader, type GgufKv, type GgufTensorSpec } from './export/gguf-writer.js';
export { readGguf, type GgufFile, type GgufTensorInfo, type GgufValue } from './export/gguf-reader.js';
export { dequantize as ggmlDequantize } from './export/ggml-dequant.js';
export { GgmlType, ggmlTraits, fallbackType, parseBitsTypes, DEFAULT_BITS_TYPES, type GgmlTypeName, type BitsTypeMap } from './export/ggml-types.js';
export { ggufTensorName, permuteQkRows, ggufArchitecture } from './export/tensor-names.js';
