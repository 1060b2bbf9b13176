// Telemetry Report v0.5 encoder (P4.org, byte layouts in /work/shared/reference/int-reports.md §3).
// It reads the current record of an EventView in place and writes one report into a caller-owned
// Buffer: no allocation per event.
//
//   flow report: fixed header (NProto 2, F) | switch-local header | inner Ethernet frame
//   drop report: fixed header (NProto 1, D) | drop header         | inner Ethernet frame
//
// The inner frame is the event's sample from the innermost Ethernet header (a tunnel's outer
// headers are stripped, as switches do), cut at sample_len so perf's padding never leaks in.
// Optionally the inner IP/L4 headers are rewritten to the pre-NAT tuple, so a collector that
// correlates by 5-tuple sees the flow the pod opened, with checksums kept valid (see rewriteInnerTuple).

import { EVENT_DROP, EventView, F_INGRESS, F_TUNNEL, TupleLayout } from '../../bpf/events';
import { checksumOf, sumWords } from './checksum';
import type { DropLocations } from './drop-locations';

export const FIXED_HEADER_LEN = 12;
export const SWITCH_LOCAL_HEADER_LEN = 16;
export const DROP_HEADER_LEN = 12;
export const FLOW_REPORT_HEADERS_LEN = FIXED_HEADER_LEN + SWITCH_LOCAL_HEADER_LEN; // 28
export const DROP_REPORT_HEADERS_LEN = FIXED_HEADER_LEN + DROP_HEADER_LEN; // 24

export const REPORT_VERSION = 0;
export const NPROTO_ETHERNET = 0;
export const NPROTO_DROP = 1;
export const NPROTO_SWITCH_LOCAL = 2;
/** Flag bits of byte 1 of the fixed header. */
export const FLAG_DROPPED = 0x80;
export const FLAG_CONGESTED = 0x40;
export const FLAG_TRACKED = 0x20;

/** Identity of the reporting "switch": fixed for the life of a sender. */
export interface ReportIdentity {
  /** u32, e.g. the node's IPv4 address */
  switchId: number;
  /** 6 bits */
  hwId: number;
}

/**
 * The INT drop code of the current (drop) event of `ev`: from the kernel's skb_drop_reason through
 * `dropCodes` (see drop-reasons.ts; values outside the table are 0, unknown), else from where the
 * kernel dropped it when `dropLocations` knows the place.
 */
export function dropCodeOf(ev: EventView, dropCodes?: Uint8Array, dropLocations?: DropLocations): number {
  const reason = ev.dropReason;
  const code = dropCodes !== undefined && reason < dropCodes.length ? dropCodes[reason] : 0;
  return code !== 0 || dropLocations === undefined ? code : dropLocations.codeFor(ev.dropLocation);
}

/**
 * Encodes the current event of `ev` as a v0.5 report at `out[off]`, choosing the kind by the
 * event type; a drop report's code comes from dropCodeOf. The pipeline's one way to encode.
 * Returns the bytes written, or 0 when the event cannot be encoded (see encodeFlowReport).
 */
export function encodeReport(
  ev: EventView,
  out: Buffer,
  off: number,
  id: ReportIdentity,
  seq: number,
  rewriteToPreNat: boolean,
  dropCodes?: Uint8Array,
  dropLocations?: DropLocations,
): number {
  if (ev.type === EVENT_DROP) {
    return encodeDropReport(ev, out, off, id, seq, dropCodeOf(ev, dropCodes, dropLocations), rewriteToPreNat);
  }
  return encodeFlowReport(ev, out, off, id, seq, rewriteToPreNat);
}

/**
 * Switch-local flow report (NProto 2, F=1). Returns the bytes written, or 0 when `out` has no
 * room for the headers or a tunnel event's inner offset lies outside its sample. An inner frame
 * longer than the room left in `out` is cut to fit.
 */
export function encodeFlowReport(
  ev: EventView,
  out: Buffer,
  off: number,
  id: ReportIdentity,
  seq: number,
  rewriteToPreNat: boolean,
): number {
  if (off < 0 || off + FLOW_REPORT_HEADERS_LEN > out.length) return 0;
  const innerStart = innerFrameStart(ev);
  if (innerStart < 0) return 0;
  writeFixedHeader(out, off, NPROTO_SWITCH_LOCAL, FLAG_TRACKED, id.hwId, seq, ev.ingressTs32);
  const h = off + FIXED_HEADER_LEN;
  writeSwitchAndPorts(out, h, id, ev);
  out[h + 8] = 0; // queue id: a host has no switch queues to name
  out[h + 9] = 0; // queue occupancy (24 bits)
  out[h + 10] = 0;
  out[h + 11] = 0;
  out.writeUInt32BE(ev.egressTs32, h + 12);
  return FLOW_REPORT_HEADERS_LEN + copyInner(ev, innerStart, out, off + FLOW_REPORT_HEADERS_LEN, rewriteToPreNat);
}

