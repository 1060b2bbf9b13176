// A compact view of the watchlist for a future kernel pre-filter (two BPF LPM tries keyed by
// protocol + address, one for sources and one for destinations). It is a necessary condition
// only: a tuple can match a rule just if its source is covered by a source entry and its
// destination by a destination entry of the same protocol (or of ANY_PROTOCOL). Ports and the
// pairing of source with destination stay with the user-space matcher. The kernel would have to
// test both the post-NAT and the pre-NAT tuple, as the matcher does.
import type { Prefix } from './addresses';
import { ANY_PROTOCOL } from './protocols';
import type { WatchlistRule } from './rules';

export interface PrefilterEntry {
  /** an IP protocol number, or ANY_PROTOCOL */
  protocol: number;
  family: 4 | 6;
  /** network address bytes (4 or 16) */
  bytes: readonly number[];
  length: number;
  /** e.g. "10.68.235.0/24" */
  prefix: string;
}

export interface PrefilterEntries {
  src: PrefilterEntry[];
  dst: PrefilterEntry[];
}

export function prefilterEntries(rules: readonly WatchlistRule[]): PrefilterEntries {
  return {
    src: minimise(rules.flatMap((r) => r.srcAddr.map((p) => entry(r.protocol, p)))),
    dst: minimise(rules.flatMap((r) => r.dstAddr.map((p) => entry(r.protocol, p)))),
  };
}

function entry(protocol: number, p: Prefix): PrefilterEntry {
  return { protocol, family: p.family, bytes: p.bytes, length: p.length, prefix: p.text };
}

/** Drops duplicates and entries that a broader entry already covers; keeps first-seen order. */
function minimise(entries: PrefilterEntry[]): PrefilterEntry[] {
  return entries.filter((e, i) =>
    !entries.some((other, j) => j !== i && covers(other, e) && (!covers(e, other) || j < i)),
  );
}

function covers(outer: PrefilterEntry, inner: PrefilterEntry): boolean {
  if (outer.family !== inner.family || outer.length > inner.length) return false;
  if (outer.protocol !== ANY_PROTOCOL && outer.protocol !== inner.protocol) return false;
  for (let bit = 0; bit < outer.length; bit += 8) {
    const keep = Math.min(8, outer.length - bit);
    const mask = (0xff << (8 - keep)) & 0xff;
    const byte = bit / 8;
    if ((outer.bytes[byte] & mask) !== (inner.bytes[byte] & mask)) return false;
  }
  return true;
}
