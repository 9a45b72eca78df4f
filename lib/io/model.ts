/**
 * A Hugging Face model directory: normalised config + checkpoint, checked against each other
 * (every tensor the architecture needs is present with the right shape and a float dtype).
 */
import { FormatError, UnsupportedError } from '../util/errors.js';
import { Checkpoint } from './checkpoint.js';
import { expectedTensors, loadConfig, type ExpectedTensor, type ModelConfig } from './config.js';
import { numel, type TensorInfo } from './safetensors.js';

/** dtypes a full-precision checkpoint's tensors may have. */
export const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16']);

export interface ModelDir {
  dir: string;
  config: ModelConfig;
  checkpoint: Checkpoint;
  close(): void;
}

/** Open a model directory and check that its checkpoint matches its config. */
export function openModel(dir: string): ModelDir {
  const config = loadConfig(dir);
  const checkpoint = Checkpoint.open(dir);
  try {
    checkModelTensors(config, checkpoint);
  } catch (err) {
    checkpoint.close();
    throw err;
  }
  return { dir, config, checkpoint, close: () => checkpoint.close() };
}

export function checkModelTensors(config: ModelConfig, ck: Checkpoint): void {
  for (const t of expectedTensors(config)) {
    if (!ck.has(t.name)) {
      throw new FormatError(ck.dir, `checkpoint lacks tensor "${t.name}" that ${config.architecture} with this config needs`, { code: 'E_NO_TENSOR' });
    }
    const info = ck.info(t.name);
    if (info.shape.length !== t.shape.length || info.shape.some((d, i) => d !== t.shape[i]))
      throw new FormatError(info.file, `tensor "${t.name}" has shape [${info.shape.join(', ')}], config.json implies [${t.shape.join(', ')}]`, { code: 'E_SHAPE' });
    if (!FLOAT_DTYPES.has(info.dtype))
      throw new UnsupportedError(`${info.file}: tensor "${t.name}" has dtype ${info.dtype}; supported: F32, F16, BF16`);
  }
}

export interface InspectReport {
  dir: string;
  architecture: string;
  family: string;
  config: ModelConfig;
  layers: number;
  parameters: number;
  /** Parameters of the decoder layers' linear projections (what LieQ quantizes). */
  linearParameters: number;
  sizeOnDisk: number;
  files: { path: string; bytes: number; tensors: number }[];
  tensors: { name: string; shape: number[]; dtype: string; bytes: number; role: ExpectedTensor['role'] | 'other'; aliasOf?: string }[];
  /** Tensors stored but not used by the architecture (reported, not an error). */
  unused: string[];
}

/** Everything `lieq inspect` prints. Parameters count each stored tensor once (tied weights once). */
export function inspectModel(dir: string): InspectReport {
  const m = openModel(dir);
  try {
    const expected = expectedTensors(m.config);
    const byName = new Map(expected.map((e) => [e.name, e]));
    const tensors: InspectReport['tensors'] = [];
    let parameters = 0;
    let linearParameters = 0;
    const stored = new Set(m.checkpoint.names());
    for (const name of m.checkpoint.names()) {
      const info: TensorInfo = m.checkpoint.info(name);
      parameters += numel(info.shape);
      const role = byName.get(name)?.role ?? (name === 'lm_head.weight' ? 'lm_head' : 'other');
      if (role === 'linear') linearParameters += numel(info.shape);
      tensors.push({ name, shape: info.shape, dtype: info.dtype, bytes: info.byteLength, role });
    }
    for (const [alias, real] of m.checkpoint.aliases) {
      const info = m.checkpoint.info(real);
      tensors.push({ name: alias, shape: info.shape, dtype: info.dtype, bytes: 0, role: byName.get(alias)?.role ?? 'other', aliasOf: real });
    }
    const unused = [...stored].filter((n) => !byName.has(n) && !(n === 'lm_head.weight' && m.config.tieWordEmbeddings));
    return {
      dir,
      architecture: m.config.architecture,
      family: m.config.family,
      config: m.config,
      layers: m.config.numLayers,
      parameters,
      linearParameters,
      sizeOnDisk: m.checkpoint.sizeOnDisk(),
      files: m.checkpoint.files.map((f) => ({ path: f.path, bytes: f.fileSize, tensors: f.tensors.size })),
      tensors,
      unused,
    };
  } finally {
    m.close();
  }
}
