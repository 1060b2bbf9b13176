// Locates values inside a JSON text by position, so the installer can splice our plugin entry into
// somebody else's conflist without re-serialising it: every byte outside our entry stays as it was
// (key order, number spelling, big integers, indentation, a trailing newline or its absence).
// The text must already be valid JSON (callers JSON.parse it first); this scanner only finds spans.

export interface Span {
  /** index of the value's first character */
  start: number;
  /** index just past the value's last character */
  end: number;
}

const WS = new Set([' ', '\t', '\n', '\r']);

export function skipWs(text: string, i: number): number {
  while (i < text.length && WS.has(text[i])) i++;
  return i;
}

/** End (exclusive) of the string literal that opens at `i`. */
function stringEnd(text: string, i: number): number {
  for (let j = i + 1; j < text.length; j++) {
    const c = text[j];
    if (c === '\\') j++;
    else if (c === '"') return j + 1;
  }
  throw new SyntaxError('unterminated string');
}

/** End (exclusive) of the JSON value that starts at `i` (no leading whitespace). */
export function valueEnd(text: string, i: number): number {
  const c = text[i];
  if (c === '"') return stringEnd(text, i);
  if (c === '{' || c === '[') {
    let depth = 0;
    for (let j = i; j < text.length; j++) {
      const d = text[j];
      if (d === '"') {
        j = stringEnd(text, j) - 1;
      } else if (d === '{' || d === '[') {
        depth++;
      } else if (d === '}' || d === ']') {
        depth--;
        if (depth === 0) return j + 1;
      }
    }
    throw new SyntaxError('unterminated object or array');
  }
  // number, true, false, null: runs until a delimiter
  let j = i;
  while (j < text.length && !WS.has(text[j]) && text[j] !== ',' && text[j] !== '}' && text[j] !== ']') j++;
  if (j === i) throw new SyntaxError(`unexpected character at ${i}`);
  return j;
}

/** Span of the value of `key` in the top-level object; the last one wins, as in JSON.parse and Go. */
export function topLevelValue(text: string, key: string): Span | undefined {
  let i = skipWs(text, 0);
  if (text[i] !== '{') return undefined;
  i = skipWs(text, i + 1);
  let found: Span | undefined;
  while (i < text.length && text[i] !== '}') {
    const kEnd = stringEnd(text, i);
    const k = JSON.parse(text.slice(i, kEnd)) as string;
    i = skipWs(text, kEnd);
    if (text[i] !== ':') throw new SyntaxError(`expected ':' at ${i}`);
    const vStart = skipWs(text, i + 1);
    const vEnd = valueEnd(text, vStart);
    if (k === key) found = { start: vStart, end: vEnd };
    i = skipWs(text, vEnd);
    if (text[i] === ',') i = skipWs(text, i + 1);
  }
  return found;
}

/** Spans of the elements of the array whose '[' is at `open`. */
export function arrayElements(text: string, open: number): Span[] {
  if (text[open] !== '[') throw new SyntaxError(`expected '[' at ${open}`);
  const out: Span[] = [];
  let i = skipWs(text, open + 1);
  while (i < text.length && text[i] !== ']') {
    const end = valueEnd(text, i);
    out.push({ start: i, end });
    i = skipWs(text, end);
    if (text[i] === ',') i = skipWs(text, i + 1);
  }
  return out;
}

/** The whitespace right before `index` (what separates an element from its '[' or ','). */
export function leadingWs(text: string, index: number): string {
  let i = index;
  while (i > 0 && WS.has(text[i - 1])) i--;
  return text.slice(i, index);
}

/** Indentation of the line that holds `index`. */
export function lineIndent(text: string, index: number): string {
  const lineStart = text.lastIndexOf('\n', index - 1) + 1;
  let i = lineStart;
  while (i < text.length && (text[i] === ' ' || text[i] === '\t')) i++;
  return text.slice(lineStart, i);
}
