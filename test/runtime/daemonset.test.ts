// The DaemonSet as an operator deploys it, with podman standing in for the kubelet: the manifests
// from `int-host-reporter manifests`, the DaemonSet's pod template converted to a Pod and run by
// `podman kube play` from the real image, against a CNI config dir and bin dir that a second podman
// (CNI backend, private state) uses for its pods. Proves, in order:
//   (a) /readyz is 503 while the installer waits for a primary config, the installer chains our
//       entry (exact plugin list) and copies the plugin layout (exact files), then /readyz is 200;
//   (b) a pod created afterwards is attached with no other step, and UDP between two pods gives
//       flow reports with the exact tuple and ports at a collector in this process;
//   (c) upgrade to a rebuilt image (a marker changes the plugin build id) while a pod streams
//       numbered datagrams: none lost or duplicated, attachments not duplicated, reports resume,
//       the bin dir holds exactly the new build;
//   (d) the documented uninstall (install/uninstall.yaml): the DaemonSet's pod deleted, the cleanup
//       DaemonSet's pod played until its init containers exited 0 and its main container runs,
//       then deleted; new pods are not attached and work, running pods work, and no pin, link,
//       filter, file or conflist entry of ours remains.
// The image is built first by scripts/image.sh (what `npm run image` runs), fast when its layers
// are cached: this test does not rely on image.test.ts (which runs after it) having built it.
//
// This machine, measured (see test/helpers/kube-play.ts): / is a private mount, so a Bidirectional
// mount made in a container never reaches the host; the test mounts bpffs on the host's
// /sys/fs/bpf first (as systemd does on a node), and the init container then finds it there.
// podman runs no probes: the test calls the readiness probe's URL itself, as the kubelet would.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomInt } from 'node:crypto';
import { execFile, execFileSync } from 'node:child_process';
import {
  existsSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as bpf from '../../bpf/index';
import { DEFAULT_BPFFS_ROOT, PinLayout, PROGRAMS } from '../../bpf/pins';
import { listPodAttachments } from '../../bpf/attachments';
import { DEFAULT_SOCKET_PATH } from '../../protocol/endpoints';
import { callApi } from '../../daemon/cli/client';
import type { AttachmentRecord } from '../../daemon/agent/attachments';
import { withScope, allocateSubnet, type Scope } from '../helpers/netns';
import { holdGlobalForwarding } from '../helpers/sysctl';
import { ReportSink } from '../helpers/daemon';
import { removePinTree } from '../helpers/bpf';
import { udpFlow, type FlowResult } from '../helpers/traffic';
import { ipJson } from '../helpers/exec';
import {
  busyboxRootfs, chainConflist, endpointOf, PodmanSession, requireRuntimeTools, SYSTEM_CNI_DIR, tempDir, type Container,
} from '../helpers/runtime';
import {
  adaptRestartPolicy, containersOf, httpGet, KubePlay, objectOf, podFromDaemonSet, probeTarget, renderManifests, resolveDownwardApi,
  seccompAnnotations, type K8sObject, type PlayedPod,
} from '../helpers/kube-play';
import { assertAttached, assertRecords, expectFlowReport, hooksHolding, IPPROTO, SWITCH_ID } from './checks';

const ROOT = join(__dirname, '..', '..');
/** The node address the kubelet stand-in gives status.hostIP: the daemon's switch id (SWITCH_ID). */
const NODE_IP = [SWITCH_ID >>> 24, (SWITCH_ID >>> 16) & 255, (SWITCH_ID >>> 8) & 255, SWITCH_ID & 255].join('.');
const NODE_NAME = 'ihr-kube-play-node';
const IMAGE_PLUGIN_DIR = '/opt/int-host-reporter/cni';
const RUN_DIR = '/run/int-host-reporter';
const LAYOUT = 'int-host-reporter.d';

// ---------------------------------------------------------------------------------------------
// Small helpers

type Json = Record<string, unknown>;

async function readyz(target: { host: string; port: number; path: string }): Promise<{ status: number; json?: { ready: boolean; checks: Array<{ name: string; ok: boolean; message: string }> } }> {
  const r = await httpGet(target.host, target.port, target.path);
  let json;
  try {
    json = JSON.parse(r.body);
  } catch {
    /* not up yet */
  }
  return { status: r.status, json };
}

async function until<T>(what: string, fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs: number, diag: () => Promise<string>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let v = await fn();
  while (!ok(v)) {
    if (Date.now() > deadline) throw new Error(`${what}: not after ${timeoutMs} ms; last: ${JSON.stringify(v)}\n${await diag()}`);
    await sleep(200);
    v = await fn();
  }
  return v;
}

async function daemonAttachments(): Promise<AttachmentRecord[]> {
  const r = await callApi(DEFAULT_SOCKET_PATH, 'GET', '/v1/attachments');
  assert.equal(r.status, 200, 'GET /v1/attachments');
  return (JSON.parse(r.body) as { attachments: AttachmentRecord[] }).attachments;
}

/** name -> sha256 of every file below dir, and symlink targets as "-> target" (names relative). */
function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isSymbolicLink()) out[r] = `-> ${readlinkSync(join(dir, r))}`;
      else if (e.isDirectory()) walk(r);
      else out[r] = createHash('sha256').update(readFileSync(join(dir, r))).digest('hex');
    }
  };
  walk('');
  return out;
}

