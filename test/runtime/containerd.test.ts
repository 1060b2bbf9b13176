// containerd's `ctr run --rm --cni` (a private containerd, CRI disabled) driving the chain that
// go-cni finds first in /etc/cni/net.d: bridge + host-local, then our plugin. Here the netns is
// /proc/<pid>/ns/net, CNI_ARGS is empty, there is no VERSION probe, and DEL comes after the task
// exited with CNI_NETNS empty and the veth already gone: DEL must work from our own state.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { withScope, allocateSubnet } from '../helpers/netns';
import { holdGlobalForwarding } from '../helpers/sysctl';
import { DaemonProcess, ReportSink } from '../helpers/daemon';
import { udpFlow } from '../helpers/traffic';
import { listPodAttachments } from '../../bpf/attachments';
import { PinLayout } from '../../bpf/pins';
import { busyboxRootfs, chainConflist, ContainerdSession, daemonEndpoints, endpointOf, pluginDir, type Container } from '../helpers/runtime';
import {
  assertAttached, assertNothingLeft, assertRecords, attachments, expectFlowReport, IPPROTO, reportPortsWithin, SWITCH_ID, watchPrefixes,
} from './checks';

test('ctr run --cni, bridge + host-local + int-host-reporter: five pods attached, reported, nothing left after kill', async () => {
  await withScope(async (scope) => {
    holdGlobalForwarding(scope, 4);
    const subnet = await allocateSubnet();
    const sink = await ReportSink.start(scope);
    const daemon = await DaemonProcess.start(scope, { collector: sink.address, watchlist: watchPrefixes(scope, [subnet.v4Cidr]), switchId: SWITCH_ID });
    const pd = pluginDir(scope);
    const rootfs = busyboxRootfs(scope);
    const ctr = await ContainerdSession.start(scope, rootfs);
    const chain = chainConflist(scope, { subnet, daemon: daemonEndpoints(daemon) });
    ctr.installChain(chain, pd.dir);

    const pods: Container[] = [];
    for (let i = 0; i < 5; i++) pods.push(await ctr.run(`${scope.prefix}-c${i}`));
    const progIds = pods.flatMap((c) => assertAttached(c));
    assert.deepEqual(
      listPodAttachments(new PinLayout(daemon.pinRoot)).map((k) => `${k.network}/${k.containerId}/${k.ifname}`).sort(),
      pods.map((c) => `${chain.network}/default-${c.id}/eth0`).sort(), 'one pinned attachment per task, keyed by namespace-id');
    assertRecords(await attachments(daemon), pods.map((c) => ({ network: chain.network, container: c, podName: undefined })), 'five tasks');
    const calls = pd.calls();
    assert.deepEqual(calls.map((c) => [c.command, c.containerId, c.netns, c.args]),
      pods.map((c) => ['ADD', `default-${c.id}`, `/proc/${c.pid}/ns/net`, '']), 'go-cni: ADD per task, /proc netns, no CNI_ARGS, no VERSION probe');

    // ICMP with busybox ping inside the task, TCP with busybox httpd + wget, UDP from the harness agent in the task's netns.
    const [a, b, c, d] = pods as [Container, Container, Container, Container];
    await ctr.exec(a.id, ['/bin/ping', '-c', '2', '-W', '3', b.ipv4]);
    await expectFlowReport(sink, { src: a.ipv4, dst: b.ipv4, protocol: IPPROTO.ICMP, icmpType: 8 }, a.hostIfindex, b.hostIfindex, 'echo request');
    await expectFlowReport(sink, { src: b.ipv4, dst: a.ipv4, protocol: IPPROTO.ICMP, icmpType: 0 }, b.hostIfindex, a.hostIfindex, 'echo reply');

    const httpd = ctr.exec(c.id, ['/bin/httpd', '-f', '-p', '8080', '-h', '/etc'], 60_000).catch(() => undefined);
    let page = '';
    for (let i = 0; i < 30 && !page; i++) {
      try {
        page = (await ctr.exec(d.id, ['/bin/wget', '-q', '-O', '-', `http://${c.ipv4}:8080/passwd`])).stdout;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    assert.equal(page, 'root:x:0:0:root:/:/bin/sh\n', 'wget fetched /etc/passwd from busybox httpd');
    const syn = await expectFlowReport(sink, { src: d.ipv4, dst: c.ipv4, protocol: IPPROTO.TCP, dstPort: 8080 }, d.hostIfindex, c.hostIfindex, 'TCP');
    await expectFlowReport(sink, { src: c.ipv4, dst: d.ipv4, protocol: IPPROTO.TCP, srcPort: 8080, dstPort: syn.inner.srcPort }, c.hostIfindex, d.hostIfindex, 'TCP back');

    const sport = 42000 + randomInt(1000);
    const udp = await udpFlow(scope, { from: endpointOf(pods[4]!), to: endpointOf(a), family: 4, sport, count: 2 });
    assert.equal(udp.received.packets, 2, 'both datagrams arrived');
    await expectFlowReport(sink, { src: pods[4]!.ipv4, dst: a.ipv4, protocol: IPPROTO.UDP, srcPort: sport, dstPort: udp.dport }, pods[4]!.hostIfindex, a.hostIfindex, 'UDP');
    const strays = reportPortsWithin(sink, pods.map((p) => p.ipv4), pods.map((p) => p.hostIfindex));
    assert.deepEqual(strays.map((r) => [r.inner.src, r.inner.dst, r.ingressPort, r.egressPort]), [], 'pod-to-pod reports name only pod veths');

    // Delete: kill each task; its `ctr run --rm` calls DEL (netns empty, veth gone) and removes the container.
    for (const p of pods) await ctr.remove(p.id);
    await httpd;
    const dels = pd.calls().filter((x) => x.command === 'DEL');
    assert.deepEqual(dels.map((x) => [x.containerId, x.netns]).sort(), pods.map((p) => [`default-${p.id}`, '']).sort(),
      'one DEL per task, with CNI_NETNS empty');
    assert.deepEqual(await ctr.listContainers(), [], 'containerd has no container left');
    await assertNothingLeft(daemon, pods, progIds, 'after ctr task kill');
  });
});
