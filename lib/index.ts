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
