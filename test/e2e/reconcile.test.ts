// Reconcile and restart safety, against a real daemon process: programs removed from a pod's veth
// by something else come back (and a foreign program there is left alone), a pod added while
// the daemon was down is known once it starts (spool drained), stale pins are removed, pins
// without a record are adopted, attachments survive SIGTERM and SIGKILL, and uninstall removes
// everything of ours.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { withScope, createNode, run, type Pod, type Scope } from '../helpers/netns';
import { udpFlow } from '../helpers/traffic';
import { DAEMON_BUNDLE, DaemonProcess, ReportSink, cniAdd, cniDel, watchlistFile } from '../helpers/daemon';
import { testObject, testPinRoot } from '../helpers/bpf';
import * as bpf from '../../bpf/index';
import { attachPod, pinnedPrograms, closePrograms } from '../../bpf/attachments';
import { PinLayout } from '../../bpf/pins';
import { IPPROTO } from '../../bpf/events';
import { callApi } from '../../daemon/cli/client';

async function eventually<T>(what: string, check: () => Promise<T | undefined> | T | undefined): Promise<T> {
  for (let i = 0; i < 300; i++) {
    const v = await check();
    if (v !== undefined) return v;
    await sleep(50);
  }
  throw new Error(`never happened: ${what}`);
}

