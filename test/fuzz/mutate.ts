/**
 * fast-check arbitraries that turn a valid set of files into hostile ones: byte-level damage
 * (bit flips, truncation, overwrites, inserts, deletions, invalid UTF-8), length fields set to
 * extremes (a 2^60 header length), and structure-aware JSON edits (a random node replaced by a
 * huge, negative, non-finite or mistyped value, an offset nudged into overlap, nesting 10^5 deep).
 * A mutation is plain data, so a failing input can be shrunk, printed and stored.
 */
import fc from 'fast-check';

/** The files of one fuzz input, by name (one entry for single-file readers). */
export type FileSet = Record<string, Uint8Array>;

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: false });

/** Values that break readers: sizes past any file, negatives, non-integers, wrong types. */
const EVIL_VALUES: unknown[] = [
  null, true, false, 0, -1, 1, 0.5, -0, 7, 31, 33, 1e15, 1e308, -1e308, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, 2 ** 60, 2 ** 64,
  '', 'x', 'F32', 'F16', 'BF16', 'U8', 'I64', 'F8_E4M3', 'BPE', 'llama3', 'linear', 'gptq', 'rtn', 'lieq', 'lieq-packed/1',
  '\u0000', '\ud800', '../etc/passwd', 'a'.repeat(300),
  [], [0], [-1], [0, 0], [1, 0], [0, 2 ** 60], [1e15, 1e15], [2 ** 53, 2 ** 53 + 2], [[0]], ['x'],
  {}, { toString: 1 }, { valueOf: 1, toString: 1 }, { __proto__: null, a: 1 }, { type: { toString: 1 } },
];
/** Raw JSON texts that JSON.stringify cannot produce: non-finite after parsing, -0, tiny. */
const RAW_VALUES = ['1e400', '-1e400', '-0', '1e-400', '123456789012345678901234567890', '0.1e1'];

export type Mutation =
  | { kind: 'flip'; at: number; mask: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'overwrite'; at: number; bytes: number[] }
  | { kind: 'insert'; at: number; bytes: number[] }
  | { kind: 'delete'; at: number; len: number }
  | { kind: 'u64'; at: number; value: string }
  | { kind: 'json'; node: number; op: 'set' | 'delete' | 'raw' | 'nudge' | 'nest' | 'swap'; value: number; depth: number };

/** Where a file's JSON lives: the whole file, or a safetensors header after its length prefix. */
export type JsonLocator = (bytes: Uint8Array) => { start: number; end: number } | null;

export const wholeFileJson: JsonLocator = (b) => ({ start: 0, end: b.length });
export const safetensorsHeaderJson: JsonLocator = (b) => {
  if (b.length < 8) return null;
  const n = Number(Buffer.from(b.buffer, b.byteOffset, 8).readBigUInt64LE(0));
  return n <= b.length - 8 ? { start: 8, end: 8 + n } : null;
};

const pos = fc.nat({ max: 1 << 30 });
const byteList = fc.oneof(
  fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 16 }),
  // invalid UTF-8: lone continuation, overlong, surrogate, truncated sequences
  fc.constantFrom([0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0x80], [0xf8, 0x88, 0x80, 0x80, 0x80]),
  fc.constantFrom(...['"', '{', '[', ']', '}', ',', ':', '\\', '1e400', '-1', 'null', '[[[[[['].map((s) => [...enc.encode(s)])),
);
const u64Extremes = fc.constantFrom(
  '0', '1', '2', '7', '8', '9', '255', '65536', String(2 ** 31), String(2 ** 32), String(100 * 2 ** 20 + 1),
  String(2n ** 53n + 1n), String(2n ** 60n), String(2n ** 63n), String(2n ** 64n - 1n),
);

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: pos, mask: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: pos }),
  fc.record({ kind: fc.constant('overwrite' as const), at: pos, bytes: byteList }),
  fc.record({ kind: fc.constant('insert' as const), at: pos, bytes: byteList }),
  fc.record({ kind: fc.constant('delete' as const), at: pos, len: fc.integer({ min: 1, max: 64 }) }),
  fc.record({ kind: fc.constant('u64' as const), at: fc.constantFrom(0, 0, 0, 1 << 30), value: u64Extremes }),
  // JSON edits are the most productive: weight them up.
  ...Array.from({ length: 4 }, () =>
    fc.record({
      kind: fc.constant('json' as const),
      node: pos,
      op: fc.constantFrom('set' as const, 'set' as const, 'delete' as const, 'raw' as const, 'nudge' as const, 'nest' as const, 'swap' as const),
      value: fc.nat({ max: 1 << 20 }),
      depth: fc.constantFrom(10, 1000, 100_000),
    }),
  ),
) as fc.Arbitrary<Mutation>;

/** A mutation plan: which file, which edits (applied in order). */
export interface MutationPlan {
  file: number;
  edits: Mutation[];
}

export const planArb: fc.Arbitrary<MutationPlan> = fc.record({
  file: fc.nat({ max: 15 }),
  edits: fc.array(mutationArb, { minLength: 1, maxLength: 4 }),
});

/** Apply a plan to a copy of `seed`; `json` says where each file's JSON is (if any). */
export function applyPlan(seed: FileSet, plan: MutationPlan, json: Record<string, JsonLocator | undefined>): FileSet {
  const names = Object.keys(seed);
  const name = names[plan.file % names.length];
  let bytes = seed[name];
  for (const m of plan.edits) bytes = applyMutation(bytes, m, json[name]);
  return { ...seed, [name]: bytes };
}

