// The compiled watchlist: rules flattened into typed arrays so that matching a tuple of an event
// in place (struct int_tuple, see bpf/progs/int_types.h) reads a few words and allocates nothing.
import { TupleLayout } from '../../bpf/events';
import type { Prefix, PortRange } from './addresses';
import { ANY_PROTOCOL } from './protocols';
import { rulesToDocument, type WatchlistDocument, type WatchlistRule } from './rules';

/** Which tuple of an event a rule matched, as the reference tries them: post-NAT, then pre-NAT. */
export const WatchlistMatch = { none: 0, postNat: 1, preNat: 2 } as const;
export type WatchlistMatch = (typeof WatchlistMatch)[keyof typeof WatchlistMatch];

/**
 * One rule, flattened. Addresses are compared as signed 32-bit words (what `&` yields), so a
 * prefix is stored as (network & mask, mask) per word: IPv4 pairs, IPv6 runs of 8.
 * Port ranges are [from, to] pairs; an empty array matches any port.
 */
class CompiledRule {
  constructor(
    readonly protocol: number,
    readonly src4: Int32Array,
    readonly dst4: Int32Array,
    readonly src6: Int32Array,
    readonly dst6: Int32Array,
    readonly srcPorts: Uint16Array,
    readonly dstPorts: Uint16Array,
  ) {}
}

export class Watchlist {
  private readonly compiled: CompiledRule[];

  constructor(readonly rules: readonly WatchlistRule[]) {
    this.compiled = rules.map(compileRule);
  }

  static readonly empty = new Watchlist([]);

  get size(): number {
    return this.rules.length;
  }

  /**
   * The index of the first rule that the tuple at `off` in `buf` matches, or -1. An empty
   * watchlist matches nothing, as in the reference (no rules, no reports).
   */
  findRule(buf: Buffer, off: number): number {
    const version = buf[off + TupleLayout.ipVersion];
    const proto = buf[off + TupleLayout.proto];
    const sport = (buf[off + TupleLayout.sport] << 8) | buf[off + TupleLayout.sport + 1];
    const dport = (buf[off + TupleLayout.dport] << 8) | buf[off + TupleLayout.dport + 1];
    const rules = this.compiled;
    if (version === 4) {
      const s = buf.readInt32BE(off + TupleLayout.saddr);
      const d = buf.readInt32BE(off + TupleLayout.daddr);
      for (let i = 0; i < rules.length; i++) {
        const r = rules[i];
        if (r.protocol !== ANY_PROTOCOL && r.protocol !== proto) continue;
        if (!inPorts(r.srcPorts, sport) || !inPorts(r.dstPorts, dport)) continue;
        if (in4(r.src4, s) && in4(r.dst4, d)) return i;
      }
    } else if (version === 6) {
      const sa = off + TupleLayout.saddr;
      const da = off + TupleLayout.daddr;
      const s0 = buf.readInt32BE(sa), s1 = buf.readInt32BE(sa + 4), s2 = buf.readInt32BE(sa + 8), s3 = buf.readInt32BE(sa + 12);
      const d0 = buf.readInt32BE(da), d1 = buf.readInt32BE(da + 4), d2 = buf.readInt32BE(da + 8), d3 = buf.readInt32BE(da + 12);
      for (let i = 0; i < rules.length; i++) {
        const r = rules[i];
        if (r.protocol !== ANY_PROTOCOL && r.protocol !== proto) continue;
        if (!inPorts(r.srcPorts, sport) || !inPorts(r.dstPorts, dport)) continue;
        if (in6(r.src6, s0, s1, s2, s3) && in6(r.dst6, d0, d1, d2, d3)) return i;
      }
    }
    return -1;
  }

  /** Whether the tuple at `off` in `buf` matches any rule. */
  matchTuple(buf: Buffer, off: number): boolean {
    return this.findRule(buf, off) >= 0;
  }

  /**
   * Matches an event the way the reference does: its post-NAT tuple first, then its pre-NAT one.
   * Pass preNatOff = -1 when the event has no pre-NAT tuple or it equals the post-NAT one.
   * `preNat` tells the report encoder to rewrite the inner headers to the pre-NAT tuple.
   */
  match(buf: Buffer, postNatOff: number, preNatOff = -1): WatchlistMatch {
    if (this.findRule(buf, postNatOff) >= 0) return WatchlistMatch.postNat;
    if (preNatOff >= 0 && this.findRule(buf, preNatOff) >= 0) return WatchlistMatch.preNat;
    return WatchlistMatch.none;
  }

  /** The rules in the file format, e.g. for GET /v1/watchlist. */
  toDocument(): WatchlistDocument {
    return rulesToDocument(this.rules);
  }

  toJSON(): WatchlistDocument {
    return this.toDocument();
  }
}

function inPorts(ranges: Uint16Array, port: number): boolean {
  if (ranges.length === 0) return true;
  for (let i = 0; i < ranges.length; i += 2) {
    if (port >= ranges[i] && port <= ranges[i + 1]) return true;
  }
  return false;
}

function in4(prefixes: Int32Array, a: number): boolean {
  for (let i = 0; i < prefixes.length; i += 2) {
    if ((a & prefixes[i + 1]) === prefixes[i]) return true;
  }
  return false;
}

function in6(p: Int32Array, a0: number, a1: number, a2: number, a3: number): boolean {
  for (let i = 0; i < p.length; i += 8) {
    if ((a0 & p[i + 4]) === p[i] && (a1 & p[i + 5]) === p[i + 1] && (a2 & p[i + 6]) === p[i + 2] && (a3 & p[i + 7]) === p[i + 3]) {
      return true;
    }
  }
  return false;
}

function compileRule(rule: WatchlistRule): CompiledRule {
  return new CompiledRule(
    rule.protocol,
    flattenPrefixes(rule.srcAddr, 4),
    flattenPrefixes(rule.dstAddr, 4),
    flattenPrefixes(rule.srcAddr, 6),
    flattenPrefixes(rule.dstAddr, 6),
    flattenPorts(rule.srcPort),
    flattenPorts(rule.dstPort),
  );
}

function flattenPrefixes(prefixes: readonly Prefix[], family: 4 | 6): Int32Array {
  const words = family === 4 ? 1 : 4;
  const picked = prefixes.filter((p) => p.family === family);
  const out = new Int32Array(picked.length * words * 2);
  picked.forEach((p, n) => {
    const base = n * words * 2;
    for (let w = 0; w < words; w++) {
      const bits = Math.max(0, Math.min(32, p.length - w * 32));
      const mask = bits === 0 ? 0 : (-1 << (32 - bits)) | 0;
      const b = p.bytes;
      const word = (b[w * 4] << 24) | (b[w * 4 + 1] << 16) | (b[w * 4 + 2] << 8) | b[w * 4 + 3];
      out[base + w] = word & mask;
      out[base + words + w] = mask;
    }
  });
  return out;
}

function flattenPorts(ranges: readonly PortRange[]): Uint16Array {
  const out = new Uint16Array(ranges.length * 2);
  ranges.forEach((r, i) => {
    out[i * 2] = r.from;
    out[i * 2 + 1] = r.to;
  });
  return out;
}
