// The daemon end to end: pods attached by the real CNI plugin, real traffic, and the INT
// reports decoded at the built-in collector carry exactly what the traffic implies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { withScope, createNode, overlayEndpoint, run, type Pod, type Remote } from '../helpers/netns';
import { udpFlow, tcpFlow, icmpEcho, addrOf, type Family } from '../helpers/traffic';
import { DaemonProcess, ReportSink, cniAdd, watchlistFile } from '../helpers/daemon';
import type { DecodedReport } from '../../daemon/collector/decoder';
import { IPPROTO } from '../../bpf/events';

const SWITCH_ID = 0x0a0b0c0d;

/** A watchlist covering every address of the given endpoints, any protocol. */
function watchAll(prefixes: string[]): string {
  return `rules:\n${prefixes.map((p) => `  - src-addr: ${p}\n    dst-addr: ${p.includes(':') ? '::/0' : '0.0.0.0/0'}\n`).join('')}`;
}

function assertFlowReport(r: DecodedReport | undefined, ingress: number, egress: number, label: string) {
  assert.ok(r, `a report for ${label}`);
  assert.equal(r.kind, 'flow', label);
  assert.deepEqual(
    { version: r.version, nproto: r.nproto, dropped: r.dropped, tracked: r.tracked, switchId: r.switchId },
    { version: 0, nproto: 2, dropped: false, tracked: true, switchId: SWITCH_ID },
    label,
  );
  assert.equal(r.ingressPort, ingress, `${label}: ingress port`);
  assert.equal(r.egressPort, egress, `${label}: egress port`);
  assert.deepEqual([r.queueId, r.queueOccupancy], [0, 0]);
  assert.ok(r.hopLatencyNs !== undefined && r.hopLatencyNs < 1e9, `${label}: hop latency = egress ts - ingress ts, below 1 s`);
  if (r.inner.ipVersion === 4) assert.equal(r.inner.ipChecksumValid, true, `${label}: inner IP checksum`);
  // Fully captured segments must carry a valid L4 checksum (null: the segment was cut short).
  assert.notEqual(r.inner.l4ChecksumValid, false, `${label}: inner L4 checksum`);
}

async function podAndDaemon(scope: Parameters<Parameters<typeof withScope>[0]>[0], opts: { vxlan?: boolean } = {}) {
  const node = await createNode(scope);
  const a = await node.addPod();
  const b = await node.addPod({ style: 'bridged' });
  const remote = await node.addRemote({ vxlan: opts.vxlan });
  const sink = await ReportSink.start(scope);
  const wl = watchlistFile(scope, watchAll([`${a.ipv4}/32`, `${b.ipv4}/32`, `${remote.ipv4}/32`, `${a.ipv6}/128`, `${b.ipv6}/128`, `${remote.ipv6}/128`,
    ...(remote.vxlan ? [`${remote.vxlan.ipv4}/32`, `${remote.vxlan.ipv6}/128`] : [])]));
  const daemon = await DaemonProcess.start(scope, { collector: sink.address, dataInterface: remote.dataIfname, watchlist: wl, switchId: SWITCH_ID });
  for (const [pod, name] of [[a, 'pod-a'], [b, 'pod-b']] as [Pod, string][]) {
    const r = cniAdd(daemon, pod, `cid-${name}-${scope.prefix}`, name);
    assert.equal(r.code, 0, `CNI ADD of ${name}: ${r.stdout}${r.stderr}`);
  }
  return { node, a, b, remote, sink, daemon, wl };
}

test('reports for pod to pod TCP, UDP and ICMP over IPv4 and IPv6, exact ports and tuples', async () => {
  await withScope(async (scope) => {
    const { a, b, sink } = await podAndDaemon(scope);
    for (const family of [4, 6] as Family[]) {
      const src = addrOf(a, family);
      const dst = addrOf(b, family);
      const udp = await udpFlow(scope, { from: a, to: b, family, sport: 47000 + family, count: 2 });
      const u = await sink.waitFor({ src, dst, protocol: IPPROTO.UDP, srcPort: udp.sport, dstPort: udp.dport });
      assertFlowReport(u[0], a.hostIfindex, b.hostIfindex, `UDP/${family}`);
      assert.equal(u[0].inner.ipVersion, family);

      const tcp = await tcpFlow(scope, { from: a, to: b, family, count: 2 });
      const t = await sink.waitFor({ src, dst, protocol: IPPROTO.TCP, srcPort: tcp.sport, dstPort: tcp.dport });
      const back = await sink.waitFor({ src: dst, dst: src, protocol: IPPROTO.TCP, srcPort: tcp.dport, dstPort: tcp.sport });
      assertFlowReport(t[0], a.hostIfindex, b.hostIfindex, `TCP/${family}`);
      assertFlowReport(back[0], b.hostIfindex, a.hostIfindex, `TCP/${family} back`);

      const proto = family === 4 ? IPPROTO.ICMP : IPPROTO.ICMPV6;
      const echo = await icmpEcho(scope, { from: a, to: b, family, count: 2, intervalMs: 50 });
      const req = (await sink.waitFor({ src, dst, protocol: proto })).filter((r) => r.inner.icmpType === (family === 4 ? 8 : 128));
      assertFlowReport(req[0], a.hostIfindex, b.hostIfindex, `ICMP/${family}`);
      assert.equal(req[0].inner.icmpId, echo.id);
    }
    // Sequence numbers of one collector count up from 1 without gaps.
    const seqs = sink.reports.map((r) => r.seq);
    assert.deepEqual(seqs, seqs.map((_, i) => i + 1));
  });
});