/**
 * Drop report (NProto 1, D=1 only, as fabric-tna and the reference send it). `intDropReason` is
 * already an INT code (0 = unknown). Egress port is the event's egress ifindex, 0 when unknown.
 * Return value as for encodeFlowReport.
 */
export function encodeDropReport(
  ev: EventView,
  out: Buffer,
  off: number,
  id: ReportIdentity,
  seq: number,
  intDropReason: number,
  rewriteToPreNat: boolean,
): number {
  if (off < 0 || off + DROP_REPORT_HEADERS_LEN > out.length) return 0;
  const innerStart = innerFrameStart(ev);
  if (innerStart < 0) return 0;
  writeFixedHeader(out, off, NPROTO_DROP, FLAG_DROPPED, id.hwId, seq, ev.ingressTs32);
  const h = off + FIXED_HEADER_LEN;
  writeSwitchAndPorts(out, h, id, ev);
  out[h + 8] = 0; // queue id
  out[h + 9] = intDropReason & 0xff;
  out[h + 10] = 0; // pad
  out[h + 11] = 0;
  return DROP_REPORT_HEADERS_LEN + copyInner(ev, innerStart, out, off + DROP_REPORT_HEADERS_LEN, rewriteToPreNat);
}

/** The first 8 bytes of both the switch-local and the drop header: switch id, ports. */
function writeSwitchAndPorts(out: Buffer, h: number, id: ReportIdentity, ev: EventView): void {
  out.writeUInt32BE(id.switchId >>> 0, h);
  out.writeUInt16BE(ev.ingressIfindex & 0xffff, h + 4);
  out.writeUInt16BE(ev.egressIfindex & 0xffff, h + 6);
}

function writeFixedHeader(out: Buffer, off: number, nproto: number, flags: number, hwId: number, seq: number, igTs: number): void {
  out[off] = (REPORT_VERSION << 4) | (nproto & 0x0f);
  out[off + 1] = flags; // D/Q/F, reserved bits 0
  out[off + 2] = 0;
  out[off + 3] = hwId & 0x3f;
  out.writeUInt32BE(seq >>> 0, off + 4);
  out.writeUInt32BE(igTs >>> 0, off + 8);
}

/** Offset in ev.buf of the innermost Ethernet header, or -1 if a tunnel offset is out of range. */
function innerFrameStart(ev: EventView): number {
  if ((ev.flags & F_TUNNEL) === 0) return ev.sampleOff;
  const inner = ev.innerOffset;
  return inner <= ev.sampleLen ? ev.sampleOff + inner : -1;
}

function copyInner(ev: EventView, start: number, out: Buffer, dst: number, rewriteToPreNat: boolean): number {
  const sampleEnd = ev.sampleOff + ev.sampleLen;
  const len = Math.min(sampleEnd - start, out.length - dst);
  if (len <= 0) return 0;
  ev.buf.copy(out, dst, start, start + len);
  // pre_nat is only meaningful when the ingress hook saw the packet. Without a rewrite the L4
  // checksum is still recomputed when the whole segment was captured: sampled at TC egress, it
  // may hold only the pseudo-header sum that checksum offload completes later.
  if (rewriteToPreNat && (ev.flags & F_INGRESS) !== 0) rewriteInnerTuple(out, dst, dst + len, ev.buf, ev.preNatOff);
  else rewriteInnerTuple(out, dst, dst + len, null, 0);
  return len;
}

// ---------------------------------------------------------------------------------------------
// Inner tuple rewrite.
//
// Checksums are updated incrementally (RFC 1624, HC' = ~(~HC + ~m + m')) rather than recomputed:
// the sample usually holds only the first bytes of the packet, and an incremental update stays
// correct for the whole packet even when most of its payload was never captured.
// - IPv4 header checksum: addresses.
// - TCP, UDP, ICMPv6: pseudo-header addresses + ports (ICMPv6 echo: identifier).
// - UDP over IPv4 with checksum 0 ("none") stays 0; a result of 0 is sent as 0xffff (RFC 768).
// - ICMPv4 echo: identifier only (no pseudo-header).
// - SCTP: its CRC32c covers the whole packet and has no incremental form. When the sample holds
//   the whole SCTP packet it is recomputed; otherwise it is left as it was (and is then stale).
// - Non-first fragments carry no L4 header: only the IP addresses are rewritten.
// ---------------------------------------------------------------------------------------------

const ETH_P_IPV4 = 0x0800;
const ETH_P_IPV6 = 0x86dd;
const ETH_P_8021Q = 0x8100;
const ETH_P_8021AD = 0x88a8;
const PROTO_ICMP = 1;
const PROTO_TCP = 6;
const PROTO_UDP = 17;
const PROTO_ICMPV6 = 58;
const PROTO_SCTP = 132;
const MAX_VLAN_TAGS = 2;
const MAX_IPV6_EXT_HEADERS = 8;

