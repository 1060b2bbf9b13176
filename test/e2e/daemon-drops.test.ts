// Drop reports: packets the host dropped after our ingress hook saw them, with the kernel's
// reason mapped to the INT drop code; and the daemon's behaviour when its inputs go wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { withScope, createNode, run, allocateSubnet } from '../helpers/netns';
import { udpFlow, tcpFlow } from '../helpers/traffic';
import { DaemonProcess, ReportSink, cniAdd, watchlistFile } from '../helpers/daemon';
import { IntDropCode } from '../../daemon/report/drop-reasons';
import { IPPROTO } from '../../bpf/events';

async function setup(scope: Parameters<Parameters<typeof withScope>[0]>[0], collector?: string) {
  const node = await createNode(scope);
  const a = await node.addPod();
  const b = await node.addPod();
  const sink = await ReportSink.start(scope);
  const wl = watchlistFile(scope, `rules:\n  - src-addr: ${a.ipv4}/32\n    dst-addr: 0.0.0.0/0\n`);
  const daemon = await DaemonProcess.start(scope, { collector: collector ?? sink.address, watchlist: wl, switchId: 7 });
  for (const [pod, name] of [[a, 'drop-a'], [b, 'drop-b']] as const) {
    const r = cniAdd(daemon, pod, `cid-${name}-${scope.prefix}`, name);
    assert.equal(r.code, 0, `CNI ADD ${name}: ${r.stdout}${r.stderr}`);
  }
  return { a, b, sink, wl, daemon };
}

test('an iptables DROP between two pods gives drop reports with the ACL code and the tuple', async () => {
  await withScope(async (scope) => {
    const { a, b, sink } = await setup(scope);
    const rule = ['FORWARD', '-s', `${a.ipv4}/32`, '-d', `${b.ipv4}/32`, '-p', 'udp', '--dport', '7001', '-j', 'DROP'];
    await run(['iptables', '-I', ...rule]);
    scope.defer('remove DROP rule', () => void run(['iptables', '-D', ...rule]));
    const udp = await udpFlow(scope, { from: a, to: b, family: 4, sport: 49001, dport: 7001, count: 3, timeoutMs: 1500 });
    assert.equal(udp.received.packets, 0, 'the rule dropped every datagram');
    const drops = await sink.waitFor({ src: a.ipv4, dst: b.ipv4, protocol: IPPROTO.UDP, srcPort: 49001, dstPort: 7001, kind: 'drop' }, 3);
    assert.equal(drops.length, 3, 'one drop report per dropped packet');
    for (const d of drops) {
      assert.deepEqual(
        { nproto: d.nproto, dropped: d.dropped, tracked: d.tracked, switchId: d.switchId, ingressPort: d.ingressPort, dropReason: d.dropReason },
        { nproto: 1, dropped: true, tracked: false, switchId: 7, ingressPort: a.hostIfindex, dropReason: IntDropCode.ACL_DROP },
      );
      assert.equal(d.inner.ipChecksumValid, true, 'the inner packet is the dropped one');
    }
    // No flow report for the dropped flow: it never left.
    assert.equal(sink.matching({ src: a.ipv4, dst: b.ipv4, protocol: IPPROTO.UDP, srcPort: 49001, kind: 'flow' }).length, 0);
  });
});

test('traffic to an unreachable destination gives a drop report with a routing code', async () => {
  await withScope(async (scope) => {
    const { a, sink } = await setup(scope);
    // A prefix of our own with an explicit unreachable route: nothing leaves the machine.
    const nowhere = await allocateSubnet();
    await run(['ip', 'route', 'add', 'unreachable', nowhere.v4Cidr]);
    scope.defer('remove unreachable route', () => void run(['ip', 'route', 'del', 'unreachable', nowhere.v4Cidr]));
    const dst = nowhere.v4(9);
    await udpFlow(scope, { from: a, to: a, family: 4, dstAddr: dst, serverAddr: a.ipv4, sport: 49002, dport: 7002, count: 2, timeoutMs: 1000 });
    const drops = await sink.waitFor({ src: a.ipv4, dst, protocol: IPPROTO.UDP, srcPort: 49002, kind: 'drop' }, 2);
    assert.equal(drops.length, 2, 'both datagrams dropped by routing');
    for (const d of drops) {
      assert.equal(d.ingressPort, a.hostIfindex);
      assert.equal(d.dropReason, IntDropCode.OUTER_IP_MISS, 'routing miss (29)');
    }
  });
});

