// IP protocol names a watchlist rule may use. The reference accepts only "TCP" and "UDP" (exact
// case); we accept those spellings unchanged plus ICMP, ICMPv6, SCTP, "any" and raw numbers.
import { IPPROTO } from '../../bpf/events';

/** A rule's protocol: an IP protocol number, or ANY_PROTOCOL. */
export const ANY_PROTOCOL = -1;

const BY_NAME: ReadonlyMap<string, number> = new Map([
  ['tcp', IPPROTO.TCP],
  ['udp', IPPROTO.UDP],
  ['sctp', IPPROTO.SCTP],
  ['icmp', IPPROTO.ICMP],
  ['icmpv6', IPPROTO.ICMPV6],
  ['ipv6-icmp', IPPROTO.ICMPV6], // the IANA keyword
  ['any', ANY_PROTOCOL],
]);

const CANONICAL_NAME: ReadonlyMap<number, string> = new Map([
  [IPPROTO.TCP, 'TCP'],
  [IPPROTO.UDP, 'UDP'],
  [IPPROTO.SCTP, 'SCTP'],
  [IPPROTO.ICMP, 'ICMP'],
  [IPPROTO.ICMPV6, 'ICMPv6'],
  [ANY_PROTOCOL, 'any'],
]);

export const PROTOCOL_NAMES = 'TCP, UDP, SCTP, ICMP, ICMPv6, any, or a number 0-255';

/** The protocol number for a name or number, or undefined when it is neither. */
export function protocolNumber(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 && value <= 255 ? value : undefined;
  const trimmed = value.trim();
  if (/^\d{1,3}$/.test(trimmed)) return protocolNumber(Number(trimmed));
  return BY_NAME.get(trimmed.toLowerCase());
}

/** The name a rule is written back with (GET /v1/watchlist): a known name, else the number. */
export function protocolLabel(protocol: number): string | number {
  return CANONICAL_NAME.get(protocol) ?? protocol;
}

/** Protocols whose tuple carries real ports, the only ones a port range may be put on. */
export function hasPorts(protocol: number): boolean {
  return protocol === IPPROTO.TCP || protocol === IPPROTO.UDP || protocol === IPPROTO.SCTP;
}

/** The one IP version a protocol lives on (ICMP is IPv4-only, ICMPv6 IPv6-only), else undefined. */
export function onlyFamily(protocol: number): 4 | 6 | undefined {
  if (protocol === IPPROTO.ICMP) return 4;
  if (protocol === IPPROTO.ICMPV6) return 6;
  return undefined;
}
