/**
 * The seven zero-shot task files of the shared data folder (../shared/data README §5), read
 * and checked line by line. Each loader returns the task's own fields, untouched; prompts.ts
 * turns them into lm-evaluation-harness requests.
 *
 * Files (relative to the data dir):
 *   piqa        tasks/piqa/valid.jsonl {goal, sol1, sol2} + tasks/piqa/valid-labels.lst (0/1 a line)
 *   hellaswag   tasks/hellaswag/hellaswag_val.jsonl.gz {idx, activity_label, ctx, endings[4], label}
 *   arc_easy, arc_challenge, boolq, openbookqa   llm-foundry jsonl {query, choices[], gold}
 *   winogrande  tasks/winogrande/winogrande.jsonl {context_options[2], continuation, gold}
 *
 * Every problem is a FormatError naming the file and the 1-based line.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

import { dataDir } from '../util/data-dir.js';
import { FileError, FormatError, UsageError } from '../util/errors.js';

export const TASK_NAMES = ['piqa', 'arc_easy', 'arc_challenge', 'hellaswag', 'winogrande', 'boolq', 'openbookqa'] as const;
export type TaskName = (typeof TASK_NAMES)[number];

/** Where a document came from, for error messages and result rows. */
export interface DocSource {
  file: string;
  /** 1-based line in `file`. */
  line: number;
}

export interface PiqaDoc {
  goal: string;
  sol1: string;
  sol2: string;
  /** 0: sol1 is correct, 1: sol2 (from valid-labels.lst). */
  label: number;
}

export interface HellaswagDoc {
  activityLabel: string;
  /** ctx_a + " " + ctx_b with ctx_b not capitalised (README §5). */
  ctx: string;
  endings: string[];
  label: number;
}

/** llm-foundry's multiple-choice rows (ARC, BoolQ, OpenBookQA). */
export interface QueryDoc {
  query: string;
  choices: string[];
  gold: number;
}

export interface WinograndeDoc {
  /** The sentence up to the blank, with option 1 / option 2 filled in. */
  contextOptions: string[];
  /** The rest of the sentence after the blank. */
  continuation: string;
  gold: number;
}

export interface TaskDocs {
  piqa: PiqaDoc;
  hellaswag: HellaswagDoc;
  arc_easy: QueryDoc;
  arc_challenge: QueryDoc;
  boolq: QueryDoc;
  openbookqa: QueryDoc;
  winogrande: WinograndeDoc;
}

export type Sourced<T> = T & { source: DocSource };

/** The task files, relative to the data dir. */
export const TASK_FILES: Record<TaskName, string> = {
  piqa: 'tasks/piqa/valid.jsonl',
  hellaswag: 'tasks/hellaswag/hellaswag_val.jsonl.gz',
  arc_easy: 'tasks/arc_easy/arc_easy.jsonl',
  arc_challenge: 'tasks/arc_challenge/arc_challenge.jsonl',
  boolq: 'tasks/boolq/boolq.jsonl',
  openbookqa: 'tasks/openbookqa/openbook_qa.jsonl',
  winogrande: 'tasks/winogrande/winogrande.jsonl',
};
export const PIQA_LABELS_FILE = 'tasks/piqa/valid-labels.lst';

/** "piqa,arc_easy" → task names in the given order; unknown or repeated names are a UsageError. */
export function parseTaskList(v: string, option = '--tasks'): TaskName[] {
  const names = v.split(',').map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) throw new UsageError(`${option}: expected a comma-separated list of tasks (${TASK_NAMES.join(', ')})`);
  const out: TaskName[] = [];
  for (const n of names) {
    if (!(TASK_NAMES as readonly string[]).includes(n)) throw new UsageError(`${option}: unknown task "${n}" (known: ${TASK_NAMES.join(', ')})`);
    if (out.includes(n as TaskName)) throw new UsageError(`${option}: task "${n}" is listed twice`);
    out.push(n as TaskName);
  }
  return out;
}

function readText(path: string): string {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (err) {
    throw new FileError(path, 'cannot read the task file (is the shared data folder present? set LIEQ_DATA_DIR)', { cause: err });
  }
  if (path.endsWith('.gz')) {
    try {
      buf = gunzipSync(buf);
    } catch (err) {
      throw new FormatError(path, 'not a valid gzip file', { cause: err });
    }
  }
  return buf.toString('utf8');
}

/** Non-empty lines of a JSON-lines file, parsed, with their 1-based line numbers. */
function readJsonLines(path: string): { obj: Record<string, unknown>; source: DocSource }[] {
  const lines = readText(path).split('\n');
  const out: { obj: Record<string, unknown>; source: DocSource }[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].replace(/\r$/, '');
    if (line.trim() === '') continue;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch (err) {
      throw new FormatError(path, `line ${i + 1}: not valid JSON (${(err as Error).message})`, { cause: err });
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new FormatError(path, `line ${i + 1}: expected a JSON object`);
    out.push({ obj: obj as Record<string, unknown>, source: { file: path, line: i + 1 } });
  }
  if (out.length === 0) throw new FormatError(path, 'no documents');
  return out;
}

/** Field readers that name the file, line and field in their errors. */
class Fields {
  constructor(
    private readonly obj: Record<string, unknown>,
    private readonly src: DocSource,
  ) {}

