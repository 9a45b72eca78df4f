/**
 * Stand-ins whose log-likelihoods are known by hand:
 *  - pieceTokenizer: greedy longest-match over a piece list (so merges across the
 *    context/continuation boundary happen where we want them), ids 0 = <s>, 1 = </s>.
 *  - bigramModel: a real RuntimeModel whose decoder layer adds nothing (o_proj, down_proj = 0),
 *    one-hot embeddings and an LM head set so the logits after token i are exactly
 *    log P(· | i) of a given table: log P(continuation | context) is a sum of table entries.
 */
import { normaliseConfig } from '../../lib/io/config.js';
import type { RuntimeModel } from '../../lib/runtime/model.js';
import type { EvalTokenizer } from '../../lib/eval/loglikelihood.js';
import { tinyModel, type Tensors } from '../runtime/reference-forward.js';

export const BOS = 0;
export const EOS = 1;

export function pieceTokenizer(pieces: string[], addsBos = true): EvalTokenizer & { id(piece: string): number; vocabSize: number } {
  const ids = new Map(pieces.map((p, i) => [p, i + 2]));
  const maxLen = Math.max(...pieces.map((p) => p.length));
  return {
    bosId: BOS,
    eosId: EOS,
    addsBos,
    vocabSize: pieces.length + 2,
    id(piece: string): number {
      const i = ids.get(piece);
      if (i === undefined) throw new Error(`no piece ${JSON.stringify(piece)}`);
      return i;
    },
    encode(text: string, o: { addBos?: boolean; addEos?: boolean } = {}): Int32Array {
      const out: number[] = (o.addBos ?? addsBos) ? [BOS] : [];
      for (let i = 0; i < text.length; ) {
        let len = Math.min(maxLen, text.length - i);
        while (len > 0 && !ids.has(text.slice(i, i + len))) len--;
        if (len === 0) throw new Error(`cannot encode ${JSON.stringify(text[i])}`);
        out.push(ids.get(text.slice(i, i + len))!);
        i += len;
      }
      if (o.addEos) out.push(EOS);
      return Int32Array.from(out);
    },
  };
}

/** logP[i][j] = log P(next = j | current = i); each row must be a normalised distribution. */
export function bigramModel(logP: number[][]): RuntimeModel {
  const V = logP.length;
  const H = V % 2 === 0 ? V : V + 1; // RoPE wants an even head dimension
  const eps = 1e-6;
  const cfg = normaliseConfig({
    architectures: ['LlamaForCausalLM'],
    hidden_size: H, intermediate_size: 4, num_hidden_layers: 1, num_attention_heads: 1, num_key_value_heads: 1,
    vocab_size: V, max_position_embeddings: 64, rms_norm_eps: eps, rope_theta: 10000, tie_word_embeddings: false,
  });
  const t: Tensors = new Map();
  const emb = new Float32Array(V * H);
  for (let i = 0; i < V; i++) emb[i * H + i] = 1;
  t.set('model.embed_tokens.weight', emb);
  t.set('model.norm.weight', new Float32Array(H).fill(1));
  // rmsNorm(e_i) = e_i / sqrt(1/H + eps), so logits[j] = head[j, i] / sqrt(1/H + eps).
  const scale = Math.sqrt(1 / H + eps);
  const head = new Float32Array(V * H);
  for (let i = 0; i < V; i++) for (let j = 0; j < V; j++) head[j * H + i] = logP[i][j] * scale;
  t.set('lm_head.weight', head);
  const p = 'model.layers.0';
  t.set(`${p}.input_layernorm.weight`, new Float32Array(H).fill(1));
  t.set(`${p}.post_attention_layernorm.weight`, new Float32Array(H).fill(1));
  for (const [name, n] of [['self_attn.q_proj', H * H], ['self_attn.k_proj', H * H], ['self_attn.v_proj', H * H], ['self_attn.o_proj', H * H], ['mlp.gate_proj', 4 * H], ['mlp.up_proj', 4 * H], ['mlp.down_proj', H * 4]] as const)
    t.set(`${p}.${name}.weight`, new Float32Array(n));
  return tinyModel(cfg, t);
}

/** A table with uniform rows except the given probabilities (the rest of each row shared evenly). */
export function bigramTable(V: number, set: [from: number, to: number, p: number][]): number[][] {
  const rows = Array.from({ length: V }, () => new Array<number | null>(V).fill(null));
  for (const [i, j, p] of set) rows[i][j] = p;
  return rows.map((r) => {
    const fixed = r.reduce<number>((s, p) => s + (p ?? 0), 0);
    const free = r.filter((p) => p === null).length;
    return r.map((p) => Math.log(p ?? (1 - fixed) / free));
  });
}