function u16(b: Buffer, p: number): number {
  return (b[p] << 8) | b[p + 1];
}

function put16(b: Buffer, p: number, v: number): void {
  b[p] = v >>> 8;
  b[p + 1] = v & 0xff;
}

/** ~(~csum + delta) folded to 16 bits; delta is a sum of (~old & 0xffff) + new words. */
function adjustChecksum(csum: number, delta: number): number {
  return checksumOf((~csum & 0xffff) + delta);
}

/**
 * Replaces the 16-bit words of pkt[p, p+2*words) by those of src[q, ...); returns the checksum
 * delta of the change. Stops at `end` (a truncated sample) and counts only what it wrote.
 */
function replaceWords(pkt: Buffer, p: number, src: Buffer | null, q: number, words: number, end: number): number {
  if (src === null) return 0; // checksums only: nothing to replace
  let delta = 0;
  for (let i = 0; i < words && p + 2 <= end; i++, p += 2, q += 2) {
    const old = u16(pkt, p);
    const now = u16(src, q);
    delta += (~old & 0xffff) + now;
    put16(pkt, p, now);
  }
  return delta;
}

/**
 * Rewrites the IP addresses and L4 ports (ICMP echo identifier) of the Ethernet frame in
 * pkt[start, end) to the struct int_tuple at tuple[tupleOff], keeping checksums valid.
 * VLAN tags are skipped; IPv6 extension headers are walked to find L4. Returns false, leaving the
 * frame untouched, when it is not IPv4/IPv6 of the tuple's version or its IP header is cut short.
 */
export function rewriteInnerTuple(pkt: Buffer, start: number, end: number, tuple: Buffer | null, tupleOff: number): boolean {
  let p = start + 12;
  if (p + 2 > end) return false;
  let etherType = u16(pkt, p);
  p += 2;
  for (let tags = 0; (etherType === ETH_P_8021Q || etherType === ETH_P_8021AD) && tags < MAX_VLAN_TAGS; tags++) {
    if (p + 4 > end) return false;
    etherType = u16(pkt, p + 2);
    p += 4;
  }
  // A null tuple keeps addresses and ports and only makes the checksums right.
  const version = tuple === null ? (etherType === ETH_P_IPV4 ? 4 : 6) : tuple[tupleOff + TupleLayout.ipVersion];
  if (etherType === ETH_P_IPV4 && version === 4) return rewriteIpv4(pkt, p, end, tuple, tupleOff);
  if (etherType === ETH_P_IPV6 && version === 6) return rewriteIpv6(pkt, p, end, tuple, tupleOff);
  return false;
}

function rewriteIpv4(pkt: Buffer, ip: number, end: number, tuple: Buffer | null, t: number): boolean {
  if (ip + 20 > end || pkt[ip] >> 4 !== 4) return false;
  const ihl = (pkt[ip] & 0x0f) * 4;
  if (ihl < 20) return false;
  const addrDelta =
    replaceWords(pkt, ip + 12, tuple, t + TupleLayout.saddr, 2, end) +
    replaceWords(pkt, ip + 16, tuple, t + TupleLayout.daddr, 2, end);
  if (addrDelta !== 0) put16(pkt, ip + 10, adjustChecksum(u16(pkt, ip + 10), addrDelta));
  const fragmentOffset = u16(pkt, ip + 6) & 0x1fff;
  if (fragmentOffset !== 0) return true;
  const totalLength = u16(pkt, ip + 2);
  // A total length of 0 (BIG TCP) or below the header leaves the packet's end unknown.
  const ipEnd = totalLength >= ihl ? ip + totalLength : Infinity;
  rewriteL4(pkt, pkt[ip + 9], ip, ip + ihl, Math.min(end, ipEnd), ipEnd <= end, addrDelta, false, tuple, t);
  return true;
}

