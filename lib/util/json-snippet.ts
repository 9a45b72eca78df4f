/**
 * A short rendering of an untrusted JSON value for error messages that never throws.
 * JSON.stringify and String() are not safe on hostile input: a value nested 10^5 deep
 * overflows the stack (RangeError) and {"toString": 1} cannot be converted (TypeError), so a
 * reader quoting a bad field with them would crash instead of naming the problem.
 * For primitives and small arrays/objects the text equals JSON.stringify's.
 */
const MAX_ITEMS = 8;
const MAX_DEPTH = 3;
const MAX_STRING = 80;

export function jsonSnippet(value: unknown, maxLength = 120): string {
  const text = render(value, MAX_DEPTH);
  return text.length > maxLength ? `${text.slice(0, maxLength - 1)}…` : text;
}

function render(v: unknown, depth: number): string {
  if (v === undefined) return 'undefined';
  if (v === null || typeof v === 'boolean') return String(v);
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : 'null';
  if (typeof v === 'string') return JSON.stringify(v.length > MAX_STRING ? `${v.slice(0, MAX_STRING)}…` : v);
  if (Array.isArray(v)) {
    if (depth === 0) return v.length ? '[…]' : '[]';
    const items = v.slice(0, MAX_ITEMS).map((x) => render(x, depth - 1));
    if (v.length > MAX_ITEMS) items.push('…');
    return `[${items.join(',')}]`;
  }
  if (typeof v === 'object') {
    const keys = Object.keys(v as object);
    if (depth === 0) return keys.length ? '{…}' : '{}';
    const items = keys.slice(0, MAX_ITEMS).map((k) => `${JSON.stringify(k)}:${render((v as Record<string, unknown>)[k], depth - 1)}`);
    if (keys.length > MAX_ITEMS) items.push('…');
    return `{${items.join(',')}}`;
  }
  return typeof v;
}
