// podman 4.3 with the CNI backend driving a real chain (bridge or ptp + host-local, then our
// plugin bundle) against the test daemon: pods are attached with no other step, their traffic
// reaches the collector with exact ports and tuples, deleting them leaves nothing of ours; a
// chain failing before us never calls our ADD; a stopped daemon does not stop pods from coming
// up, and its spool is drained when it starts again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { withScope, allocateSubnet, type Scope, type Subnet } from '../helpers/netns';
import { holdGlobalForwarding } from '../helpers/sysctl';
import { DaemonProcess, ReportSink } from '../helpers/daemon';
import { udpFlow } from '../helpers/traffic';
import { listPodAttachments } from '../../bpf/attachments';
import { PinLayout } from '../../bpf/pins';
import {
  busyboxRootfs, chainConflist, daemonEndpoints, endpointOf, pluginDir, PodmanSession, type Chain, type Container, type PluginDir,
} from '../helpers/runtime';
import {
  assertAttached, assertNothingLeft, assertRecords, attachments, expectFlowReport, IPPROTO, reportPortsWithin, spoolRecords,
  SWITCH_ID, waitAttachments, watchPrefixes,
} from './checks';

interface Setup {
  subnet: Subnet;
  sink: ReportSink;
  daemon: DaemonProcess;
  pd: PluginDir;
  pm: PodmanSession;
}

async function setup(scope: Scope): Promise<Setup> {
  holdGlobalForwarding(scope, 4); // bridge (isGateway) and ptp turn IPv4 forwarding on: restore it afterwards
  const subnet = await allocateSubnet();
  const sink = await ReportSink.start(scope);
  const daemon = await DaemonProcess.start(scope, { collector: sink.address, watchlist: watchPrefixes(scope, [subnet.v4Cidr]), switchId: SWITCH_ID });
  const pd = pluginDir(scope);
  const pm = PodmanSession.create(scope, { pluginDir: pd.dir, rootfs: busyboxRootfs(scope) });
  return { subnet, sink, daemon, pd, pm };
}

const addsAndDels = (pd: PluginDir, ids: string[]) =>
  pd.calls().filter((c) => c.command === 'ADD' || c.command === 'DEL').map((c) => `${c.command} ${ids.indexOf(c.containerId)} ${c.ifname}`);

/** ICMP echo both ways, a TCP connection (busybox httpd + wget) and UDP datagrams, with their reports. */
async function trafficAndReports(scope: Scope, s: Setup, a: Container, b: Container, label: string): Promise<void> {
  const { pm, sink } = s;
  await pm.exec(a.name, ['ping', '-c', '2', '-W', '3', b.ipv4]);
  await expectFlowReport(sink, { src: a.ipv4, dst: b.ipv4, protocol: IPPROTO.ICMP, icmpType: 8 }, a.hostIfindex, b.hostIfindex, `${label} echo request`);
  await expectFlowReport(sink, { src: b.ipv4, dst: a.ipv4, protocol: IPPROTO.ICMP, icmpType: 0 }, b.hostIfindex, a.hostIfindex, `${label} echo reply`);

  await pm.podman(['exec', '-d', b.name, 'httpd', '-f', '-p', '8080', '-h', '/etc']);
  let page = '';
  for (let i = 0; i < 30 && !page; i++) {
    try {
      page = (await pm.exec(a.name, ['wget', '-q', '-O', '-', `http://${b.ipv4}:8080/passwd`])).stdout;
    } catch {
      await new Promise((r) => setTimeout(r, 100)); // httpd not listening yet
    }
  }
  assert.equal(page, 'root:x:0:0:root:/:/bin/sh\n', `${label}: wget fetched /etc/passwd from busybox httpd`);
  const syn = await expectFlowReport(sink, { src: a.ipv4, dst: b.ipv4, protocol: IPPROTO.TCP, dstPort: 8080 }, a.hostIfindex, b.hostIfindex, `${label} TCP`);
  await expectFlowReport(sink, { src: b.ipv4, dst: a.ipv4, protocol: IPPROTO.TCP, srcPort: 8080, dstPort: syn.inner.srcPort }, b.hostIfindex, a.hostIfindex, `${label} TCP back`);

  const sport = 41000 + randomInt(1000);
  const udp = await udpFlow(scope, { from: endpointOf(a), to: endpointOf(b), family: 4, sport, count: 2 });
  assert.equal(udp.received.packets, 2, `${label}: both datagrams arrived`);
  await expectFlowReport(sink, { src: a.ipv4, dst: b.ipv4, protocol: IPPROTO.UDP, srcPort: sport, dstPort: udp.dport }, a.hostIfindex, b.hostIfindex, `${label} UDP`);
}

