// The datapath on a real node topology: events for every protocol and path, with the exact
// ports (ifindexes), tuples and timestamps the traffic implies, and the flow filter's cadence.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as bpf from '../../bpf/index';
import { withScope, createNode, overlayEndpoint, runIn, type Endpoint } from '../helpers/netns';
import { udpFlow, tcpFlow, icmpEcho, sctpInit, addrOf, type Family } from '../helpers/traffic';
import { DatapathFixture, type ExpectedTuple } from '../helpers/datapath';
import { IPPROTO } from '../../bpf/events';

/** Asserts the one event of a flow direction: ports, tuple (no NAT here), timestamps. */
function assertTrace(ev: bpf.DatapathEvent | undefined, t: ExpectedTuple, ingress: number, egress: number, family: Family) {
  assert.ok(ev, `an event for ${JSON.stringify(t)}`);
  assert.equal(ev.type, 'trace');
  assert.equal(ev.ingressIfindex, ingress, 'ingress port = the ifindex the packet came in on');
  assert.equal(ev.egressIfindex, egress, 'egress port = the ifindex the packet left by');
  assert.equal(ev.postNat.ipVersion, family);
  assert.deepEqual(
    { src: ev.postNat.src, dst: ev.postNat.dst, protocol: ev.postNat.protocol },
    { src: t.src, dst: t.dst, protocol: t.protocol },
  );
  if (t.srcPort !== undefined) assert.equal(ev.postNat.srcPort, t.srcPort);
  if (t.dstPort !== undefined) assert.equal(ev.postNat.dstPort, t.dstPort);
  assert.deepEqual(ev.preNat, ev.postNat, 'no NAT on this path');
  assert.equal(ev.flags & bpf.F_NAT, 0);
  assert.equal(ev.flags & bpf.F_INGRESS, bpf.F_INGRESS);
  assert.ok(ev.ingressTs <= ev.egressTs, 'ingress ts <= egress ts');
  assert.ok(ev.egressTs - ev.ingressTs < 1_000_000_000n, 'hop latency is below a second');
  assert.equal(ev.sample.length, Math.min(ev.packetLength, 128), 'the sample is the first 128 bytes');
  // The sample is the packet itself: its IP header carries the same addresses.
  const ethType = ev.sample.readUInt16BE(12);
  assert.equal(ethType, family === 4 ? 0x0800 : 0x86dd);
}

