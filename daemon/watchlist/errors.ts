// Errors a watchlist can be refused with. Each issue names where it is (file and line when known,
// rule index and name, field) so an operator can fix the file without reading code.

export interface WatchlistIssue {
  /** index in `rules`, counting from 0; absent for file-level problems */
  rule?: number;
  /** the rule's `name`, when it has one */
  ruleName?: string;
  /** the field in the rule (or at top level) the problem is in */
  field?: string;
  /** line in the source text, counting from 1, when the rules came from text */
  line?: number;
  message: string;
}

export function formatIssue(issue: WatchlistIssue, source?: string): string {
  const where: string[] = [];
  if (source !== undefined) where.push(issue.line !== undefined ? `${source}:${issue.line}` : source);
  let subject = '';
  if (issue.rule !== undefined) {
    subject = `rule ${issue.rule}`;
    if (issue.ruleName !== undefined) subject += ` ${JSON.stringify(issue.ruleName)}`;
  }
  if (issue.field !== undefined) subject += subject ? ` (${issue.field})` : `(${issue.field})`;
  if (subject) where.push(subject);
  return where.length ? `${where.join(': ')}: ${issue.message}` : issue.message;
}

/** A watchlist that was refused. `message` lists every issue, one a line. */
export class WatchlistError extends Error {
  override readonly name = 'WatchlistError';
  constructor(readonly issues: readonly WatchlistIssue[], readonly source?: string) {
    super(issues.map((i) => formatIssue(i, source)).join('\n'));
  }
}
