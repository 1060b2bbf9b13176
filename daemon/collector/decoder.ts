// Decoder of Telemetry Report v0.5 datagrams (the UDP payload), for the built-in collector and
// tests. It validates the report headers and rejects what cannot be a v0.5 report; the inner
// packet is parsed as far as it was captured and never makes a report malformed past its
// Ethernet header.
//
// JSON field names of a decoded report:
//   kind            'flow' (NProto 2, switch-local), 'drop' (NProto 1) or 'inner-only' (NProto 0)
//   version         Ver (always 0 for v0.5)          nproto      NProto
//   dropped         D flag                           congested   Q flag
//   tracked         F flag                           hwId        hw_id (6 bits)
//   seq             sequence number (u32)            ingressTs   ingress timestamp, low 32 bits of ns
//   switchId        u32 (flow, drop)                 switchIdIp  the same as a dotted IPv4 string
//   ingressPort, egressPort, queueId                 (flow, drop)
//   queueOccupancy, egressTs                         (flow)
//   hopLatencyNs    (egressTs - ingressTs) mod 2^32  (flow)
//   dropReason      INT drop reason code             (drop)
//   innerLength     bytes of the inner frame
//   inner           the inner frame:
//     dstMac, srcMac, etherType (after VLAN tags), vlanIds (outermost first)
//     ipVersion, src, dst, protocol, ttl (IPv4 TTL / IPv6 hop limit)
//     srcPort, dstPort                 TCP, UDP, SCTP
//     icmpType, icmpCode, icmpId       ICMP, ICMPv6 (icmpId for echo request/reply)
//     ipChecksumValid                  IPv4 header checksum: true/false (absent for IPv6)
//     l4ChecksumValid                  TCP/UDP/SCTP/ICMP/ICMPv6 checksum: true/false, or null
//                                      when it cannot be checked (segment not fully captured,
//                                      non-first fragment, UDP over IPv4 without checksum)
//     fragment                         true for any IP fragment
//     truncated                        true when the headers parsed here were cut short
// Fields that do not apply are absent.

import { formatAddress } from '../../bpf/events';
import { crc32c } from '../report/encoder';
import { foldSum, sumWords } from '../report/checksum';

export type ReportKind = 'flow' | 'drop' | 'inner-only';

export interface InnerPacket {
  dstMac: string;
  srcMac: string;
  etherType: number;
  vlanIds?: number[];
  ipVersion?: 4 | 6;
  src?: string;
  dst?: string;
  protocol?: number;
  ttl?: number;
  srcPort?: number;
  dstPort?: number;
  icmpType?: number;
  icmpCode?: number;
  icmpId?: number;
  ipChecksumValid?: boolean;
  l4ChecksumValid?: boolean | null;
  fragment?: boolean;
  truncated: boolean;
}

export interface DecodedReport {
  kind: ReportKind;
  version: number;
  nproto: number;
  dropped: boolean;
  congested: boolean;
  tracked: boolean;
  hwId: number;
  seq: number;
  ingressTs: number;
  switchId?: number;
  switchIdIp?: string;
  ingressPort?: number;
  egressPort?: number;
  queueId?: number;
  queueOccupancy?: number;
  egressTs?: number;
  hopLatencyNs?: number;
  dropReason?: number;
  innerLength: number;
  inner: InnerPacket;
}

/** Stable keys for why a datagram was rejected (used as counter names). */
export type MalformedCode =
  | 'short-fixed-header'
  | 'bad-version'
  | 'bad-nproto'
  | 'short-drop-header'
  | 'short-local-header'
  | 'short-inner-ethernet';

export type DecodeResult =
  | { ok: true; report: DecodedReport }
  | { ok: false; code: MalformedCode; reason: string };

const FIXED = 12;
const DROP_HDR = 12;
const LOCAL_HDR = 16;
const ETH_HDR = 14;

function fail(code: MalformedCode, reason: string): DecodeResult {
  return { ok: false, code, reason };
}

