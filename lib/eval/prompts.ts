/**
 * Zero-shot prompts of lm-evaluation-harness's default task configs, built from the shared
 * data's files (tasks.ts). A document becomes one (context, continuation) request per choice;
 * the harness's target_delimiter " " starts every continuation. docs/eval.md cites each config.
 *
 *   piqa         piqa.yaml            "Question: {goal}\nAnswer:"            → " {sol1}" | " {sol2}"
 *   arc_easy     arc_easy.yaml        "Question: {question}\nAnswer:"        → " {choice}"
 *   arc_challenge arc_challenge.yaml  (includes arc_easy.yaml)
 *   hellaswag    hellaswag.yaml+utils.py  preprocess(label + ": " + ctx_a + " " + ctx_b.capitalize()) → " " + preprocess(ending)
 *   winogrande   winogrande/default.yaml  partial scoring: context = sentence up to the blank with
 *                                     the option filled in, continuation = " " + rest.strip()
 *   boolq        super_glue/boolq/default.yaml "{passage}\nQuestion: {question}?\nAnswer:" → " no" | " yes"
 *   openbookqa   openbookqa.yaml      "{question_stem}"                      → " {choice}"
 */
import type { DocSource, HellaswagDoc, PiqaDoc, QueryDoc, Sourced, TaskDocs, TaskName, WinograndeDoc } from './tasks.js';

export interface ChoiceRequest {
  context: string;
  continuation: string;
}

/** One document as the harness scores it. */
export interface McItem {
  task: TaskName;
  /** 0-based position in the task file (after --limit, the same). */
  index: number;
  source: DocSource;
  /** One request per choice, in choice order. */
  requests: ChoiceRequest[];
  /** doc_to_choice strings: their character lengths normalise acc_norm. */
  choices: string[];
  gold: number;
}

export type Metric = 'acc' | 'acc_norm';

/** Harness config of each task and the metrics it reports. */
export const TASK_SPECS: Record<TaskName, { config: string; metrics: readonly Metric[] }> = {
  piqa: { config: 'lm_eval/tasks/piqa/piqa.yaml', metrics: ['acc', 'acc_norm'] },
  arc_easy: { config: 'lm_eval/tasks/arc/arc_easy.yaml', metrics: ['acc', 'acc_norm'] },
  arc_challenge: { config: 'lm_eval/tasks/arc/arc_challenge.yaml', metrics: ['acc', 'acc_norm'] },
  hellaswag: { config: 'lm_eval/tasks/hellaswag/hellaswag.yaml (utils.py)', metrics: ['acc', 'acc_norm'] },
  winogrande: { config: 'lm_eval/tasks/winogrande/default.yaml (preprocess_winogrande.py)', metrics: ['acc'] },
  boolq: { config: 'lm_eval/tasks/super_glue/boolq/default.yaml', metrics: ['acc'] },
  openbookqa: { config: 'lm_eval/tasks/openbookqa/openbookqa.yaml', metrics: ['acc', 'acc_norm'] },
};

/** The headline metric of a task: acc_norm where the harness reports it, else acc. */
export function primaryMetric(task: TaskName): Metric {
  return TASK_SPECS[task].metrics.includes('acc_norm') ? 'acc_norm' : 'acc';
}

// ---------------------------------------------------------------------------------------
// Python string semantics the harness relies on.

/** Characters Python's str.isspace() accepts (str.strip/rstrip with no argument). */
const PY_SPACE = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_TRAILING = new RegExp(`[${PY_SPACE}]+$`, 'u');
const PY_LEADING = new RegExp(`^[${PY_SPACE}]+`, 'u');

export function pyRstrip(s: string): string {
  return s.replace(PY_TRAILING, '');
}

export function pyStrip(s: string): string {
  return s.replace(PY_LEADING, '').replace(PY_TRAILING, '');
}

/** Python str.capitalize(): first character upper-cased, the rest lower-cased. */
export function pyCapitalize(s: string): string {
  const cps = [...s];
  if (cps.length === 0) return s;
  return cps[0].toUpperCase() + cps.slice(1).join('').toLowerCase();
}

