// From watchlist text (YAML or JSON) or an already parsed document to checked, normalised rules.
// Two passes: the ajv schema for the document's shape, then per-rule checks whose messages can
// quote the bad value. Every problem found is reported, not just the first.
import type { ErrorObject } from 'ajv';
import { LineCounter, parseDocument, type Document } from 'yaml';
import { formatPortRange, parseCidr, parsePortRange, type PortRange, type Prefix } from './addresses';
import { WatchlistError, type WatchlistIssue } from './errors';
import { ANY_PROTOCOL, PROTOCOL_NAMES, hasPorts, onlyFamily, protocolLabel, protocolNumber } from './protocols';
import { MAX_RULES, validateWatchlistShape } from './schema';

/** One checked rule. Empty port lists match any port. */
export interface WatchlistRule {
  name?: string;
  /** an IP protocol number, or ANY_PROTOCOL */
  protocol: number;
  srcAddr: readonly Prefix[];
  dstAddr: readonly Prefix[];
  srcPort: readonly PortRange[];
  dstPort: readonly PortRange[];
}

/** A rule written back in the file's own format (for GET /v1/watchlist and logs). */
export interface WatchlistRuleDocument {
  name?: string;
  protocol: string | number;
  'src-addr': string | string[];
  'dst-addr': string | string[];
  'src-port'?: number | string | (number | string)[];
  'dst-port'?: number | string | (number | string)[];
}

export interface WatchlistDocument {
  rules: WatchlistRuleDocument[];
}

type Path = (string | number)[];
/** Maps a path in the document to a source line, when the document came from text. */
type LineOf = (path: Path) => number | undefined;

const RULE_FIELDS = 'name, protocol, src-addr, dst-addr, src-port, dst-port';

/** Parses YAML (JSON is YAML too). `source` names the text in messages, e.g. the file path. */
export function parseWatchlistText(text: string, source = 'watchlist'): WatchlistRule[] {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    throw new WatchlistError(
      doc.errors.map((e) => ({
        line: lineCounter.linePos(e.pos[0]).line,
        message: `not valid YAML: ${e.message.split('\n')[0]}`,
      })),
      source,
    );
  }
  return parseWatchlistDocument(doc.toJS(), source, lineFinder(doc, lineCounter));
}

/** Checks a parsed document (e.g. a JSON request body). An empty document means no rules. */
export function parseWatchlistDocument(document: unknown, source?: string, lineOf: LineOf = () => undefined): WatchlistRule[] {
  const input = document ?? {}; // an empty file: the reference reads it as no rules
  const issues: WatchlistIssue[] = [];
  if (!validateWatchlistShape(input)) {
    issues.push(...shapeIssues(validateWatchlistShape.errors ?? [], input, lineOf));
    // Without a well-formed document there are no rules to look into.
    if (issues.some((i) => i.rule === undefined)) throw new WatchlistError(issues, source);
  }
  const misshapen = new Set(issues.map((i) => i.rule));
  const rawRules = ((input as { rules?: unknown[] | null }).rules ?? []) as Record<string, unknown>[];
  const rules = rawRules.map((raw, index) => (misshapen.has(index) ? undefined : checkRule(raw, index, issues, lineOf)));
  if (issues.length > 0) {
    issues.sort((a, b) => (a.rule ?? -1) - (b.rule ?? -1) || (a.line ?? 0) - (b.line ?? 0));
    throw new WatchlistError(issues, source);
  }
  return rules as WatchlistRule[];
}

/** The rules as a document that parseWatchlistDocument accepts back unchanged. */
export function rulesToDocument(rules: readonly WatchlistRule[]): WatchlistDocument {
  const one = <T>(list: T[]): T | T[] => (list.length === 1 ? list[0] : list);
  return {
    rules: rules.map((r) => {
      const out: WatchlistRuleDocument = {
        ...(r.name !== undefined ? { name: r.name } : {}),
        protocol: protocolLabel(r.protocol),
        'src-addr': one(r.srcAddr.map((p) => p.text)),
        'dst-addr': one(r.dstAddr.map((p) => p.text)),
      };
      if (r.srcPort.length > 0) out['src-port'] = one(r.srcPort.map(formatPortRange));
      if (r.dstPort.length > 0) out['dst-port'] = one(r.dstPort.map(formatPortRange));
      return out;
    }),
  };
}

