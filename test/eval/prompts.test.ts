/**
 * Prompt construction against hand-written strings for real documents of each shipped task
 * file (what lm-evaluation-harness's default configs produce for the same documents), the
 * Python string helpers, and the task loaders' checks and errors.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';

import {
  buildItems,
  hellaswagCapitalizeTail,
  hellaswagPreprocess,
  primaryMetric,
  pyCapitalize,
  pyLen,
  pyRstrip,
  pyStrip,
} from '../../lib/eval/prompts.js';
import { loadTask, parseTaskList, TASK_FILES, TASK_NAMES } from '../../lib/eval/tasks.js';
import { FileError, FormatError, UsageError } from '../../lib/util/errors.js';
import { tempDir } from '../helpers/tmp.js';

const first = <T extends (typeof TASK_NAMES)[number]>(task: T, limit = 1) => buildItems(task, loadTask(task, { limit }));

describe('prompts of real documents', () => {
  it('piqa: "Question: {goal}\\nAnswer:" → " {sol}", gold from valid-labels.lst', () => {
    const [it0] = first('piqa');
    expect(it0.requests.map((r) => r.context)).toEqual([
      "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:",
      "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:",
    ]);
    expect(it0.requests[1].continuation).toBe(
      ' Provide the guinea pig with a cage full of a few inches of bedding made of ripped jeans material, you will also need to supply it with a water bottle and a food dish.',
    );
    expect(it0.gold).toBe(0);
    expect(first('piqa', 3).map((x) => x.gold)).toEqual([0, 1, 1]);
  });

  it('arc_easy / arc_challenge: "Question: …\\nAnswer:" → " {choice}"', () => {
    const [e] = first('arc_easy');
    expect(e.requests[0]).toEqual({
      context: 'Question: Which statement best explains why photosynthesis is the foundation of most food webs?\nAnswer:',
      continuation: ' Sunlight is the source of energy for nearly all ecosystems.',
    });
    expect(e.choices).toHaveLength(4);
    const [c] = first('arc_challenge');
    expect(c.requests[2]).toEqual({
      context: 'Question: An astronomer observes that a planet rotates faster after a meteorite impact. Which is the most likely effect of this increase in rotation?\nAnswer:',
      continuation: ' Planetary days will become shorter.',
    });
    expect(c.gold).toBe(2);
  });

  it('openbookqa: the bare question stem', () => {
    const [o] = first('openbookqa');
    expect(o.requests[1]).toEqual({
      context: 'A person wants to start saving money so that they can afford a nice vacation at the end of the year. After looking over their budget and expenses, they decide the best way to save money is to',
      continuation: ' quit eating lunch out',
    });
  });

  it('boolq: "{passage}\\nQuestion: {question}?\\nAnswer:" → " no" | " yes"', () => {
    const [b] = first('boolq');
    const ctx = b.requests[0].context;
    expect(ctx.startsWith('All biomass goes through at least some of these steps: it needs to be grown,')).toBe(true);
    expect(ctx.endsWith('producing ethanol from corn uses much less petroleum than producing gasoline.\nQuestion: does ethanol take more energy make that produces?\nAnswer:')).toBe(true);
    expect(b.requests.map((r) => r.continuation)).toEqual([' no', ' yes']);
    expect(b.gold).toBe(0);
  });

  it('winogrande: partial scoring, option-filled prefixes share the suffix', () => {
    const [w] = first('winogrande');
    expect(w.requests).toEqual([
      { context: 'Sarah was a much better surgeon than Maria so Sarah', continuation: ' always got the easier cases.' },
      { context: 'Sarah was a much better surgeon than Maria so Maria', continuation: ' always got the easier cases.' },
    ]);
    expect(w.gold).toBe(1);
  });

  it('hellaswag: "{label}: {ctx_a} {ctx_b.capitalize()}" and preprocessed endings', () => {
    const [h0, h1] = first('hellaswag', 2);
    expect(h0.requests[3]).toEqual({ context: 'Roof shingle removal: A man is sitting on a roof. He', continuation: ' starts pulling up roofing on a roof.' });
    expect(h1.requests[0].context).toBe('Clean and jerk: A lady walks to a barbell. She bends down and grabs the pole. The lady');
    expect(h1.gold).toBe(3);
    // file line 3506 (idx 3505) still holds a WikiHow bracket span; the harness's regex removes it
    const h = first('hellaswag', 3506)[3505];
    expect(h.requests[0].context).toBe(
      'Family Life: How to entertain a toddler. Ask the toddler what he or she would like to do instead of doing what you would like to do.. Visit a site like to find loads of creative activities for toddlers and preschoolers.. Choose small, simple games like candy land or chutes and ladders.',
    );
  });

  it('primary metric: acc_norm where the harness reports it', () => {
    expect(TASK_NAMES.map(primaryMetric)).toEqual(['acc_norm', 'acc_norm', 'acc_norm', 'acc_norm', 'acc', 'acc', 'acc_norm']);
  });
});

describe('Python string semantics', () => {
  it('rstrip/strip use str.isspace (\\x1c-\\x1f, \\x85 yes; U+FEFF no)', () => {
    expect(pyRstrip('a \t\n\x1c\x85\u3000')).toBe('a');
    expect(pyRstrip('a\ufeff')).toBe('a\ufeff');
    expect(pyStrip('  a b \n')).toBe('a b');
  });
  it('capitalize lowers the rest; len counts code points', () => {
    expect(pyCapitalize('the Lady')).toBe('The lady');
    expect(pyCapitalize('')).toBe('');
    expect(pyLen('a😀b')).toBe(3);
  });
  it('hellaswag helpers', () => {
    expect(hellaswagPreprocess(' a [title] b [step] c  d ')).toBe('a. b c d');
    expect(hellaswagCapitalizeTail('A man sits. he')).toBe('A man sits. He');
    expect(hellaswagCapitalizeTail('A man sits! the Man')).toBe('A man sits! The man');
    expect(hellaswagCapitalizeTail('A man sits. He')).toBe('A man sits. He');
    expect(hellaswagCapitalizeTail('a man')).toBe('A man');
    expect(hellaswagCapitalizeTail('Ends here.')).toBe('Ends here.');
  });
});

describe('task loaders', () => {
  it('full files: the README row counts', () => {
    const counts = Object.fromEntries(TASK_NAMES.map((t) => [t, loadTask(t).length]));
    expect(counts).toEqual({ piqa: 1838, arc_easy: 2376, arc_challenge: 1172, hellaswag: 10042, winogrande: 1267, boolq: 3270, openbookqa: 500 });
  });

  it('parseTaskList', () => {
    expect(parseTaskList('boolq, piqa')).toEqual(['boolq', 'piqa']);
    expect(() => parseTaskList('piqa,mmlu')).toThrow(/unknown task "mmlu"/);
    expect(() => parseTaskList('piqa,piqa')).toThrow(/twice/);
    expect(() => parseTaskList('')).toThrow(UsageError);
  });

  it('bad files: FormatError naming the file and line', () => {
    const dir = tempDir();
    const put = (rel: string, text: string | Buffer) => {
      mkdirSync(join(dir, rel, '..'), { recursive: true });
      writeFileSync(join(dir, rel), text);
    };
    put(TASK_FILES.arc_easy, '{"query": "Question: q", "choices": ["a", "b"], "gold": 0}\n\n{"query": "Question: q", "choices": ["a", "b"], "gold": 2}\n');
    expect(() => loadTask('arc_easy', { dataDir: dir })).toThrow(/arc_easy\.jsonl: line 3: field "gold" must be an integer in \[0, 2\), got 2/);
    put(TASK_FILES.arc_easy, '{"query": "q", "choices": ["a", "b"], "gold": 0}\n');
    expect(() => loadTask('arc_easy', { dataDir: dir })).toThrow(/line 1: ARC query must start with "Question: "/);
    put(TASK_FILES.boolq, '{"query": "Passage: p\\nQuestion: q?", "choices": ["no", "yes"], "gold": 1}\n{not json\n');
    expect(() => loadTask('boolq', { dataDir: dir })).toThrow(/boolq\.jsonl: line 2: not valid JSON/);
    put(TASK_FILES.winogrande, '{"context_options": ["a"], "continuation": "b", "gold": 0}\n');
    expect(() => loadTask('winogrande', { dataDir: dir })).toThrow(/field "context_options" must be a list of 2 non-empty strings/);
    put(TASK_FILES.piqa, '{"goal": "g", "sol1": "a", "sol2": "b"}\n{"goal": "g", "sol1": "a", "sol2": "b"}\n');
    put('tasks/piqa/valid-labels.lst', '0\n');
    expect(() => loadTask('piqa', { dataDir: dir })).toThrow(/valid-labels\.lst: has 1 labels, .* has 2 documents/);
    put('tasks/piqa/valid-labels.lst', '0\n2\n');
    expect(() => loadTask('piqa', { dataDir: dir })).toThrow(/line 2: expected 0 or 1/);
    put(TASK_FILES.hellaswag, 'not gzip');
    expect(() => loadTask('hellaswag', { dataDir: dir })).toThrow(FormatError);
    put(TASK_FILES.hellaswag, gzipSync('{"activity_label": "x", "ctx": "c", "endings": ["a", "b", "c"], "label": 0}\n'));
    expect(() => loadTask('hellaswag', { dataDir: dir })).toThrow(/field "endings" must be a list of 4/);
    expect(() => loadTask('openbookqa', { dataDir: dir })).toThrow(FileError);
    expect(() => loadTask('piqa', { limit: 0 })).toThrow(UsageError);
  });
});
