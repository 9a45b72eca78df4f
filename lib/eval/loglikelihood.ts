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
 * Batching and shared-prefix reuse: LoglikelihoodScorer below (docs/eval.md, "Batching").
 */
import type { Tokenizer } from '../io/tokenizer.js';
import { forwardBatch, type BatchSequence } from '../runtime/batch-decode.js';
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

/** Rows of one batched forward at most (a batch of long contexts is run in several passes),
 *  bounding the scratch buffers and the logits of a pass. */
const MAX_ROWS_PER_PASS = 2048;

/** One KV cache of the scorer's pool and what it holds. */
interface Slot {
  cache: KvCache;
  /** Token ids of the cache's positions 0..cache.length-1. */
  ids: Int32Array;
  /** Logits after ids[0..lastRowLen) (the last context run here, or copied with its prefix);
   *  lastRowLen -1: none yet. */
  lastRow: Float32Array;
  lastRowLen: number;
}

/** One scored piece: a request, or one chunk of a continuation longer than the window. */
interface Piece {
  owner: number;
  /** The context cut from the left so that prefix + continuation fit maxLength + 1 tokens. */
  prefix: Int32Array;
  cont: Int32Array;
}

/**
 * Sums of continuation log-probabilities on one model, `batch` requests at a time.
 *
 * A batch of requests runs in two batched forward passes (forwardBatch: every linear once over
 * the rows of all sequences): (1) the distinct contexts, each in its own KV cache of a pool of
 * `batch` caches, giving the log-probabilities of every first continuation token; (2) the
 * continuations, each request in its own cache: the first request of a context extends the
 * context's cache, the others a copy of its KV prefix (KvCache.copyPrefixFrom), so the choices
 * of a question cost one context pass. Caches keep their tokens between batches: a context
 * that shares a token prefix with one of them (the rest of a question split across batches, a
 * repeated prompt head) runs only the tokens after it. With batch 1 this is the sequential
 * scorer: one cache, reused from the last request.
 */
export class LoglikelihoodScorer {
  readonly maxLength: number;
  readonly batch: number;
  /** Tokens run through the model so far (cost), and tokens whose pass was saved by reuse. */
  forwardTokens = 0;
  reusedTokens = 0;
  /** Batched forward passes run. */
  passes = 0;
  /** Requests whose continuation alone exceeded the window (scored in chunks). */
  longContinuations = 0;
  private readonly slots: Slot[];
  private readonly vocab: number;

  constructor(
    private readonly model: RuntimeModel,
    maxLength: number = model.config.maxPositionEmbeddings,
    batch = 1,
  ) {
    if (!Number.isSafeInteger(maxLength) || maxLength < 2) throw new UsageError(`max length: expected an integer >= 2, got ${maxLength}`);
    if (!Number.isSafeInteger(batch) || batch < 1) throw new UsageError(`batch: expected an integer >= 1, got ${batch}`);
    this.maxLength = maxLength;
    this.batch = batch;
    this.vocab = model.config.vocabSize;
    this.slots = Array.from({ length: batch }, () => ({
      cache: new KvCache(model.config, maxLength),
      ids: new Int32Array(maxLength),
      lastRow: new Float32Array(this.vocab),
      lastRowLen: -1,
    }));
  }

  /** log P(continuation | context) in nats (a sum over the continuation's tokens). */
  score(req: EncodedRequest): number {
    return this.scoreBatch([req])[0];
  }

  /** log P(continuation | context) of each request, `batch` at a time. */
  scoreBatch(reqs: readonly EncodedRequest[]): number[] {
    const pieces: Piece[] = [];
    reqs.forEach((req, owner) => {
      const { context, continuation: cont } = req;
      if (cont.length === 0) throw new DataError('continuation has no tokens');
      if (context.length === 0) throw new DataError('context has no tokens');
      if (cont.length <= this.maxLength) {
        pieces.push(this.piece(owner, context, cont));
        return;
      }
      // Longer than the window (the harness asserts): consecutive chunks of maxLength tokens,
      // each given everything before it (cut from the left as usual).
      this.longContinuations++;
      const full = new Int32Array(context.length + cont.length);
      full.set(context);
      full.set(cont, context.length);
      for (let a = 0; a < cont.length; a += this.maxLength)
        pieces.push(this.piece(owner, full.subarray(0, context.length + a), cont.subarray(a, Math.min(cont.length, a + this.maxLength))));
    });
    const lls = new Array<number>(reqs.length).fill(0);
    for (let p = 0; p < pieces.length; p += this.batch) {
      const group = pieces.slice(p, p + this.batch);
      const nll = this.runGroup(group);
      group.forEach((piece, i) => (lls[piece.owner] -= nll[i]));
    }
    return lls;
  }

  private piece(owner: number, context: Int32Array, cont: Int32Array): Piece {
    // Left truncation of the pair to maxLength + 1 tokens (the last one is never input).
    const drop = Math.max(0, context.length + cont.length - (this.maxLength + 1));
    return { owner, prefix: context.subarray(drop), cont };
  }

