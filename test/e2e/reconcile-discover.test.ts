// Pods that were running before the plugin was installed (never ADDed through it): the daemon
// learns them from the Kubernetes API and reconcile finds their host veth from their IP alone
// (route to a veth; on a bridge, the neighbour's MAC and the bridge port it was learned on),
// attaches our programs and records the attachment under the network 'k8s-discovered', the
// pod uid and 'eth0'. A pod whose IP routes to something that is not a veth (an ifb device)
// is left alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withScope, createNode, allocateSubnet, deferLinkDelete, linkInfo, ip } from '../helpers/netns';
import { DaemonProcess, ReportSink, cniAdd, watchlistFile } from '../helpers/daemon';
import { FakeKubeApi, eventually, kubeconfigFor, makePod } from '../helpers/fake-kube-api';
import { udpFlow, addrOf, type Family } from '../helpers/traffic';
import * as bpf from '../../bpf/index';
import * as netlink from '../../netlink/index';
import { PROGRAMS } from '../../bpf/pins';
import { IPPROTO } from '../../bpf/events';

const NODE = 'test-node'; // the harness starts the daemon with --node-name test-node
const SWITCH_ID = 0x0a0b0c0e;



interface AttachmentJson {
  network: string; containerId: string; ifname: string; podNamespace?: string; podName?: string; podUid?: string;
  hostIfindex?: number; hostIfname?: string; state: string; ips: string[]; programIds: number[];
}

const ours = (ifindex: number, d: 'ingress' | 'egress') => bpf.query(ifindex, d).filter((h) => h.ours).map((h) => h.name);

