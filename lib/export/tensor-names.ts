/**
 * Hugging Face tensor names → llama.cpp's GGUF names (gguf-py `tensor_mapping.py` conventions),
 * the llama.cpp architecture of each supported family, and the q/k row permutation.
 *
 * Why the permutation: llama.cpp's "llama" architecture applies RoPE to interleaved pairs
 * (2i, 2i+1) of each head (Meta's original layout), while Hugging Face checkpoints rotate
 * (i, i + head_dim/2). llama.cpp's converter therefore reorders the q_proj / k_proj rows of
 * each head from [2, head_dim/2] to [head_dim/2, 2]. "qwen2" and "qwen3" use the NEOX
 * (rotate-half) RoPE in llama.cpp and keep the HF order.
 */
import type { Family, ModelConfig } from '../io/config.js';

export type GgufArchitecture = 'llama' | 'qwen2' | 'qwen3';

const ARCH_OF: Record<Family, GgufArchitecture> = { llama: 'llama', mistral: 'llama', qwen2: 'qwen2', qwen3: 'qwen3' };

export function ggufArchitecture(cfg: ModelConfig): GgufArchitecture {
  return ARCH_OF[cfg.family];
}

/** Whether q/k rows (and their biases) are permuted for this architecture. */
export function permutesQk(arch: GgufArchitecture): boolean {
  return arch === 'llama';
}

const LAYER_PARTS: Record<string, string> = {
  'input_layernorm': 'attn_norm',
  'post_attention_layernorm': 'ffn_norm',
  'self_attn.q_proj': 'attn_q',
  'self_attn.k_proj': 'attn_k',
  'self_attn.v_proj': 'attn_v',
  'self_attn.o_proj': 'attn_output',
  'self_attn.q_norm': 'attn_q_norm',
  'self_attn.k_norm': 'attn_k_norm',
  'mlp.gate_proj': 'ffn_gate',
  'mlp.up_proj': 'ffn_up',
  'mlp.down_proj': 'ffn_down',
};

/** GGUF name of an HF tensor name, or undefined for names llama.cpp has no slot for. */
export function ggufTensorName(hf: string): string | undefined {
  if (hf === 'model.embed_tokens.weight') return 'token_embd.weight';
  if (hf === 'model.norm.weight') return 'output_norm.weight';
  if (hf === 'lm_head.weight') return 'output.weight';
  const m = /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(hf);
  if (!m) return undefined;
  const part = LAYER_PARTS[m[2]];
  return part ? `blk.${m[1]}.${part}.${m[3]}` : undefined;
}

/**
 * Reorder the rows of a q or k projection (weight [rows, cols] or bias [rows], cols = 1) from
 * HF rotate-half order to llama.cpp's interleaved order: inside each of `heads` heads, new row
 * 2i + s is old row s·(head_dim/2) + i (s ∈ {0, 1}, i < head_dim/2). `heads` is the number of
 * heads of *this* projection (num_key_value_heads for k).
 */
export function permuteQkRows(w: Float32Array, rows: number, cols: number, heads: number): Float32Array {
  if (rows % heads !== 0 || (rows / heads) % 2 !== 0) throw new RangeError(`cannot permute ${rows} rows into ${heads} heads of even size`);
  const headDim = rows / heads;
  const half = headDim / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++)
    for (let i = 0; i < half; i++)
      for (let s = 0; s < 2; s++) {
        const dst = (h * headDim + 2 * i + s) * cols;
        const src = (h * headDim + s * half + i) * cols;
        out.set(w.subarray(src, src + cols), dst);
      }
  return out;
}
