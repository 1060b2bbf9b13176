// The test harness itself, on real namespaces, veths, bridges and traffic: every path a
// later test relies on (routed and bridged pods, remote host, VXLAN overlay; UDP, TCP,
// ICMP, SCTP over IPv4 and IPv6) carries exactly the packets we asked for, and closing a
// scope leaves nothing behind.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { getLink } from '../../netlink/index';
import { Sandbox } from '../fixtures/cni/harness';
import { pidAlive } from '../helpers/exec';
import {
  Scope,
  allocateSubnet,
  createNode,
  hasIpv6ForceForwarding,
  ipJson,
  leftovers,
  overlayEndpoint,
  runPrefix,
  uniqueName,
  withScope,
  type Endpoint,
  type NodeHost,
  type Pod,
  type Remote,
} from '../helpers/netns';
import {
  addrOf,
  icmpEcho,
  iperfTcp,
  iperfUdp,
  requirePing,
  requireTool,
  sctpInit,
  startCapture,
  tcpFlow,
  udpFlood,
  udpFlow,
  type Family,
} from '../helpers/traffic';

const FAMILIES: Family[] = [4, 6];

after(() => {
  // Whatever happened above, nothing of this run may remain.
  assert.deepEqual(leftovers(runPrefix()), { netns: [], links: [] });
});

async function assertUdp(s: Scope, from: Endpoint, to: Endpoint, family: Family, sport: number, dport: number) {
  const r = await udpFlow(s, { from, to, family, sport, dport, count: 4, size: 100 });
  assert.equal(r.src, addrOf(from, family));
  assert.equal(r.sport, sport);
  assert.equal(r.dst, addrOf(to, family));
  assert.equal(r.dport, dport);
  assert.deepEqual(r.sent, { packets: 4, bytes: 400 });
  assert.equal(r.received.packets, 4);
  assert.equal(r.received.bytes, 400);
  assert.deepEqual(r.received.peers, [{ address: addrOf(from, family), port: sport, packets: 4, bytes: 400 }]);
}

async function assertTcp(s: Scope, from: Endpoint, to: Endpoint, family: Family, sport: number, dport: number) {
  const r = await tcpFlow(s, { from, to, family, sport, dport, durationMs: 300, intervalMs: 50, size: 32 });
  assert.equal(r.sport, sport);
  assert.equal(r.src, addrOf(from, family));
  assert.equal(r.received.connections, 1);
  assert.ok(r.sent.packets >= 4, `kept alive with several writes, got ${r.sent.packets}`);
  assert.equal(r.received.bytes, r.sent.bytes);
  assert.deepEqual(
    r.received.peers.map((p) => [p.address, p.port]),
    [[addrOf(from, family), sport]],
  );
}

async function assertIcmp(s: Scope, from: Endpoint, to: Endpoint, family: Family, id: number) {
  const r = await icmpEcho(s, { from, to, family, id, count: 2, intervalMs: 50 });
  assert.equal(r.transmitted, 2);
  assert.equal(r.received, 2);
  assert.equal(r.id, id);
  assert.equal(r.requestsSeen?.length, 2, 'echo requests with our id arrive at the receiver');
  assert.equal(r.repliesSeen?.length, 2, 'echo replies with our id come back');
  for (const p of r.requestsSeen ?? []) {
    assert.equal(p.icmpId, id);
    assert.equal(p.src, addrOf(from, family));
    assert.equal(p.dst, addrOf(to, family));
  }
  assert.deepEqual((r.requestsSeen ?? []).map((p) => p.icmpSeq), [1, 2]);
}

async function assertSctp(s: Scope, from: Endpoint, to: Endpoint, family: Family, sport: number, dport: number) {
  const r = await sctpInit(s, { from, to, family, sport, dport, count: 3 });
  assert.equal(r.sent, 3);
  assert.equal(r.arrived?.length, 3, 'three SCTP INITs captured at the receiver');
  for (const p of r.arrived ?? []) {
    assert.equal(p.proto, 132);
    assert.equal(p.family, family);
    assert.equal(p.src, addrOf(from, family));
    assert.equal(p.dst, addrOf(to, family));
    assert.equal(p.sport, sport);
    assert.equal(p.dport, dport);
    assert.equal(p.sctpChunk, 1);
    assert.equal(p.crcOk, true);
  }
}