export function decodeReport(b: Buffer): DecodeResult {
  if (b.length < FIXED) return fail('short-fixed-header', `datagram of ${b.length} bytes is shorter than the 12-byte fixed header`);
  const version = b[0] >> 4;
  const nproto = b[0] & 0x0f;
  if (version !== 0) return fail('bad-version', `version ${version} is not 0 (Telemetry Report v0.5)`);
  const base = {
    version,
    nproto,
    dropped: (b[1] & 0x80) !== 0,
    congested: (b[1] & 0x40) !== 0,
    tracked: (b[1] & 0x20) !== 0,
    hwId: b[3] & 0x3f,
    seq: b.readUInt32BE(4),
    ingressTs: b.readUInt32BE(8),
  };
  let report: DecodedReport;
  let innerStart: number;
  if (nproto === 2) {
    if (b.length < FIXED + LOCAL_HDR) return fail('short-local-header', `datagram of ${b.length} bytes is too short for the switch-local header (28 bytes)`);
    const egressTs = b.readUInt32BE(24);
    innerStart = FIXED + LOCAL_HDR;
    report = {
      kind: 'flow',
      ...base,
      ...commonHeader(b),
      queueOccupancy: ((b[21] << 16) | (b[22] << 8) | b[23]) >>> 0,
      egressTs,
      hopLatencyNs: (egressTs - base.ingressTs) >>> 0,
      innerLength: 0,
      inner: emptyInner(),
    };
  } else if (nproto === 1) {
    if (b.length < FIXED + DROP_HDR) return fail('short-drop-header', `datagram of ${b.length} bytes is too short for the drop header (24 bytes)`);
    innerStart = FIXED + DROP_HDR;
    report = { kind: 'drop', ...base, ...commonHeader(b), dropReason: b[21], innerLength: 0, inner: emptyInner() };
  } else if (nproto === 0) {
    innerStart = FIXED;
    report = { kind: 'inner-only', ...base, innerLength: 0, inner: emptyInner() };
  } else {
    return fail('bad-nproto', `NProto ${nproto} is not 0 (Ethernet), 1 (drop) or 2 (switch-local)`);
  }
  const innerLength = b.length - innerStart;
  if (innerLength < ETH_HDR) return fail('short-inner-ethernet', `inner frame of ${innerLength} bytes is shorter than an Ethernet header`);
  report.innerLength = innerLength;
  report.inner = decodeInnerFrame(b, innerStart, b.length);
  return { ok: true, report };
}

/** Fields the drop and switch-local headers share (offsets 12-20). */
function commonHeader(b: Buffer) {
  const switchId = b.readUInt32BE(12);
  return {
    switchId,
    switchIdIp: `${b[12]}.${b[13]}.${b[14]}.${b[15]}`,
    ingressPort: b.readUInt16BE(16),
    egressPort: b.readUInt16BE(18),
    queueId: b[20],
  };
}

function emptyInner(): InnerPacket {
  return { dstMac: '', srcMac: '', etherType: 0, truncated: false };
}

function mac(b: Buffer, off: number): string {
  const parts: string[] = [];
  for (let i = 0; i < 6; i++) parts.push(b[off + i].toString(16).padStart(2, '0'));
  return parts.join(':');
}

/** Parses an Ethernet frame b[start, end) down to its L4 header. */
export function decodeInnerFrame(b: Buffer, start: number, end: number): InnerPacket {
  const inner: InnerPacket = { dstMac: mac(b, start), srcMac: mac(b, start + 6), etherType: b.readUInt16BE(start + 12), truncated: false };
  let p = start + ETH_HDR;
  while (inner.etherType === 0x8100 || inner.etherType === 0x88a8) {
    if (p + 4 > end) {
      inner.truncated = true;
      return inner;
    }
    (inner.vlanIds ??= []).push(b.readUInt16BE(p) & 0x0fff);
    inner.etherType = b.readUInt16BE(p + 2);
    p += 4;
  }
  if (inner.etherType === 0x0800) decodeIpv4(b, p, end, inner);
  else if (inner.etherType === 0x86dd) decodeIpv6(b, p, end, inner);
  return inner;
}

function decodeIpv4(b: Buffer, ip: number, end: number, inner: InnerPacket): void {
  if (ip + 20 > end || b[ip] >> 4 !== 4) {
    inner.truncated = ip + 20 > end;
    return;
  }
  const ihl = (b[ip] & 0x0f) * 4;
  inner.ipVersion = 4;
  inner.src = formatAddress(b, ip + 12, 4);
  inner.dst = formatAddress(b, ip + 16, 4);
  inner.protocol = b[ip + 9];
  inner.ttl = b[ip + 8];
  if (ihl < 20 || ip + ihl > end) {
    inner.truncated = ip + ihl > end;
    inner.ipChecksumValid = false;
    return;
  }
  inner.ipChecksumValid = foldedSum(b, ip, ip + ihl, 0) === 0xffff;
  const flagsFrag = b.readUInt16BE(ip + 6);
  const fragmentOffset = flagsFrag & 0x1fff;
  if (fragmentOffset !== 0 || (flagsFrag & 0x2000) !== 0) inner.fragment = true;
  if (fragmentOffset !== 0) return;
  const totalLength = b.readUInt16BE(ip + 2);
  const l4Length = totalLength - ihl;
  // Pseudo-header: addresses, protocol, L4 length.
  const pseudo = sumWords(b, ip + 12, ip + 20) + inner.protocol + Math.max(l4Length, 0);
  decodeL4(b, ip + ihl, end, totalLength >= ihl ? l4Length : -1, pseudo, inner, false);
}

