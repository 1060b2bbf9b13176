// Small helpers shared by the benchmarks: statistics over repeated trials and aligned text tables.

export function median(xs: readonly number[]): number {
  return quantile(xs, 0.5);
}

/** Linear-interpolated quantile (q in [0, 1]); NaN for no samples. */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

export function fmt(x: number, digits = 1): string {
  if (!Number.isFinite(x)) return '-';
  return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export const fmtInt = (x: number): string => fmt(x, 0);
export const pct = (x: number, digits = 1): string => (Number.isFinite(x) ? `${fmt(x * 100, digits)} %` : '-');

export interface Table {
  title: string;
  head: string[];
  rows: string[][];
  /** lines printed under the table */
  notes?: string[];
}

/** One line of the final summary: a goal of an issue, what was measured, and whether it holds. */
export interface GoalRow {
  benchmark: string;
  goal: string;
  measured: string;
  /** true = met, false = not met, null = not measured / not applicable */
  met: boolean | null;
}

export interface BenchResult {
  tables: Table[];
  goals: GoalRow[];
}

const numeric = /^[-+]?[\d,.]+( ?(%|ns|ms|s|x|×|pps|Gbit\/s|Mbit\/s))?$/;

/** Renders a table as aligned text: numbers right-aligned, text left-aligned. */
export function renderTable(t: Table): string {
  const widths = t.head.map((h, i) => Math.max(h.length, ...t.rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (numeric.test(c) ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  const out = [t.title, '='.repeat(t.title.length), line(t.head), widths.map((w) => '-'.repeat(w)).join('  ')];
  for (const r of t.rows) out.push(line(r));
  for (const n of t.notes ?? []) out.push(`  ${n}`);
  return out.join('\n');
}

/** Renders a table as GitHub markdown. */
export function markdownTable(t: Table): string {
  const esc = (c: string) => c.replace(/\|/g, '\\|');
  const out = [`### ${t.title}`, '', `| ${t.head.map(esc).join(' | ')} |`, `|${t.head.map(() => '---').join('|')}|`];
  for (const r of t.rows) out.push(`| ${r.map(esc).join(' | ')} |`);
  if (t.notes?.length) out.push('', ...t.notes.map((n) => `- ${n}`));
  return out.join('\n');
}

export function verdict(met: boolean | null): string {
  return met === null ? 'n/a' : met ? 'MET' : 'NOT MET';
}

export function goalsTable(goals: readonly GoalRow[]): Table {
  return {
    title: 'Summary of goals',
    head: ['benchmark', 'goal', 'measured', 'result'],
    rows: goals.map((g) => [g.benchmark, g.goal, g.measured, verdict(g.met)]),
  };
}