function checkRule(raw: Record<string, unknown>, index: number, issues: WatchlistIssue[], lineOf: LineOf): WatchlistRule {
  const name = typeof raw.name === 'string' ? raw.name : undefined;
  const report = (field: string, message: string, at: Path = [field]): void => {
    issues.push({ rule: index, ruleName: name, field, line: lineOf(['rules', index, ...at]), message });
  };

  let protocol = ANY_PROTOCOL;
  let protocolKnown = true;
  if (raw.protocol !== undefined) {
    const value = raw.protocol as string | number;
    const parsed = protocolNumber(value);
    if (parsed === undefined) {
      protocolKnown = false;
      report('protocol', `${JSON.stringify(value)} is not a protocol; use ${PROTOCOL_NAMES}`);
    } else protocol = parsed;
  }

  const prefixes = (field: 'src-addr' | 'dst-addr'): Prefix[] => {
    const out: Prefix[] = [];
    asList(raw[field] as string | string[]).forEach((text, i, all) => {
      const prefix = parseCidr(text);
      const at = all.length > 1 || Array.isArray(raw[field]) ? [field, i] : [field];
      if (prefix) out.push(prefix);
      else if (!text.includes('/') && parseCidr(`${text}/0`)) report(field, `${JSON.stringify(text)} is not a CIDR (add /32 or /128 for one address)`, at);
      else report(field, `${JSON.stringify(text)} is not a CIDR`, at);
    });
    return out;
  };
  const srcAddr = prefixes('src-addr');
  const dstAddr = prefixes('dst-addr');

  const ports = (field: 'src-port' | 'dst-port'): PortRange[] => {
    if (raw[field] === undefined) return [];
    if (protocolKnown && (protocol === ANY_PROTOCOL || !hasPorts(protocol))) {
      report(field, `ports need protocol TCP, UDP or SCTP, not ${protocolLabel(protocol)}`);
      return [];
    }
    const out: PortRange[] = [];
    asList(raw[field] as string | number | (string | number)[]).forEach((value, i) => {
      const at = Array.isArray(raw[field]) ? [field, i] : [field];
      const range = parsePortRange(value);
      if (range === 'reversed') report(field, `${JSON.stringify(value)} is a reversed range; write the lower port first`, at);
      else if (range === undefined) report(field, `${JSON.stringify(value)} is not a port (0-65535) or a range like "8000-8080"`, at);
      else out.push(range);
    });
    return out;
  };
  const srcPort = ports('src-port');
  const dstPort = ports('dst-port');

  // Rules that can never match are almost always typos; refuse them rather than stay silent.
  if (protocolKnown && srcAddr.length > 0 && dstAddr.length > 0) {
    const srcFamilies = families(srcAddr);
    const common = families(dstAddr).filter((f) => srcFamilies.includes(f));
    const only = onlyFamily(protocol);
    if (common.length === 0) {
      report('dst-addr', `no address family in common with src-addr (IPv${srcFamilies.join('/IPv')} against IPv${families(dstAddr).join('/IPv')}); the rule can never match`);
    } else if (only !== undefined && !common.includes(only)) {
      report('protocol', `${protocolLabel(protocol)} is IPv${only}-only but the rule's addresses are IPv${common.join('/IPv')}; the rule can never match`);
    }
  }

  return { ...(name !== undefined ? { name } : {}), protocol, srcAddr, dstAddr, srcPort, dstPort };
}

function asList<T>(value: T | T[]): T[] {
  return Array.isArray(value) ? value : [value];
}

function families(prefixes: readonly Prefix[]): (4 | 6)[] {
  return [...new Set(prefixes.map((p) => p.family))].sort();
}

const TYPE_WORDS: Record<string, string> = {
  string: 'a string',
  integer: 'an integer',
  array: 'a list',
  object: 'a mapping',
  null: 'empty',
};

function shapeIssues(errors: ErrorObject[], document: unknown, lineOf: LineOf): WatchlistIssue[] {
  const issues: WatchlistIssue[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    const path: Path = e.instancePath
      .split('/')
      .slice(1)
      .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
      .map((s, i) => (i === 1 && /^\d+$/.test(s) ? Number(s) : s));
    const issue = describeShapeError(e, path, document);
    // An unknown field is best shown at its own line, not its rule's.
    issue.line = lineOf(e.keyword === 'additionalProperties' ? [...path, issue.field as string] : path);
    const key = JSON.stringify(issue);
    if (!seen.has(key)) issues.push(issue), seen.add(key);
  }
  return issues;
}

function describeShapeError(e: ErrorObject, path: Path, document: unknown): WatchlistIssue {
  const inRule = path[0] === 'rules' && typeof path[1] === 'number';
  const issue: Omit<WatchlistIssue, 'message'> = {};
  if (inRule) {
    issue.rule = path[1] as number;
    const rules = (document as { rules: unknown[] }).rules;
    const name = (rules[issue.rule] as { name?: unknown } | null)?.name;
    if (typeof name === 'string') issue.ruleName = name;
  }
  const field = inRule ? (path[2] as string | undefined) : (path[0] as string | undefined);
  if (field !== undefined) issue.field = field;
  const item = inRule ? path[3] : undefined;
  const subject = item !== undefined ? `item ${item} ` : '';

  switch (e.keyword) {
    case 'type': {
      const types = ([] as string[]).concat(e.params.type as string | string[]).filter((t) => t !== 'null');
      const words = types.map((t) => TYPE_WORDS[t] ?? t).join(' or ');
      if (path.length === 0) return { ...issue, message: 'the document must be a mapping with a "rules" list' };
      if (inRule && path.length === 2) return { ...issue, message: `must be a mapping with fields ${RULE_FIELDS}` };
      return { ...issue, message: `${subject}must be ${words}` };
    }
    case 'additionalProperties':
      return {
        ...issue,
        field: e.params.additionalProperty as string,
        message: inRule ? `unknown field; a rule has ${RULE_FIELDS}` : 'unknown field; the document has only "rules"',
      };
    case 'required':
      return {
        ...issue,
        field: e.params.missingProperty as string,
        message: 'missing; use "0.0.0.0/0" or "::/0" (or both, as a list) to match any address',
      };
    case 'minItems':
      return { ...issue, message: 'must not be an empty list' };
    case 'minLength':
      return { ...issue, message: 'must not be empty' };
    case 'maxLength':
      return { ...issue, message: `must be at most ${e.params.limit} characters` };
    case 'maxItems':
      return { ...issue, message: `too many rules; at most ${MAX_RULES}` };
    default:
      return { ...issue, message: `${subject}${e.message ?? 'is not valid'}` };
  }
}

function lineFinder(doc: Document, lineCounter: LineCounter): LineOf {
  return (path) => {
    // A missing field has no node: fall back to the nearest enclosing one (its rule).
    for (let n = path.length; n >= 0; n--) {
      const node = doc.getIn(path.slice(0, n), true) as { range?: [number, number, number] } | undefined;
      if (node && typeof node === 'object' && node.range) return lineCounter.linePos(node.range[0]).line;
    }
    return undefined;
  };
}