async function allProtocols(s: Scope, from: Endpoint, to: Endpoint, base: number) {
  for (const family of FAMILIES) {
    const b = base + family * 10;
    await assertUdp(s, from, to, family, b + 1, b + 2);
    await assertTcp(s, from, to, family, b + 3, b + 4);
    await assertIcmp(s, from, to, family, b + 5);
    await assertSctp(s, from, to, family, b + 6, b + 7);
  }
}

describe('names and addresses', () => {
  test('names carry the run prefix and fit an interface name', () => {
    const p = runPrefix();
    assert.match(p, /^ihr[0-9a-f]{4}$/);
    const n = uniqueName('h');
    assert.ok(n.startsWith(p) && n.length <= 15);
    assert.notEqual(uniqueName('h'), uniqueName('h'));
    assert.throws(() => uniqueName('x'.repeat(20)), /longer than 15/);
  });

  test('subnets overlap no route on the machine', async () => {
    const a = await allocateSubnet();
    const b = await allocateSubnet();
    assert.notEqual(a.v4Cidr, b.v4Cidr);
    assert.match(a.v4Cidr, /^10\.\d+\.\d+\.0\/24$/);
    assert.match(a.v6Cidr, /^fd00:[0-9a-f]+:[0-9a-f]+::\/64$/);
    const routes = [
      ...(await ipJson<{ dst: string }>(null, ['-4', 'route', 'show', 'table', 'all'])),
      ...(await ipJson<{ dst: string }>(null, ['-6', 'route', 'show', 'table', 'all'])),
    ].map((r) => r.dst);
    for (const s of [a, b]) {
      assert.ok(!routes.some((d) => d.startsWith(s.v4Base + '.')), `${s.v4Cidr} is not routed yet`);
      assert.ok(!routes.some((d) => d.startsWith(s.v6Base + '::')), `${s.v6Cidr} is not routed yet`);
    }
  });

  test('missing tools fail naming the Debian package', () => {
    assert.throws(() => requireTool('/nonexistent/ping', 'iputils-ping'), /iputils-ping/);
    assert.equal(requirePing(), '/usr/bin/ping', 'ping comes from the Debian package iputils-ping');
  });
});

