// Telemetry Report v0.5 encoder: byte-exact against the reference's §4 vectors, tunnel
// stripping, sample trimming, and the pre-NAT rewrite with checksums checked by full
// recomputation (written here independently of the encoder).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ipaddr from 'ipaddr.js';
import { EventLayout, EventView, EVENT_DROP, EVENT_TRACE, F_INGRESS, F_NAT, F_TUNNEL, TupleLayout, frameBatch } from '../../bpf/events';
import { crc32c, encodeDropReport, encodeFlowReport, encodeReport, rewriteInnerTuple } from '../../daemon/report/encoder';
import { buildDropCodeTable, IntDropCode } from '../../daemon/report/drop-reasons';
import { DropLocations } from '../../daemon/report/drop-locations';
import { hex, INNER_FRAME, FLOW_REPORT_VECTOR, DROP_REPORT_VECTOR } from '../fixtures/int-report-vectors';


// Reference §4: inner frame and the two reports.

const ID = { switchId: 0xc0a8210b, hwId: 1 };
const IG_TS = 0x0000123456789abcn;
const EG_TS = IG_TS + 23456n;

interface TupleSpec {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  proto: number;
  icmpType?: number;
  icmpCode?: number;
}

interface EventSpec {
  type?: number;
  flags?: number;
  dropReason?: number;
  igIfindex?: number;
  egIfindex?: number;
  innerOffset?: number;
  preNat?: TupleSpec;
  postNat?: TupleSpec;
  /** bytes after the sample, as perf alignment would add (filled with 0xee) */
  padding?: number;
}

function writeTuple(buf: Buffer, off: number, t: TupleSpec): void {
  const src = ipaddr.parse(t.src);
  const version = src.kind() === 'ipv6' ? 6 : 4;
  Buffer.from(src.toByteArray()).copy(buf, off + TupleLayout.saddr);
  Buffer.from(ipaddr.parse(t.dst).toByteArray()).copy(buf, off + TupleLayout.daddr);
  buf.writeUInt16BE(t.sport, off + TupleLayout.sport);
  buf.writeUInt16BE(t.dport, off + TupleLayout.dport);
  buf[off + TupleLayout.proto] = t.proto;
  buf[off + TupleLayout.ipVersion] = version;
  buf[off + TupleLayout.icmpType] = t.icmpType ?? 0;
  buf[off + TupleLayout.icmpCode] = t.icmpCode ?? 0;
}

/** One perf sample: struct int_event (host byte order) + sample + padding. */
function eventRecord(sample: Buffer, e: EventSpec = {}): Buffer {
  const padding = e.padding ?? 0;
  const rec = Buffer.alloc(EventLayout.size + sample.length + padding, 0xee);
  rec.fill(0, 0, EventLayout.size);
  rec[EventLayout.type] = e.type ?? EVENT_TRACE;
  rec[EventLayout.flags] = e.flags ?? F_INGRESS;
  rec.writeUInt16LE(sample.length, EventLayout.sampleLen);
  rec.writeUInt32LE(e.dropReason ?? 0, EventLayout.dropReason);
  rec.writeUInt32LE(e.igIfindex ?? 7, EventLayout.igIfindex);
  rec.writeUInt32LE(e.egIfindex ?? 2, EventLayout.egIfindex);
  rec.writeUInt32LE(sample.length, EventLayout.pktLen);
  rec.writeUInt16LE(e.innerOffset ?? 0, EventLayout.innerOffset);
  rec.writeBigUInt64LE(IG_TS, EventLayout.igTs);
  rec.writeBigUInt64LE(EG_TS, EventLayout.egTs);
  const tcp = { src: '10.68.235.10', dst: '10.68.235.20', sport: 43512, dport: 80, proto: 6 };
  writeTuple(rec, EventLayout.preNat, e.preNat ?? tcp);
  writeTuple(rec, EventLayout.postNat, e.postNat ?? tcp);
  sample.copy(rec, EventLayout.size);
  return rec;
}

