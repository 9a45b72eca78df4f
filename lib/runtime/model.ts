/**
 * The runtime's view of a model: config, embedding, final norm, LM head and decoder layers
 * whose seven linears are each dense or packed.
 *
 * Weights come from a `WeightSource`. `checkpointSource` reads a Hugging Face model directory
 * layer by layer (f32/f16/bf16 tensors upcast to f32); a packed-model directory written by the
 * quantize pipeline will plug in as another WeightSource. With residency 'streaming' only one
 * decoder layer is held at a time (it is re-read from disk when another layer was asked for
 * since), so a model larger than memory can be processed layer by layer.
 */
import { LINEAR_NAMES, linearShape, linearTensorName, type LinearName, type ModelConfig } from '../io/config.js';
import { openModel, type ModelDir } from '../io/model.js';
import { UsageError } from '../util/errors.js';
import type { QuantizeOptions } from '../kernels/quant.js';
import { denseFromWeights, linearBytes, packDense, type RuntimeLinear } from './linear.js';
import { RopeTables } from './rope.js';

/** One decoder layer's weights. */
export interface LayerWeights {
  /** Layer index in the model. */
  index: number;
  inputNorm: Float32Array;
  postAttentionNorm: Float32Array;
  /** Qwen3: RMSNorm weights [headDim] applied per head to q and k before RoPE. */
  qNorm: Float32Array | null;
  kNorm: Float32Array | null;
  linears: Record<LinearName, RuntimeLinear>;
}

/** Where the runtime gets weights from. Each call returns fresh arrays the caller owns. */
export interface WeightSource {
  readonly config: ModelConfig;
  /** Directory (or other label) for messages. */
  readonly label: string;
  embedding(): Float32Array;
  finalNorm(): Float32Array;
  /** The LM head; a tied head reuses `embedding` instead of reading a copy. */
  lmHead(embedding: Float32Array): RuntimeLinear;
  layer(index: number): LayerWeights;
  close(): void;
}

/** Named f32 tensors (a Checkpoint, or a Map in tests). */
export interface TensorReader {
  has(name: string): boolean;
  readF32(name: string): Float32Array;
}

/** Weights read from named tensors in the Hugging Face layout. */
export function tensorSource(config: ModelConfig, reader: TensorReader, label: string, close: () => void = () => {}): WeightSource {
  const read = (name: string, numel: number): Float32Array => {
    const t = reader.readF32(name);
    if (t.length !== numel) throw new UsageError(`${label}: tensor "${name}" has ${t.length} values, expected ${numel}`);
    return t;
  };
  const h = config.hiddenSize;
  return {
    config,
    label,
    embedding: () => read('model.embed_tokens.weight', config.vocabSize * h),
    finalNorm: () => read('model.norm.weight', h),
    lmHead: (embedding) =>
      config.tieWordEmbeddings
        ? denseFromWeights(embedding, config.vocabSize, h)
        : denseFromWeights(read('lm_head.weight', config.vocabSize * h), config.vocabSize, h),
    layer: (index) => {
      if (!Number.isInteger(index) || index < 0 || index >= config.numLayers)
        throw new UsageError(`layer: expected an integer in [0, ${config.numLayers}), got ${index}`);
      const p = `model.layers.${index}`;
      const linears = {} as Record<LinearName, RuntimeLinear>;
      for (const name of LINEAR_NAMES) {
        const [out, inF] = linearShape(config, name);
        const wName = linearTensorName(index, name);
        const bias = hasBias(config, name) ? read(wName.replace(/weight$/, 'bias'), out) : null;
        linears[name] = denseFromWeights(read(wName, out * inF), out, inF, bias);
      }
      return {
        index,
        inputNorm: read(`${p}.input_layernorm.weight`, h),
        postAttentionNorm: read(`${p}.post_attention_layernorm.weight`, h),
        qNorm: config.qkNorm ? read(`${p}.self_attn.q_norm.weight`, config.headDim) : null,
        kNorm: config.qkNorm ? read(`${p}.self_attn.k_norm.weight`, config.headDim) : null,
        linears,
      };
    },
    close,
  };
}

