// /healthz and /readyz of the real daemon process, on its loopback health listener and on its
// unix socket: not ready while the CNI installer's status file is missing or says anything but
// "chained", while our program is off a data interface, and while the Kubernetes API has not
// answered the pod list; ready once all of it holds. Bodies compared whole. And the daemon with
// exactly the DaemonSet's capabilities (no others, as in its container) does its whole job.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { get } from 'node:http';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withScope, createNode, type Scope } from '../helpers/netns';
import { DaemonProcess, ReportSink, cniAdd, watchlistFile, freePort } from '../helpers/daemon';
import { callApi } from '../../daemon/cli/client';
import { udpFlow } from '../helpers/traffic';
import { IPPROTO } from '../../bpf/events';
import { manifestObjects } from '../../install/manifests';
import { FakeKubeApi, eventually, kubeconfigFor } from '../helpers/fake-kube-api';
import * as bpf from '../../bpf/index';
import { PinLayout } from '../../bpf/pins';

const NO_KUBE = 'not checked: no pod watch (no in-cluster service account (KUBERNETES_SERVICE_HOST unset) and no KUBECONFIG)';

/** GET over TCP, as the kubelet's httpGet probe does. */
function httpGet(port: number, path: string): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(body) }));
    }).on('error', reject);
  });
}

/** The installer's status file, written the way the installer writes it (temp + rename). */
function writeStatus(file: string, state: string, message: string, conflist: string | null, pluginBuild: string | null): void {
  writeFileSync(`${file}.tmp`, JSON.stringify({ state, message, conflist, pluginBuild, updatedAt: new Date().toISOString() }));
  renameSync(`${file}.tmp`, file);
}