/** The plugin layout inside an image, in the same form as tree(). */
async function imageTree(kp: KubePlay, image: string): Promise<Record<string, string>> {
  const script = `cd ${IMAGE_PLUGIN_DIR} && find . -type f -exec sha256sum {} + && find . -type l -printf '%p -> %l\\n'`;
  const out = (await kp.podman(['run', '--rm', '--network', 'none', '--entrypoint', JSON.stringify(['/bin/sh', '-c', script]), image])).stdout;
  const t: Record<string, string> = {};
  for (const line of out.split('\n').filter(Boolean)) {
    const link = line.match(/^\.\/(\S+) -> (\S+)$/);
    if (link) t[link[1]!] = `-> ${link[2]}`;
    else {
      const [sum, name] = line.split(/\s+/);
      t[name!.replace(/^\.\//, '')] = sum!;
    }
  }
  return t;
}

/**
 * Builds the image with scripts/image.sh (what `npm run image` runs after setup.sh) and returns
 * the name it printed; fails with the script's last lines when it fails.
 */
function buildImage(): Promise<{ image: string; seconds: number }> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    execFile('sh', ['scripts/image.sh'], { cwd: ROOT, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, timeout: 60 * 60_000 }, (err, stdout, stderr) => {
      const m = /^image: (\S+) size \d+ bytes/m.exec(stdout);
      if (err || !m) {
        const tail = (stdout + stderr).split('\n').slice(-40).join('\n');
        reject(new Error(`the image build (sh scripts/image.sh) failed${err ? ` (${err.message.split('\n')[0]})` : ': no "image: NAME size" line'}; its last lines:\n${tail}`));
      } else resolve({ image: m[1]!, seconds: (Date.now() - t0) / 1000 });
    });
  });
}

const pinnedPods = () => listPodAttachments(new PinLayout(DEFAULT_BPFFS_ROOT)).map((k) => `${k.network}/${k.containerId}/${k.ifname}`).sort();

/**
 * The daemon's programs on the node's interface: the ones its pinned links hold (other tests'
 * daemons may instrument the same interface meanwhile), each on its hook. Returns their ids.
 */
function assertNicAttached(nic: { ifname: string; ifindex: number }): number[] {
  const dir = new PinLayout(DEFAULT_BPFFS_ROOT).nodeInterface(nic.ifname);
  return (['ingress', 'egress'] as const).map((d) => {
    const link = bpf.pinnedLinkInfo(join(dir, d));
    const onHook = bpf.query(nic.ifindex, d).filter((h) => h.progId === link.progId).map((h) => h.name);
    assert.deepEqual(onHook, [d === 'ingress' ? PROGRAMS.ingressNic : PROGRAMS.egressNic], `${nic.ifname} ${d}: the program of our pinned link`);
    return link.progId;
  });
}

/** Our programs (by name) on a link, both directions. */
function ourPrograms(ifindex: number): string[] {
  return (['ingress', 'egress'] as const).flatMap((d) => bpf.query(ifindex, d).filter((h) => h.ours).map((h) => `${d}:${h.name}#${h.progId}`));
}