/** An EventView on the first record of a batch made of `records`. */
function viewOf(...records: Buffer[]): EventView {
  const v = new EventView().reset(frameBatch(records));
  assert.equal(v.next(), true);
  return v;
}

// ----- independent checksum helpers (full recomputation) -----

function sum16(b: Buffer, start: number, end: number): number {
  let s = 0;
  for (let i = start; i < end; i += 2) s += (b[i] << 8) | (i + 1 < end ? b[i + 1] : 0);
  return s;
}
function finish(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}
/** IPv4 header checksum computed from scratch (field treated as zero). */
function ipv4HeaderChecksum(pkt: Buffer, ip: number): number {
  const h = Buffer.from(pkt.subarray(ip, ip + (pkt[ip] & 0x0f) * 4));
  h.writeUInt16BE(0, 10);
  return finish(sum16(h, 0, h.length));
}
/** TCP/UDP/ICMPv6 checksum from scratch over pseudo-header + segment (field treated as zero). */
function l4Checksum(pkt: Buffer, ipv6: boolean, addrOff: number, l4: number, end: number, proto: number, csumAt: number): number {
  const seg = Buffer.from(pkt.subarray(l4, end));
  seg.writeUInt16BE(0, csumAt);
  const addrLen = ipv6 ? 32 : 8;
  return finish(sum16(pkt, addrOff, addrOff + addrLen) + proto + seg.length + sum16(seg, 0, seg.length));
}
function icmpv4Checksum(pkt: Buffer, l4: number, end: number): number {
  const seg = Buffer.from(pkt.subarray(l4, end));
  seg.writeUInt16BE(0, 2);
  return finish(sum16(seg, 0, seg.length));
}
/** Bitwise CRC32c, no table: an independent check of the encoder's. */
function crc32cBitwise(b: Buffer): number {
  let c = 0xffffffff;
  for (const byte of b) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

// ----- packet builders (checksums computed with the helpers above) -----

const ETH_V4 = hex('6a3f2e112233 0e8d4caabbcc 0800');
const ETH_V6 = hex('6a3f2e112233 0e8d4caabbcc 86dd');

function ipv4Packet(src: string, dst: string, proto: number, l4: Buffer): Buffer {
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + l4.length, 2);
  ip.writeUInt16BE(0x1c46, 4);
  ip.writeUInt16BE(0x4000, 6);
  ip[8] = 64;
  ip[9] = proto;
  Buffer.from(ipaddr.parse(src).toByteArray()).copy(ip, 12);
  Buffer.from(ipaddr.parse(dst).toByteArray()).copy(ip, 16);
  const frame = Buffer.concat([ETH_V4, ip, l4]);
  frame.writeUInt16BE(ipv4HeaderChecksum(frame, 14), 24);
  return frame;
}

function tcpSegment(sport: number, dport: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt32BE(0x1a2b3c4d, 4);
  h.writeUInt32BE(0x5e6f7081, 8);
  h.writeUInt16BE(0x5018, 12);
  h.writeUInt16BE(502, 14);
  return Buffer.concat([h, payload]);
}

function udpDatagram(sport: number, dport: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt16BE(8 + payload.length, 4);
  return Buffer.concat([h, payload]);
}

/** Fills in the L4 checksum of a finished IPv4 frame (ip at 14). */
function sealIpv4L4(frame: Buffer): Buffer {
  const l4 = 14 + (frame[14] & 0x0f) * 4;
  const proto = frame[23];
  const at = proto === 6 ? 16 : proto === 17 ? 6 : 2;
  const csum = proto === 1 ? icmpv4Checksum(frame, l4, frame.length) : l4Checksum(frame, false, 26, l4, frame.length, proto, at);
  frame.writeUInt16BE(csum, l4 + at);
  return frame;
}

function ipv6Packet(src: string, dst: string, next: number, rest: Buffer): Buffer {
  const ip = Buffer.alloc(40);
  ip.writeUInt32BE(0x60000000, 0);
  ip.writeUInt16BE(rest.length, 4);
  ip[6] = next;
  ip[7] = 64;
  Buffer.from(ipaddr.parse(src).toByteArray()).copy(ip, 8);
  Buffer.from(ipaddr.parse(dst).toByteArray()).copy(ip, 24);
  return Buffer.concat([ETH_V6, ip, rest]);
}