function rewriteIpv6(pkt: Buffer, ip: number, end: number, tuple: Buffer | null, t: number): boolean {
  if (ip + 40 > end || pkt[ip] >> 4 !== 6) return false;
  const addrDelta =
    replaceWords(pkt, ip + 8, tuple, t + TupleLayout.saddr, 8, end) +
    replaceWords(pkt, ip + 24, tuple, t + TupleLayout.daddr, 8, end);
  const payloadLength = u16(pkt, ip + 4);
  // A payload length of 0 (jumbogram, BIG TCP) leaves the packet's end unknown.
  const ipEnd = payloadLength > 0 ? ip + 40 + payloadLength : Infinity;
  let next = pkt[ip + 6];
  let l4 = ip + 40;
  for (let n = 0; n < MAX_IPV6_EXT_HEADERS; n++) {
    if (next === 0 || next === 43 || next === 60) {
      // hop-by-hop, routing, destination options: length in 8-octet units, not counting the first
      if (l4 + 2 > end) return true;
      next = pkt[l4];
      l4 += (pkt[l4 + 1] + 1) * 8;
    } else if (next === 44) {
      if (l4 + 8 > end) return true;
      if ((u16(pkt, l4 + 2) & 0xfff8) !== 0) return true; // not the first fragment: no L4 header
      next = pkt[l4];
      l4 += 8;
    } else if (next === 51) {
      // authentication header: length in 4-octet units, minus 2
      if (l4 + 2 > end) return true;
      next = pkt[l4];
      l4 += (pkt[l4 + 1] + 2) * 4;
    } else {
      break;
    }
  }
  rewriteL4(pkt, next, ip, l4, Math.min(end, ipEnd), ipEnd <= end, addrDelta, true, tuple, t);
  return true;
}

/**
 * The L4 checksum of a fully captured segment, computed from scratch. A packet sampled at TC
 * egress may still carry only the pseudo-header sum (checksum offload: the device completes it
 * later), so an incremental update alone would keep such a checksum invalid.
 */
function fullL4Checksum(pkt: Buffer, proto: number, ip: number, l4: number, end: number, ipv6: boolean, csumAt: number): number {
  let sum = 0;
  if (proto !== PROTO_ICMP) {
    const addrs = ipv6 ? ip + 8 : ip + 12;
    sum += sumWords(pkt, addrs, addrs + (ipv6 ? 32 : 8)) + proto + (end - l4);
  }
  // csumAt - l4 is even: both halves keep the segment's word alignment.
  return checksumOf(sum + sumWords(pkt, l4, csumAt) + sumWords(pkt, csumAt + 2, end));
}

function rewriteL4(
  pkt: Buffer,
  proto: number,
  ip: number,
  l4: number,
  end: number,
  wholePacket: boolean,
  addrDelta: number,
  ipv6: boolean,
  tuple: Buffer | null,
  t: number,
): void {
  switch (proto) {
    case PROTO_TCP: {
      const delta = addrDelta + replaceWords(pkt, l4, tuple, t + TupleLayout.sport, 2, end);
      if (l4 + 18 > end) return;
      if (wholePacket) put16(pkt, l4 + 16, fullL4Checksum(pkt, proto, ip, l4, end, ipv6, l4 + 16));
      else if (delta !== 0) put16(pkt, l4 + 16, adjustChecksum(u16(pkt, l4 + 16), delta));
      return;
    }
    case PROTO_UDP: {
      const delta = addrDelta + replaceWords(pkt, l4, tuple, t + TupleLayout.sport, 2, end);
      if (l4 + 8 > end) return;
      const old = u16(pkt, l4 + 6);
      if (old === 0 && !ipv6) return; // no checksum over IPv4: keep it that way
      if (!wholePacket && delta === 0) return;
      const csum = wholePacket ? fullL4Checksum(pkt, proto, ip, l4, end, ipv6, l4 + 6) : adjustChecksum(old, delta);
      put16(pkt, l4 + 6, csum === 0 ? 0xffff : csum);
      return;
    }
    case PROTO_SCTP: {
      replaceWords(pkt, l4, tuple, t + TupleLayout.sport, 2, end);
      if (wholePacket && l4 + 12 <= end) {
        pkt.writeUInt32LE(0, l4 + 8);
        // The CRC32c goes on the wire least significant byte first (RFC 9260 appendix A, Linux sctp_compute_cksum).
        pkt.writeUInt32LE(crc32c(pkt, l4, end), l4 + 8);
      }
      return;
    }
    case PROTO_ICMP:
    case PROTO_ICMPV6: {
      if (l4 + 4 > end) return;
      const type = pkt[l4];
      const echo = proto === PROTO_ICMP ? type === 0 || type === 8 : type === 128 || type === 129;
      let delta = ipv6 ? addrDelta : 0; // only ICMPv6 sums a pseudo-header
      if (echo) delta += replaceWords(pkt, l4 + 4, tuple, t + TupleLayout.sport, 1, end);
      if (wholePacket) put16(pkt, l4 + 2, fullL4Checksum(pkt, proto, ip, l4, end, ipv6, l4 + 2));
      else if (delta !== 0) put16(pkt, l4 + 2, adjustChecksum(u16(pkt, l4 + 2), delta));
      return;
    }
    default:
      return; // other protocols: addresses only
  }
}

// CRC32c (Castagnoli, reflected polynomial 0x82F63B78), table built once at load.
const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC32c of b[start, end), final value (already inverted), as an unsigned number. */
export function crc32c(b: Buffer, start = 0, end = b.length): number {
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = CRC32C_TABLE[(c ^ b[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
