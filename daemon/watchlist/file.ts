// A watchlist kept in sync with a file. The directory is watched rather than the file, because
// editors and Kubernetes ConfigMap volumes replace files by rename (a ConfigMap swaps a `..data`
// symlink, so the event does not even name our file): any event in the directory triggers a
// debounced re-read, and an unchanged content is ignored.
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import { WatchlistError } from './errors';
import { Watchlist } from './matcher';
import { parseWatchlistText } from './rules';
import { WatchlistStore, type WatchlistListeners } from './store';

export interface WatchlistFileOptions extends WatchlistListeners {
  /** quiet time after the last directory event before re-reading; default 200 ms */
  debounceMs?: number;
}

export class WatchlistFile extends WatchlistStore {
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** the last text read, good or bad, so that an unchanged file is neither re-applied nor re-reported */
  private lastText: string | undefined;
  private readonly debounceMs: number;

  constructor(readonly path: string, options: WatchlistFileOptions = {}) {
    super(options);
    this.debounceMs = options.debounceMs ?? 200;
  }

  /**
   * Reads the file and puts its rules in force. Throws WatchlistError if it cannot be read or is
   * invalid (at start-up the daemon should refuse to run, as the reference does).
   */
  load(): Watchlist {
    const text = this.read();
    const next = new Watchlist(parseWatchlistText(text, this.path));
    this.lastText = text;
    this.install(next, 'file');
    return next;
  }

  /**
   * Re-reads the file now. Returns true if new rules are in force; on a bad or unreadable file
   * the previous rules stay and the error goes to onError.
   */
  reload(): boolean {
    let text: string | undefined;
    try {
      text = this.read();
      if (text === this.lastText) return false;
      const next = new Watchlist(parseWatchlistText(text, this.path));
      this.lastText = text;
      this.install(next, 'file');
      return true;
    } catch (err) {
      this.lastText = text;
      this.listeners.onError?.(err instanceof WatchlistError ? err : new WatchlistError([{ message: String(err) }], this.path));
      return false;
    }
  }

  /** Starts following changes of the file. */
  watch(): void {
    if (this.watcher) return;
    this.watcher = watch(dirname(this.path), { persistent: true }, () => this.schedule());
    this.watcher.on('error', (err) => {
      this.listeners.onError?.(new WatchlistError([{ message: `cannot watch the directory any more: ${err.message}` }], this.path));
    });
  }

  /** Stops watching; the rules in force stay. */
  close(): void {
    this.watcher?.close();
    this.watcher = undefined;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.reload();
    }, this.debounceMs);
  }

  private read(): string {
    try {
      return readFileSync(this.path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
      throw new WatchlistError([{ message: `cannot read the watchlist: ${why}` }], this.path);
    }
  }
}