/** Every protocol in both families between two endpoints; returns nothing, asserts everything. */
async function everyProtocol(
  scope: Parameters<Parameters<typeof withScope>[0]>[0],
  dp: DatapathFixture,
  a: Endpoint,
  b: Endpoint,
  aPort: number,
  bPort: number,
) {
  for (const family of [4, 6] as const) {
    const src = addrOf(a, family);
    const dst = addrOf(b, family);

    const udp = await udpFlow(scope, { from: a, to: b, family, sport: 41000 + family, count: 3 });
    assert.equal(udp.received.packets, 3);
    const u = await dp.waitFor({ src, dst, protocol: IPPROTO.UDP, srcPort: udp.sport, dstPort: udp.dport });
    assert.equal(u.length, 1, 'three datagrams within a second: one event');
    assertTrace(u[0], { src, dst, protocol: IPPROTO.UDP, srcPort: udp.sport, dstPort: udp.dport }, aPort, bPort, family);

    const tcp = await tcpFlow(scope, { from: a, to: b, family, count: 2 });
    const there = await dp.waitFor({ src, dst, protocol: IPPROTO.TCP, srcPort: tcp.sport, dstPort: tcp.dport });
    const back = await dp.waitFor({ src: dst, dst: src, protocol: IPPROTO.TCP, srcPort: tcp.dport, dstPort: tcp.sport });
    assertTrace(there[0], { src, dst, protocol: IPPROTO.TCP, srcPort: tcp.sport, dstPort: tcp.dport }, aPort, bPort, family);
    assertTrace(back[0], { src: dst, dst: src, protocol: IPPROTO.TCP, srcPort: tcp.dport, dstPort: tcp.sport }, bPort, aPort, family);
    // The first event of the connection is its SYN (flags byte of the sampled TCP header).
    const l4 = 14 + (family === 4 ? 20 : 40);
    assert.equal(there[0].sample[l4 + 13] & 0x12, 0x02, 'first event: SYN');
    assert.equal(back[0].sample[l4 + 13] & 0x12, 0x12, 'first event back: SYN-ACK');

    const icmpProto = family === 4 ? IPPROTO.ICMP : IPPROTO.ICMPV6;
    const echo = await icmpEcho(scope, { from: a, to: b, family, count: 2, intervalMs: 50 });
    assert.equal(echo.received, 2);
    // By type: between bridged IPv6 pods, neighbour discovery is ICMPv6 too.
    const req = await dp.waitFor({ src, dst, protocol: icmpProto, icmpType: family === 4 ? 8 : 128 });
    const rep = await dp.waitFor({ src: dst, dst: src, protocol: icmpProto, icmpType: family === 4 ? 0 : 129 });
    assertTrace(req[0], { src, dst, protocol: icmpProto, srcPort: echo.id, dstPort: 0 }, aPort, bPort, family);
    assertTrace(rep[0], { src: dst, dst: src, protocol: icmpProto, srcPort: echo.id, dstPort: 0 }, bPort, aPort, family);
    assert.deepEqual([req[0].postNat.icmpType, req[0].postNat.icmpCode], [family === 4 ? 8 : 128, 0]);
    assert.deepEqual([rep[0].postNat.icmpType, rep[0].postNat.icmpCode], [family === 4 ? 0 : 129, 0]);

    const sctp = await sctpInit(scope, { from: a, to: b, family, sport: 5000 + family, dport: 38412, count: 2 });
    assert.equal(sctp.arrived?.length, 2, 'the SCTP INITs crossed the node');
    const s = await dp.waitFor({ src, dst, protocol: IPPROTO.SCTP, srcPort: 5000 + family, dstPort: 38412 });
    assert.equal(s.length, 1);
    assertTrace(s[0], { src, dst, protocol: IPPROTO.SCTP, srcPort: 5000 + family, dstPort: 38412 }, aPort, bPort, family);
  }
}

for (const style of ['routed', 'bridged'] as const) {
  test(`pod to pod (${style}): TCP, UDP, SCTP, ICMP, ICMPv6 over IPv4 and IPv6`, async () => {
    await withScope(async (scope) => {
      const { dp, a, b } = await DatapathFixture.twoPods(scope, {}, style);
      await everyProtocol(scope, dp, a, b, a.hostIfindex, b.hostIfindex);
      const c = dp.counters();
      assert.equal(c.events_lost, 0n);
      assert.equal(dp.lost, 0);
    });
  });
}

test('pod to remote and remote to pod through the data interface', async () => {
  await withScope(async (scope) => {
    const node = await createNode(scope);
    const pod = await node.addPod();
    const remote = await node.addRemote();
    const dp = DatapathFixture.start(scope);
    dp.attachPod(pod);
    dp.attachDataInterface(remote);
    // pod -> remote: in on the pod's veth, out on the data interface; and the replies back.
    await everyProtocol(scope, dp, pod, remote, pod.hostIfindex, remote.dataIfindex);
    // remote -> pod: the connection starts on the remote side.
    for (const family of [4, 6] as const) {
      const src = addrOf(remote, family);
      const dst = addrOf(pod, family);
      const udp = await udpFlow(scope, { from: remote, to: pod, family, sport: 42000 + family });
      const e = await dp.waitFor({ src, dst, protocol: IPPROTO.UDP, srcPort: udp.sport, dstPort: udp.dport });
      assertTrace(e[0], { src, dst, protocol: IPPROTO.UDP, srcPort: udp.sport, dstPort: udp.dport }, remote.dataIfindex, pod.hostIfindex, family);
      assert.equal(e[0].flags & bpf.F_TUNNEL, 0);
    }
  });
});

