// Holds the watchlist in force and swaps it as a whole, so the hot path only ever reads one
// immutable Watchlist. A refused replacement leaves the current one untouched.
import { WatchlistError } from './errors';
import { Watchlist } from './matcher';
import { parseWatchlistDocument, parseWatchlistText } from './rules';

/** Where the watchlist in force came from. */
export type WatchlistOrigin = 'initial' | 'file' | 'api';

export interface WatchlistListeners {
  /** a new watchlist is in force */
  onChange?: (watchlist: Watchlist, origin: WatchlistOrigin) => void;
  /** a replacement was refused; the previous watchlist stays in force */
  onError?: (error: WatchlistError) => void;
}

export class WatchlistStore {
  private watchlist: Watchlist = Watchlist.empty;
  private originOfCurrent: WatchlistOrigin = 'initial';

  constructor(protected readonly listeners: WatchlistListeners = {}) {}

  /** The watchlist in force. Read it once per batch of events, not once per event. */
  get current(): Watchlist {
    return this.watchlist;
  }

  get origin(): WatchlistOrigin {
    return this.originOfCurrent;
  }

  /**
   * Replaces the rules from a request body (for PUT /v1/watchlist): YAML or JSON text, or an
   * already parsed JSON value. Throws WatchlistError (and keeps the current rules) if refused.
   * The replacement lives in memory: a later change of the watched file replaces it in turn.
   */
  replace(body: string | unknown, source = 'request body'): Watchlist {
    let next: Watchlist;
    try {
      next = new Watchlist(typeof body === 'string' ? parseWatchlistText(body, source) : parseWatchlistDocument(body, source));
    } catch (err) {
      if (err instanceof WatchlistError) this.listeners.onError?.(err);
      throw err;
    }
    this.install(next, 'api');
    return next;
  }

  protected install(next: Watchlist, origin: WatchlistOrigin): void {
    this.watchlist = next;
    this.originOfCurrent = origin;
    this.listeners.onChange?.(next, origin);
  }
}