describe('topology', () => {
  test('pods and remote expose the facts the datapath needs', async () => {
    await withScope(async (s) => {
      const node = await createNode(s);
      const routed = await node.addPod();
      const bridged = await node.addPod({ style: 'bridged' });
      const remote = await node.addRemote({ vxlan: true });
      for (const pod of [routed, bridged]) {
        assert.equal(pod.podIfname, 'eth0');
        assert.ok(pod.netns.startsWith(s.prefix) && pod.hostIfname.startsWith(s.prefix));
        assert.ok(pod.hostIfname.length <= 15);
        assert.equal(pod.netnsPath, `/run/netns/${pod.netns}`);
        assert.ok(existsSync(pod.netnsPath));
        assert.equal(Number(readFileSync(`/sys/class/net/${pod.hostIfname}/ifindex`, 'utf8')), pod.hostIfindex);
        assert.equal(readFileSync(`/sys/class/net/${pod.hostIfname}/address`, 'utf8').trim(), pod.hostMac);
        // The host veth's peer is the pod's eth0.
        assert.equal(Number(readFileSync(`/sys/class/net/${pod.hostIfname}/iflink`, 'utf8')), pod.podIfindex);
        const [eth0] = await ipJson<{ ifindex: number; address: string; addr_info: Array<{ local: string; prefixlen: number; family: string }> }>(
          pod.netns, ['addr', 'show', 'dev', 'eth0']);
        assert.equal(eth0?.ifindex, pod.podIfindex);
        assert.equal(eth0?.address, pod.podMac);
        const addrs = eth0!.addr_info.filter((a) => a.family === 'inet' || !a.local.startsWith('fe80')).map((a) => `${a.local}/${a.prefixlen}`);
        assert.deepEqual(addrs.sort(), pod.style === 'routed' ? [`${pod.ipv4}/32`, `${pod.ipv6}/128`].sort() : [`${pod.ipv4}/24`, `${pod.ipv6}/64`].sort());
      }
      assert.equal(routed.gateway4, '169.254.1.1');
      assert.equal(routed.gateway6, 'fe80::1');
      // Routed: no IPv4 address on the host veth, host routes to the pod through it.
      const [hv] = await ipJson<{ addr_info: Array<{ family: string; local: string }> }>(null, ['addr', 'show', 'dev', routed.hostIfname]);
      assert.deepEqual(hv!.addr_info.filter((a) => a.family === 'inet'), []);
      const [r4] = await ipJson<{ dev: string }>(null, ['-4', 'route', 'get', routed.ipv4]);
      assert.equal(r4?.dev, routed.hostIfname);
      const [r6] = await ipJson<{ dev: string }>(null, ['-6', 'route', 'get', routed.ipv6]);
      assert.equal(r6?.dev, routed.hostIfname);
      // Bridged: the host veth is a port of our bridge, which holds the gateways.
      assert.ok(node.bridge);
      assert.equal(readFileSync(`/sys/class/net/${bridged.hostIfname}/master/ifindex`, 'utf8').trim(), String(node.bridge.ifindex));
      assert.equal(bridged.gateway4, node.bridge.ipv4);
      // The data interface: root side of the remote's veth, with addresses and the route.
      assert.equal(Number(readFileSync(`/sys/class/net/${remote.dataIfname}/ifindex`, 'utf8')), remote.dataIfindex);
      assert.equal(Number(readFileSync(`/sys/class/net/${remote.dataIfname}/iflink`, 'utf8')), remote.ifindex);
      const [rr] = await ipJson<{ dev: string }>(null, ['-4', 'route', 'get', remote.ipv4]);
      assert.equal(rr?.dev, remote.dataIfname);
      const [ro] = await ipJson<{ dev: string }>(null, ['-4', 'route', 'get', remote.vxlan!.ipv4]);
      assert.equal(ro?.dev, remote.vxlan!.ifname);
      // Nothing global changed: forwarding is enabled per interface (on our interfaces) only.
      if (hasIpv6ForceForwarding()) {
        assert.deepEqual(node.globalForwarding, []);
        for (const ifname of [routed.hostIfname, bridged.hostIfname, node.bridge.ifname, remote.dataIfname, remote.vxlan!.ifname]) {
          assert.equal(readFileSync(`/proc/sys/net/ipv4/conf/${ifname}/forwarding`, 'utf8').trim(), '1');
          assert.equal(readFileSync(`/proc/sys/net/ipv6/conf/${ifname}/force_forwarding`, 'utf8').trim(), '1');
        }
      }
    });
  });
});