/** Does the config give this linear a bias (Qwen2 q/k/v; attention_bias; mlp_bias)? */
export function hasBias(config: ModelConfig, name: LinearName): boolean {
  if (name === 'q_proj' || name === 'k_proj' || name === 'v_proj') return config.attentionBias;
  if (name === 'o_proj') return config.oProjBias;
  return config.mlpBias;
}

/** A Hugging Face model directory as a WeightSource (checked against its config on open). */
export function checkpointSource(model: ModelDir): WeightSource {
  return tensorSource(model.config, model.checkpoint, model.dir, () => model.close());
}

export type Residency = 'all' | 'streaming';

export interface LoadOptions {
  /** 'all' (default) keeps every layer in memory; 'streaming' holds one decoder layer at a time. */
  residency?: Residency;
  /**
   * Load only the decoder layers (and the final norm): no embedding table, no LM head. For
   * layer-by-layer work (analysis, calibration) that embeds its own token rows; saves the
   * largest tensors of a model (vocab × hidden, twice when untied). forward() then refuses.
   */
  layersOnly?: boolean;
}

export class RuntimeModel {
  readonly config: ModelConfig;
  readonly source: WeightSource;
  readonly residency: Residency;
  readonly rope: RopeTables;
  readonly embedding: Float32Array;
  /** Loaded with layersOnly: embedding and lmHead are empty placeholders. */
  readonly layersOnly: boolean;
  readonly finalNorm: Float32Array;
  readonly lmHead: RuntimeLinear;
  private readonly resident: (LayerWeights | undefined)[];
  /** Layers replaced by setLayer (kept in memory in either residency). */
  private readonly replaced = new Map<number, LayerWeights>();
  private streamed: LayerWeights | undefined;
  private closed = false;

  private constructor(source: WeightSource, opts: LoadOptions) {
    this.source = source;
    this.config = source.config;
    this.residency = opts.residency ?? 'all';
    if (this.residency !== 'all' && this.residency !== 'streaming')
      throw new UsageError(`residency: expected "all" or "streaming", got ${JSON.stringify(this.residency)}`);
    this.rope = RopeTables.forConfig(this.config);
    this.layersOnly = !!opts.layersOnly;
    this.embedding = this.layersOnly ? new Float32Array(0) : source.embedding();
    this.finalNorm = source.finalNorm();
    this.lmHead = this.layersOnly ? denseFromWeights(new Float32Array(0), 0, 0) : source.lmHead(this.embedding);
    this.resident = new Array(this.config.numLayers).fill(undefined);
    if (this.residency === 'all') for (let l = 0; l < this.config.numLayers; l++) this.resident[l] = source.layer(l);
  }

  /** Open a Hugging Face model directory (config + safetensors checkpoint). */
  static open(dir: string, opts: LoadOptions = {}): RuntimeModel {
    const m = openModel(dir);
    try {
      return new RuntimeModel(checkpointSource(m), opts);
    } catch (err) {
      m.close();
      throw err;
    }
  }

  static fromSource(source: WeightSource, opts: LoadOptions = {}): RuntimeModel {
    return new RuntimeModel(source, opts);
  }

  get numLayers(): number {
    return this.config.numLayers;
  }

  /** Weights of decoder layer `index` (a replacement set by setLayer wins). */
  layer(index: number): LayerWeights {
    this.checkOpen();
    this.checkIndex(index);
    const r = this.replaced.get(index);
    if (r) return r;
    if (this.residency === 'all') return (this.resident[index] ??= this.source.layer(index));
    if (this.streamed?.index !== index) {
      this.streamed = undefined; // let the previous layer go before reading the next
      this.streamed = this.source.layer(index);
    }
    return this.streamed;
  }

  /** Replace layer `index` for every later run (e.g. with its quantized version); the
   *  original weights are released. */
  setLayer(index: number, weights: LayerWeights): void {
    this.checkIndex(index);
    checkLayerWeights(this.config, weights, index);
    this.replaced.set(index, weights);
    this.resident[index] = undefined;
    if (this.streamed?.index === index) this.streamed = undefined;
  }

  /** Undo setLayer: the layer is read from the source again (on next use). */
  restoreLayer(index: number): void {
    this.checkIndex(index);
    this.replaced.delete(index);
  }

