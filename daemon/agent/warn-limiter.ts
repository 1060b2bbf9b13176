// Rate limit for warnings that would otherwise repeat on every reconcile (a repair failing every
// 30 s, a spool that cannot be read): at most one line per key per interval. The lines skipped
// meanwhile are counted, reported on the next line of that key and exposed as a metric.

export interface WarnLogger {
  warn(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export const DEFAULT_WARN_INTERVAL_MS = 10 * 60_000;

export class WarnLimiter {
  /** warnings not logged because their key had one within the interval */
  suppressed = 0;
  private readonly last = new Map<string, { at: number; skipped: number }>();

  constructor(
    private readonly log: WarnLogger,
    private readonly intervalMs = DEFAULT_WARN_INTERVAL_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Logs at warn level unless `key` warned less than the interval ago; returns whether it logged. */
  warn(key: string, fields: object, msg: string): boolean {
    const t = this.now();
    const seen = this.last.get(key);
    if (seen && t - seen.at < this.intervalMs) {
      seen.skipped++;
      this.suppressed++;
      this.log.debug({ ...fields, key }, msg); // still visible at debug level
      return false;
    }
    const skipped = seen?.skipped ?? 0;
    this.last.set(key, { at: t, skipped: 0 });
    this.log.warn(skipped > 0 ? { ...fields, suppressedSinceLast: skipped } : fields, msg);
    return true;
  }

  /** The condition behind `key` is over: its next warning is logged at once. */
  clear(key: string): void {
    this.last.delete(key);
  }
}
