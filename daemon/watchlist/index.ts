// The watchlist: which flows get INT reports. See README "Watchlist" for the file format.
export { parseCidr, parsePortRange, type Prefix, type PortRange } from './addresses';
export { WatchlistError, formatIssue, type WatchlistIssue } from './errors';
export { WatchlistFile, type WatchlistFileOptions } from './file';
export { Watchlist, WatchlistMatch } from './matcher';
export { prefilterEntries, type PrefilterEntries, type PrefilterEntry } from './prefilter';
export { ANY_PROTOCOL, protocolNumber } from './protocols';
export {
  parseWatchlistDocument,
  parseWatchlistText,
  rulesToDocument,
  type WatchlistDocument,
  type WatchlistRule,
  type WatchlistRuleDocument,
} from './rules';
export { watchlistSchema } from './schema';
export { WatchlistStore, type WatchlistListeners, type WatchlistOrigin } from './store';