  private fail(field: string, expected: string): never {
    const got = this.obj[field];
    throw new FormatError(this.src.file, `line ${this.src.line}: field "${field}" must be ${expected}, got ${got === undefined ? 'nothing' : JSON.stringify(got).slice(0, 60)}`);
  }

  string(field: string, nonEmpty = true): string {
    const v = this.obj[field];
    if (typeof v !== 'string' || (nonEmpty && v.trim() === '')) this.fail(field, nonEmpty ? 'a non-empty string' : 'a string');
    return v;
  }

  strings(field: string, count?: number): string[] {
    const v = this.obj[field];
    if (!Array.isArray(v) || v.length < 2 || (count !== undefined && v.length !== count) || v.some((s) => typeof s !== 'string' || s.trim() === ''))
      this.fail(field, `a list of ${count ?? 'at least 2'} non-empty strings`);
    return v as string[];
  }

  index(field: string, n: number): number {
    const v = this.obj[field];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= n) this.fail(field, `an integer in [0, ${n})`);
    return v;
  }
}

function loadPiqa(dir: string): Sourced<PiqaDoc>[] {
  const file = join(dir, TASK_FILES.piqa);
  const labelsFile = join(dir, PIQA_LABELS_FILE);
  const rows = readJsonLines(file);
  const labelLines = readText(labelsFile).split('\n');
  if (labelLines[labelLines.length - 1].trim() === '') labelLines.pop();
  if (labelLines.length !== rows.length)
    throw new FormatError(labelsFile, `has ${labelLines.length} labels, ${file} has ${rows.length} documents`);
  return rows.map(({ obj, source }, i) => {
    const f = new Fields(obj, source);
    const t = labelLines[i].trim();
    if (t !== '0' && t !== '1') throw new FormatError(labelsFile, `line ${i + 1}: expected 0 or 1, got ${JSON.stringify(labelLines[i])}`);
    return { goal: f.string('goal'), sol1: f.string('sol1', false), sol2: f.string('sol2', false), label: Number(t), source };
  });
}

function loadHellaswag(dir: string): Sourced<HellaswagDoc>[] {
  return readJsonLines(join(dir, TASK_FILES.hellaswag)).map(({ obj, source }) => {
    const f = new Fields(obj, source);
    const endings = f.strings('endings', 4);
    return { activityLabel: f.string('activity_label'), ctx: f.string('ctx'), endings, label: f.index('label', endings.length), source };
  });
}

function loadQueryTask(dir: string, task: 'arc_easy' | 'arc_challenge' | 'boolq' | 'openbookqa'): Sourced<QueryDoc>[] {
  const file = join(dir, TASK_FILES[task]);
  return readJsonLines(file).map(({ obj, source }) => {
    const f = new Fields(obj, source);
    const choices = task === 'boolq' ? f.strings('choices', 2) : f.strings('choices');
    const doc = { query: f.string('query'), choices, gold: f.index('gold', choices.length), source };
    // The prompt builders rely on these shapes of llm-foundry's files (README §5).
    if ((task === 'arc_easy' || task === 'arc_challenge') && !doc.query.startsWith('Question: '))
      throw new FormatError(file, `line ${source.line}: ARC query must start with "Question: "`);
    if (task === 'boolq') {
      if (!/^Passage: [^]*\nQuestion: [^]*\?$/.test(doc.query)) throw new FormatError(file, `line ${source.line}: BoolQ query must be "Passage: …\\nQuestion: …?"`);
      if (choices[0] !== 'no' || choices[1] !== 'yes') throw new FormatError(file, `line ${source.line}: BoolQ choices must be ["no", "yes"]`);
    }
    return doc;
  });
}

function loadWinogrande(dir: string): Sourced<WinograndeDoc>[] {
  return readJsonLines(join(dir, TASK_FILES.winogrande)).map(({ obj, source }) => {
    const f = new Fields(obj, source);
    const contextOptions = f.strings('context_options', 2);
    return { contextOptions, continuation: f.string('continuation'), gold: f.index('gold', 2), source };
  });
}

/** All documents of a task, in file order (`limit`: the first `limit` only, as the harness's --limit). */
export function loadTask<T extends TaskName>(task: T, opts: { dataDir?: string; limit?: number } = {}): Sourced<TaskDocs[T]>[] {
  const dir = opts.dataDir ?? dataDir();
  let docs: Sourced<TaskDocs[TaskName]>[];
  switch (task) {
    case 'piqa':
      docs = loadPiqa(dir);
      break;
    case 'hellaswag':
      docs = loadHellaswag(dir);
      break;
    case 'winogrande':
      docs = loadWinogrande(dir);
      break;
    case 'arc_easy':
    case 'arc_challenge':
    case 'boolq':
    case 'openbookqa':
      docs = loadQueryTask(dir, task);
      break;
    default:
      throw new UsageError(`unknown task "${String(task)}" (known: ${TASK_NAMES.join(', ')})`);
  }
  if (opts.limit !== undefined) {
    if (!Number.isSafeInteger(opts.limit) || opts.limit < 1) throw new UsageError(`limit: expected a positive integer, got ${opts.limit}`);
    docs = docs.slice(0, opts.limit);
  }
  return docs as unknown as Sourced<TaskDocs[T]>[];
}