/** Python len(str): code points, not UTF-16 units. */
export function pyLen(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

// ---------------------------------------------------------------------------------------
// Per task.

const DELIM = ' ';

function shared(task: TaskName, index: number, source: DocSource, context: string, choices: string[], gold: number): McItem {
  return { task, index, source, requests: choices.map((c) => ({ context, continuation: DELIM + c })), choices, gold };
}

export function piqaItem(doc: Sourced<PiqaDoc>, index: number): McItem {
  return shared('piqa', index, doc.source, `Question: ${doc.goal}\nAnswer:`, [doc.sol1, doc.sol2], doc.label);
}

/** ARC: llm-foundry's query is already "Question: {question}". */
export function arcItem(task: 'arc_easy' | 'arc_challenge', doc: Sourced<QueryDoc>, index: number): McItem {
  return shared(task, index, doc.source, `${doc.query}\nAnswer:`, doc.choices, doc.gold);
}

/** OpenBookQA: the harness's prompt is the bare question stem (llm-foundry's query). */
export function openbookqaItem(doc: Sourced<QueryDoc>, index: number): McItem {
  return shared('openbookqa', index, doc.source, doc.query, doc.choices, doc.gold);
}

/** BoolQ: llm-foundry's "Passage: {passage}\nQuestion: {question}?" minus "Passage: ", plus "\nAnswer:". */
export function boolqItem(doc: Sourced<QueryDoc>, index: number): McItem {
  const passageAndQuestion = doc.query.slice('Passage: '.length);
  return shared('boolq', index, doc.source, `${passageAndQuestion}\nAnswer:`, ['no', 'yes'], doc.gold);
}

/** lm_eval/tasks/hellaswag/utils.py preprocess: WikiHow bracket artefacts out, one space. */
export function hellaswagPreprocess(text: string): string {
  let t = pyStrip(text);
  t = t.replaceAll(' [title]', '. ');
  t = t.replace(/\[.*?\]/g, '');
  t = t.replaceAll('  ', ' ');
  return t;
}

/**
 * The harness's ctx_a + " " + ctx_b.capitalize() from the shipped joined ctx. The split is not
 * in the file; ctx_b is the sentence the endings complete, so we take the text after the last
 * sentence end (". ", "! ", "? ") and capitalise it when it starts with a lower-case letter
 * (a capitalised or empty ctx_b needs nothing). docs/eval.md states what this can miss.
 */
export function hellaswagCapitalizeTail(ctx: string): string {
  const m = /^([^]*[.!?] +)?([^]*)$/.exec(ctx)!;
  const head = m[1] ?? '';
  const tail = m[2];
  if (tail === '' || !/^\p{Ll}/u.test(tail)) return ctx;
  return head + pyCapitalize(tail);
}

export function hellaswagItem(doc: Sourced<HellaswagDoc>, index: number): McItem {
  const query = hellaswagPreprocess(`${doc.activityLabel}: ${hellaswagCapitalizeTail(doc.ctx)}`);
  return shared('hellaswag', index, doc.source, query, doc.endings.map(hellaswagPreprocess), doc.label);
}

/** WinoGrande partial scoring: the option-filled prefixes are the contexts, the suffix is shared. */
export function winograndeItem(doc: Sourced<WinograndeDoc>, index: number): McItem {
  const continuation = DELIM + pyStrip(doc.continuation);
  return {
    task: 'winogrande',
    index,
    source: doc.source,
    requests: doc.contextOptions.map((context) => ({ context, continuation })),
    choices: doc.contextOptions,
    gold: doc.gold,
  };
}

/** The harness requests of a task's documents. */
export function buildItems<T extends TaskName>(task: T, docs: Sourced<TaskDocs[T]>[]): McItem[] {
  return docs.map((d, i) => {
    switch (task) {
      case 'piqa':
        return piqaItem(d as Sourced<PiqaDoc>, i);
      case 'arc_easy':
      case 'arc_challenge':
        return arcItem(task, d as Sourced<QueryDoc>, i);
      case 'openbookqa':
        return openbookqaItem(d as Sourced<QueryDoc>, i);
      case 'boolq':
        return boolqItem(d as Sourced<QueryDoc>, i);
      case 'hellaswag':
        return hellaswagItem(d as Sourced<HellaswagDoc>, i);
      case 'winogrande':
        return winograndeItem(d as Sourced<WinograndeDoc>, i);
      default:
        throw new Error(`unreachable: task ${String(task)}`);
    }
  });
}
