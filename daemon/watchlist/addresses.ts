// Strict CIDR and port-range parsing for watchlist rules.
import ipaddr from 'ipaddr.js';

export interface Prefix {
  family: 4 | 6;
  /** network address bytes, host bits cleared (4 or 16 bytes) */
  bytes: readonly number[];
  length: number;
  /** canonical text, e.g. "10.68.235.0/24" */
  text: string;
}

export interface PortRange {
  from: number;
  to: number;
}

/**
 * Parses "a.b.c.d/n" or "x:y::z/n". Like the reference (Go's net.ParseCIDR) it accepts host bits
 * and clears them. Unlike ipaddr.js alone it refuses legacy IPv4 spellings ("010.1.1.1" would be
 * octal there) and IPv6 zone ids, which have no meaning in a prefix.
 */
export function parseCidr(text: string): Prefix | undefined {
  const slash = text.indexOf('/');
  if (slash < 0 || slash !== text.lastIndexOf('/')) return undefined;
  const address = text.slice(0, slash);
  const lengthText = text.slice(slash + 1);
  if (!/^(0|[1-9]\d{0,2})$/.test(lengthText)) return undefined;
  const length = Number(lengthText);

  let family: 4 | 6;
  let bytes: number[];
  if (address.includes(':')) {
    if (address.includes('%') || !ipaddr.IPv6.isValid(address)) return undefined;
    family = 6;
    bytes = ipaddr.IPv6.parse(address).toByteArray();
  } else {
    if (!ipaddr.IPv4.isValidFourPartDecimal(address)) return undefined;
    family = 4;
    bytes = ipaddr.IPv4.parse(address).toByteArray();
  }
  if (length > bytes.length * 8) return undefined;

  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, length - i * 8));
    bytes[i] &= (0xff << (8 - keep)) & 0xff;
  }
  const network = ipaddr.fromByteArray(bytes);
  const canonical = network.kind() === 'ipv6' ? (network as ipaddr.IPv6).toRFC5952String() : network.toString();
  return { family, bytes, length, text: `${canonical}/${length}` };
}

/** Parses 80, "80" or "8000-8080" (inclusive). */
export function parsePortRange(value: string | number): PortRange | 'reversed' | undefined {
  if (typeof value === 'number') {
    return Number.isInteger(value) && value >= 0 && value <= 65535 ? { from: value, to: value } : undefined;
  }
  const m = /^\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?$/.exec(value);
  if (!m) return undefined;
  const from = Number(m[1]);
  const to = m[2] === undefined ? from : Number(m[2]);
  if (from > 65535 || to > 65535) return undefined;
  if (from > to) return 'reversed';
  return { from, to };
}

export function formatPortRange(range: PortRange): string | number {
  return range.from === range.to ? range.from : `${range.from}-${range.to}`;
}