function tempDir(scope: Scope, tag: string): string {
  const dir = mkdtempSync(join(tmpdir(), `ihr-${tag}-`));
  scope.defer(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('readyz follows the CNI installer status file and the data interface attachment, on TCP and on the socket', async () => {
  await withScope(async (scope) => {
    const node = await createNode(scope);
    const remote = await node.addRemote();
    const sink = await ReportSink.start(scope);
    const status = join(tempDir(scope, 'status'), 'cni-installer.json');
    const port = await freePort();
    const daemon = await DaemonProcess.start(scope, {
      collector: sink.address, dataInterface: remote.dataIfname,
      extraArgs: ['--cni-installer-status', status, '--health-listen', `:${port}`],
    });
    const datapath = { name: 'datapath', ok: true, message: `programs loaded and pinned in ${daemon.pinRoot}; event reader running` };
    const ifaces = { name: 'data-interfaces', ok: true, message: `attached on ingress and egress: ${remote.dataIfname} (ifindex ${remote.dataIfindex})` };
    const kube = { name: 'kubernetes', ok: true, message: NO_KUBE };
    const expect = async (code: number, installer: { ok: boolean; message: string }, interfaces = ifaces) => {
      const body = { ready: code === 200, checks: [datapath, interfaces, { name: 'cni-installer', ...installer }, kube] };
      assert.deepEqual(await httpGet(port, '/readyz'), { status: code, json: body }, 'over TCP');
      assert.deepEqual(await daemon.api('GET', '/readyz'), { status: code, json: body }, 'over the unix socket');
      assert.deepEqual((await daemon.api<{ readiness: unknown }>('GET', '/v1/status')).json.readiness, body, 'in the status');
    };

    assert.deepEqual(await httpGet(port, '/healthz'), { status: 200, json: { ok: true } }, 'alive while not ready');
    await expect(503, { ok: false, message: `no status from the CNI installer yet (${status} does not exist)` });

    writeStatus(status, 'preflight-failed', 'plugin --preflight: libelf.so.1: cannot open shared object file', null, 'feedc0de12345678');
    await expect(503, { ok: false, message: 'CNI installer: preflight-failed: plugin --preflight: libelf.so.1: cannot open shared object file' });

    writeStatus(status, 'waiting-for-primary', 'no network config in /host/etc/cni/net.d yet', null, null);
    await expect(503, { ok: false, message: 'CNI installer: waiting-for-primary: no network config in /host/etc/cni/net.d yet' });

    writeFileSync(status, '{"state":');
    await expect(503, { ok: false, message: `${status} is not JSON` });

    writeStatus(status, 'chained', 'chained behind the primary', '/host/etc/cni/net.d/10-primary.conflist', 'feedc0de12345678');
    await expect(200, { ok: true, message: 'chained into /host/etc/cni/net.d/10-primary.conflist (plugin build feedc0de12345678)' });

    // Only the health routes are on the health port.
    assert.deepEqual(await httpGet(port, '/metrics'), { status: 404, json: { error: 'no such endpoint: /metrics' } });
    assert.deepEqual(await httpGet(port, '/v1/status'), { status: 404, json: { error: 'no such endpoint: /v1/status' } });

    // Our program taken off the data interface behind the daemon's back: the kernel is asked, so it shows.
    bpf.detachPinnedLink(join(new PinLayout(daemon.pinRoot).nodeInterface(remote.dataIfname), 'ingress'));
    await expect(503, { ok: true, message: 'chained into /host/etc/cni/net.d/10-primary.conflist (plugin build feedc0de12345678)' }, {
      name: 'data-interfaces', ok: false, message: `${remote.dataIfname} (ifindex ${remote.dataIfindex}): our ingress program is not attached`,
    });
  });
});

test('readyz is 503 until the Kubernetes API has answered the pod list, then 200', async () => {
  await withScope(async (scope) => {
    const api = await FakeKubeApi.start();
    scope.defer('close fake API server', () => void api.close());
    api.failNext(1_000_000, 500); // every request fails until told otherwise
    const node = await createNode(scope);
    const remote = await node.addRemote();
    const sink = await ReportSink.start(scope);
    const port = await freePort();
    const daemon = await DaemonProcess.start(scope, {
      collector: sink.address, dataInterface: remote.dataIfname, extraArgs: ['--health-listen', `127.0.0.1:${port}`],
      env: { KUBECONFIG: kubeconfigFor(scope, api.url) },
    });
    const checks = (kube: { ok: boolean; message: string }) => [
      { name: 'datapath', ok: true, message: `programs loaded and pinned in ${daemon.pinRoot}; event reader running` },
      { name: 'data-interfaces', ok: true, message: `attached on ingress and egress: ${remote.dataIfname} (ifindex ${remote.dataIfindex})` },
      { name: 'cni-installer', ok: true, message: 'not checked (no --cni-installer-status)' },
      { name: 'kubernetes', ...kube },
    ];

    await eventually('a failed LIST', async () => (api.requests.some((r) => r.status === 500) ? true : undefined));
    const failing = await httpGet(port, '/readyz');
    assert.deepEqual(failing, {
      status: 503,
      json: {
        ready: false,
        checks: checks({
          ok: false,
          message: `waiting for the first list of pods of node test-node from ${api.url}; last error: list: HTTP 500: injected failure`,
        }),
      },
    });
    assert.deepEqual(await daemon.api('GET', '/readyz'), failing, 'the same on the unix socket');

    api.failNext(1, 500); // one more failure, then answers
    const ok = await eventually('the pod list answered', async () => {
      const r = await httpGet(port, '/readyz');
      return r.status === 200 ? r : undefined;
    });
    assert.deepEqual(ok, { status: 200, json: { ready: true, checks: checks({ ok: true, message: `pods of node test-node listed from ${api.url}` }) } });
    assert.ok(api.requests.some((r) => !r.watch && r.status === 200), 'a LIST was answered');
  });
});

/** The kernel's capability numbers of the names the DaemonSet uses (linux/capability.h). */
const CAP_NUMBERS: Record<string, number> = { NET_ADMIN: 12, SYS_ADMIN: 21, SYS_RESOURCE: 24, PERFMON: 38, BPF: 39 };

test('with only the DaemonSet\'s capabilities the daemon attaches, reports, and is ready', async (t) => {
  const ds = manifestObjects().find((o) => o.kind === 'DaemonSet') as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  const container = ds.spec.template.spec.containers.find((c: { name: string }) => c.name === 'int-host-reporter');
  const caps = container.securityContext.capabilities as { drop: string[]; add: string[] };
  assert.deepEqual(caps.drop, ['ALL']);
  for (const c of caps.add) assert.ok(c in CAP_NUMBERS, `capability ${c} known to this test`);
  const setpriv = spawnSync('setpriv', ['--version']);
  assert.equal(setpriv.error, undefined, 'setpriv runs (Debian package util-linux)');

  await withScope(async (scope) => {
    const node = await createNode(scope);
    const a = await node.addPod();
    const b = await node.addPod();
    const remote = await node.addRemote();
    const sink = await ReportSink.start(scope);
    const wl = watchlistFile(scope, `rules:\n  - protocol: UDP\n    src-addr: ${a.ipv4}/32\n    dst-addr: ${b.ipv4}/32\n`);
    const port = await freePort();
    // The bounding set limits root to these capabilities, as the container runtime does.
    const bounding = ['-all', ...caps.add.map((c) => `+${c.toLowerCase()}`)].join(',');
    const daemon = await DaemonProcess.start(scope, {
      collector: sink.address, dataInterface: remote.dataIfname, watchlist: wl,
      extraArgs: ['--health-listen', `127.0.0.1:${port}`], launcher: ['setpriv', '--bounding-set', bounding, '--inh-caps', '-all'],
    });
    // This machine's own bounding set may lack one of them (this one lacks SYS_RESOURCE): the daemon
    // then holds the rest, and the test says which were missing.
    const capsOf = (pid: number | 'self', field: string) => BigInt(`0x${new RegExp(`^${field}:\\s*([0-9a-f]+)$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]}`);
    const wanted = caps.add.reduce((m, c) => m | (1n << BigInt(CAP_NUMBERS[c])), 0n);
    const available = capsOf('self', 'CapBnd');
    const missing = caps.add.filter((c) => (available & (1n << BigInt(CAP_NUMBERS[c]))) === 0n);
    if (missing.length) t.diagnostic(`this machine's bounding set lacks ${missing.join(', ')}: tested without`);
    assert.equal(capsOf(daemon.proc.pid, 'CapEff'), wanted & available, 'the daemon holds these capabilities and no other');

    for (const [pod, name] of [[a, 'pod-a'], [b, 'pod-b']] as const) {
      const r = cniAdd(daemon, pod, `cid-${name}-${scope.prefix}`, name);
      assert.equal(r.code, 0, `CNI ADD of ${name}: ${r.stdout}${r.stderr}`);
    }
    // Reconcile passes (every 300 ms here) must find our programs on the veths and leave them be:
    // telling ours from others' names them by id, which is what needs CAP_SYS_ADMIN.
    const metric = async (name: string) => {
      const r = await callApi(daemon.socket, 'GET', '/metrics');
      const line = r.body.split('\n').find((l) => l.startsWith(`${name} `));
      return line === undefined ? undefined : Number(line.slice(name.length + 1));
    };
    const runs = (await metric('int_reconcile_runs_total'))!;
    await eventually('three more reconcile passes', async () => ((await metric('int_reconcile_runs_total'))! >= runs + 3 ? true : undefined));
    assert.equal(await metric('int_reconcile_repairs_total'), 0, 'nothing re-attached: the daemon sees its programs');
    const att = await daemon.api<{ attachments: { podName: string; state: string; mode: string; hostIfindex: number; programIds: number[] }[] }>('GET', '/v1/attachments');
    assert.deepEqual(att.json.attachments.map((x) => [x.podName, x.state, x.mode]).sort(), [['pod-a', 'ok', 'tcx'], ['pod-b', 'ok', 'tcx']]);
    for (const x of att.json.attachments) {
      const kernel = (['ingress', 'egress'] as const).map((d) => bpf.query(x.hostIfindex, d).filter((h) => h.ours).map((h) => h.progId)).flat();
      assert.deepEqual(x.programIds, kernel, `${x.podName}: the daemon names the programs the kernel has on the veth`);
      assert.equal(kernel.length, 2);
    }
    const status = await daemon.api<{ drops: string }>('GET', '/v1/status');
    assert.equal(status.json.drops, 'tracepoint', 'the kfree_skb tracepoint attached (PERFMON)');

    const flow = await udpFlow(scope, { from: a, to: b, family: 4, sport: 47311, count: 3 });
    const reports = await sink.waitFor({ src: a.ipv4, dst: b.ipv4, protocol: IPPROTO.UDP, srcPort: flow.sport }, 1);
    assert.ok(reports.length >= 1, 'the watched flow was reported');
    const ready = await httpGet(port, '/readyz');
    assert.equal(ready.status, 200, JSON.stringify(ready.json));
  });
});