for (const tunnel of [{ port: 4789 }, { port: 8472 }] as const) {
test(`VXLAN on UDP ${tunnel.port} at the data interface: events describe the inner packet, both directions`, async () => {
  await withScope(async (scope) => {
    const node = await createNode(scope);
    const pod = await node.addPod();
    const remote = await node.addRemote({ vxlan: { port: tunnel.port } });
    const overlay = overlayEndpoint(remote);
    const dp = DatapathFixture.start(scope);
    dp.attachPod(pod);
    dp.attachDataInterface(remote);
    for (const family of [4, 6] as const) {
      const src = addrOf(pod, family);
      const dst = addrOf(overlay, family);
      const udp = await udpFlow(scope, { from: pod, to: overlay, family, sport: 43000 + family, count: 2 });
      assert.equal(udp.received.packets, 2);
      const out = await dp.waitFor({ src, dst, protocol: IPPROTO.UDP, srcPort: udp.sport, dstPort: udp.dport });
      // The first datagram may wait for neighbour resolution on the overlay; its hop latency then
      // lands in another bucket than the second's, which the filter reports as well.
      assert.ok(out.length === 1 || (out.length === 2 && DatapathFixture.bucket(out[0]) !== DatapathFixture.bucket(out[1])), `one event, or two in different latency buckets (got ${out.length})`);
      const ev = out[0];
      assert.equal(ev.ingressIfindex, pod.hostIfindex);
      assert.equal(ev.egressIfindex, remote.dataIfindex, 'left by the data interface, encapsulated');
      assert.equal(ev.flags & bpf.F_TUNNEL, bpf.F_TUNNEL);
      // Outer Ethernet + IPv4 (the underlay is IPv4) + UDP + VXLAN.
      assert.equal(ev.innerOffset, 14 + 20 + 8 + 8);
      assert.equal(ev.sample.readUInt16BE(14 + 20 + 2), tunnel.port, 'the sample starts with the outer headers');
      assert.equal(ev.sample.readUInt16BE(ev.innerOffset + 12), family === 4 ? 0x0800 : 0x86dd);
      assert.deepEqual(ev.preNat, ev.postNat);

      const back = await udpFlow(scope, { from: overlay, to: pod, family, sport: 44000 + family });
      const inn = await dp.waitFor({ src: dst, dst: src, protocol: IPPROTO.UDP, srcPort: back.sport, dstPort: back.dport });
      assert.ok(inn.length >= 1, 'an event for the way back');
      assert.equal(inn[0].ingressIfindex, remote.dataIfindex, 'came in on the data interface, encapsulated');
      assert.equal(inn[0].egressIfindex, pod.hostIfindex);
      assert.equal(inn[0].flags & bpf.F_TUNNEL, 0, 'leaves the pod veth decapsulated');
      assert.equal(inn[0].preNat.src, dst, 'ingress recorded the inner tuple');
    }
  });
});
}

test('flow filter: a burst gives one event, a new latency bucket a new one', async () => {
  await withScope(async (scope) => {
    // One latency bucket for every packet (2^40 ns) and an interval of an hour, so that only
    // the bucket written below decides; interval and default quantum have tests of their own.
    const { dp, a, b } = await DatapathFixture.twoPods(scope, { constants: { latency_quantum_ns: 2n ** 40n, report_interval_ns: 3600n * 10n ** 9n } });

    // A burst of 1000 datagrams of one flow.
    const c0 = dp.counters();
    const burst = await udpFlow(scope, { from: a, to: b, family: 4, sport: 45001, count: 1000, size: 16 });
    await dp.settle();
    const t = { src: a.ipv4, dst: b.ipv4, protocol: IPPROTO.UDP, srcPort: 45001, dstPort: burst.dport };
    assert.equal(dp.matching(t).length, 1, 'one event for the burst');
    assert.ok(dp.counters().filtered - c0.filtered >= 999n, 'the other 999 were filtered in the kernel');

    // The flow's filter slot (struct int_flow_slot: the flow key, then last_report_ts at 48 and
    // bucket_lo_ns, the lower bound of the reported latency bucket, at 56): another bucket
    // written there makes the next packet report.
    const flows = dp.obj.map('int_flows');
    const slot = Buffer.alloc(flows.valueSize);
    let index: Buffer | undefined;
    for (const k of flows.keys()) {
      if (flows.lookup(k, slot) && slot.readUInt16BE(32) === 45001 && slot.readUInt32LE(40) === a.hostIfindex) {
        index = k;
        break;
      }
    }
    assert.ok(index, 'the flow has a filter slot');
    await udpFlow(scope, { from: a, to: b, family: 4, sport: 45001, dport: burst.dport, count: 1 });
    await dp.settle();
    assert.equal(dp.matching(t).length, 1, 'same bucket, within the interval: no event');
    assert.ok(flows.lookup(index, slot), 'the slot is still there');
    assert.equal(slot.readBigUInt64LE(56), 0n, 'every latency here is in the first 2^40 ns bucket');
    slot.writeBigUInt64LE(1000n * 2n ** 40n, 56);
    flows.update(index, slot);
    await udpFlow(scope, { from: a, to: b, family: 4, sport: 45001, dport: burst.dport, count: 1 });
    const after = await dp.waitFor(t, 2);
    assert.equal(after.length, 2, 'another latency bucket: a new event');
  });
});