const PAYLOAD = Buffer.from('GET /index.html HTTP/1.1\r\nHost: svc\r\n\r\n');

test('flow report of the reference scenario matches §4.1 byte for byte', () => {
  const v = viewOf(eventRecord(INNER_FRAME));
  const out = Buffer.alloc(256, 0x77);
  const n = encodeFlowReport(v, out, 0, ID, 42, false);
  assert.equal(n, 82);
  assert.deepEqual(out.subarray(0, n), FLOW_REPORT_VECTOR);
  assert.equal(out[n], 0x77, 'nothing written past the report');
});

test('a segment sampled with only the pseudo-header sum (checksum offload) gets its real checksum', () => {
  // The §4 TCP ACK as TC egress would see it under checksum offload: the checksum field holds the
  // folded pseudo-header sum, not the final checksum.
  const partial = Buffer.from(INNER_FRAME);
  const pseudo = (0x0a44 + 0xeb0a + 0x0a44 + 0xeb14 + 6 + 20) % 0xffff;
  partial.writeUInt16BE(pseudo, 14 + 20 + 16);
  const out = Buffer.alloc(256);
  const n = encodeFlowReport(viewOf(eventRecord(partial)), out, 0, ID, 42, false);
  assert.deepEqual(out.subarray(0, n), FLOW_REPORT_VECTOR, 'the report carries the valid checksum 0xf385');
});

test('drop report of the reference scenario matches §4.2 byte for byte', () => {
  const v = viewOf(eventRecord(INNER_FRAME, { type: EVENT_DROP, egIfindex: 0, dropReason: 12 }));
  const out = Buffer.alloc(256);
  const n = encodeDropReport(v, out, 0, ID, 43, 80, false);
  assert.equal(n, 78);
  assert.deepEqual(out.subarray(0, n), DROP_REPORT_VECTOR);
});

test('encodeReport picks the kind by event type and maps the kernel drop reason', () => {
  const table = buildDropCodeTable([
    { name: 'NOT_SPECIFIED', value: 2 },
    { name: 'NETFILTER_DROP', value: 12 },
  ]);
  const batch = frameBatch([eventRecord(INNER_FRAME), eventRecord(INNER_FRAME, { type: EVENT_DROP, egIfindex: 0, dropReason: 12 })]);
  const v = new EventView().reset(batch);
  const out = Buffer.alloc(512);
  let off = 0;
  assert.equal(v.next(), true);
  off += encodeReport(v, out, off, ID, 42, false, table);
  assert.equal(v.next(), true);
  off += encodeReport(v, out, off, ID, 43, false, table);
  assert.equal(v.next(), false);
  assert.equal(off, 82 + 78);
  assert.deepEqual(out.subarray(0, 82), FLOW_REPORT_VECTOR);
  assert.deepEqual(out.subarray(82, off), DROP_REPORT_VECTOR);

  // A reason beyond the table, or no table at all, is reported as 0 (unknown).
  for (const table2 of [table, undefined]) {
    const d = viewOf(eventRecord(INNER_FRAME, { type: EVENT_DROP, egIfindex: 0, dropReason: table2 ? 999 : 12 }));
    assert.equal(encodeReport(d, out, 0, ID, 43, false, table2), 78);
    assert.equal(out[21], 0);
  }
});

