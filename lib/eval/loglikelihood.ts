/**
 * log P(continuation | context) as lm-evaluation-harness's HFLM computes it, on the runtime.
 *
 * Tokenisation (HFLM._encode_pair): whitespace at the end of the context moves to the start of
 * the continuation; whole = encode(context + continuation), ctx = encode(context), and the
 * continuation's tokens are whole[len(ctx):] (split by token count, so a merge across the
 * boundary is attributed to the continuation). The model input is ctx + those tokens, not
 * `whole`. BOS: see BosPolicy. An empty context becomes [BOS] (else [EOS]), as the harness's
 * prefix_token_id. One deviation: where the count split leaves no continuation token (the
 * harness asserts), the boundary moves back to the last token both encodings share.
 *
 * Scoring (HFLM._loglikelihood_tokens): input = (ctx + cont)[-(maxLength + 1):][:-1], i.e.
 * the context is cut from the left when the pair is longer than the model's window; the
 * result is the sum over continuation tokens of log softmax(logits)[token]. A continuation
 * longer than the window (the harness asserts) is scored in chunks of maxLength tokens.
 *
 * Shared-prefix reuse: the KV cache keeps the last sequence run. A request whose (truncated)
 * context shares a token prefix with it re-runs only the rest; the log-probabilities of the
 * first continuation token are kept from the context's last position, so the choices of one
 * question cost one context pass plus their continuations.
 */
import type { Tokenizer } from '../io/tokenizer.js';
import { forward } from '../runtime/forward.js';
import { KvCache } from '../runtime/kv-cache.js';
import type { RuntimeModel } from '../runtime/model.js';
import { logSoftmaxNll } from '../runtime/ops.js';
import { DataError, UsageError } from '../util/errors.js';
import { pyRstrip, type ChoiceRequest } from './prompts.js';

/** What scoring needs of a tokenizer (tests pass small stand-ins). */
export type EvalTokenizer = Pick<Tokenizer, 'encode' | 'bosId' | 'eosId' | 'addsBos'>;

/**
 * Whether contexts start with BOS. 'auto' (default): the tokenizer's own policy, which is what
 * lm-evaluation-harness does since it delegated BOS to the tokenizer (PR #3347, v0.4.10; before
 * that HFLM passed add_special_tokens=False, i.e. 'never', unless add_bos_token=True).
 */
export type BosPolicy = 'auto' | 'always' | 'never';
export const BOS_POLICIES: readonly BosPolicy[] = ['auto', 'always', 'never'];

export interface EncodedRequest {
  context: Int32Array;
  continuation: Int32Array;
}

/** Harness-exact encoding of (context, continuation) pairs; context encodings are memoised. */
export class RequestEncoder {
  readonly addBos: boolean;
  /** Requests whose context tokens are not a prefix of the whole encoding (a merge across the
   *  boundary: the count split then mixes two tokenisations, as in the harness). */
  boundaryMerges = 0;
  /** Of those, requests whose count split left no continuation token (see encode). */
  boundaryFallbacks = 0;
  private readonly bosId: number | null;
  private readonly prefixId: number;
  private memo = new Map<string, Int32Array>();

  constructor(
    private readonly tokenizer: EvalTokenizer,
    bos: BosPolicy = 'auto',
  ) {
    if (!BOS_POLICIES.includes(bos)) throw new UsageError(`bos: expected one of ${BOS_POLICIES.join(', ')}, got ${JSON.stringify(bos)}`);
    this.addBos = bos === 'always' || (bos === 'auto' && tokenizer.addsBos);
    if (this.addBos && tokenizer.bosId === null) throw new UsageError('bos: the tokenizer has no BOS token');
    this.bosId = tokenizer.bosId;
    const prefix = tokenizer.bosId ?? tokenizer.eosId;
    if (prefix === null) throw new UsageError('the tokenizer has neither a BOS nor an EOS token (needed for an empty context)');
    this.prefixId = prefix;
  }

  private plain(text: string): Int32Array {
    return this.tokenizer.encode(text, { addBos: false, addEos: false });
  }