describe('traffic through the node', () => {
  let scope: Scope;
  let node: NodeHost;
  let r1: Pod;
  let r2: Pod;
  let b1: Pod;
  let b2: Pod;
  let remote: Remote;

  test('setup', async () => {
    scope = new Scope();
    node = await createNode(scope);
    r1 = await node.addPod({ label: 'ra' });
    r2 = await node.addPod({ label: 'rb' });
    b1 = await node.addPod({ style: 'bridged', label: 'ba' });
    b2 = await node.addPod({ style: 'bridged', label: 'bb' });
    remote = await node.addRemote({ vxlan: true });
  });

  test('routed pod to routed pod: UDP, TCP, ICMP, SCTP over IPv4 and IPv6', async () => {
    await allProtocols(scope, r1, r2, 10_000);
  });

  test('bridged pod to bridged pod: UDP, TCP, ICMP, SCTP over IPv4 and IPv6', async () => {
    await allProtocols(scope, b1, b2, 11_000);
  });

  test('bridged pod to routed pod and back', async () => {
    await allProtocols(scope, b1, r1, 12_000);
    await allProtocols(scope, r2, b2, 13_000);
  });

  test('pod to remote crosses the data interface', async () => {
    for (const family of FAMILIES) {
      const cap = await startCapture(scope, {
        netns: null,
        ifname: remote.dataIfname,
        filter: { dir: 'out', family, proto: 17, src: addrOf(r1, family), sport: 14_001, dport: 14_002 },
        count: 4,
      });
      await assertUdp(scope, r1, remote, family, 14_001, 14_002);
      const seen = await cap.finish();
      assert.equal(seen.length, 4);
      assert.ok(seen.every((p) => p.ifname === remote.dataIfname && p.dst === addrOf(remote, family)));
    }
    await allProtocols(scope, r1, remote, 15_000);
    await allProtocols(scope, b2, remote, 16_000);
  });

  test('remote to pod crosses the data interface inbound', async () => {
    for (const family of FAMILIES) {
      const cap = await startCapture(scope, {
        netns: null,
        ifname: remote.dataIfname,
        filter: { dir: 'in', family, proto: 6, src: addrOf(remote, family), dst: addrOf(b1, family), sport: 17_001 },
        count: 1,
      });
      await assertTcp(scope, remote, b1, family, 17_001, 17_002);
      assert.ok((await cap.finish()).length >= 1);
    }
    await allProtocols(scope, remote, r2, 18_000);
    await allProtocols(scope, remote, b1, 19_000);
  });

  test('pod to remote overlay leaves the data interface VXLAN-encapsulated', async () => {
    const overlay = overlayEndpoint(remote);
    const vx = remote.vxlan!;
    for (const family of FAMILIES) {
      const cap = await startCapture(scope, {
        netns: null,
        ifname: remote.dataIfname,
        decapVxlan: vx.port,
        filter: {
          dir: 'out', family: 4, proto: 17, src: remote.dataIpv4, dst: remote.ipv4, dport: vx.port, vni: vx.vni,
          inner: { family, proto: 17, src: addrOf(r1, family), dst: addrOf(overlay, family), sport: 20_001, dport: 20_002 },
        },
        count: 4,
      });
      await assertUdp(scope, r1, overlay, family, 20_001, 20_002);
      const seen = await cap.finish();
      assert.equal(seen.length, 4, `4 encapsulated IPv${family} datagrams on ${remote.dataIfname}`);
      assert.ok(seen.every((p) => p.inner?.payloadLen === 100));
      // Replies come back through the overlay too (in on the data interface, VXLAN).
      const back = await startCapture(scope, {
        netns: null,
        ifname: remote.dataIfname,
        decapVxlan: vx.port,
        filter: { dir: 'in', proto: 17, dport: vx.port, vni: vx.vni, inner: { family, proto: 6, src: addrOf(overlay, family), dport: 20_003 } },
        count: 1,
      });
      await assertTcp(scope, b1, overlay, family, 20_003, 20_004);
      assert.ok((await back.finish()).length >= 1, 'TCP replies arrive VXLAN-encapsulated');
      await assertIcmp(scope, r2, overlay, family, 20_005);
      await assertSctp(scope, b2, overlay, family, 20_006, 20_007);
    }
  });

  test('flood and iperf3 run between pods', async () => {
    const f = await udpFlood(scope, { from: r1, to: b1, family: 4, flows: 4, sportBase: 21_000, durationMs: 500 });
    assert.equal(f.flows, 4);
    assert.deepEqual(f.sports, [21_000, 21_001, 21_002, 21_003]);
    assert.ok(f.sent > 0 && f.received > 0 && f.received <= f.sent, JSON.stringify(f));
    const t = await iperfTcp(scope, { from: r1, to: remote, family: 6, seconds: 1 });
    assert.ok(t.bitsPerSecondReceived > 0 && t.bytesReceived > 0, 'iperf3 TCP moved data');
    const u = await iperfUdp(scope, { from: b2, to: r2, family: 4, seconds: 1, size: 64 });
    assert.ok(u.packets > 0 && u.pps > 0, 'iperf3 UDP moved packets');
  });

  test('teardown removes everything and kills every process', async () => {
    const pids = scope.processes.map((p) => p.pid);
    assert.ok(pids.length > 0);
    const failures = scope.close();
    assert.deepEqual(failures, []);
    assert.deepEqual(leftovers(scope.prefix), { netns: [], links: [] });
    assert.ok(pids.every((p) => !pidAlive(p)), 'no harness process survives');
    assert.ok(pids.length > 0 && scope.isClosed);
  });
});

