// The netlink module on real interfaces: replies larger than its first receive buffer and dumps
// spread over many datagrams are read whole, a missing interface is an ENODEV error naming it,
// and bad input is refused before anything is sent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as netlink from '../../netlink/index';
import { withScope, createNetns, createNode, ip, ipJson, run } from '../helpers/netns';

test('a link whose reply outgrows the first receive buffer (80 long altnames) is read whole', async () => {
  await withScope(async (scope) => {
    const ns = await createNetns(scope);
    await ip(ns, ['link', 'add', 'big0', 'address', '02:00:00:00:be:ef', 'type', 'veth', 'peer', 'name', 'big1']);
    // ~10 KB of altnames: more than the 8 KiB the socket starts with.
    const names = Array.from({ length: 80 }, (_, i) => `altname-${String(i).padStart(3, '0')}-${'x'.repeat(110)}`);
    await run(['ip', '-n', ns, '-batch', '-'], { input: names.map((n) => `link property add dev big0 altname ${n}\n`).join('') });
    const [shown] = await ipJson<{ ifindex: number; altnames: string[] }>(ns, ['link', 'show', 'dev', 'big0']);
    const [peer] = await ipJson<{ ifindex: number }>(ns, ['link', 'show', 'dev', 'big1']);
    assert.equal(shown!.altnames.length, 80, 'ip shows the 80 altnames');
    const link = netlink.getLink({ ifname: 'big0' }, `/run/netns/${ns}`);
    assert.deepEqual(link, { ifindex: shown!.ifindex, ifname: 'big0', up: false, peerIfindex: peer!.ifindex, mac: '02:00:00:00:be:ef', kind: 'veth' });
  });
});

test('a neighbour dump of 600 entries (many datagrams) is read to its end', async () => {
  await withScope(async (scope) => {
    const node = await createNode(scope);
    const pod = await node.addPod();
    // Permanent entries on our own host veth: they go with it.
    const entry = (i: number) => ({ ip: `198.18.${i >> 8}.${i & 0xff}`, mac: `02:00:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}` });
    const entries = Array.from({ length: 600 }, (_, i) => entry(i + 1));
    await run(['ip', '-batch', '-'], { input: entries.map((e) => `neigh add ${e.ip} lladdr ${e.mac} dev ${pod.hostIfname} nud permanent\n`).join('') });
    for (const e of [entries[0], entries[299], entries[599]]) assert.equal(netlink.neighbourMac(pod.hostIfindex, e.ip), e.mac, e.ip);
    assert.equal(netlink.neighbourMac(pod.hostIfindex, '198.18.200.1'), undefined, 'no entry: undefined');
  });
});

test('a missing interface is an ENODEV NetlinkError naming it', async () => {
  await withScope(async (scope) => {
    const ns = await createNetns(scope);
    const enodev = (message: string) => (e: unknown) => e instanceof netlink.NetlinkError && e.code === 'ENODEV' && e.errno === 19 && e.message === message;
    assert.throws(() => netlink.getLink({ ifindex: 999999 }), enodev('link ifindex 999999: No such device (ENODEV)'));
    assert.throws(() => netlink.getLink({ ifindex: 0 }), enodev('link ifindex 0: No such device (ENODEV)'));
    assert.throws(() => netlink.getLink({ ifname: 'nosuch0' }, `/run/netns/${ns}`),
      enodev(`link nosuch0 in netns /run/netns/${ns}: No such device (ENODEV)`));
    assert.throws(() => netlink.getLink({ ifname: 'lo' }, '/run/netns/no-such-netns-here'),
      (e: unknown) => e instanceof netlink.NetlinkError && e.code === 'ENOENT' && e.message === 'open netns /run/netns/no-such-netns-here: No such file or directory (ENOENT)');
  });
});

test('bad input is refused with a TypeError naming it', () => {
  const refused = (fn: () => unknown, message: string) => assert.throws(fn, (e: unknown) => e instanceof TypeError && e.message === message);
  refused(() => netlink.getLink({ ifname: '' }), "invalid interface name ''");
  refused(() => netlink.getLink({ ifname: 'a-name-too-long-for-linux' }), "invalid interface name 'a-name-too-long-for-linux'");
  refused(() => netlink.tcFilters(1, 'sideways' as netlink.Direction), "direction must be 'ingress' or 'egress', not 'sideways'");
  refused(() => netlink.qdiscs(-1), 'ifindex must be a positive integer, not -1');
  refused(() => netlink.routeOutputIfindex('10.0.0.300'), "invalid IP address '10.0.0.300'");
  refused(() => netlink.bridgePortOf(1, '02:00:00:00:00'), "invalid MAC address '02:00:00:00:00'");
});