function applyMutation(b: Uint8Array, m: Mutation, json: JsonLocator | undefined): Uint8Array {
  const at = (p: number, extra = 0) => (b.length + extra === 0 ? 0 : p % (b.length + extra));
  switch (m.kind) {
    case 'flip': {
      if (b.length === 0) return b;
      const c = b.slice();
      c[at(m.at)] ^= m.mask;
      return c;
    }
    case 'truncate':
      return b.slice(0, at(m.at));
    case 'overwrite': {
      const c = b.slice();
      const p = at(m.at);
      m.bytes.forEach((x, i) => {
        if (p + i < c.length) c[p + i] = x;
      });
      return c;
    }
    case 'insert': {
      const p = at(m.at, 1);
      return concat(b.subarray(0, p), Uint8Array.from(m.bytes), b.subarray(p));
    }
    case 'delete': {
      const p = at(m.at);
      return concat(b.subarray(0, p), b.subarray(p + m.len));
    }
    case 'u64': {
      if (b.length < 8) return b;
      const c = b.slice();
      const p = m.at === 0 ? 0 : at(m.at) & ~7;
      if (p + 8 <= c.length) Buffer.from(c.buffer, c.byteOffset, c.byteLength).writeBigUInt64LE(BigInt(m.value), p);
      return c;
    }
    case 'json':
      if (!json) return b;
      try {
        return mutateJson(b, m, json);
      } catch {
        return b; // a node nested too deep to copy or re-serialise: keep the input as it is
      }
  }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(Buffer.concat(parts));
}

type Path = (string | number)[];

/** Node paths of a parsed JSON value (breadth-first; capped in count and depth, so cheap). */
function nodePaths(root: unknown): Path[] {
  const out: Path[] = [];
  const queue: { v: unknown; p: Path }[] = [{ v: root, p: [] }];
  for (let head = 0; head < queue.length && out.length < 5000; head++) {
    const { v, p } = queue[head];
    out.push(p);
    if (p.length >= 32) continue;
    if (Array.isArray(v)) v.forEach((x, i) => queue.push({ v: x, p: [...p, i] }));
    else if (v && typeof v === 'object') for (const k of Object.keys(v)) queue.push({ v: (v as Record<string, unknown>)[k], p: [...p, k] });
  }
  return out;
}

function mutateJson(b: Uint8Array, m: Extract<Mutation, { kind: 'json' }>, locate: JsonLocator): Uint8Array {
  const range = locate(b);
  if (!range) return b;
  let root: unknown;
  try {
    root = JSON.parse(dec.decode(b.subarray(range.start, range.end)));
  } catch {
    return b;
  }
  const paths = nodePaths(root);
  const path = paths[m.node % paths.length];
  const marker = '\u0001LIEQ_RAW\u0001';
  let raw: string | null = null;
  const get = (p: Path): unknown => p.reduce<unknown>((o, k) => (o as Record<string | number, unknown>)?.[k], root);
  let replacement: unknown;
  switch (m.op) {
    case 'set':
      replacement = EVIL_VALUES[m.value % EVIL_VALUES.length];
      break;
    case 'raw':
      raw = RAW_VALUES[m.value % RAW_VALUES.length];
      replacement = marker;
      break;
    case 'nest':
      raw = m.value % 2 ? '['.repeat(m.depth) + ']'.repeat(m.depth) : '{"a":'.repeat(m.depth) + '1' + '}'.repeat(m.depth);
      replacement = marker;
      break;
    case 'nudge': {
      // Numbers: move an offset/size by a little (overlaps, gaps, off-by-one), or far.
      const v = get(path);
      const deltas = [1, -1, 8, -8, 32, -32, 2 ** 40, -(2 ** 40)];
      const d = deltas[m.value % deltas.length];
      replacement = typeof v === 'number' ? v + d : Array.isArray(v) ? v.map((x) => (typeof x === 'number' ? x + d : x)) : d;
      break;
    }
    case 'swap': {
      // Replace this node with another node's value (e.g. one tensor's offsets onto another's).
      replacement = structuredClone(get(paths[m.value % paths.length]));
      break;
    }
    case 'delete':
      replacement = undefined;
      break;
  }
  if (path.length === 0) {
    if (replacement === undefined) return concat(b.subarray(0, range.start), b.subarray(range.end));
    root = replacement;
  } else {
    const parent = get(path.slice(0, -1)) as Record<string | number, unknown>;
    const key = path[path.length - 1];
    if (replacement === undefined) {
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete parent[key];
    } else {
      parent[key] = replacement;
    }
  }
  let text: string;
  try {
    text = JSON.stringify(root);
  } catch {
    return b; // already nested too deep to re-serialise: keep the input as it is
  }
  if (raw !== null) text = text.replace(JSON.stringify(marker), raw);
  const body = enc.encode(text);
  if (locate === safetensorsHeaderJson) {
    // Keep the length prefix consistent so the edit reaches the header parser.
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(body.length));
    return concat(len, body, b.subarray(range.end));
  }
  return concat(b.subarray(0, range.start), body, b.subarray(range.end));
}