  /** Negative log-likelihoods of at most `batch` pieces. */
  private runGroup(pieces: readonly Piece[]): Float64Array {
    const V = this.vocab;
    // Pieces with the same context share one context pass.
    const contexts: Int32Array[] = [];
    const contextOf = pieces.map((pc) => {
      const c = contexts.findIndex((x) => sameIds(x, pc.prefix));
      return c >= 0 ? c : contexts.push(pc.prefix) - 1;
    });

    // (1) Contexts: each in the free cache sharing the longest token prefix with it.
    const free = new Set(this.slots);
    const runs: BatchSequence[] = [];
    const ran: Slot[] = [];
    const contextSlot = contexts.map((prefix) => {
      let slot = this.slots[0];
      let lcp = -1;
      for (const s of free) {
        const l = commonPrefix(s.ids, s.cache.length, prefix);
        if (l > lcp) [slot, lcp] = [s, l];
      }
      free.delete(slot);
      const len = prefix.length;
      if (slot.lastRowLen === len && lcp >= len) {
        slot.cache.truncate(len); // whole context kept, with its last logits
        this.reusedTokens += len;
        return slot;
      }
      const keep = Math.min(lcp, len - 1); // at least one token runs, for the last logits
      slot.cache.truncate(keep);
      slot.ids.set(prefix.subarray(keep), keep);
      slot.lastRowLen = len;
      runs.push({ ids: prefix.subarray(keep), cache: slot.cache });
      ran.push(slot);
      this.reusedTokens += keep;
      return slot;
    });
    this.runPasses(runs, 'last', (logits, first, count) => {
      for (let i = 0; i < count; i++) ran[first + i].lastRow.set(logits.subarray(i * V, (i + 1) * V));
    });

    // (2) Continuations: the first piece of a context extends its cache, the others a copy.
    const owned = new Set<Slot>();
    const slotOf = pieces.map((pc, i) => {
      const home = contextSlot[contextOf[i]];
      if (!owned.has(home)) {
        owned.add(home);
        return home;
      }
      const slot = free.values().next().value!;
      free.delete(slot);
      const len = pc.prefix.length;
      slot.cache.copyPrefixFrom(home.cache, len);
      slot.ids.set(pc.prefix);
      slot.lastRow.set(home.lastRow);
      slot.lastRowLen = len;
      this.reusedTokens += len;
      return slot;
    });

    // First continuation tokens from the contexts' last logits, the rest from pass (2).
    const nll = new Float64Array(pieces.length);
    const firstRows = new Float32Array(pieces.length * V);
    pieces.forEach((pc, i) => firstRows.set(contextSlot[contextOf[i]].lastRow, i * V));
    logSoftmaxNll(firstRows, pieces.length, V, Int32Array.from(pieces, (pc) => pc.cont[0]), nll);

    const conts: BatchSequence[] = [];
    const contPiece: number[] = [];
    pieces.forEach((pc, i) => {
      const slot = slotOf[i];
      if (pc.cont.length > 1) {
        const input = pc.cont.subarray(0, pc.cont.length - 1);
        slot.ids.set(input, pc.prefix.length);
        conts.push({ ids: input, cache: slot.cache });
        contPiece.push(i);
      }
    });
    this.runPasses(conts, 'all', (logits, first, count) => {
      let rows = 0;
      for (let j = first; j < first + count; j++) rows += conts[j].ids.length;
      const targets = new Int32Array(rows);
      let r = 0;
      for (let j = first; j < first + count; j++) {
        targets.set(pieces[contPiece[j]].cont.subarray(1), r);
        r += conts[j].ids.length;
      }
      const out = new Float64Array(rows);
      logSoftmaxNll(logits, rows, V, targets, out);
      r = 0;
      for (let j = first; j < first + count; j++) {
        let s = 0;
        for (let t = 0; t < conts[j].ids.length; t++) s += out[r + t];
        nll[contPiece[j]] += s;
        r += conts[j].ids.length;
      }
    });
    return nll;
  }

  /** forwardBatch over `seqs` in passes of at most MAX_ROWS_PER_PASS rows (at least one sequence each). */
  private runPasses(seqs: readonly BatchSequence[], logits: 'all' | 'last', use: (logits: Float32Array, first: number, count: number) => void): void {
    for (let a = 0; a < seqs.length; ) {
      let b = a + 1;
      let rows = seqs[a].ids.length;
      while (b < seqs.length && rows + seqs[b].ids.length <= MAX_ROWS_PER_PASS) rows += seqs[b++].ids.length;
      use(forwardBatch(this.model, seqs.slice(a, b), { logits })!, a, b - a);
      this.forwardTokens += rows;
      this.passes++;
      a = b;
    }
  }
}

function sameIds(a: Int32Array, b: Int32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