test('encodeReport names an unexplained drop by its kernel location, as the pipeline does', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ihr-kallsyms-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const kallsyms = join(dir, 'kallsyms');
  writeFileSync(kallsyms, 'ffffffff81000000 T ip_rcv\nffffffff81001000 t ip_error\nffffffff81002000 T ip_forward\n');
  const locations = new DropLocations(kallsyms);
  const table = buildDropCodeTable([{ name: 'NOT_SPECIFIED', value: 2 }, { name: 'NETFILTER_DROP', value: 12 }]);
  const out = Buffer.alloc(256);
  const drop = (reason: number, location: bigint) => {
    const v = viewOf(eventRecord(INNER_FRAME, { type: EVENT_DROP, egIfindex: 0, dropReason: reason }));
    v.buf.writeBigUInt64LE(location, v.off + EventLayout.dropLocation);
    assert.equal(encodeReport(v, out, 0, ID, 43, false, table, locations), 78);
    return out[21];
  };
  // No reason, dropped inside ip_error: no route.
  assert.equal(drop(2, 0xffffffff81001040n), IntDropCode.OUTER_IP_MISS);
  // A known reason wins over the place; a place with no meaning stays unknown.
  assert.equal(drop(12, 0xffffffff81001040n), IntDropCode.ACL_DROP);
  assert.equal(drop(2, 0xffffffff81002040n), 0);
});

test('perf padding after the sample never reaches the report', () => {
  const v = viewOf(eventRecord(INNER_FRAME, { padding: 4 }));
  const out = Buffer.alloc(256);
  const n = encodeFlowReport(v, out, 0, ID, 42, false);
  assert.equal(n, 82);
  assert.deepEqual(out.subarray(0, n), FLOW_REPORT_VECTOR);
});

test('a truncated sample gives a report with exactly the captured bytes', () => {
  const v = viewOf(eventRecord(INNER_FRAME.subarray(0, 40), { padding: 8 }));
  const out = Buffer.alloc(256);
  const n = encodeFlowReport(v, out, 0, ID, 42, false);
  assert.equal(n, 28 + 40);
  assert.deepEqual(out.subarray(0, n), FLOW_REPORT_VECTOR.subarray(0, 68));
});

test('tunnel events report the inner frame only', () => {
  // Outer Ethernet + IPv4 + UDP (dport 4789) + VXLAN, 50 bytes, then the inner frame.
  const outer = Buffer.concat([
    hex('02aaaaaaaaaa 02bbbbbbbbbb 0800'),
    hex('4500 006a 0001 4000 4011 0000 c0a8210b c0a8210c'),
    hex('c350 12b5 0056 0000'),
    hex('08000000 00000100'),
  ]);
  assert.equal(outer.length, 50);
  const v = viewOf(eventRecord(Buffer.concat([outer, INNER_FRAME]), { flags: F_INGRESS | F_TUNNEL, innerOffset: 50, padding: 4 }));
  const out = Buffer.alloc(256);
  const n = encodeFlowReport(v, out, 0, ID, 42, false);
  assert.equal(n, 82);
  assert.deepEqual(out.subarray(0, n), FLOW_REPORT_VECTOR);

  // Without the tunnel flag inner_offset is ignored.
  const plain = viewOf(eventRecord(INNER_FRAME, { innerOffset: 50 }));
  assert.equal(encodeFlowReport(plain, out, 0, ID, 42, false), 82);

  // An inner offset beyond the sample cannot be encoded.
  const bad = viewOf(eventRecord(INNER_FRAME, { flags: F_INGRESS | F_TUNNEL, innerOffset: 55 }));
  assert.equal(encodeFlowReport(bad, out, 0, ID, 42, false), 0);
  assert.equal(encodeDropReport(bad, out, 0, ID, 42, 0, false), 0);
});

test('writes at an offset, masks ports and hw_id, and cuts the inner frame to the room left', () => {
  const v = viewOf(eventRecord(INNER_FRAME, { igIfindex: 0x10007, egIfindex: 0x20002 }));
  const out = Buffer.alloc(80, 0x55);
  const n = encodeFlowReport(v, out, 10, { switchId: 0xc0a8210b, hwId: 0x41 }, 42, false);
  assert.equal(n, 70);
  assert.deepEqual(out.subarray(0, 10), Buffer.alloc(10, 0x55));
  assert.deepEqual(out.subarray(10, 80), FLOW_REPORT_VECTOR.subarray(0, 70));

  assert.equal(encodeFlowReport(v, Buffer.alloc(27), 0, ID, 1, false), 0, 'no room for the headers');
  assert.equal(encodeDropReport(v, Buffer.alloc(23), 0, ID, 1, 0, false), 0, 'no room for the headers');
  assert.equal(encodeFlowReport(v, Buffer.alloc(28), 0, ID, 1, false), 28, 'headers only');
});