describe('cleanup', () => {
  test('a failing test still removes what it created', async () => {
    let ns = '';
    await assert.rejects(
      withScope(async (s) => {
        const node = await createNode(s);
        const pod = await node.addPod();
        ns = pod.netns;
        await assert.rejects(udpFlow(s, { from: pod, to: { name: 'nowhere', netns: pod.netns, ipv4: '10.0.0.0', ipv6: '::' }, family: 4 }));
        throw new Error('test failed on purpose');
      }),
      /on purpose/,
    );
    assert.ok(ns && !existsSync(`/run/netns/${ns}`));
    assert.deepEqual(leftovers(runPrefix()), { netns: [], links: [] });
  });

  // The global switches are shared by every harness process on the machine: the first
  // holder records the original values, the last one to let go restores them.
  test('global forwarding mode sets and restores the sysctls', async () => {
    const files = { 4: '/run/ihr-harness/forwarding-ipv4.json', 6: '/run/ihr-harness/forwarding-ipv6.json' } as const;
    const keys = { 4: 'net/ipv4/ip_forward', 6: 'net/ipv6/conf/all/forwarding' } as const;
    const read = (f: 4 | 6) => readFileSync(`/proc/sys/${keys[f]}`, 'utf8').trim();
    const state = (f: 4 | 6) => JSON.parse(readFileSync(files[f], 'utf8')) as { saved: Record<string, string>; holders: number[] };
    const original: Partial<Record<4 | 6, string>> = {};
    await withScope(async (s) => {
      const node = await createNode(s, { forwarding: 'global' });
      assert.deepEqual(node.globalForwarding, [4, 6]);
      for (const f of [4, 6] as const) {
        assert.equal(read(f), '1');
        const st = state(f);
        assert.ok(st.holders.includes(process.pid));
        original[f] = st.saved[keys[f]];
        assert.match(original[f] ?? '', /^[01]$/);
      }
      const a = await node.addPod();
      const remote = await node.addRemote();
      await assertUdp(s, a, remote, 6, 22_001, 22_002);
      await assertUdp(s, remote, a, 4, 22_003, 22_004);
    });
    for (const f of [4, 6] as const) {
      if (existsSync(files[f])) {
        // Another harness process still holds it: it stays on, without us.
        assert.ok(!state(f).holders.includes(process.pid), 'this process released its hold');
        assert.equal(read(f), '1');
      } else {
        assert.equal(read(f), original[f], `IPv${f} forwarding restored`);
      }
    }
  });

  for (const [how, code] of [
    ['SIGTERM', 143],
    ['SIGINT', 130],
    ['process.exit', 7],
  ] as const) {
    test(`a process that ends by ${how} removes what it created`, async () => {
      const netns = fileURLToPath(new URL('../helpers/netns.ts', import.meta.url));
      const src = [
        `const m = await import(${JSON.stringify(netns)});`,
        'const { Scope, createNode, runPrefix } = m.default ?? m;',
        'const s = new Scope();',
        'const node = await createNode(s);',
        'await node.addPod(); await node.addPod({ style: "bridged" }); await node.addRemote({ vxlan: true });',
        's.spawn(null, ["sleep", "60"]);',
        'console.log(runPrefix());',
        how === 'process.exit' ? 'process.exit(7);' : `process.kill(process.pid, ${JSON.stringify(how)});`,
        'setInterval(() => {}, 1000);',
      ].join('\n');
      const { code: exitCode, stdout } = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
        const child = execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', src], { timeout: 30_000 }, (err, out) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout: out }),
        );
        child.stdin?.end();
      });
      const prefix = stdout.trim().split('\n').pop() ?? '';
      assert.match(prefix, /^ihr[0-9a-f]{4}$/, `child printed its prefix (exit ${exitCode})`);
      assert.equal(exitCode, code);
      assert.deepEqual(leftovers(prefix), { netns: [], links: [] });
    });
  }
});

describe('CNI sandbox (test/fixtures/cni/harness.ts)', () => {
  test('a sandbox pod is a veth pair the plugin can follow; remove() leaves no netns, link, pin root or temp dir', async () => {
    const sb = await Sandbox.create();
    const { netns, hostIfname, hostIfindex } = sb.pod;
    const inside = getLink({ ifname: 'eth0' }, netns);
    assert.deepEqual([inside.kind, inside.peerIfindex], ['veth', hostIfindex]);
    const host = getLink({ ifindex: hostIfindex });
    assert.deepEqual([host.ifname, host.kind, host.peerIfindex], [hostIfname, 'veth', inside.ifindex]);
    assert.deepEqual(sb.pinned(), [], 'an empty pin root of its own');
    assert.ok(sb.pinRoot.startsWith(`/sys/fs/bpf/${runPrefix()}`), sb.pinRoot);
    assert.ok(existsSync(sb.dir));
    sb.remove();
    assert.deepEqual(
      { netns: existsSync(netns), link: existsSync(`/sys/class/net/${hostIfname}`), pins: existsSync(sb.pinRoot), dir: existsSync(sb.dir) },
      { netns: false, link: false, pins: false, dir: false },
    );
  });
});