async function defaultRouteLink(): Promise<{ ifname: string; ifindex: number }> {
  const [r] = await ipJson<{ dev: string }>(null, ['-4', 'route', 'show', 'default']);
  assert.ok(r, 'this machine has an IPv4 default route (the daemon instruments its interface)');
  const [l] = await ipJson<{ ifindex: number; ifname: string }>(null, ['link', 'show', 'dev', r.dev]);
  return { ifname: l!.ifname, ifindex: l!.ifindex };
}

/**
 * A paths this test will create at its fixed default location (the manifests name them): refuses
 * to run when something is already there, and removes what it made.
 */
function claimDefaultPaths(scope: Scope): void {
  for (const p of [RUN_DIR, DEFAULT_BPFFS_ROOT]) {
    assert.equal(existsSync(p), false, `${p} already exists: another int-host-reporter is installed on this machine; not touching it`);
  }
  scope.defer(`remove ${DEFAULT_BPFFS_ROOT}`, () => removePinTree(DEFAULT_BPFFS_ROOT));
  scope.defer(`remove ${RUN_DIR}`, () => rmSync(RUN_DIR, { recursive: true, force: true }));
}

/** The Containerfile of the upgrade: the same image, the plugin bundle with a marker appended, re-laid out. */
function upgradeContext(scope: Scope, base: string, marker: string): string {
  const dir = tempDir(scope, 'upgrade-ctx');
  // The build id as the layout contract defines it (A's build.mjs): sha256 over the sorted file
  // names, each as "<name>\0<size>\0<bytes>", first 16 hex digits.
  writeFileSync(join(dir, 'relayout.js'), `
const fs = require('fs'), path = require('path'), crypto = require('crypto');
const root = process.argv[2], marker = process.argv[3];
const d = path.join(root, '${LAYOUT}');
const old = fs.readlinkSync(path.join(d, 'current'));
const tmp = path.join(d, '.upgrade');
fs.cpSync(path.join(d, old), tmp, { recursive: true });
fs.appendFileSync(path.join(tmp, 'plugin.cjs'), '\\n// ' + marker + '\\n');
const names = [];
const walk = (rel) => { for (const e of fs.readdirSync(path.join(tmp, rel), { withFileTypes: true })) {
  const r = rel ? rel + '/' + e.name : e.name; if (e.isDirectory()) walk(r); else names.push(r); } };
walk('');
const h = crypto.createHash('sha256');
for (const n of names.sort()) { const b = fs.readFileSync(path.join(tmp, n)); h.update(n + '\\0' + b.length + '\\0'); h.update(b); }
const id = h.digest('hex').slice(0, 16);
fs.renameSync(tmp, path.join(d, id));
fs.rmSync(path.join(d, old), { recursive: true });
fs.symlinkSync(id, path.join(d, '.current'));
fs.renameSync(path.join(d, '.current'), path.join(d, 'current'));
console.log(id);
`);
  writeFileSync(join(dir, 'Containerfile'), [
    `FROM ${base}`,
    'COPY relayout.js /tmp/relayout.js',
    `RUN ["/bin/sh", "-c", "node /tmp/relayout.js ${IMAGE_PLUGIN_DIR} '${marker}' && rm /tmp/relayout.js"]`,
    '',
  ].join('\n'));
  return dir;
}

// ---------------------------------------------------------------------------------------------

