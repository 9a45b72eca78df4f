/**
 * Zero-shot multiple-choice evaluation, aggregated as lm-evaluation-harness does:
 *   acc      = mean over documents of [argmax_i ll_i == gold]
 *   acc_norm = mean of [argmax_i ll_i / len(choice_i) == gold], len in characters (Python
 *              len: code points) of the doc_to_choice string, without the leading " "
 *   stderr   = sample standard deviation / sqrt(n) (metrics.mean_stderr; 0 for n = 1)
 * argmax takes the first of equal maxima (numpy). The average over tasks is unweighted; the
 * headline average uses each task's primary metric (acc_norm where reported, else acc), and
 * recovery = quantized average / full-precision average (the LieQ paper's "% of FP16").
 */
import type { RuntimeModel } from '../runtime/model.js';
import { DataError } from '../util/errors.js';
import { LoglikelihoodScorer, RequestEncoder, type BosPolicy, type EncodedRequest, type EvalTokenizer } from './loglikelihood.js';
import { buildItems, primaryMetric, pyLen, TASK_SPECS, type McItem, type Metric } from './prompts.js';
import { loadTask, type TaskName } from './tasks.js';

export interface MetricValue {
  value: number;
  stderr: number;
}

export interface DocScore {
  index: number;
  /** 1-based line in the task file. */
  line: number;
  gold: number;
  /** log-likelihood of each choice (nats). */
  lls: number[];
  pred: number;
  predNorm: number;
}

export interface TaskResult {
  task: TaskName;
  /** The lm-evaluation-harness config the prompts follow. */
  config: string;
  docs: number;
  requests: number;
  metrics: Partial<Record<Metric, MetricValue>>;
  primary: Metric;
  /** Tokens run through the model, and context tokens whose pass the KV cache saved. */
  forwardTokens: number;
  reusedTokens: number;
  /** Batched forward passes run (each over the contexts or the continuations of a batch). */
  passes: number;
  /** Requests with a token merge across the context/continuation boundary, and those whose
   *  empty count split fell back to the shared-token boundary (RequestEncoder). */
  boundaryMerges: number;
  boundaryFallbacks: number;
  /** Requests whose continuation alone was longer than the window (scored in chunks). */
  longContinuations: number;
  seconds: number;
  /** Per-document scores (only with `samples`). */
  samples?: DocScore[];
}

export interface ZeroShotResult {
  tasks: TaskResult[];
  /** Unweighted means over tasks: of each task's primary metric, and of acc. */
  average: { primary: number; acc: number };
  bos: boolean;
  maxLength: number;
  /** Requests scored together (--batch). */
  batch: number;
  seconds: number;
}

export interface ZeroShotOptions {
  limit?: number;
  dataDir?: string;
  bos?: BosPolicy;
  /** Model window for left truncation (default: max_position_embeddings, as the harness). */
  maxLength?: number;
  /** Requests scored together in batched forward passes (default 1: one at a time). */
  batch?: number;
  /** Keep per-document log-likelihoods in the result. */
  samples?: boolean;
  /** Called after each document. */
  onProgress?(task: TaskName, done: number, total: number): void;
}

/** First index of the maximum (numpy.argmax). */
export function argmax(xs: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i;
  return best;
}

/** Predictions of one document from its choices' log-likelihoods. */
export function predict(lls: readonly number[], choices: readonly string[]): { pred: number; predNorm: number } {
  return { pred: argmax(lls), predNorm: argmax(lls.map((ll, i) => ll / pyLen(choices[i]))) };
}

/** Mean and its standard error (harness metrics.mean_stderr). */
export function meanStderr(xs: ArrayLike<number>): MetricValue {
  const n = xs.length;
  if (n === 0) return { value: NaN, stderr: NaN };
  let s = 0;
  for (let i = 0; i < n; i++) s += xs[i];
  const mu = s / n;
  if (n === 1) return { value: mu, stderr: 0 };
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (xs[i] - mu) ** 2;
  return { value: mu, stderr: Math.sqrt(ss / (n - 1)) / Math.sqrt(n) };
}

/** Loaded documents of the tasks, as harness requests. */
export function loadItems(tasks: readonly TaskName[], opts: { limit?: number; dataDir?: string } = {}): Map<TaskName, McItem[]> {
  const out = new Map<TaskName, McItem[]>();
  for (const t of tasks) out.set(t, buildItems(t, loadTask(t, opts)));
  return out;
}

/** Score one task's documents, `scorer.batch` requests at a time (a document's requests may
 *  span two batches; its result is final once all of them are scored). */