test('podman, bridge + host-local + int-host-reporter: five pods attached, reported, and nothing left after rm', async () => {
  await withScope(async (scope) => {
    const s = await setup(scope);
    const chain = chainConflist(scope, { subnet: s.subnet, daemon: daemonEndpoints(s.daemon) });
    s.pm.addNetwork(chain);
    const pods: Container[] = [];
    for (let i = 0; i < 5; i++) pods.push(await s.pm.run(`${scope.prefix}-pod${i}`, chain.network));

    // Attached with no other step: our programs on each host veth, pins and daemon records.
    const progIds = pods.flatMap((c) => assertAttached(c));
    const layout = new PinLayout(s.daemon.pinRoot);
    assert.deepEqual(
      listPodAttachments(layout).map((k) => `${k.network}/${k.containerId}/${k.ifname}`).sort(),
      pods.map((c) => `${chain.network}/${c.id}/eth0`).sort(), 'one pinned attachment per pod');
    assertRecords(await attachments(s.daemon), pods.map((c) => ({ network: chain.network, container: c, podName: c.name })), 'five pods');
    const ids = pods.map((c) => c.id);
    assert.deepEqual(addsAndDels(s.pd, ids), ids.map((_, i) => `ADD ${i} eth0`), 'podman called our ADD once per pod');
    assert.ok(s.pd.calls().filter((c) => c.command === 'ADD').every((c) => c.args === `IgnoreUnknown=1;K8S_POD_NAME=${pods[ids.indexOf(c.containerId)]!.name}`),
      'podman passed K8S_POD_NAME = container name');

    // Bridged pods sit on our chain's bridge.
    for (const c of pods) assert.ok(existsSync(`/sys/class/net/${chain.bridge}/brif/${c.hostIfname}`), `${c.hostIfname} is a port of ${chain.bridge}`);

    await trafficAndReports(scope, s, pods[0]!, pods[1]!, 'pod0->pod1');
    await trafficAndReports(scope, s, pods[3]!, pods[2]!, 'pod3->pod2');
    const strays = reportPortsWithin(s.sink, pods.map((c) => c.ipv4), pods.map((c) => c.hostIfindex));
    assert.deepEqual(strays.map((r) => [r.inner.src, r.inner.dst, r.ingressPort, r.egressPort]), [], 'pod-to-pod reports name only pod veths');

    for (const c of pods) await s.pm.remove(c.name);
    assert.deepEqual(addsAndDels(s.pd, ids), [...ids.map((_, i) => `ADD ${i} eth0`), ...ids.map((_, i) => `DEL ${i} eth0`)],
      'podman stop called our DEL once per pod');
    assert.deepEqual(await s.pm.list(), [], 'podman has no container left');
    await assertNothingLeft(s.daemon, pods, progIds, 'after podman stop/rm');
  });
});

test('podman, ptp + host-local + int-host-reporter: routed pods attached and reported, clean DEL', async () => {
  await withScope(async (scope) => {
    const s = await setup(scope);
    const chain = chainConflist(scope, { kind: 'ptp', subnet: s.subnet, daemon: daemonEndpoints(s.daemon) });
    s.pm.addNetwork(chain);
    const a = await s.pm.run(`${scope.prefix}-ptpa`, chain.network);
    const b = await s.pm.run(`${scope.prefix}-ptpb`, chain.network);
    const progIds = [...assertAttached(a), ...assertAttached(b)];
    assertRecords(await attachments(s.daemon), [a, b].map((c) => ({ network: chain.network, container: c, podName: c.name })), 'ptp pods');
    await trafficAndReports(scope, s, a, b, 'ptp a->b');
    for (const c of [a, b]) await s.pm.remove(c.name);
    await assertNothingLeft(s.daemon, [a, b], progIds, 'ptp after rm');
  });
});

