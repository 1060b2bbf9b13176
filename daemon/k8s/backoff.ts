// Exponential backoff with jitter for reconnecting to the API server: the delay doubles from
// `baseMs` up to `maxMs`, and each delay is drawn from [d/2, d] so that many nodes restarting at
// once (an API server upgrade) do not come back in lockstep.

export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
  /** [0,1) source, injectable for tests */
  random?: () => number;
}

export class Backoff {
  private attempt = 0;
  private readonly random: () => number;

  constructor(private readonly opts: BackoffOptions) {
    if (!(opts.baseMs > 0) || !(opts.maxMs >= opts.baseMs)) {
      throw new Error(`backoff: need 0 < baseMs <= maxMs (got ${opts.baseMs}, ${opts.maxMs})`);
    }
    this.random = opts.random ?? Math.random;
  }

  /** The delay before the next attempt; each call counts as one more failure. */
  next(): number {
    const ceiling = Math.min(this.opts.maxMs, this.opts.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.round(ceiling / 2 + (this.random() * ceiling) / 2);
  }

  reset(): void {
    this.attempt = 0;
  }

  get failures(): number {
    return this.attempt;
  }
}