function decodeIpv6(b: Buffer, ip: number, end: number, inner: InnerPacket): void {
  if (ip + 40 > end || b[ip] >> 4 !== 6) {
    inner.truncated = ip + 40 > end;
    return;
  }
  inner.ipVersion = 6;
  inner.src = formatAddress(b, ip + 8, 6);
  inner.dst = formatAddress(b, ip + 24, 6);
  inner.ttl = b[ip + 7];
  const payloadLength = b.readUInt16BE(ip + 4);
  let next = b[ip + 6];
  let l4 = ip + 40;
  for (let n = 0; n < 8; n++) {
    if (next === 0 || next === 43 || next === 60 || next === 44 || next === 51) {
      if (l4 + 8 > end) {
        inner.truncated = true;
        inner.protocol = next;
        return;
      }
      if (next === 44) {
        inner.fragment = true;
        const notFirst = (b.readUInt16BE(l4 + 2) & 0xfff8) !== 0;
        next = b[l4];
        l4 += 8;
        if (notFirst) {
          inner.protocol = next;
          return;
        }
      } else {
        const len = next === 51 ? (b[l4 + 1] + 2) * 4 : (b[l4 + 1] + 1) * 8;
        next = b[l4];
        l4 += len;
      }
    } else {
      break;
    }
  }
  inner.protocol = next;
  const l4Length = payloadLength > 0 ? ip + 40 + payloadLength - l4 : -1;
  const pseudo = sumWords(b, ip + 8, ip + 40) + next + Math.max(l4Length, 0);
  decodeL4(b, l4, end, l4Length, pseudo, inner, true);
}

/**
 * Reads ports / ICMP fields at b[l4] and checks the L4 checksum when the whole segment
 * (l4Length bytes, -1 if unknown) was captured.
 */
function decodeL4(b: Buffer, l4: number, end: number, l4Length: number, pseudo: number, inner: InnerPacket, ipv6: boolean): void {
  const proto = inner.protocol;
  const whole = l4Length >= 0 && l4 + l4Length <= end;
  const segEnd = l4 + l4Length;
  if (proto === 6 || proto === 17 || proto === 132) {
    const headerLen = proto === 6 ? 20 : proto === 17 ? 8 : 12;
    if (l4 + 4 > end) {
      inner.truncated = true;
      return;
    }
    inner.srcPort = b.readUInt16BE(l4);
    inner.dstPort = b.readUInt16BE(l4 + 2);
    if (l4 + headerLen > end) inner.truncated = true;
    if (!whole || l4Length < headerLen) {
      inner.l4ChecksumValid = null;
    } else if (proto === 132) {
      inner.l4ChecksumValid = sctpChecksumValid(b, l4, segEnd);
    } else if (proto === 17 && !ipv6 && b.readUInt16BE(l4 + 6) === 0) {
      inner.l4ChecksumValid = null; // "no checksum"
    } else {
      inner.l4ChecksumValid = foldedSum(b, l4, segEnd, pseudo) === 0xffff;
    }
  } else if (proto === 1 || proto === 58) {
    if (l4 + 2 > end) {
      inner.truncated = true;
      return;
    }
    inner.icmpType = b[l4];
    inner.icmpCode = b[l4 + 1];
    const echo = proto === 1 ? inner.icmpType === 0 || inner.icmpType === 8 : inner.icmpType === 128 || inner.icmpType === 129;
    if (echo && l4 + 6 <= end) inner.icmpId = b.readUInt16BE(l4 + 4);
    if (l4 + 8 > end) inner.truncated = true;
    if (!whole || l4Length < 8) inner.l4ChecksumValid = null;
    else inner.l4ChecksumValid = foldedSum(b, l4, segEnd, proto === 58 ? pseudo : 0) === 0xffff;
  }
}

function sctpChecksumValid(b: Buffer, l4: number, end: number): boolean {
  const copy = Buffer.from(b.subarray(l4, end));
  const stored = copy.readUInt32LE(8);
  copy.writeUInt32LE(0, 8);
  return crc32c(copy) === stored;
}

/** Ones-complement sum of b[start, end) plus `initial`, folded to 16 bits (0xffff = valid). */
function foldedSum(b: Buffer, start: number, end: number, initial: number): number {
  return foldSum(sumWords(b, start, end) + initial);
}