test('flow filter: a flow kept alive for 3 s at the default interval gives about three events', async () => {
  await withScope(async (scope) => {
    const { dp, a, b } = await DatapathFixture.twoPods(scope, { constants: { latency_quantum_ns: 2n ** 40n } });
    // One TCP connection kept alive for 3 s, a write every 50 ms: one event per second.
    const tcp = await tcpFlow(scope, { from: a, to: b, family: 4, durationMs: 3000, intervalMs: 50 });
    await dp.settle();
    const ev = dp.matching({ src: a.ipv4, dst: b.ipv4, protocol: IPPROTO.TCP, srcPort: tcp.sport, dstPort: tcp.dport });
    assert.ok(ev.length >= 3 && ev.length <= 4, `3 s at a 1 s interval gives about three events (got ${ev.length})`);
    for (let i = 1; i < ev.length; i++) {
      assert.ok(ev[i].egressTs - ev[i - 1].egressTs >= 1_000_000_000n, 'events of a flow are an interval apart');
    }
  });
});

test('flow filter at the default quantum: within an interval, a flow reports only on a new latency bucket', async () => {
  await withScope(async (scope) => {
    const { dp, a, b } = await DatapathFixture.twoPods(scope);
    const tcp = await tcpFlow(scope, { from: a, to: b, family: 4, durationMs: 2500, intervalMs: 20 });
    await dp.settle();
    const ev = dp.matching({ src: a.ipv4, dst: b.ipv4, protocol: IPPROTO.TCP, srcPort: tcp.sport, dstPort: tcp.dport });
    assert.ok(ev.length >= 3, 'the first packet, then at least one per second');
    for (let i = 1; i < ev.length; i++) {
      const gap = ev[i].egressTs - ev[i - 1].egressTs;
      const bucketMoved = DatapathFixture.bucket(ev[i]) !== DatapathFixture.bucket(ev[i - 1]);
      assert.ok(gap >= 1_000_000_000n || bucketMoved, `event ${i}: an interval later, or another 2^16 ns latency bucket`);
    }
  });
});

test('load-time constants: interval 0 reports every packet', async () => {
  await withScope(async (scope) => {
    const { dp, a, b } = await DatapathFixture.twoPods(scope, { constants: { report_interval_ns: 0n, sample_bytes: 64 } });
    const udp = await udpFlow(scope, { from: a, to: b, family: 4, sport: 46001, count: 50, size: 200 });
    const ev = await dp.waitFor({ src: a.ipv4, dst: b.ipv4, protocol: IPPROTO.UDP, srcPort: 46001, dstPort: udp.dport }, 50);
    assert.equal(ev.length, 50);
    assert.ok(ev.every((e) => e.sample.length === 64), 'sample_bytes = 64');
  });
});

