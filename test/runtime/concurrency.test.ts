// 20 ADDs, then 20 DELs, all at once: the plugin bundle run as 20 parallel CNI processes on 20
// harness pods. Neither the pins nor the spool may be corrupted: afterwards exactly the expected
// attachments exist (or are gone), every spool file is valid JSON, and nothing else is left.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { withScope, createNode, type Pod } from '../helpers/netns';
import { DaemonProcess, PLUGIN_BUNDLE, ReportSink, pluginConfig, type CniResult } from '../helpers/daemon';
import { listPodAttachments } from '../../bpf/attachments';
import { PinLayout } from '../../bpf/pins';
import * as bpf from '../../bpf/index';
import { assertAttached, attachments, hooksHolding, spoolRecords, waitAttachments, watchPrefixes, SWITCH_ID } from './checks';
import type { Container } from '../helpers/runtime';

const N = 20;

/** One CNI invocation of the bundle as a child process (not blocking: the 20 run in parallel). */
function runPluginAsync(command: string, env: Record<string, string>, config: object): Promise<CniResult> {
  return new Promise((resolve) => {
    const child = spawn(PLUGIN_BUNDLE, [], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', CNI_COMMAND: command, CNI_PATH: '/usr/lib/cni', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(JSON.stringify(config));
  });
}

function prevResult(pod: Pod) {
  return {
    cniVersion: '1.0.0',
    interfaces: [{ name: pod.hostIfname, mac: pod.hostMac }, { name: 'eth0', mac: pod.podMac, sandbox: pod.netnsPath }],
    ips: [{ address: `${pod.ipv4}/32`, interface: 1 }],
  };
}

const asContainer = (p: Pod, i: number): Container => ({
  name: `pod${i}`, id: `cid${i}`, cniContainerId: `cid${i}`, pid: 0, netnsPath: p.netnsPath, netnsName: p.netns,
  ipv4: p.ipv4, eth0Ifindex: p.podIfindex, hostIfindex: p.hostIfindex, hostIfname: p.hostIfname,
});

async function twentyPods(scope: Parameters<Parameters<typeof withScope>[0]>[0]) {
  const node = await createNode(scope);
  const pods: Pod[] = [];
  for (let i = 0; i < N; i++) pods.push(await node.addPod({ label: 'cc' }));
  const sink = await ReportSink.start(scope);
  const daemon = await DaemonProcess.start(scope, {
    collector: sink.address, watchlist: watchPrefixes(scope, [`${pods[0]!.ipv4.split('.').slice(0, 3).join('.')}.0/24`]), switchId: SWITCH_ID,
  });
  const network = `${scope.prefix}-conc`;
  const ids = pods.map((_, i) => `${scope.prefix}-cid${i}`);
  const add = () => Promise.all(pods.map((p, i) => runPluginAsync('ADD', {
    CNI_CONTAINERID: ids[i]!, CNI_NETNS: p.netnsPath, CNI_IFNAME: 'eth0', CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=conc;K8S_POD_NAME=pod${i}`,
  }, pluginConfig(daemon, network, prevResult(p)))));
  const del = () => Promise.all(pods.map((p, i) => runPluginAsync('DEL', {
    CNI_CONTAINERID: ids[i]!, CNI_NETNS: p.netnsPath, CNI_IFNAME: 'eth0',
  }, pluginConfig(daemon, network, prevResult(p)))));
  return { pods, daemon, sink, network, ids, add, del };
}

function assertAllAdded(results: CniResult[], pods: Pod[], label: string): void {
  results.forEach((r, i) => {
    assert.equal(r.code, 0, `${label}: ADD ${i} exit code (${r.stdout}${r.stderr})`);
    assert.deepEqual(JSON.parse(r.stdout), prevResult(pods[i]!), `${label}: ADD ${i} printed prevResult`);
  });
}

function pinKeys(daemon: DaemonProcess): string[] {
  return listPodAttachments(new PinLayout(daemon.pinRoot)).map((k) => `${k.network}/${k.containerId}/${k.ifname}`).sort();
}

/** No temp or stray files in the spool dir: only records and the lock. */
function spoolNames(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).filter((f) => f !== '.lock') : [];
}

/** Polls pred (up to timeoutMs); returns whether it held. */
async function settle(pred: () => boolean | Promise<boolean>, timeoutMs = 6000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
  return true;
}

// The daemon's reconcile pass (every 300 ms here) runs while the plugins work: it must neither
// remove an attachment an ADD is still making nor re-attach one a DEL has just removed.
test('20 concurrent ADDs then 20 concurrent DELs with the daemon up: exact pins and records, nothing left', async () => {
  await withScope(async (scope) => {
    const { pods, daemon, network, ids, add, del } = await twentyPods(scope);
    assertAllAdded(await add(), pods, 'daemon up');
    const want = ids.map((id) => `${network}/${id}/eth0`).sort();
    assert.deepEqual(pinKeys(daemon), want, 'right after the 20 ADDs: one pinned attachment per pod');
    await settle(async () => JSON.stringify(pinKeys(daemon)) === JSON.stringify(want) && (await attachments(daemon)).filter((r) => r.state === 'ok').length === N);
    assert.deepEqual(pinKeys(daemon), want, 'one pinned attachment per pod');
    const progIds = pods.flatMap((p, i) => assertAttached(asContainer(p, i), `pod${i}`));
    const list = await attachments(daemon);
    assert.deepEqual(list.map((r) => [r.containerId, r.state, r.hostIfindex, r.podName]).sort(),
      pods.map((p, i) => [ids[i], 'ok', p.hostIfindex, `pod${i}`]).sort(), 'the daemon knows all 20, state ok');
    assert.deepEqual(spoolRecords(daemon.spoolDir), [], 'nothing spooled: every notice arrived');

    const dels = await del();
    dels.forEach((r, i) => assert.equal(r.code, 0, `DEL ${i} succeeds (${r.stdout}${r.stderr})`));
    assert.deepEqual(pinKeys(daemon), [], 'right after the 20 DELs: no pins');
    assert.deepEqual(spoolRecords(daemon.spoolDir), [], 'right after the 20 DELs: every notice arrived');
    await settle(async () => pinKeys(daemon).length === 0 && spoolRecords(daemon.spoolDir).length === 0 && (await attachments(daemon)).length === 0);
    assert.deepEqual(pinKeys(daemon), [], 'no pins left');
    for (const [i, p] of pods.entries()) {
      assert.ok(bpf.query(p.hostIfindex, 'ingress').every((h) => !h.ours) && bpf.query(p.hostIfindex, 'egress').every((h) => !h.ours),
        `pod${i}: no program of ours left on ${p.hostIfname} (the veth still exists)`);
    }
    assert.deepEqual(await hooksHolding(progIds), [], 'none of our programs on any interface');
    assert.deepEqual((await waitAttachments(daemon, (l) => l.length === 0)).length, 0, 'the daemon forgot all 20');
    assert.deepEqual(spoolNames(daemon.spoolDir).filter((f) => !f.endsWith('.json')), [], 'no temp files in the spool');
    assert.deepEqual(spoolRecords(daemon.spoolDir), [], 'no spool record');
  });
});

test('20 concurrent ADDs and DELs with the daemon down: 20 valid spool records each time, drained by the daemon', async () => {
  await withScope(async (scope) => {
    const { pods, daemon, sink, network, ids, add, del } = await twentyPods(scope);
    await daemon.stop();
    assertAllAdded(await add(), pods, 'daemon down');
    assert.deepEqual(pinKeys(daemon), ids.map((id) => `${network}/${id}/eth0`).sort(), 'the plugin attached all 20 from the pinned programs');
    const progIds = pods.flatMap((p, i) => assertAttached(asContainer(p, i), `pod${i}`));
    const adds = spoolRecords(daemon.spoolDir);
    assert.deepEqual(adds.map((r) => [r.op, (r.key as { containerId: string }).containerId]).sort(), ids.map((id) => ['add', id]).sort(),
      '20 add records, all valid JSON, one per attachment');
    assert.deepEqual(spoolNames(daemon.spoolDir).filter((f) => !f.endsWith('.json')), [], 'no temp files in the spool');

    const dels = await del();
    dels.forEach((r, i) => assert.equal(r.code, 0, `DEL ${i} succeeds (${r.stdout}${r.stderr})`));
    assert.deepEqual(pinKeys(daemon), [], 'the plugin removed all 20 attachments');
    assert.deepEqual(await hooksHolding(progIds), [], 'none of our programs on any interface');
    const after = spoolRecords(daemon.spoolDir);
    assert.deepEqual(after.map((r) => [r.op, (r.key as { containerId: string }).containerId]).sort(), ids.map((id) => ['del', id]).sort(),
      'each key\'s record replaced by its DEL, all valid JSON');

    const again = await DaemonProcess.start(scope, {
      collector: sink.address, watchlist: watchPrefixes(scope, ['10.0.0.0/8']), switchId: SWITCH_ID, runDir: daemon.runDir, pinRoot: daemon.pinRoot,
    });
    const deadline = Date.now() + 5000;
    while (spoolRecords(again.spoolDir).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(spoolRecords(again.spoolDir), [], 'the restarted daemon drained the spool');
    assert.equal((await waitAttachments(again, (l) => l.length === 0)).length, 0, 'and knows no attachment');
    assert.deepEqual(pinKeys(again), [], 'no pins');
  });
});