  /** Bytes of weights held now (embedding, head, norms, resident/replaced layers). */
  residentBytes(): number {
    let b = this.embedding.byteLength + this.finalNorm.byteLength;
    if (this.lmHead.kind !== 'dense' || this.lmHead.weight !== this.embedding) b += linearBytes(this.lmHead);
    const layers = new Set<LayerWeights>([...this.replaced.values()]);
    for (const l of this.resident) if (l) layers.add(l);
    if (this.streamed) layers.add(this.streamed);
    for (const l of layers) b += layerBytes(l);
    return b;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.source.close();
  }

  private checkIndex(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.config.numLayers)
      throw new UsageError(`layer: expected an integer in [0, ${this.config.numLayers}), got ${index}`);
  }

  private checkOpen(): void {
    if (this.closed && this.residency === 'streaming') throw new UsageError(`${this.source.label}: model was closed`);
  }
}

export function layerBytes(l: LayerWeights): number {
  let b = l.inputNorm.byteLength + l.postAttentionNorm.byteLength + (l.qNorm?.byteLength ?? 0) + (l.kNorm?.byteLength ?? 0);
  for (const name of LINEAR_NAMES) b += linearBytes(l.linears[name]);
  return b;
}

/** A copy of `layer` with some linears swapped (e.g. one quantized projection). */
export function withLinears(layer: LayerWeights, replacements: Partial<Record<LinearName, RuntimeLinear>>): LayerWeights {
  return { ...layer, linears: { ...layer.linears, ...replacements } };
}

/**
 * A copy of `layer` whose dense linears are packed (round-to-nearest) as `plan` says: options
 * per linear name, or null to keep that linear as it is. Already-packed linears are kept.
 */
export function packLayer(layer: LayerWeights, plan: (name: LinearName) => QuantizeOptions | null): LayerWeights {
  const linears = { ...layer.linears };
  for (const name of LINEAR_NAMES) {
    const opts = plan(name);
    const lin = linears[name];
    if (opts && lin.kind === 'dense') linears[name] = packDense(lin, opts);
  }
  return { ...layer, linears };
}

/**
 * Pack every decoder linear of `model` (round-to-nearest, in memory, via setLayer) with `opts`
 * where the packed format allows it (inFeatures a multiple of 32 and of the group size; a group
 * larger than inFeatures becomes per-channel); returns the linears left in full precision,
 * e.g. stories260K's down_proj (in = 172).
 */
export function packModel(model: RuntimeModel, opts: QuantizeOptions): { packed: number; kept: string[] } {
  // Every linear packs: widths that are not a multiple of 32 are zero-padded (packDense).
  let packed = 0;
  for (let l = 0; l < model.numLayers; l++) {
    model.setLayer(l, packLayer(model.layer(l), () => (packed++, opts)));
  }
  return { packed, kept: [] };
}

/** Shapes of a layer's weights against the config; throws UsageError naming the first mismatch. */
export function checkLayerWeights(config: ModelConfig, w: LayerWeights, index: number): void {
  const h = config.hiddenSize;
  const where = `layer ${index}`;
  if (w.inputNorm.length !== h) throw new UsageError(`${where}: inputNorm has ${w.inputNorm.length} values, expected ${h}`);
  if (w.postAttentionNorm.length !== h) throw new UsageError(`${where}: postAttentionNorm has ${w.postAttentionNorm.length} values, expected ${h}`);
  if (config.qkNorm && (w.qNorm?.length !== config.headDim || w.kNorm?.length !== config.headDim))
    throw new UsageError(`${where}: qNorm/kNorm must have ${config.headDim} values (q/k norm model)`);
  for (const name of LINEAR_NAMES) {
    const lin = w.linears[name];
    const [out, inF] = linearShape(config, name);
    if (!lin) throw new UsageError(`${where}: linear ${name} is missing`);
    if (lin.outFeatures !== out || lin.inFeatures !== inF)
      throw new UsageError(`${where}: ${name} is [${lin.outFeatures}, ${lin.inFeatures}], expected [${out}, ${inF}]`);
    if (hasBias(config, name) !== (lin.bias !== null))
      throw new UsageError(`${where}: ${name} ${lin.bias ? 'has a bias the config does not declare' : 'lacks the bias the config declares'}`);
  }
}