test('sequence numbers and timestamps are written as u32', () => {
  const v = viewOf(eventRecord(INNER_FRAME));
  const out = Buffer.alloc(256);
  encodeFlowReport(v, out, 0, ID, 0xffffffff, false);
  assert.equal(out.readUInt32BE(4), 0xffffffff);
  encodeFlowReport(v, out, 0, ID, 2 ** 32 + 5, false);
  assert.equal(out.readUInt32BE(4), 5);
});

// ----- pre-NAT rewrite -----

const SVC_TUPLE = { src: '10.68.235.10', dst: '10.96.0.10', sport: 43512, dport: 80, proto: 6 };
const POD_TUPLE = { src: '10.68.235.10', dst: '10.68.235.20', sport: 43512, dport: 8080, proto: 6 };

function encodeRewritten(sample: Buffer, e: EventSpec): Buffer {
  const v = viewOf(eventRecord(sample, e));
  const out = Buffer.alloc(2048);
  const n = encodeFlowReport(v, out, 0, ID, 1, true);
  return out.subarray(28, n);
}

test('NAT rewrite of IPv4/TCP restores the pre-NAT tuple with valid checksums', () => {
  const frame = sealIpv4L4(ipv4Packet(POD_TUPLE.src, POD_TUPLE.dst, 6, tcpSegment(43512, 8080, PAYLOAD)));
  const inner = encodeRewritten(frame, { flags: F_INGRESS | F_NAT, preNat: SVC_TUPLE, postNat: POD_TUPLE });
  assert.equal(inner.length, frame.length);
  assert.deepEqual([...inner.subarray(26, 34)], [10, 68, 235, 10, 10, 96, 0, 10]);
  assert.equal(inner.readUInt16BE(34), 43512);
  assert.equal(inner.readUInt16BE(36), 80);
  assert.equal(inner.readUInt16BE(24), ipv4HeaderChecksum(inner, 14));
  assert.equal(inner.readUInt16BE(50), l4Checksum(inner, false, 26, 34, inner.length, 6, 16));
  // Everything else is untouched.
  assert.deepEqual(inner.subarray(54), frame.subarray(54));
  assert.deepEqual(inner.subarray(0, 24), frame.subarray(0, 24));
});

test('NAT rewrite of a truncated sample gives the checksums of the whole packet', () => {
  const frame = sealIpv4L4(ipv4Packet(POD_TUPLE.src, POD_TUPLE.dst, 6, tcpSegment(43512, 8080, PAYLOAD)));
  const e = { flags: F_INGRESS | F_NAT, preNat: SVC_TUPLE, postNat: POD_TUPLE };
  const whole = encodeRewritten(frame, e);
  const cut = encodeRewritten(frame.subarray(0, 60), e);
  assert.equal(cut.length, 60);
  assert.deepEqual(cut, whole.subarray(0, 60));
});

test('NAT rewrite of IPv4/UDP keeps checksum 0 as 0 and updates a real one', () => {
  const pre = { src: '10.68.235.10', dst: '10.96.0.10', sport: 5353, dport: 53, proto: 17 };
  const post = { src: '10.68.235.10', dst: '10.68.235.30', sport: 5353, dport: 5353, proto: 17 };
  const dns = Buffer.from('0102010000010000000000000376656e0000010001', 'hex');

  const noCsum = ipv4Packet(post.src, post.dst, 17, udpDatagram(5353, 5353, dns));
  const a = encodeRewritten(noCsum, { preNat: pre, postNat: post });
  assert.equal(a.readUInt16BE(34 + 2), 53);
  assert.equal(a.readUInt16BE(34 + 6), 0);
  assert.equal(a.readUInt16BE(24), ipv4HeaderChecksum(a, 14));

  const withCsum = sealIpv4L4(ipv4Packet(post.src, post.dst, 17, udpDatagram(5353, 5353, dns)));
  const b = encodeRewritten(withCsum, { preNat: pre, postNat: post });
  assert.equal(b.readUInt16BE(40), l4Checksum(b, false, 26, 34, b.length, 17, 6));
  assert.notEqual(b.readUInt16BE(40), 0);
});