test('Geneve (with options) at the data interface: ingress records the inner tuple', async () => {
  await withScope(async (scope) => {
    // This kernel has no geneve driver, so the remote sends Geneve-encapsulated datagrams itself
    // (to a closed port on the node): the ingress hook must describe the packet inside.
    const node = await createNode(scope);
    const remote = await node.addRemote();
    const dp = DatapathFixture.start(scope);
    dp.attachDataInterface(remote);
    const script = [
      'import socket, struct',
      "inner_ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + 8 + 4, 0x1234, 0, 64, 17, 0, socket.inet_aton('192.0.2.10'), socket.inet_aton('192.0.2.20'))",
      "inner = b'\\x02' * 6 + b'\\x04' * 6 + b'\\x08\\x00' + inner_ip + struct.pack('!HHHH', 40001, 40002, 12, 0) + b'abcd'",
      "opt = struct.pack('!HBB', 0x0102, 0x03, 1) + b'\\x00' * 4",  // one 8-byte option: opt_len 2 words
      "gnv = struct.pack('!BBH', len(opt) // 4, 0, 0x6558) + b'\\x00\\x00\\x2a\\x00' + opt",
      's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
      `s.sendto(gnv + inner, ('${remote.dataIpv4}', 6081))`,
    ].join('\n');
    await runIn(remote.netns, ['/usr/bin/python3', '-c', script]);
    await dp.settle();
    // struct int_meta per CPU: key, ig_ts, ig_ifindex at 16, pad, the tuple at 24.
    const found = bpf.readPercpuValues(dp.obj.map('int_meta')).find((val) =>
      val.readBigUInt64LE(0) !== 0n && val.readUInt32LE(16) === remote.dataIfindex && val[24] === 192);
    assert.ok(found, 'an ingress record of the data interface for the inner packet');
    const t = found.subarray(24);
    assert.deepEqual(
      [[...t.subarray(0, 4)].join('.'), [...t.subarray(16, 20)].join('.'), t.readUInt16BE(32), t.readUInt16BE(34), t[36]],
      ['192.0.2.10', '192.0.2.20', 40001, 40002, 17],
      'the inner 5-tuple, past the Geneve options',
    );
  });
});

test('IPv6 extension headers are walked to the ports', async () => {
  await withScope(async (scope) => {
    const { dp, a, b } = await DatapathFixture.twoPods(scope);
    // Resolve the neighbours first: a lone datagram that waits for neighbour discovery leaves
    // the node later, maybe on another CPU, and is not reported (README: limits).
    const warm = await icmpEcho(scope, { from: a, to: b, family: 6, count: 1 });
    assert.equal(warm.received, 1, 'the IPv6 path works');
    // UDP with a destination-options header (a PadN option), set as a sticky socket option.
    const script = [
      'import socket',
      's = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)',
      "s.bind(('" + a.ipv6 + "', 46601))",
      's.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_DSTOPTS, bytes([0, 0, 1, 4, 0, 0, 0, 0]))',
      "s.sendto(b'x' * 24, ('" + b.ipv6 + "', 46602))",
    ].join('\n');
    await runIn(a.netns, ['/usr/bin/python3', '-c', script]);
    const ev = await dp.waitFor({ src: a.ipv6, dst: b.ipv6, protocol: IPPROTO.UDP, srcPort: 46601, dstPort: 46602 });
    assert.equal(ev.length, 1, 'the UDP ports behind the destination options header');
    assert.equal(ev[0].sample[14 + 6], 60, 'the packet really carries a destination options header');
  });
});

test('packets that never reach an egress hook neither fill anything nor stop new packets from being tracked', async () => {
  await withScope(async (scope) => {
    const { dp, a, b } = await DatapathFixture.twoPods(scope);
    // 2000 packets delivered to the node itself: recorded at ingress, never matched at egress.
    const script = `import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range(2000): s.sendto(i.to_bytes(4,'big'),('${a.gateway4}',9))`;
    await runIn(a.netns, ['/usr/bin/python3', '-c', script]);
    const meta = dp.obj.map('int_meta');
    assert.deepEqual([meta.type, meta.maxEntries], [6, 64], 'a fixed per-CPU array of 64 slots: nothing can grow');
    const udp = await udpFlow(scope, { from: a, to: b, family: 4, sport: 46701, count: 1 });
    const ev = await dp.waitFor({ src: a.ipv4, dst: b.ipv4, protocol: IPPROTO.UDP, srcPort: 46701, dstPort: udp.dport });
    assert.equal(ev.length, 1, 'a new flow is still tracked and reported');
  });
});