async function metric(daemon: DaemonProcess, name: string): Promise<number | undefined> {
  const body = (await callApi(daemon.socket, 'GET', '/metrics')).body;
  const line = body.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

const hook = (ifindex: number, d: 'ingress' | 'egress') => bpf.query(ifindex, d).map((h) => [h.name, h.ours]);
const ours = (ifindex: number) => (['ingress', 'egress'] as const).flatMap((d) => bpf.query(ifindex, d).filter((h) => h.ours).map((h) => h.name));

interface Att { network: string; containerId: string; ifname: string; state: string; programIds: number[]; [k: string]: unknown }

async function attachments(daemon: DaemonProcess): Promise<Att[]> {
  return (await daemon.api<{ attachments: Att[] }>('GET', '/v1/attachments')).json.attachments;
}

/** The fields that say which pod is observed where and since when (program ids change on upgrade). */
function identity(a: Att) {
  const { programIds, ...rest } = a;
  assert.equal(programIds.length, 2, 'two programs per attachment');
  return rest;
}

/** A run dir and pin root that outlive one daemon process (restarts), removed with the scope. */
function persistentDirs(scope: Scope): { runDir: string; pinRoot: string } {
  const runDir = mkdtempSync(join(tmpdir(), 'ihr-daemon-'));
  scope.defer(`remove ${runDir}`, () => rmSync(runDir, { recursive: true, force: true }));
  return { runDir, pinRoot: testPinRoot(scope) };
}

test('programs removed by something else are re-attached; a foreign program on the hook is untouched', async () => {
  await withScope(async (scope) => {
    const node = await createNode(scope);
    const a = await node.addPod();
    const sink = await ReportSink.start(scope);
    const daemon = await DaemonProcess.start(scope, { collector: sink.address, env: { INT_HOST_REPORTER_RECONCILE_INTERVAL_MS: '200' } });
    const cid = `cid-a-${scope.prefix}`;
    assert.equal(cniAdd(daemon, a, cid, 'pod-a').code, 0, 'CNI ADD');

    const foreign = bpf.BpfObject.load(testObject('foreign.bpf.o'));
    scope.defer('close foreign object', () => foreign.close());
    const theirs = bpf.attach(foreign.program('foreign_prog'), a.hostIfindex, 'ingress', { mode: 'tcx' });
    scope.defer('detach foreign program', () => bpf.detach(theirs));
    // bpf.attach puts a program first, as any agent may do with its own.
    assert.deepEqual(hook(a.hostIfindex, 'ingress'), [['foreign_prog', false], ['int_ingress', true]]);
    const egressBefore = bpf.query(a.hostIfindex, 'egress');

    // Another agent removes our ingress link.
    const pin = join(new PinLayout(daemon.pinRoot).attachment('testnet', cid, 'eth0'), 'ingress');
    const removedLink = bpf.pinnedLinkInfo(pin).id;
    assert.equal(bpf.detachPinnedLink(pin), true, 'our ingress link was pinned');

    const repairs = await eventually('the repair is counted', async () => {
      const n = await metric(daemon, 'int_reconcile_repairs_total');
      return n !== undefined && n > 0 ? n : undefined;
    });
    assert.equal(repairs, 1);
    assert.deepEqual(hook(a.hostIfindex, 'ingress'), [['int_ingress', true], ['foreign_prog', false]], 'ours is back, first, beside theirs');
    assert.equal(bpf.query(a.hostIfindex, 'ingress')[1].progId, theirs.progId, 'the foreign program is the same one');
    assert.deepEqual(bpf.query(a.hostIfindex, 'egress'), egressBefore, 'the egress hook was not touched');
    assert.notEqual(bpf.pinnedLinkInfo(pin).id, removedLink, 'a new link, pinned again');
    const [att] = await attachments(daemon);
    assert.deepEqual({ state: att.state, programIds: att.programIds },
      { state: 'ok', programIds: (['ingress', 'egress'] as const).map((d) => bpf.query(a.hostIfindex, d).find((h) => h.ours)!.progId) });
    assert.equal(await metric(daemon, 'int_reconcile_repair_failures_total'), 0);
  });
});

test('a pod added while the daemon was down is known when it starts; the spool is drained', async () => {
  await withScope(async (scope) => {
    const node = await createNode(scope);
    const a = await node.addPod();
    const b = await node.addPod();
    const remote = await node.addRemote();
    const sink = await ReportSink.start(scope);
    const { runDir, pinRoot } = persistentDirs(scope);
    // The plugin's view of a daemon that is not running yet: its socket, spool and pin root.
    const absent = { socket: join(runDir, 'daemon.sock'), spoolDir: join(runDir, 'spool'), pinRoot } as DaemonProcess;
    const cid = { a: `cid-a-${scope.prefix}`, b: `cid-b-${scope.prefix}` };
    assert.equal(cniAdd(absent, a, cid.a, 'pod-a').code, 0, 'ADD succeeds without a daemon (fail open)');
    assert.equal(cniAdd(absent, b, cid.b, 'pod-b').code, 0, 'ADD of b');
    assert.equal(cniDel(absent, b, cid.b).code, 0, 'DEL of b, still without a daemon');
    assert.deepEqual(ours(a.hostIfindex), ['int_ingress', 'int_egress'], 'the plugin attached a by itself');
    assert.deepEqual(ours(b.hostIfindex), [], 'and detached b');
    assert.equal(readdirSync(absent.spoolDir).filter((f) => f.endsWith('.json')).length, 2, 'two spool records wait');

    const wl = watchlistFile(scope, `rules:\n  - protocol: UDP\n    src-addr: ${a.ipv4}/32\n    dst-addr: ${remote.ipv4}/32\n`);
    const daemon = await DaemonProcess.start(scope, { collector: sink.address, runDir, pinRoot, watchlist: wl, dataInterface: remote.dataIfname });
    assert.deepEqual(readdirSync(daemon.spoolDir).filter((f) => !f.startsWith('.')), [], 'the spool is empty');
    const atts = await attachments(daemon);
    assert.deepEqual(atts.map((x) => ({ ...identity(x), attachedAt: typeof x.attachedAt })), [{
      network: 'testnet', containerId: cid.a, ifname: 'eth0', netns: a.netnsPath, hostIfname: a.hostIfname, hostIfindex: a.hostIfindex,
      podNamespace: 'default', podName: 'pod-a', podUid: 'uid-pod-a', ips: [a.ipv4, a.ipv6], mode: 'tcx', attachedAt: 'string',
      state: 'ok', labels: null, owner: null,
    }]);
    assert.equal(await metric(daemon, 'int_spool_drained_total'), 2);
    assert.equal(await metric(daemon, 'int_reconcile_repairs_total'), 0, 'nothing to repair: the plugin had attached');
    assert.equal(existsSync(new PinLayout(pinRoot).attachment('testnet', cid.b, 'eth0')), false, 'no pins of b');

    const flow = await udpFlow(scope, { from: a, to: remote, family: 4, sport: 47321 });
    const reps = await sink.waitFor({ src: a.ipv4, dst: remote.ipv4, protocol: IPPROTO.UDP, srcPort: flow.sport });
    assert.equal(reps[0]?.ingressPort, a.hostIfindex, 'the pod attached before the daemon ran is reported');
  });
});

test('stale pins are removed, unknown live pins adopted, a vanished veth forgotten', async () => {
  await withScope(async (scope) => {
    const node = await createNode(scope);
    const [a, c, d] = [await node.addPod(), await node.addPod(), await node.addPod()];
    const sink = await ReportSink.start(scope);
    const daemon = await DaemonProcess.start(scope, { collector: sink.address });
    const layout = new PinLayout(daemon.pinRoot);
    const cidC = `cid-c-${scope.prefix}`;
    assert.equal(cniAdd(daemon, c, cidC, 'pod-c').code, 0, 'CNI ADD of c');

    // Pins the daemon has no record of: one on a live veth (adopted), one whose veth goes away (stale).
    const progs = pinnedPrograms(layout);
    scope.defer('close programs', () => closePrograms(progs));
    const adopted = { network: 'othernet', containerId: `cid-x-${scope.prefix}`, ifname: 'eth0' };
    const stale = { network: 'othernet', containerId: `cid-y-${scope.prefix}`, ifname: 'eth0' };
    attachPod(layout, adopted, a.hostIfindex, progs);
    attachPod(layout, stale, d.hostIfindex, progs);
    await run(['ip', 'link', 'del', 'dev', d.hostIfname]);
    await run(['ip', 'link', 'del', 'dev', c.hostIfname]); // c's pod is gone without a CNI DEL

    await eventually('stale pins removed and c forgotten', async () =>
      !existsSync(layout.attachment(stale.network, stale.containerId, stale.ifname)) &&
      !existsSync(layout.attachment('testnet', cidC, 'eth0')) ? true : undefined);
    const atts = await eventually('the live pins adopted', async () => {
      const list = await attachments(daemon);
      return list.length === 1 && list[0].containerId === adopted.containerId ? list : undefined;
    });
    assert.deepEqual(atts.map(identity), [{
      ...adopted, hostIfindex: a.hostIfindex, hostIfname: a.hostIfname, ips: [], state: 'ok', labels: null, owner: null,
    }]);
    assert.deepEqual(ours(a.hostIfindex), ['int_ingress', 'int_egress'], 'the adopted attachment was left attached');
    assert.equal(await metric(daemon, 'int_reconcile_stale_pins_removed_total'), 1);
    assert.equal(await metric(daemon, 'int_reconcile_forgotten_total'), 1);
  });
});

test('restart: SIGTERM and SIGKILL keep attachments and records; reports flow again; uninstall removes everything of ours', async () => {
  await withScope(async (scope) => {
    const node = await createNode(scope);
    const a = await node.addPod();
    const b = await node.addPod({ style: 'bridged' });
    const remote = await node.addRemote();
    const sink = await ReportSink.start(scope);
    const { runDir, pinRoot } = persistentDirs(scope);
    const wl = watchlistFile(scope, `rules:\n  - protocol: UDP\n    src-addr: ${a.ipv4}/32\n    dst-addr: ${b.ipv4}/32\n`);
    const opts = { collector: sink.address, runDir, pinRoot, watchlist: wl, dataInterface: remote.dataIfname };
    let daemon = await DaemonProcess.start(scope, opts);
    assert.equal(cniAdd(daemon, a, `cid-a-${scope.prefix}`, 'pod-a').code, 0, 'ADD a');
    assert.equal(cniAdd(daemon, b, `cid-b-${scope.prefix}`, 'pod-b').code, 0, 'ADD b');
    const before = (await attachments(daemon)).map(identity);
    assert.equal(before.length, 2);

    const flowOnce = async (sport: number) => {
      const f = await udpFlow(scope, { from: a, to: b, family: 4, sport });
      const r = await sink.waitFor({ src: a.ipv4, dst: b.ipv4, protocol: IPPROTO.UDP, srcPort: f.sport });
      assert.deepEqual(r.map((x) => [x.ingressPort, x.egressPort]).slice(0, 1), [[a.hostIfindex, b.hostIfindex]], `reports for sport ${sport}`);
    };
    await flowOnce(47401);

    await daemon.stop(); // SIGTERM
    assert.equal((await daemon.proc.exited).code, 0, 'a clean exit on SIGTERM');
    for (const p of [a, b]) assert.deepEqual(ours(p.hostIfindex), ['int_ingress', 'int_egress'], `${p.name} stays observed while the daemon is down`);
    assert.deepEqual(ours(remote.dataIfindex), ['int_ingress_nic', 'int_egress_nic'], 'the data interface too');

    daemon = await DaemonProcess.start(scope, opts);
    assert.deepEqual((await attachments(daemon)).map(identity), before, 'the same attachments after SIGTERM and start');

    process.kill(daemon.proc.pid, 'SIGKILL');
    assert.equal((await daemon.proc.exited).signal, 'SIGKILL');
    for (const p of [a, b]) assert.deepEqual(ours(p.hostIfindex), ['int_ingress', 'int_egress'], `${p.name} attached after SIGKILL`);

    daemon = await DaemonProcess.start(scope, opts);
    assert.deepEqual((await attachments(daemon)).map(identity), before, 'the same attachments after SIGKILL and start');
    await flowOnce(47402);
    assert.equal(await metric(daemon, 'int_reconcile_repairs_total'), 0, 'nothing needed repair');
    await daemon.stop();

    // Uninstall: a foreign program on a pod's hook stays; everything of ours goes.
    const foreign = bpf.BpfObject.load(testObject('foreign.bpf.o'));
    scope.defer('close foreign object', () => foreign.close());
    const theirs = bpf.attach(foreign.program('foreign_prog'), a.hostIfindex, 'egress', { mode: 'tcx' });
    scope.defer('detach foreign program', () => bpf.detach(theirs));
    const r = spawnSync(process.execPath, [DAEMON_BUNDLE, 'uninstall', '--bpffs', pinRoot, '--socket', join(runDir, 'daemon.sock')], { encoding: 'utf8' });
    assert.deepEqual({ code: r.status, stdout: r.stdout, stderr: r.stderr },
      { code: 0, stdout: `int-host-reporter: removed 2 pod attachments and everything under ${pinRoot}\n`, stderr: '' });
    for (const ifindex of [a.hostIfindex, b.hostIfindex, remote.dataIfindex]) assert.deepEqual(ours(ifindex), [], `nothing of ours on ${ifindex}`);
    assert.deepEqual(hook(a.hostIfindex, 'egress'), [['foreign_prog', false]], 'the foreign program stays');
    assert.equal(existsSync(pinRoot), false, 'the pin root is gone');
    assert.deepEqual(['state', 'spool'].filter((d) => existsSync(join(runDir, d))), [], 'state and spool are gone');
  });
});

test('a repair failing on every pass: state missing with the reason, retried and counted, one warning', async () => {
  await withScope(async (scope) => {
    const sink = await ReportSink.start(scope);
    const daemon = await DaemonProcess.start(scope, { collector: sink.address, env: { INT_HOST_REPORTER_RECONCILE_INTERVAL_MS: '100' } });
    // What the plugin reports when its attach failed; the netns is already gone, so no repair can work.
    const notice = { network: 'testnet', containerId: `cid-gone-${scope.prefix}`, ifname: 'eth0', netns: `/run/netns/${scope.name('gone', 40)}`,
      podNamespace: 'default', podName: 'pod-gone', error: 'attach failed: test' };
    const added = await daemon.api<{ state: string }>('POST', '/v1/cni/add', JSON.stringify(notice));
    assert.deepEqual({ status: added.status, state: added.json.state }, { status: 200, state: 'missing' });

    const failures = await eventually('three failed repairs', async () => {
      const n = await metric(daemon, 'int_reconcile_repair_failures_total');
      return n !== undefined && n >= 3 ? n : undefined;
    });
    assert.ok(failures >= 3, 'retried on every pass');
    const [att] = await attachments(daemon);
    assert.equal(att.state, 'missing');
    assert.equal(typeof att.lastError, 'string', 'the reason is shown');
    assert.equal(await metric(daemon, 'int_attachments{state="missing"}'), 1);
    assert.ok((await metric(daemon, 'int_log_warnings_suppressed_total'))! >= 2, 'the repeats were suppressed and counted');
    const warns = daemon.proc.lines.map((l) => JSON.parse(l) as { level: number; msg: string; attachment?: string })
      .filter((l) => l.level === 40 && l.msg === 'attachment could not be repaired');
    assert.equal(warns.length, 1, 'one warning line for the repeated failure');
    assert.equal(warns[0].attachment, `testnet/${notice.containerId}/eth0`);

    const bad = await daemon.api('POST', '/v1/cni/add', JSON.stringify({ ...notice, hostIfindex: 'seven' }));
    assert.deepEqual(bad, { status: 400, json: { error: 'invalid attachment notice: hostIfindex: must be integer' } });
  });
});