test('NAT rewrite of ICMP echo restores the identifier', () => {
  const pre = { src: '10.68.235.10', dst: '10.96.0.10', sport: 0x1234, dport: 0, proto: 1, icmpType: 8 };
  const post = { src: '10.68.235.10', dst: '10.68.235.20', sport: 0x4321, dport: 0, proto: 1, icmpType: 8 };
  const echo = Buffer.concat([hex('0800 0000 4321 0001'), Buffer.from('ping-payload')]);
  const frame = sealIpv4L4(ipv4Packet(post.src, post.dst, 1, echo));
  const inner = encodeRewritten(frame, { preNat: pre, postNat: post });
  assert.equal(inner.readUInt16BE(38), 0x1234);
  assert.equal(inner.readUInt16BE(36), icmpv4Checksum(inner, 34, inner.length));
  assert.equal(inner.readUInt16BE(24), ipv4HeaderChecksum(inner, 14));
});

test('NAT rewrite of SCTP recomputes the CRC32c when the whole packet was captured', () => {
  assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
  const pre = { src: '10.68.235.10', dst: '10.96.0.10', sport: 36412, dport: 38412, proto: 132 };
  const post = { src: '10.68.235.10', dst: '10.68.235.40', sport: 36412, dport: 9999, proto: 132 };
  // common header (ports, tag, crc) + one DATA chunk
  const sctp = Buffer.concat([hex('8e3c 270f 0000abcd 00000000'), hex('0003 0014 00000001 0000 0000 00000000 61626364')]);
  const frame = ipv4Packet(post.src, post.dst, 132, sctp);
  frame.writeUInt32LE(crc32cBitwise(frame.subarray(34)), 34 + 8);
  const inner = encodeRewritten(frame, { preNat: pre, postNat: post });
  assert.equal(inner.readUInt16BE(36), 38412);
  const check = Buffer.from(inner.subarray(34));
  const stored = check.readUInt32LE(8);
  check.writeUInt32LE(0, 8);
  assert.equal(stored, crc32cBitwise(check));
  assert.equal(inner.readUInt16BE(24), ipv4HeaderChecksum(inner, 14));

  // Not fully captured: ports rewritten, CRC left as it was.
  const cut = encodeRewritten(frame.subarray(0, 50), { preNat: pre, postNat: post });
  assert.equal(cut.readUInt16BE(36), 38412);
  assert.equal(cut.readUInt32LE(42), frame.readUInt32LE(42));
});

test('NAT rewrite of IPv6/TCP behind extension headers keeps the checksum valid', () => {
  const pre = { src: 'fd00:10:244::a', dst: 'fd00:10:96::10', sport: 43512, dport: 80, proto: 6 };
  const post = { src: 'fd00:10:244::a', dst: 'fd00:10:244:1::14', sport: 43512, dport: 8080, proto: 6 };
  const hopByHop = hex('3c00 0104 00000000'); // next = dest options (60), PadN
  const destOpts = hex('0600 0104 00000000'); // next = TCP
  const seg = tcpSegment(43512, 8080, PAYLOAD);
  const frame = ipv6Packet(post.src, post.dst, 0, Buffer.concat([hopByHop, destOpts, seg]));
  const l4 = 14 + 40 + 16;
  frame.writeUInt16BE(l4Checksum(frame, true, 22, l4, frame.length, 6, 16), l4 + 16);

  const inner = encodeRewritten(frame, { preNat: pre, postNat: post });
  assert.equal(ipaddr.fromByteArray([...inner.subarray(38, 54)]).toString(), 'fd00:10:96::10');
  assert.equal(inner.readUInt16BE(l4 + 2), 80);
  assert.equal(inner.readUInt16BE(l4 + 16), l4Checksum(inner, true, 22, l4, inner.length, 6, 16));
});

