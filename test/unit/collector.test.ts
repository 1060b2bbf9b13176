// The built-in collector: decoding of the reference's §4 vectors, inner packets of every
// supported kind, rejection of malformed datagrams, and the socket and CLI over real loopback UDP.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { decodeReport, type DecodedReport } from '../../daemon/collector/decoder';
// The encoder test checks this CRC32c against an independent implementation.
import { crc32c } from '../../daemon/report/encoder';
import { parseListenAddress, runCollectCommand, startCollector, type ListenAddress } from '../../daemon/collector/collector';
import { hex, FLOW_REPORT_VECTOR, DROP_REPORT_VECTOR } from '../fixtures/int-report-vectors';


const FLOW_HEADERS = FLOW_REPORT_VECTOR.subarray(0, 28);

function decodeOk(b: Buffer): DecodedReport {
  const r = decodeReport(b);
  if (!r.ok) assert.fail(`unexpected malformed: ${r.reason}`);
  return r.report;
}

const VECTOR_INNER = {
  dstMac: '6a:3f:2e:11:22:33',
  srcMac: '0e:8d:4c:aa:bb:cc',
  etherType: 0x0800,
  ipVersion: 4,
  src: '10.68.235.10',
  dst: '10.68.235.20',
  protocol: 6,
  ttl: 64,
  srcPort: 43512,
  dstPort: 80,
  ipChecksumValid: true,
  l4ChecksumValid: true,
  truncated: false,
};

test('decodes the §4.1 flow report', () => {
  assert.deepEqual(decodeOk(FLOW_REPORT_VECTOR), {
    kind: 'flow',
    version: 0,
    nproto: 2,
    dropped: false,
    congested: false,
    tracked: true,
    hwId: 1,
    seq: 42,
    ingressTs: 1450744508,
    switchId: 3232243979,
    switchIdIp: '192.168.33.11',
    ingressPort: 7,
    egressPort: 2,
    queueId: 0,
    queueOccupancy: 0,
    egressTs: 1450767964,
    hopLatencyNs: 23456,
    innerLength: 54,
    inner: VECTOR_INNER,
  });
});

test('decodes the §4.2 drop report', () => {
  assert.deepEqual(decodeOk(DROP_REPORT_VECTOR), {
    kind: 'drop',
    version: 0,
    nproto: 1,
    dropped: true,
    congested: false,
    tracked: false,
    hwId: 1,
    seq: 43,
    ingressTs: 1450744508,
    switchId: 3232243979,
    switchIdIp: '192.168.33.11',
    ingressPort: 7,
    egressPort: 0,
    queueId: 0,
    dropReason: 80,
    innerLength: 54,
    inner: VECTOR_INNER,
  });
});

test('hop latency wraps modulo 2^32', () => {
  const b = Buffer.from(FLOW_REPORT_VECTOR);
  b.writeUInt32BE(0xfffffff0, 8);
  b.writeUInt32BE(0x00000010, 24);
  assert.equal(decodeOk(b).hopLatencyNs, 0x20);
});

test('rejects malformed datagrams with a reason', () => {
  const cases: [Buffer, string, RegExp][] = [
    [Buffer.alloc(0), 'short-fixed-header', /0 bytes is shorter than the 12-byte fixed header/],
    [FLOW_REPORT_VECTOR.subarray(0, 11), 'short-fixed-header', /11 bytes/],
    [Buffer.concat([hex('12'), FLOW_REPORT_VECTOR.subarray(1)]), 'bad-version', /version 1 is not 0/],
    [Buffer.concat([hex('03'), FLOW_REPORT_VECTOR.subarray(1)]), 'bad-nproto', /NProto 3/],
    [FLOW_REPORT_VECTOR.subarray(0, 27), 'short-local-header', /27 bytes/],
    [DROP_REPORT_VECTOR.subarray(0, 23), 'short-drop-header', /23 bytes/],
    [FLOW_REPORT_VECTOR.subarray(0, 28 + 13), 'short-inner-ethernet', /13 bytes/],
    [DROP_REPORT_VECTOR.subarray(0, 24), 'short-inner-ethernet', /0 bytes/],
  ];
  for (const [b, code, reason] of cases) {
    const r = decodeReport(b);
    assert.equal(r.ok, false);
    if (!r.ok) {
      assert.equal(r.code, code);
      assert.match(r.reason, reason);
    }
  }
});