test('reconcile attaches running pods the plugin never saw (routed and bridged), found from their IPs; not a non-veth', async () => {
  await withScope(async (scope) => {
    const node = await createNode(scope);
    const a = await node.addPod(); // routed: the route to its IP is the host veth
    const b = await node.addPod({ style: 'bridged' }); // bridged: the route is the bridge

    // An IP the API lists on this node that is not behind a veth: routed to an ifb interface (a
    // plain non-veth device, as 'dummy' would be; that module is not available everywhere).
    const far = await allocateSubnet();
    const dummy = scope.name('dm');
    await ip(null, ['link', 'add', dummy, 'type', 'ifb']);
    deferLinkDelete(scope, dummy);
    await ip(null, ['link', 'set', dummy, 'up']);
    await ip(null, ['route', 'add', far.v4Cidr, 'dev', dummy]);
    const dummyIfindex = (await linkInfo(null, dummy)).ifindex;
    const farIp = far.v4(7);
    assert.equal(netlink.routeOutputIfindex(farIp), dummyIfindex, 'the far pod IP routes to the ifb device');
    assert.equal(netlink.routeOutputIfindex(a.ipv4), a.hostIfindex, 'the routed pod IP routes to its host veth');
    assert.equal(netlink.routeOutputIfindex(b.ipv4), node.bridge!.ifindex, 'the bridged pod IP routes to the bridge');

    const api = await FakeKubeApi.start();
    scope.defer('close fake API server', () => void api.close());
    const uidA = `uid-a-${scope.prefix}`;
    const uidB = `uid-b-${scope.prefix}`;
    api.addPod(makePod({ namespace: 'shop', name: 'pod-a', nodeName: NODE, uid: uidA, podIPs: [a.ipv4, a.ipv6] }));
    api.addPod(makePod({ namespace: 'shop', name: 'pod-b', nodeName: NODE, uid: uidB, podIPs: [b.ipv4, b.ipv6] }));
    api.addPod(makePod({ name: 'pod-far', nodeName: NODE, uid: 'uid-far', podIPs: [farIp] }));
    // Not to be attached either: host network (its IP would route locally anyway), not running.
    api.addPod(makePod({ name: 'pod-hostnet', nodeName: NODE, uid: 'uid-hostnet', hostNetwork: true, podIPs: [a.ipv4] }));
    api.addPod(makePod({ name: 'pod-pending', nodeName: NODE, uid: 'uid-pending', phase: 'Pending', podIPs: [farIp] }));

    for (const p of [a, b]) {
      for (const d of ['ingress', 'egress'] as const) assert.deepEqual(ours(p.hostIfindex, d), [], `${p.hostIfname} ${d}: nothing of ours before the daemon`);
    }

    const sink = await ReportSink.start(scope);
    const wl = watchlistFile(scope, `rules:\n  - src-addr: ${a.ipv4}/32\n    dst-addr: ${b.ipv4}/32\n  - src-addr: ${a.ipv6}/128\n    dst-addr: ${b.ipv6}/128\n`);
    const daemon = await DaemonProcess.start(scope, {
      collector: sink.address, watchlist: wl, switchId: SWITCH_ID,
      env: { KUBECONFIG: kubeconfigFor(scope, api.url), INT_HOST_REPORTER_RECONCILE_INTERVAL_MS: '200' },
    });

    const atts = await eventually('both pods attached by reconcile', async () => {
      const r = await daemon.api<{ attachments: AttachmentJson[] }>('GET', '/v1/attachments');
      const ok = r.json.attachments.filter((x) => x.state === 'ok');
      return ok.length >= 2 ? r.json.attachments : undefined;
    });
    const pick = (x: AttachmentJson) => ({
      network: x.network, containerId: x.containerId, ifname: x.ifname, podNamespace: x.podNamespace, podName: x.podName,
      podUid: x.podUid, hostIfindex: x.hostIfindex, hostIfname: x.hostIfname, state: x.state, ips: x.ips,
    });
    assert.deepEqual(atts.map(pick).sort((x, y) => (x.podName ?? '').localeCompare(y.podName ?? '')), [
      {
        network: 'k8s-discovered', containerId: uidA, ifname: 'eth0', podNamespace: 'shop', podName: 'pod-a', podUid: uidA,
        hostIfindex: a.hostIfindex, hostIfname: a.hostIfname, state: 'ok', ips: [a.ipv4, a.ipv6],
      },
      {
        network: 'k8s-discovered', containerId: uidB, ifname: 'eth0', podNamespace: 'shop', podName: 'pod-b', podUid: uidB,
        hostIfindex: b.hostIfindex, hostIfname: b.hostIfname, state: 'ok', ips: [b.ipv4, b.ipv6],
      },
    ], 'exactly the two pods, with their identity from the API and their host veths');

    for (const [p, att] of [[a, atts[0]], [b, atts[1]]] as const) {
      assert.deepEqual(ours(p.hostIfindex, 'ingress'), [PROGRAMS.ingress], `${p.hostIfname}: our ingress program`);
      assert.deepEqual(ours(p.hostIfindex, 'egress'), [PROGRAMS.egress], `${p.hostIfname}: our egress program`);
      assert.ok(att.programIds.length === 2, `record of ${att.podName} names two program ids`);
    }

    // Further passes change nothing: idempotent, and the far pod (ifb) is never attached.
    const runsBefore = Number((await metricsText(daemon)).match(/^int_reconcile_runs_total (\d+)$/m)?.[1]);
    await eventually('three more reconcile passes', async () => {
      const runs = Number((await metricsText(daemon)).match(/^int_reconcile_runs_total (\d+)$/m)?.[1]);
      return runs >= runsBefore + 3 ? true : undefined;
    });
    const again = await daemon.api<{ attachments: AttachmentJson[] }>('GET', '/v1/attachments');
    assert.deepEqual(again.json.attachments.map(pick).sort((x, y) => (x.podName ?? '').localeCompare(y.podName ?? '')),
      atts.map(pick).sort((x, y) => (x.podName ?? '').localeCompare(y.podName ?? '')), 'the same two records after more passes');
    assert.deepEqual([...ours(dummyIfindex, 'ingress'), ...ours(dummyIfindex, 'egress')], [], 'nothing of ours on the ifb device');
    assert.equal(bpf.hasClsact(dummyIfindex), false, 'no clsact added to the ifb device');
    assert.match(await metricsText(daemon), /^int_reconcile_discovered_total 2$/m, 'two pods discovered, each once');
    const farPod = await daemon.api<{ attachments: unknown[] }>('GET', '/v1/pods/default/pod-far');
    assert.deepEqual({ status: farPod.status, n: farPod.json.attachments.length }, { status: 200, n: 0 }, 'pod-far has no attachment');

    // Traffic between the two discovered pods is reported, through their host veths.
    for (const family of [4, 6] as Family[]) {
      const src = addrOf(a, family);
      const dst = addrOf(b, family);
      const flow = await udpFlow(scope, { from: a, to: b, family, sport: 46000 + family, count: 2 });
      const reps = await sink.waitFor({ src, dst, protocol: IPPROTO.UDP, srcPort: flow.sport, dstPort: flow.dport });
      assert.ok(reps.length >= 1, `a report for UDP/${family} from pod-a to pod-b`);
      assert.deepEqual({ kind: reps[0].kind, ingress: reps[0].ingressPort, egress: reps[0].egressPort, switchId: reps[0].switchId },
        { kind: 'flow', ingress: a.hostIfindex, egress: b.hostIfindex, switchId: SWITCH_ID }, `UDP/${family} report ports`);
    }
  });
});