  encode(req: ChoiceRequest): EncodedRequest {
    let { context, continuation } = req;
    const kept = pyRstrip(context);
    if (kept.length < context.length) {
      continuation = context.slice(kept.length) + continuation;
      context = kept;
    }
    if (context === '') return { context: Int32Array.of(this.prefixId), continuation: this.plain(continuation) };
    let ctx = this.memo.get(context);
    if (!ctx) {
      if (this.memo.size > 4096) this.memo.clear();
      ctx = this.plain(context);
      this.memo.set(context, ctx);
    }
    const whole = this.plain(context + continuation);
    let cont = whole.slice(Math.min(ctx.length, whole.length));
    const lcp = commonPrefix(ctx, ctx.length, whole);
    if (lcp < ctx.length) {
      this.boundaryMerges++;
      if (cont.length === 0) {
        // The harness asserts here. A tokenizer whose pieces span words (TinyStories-656K:
        // "with▁the▁") can swallow the whole continuation into the context's last tokens:
        // move the boundary back to the last token both encodings share.
        this.boundaryFallbacks++;
        ctx = lcp > 0 || this.addBos ? whole.slice(0, lcp) : Int32Array.of(this.prefixId);
        cont = whole.slice(lcp);
      }
    }
    if (!this.addBos) return { context: ctx, continuation: cont };
    const withBos = new Int32Array(ctx.length + 1);
    withBos[0] = this.bosId!;
    withBos.set(ctx, 1);
    return { context: withBos, continuation: cont };
  }
}

function commonPrefix(a: Int32Array, aLen: number, b: Int32Array): number {
  const n = Math.min(aLen, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/** Sums of continuation log-probabilities on one model, reusing the KV cache between requests. */
export class LoglikelihoodScorer {
  readonly maxLength: number;
  /** Tokens run through the model so far (cost), and tokens whose pass was saved by reuse. */
  forwardTokens = 0;
  reusedTokens = 0;
  /** Requests whose continuation alone exceeded the window (scored in chunks). */
  longContinuations = 0;
  private readonly cache: KvCache;
  private readonly cachedIds: Int32Array;
  private readonly vocab: number;
  /** Logits at the last position of the most recent context, and that context's length. */
  private lastRow: Float32Array;
  private lastRowPrefixLen = -1;
  private readonly nll1 = new Float64Array(1);

  constructor(
    private readonly model: RuntimeModel,
    maxLength: number = model.config.maxPositionEmbeddings,
  ) {
    if (!Number.isSafeInteger(maxLength) || maxLength < 2) throw new UsageError(`max length: expected an integer >= 2, got ${maxLength}`);
    this.maxLength = maxLength;
    this.cache = new KvCache(model.config, maxLength);
    this.cachedIds = new Int32Array(maxLength);
    this.vocab = model.config.vocabSize;
    this.lastRow = new Float32Array(this.vocab);
  }

  /** log P(continuation | context) in nats (a sum over the continuation's tokens). */
  score(req: EncodedRequest): number {
    const { context, continuation: cont } = req;
    if (cont.length === 0) throw new DataError('continuation has no tokens');
    if (context.length === 0) throw new DataError('context has no tokens');
    if (cont.length > this.maxLength) return this.scoreInChunks(context, cont);
    // Left truncation of the pair to maxLength + 1 tokens (the last one is never input).
    const drop = Math.max(0, context.length + cont.length - (this.maxLength + 1));
    const prefix = context.subarray(drop);

    const lcp = commonPrefix(this.cachedIds, this.cache.length, prefix);
    if (this.lastRowPrefixLen === prefix.length && lcp >= prefix.length) {
      this.cache.truncate(prefix.length);
      this.reusedTokens += prefix.length;
    } else {
      const keep = Math.min(lcp, prefix.length - 1);
      this.cache.truncate(keep);
      const rest = prefix.subarray(keep);
      const r = forward(this.model, rest, { cache: this.cache, logits: 'last' });
      this.cachedIds.set(rest, keep);
      this.lastRow.set(r.logits!);
      this.lastRowPrefixLen = prefix.length;
      this.forwardTokens += rest.length;
      this.reusedTokens += keep;
    }

    logSoftmaxNll(this.lastRow, 1, this.vocab, cont.subarray(0, 1), this.nll1);
    let nll = this.nll1[0];
    if (cont.length > 1) {
      const input = cont.subarray(0, cont.length - 1);
      const r = forward(this.model, input, { cache: this.cache, logits: 'all' });
      this.cachedIds.set(input, prefix.length);
      this.forwardTokens += input.length;
      const rows = input.length;
      const out = new Float64Array(rows);
      logSoftmaxNll(r.logits!, rows, this.vocab, cont.subarray(1), out);
      for (let i = 0; i < rows; i++) nll += out[i];
    }
    return -nll;
  }

  /**
   * A continuation longer than the window (the harness asserts): score it in consecutive
   * chunks of maxLength tokens, each given everything before it (cut from the left as usual).
   */
  private scoreInChunks(context: Int32Array, cont: Int32Array): number {
    this.longContinuations++;
    const full = new Int32Array(context.length + cont.length);
    full.set(context);
    full.set(cont, context.length);
    let ll = 0;
    for (let a = 0; a < cont.length; a += this.maxLength) {
      const b = Math.min(cont.length, a + this.maxLength);
      ll += this.score({ context: full.subarray(0, context.length + a), continuation: cont.subarray(a, b) });
    }
    return ll;
  }
}