test('DaemonSet under podman kube play: install, attach, reports, readiness, upgrade, uninstall', { timeout: 75 * 60_000 }, async (t) => {
  requireRuntimeTools('podman');
  const { image: IMAGE, seconds } = await buildImage();
  t.diagnostic(`image ${IMAGE} built by scripts/image.sh in ${seconds.toFixed(1)} s`);
  await withScope(async (scope) => {
    // Undone in reverse: the DaemonSet's pod (made last) goes first, so its installer cannot write
    // into the CNI dirs once they are removed, and nothing writes to the default paths after them.
    claimDefaultPaths(scope);
    holdGlobalForwarding(scope, 4); // the bridge plugin (isGateway) turns IPv4 forwarding on
    bpf.ensureBpffs('/sys/fs/bpf'); // what systemd gives a node (the init container's mount cannot reach this host)
    const nic = await defaultRouteLink();

    const subnet = await allocateSubnet();
    const sink = await ReportSink.start(scope);
    // The node's CNI dirs: a bin dir with the standard plugins, and the config dir podman reads.
    const binDir = tempDir(scope, 'hostcnibin');
    const standard = readdirSync(SYSTEM_CNI_DIR).sort();
    for (const p of standard) symlinkSync(join(SYSTEM_CNI_DIR, p), join(binDir, p));
    const pm = PodmanSession.create(scope, { pluginDir: binDir, rootfs: busyboxRootfs(scope) });
    const confDir = pm.netDir;
    const kp = KubePlay.create(scope);

    const options = (image: string) => ['--image', image, '--collector', sink.address, '--cni-bin-dir', binDir, '--cni-conf-dir', confDir];
    const render = (image: string) => renderManifests(options(image));
    const podOf = (objs: K8sObject[]) => {
      const pod = podFromDaemonSet(objectOf(objs, 'DaemonSet', 'int-host-reporter'), `${scope.prefix}-int-host-reporter`);
      const resolved = resolveDownwardApi(pod, { nodeName: NODE_NAME, hostIP: NODE_IP });
      assert.deepEqual(resolved.sort(), ['int-host-reporter/NODE_IP=status.hostIP', 'int-host-reporter/NODE_NAME=spec.nodeName'],
        'the kubelet stand-in resolved exactly the fieldRefs podman 4.3 cannot');
      assert.deepEqual(adaptRestartPolicy(pod), ['restartPolicy=OnFailure'], 'init containers restart only on failure, as under a kubelet');
      assert.deepEqual(seccompAnnotations(pod), [], 'no seccomp profile to translate');
      return pod;
    };
    const objs = render(IMAGE);
    const pod = podOf(objs);
    const daemonC = containersOf(pod).main.find((c) => c.name === 'int-host-reporter');
    assert.ok(daemonC, 'the pod has the daemon container');
    const target = probeTarget(daemonC.readinessProbe);
    assert.deepEqual({ host: target.host, path: target.path }, { host: '127.0.0.1', path: '/readyz' }, 'readiness: httpGet on loopback /readyz');

    const diag = async (p: PlayedPod) => {
      const parts: string[] = [];
      for (const c of [...containersOf(pod).init, ...containersOf(pod).main]) parts.push(`--- ${c.name}:\n${(await kp.logs(p.name, c.name)).slice(-3000)}`);
      return parts.join('\n');
    };

    // Each step needs the state the one before it leaves: after a failure the rest say so and stop.
    let failed: string | undefined;
    const step = (name: string, fn: () => Promise<void>) => t.test(name, async () => {
      if (failed) throw new Error(`not run: ${failed} failed`);
      try {
        await fn();
      } catch (e) {
        failed = name.slice(0, 3);
        throw e;
      }
    });
    let played!: PlayedPod;
    const pods: Container[] = [];
    const progIds: number[] = [];
    const chain = chainConflist(scope, { subnet, daemon: { socket: '', spoolDir: '', pinRoot: '' }, withoutPlugin: true });
    const primary = (chain.conflist.plugins as Json[])[0]!;
    const conflistPath = join(confDir, `${chain.network}.conflist`);

    await step('(a) readiness waits for the installer; the installer chains and copies the layout', async () => {
      played = await kp.play(pod, [objectOf(objs, 'ConfigMap', 'int-host-reporter')]);
      // No primary config yet: the daemon is up (healthz) and says why it is not ready.
      const health = probeTarget(daemonC.livenessProbe);
      await until('/healthz 200', () => httpGet(health.host, health.port, health.path), (r) => r.status === 200, 60_000, () => diag(played));
      const waiting = await until('installer waiting for a primary config', () => readyz(target),
        (r) => r.json?.checks.find((c) => c.name === 'cni-installer')?.message.startsWith('CNI installer: waiting-for-primary') === true, 30_000, () => diag(played));
      assert.equal(waiting.status, 503, '/readyz is 503 before the installer chained');
      assert.deepEqual(waiting.json!.checks.map((c) => [c.name, c.ok]),
        [['datapath', true], ['data-interfaces', true], ['cni-installer', false], ['kubernetes', true]], 'only the installer check fails');
      await sleep(2000);
      assert.equal((await readyz(target)).status, 503, 'still 503 two seconds later (nothing to chain into)');

      // The primary CNI writes its config: bridge + host-local, no int-host-reporter.
      pm.addNetwork(chain);
      const ready = await until('/readyz 200', () => readyz(target), (r) => r.status === 200, 60_000, () => diag(played));
      assert.deepEqual(ready.json!.checks.map((c) => [c.name, c.ok]),
        [['datapath', true], ['data-interfaces', true], ['cni-installer', true], ['kubernetes', true]], 'every check passes');
      const written = JSON.parse(readFileSync(conflistPath, 'utf8')) as Json;
      assert.deepEqual(written, { ...chain.conflist, plugins: [primary, { type: 'int-host-reporter', socketPath: DEFAULT_SOCKET_PATH }] },
        'the conflist: the primary entry unchanged, then ours');
      const image = await imageTree(kp, IMAGE);
      const installed = tree(binDir);
      for (const p of standard) delete installed[p];
      assert.deepEqual(installed, image, 'the bin dir holds the image\'s plugin layout, file for file');
      const build = image[`${LAYOUT}/current`]!.slice(3);
      assert.match(build, /^[0-9a-f]{16}$/, 'current names a build id');
      assert.ok(ready.json!.checks.find((c) => c.name === 'cni-installer')!.message.includes(build), 'readiness names the installed build');
    });

    await step('(b) pods created afterwards are attached with no other step and reported', async () => {
      for (const n of ['a', 'b']) pods.push(await pm.run(`${scope.prefix}-pod${n}`, chain.network));
      const [a, b] = pods as [Container, Container];
      for (const c of pods) progIds.push(...assertAttached(c));
      assert.deepEqual(pinnedPods(), pods.map((c) => `${chain.network}/${c.id}/eth0`).sort(), 'one pinned attachment per pod');
      assertRecords(await daemonAttachments(), pods.map((c) => ({ network: chain.network, container: c, podName: c.name })), 'two pods');
      const sport = 41000 + randomInt(1000);
      const udp = await udpFlow(scope, { from: endpointOf(a), to: endpointOf(b), family: 4, sport, count: 3 });
      assert.equal(udp.received.packets, 3, 'the three datagrams arrived');
      await expectFlowReport(sink, { src: a.ipv4, dst: b.ipv4, protocol: IPPROTO.UDP, srcPort: sport, dstPort: udp.dport }, a.hostIfindex, b.hostIfindex, 'a->b UDP');
      progIds.push(...assertNicAttached(nic));
    });

    await step('(c) upgrade to a rebuilt image while a pod streams numbered datagrams', async () => {
      const [a, b] = pods as [Container, Container];
      const oldBuild = readlinkSync(join(binDir, LAYOUT, 'current'));
      const image2 = `localhost/${scope.prefix}-int-host-reporter:upgrade`;
      const marker = `upgrade marker ${scope.prefix}`;
      const ctx = upgradeContext(scope, IMAGE, marker);
      await kp.build(image2, ctx, join(ctx, 'Containerfile'));
      const image2Tree = await imageTree(kp, image2);
      const newBuild = image2Tree[`${LAYOUT}/current`]!.slice(3);
      assert.notEqual(newBuild, oldBuild, 'the rebuilt image has another plugin build id');

      const sport = 42000 + randomInt(1000);
      const tuple = { src: a.ipv4, dst: b.ipv4, protocol: IPPROTO.UDP, srcPort: sport };
      // When each report of the stream arrived (sampled every 20 ms): the longest silence is the gap.
      const arrivals: number[] = [];
      let seen = 0;
      const sampler = setInterval(() => {
        const n = sink.matching(tuple).length;
        for (; seen < n; seen++) arrivals.push(Date.now());
      }, 20);
      scope.defer('report sampler', () => clearInterval(sampler));
      const stream: Promise<FlowResult> = udpFlow(scope, {
        from: endpointOf(a), to: endpointOf(b), family: 4, sport, seq: true, durationMs: 40_000, intervalMs: 5, timeoutMs: 120_000,
      });
      const before = await sink.waitFor(tuple, 3, 10_000);
      assert.ok(before.length >= 3, 'the stream is reported (three reports) before the upgrade');

      // The rolling update on one node: the old pod goes, the new one comes.
      const started = Date.now();
      await kp.down(played);
      const downAt = Date.now();
      const pod2 = podOf(render(image2));
      played = await kp.play(pod2, [objectOf(render(image2), 'ConfigMap', 'int-host-reporter')]);
      const playedAt = Date.now();
      await until('/readyz 200 after the upgrade', () => readyz(target), (r) => r.status === 200, 90_000, () => diag(played));
      const readyAt = Date.now();
      const readyAfterMs = Date.now() - started;
      const mark = sink.reports.length;
      assert.ok(readyAfterMs < 35_000, `the new pod was ready ${readyAfterMs} ms after the old one was stopped, within the stream`);

      for (const c of pods) assertAttached(c, `${c.name} after the upgrade (one program per direction: not duplicated)`);
      assert.deepEqual(pinnedPods(), pods.map((c) => `${chain.network}/${c.id}/eth0`).sort(), 'the same pinned attachments, adopted');
      assertRecords(await daemonAttachments(), pods.map((c) => ({ network: chain.network, container: c, podName: c.name })), 'after the upgrade');
      const resumed = await until('a report of the stream from the new daemon', async () => sink.matching(tuple).filter((r) => sink.reports.indexOf(r) >= mark),
        (l) => l.length >= 1, 10_000, async () => '');
      assert.deepEqual({ i: resumed[0]!.ingressPort, e: resumed[0]!.egressPort }, { i: a.hostIfindex, e: b.hostIfindex }, 'resumed reports name the same ports');

      const r = await stream;
      clearInterval(sampler);
      const gaps = arrivals.slice(1).map((t2, i) => t2 - arrivals[i]!);
      const gapMs = Math.max(...gaps);
      const g = gaps.indexOf(gapMs);
      t.diagnostic(`upgrade: kube down ${downAt - started} ms, kube play ${playedAt - downAt} ms, then ready after ${readyAt - playedAt} ms ` +
        `(${readyAfterMs} ms in all); longest report gap ${gapMs} ms, from ${arrivals[g]! - started} ms after the down began ` +
        `to ${arrivals[g + 1]! - readyAt} ms after ready; ${r.sent.packets} datagrams`);
      // A flow is reported at most once a second (--report-interval-ms): the last report may come up
      // to that before the old daemon stops, the first up to that after the new one is ready.
      assert.ok(gapMs <= readyAfterMs + 2 * 1000 + 500,
        `the longest report gap (${gapMs} ms) is the restart (${readyAfterMs} ms) and at most a report interval on either side`);
      assert.ok(r.sent.packets > 1000, `the stream sent ${r.sent.packets} datagrams across the upgrade`);
      assert.deepEqual(r.received.seq, { distinct: r.sent.packets, duplicates: 0, max: r.sent.packets - 1, missing: 0 },
        'every numbered datagram arrived once: none lost during the upgrade');
      for (const c of pods) progIds.push(...assertAttached(c));
      progIds.push(...assertNicAttached(nic));

      // The installer keeps the replaced build for a grace period (a plugin call already running may
      // still read it), then removes it.
      const pluginTree = () => {
        const t2 = tree(binDir);
        for (const p of standard) delete t2[p];
        return t2;
      };
      const canonical = (x: Record<string, string>) => JSON.stringify(Object.entries(x).sort());
      await until('the replaced build removed', async () => pluginTree(), (x) => canonical(x) === canonical(image2Tree), 60_000, async () => '');
      assert.deepEqual(pluginTree(), image2Tree, 'the bin dir holds exactly the new build');
    });

    await step('(d) uninstall: nothing of ours remains; running and new pods work', async () => {
      const [a, b] = pods as [Container, Container];
      const image = `localhost/${scope.prefix}-int-host-reporter:upgrade`;
      // The documented steps (install/uninstall.yaml): delete the DaemonSet, apply the cleanup
      // DaemonSet rendered with the install's options, wait until its pod runs, delete it.
      await kp.down(played);
      const cleanupObjs = renderManifests(['--uninstall', ...options(image)]);
      const cleanup = podFromDaemonSet(objectOf(cleanupObjs, 'DaemonSet', 'int-host-reporter-cleanup'), `${scope.prefix}-ihr-cleanup`);
      assert.deepEqual(resolveDownwardApi(cleanup, { nodeName: NODE_NAME, hostIP: NODE_IP }), [], 'the cleanup pod uses no fieldRef podman cannot resolve');
      assert.deepEqual(adaptRestartPolicy(cleanup), ['restartPolicy=OnFailure'], 'init containers restart only on failure, as under a kubelet');
      assert.deepEqual(seccompAnnotations(cleanup), ['datapath-uninstall=unconfined'], 'the Unconfined profile as podman\'s annotation');
      assert.deepEqual([containersOf(cleanup).init.map((c) => c.name), containersOf(cleanup).main.map((c) => c.name)],
        [['cni-uninstall', 'datapath-uninstall'], ['cleaned']], 'the cleanup pod\'s containers');
      // The init containers are removed once they exited 0: their exits are podman's events.
      const exits = async () => (await kp.containerEvents(cleanup.metadata.name)).filter((e) => e.status === 'died' || e.status === 'start')
        .map((e) => e.status === 'died' ? `${e.container} exited ${e.exitCode}` : `${e.container} started`);
      const cleanupDiag = async () => `containers: ${(await exits()).join(', ')}\n--- cleaned:\n${(await kp.logs(cleanup.metadata.name, 'cleaned')).slice(-3000)}`;
      const cleanupPlayed = await kp.play(cleanup).catch(async (e: Error) => {
        throw new Error(`${e.message}\n${await cleanupDiag()}`);
      });
      try {
        const seen = await until('both init containers exited and cleaned started', exits, (l) => l.includes('cleaned started'), 60_000, cleanupDiag);
        assert.deepEqual(seen, ['cni-uninstall started', 'cni-uninstall exited 0', 'datapath-uninstall started', 'datapath-uninstall exited 0', 'cleaned started'],
          'the init containers ran once each, in order, and exited 0 before cleaned started');
        const state = (await kp.podman(['inspect', '--format', '{{.State.Status}}', KubePlay.containerName(cleanup.metadata.name, 'cleaned')])).stdout.trim();
        assert.equal(state, 'running', 'cleaned is running');
        await until('cleaned printed its line', () => kp.logs(cleanup.metadata.name, 'cleaned'), (l) => l === 'int-host-reporter: removed from this node\n', 30_000, cleanupDiag);
      } finally {
        await kp.down(cleanupPlayed);
      }
      assert.deepEqual((await kp.podman(['ps', '-a', '--format', '{{.Names}}'])).stdout.trim(), '', 'no container left after kube down');

      assert.deepEqual(JSON.parse(readFileSync(conflistPath, 'utf8')), chain.conflist, 'the conflist is the primary\'s again');
      assert.deepEqual(readdirSync(binDir).sort(), standard, 'only the standard plugins are left in the bin dir');
      assert.equal(existsSync(DEFAULT_BPFFS_ROOT), false, `no pins: ${DEFAULT_BPFFS_ROOT} is gone`);
      assert.deepEqual(await hooksHolding(progIds), [], 'none of our programs on any interface');
      for (const c of pods) assert.deepEqual(ourPrograms(c.hostIfindex), [], `${c.name}: no program of ours on ${c.hostIfname}`);
      for (const c of pods) {
        const filters = ['ingress', 'egress'].map((d) => execFileSync('tc', ['filter', 'show', 'dev', c.hostIfname, d], { encoding: 'utf8' }).trim());
        assert.deepEqual(filters, ['', ''], `no tc filter on ${c.hostIfname}`);
      }
      assert.deepEqual(existsSync(RUN_DIR) ? readdirSync(RUN_DIR) : [], [], `no file of ours in ${RUN_DIR}`);

      const running = await udpFlow(scope, { from: endpointOf(a), to: endpointOf(b), family: 4, count: 5 });
      assert.equal(running.received.packets, 5, 'running pods still talk');
      const c = await pm.run(`${scope.prefix}-podc`, chain.network);
      assert.deepEqual(ourPrograms(c.hostIfindex), [], 'a new pod is not attached');
      const fresh = await udpFlow(scope, { from: endpointOf(c), to: endpointOf(a), family: 4, count: 5 });
      assert.equal(fresh.received.packets, 5, 'the new pod talks');
      await pm.exec(c.name, ['ping', '-c', '1', '-W', '3', b.ipv4]);
    });
  });
});