test('a plugin ADD for a pod that discovery attached first replaces the discovered attachment: one record, one pair of links', async () => {
  await withScope(async (scope) => {
    const node = await createNode(scope);
    const a = await node.addPod();
    const api = await FakeKubeApi.start();
    scope.defer('close fake API server', () => void api.close());
    const uid = `uid-a-${scope.prefix}`;
    // The API lists the pod with its IPs before the plugin's ADD has notified (the race).
    api.addPod(makePod({ name: 'pod-a', nodeName: NODE, uid, podIPs: [a.ipv4, a.ipv6] }));
    const sink = await ReportSink.start(scope);
    const daemon = await DaemonProcess.start(scope, {
      collector: sink.address, env: { KUBECONFIG: kubeconfigFor(scope, api.url), INT_HOST_REPORTER_RECONCILE_INTERVAL_MS: '200' },
    });
    await eventually('pod-a attached by discovery', async () => {
      const r = await daemon.api<{ attachments: AttachmentJson[] }>('GET', '/v1/attachments');
      return r.json.attachments.some((x) => x.network === 'k8s-discovered' && x.state === 'ok') ? true : undefined;
    });
    assert.deepEqual(ours(a.hostIfindex, 'ingress'), [PROGRAMS.ingress], 'one ingress link, the discovered one');

    const cid = `cid-a-${scope.prefix}`;
    const add = cniAdd(daemon, a, cid, 'pod-a');
    assert.equal(add.code, 0, `CNI ADD: ${add.stdout}${add.stderr}`);
    const r = await daemon.api<{ attachments: AttachmentJson[] }>('GET', '/v1/attachments');
    assert.deepEqual(r.json.attachments.map((x) => ({ network: x.network, containerId: x.containerId, hostIfindex: x.hostIfindex, state: x.state })),
      [{ network: 'testnet', containerId: cid, hostIfindex: a.hostIfindex, state: 'ok' }], 'only the plugin\'s attachment');
    assert.deepEqual(ours(a.hostIfindex, 'ingress'), [PROGRAMS.ingress], 'one ingress link on the veth, not two');
    assert.deepEqual(ours(a.hostIfindex, 'egress'), [PROGRAMS.egress], 'one egress link on the veth, not two');
  });
});

async function metricsText(daemon: DaemonProcess): Promise<string> {
  const { callApi } = await import('../../daemon/cli/client');
  return (await callApi(daemon.socket, 'GET', '/metrics')).body;
}