test('a watchlist with an error is refused and the previous one stays in force', async () => {
  await withScope(async (scope) => {
    const { a, b, sink, wl, daemon } = await setup(scope);
    const before = await daemon.api<{ rules: unknown[] }>('GET', '/v1/watchlist');
    assert.equal(before.json.rules.length, 1);
    writeFileSync(wl, `rules:\n  - src-addr: ${a.ipv4}/33\n    dst-addr: 0.0.0.0/0\n`);
    await sleep(800);
    const after = await daemon.api<{ rules: unknown[] }>('GET', '/v1/watchlist');
    assert.deepEqual(after.json, before.json, 'the bad file changed nothing');
    const logged = daemon.proc.lines.some((l) => l.includes('watchlist refused') && l.includes('/33'));
    assert.ok(logged, 'the refusal is logged naming the bad value');
    // The old rules still report.
    const udp = await udpFlow(scope, { from: a, to: b, family: 4, sport: 49003, count: 1 });
    const r = await sink.waitFor({ src: a.ipv4, dst: b.ipv4, protocol: IPPROTO.UDP, srcPort: udp.sport, kind: 'flow' });
    assert.equal(r.length, 1, 'reports still flow under the old watchlist');
    // A bad body through the API is a 400 naming the field, and changes nothing.
    const put = await daemon.api<{ error: string }>('PUT', '/v1/watchlist', `rules:\n  - src-addr: 10.0.0.0/8\n    dst-addr: nonsense\n`);
    assert.equal(put.status, 400);
    assert.match(put.json.error, /dst-addr/);
    assert.deepEqual((await daemon.api('GET', '/v1/watchlist')).json, before.json);
  });
});

test('a collector that is down costs nothing but counted, unsent reports', async () => {
  await withScope(async (scope) => {
    // A port nobody listens on (the collector's port after it closed).
    const probe = await ReportSink.start(scope);
    const deadPort = probe.collector.address.port;
    await probe.collector.close();
    const { a, b, daemon } = await setup(scope, `127.0.0.1:${deadPort}`);
    for (let i = 0; i < 5; i++) await tcpFlow(scope, { from: a, to: b, family: 4, count: 1 });
    await sleep(300);
    assert.equal((await daemon.api('GET', '/healthz')).status, 200, 'the daemon is healthy');
    const text = await (await import('../../daemon/cli/client')).callApi(daemon.socket, 'GET', '/metrics');
    // Sender metrics carry the collector as a label; there is one collector here.
    const value = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)$`, 'm').exec(text.body)?.[1] ?? NaN);
    const built = value('int_reports_built_total');
    assert.ok(built >= 5, `reports were built (${built})`);
    assert.equal(value('int_reports_queued_total'), built, 'every report was queued');
    // Every queued report is accounted for: handed to the kernel, or refused (ICMP port
    // unreachable makes the next send on the connected socket fail), or dropped when full.
    assert.equal(value('int_reports_sent_total') + value('int_reports_send_errors_total') + value('int_reports_dropped_queue_full_total'), built);
    const status = await daemon.api<{ collectors: { lastError: string | null }[] }>('GET', '/v1/status');
    assert.match(status.json.collectors[0].lastError ?? '', /ECONNREFUSED/, 'the refusal is known');
  });
});

test('the aging fallback reports a dropped packet with reason unknown, and counts it', async () => {
  await withScope(async (scope) => {
    const node = await createNode(scope);
    const a = await node.addPod();
    const b = await node.addPod();
    const sink = await ReportSink.start(scope);
    const wl = watchlistFile(scope, `rules:\n  - src-addr: ${a.ipv4}/32\n    dst-addr: ${b.ipv4}/32\n`);
    const daemon = await DaemonProcess.start(scope, { collector: sink.address, watchlist: wl, switchId: 7, extraArgs: ['--drop-detection', 'aging'] });
    assert.equal(cniAdd(daemon, a, `cid-aging-a-${scope.prefix}`, 'aging-a').code, 0, 'ADD a');
    assert.equal(cniAdd(daemon, b, `cid-aging-b-${scope.prefix}`, 'aging-b').code, 0, 'ADD b');
    const status = await daemon.api<{ drops: string }>('GET', '/v1/status');
    assert.equal(status.json.drops, 'aging');
    const rule = ['FORWARD', '-s', `${a.ipv4}/32`, '-d', `${b.ipv4}/32`, '-p', 'udp', '--dport', '7003', '-j', 'DROP'];
    await run(['iptables', '-I', ...rule]);
    scope.defer('remove DROP rule', () => void run(['iptables', '-D', ...rule]));
    // Three datagrams: the fallback works from a small per-CPU table that other packets of the
    // same CPU can overwrite, so it may miss one; it must find the others.
    await udpFlow(scope, { from: a, to: b, family: 4, sport: 49004, dport: 7003, count: 3, timeoutMs: 500 });
    const drops = await sink.waitFor({ src: a.ipv4, dst: b.ipv4, protocol: IPPROTO.UDP, srcPort: 49004, dstPort: 7003, kind: 'drop' }, 3, 8000);
    assert.ok(drops.length >= 1 && drops.length <= 3, `found by aging within about 3 s (${drops.length} of 3)`);
    for (const d of drops) assert.deepEqual([d.ingressPort, d.dropReason, d.egressPort], [a.hostIfindex, 0, 0]);
    const metrics = await (await import('../../daemon/cli/client')).callApi(daemon.socket, 'GET', '/metrics');
    assert.match(metrics.body, /^int_drops_aged_total [1-9]\d*$/m, 'aged drops are counted');
  });
});