test('a report cut inside the inner packet decodes what was captured', () => {
  const r = decodeOk(FLOW_REPORT_VECTOR.subarray(0, 28 + 38));
  assert.deepEqual(r.inner, { ...VECTOR_INNER, l4ChecksumValid: null, truncated: true });
  const ipCut = decodeOk(FLOW_REPORT_VECTOR.subarray(0, 28 + 20));
  assert.equal(ipCut.inner.truncated, true);
  assert.equal(ipCut.inner.ipVersion, undefined);
});

test('detects bad inner checksums', () => {
  const b = Buffer.from(FLOW_REPORT_VECTOR);
  b[28 + 14 + 10] ^= 0xff; // IPv4 header checksum
  b[28 + 34 + 16] ^= 0x01; // TCP checksum
  const r = decodeOk(b);
  assert.equal(r.inner.ipChecksumValid, false);
  assert.equal(r.inner.l4ChecksumValid, false);
});

test('skips VLAN tags and decodes IPv6/UDP behind an extension header', () => {
  // Ethernet, 802.1ad + 802.1Q tags, IPv6 with a hop-by-hop header, UDP 40000 -> 53 with payload.
  const udp = hex('9c40 0035 000d 0000 7175657279');
  const ext = hex('1100 0104 00000000');
  const ip6 = Buffer.concat([
    hex('60000000'),
    Buffer.from([0, ext.length + udp.length, 0, 64]),
    hex('fd000000000000000000000000000001'),
    hex('fd000096000000000000000000000053'),
  ]);
  const frame = Buffer.concat([hex('6a3f2e112233 0e8d4caabbcc 88a8 0064 8100 00c8 86dd'), ip6, ext, udp]);
  // UDP checksum over the IPv6 pseudo-header, computed by hand here.
  let s = 0;
  const seg = Buffer.concat([udp, Buffer.alloc(1)]);
  for (let i = 0; i < 32; i += 2) s += ip6.readUInt16BE(8 + i);
  s += 17 + udp.length;
  for (let i = 0; i < udp.length; i += 2) s += seg.readUInt16BE(i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  frame.writeUInt16BE(~s & 0xffff, frame.length - udp.length + 6);

  const r = decodeOk(Buffer.concat([FLOW_HEADERS, frame]));
  assert.deepEqual(r.inner, {
    dstMac: '6a:3f:2e:11:22:33',
    srcMac: '0e:8d:4c:aa:bb:cc',
    etherType: 0x86dd,
    vlanIds: [100, 200],
    ipVersion: 6,
    src: 'fd00::1',
    dst: 'fd00:96::53',
    protocol: 17,
    ttl: 64,
    srcPort: 40000,
    dstPort: 53,
    l4ChecksumValid: true,
    truncated: false,
  });
});

test('decodes ICMP echo, SCTP and a UDP datagram without checksum', () => {
  const eth = hex('6a3f2e112233 0e8d4caabbcc 0800');
  const ipv4 = (proto: number, l4: Buffer): Buffer => {
    const ip = hex('4500 0000 0001 0000 40 00 0000 0a000001 0a000002');
    ip[9] = proto;
    ip.writeUInt16BE(20 + l4.length, 2);
    let s = 0;
    for (let i = 0; i < 20; i += 2) s += ip.readUInt16BE(i);
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    ip.writeUInt16BE(~s & 0xffff, 10);
    return Buffer.concat([FLOW_HEADERS, eth, ip, l4]);
  };
  // ICMP echo request id 0x1234 seq 1, checksum computed: ~(0x0800 + 0x1234 + 0x0001)
  const icmp = hex('0800 0000 1234 0001');
  icmp.writeUInt16BE(~(0x0800 + 0x1234 + 0x0001) & 0xffff, 2);
  const i = decodeOk(ipv4(1, icmp)).inner;
  assert.equal(i.protocol, 1);
  assert.equal(i.icmpType, 8);
  assert.equal(i.icmpCode, 0);
  assert.equal(i.icmpId, 0x1234);
  assert.equal(i.l4ChecksumValid, true);
  assert.equal(i.srcPort, undefined);

  // SCTP: CRC32c("\x8e\x3c\x27\x0f\0\0\xab\xcd" + 4 zero bytes) stored little-endian.
  const sctp = hex('8e3c 270f 0000abcd 00000000');
  sctp.writeUInt32LE(crc32c(sctp), 8);
  const sc = decodeOk(ipv4(132, sctp)).inner;
  assert.equal(sc.srcPort, 36412);
  assert.equal(sc.dstPort, 9999);
  assert.equal(sc.l4ChecksumValid, true);
  sctp[11] ^= 1;
  assert.equal(decodeOk(ipv4(132, sctp)).inner.l4ChecksumValid, false);

  const u = decodeOk(ipv4(17, hex('1234 0035 0008 0000'))).inner;
  assert.equal(u.srcPort, 0x1234);
  assert.equal(u.l4ChecksumValid, null);

  // A non-first fragment has no L4 header.
  const frag = ipv4(6, hex('deadbeef'));
  frag.writeUInt16BE(0x0010, 28 + 14 + 6); // offset 16*8
  frag[28 + 14 + 10] = 0;
  frag[28 + 14 + 11] = 0;
  const f = decodeOk(frag).inner;
  assert.equal(f.fragment, true);
  assert.equal(f.srcPort, undefined);
  assert.equal(f.ipChecksumValid, false);
});

test('parseListenAddress accepts IPv4 and bracketed IPv6 literals only', () => {
  assert.deepEqual(parseListenAddress('127.0.0.1:32766'), { host: '127.0.0.1', port: 32766, family: 4 });
  assert.deepEqual(parseListenAddress('[::1]:0'), { host: '::1', port: 0, family: 6 });
  assert.throws(() => parseListenAddress('localhost:1'), /not an IPv4 or IPv6 literal/);
  assert.throws(() => parseListenAddress('::1:5'), /not ADDR:PORT/);
  assert.throws(() => parseListenAddress('1.2.3.4:70000'), /port 70000/);
  assert.throws(() => parseListenAddress('1.2.3.4'), /not ADDR:PORT/);
});

async function sendAll(family: 4 | 6, to: ListenAddress, datagrams: Buffer[]): Promise<void> {
  const client = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
  try {
    for (const d of datagrams) await new Promise<void>((res, rej) => client.send(d, to.port, to.host, (e) => (e ? rej(e) : res())));
  } finally {
    await new Promise<void>((res) => client.close(() => res()));
  }
}

async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

for (const [family, listen] of [
  [4, '127.0.0.1:0'],
  [6, '[::1]:0'],
] as const) {
  test(`collector receives, decodes and counts reports over UDP on ${listen}`, async () => {
    const reports: DecodedReport[] = [];
    const malformed: string[] = [];
    const c = await startCollector({ listen, onReport: (r) => reports.push(r), onMalformed: (code) => malformed.push(code) });
    try {
      assert.equal(c.address.host, family === 6 ? '::1' : '127.0.0.1');
      assert.ok(c.address.port > 0, 'an ephemeral port was bound');
      const other = Buffer.from(FLOW_REPORT_VECTOR);
      other.writeUInt32BE(0x0a000001, 12);
      await sendAll(family, c.address, [FLOW_REPORT_VECTOR, DROP_REPORT_VECTOR, Buffer.from('junk'), other, Buffer.alloc(0)]);
      await until(() => reports.length + malformed.length === 5);
      assert.deepEqual(reports.map((r) => [r.kind, r.seq, r.switchIdIp]), [
        ['flow', 42, '192.168.33.11'],
        ['drop', 43, '192.168.33.11'],
        ['flow', 42, '10.0.0.1'],
      ]);
      assert.deepEqual(malformed, ['short-fixed-header', 'short-fixed-header']);
      assert.deepEqual(c.stats, {
        reports: 3,
        byKind: { flow: 2, drop: 1 },
        bySwitchId: { '3232243979': 2, '167772161': 1 },
        malformed: 2,
        malformedByCode: { 'short-fixed-header': 2 },
      });
    } finally {
      await c.close();
    }
  });
}

test('startCollector reports a bind failure clearly', async () => {
  const c = await startCollector({ listen: '127.0.0.1:0', onReport: () => {} });
  try {
    await assert.rejects(startCollector({ listen: `127.0.0.1:${c.address.port}`, onReport: () => {} }), /collector cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
  } finally {
    await c.close();
  }
});

function captureIo() {
  const out: string[] = [];
  const err: string[] = [];
  let listening!: (a: ListenAddress) => void;
  const address = new Promise<ListenAddress>((r) => (listening = r));
  return {
    out,
    err,
    address,
    io: { stdout: { write: (t: string) => out.push(t) }, stderr: { write: (t: string) => err.push(t) }, signals: [] as NodeJS.Signals[], onListening: (a: ListenAddress) => listening(a) },
  };
}

test('collect command prints one JSON line per report and a summary after --count', async () => {
  const cap = captureIo();
  const run = runCollectCommand(['collect', '--listen', '127.0.0.1:0', '--count', '2'], cap.io);
  const address = await cap.address;
  await sendAll(4, address, [Buffer.from('bad'), FLOW_REPORT_VECTOR, DROP_REPORT_VECTOR]);
  assert.equal(await run, 0);
  const lines = cap.out.join('').trimEnd().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, 3);
  assert.deepEqual(lines[0], decodeOk(FLOW_REPORT_VECTOR));
  assert.deepEqual(lines[1], decodeOk(DROP_REPORT_VECTOR));
  assert.deepEqual(lines[2], {
    kind: 'summary',
    reports: 2,
    byKind: { flow: 1, drop: 1 },
    bySwitchId: { '3232243979': 2 },
    malformed: 1,
    malformedByCode: { 'short-fixed-header': 1 },
  });
  const errLines = cap.err.join('').trimEnd().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(errLines[0], { kind: 'listening', address: '127.0.0.1', port: address.port });
  assert.equal(errLines[1].kind, 'malformed');
  assert.equal(errLines[1].code, 'short-fixed-header');
});

test('collect command stops at --timeout-ms and on a signal', async () => {
  const cap = captureIo();
  assert.equal(await runCollectCommand(['--listen=[::1]:0', '--timeout-ms', '30'], cap.io), 0);
  assert.deepEqual(JSON.parse(cap.out.join('')), { kind: 'summary', reports: 0, byKind: {}, bySwitchId: {}, malformed: 0, malformedByCode: {} });

  const sig = captureIo();
  sig.io.signals = ['SIGUSR2'];
  const run = runCollectCommand(['--listen', '127.0.0.1:0'], sig.io);
  await sig.address;
  process.kill(process.pid, 'SIGUSR2');
  assert.equal(await run, 0);
  assert.equal(JSON.parse(sig.out.join('')).kind, 'summary');
  assert.equal(process.listenerCount('SIGUSR2'), 0, 'signal handlers removed');
});

test('collect command rejects bad arguments with exit code 2', async () => {
  for (const [argv, message] of [
    [['--listen', 'nowhere'], /listen address "nowhere" is not ADDR:PORT/],
    [['--count', '0'], /--count must be a positive integer, not "0"/],
    [['--timeout-ms'], /--timeout-ms needs a value/],
    [['--bogus'], /unknown argument "--bogus"/],
  ] as const) {
    const cap = captureIo();
    assert.equal(await runCollectCommand(argv, cap.io), 2);
    assert.match(cap.err.join(''), message);
    assert.match(cap.err.join(''), /usage: int-host-reporter collect/);
    assert.equal(cap.out.length, 0);
  }
});