test('podman, a chain that fails before our plugin: our ADD is never called and nothing leaks', async () => {
  await withScope(async (scope) => {
    const s = await setup(scope);
    // (1) host-local with a one-address range: the first pod takes it, the second cannot get one.
    const one = { subnet: s.subnet.v4Cidr, rangeStart: s.subnet.v4(10), rangeEnd: s.subnet.v4(10), gateway: s.subnet.v4(1) };
    const tight = chainConflist(scope, { subnet: s.subnet, daemon: daemonEndpoints(s.daemon), range: one });
    // (2) the bridge plugin misconfigured: a bridge name longer than IFNAMSIZ.
    const badBridge = chainConflist(scope, { subnet: await allocateSubnet(), daemon: daemonEndpoints(s.daemon), interfaceOverrides: { bridge: `${scope.prefix}-bridge-name-too-long` } });
    for (const c of [tight, badBridge] as Chain[]) s.pm.addNetwork(c);

    const first = await s.pm.run(`${scope.prefix}-fits`, tight.network);
    assert.equal(first.ipv4, s.subnet.v4(10), 'the only address of the range');
    const progIds = assertAttached(first);

    const failures: string[] = [];
    for (const [name, net, why] of [
      [`${scope.prefix}-noip`, tight.network, /no IP addresses available|range/i],
      [`${scope.prefix}-nobr`, badBridge.network, /bridge|name|too long|invalid/i],
    ] as const) {
      const err = await s.pm.run(name, net).then(() => undefined, (e: Error) => e);
      assert.ok(err, `${name}: podman run fails`);
      assert.match(err.message, why, `${name}: the failure is the earlier plugin's`);
      failures.push(name);
    }
    const ids = [first.id];
    const adds = s.pd.calls().filter((c) => c.command === 'ADD');
    assert.deepEqual(adds.map((c) => c.containerId), ids, 'our ADD ran only for the pod whose chain succeeded');
    // libcni calls DEL for the whole chain after a failed ADD: ours must succeed and leave nothing.
    assert.deepEqual(listPodAttachments(new PinLayout(s.daemon.pinRoot)).map((k) => k.containerId), ids, 'pins only for the pod that came up');
    assertRecords(await attachments(s.daemon), [{ network: tight.network, container: first, podName: first.name }], 'only the pod that came up is known');
    assert.deepEqual(spoolRecords(s.daemon.spoolDir), [], 'no spool record from the failed pods');
    const veths = readdirSync(`/sys/class/net/${tight.bridge}/brif`);
    assert.deepEqual(veths, [first.hostIfname], 'the failed pod left no veth on the bridge');
    assert.equal(existsSync(`/sys/class/net/${badBridge.bridge}`), false, 'no bridge from the misconfigured chain');

    for (const n of failures) await s.pm.podman(['rm', '-f', n]).catch(() => undefined);
    await s.pm.remove(first.name);
    await assertNothingLeft(s.daemon, [first], progIds, 'after the failed chains');
  });
});

test('podman with the daemon stopped during ADD: the pod comes up, a spool record waits, the restarted daemon drains it', async () => {
  await withScope(async (scope) => {
    const s = await setup(scope);
    const chain = chainConflist(scope, { subnet: s.subnet, daemon: daemonEndpoints(s.daemon) });
    s.pm.addNetwork(chain);
    await s.daemon.stop(); // its pinned programs stay; its socket does not answer

    const started = Date.now();
    const pod = await s.pm.run(`${scope.prefix}-nodaemon`, chain.network);
    assert.ok(Date.now() - started < 20_000, 'the pod came up without waiting for the daemon');
    assert.equal(pod.ipv4, s.subnet.v4(2), 'the pod has its address');
    const progIds = assertAttached(pod, 'attached by the plugin from the pinned programs');
    const spool = spoolRecords(s.daemon.spoolDir);
    assert.equal(spool.length, 1, `one spool record: ${JSON.stringify(spool)}`);
    assert.deepEqual({ op: spool[0]!.op, key: spool[0]!.key }, { op: 'add', key: { network: chain.network, containerId: pod.id, ifname: 'eth0' } }, 'the spool names the ADD');

    const again = await DaemonProcess.start(scope, {
      collector: s.sink.address, watchlist: watchPrefixes(scope, [s.subnet.v4Cidr]), switchId: SWITCH_ID, runDir: s.daemon.runDir, pinRoot: s.daemon.pinRoot,
    });
    const list = await waitAttachments(again, (l) => l.length === 1 && l[0]!.state === 'ok' && spoolRecords(again.spoolDir).length === 0);
    assertRecords(list, [{ network: chain.network, container: pod, podName: pod.name }], 'after the spool drained');
    assert.deepEqual(spoolRecords(again.spoolDir), [], 'the spool is drained');
    assertAttached(pod, 'still attached after the repair');

    // Reported by the restarted daemon.
    const peer = await s.pm.run(`${scope.prefix}-peer`, chain.network);
    progIds.push(...assertAttached(peer));
    await s.pm.exec(pod.name, ['ping', '-c', '2', '-W', '3', peer.ipv4]);
    await expectFlowReport(s.sink, { src: pod.ipv4, dst: peer.ipv4, protocol: IPPROTO.ICMP, icmpType: 8 }, pod.hostIfindex, peer.hostIfindex, 'after restart');

    for (const c of [pod, peer]) await s.pm.remove(c.name);
    await assertNothingLeft(again, [pod, peer], progIds, 'after rm');
  });
});