export async function evaluateTask(
  scorer: LoglikelihoodScorer,
  encoder: RequestEncoder,
  task: TaskName,
  items: readonly McItem[],
  opts: Pick<ZeroShotOptions, 'samples' | 'onProgress'> = {},
): Promise<TaskResult> {
  const t0 = performance.now();
  const f0 = scorer.forwardTokens;
  const r0 = scorer.reusedTokens;
  const p0 = scorer.passes;
  const m0 = encoder.boundaryMerges;
  const b0 = encoder.boundaryFallbacks;
  const l0 = scorer.longContinuations;
  const acc: number[] = [];
  const accNorm: number[] = [];
  const samples: DocScore[] = [];
  let requests = 0;
  const lls = items.map((item) => new Array<number>(item.requests.length));
  const queue: { doc: number; choice: number; req: EncodedRequest }[] = [];
  let finished = 0;
  let lastYield = performance.now();

  const finish = (d: number) => {
    const item = items[d];
    const { pred, predNorm } = predict(lls[d], item.choices);
    acc.push(pred === item.gold ? 1 : 0);
    accNorm.push(predNorm === item.gold ? 1 : 0);
    if (opts.samples) samples.push({ index: item.index, line: item.source.line, gold: item.gold, lls: lls[d], pred, predNorm });
    opts.onProgress?.(task, d + 1, items.length);
  };
  const scoreQueued = async (all: boolean) => {
    while (queue.length >= scorer.batch || (all && queue.length > 0)) {
      const take = queue.splice(0, scorer.batch);
      const got = scorer.scoreBatch(take.map((q) => q.req));
      take.forEach((q, i) => (lls[q.doc][q.choice] = got[i]));
      // Documents finish in order; the one at the head of the queue still waits for choices.
      const upTo = queue.length > 0 ? queue[0].doc : take[take.length - 1].doc + 1;
      while (finished < upTo) finish(finished++);
      // Let the progress bar draw (and signals arrive) about ten times a second.
      if (performance.now() - lastYield > 100) {
        await new Promise((r) => setImmediate(r));
        lastYield = performance.now();
      }
    }
  };
  for (let d = 0; d < items.length; d++) {
    const item = items[d];
    item.requests.forEach((req, i) => {
      const enc = encoder.encode(req);
      if (enc.continuation.length === 0) throw new DataError(`${item.source.file}: line ${item.source.line}, choice ${i}: continuation has no tokens`);
      queue.push({ doc: d, choice: i, req: enc });
    });
    requests += item.requests.length;
    await scoreQueued(false);
  }
  await scoreQueued(true);

  const spec = TASK_SPECS[task];
  const metrics: TaskResult['metrics'] = { acc: meanStderr(acc) };
  if (spec.metrics.includes('acc_norm')) metrics.acc_norm = meanStderr(accNorm);
  return {
    task,
    config: spec.config,
    docs: items.length,
    requests,
    metrics,
    primary: primaryMetric(task),
    forwardTokens: scorer.forwardTokens - f0,
    reusedTokens: scorer.reusedTokens - r0,
    passes: scorer.passes - p0,
    boundaryMerges: encoder.boundaryMerges - m0,
    boundaryFallbacks: encoder.boundaryFallbacks - b0,
    longContinuations: scorer.longContinuations - l0,
    seconds: (performance.now() - t0) / 1000,
    ...(opts.samples ? { samples } : {}),
  };
}

/** Unweighted means over tasks of each task's primary metric and of acc. */
export function averageOf(tasks: readonly TaskResult[]): ZeroShotResult['average'] {
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return {
    primary: mean(tasks.map((t) => t.metrics[t.primary]!.value)),
    acc: mean(tasks.map((t) => t.metrics.acc!.value)),
  };
}

/** Evaluate `model` on pre-loaded task items (loadItems). */
export async function evaluateZeroShot(
  model: RuntimeModel,
  tokenizer: EvalTokenizer,
  items: ReadonlyMap<TaskName, McItem[]>,
  opts: ZeroShotOptions = {},
): Promise<ZeroShotResult> {
  const t0 = performance.now();
  const encoder = new RequestEncoder(tokenizer, opts.bos ?? 'auto');
  const scorer = new LoglikelihoodScorer(model, opts.maxLength ?? model.config.maxPositionEmbeddings, opts.batch ?? 1);
  const tasks: TaskResult[] = [];
  for (const [task, list] of items) tasks.push(await evaluateTask(scorer, encoder, task, list, opts));
  return { tasks, average: averageOf(tasks), bos: encoder.addBos, maxLength: scorer.maxLength, batch: scorer.batch, seconds: (performance.now() - t0) / 1000 };
}

/** quantized / full precision (NaN when the full-precision value is 0). */
export function recovery(fp: number, quantized: number): number {
  return fp === 0 ? NaN : quantized / fp;
}