test('reports for pod to remote and remote to pod through the data interface, and through VXLAN', async () => {
  await withScope(async (scope) => {
    const { a, remote, sink } = await podAndDaemon(scope, { vxlan: true });
    const overlay = overlayEndpoint(remote as Remote);
    for (const family of [4, 6] as Family[]) {
      const out = await udpFlow(scope, { from: a, to: remote, family, sport: 48000 + family });
      const o = await sink.waitFor({ src: addrOf(a, family), dst: addrOf(remote, family), protocol: IPPROTO.UDP, srcPort: out.sport });
      assertFlowReport(o[0], a.hostIfindex, remote.dataIfindex, `pod->remote/${family}`);

      const inn = await udpFlow(scope, { from: remote, to: a, family, sport: 48100 + family });
      const i = await sink.waitFor({ src: addrOf(remote, family), dst: addrOf(a, family), protocol: IPPROTO.UDP, srcPort: inn.sport });
      assertFlowReport(i[0], remote.dataIfindex, a.hostIfindex, `remote->pod/${family}`);

      // Over the overlay: the report's inner packet is the decapsulated one.
      const vx = await udpFlow(scope, { from: overlay, to: a, family, sport: 48200 + family });
      const v = await sink.waitFor({ src: addrOf(overlay, family), dst: addrOf(a, family), protocol: IPPROTO.UDP, srcPort: vx.sport });
      assertFlowReport(v[0], remote.dataIfindex, a.hostIfindex, `vxlan remote->pod/${family}`);
      const vo = await udpFlow(scope, { from: a, to: overlay, family, sport: 48300 + family });
      const w = await sink.waitFor({ src: addrOf(a, family), dst: addrOf(overlay, family), protocol: IPPROTO.UDP, srcPort: vo.sport });
      assertFlowReport(w[0], a.hostIfindex, remote.dataIfindex, `pod->vxlan remote/${family}`);
      assert.equal(w[0].inner.etherType, family === 4 ? 0x0800 : 0x86dd, 'outer encapsulation stripped');
    }
  });
});

test('Service-like DNAT: a pre-NAT rule reports the virtual IP and port, with valid checksums', async () => {
  await withScope(async (scope) => {
    const { a, b, sink, wl } = await podAndDaemon(scope);
    const vip = '10.255.77.77';
    // Only the virtual IP is watched: the post-NAT tuple (to pod b) does not match, the pre-NAT one does.
    writeFileSync(wl, `rules:\n  - protocol: TCP\n    src-addr: ${a.ipv4}/32\n    dst-addr: ${vip}/32\n  - protocol: UDP\n    src-addr: ${a.ipv4}/32\n    dst-addr: ${vip}/32\n`);
    const rule = ['-t', 'nat', 'PREROUTING', '-s', `${a.ipv4}/32`, '-d', `${vip}/32`, '-p', 'tcp', '--dport', '80', '-j', 'DNAT', '--to-destination', `${b.ipv4}:8080`];
    const urule = ['-t', 'nat', 'PREROUTING', '-s', `${a.ipv4}/32`, '-d', `${vip}/32`, '-p', 'udp', '--dport', '53', '-j', 'DNAT', '--to-destination', `${b.ipv4}:5353`];
    for (const r of [rule, urule]) {
      await run(['iptables', '-t', r[1], '-A', ...r.slice(2)]);
      scope.defer('remove DNAT rule', () => void run(['iptables', '-t', r[1], '-D', ...r.slice(2)]));
    }
    await new Promise((r) => setTimeout(r, 600)); // the watchlist file is followed
    const tcp = await tcpFlow(scope, { from: a, to: b, family: 4, dstAddr: vip, dport: 80, serverAddr: b.ipv4, serverPort: 8080, count: 1 });
    assert.equal(tcp.received.connections, 1, 'the connection reached pod b through the DNAT');
    const rep = await sink.waitFor({ src: a.ipv4, dst: vip, protocol: IPPROTO.TCP, srcPort: tcp.sport, dstPort: 80 });
    assertFlowReport(rep[0], a.hostIfindex, b.hostIfindex, 'DNAT TCP');
    assert.equal(rep[0].inner.l4ChecksumValid, true, 'TCP checksum valid after the rewrite to the pre-NAT tuple');
    // No report carries the post-NAT destination: it is not watched.
    assert.equal(sink.matching({ src: a.ipv4, dst: b.ipv4, protocol: IPPROTO.TCP }).length, 0);

    const udp = await udpFlow(scope, { from: a, to: b, family: 4, dstAddr: vip, dport: 53, serverAddr: b.ipv4, serverPort: 5353, count: 1, size: 40 });
    assert.equal(udp.received.packets, 1);
    const u = await sink.waitFor({ src: a.ipv4, dst: vip, protocol: IPPROTO.UDP, srcPort: udp.sport, dstPort: 53 });
    assertFlowReport(u[0], a.hostIfindex, b.hostIfindex, 'DNAT UDP');
    assert.equal(u[0].inner.l4ChecksumValid, true, 'UDP checksum valid after the rewrite');
  });
});