test('NAT rewrite of IPv6/UDP and ICMPv6 echo keeps checksums valid', () => {
  const pre = { src: 'fd00::1', dst: 'fd00:96::53', sport: 40000, dport: 53, proto: 17 };
  const post = { src: 'fd00::1', dst: 'fd00:244::35', sport: 40000, dport: 5353, proto: 17 };
  const udp = udpDatagram(40000, 5353, Buffer.from('query'));
  const frame = ipv6Packet(post.src, post.dst, 17, udp);
  frame.writeUInt16BE(l4Checksum(frame, true, 22, 54, frame.length, 17, 6), 60);
  const inner = encodeRewritten(frame, { preNat: pre, postNat: post });
  assert.equal(inner.readUInt16BE(56), 53);
  assert.equal(inner.readUInt16BE(60), l4Checksum(inner, true, 22, 54, inner.length, 17, 6));

  const pre6 = { src: 'fd00::1', dst: 'fd00:96::1', sport: 7, dport: 0, proto: 58, icmpType: 128 };
  const post6 = { src: 'fd00::1', dst: 'fd00:244::2', sport: 9, dport: 0, proto: 58, icmpType: 128 };
  const echo = Buffer.concat([hex('8000 0000 0009 0001'), Buffer.from('abc')]);
  const f6 = ipv6Packet(post6.src, post6.dst, 58, echo);
  f6.writeUInt16BE(l4Checksum(f6, true, 22, 54, f6.length, 58, 2), 56);
  const i6 = encodeRewritten(f6, { preNat: pre6, postNat: post6 });
  assert.equal(i6.readUInt16BE(58), 7);
  assert.equal(i6.readUInt16BE(56), l4Checksum(i6, true, 22, 54, i6.length, 58, 2));
});

test('NAT rewrite skips VLAN tags, and is not done without ingress metadata or on a version mismatch', () => {
  const frame = sealIpv4L4(ipv4Packet(POD_TUPLE.src, POD_TUPLE.dst, 6, tcpSegment(43512, 8080, PAYLOAD)));
  const tagged = Buffer.concat([frame.subarray(0, 12), hex('8100 0064'), frame.subarray(12)]);
  const inner = encodeRewritten(tagged, { preNat: SVC_TUPLE, postNat: POD_TUPLE });
  assert.deepEqual([...inner.subarray(34, 38)], [10, 96, 0, 10]);
  assert.equal(inner.readUInt16BE(28), ipv4HeaderChecksum(inner, 18));
  assert.equal(inner.readUInt16BE(54), l4Checksum(inner, false, 30, 38, inner.length, 6, 16));

  assert.deepEqual(encodeRewritten(frame, { flags: 0, preNat: SVC_TUPLE, postNat: POD_TUPLE }), frame);
  const v6pre = { src: 'fd00::1', dst: 'fd00::2', sport: 1, dport: 2, proto: 6 };
  assert.deepEqual(encodeRewritten(frame, { preNat: v6pre, postNat: POD_TUPLE }), frame);

  // The batch itself is never modified.
  const batch = frameBatch([eventRecord(frame, { preNat: SVC_TUPLE, postNat: POD_TUPLE })]);
  const before = Buffer.from(batch);
  const v = new EventView().reset(batch);
  v.next();
  encodeFlowReport(v, Buffer.alloc(512), 0, ID, 1, true);
  assert.deepEqual(batch, before);
});

test('rewriteInnerTuple refuses what it cannot parse', () => {
  const tuple = Buffer.alloc(40);
  writeTuple(tuple, 0, SVC_TUPLE);
  const arp = Buffer.concat([hex('ffffffffffff 0e8d4caabbcc 0806'), Buffer.alloc(28)]);
  assert.equal(rewriteInnerTuple(arp, 0, arp.length, tuple, 0), false);
  assert.equal(rewriteInnerTuple(INNER_FRAME, 0, 30, tuple, 0), false, 'IPv4 header cut short');
  const copy = Buffer.from(INNER_FRAME);
  assert.equal(rewriteInnerTuple(copy, 0, copy.length, tuple, 0), true);
  assert.deepEqual([...copy.subarray(30, 34)], [10, 96, 0, 10]);
});
