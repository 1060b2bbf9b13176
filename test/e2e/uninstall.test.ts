// The uninstall as the cleanup DaemonSet (install/uninstall.yaml) does it, on a real node: its two
// init containers run here in their order, each one's command, arguments, environment and mounts
// taken from the rendered manifest (not copied), under setpriv with exactly the container's
// capabilities and no seccomp filter (the manifest asks for Unconfined). Before: two pods attached through the real plugin, a data interface attached, our
// entry chained into a conflist and our plugin in a bin dir by the real installer, the daemon
// stopped (its DaemonSet deleted first). After the installer's --uninstall: the conflist is the
// primary's again and only the other plugin is left, while our programs still run (the order).
// After the daemon's `uninstall`: no pin, no program, link or map of ours in the kernel, no TCX
// link or tc filter on the veths, no state; the pods ping each other all along. Run again (a
// restarted cleanup pod): nothing to do, exit 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { withScope, createNode, type Pod, type Scope } from '../helpers/netns';
import { DaemonProcess, ReportSink, cniAdd } from '../helpers/daemon';
import { icmpEcho, requireTool } from '../helpers/traffic';
import { hooksHolding } from '../runtime/checks';
import * as bpf from '../../bpf/index';
import { uninstallObjects } from '../../install/manifests';

const ROOT = join(__dirname, '..', '..');
const IMAGE_DIR = '/opt/int-host-reporter';
/** The kernel's numbers of the capabilities the cleanup pod's containers name (linux/capability.h). */
const CAP_NUMBERS: Record<string, number> = { DAC_OVERRIDE: 1, NET_ADMIN: 12, SYS_ADMIN: 21, PERFMON: 38, BPF: 39 };

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function tempDir(scope: Scope, tag: string): string {
  const dir = mkdtempSync(join(tmpdir(), `ihr-${tag}-`));
  scope.defer(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A Kubernetes memory quantity in bytes (the forms the manifests use), as resourceFieldRef gives it. */
function bytesOf(q: string): number {
  const m = /^(\d+)(Ki|Mi|Gi)$/.exec(q);
  if (!m) throw new Error(`memory quantity ${q}: not of the form the test reads`);
  return Number(m[1]) * 1024 ** { Ki: 1, Mi: 2, Gi: 3 }[m[2] as 'Ki' | 'Mi' | 'Gi'];
}

/**
 * Runs an init container of the cleanup pod on this machine: the image's files are the build's
 * (dist/, install/entrypoint.sh), each mount's path is the directory that stands for its volume,
 * and setpriv leaves root exactly the capabilities the container adds (as the runtime does).
 */
function runContainer(c: Obj, mounts: Record<string, string>, extraEnv: Record<string, string> = {}): { code: number | null; stdout: string; stderr: string } {
  const mountPaths = (c.volumeMounts as Obj[]).map((m) => m.mountPath as string);
  assert.deepEqual(Object.keys(mounts).sort(), [...mountPaths].sort(), `${c.name}: a directory for each of its mounts`);
  const map: [string, string][] = [
    [`${IMAGE_DIR}/entrypoint.sh`, join(ROOT, 'install', 'entrypoint.sh')],
    [IMAGE_DIR, join(ROOT, 'dist')],
    ...Object.entries(mounts),
  ];
  const mapPath = (s: string): string => {
    const eq = /^(--[a-z-]+=)(.*)$/s.exec(s);
    if (eq) return eq[1] + mapPath(eq[2]);
    for (const [from, to] of map) if (s === from || s.startsWith(`${from}/`)) return to + s.slice(from.length);
    return s;
  };
  const env: Record<string, string> = { PATH: `${join(process.execPath, '..')}:/usr/bin:/bin` };
  for (const e of (c.env ?? []) as Obj[]) {
    if (typeof e.value === 'string') env[e.name] = mapPath(e.value);
    else if (e.valueFrom?.resourceFieldRef?.resource === 'limits.memory') env[e.name] = String(bytesOf(c.resources.limits.memory));
    else throw new Error(`${c.name}: env ${e.name} is of a kind the test does not resolve`);
  }
  const sc = c.securityContext as Obj;
  assert.equal(sc.privileged, false, `${c.name}: not privileged`);
  assert.ok(sc.seccompProfile === undefined || sc.seccompProfile.type === 'Unconfined', `${c.name}: runs here without a seccomp filter, as asked`);
  assert.deepEqual(sc.capabilities.drop, ['ALL'], `${c.name}: drops every capability`);
  for (const cap of sc.capabilities.add as string[]) assert.ok(cap in CAP_NUMBERS, `capability ${cap} known to this test`);
  const bounding = ['-all', ...(sc.capabilities.add as string[]).map((cap) => `+${cap.toLowerCase()}`)].join(',');
  const setpriv = ['setpriv', '--bounding-set', bounding, '--inh-caps', '-all'];
  const status = spawnSync(setpriv[0], [...setpriv.slice(1), 'cat', '/proc/self/status'], { encoding: 'utf8' });
  const held = BigInt(`0x${/^CapEff:\s*([0-9a-f]+)$/m.exec(status.stdout)![1]}`);
  const wanted = (sc.capabilities.add as string[]).reduce((m, cap) => m | (1n << BigInt(CAP_NUMBERS[cap])), 0n);
  assert.equal(held, wanted, `${c.name}: root holds exactly ${sc.capabilities.add.join(', ')}`);
  const argv = [...(c.command as string[]), ...((c.args ?? []) as string[])].map(mapPath);
  const r = spawnSync(setpriv[0], [...setpriv.slice(1), ...argv], { env: { ...env, ...extraEnv }, encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.error, undefined, `${c.name} runs`);
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Our programs on an interface's hooks, per direction. */
function ourHooks(ifindex: number): string[] {
  return (['ingress', 'egress'] as const).flatMap((d) => bpf.query(ifindex, d).filter((h) => h.ours).map((h) => `${d}:${h.name}`));
}

/** Every file under a pin tree. */
function pinFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => (statSync(join(dir, n)).isDirectory() ? pinFiles(join(dir, n)) : [join(dir, n)]));
}

function bpftoolIds(kind: 'prog' | 'link' | 'map'): Set<number> {
  const r = spawnSync('bpftool', ['-j', kind, 'show'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, `bpftool ${kind} show: ${r.stderr}`);
  return new Set((JSON.parse(r.stdout) as { id: number }[]).map((x) => x.id));
}

async function pingBothWays(scope: Scope, a: Pod, b: Pod, label: string): Promise<void> {
  for (const [from, to] of [[a, b], [b, a]] as const) {
    for (const family of [4, 6] as const) {
      const r = await icmpEcho(scope, { from, to, family, count: 2, intervalMs: 50, verify: false });
      assert.deepEqual([r.transmitted, r.received], [2, 2], `${label}: ${from.name} pings ${to.name} over IPv${family}`);
    }
  }
}

test('the cleanup DaemonSet\'s init containers, with their manifest\'s capabilities, remove everything of ours; pods keep talking', async (t) => {
  requireTool('/usr/bin/setpriv', 'util-linux');
  requireTool('/usr/sbin/bpftool', 'bpftool');
  requireTool('/usr/sbin/tc', 'iproute2');
  const [ds] = uninstallObjects() as Obj[];
  const pod = ds.spec.template.spec as Obj;
  const [cniUninstall, datapathUninstall] = pod.initContainers as Obj[];
  assert.deepEqual((pod.initContainers as Obj[]).map((c) => c.name), ['cni-uninstall', 'datapath-uninstall']);

  await withScope(async (scope) => {
    const node = await createNode(scope);
    const a = await node.addPod();
    const b = await node.addPod();
    const remote = await node.addRemote();
    const sink = await ReportSink.start(scope);
    const daemon = await DaemonProcess.start(scope, { collector: sink.address, dataInterface: remote.dataIfname });
    for (const [p, name] of [[a, 'pod-a'], [b, 'pod-b']] as const) {
      const r = cniAdd(daemon, p, `cid-${name}-${scope.prefix}`, name);
      assert.equal(r.code, 0, `CNI ADD of ${name}: ${r.stdout}${r.stderr}`);
    }

    // The node's CNI dirs: a primary's list and another plugin; the real installer chains us in.
    const confDir = tempDir(scope, 'conf');
    const binDir = tempDir(scope, 'bin');
    const statusDir = tempDir(scope, 'status');
    const primary = `${JSON.stringify({ cniVersion: '1.0.0', name: 'primary', plugins: [{ type: 'ptp', ipam: { type: 'host-local', subnet: '10.99.0.0/24' } }] }, null, 2)}\n`;
    const conflist = join(confDir, '10-primary.conflist');
    writeFileSync(conflist, primary);
    writeFileSync(join(binDir, 'ptp'), 'another plugin\n', { mode: 0o755 });
    const install = spawnSync(process.execPath, [join(ROOT, 'dist', 'int-host-reporter-cni-install.cjs'), '--cni-conf-dir', confDir, '--cni-bin-dir', binDir,
      '--plugin-source', join(ROOT, 'dist', 'cni'), '--status-file', join(statusDir, 'install.json'), '--log-level', 'silent'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(install.status, 0, `the installer chains: ${install.stderr}`);
    assert.deepEqual((JSON.parse(readFileSync(conflist, 'utf8')) as Obj).plugins.map((p: Obj) => p.type), ['ptp', 'int-host-reporter']);
    assert.deepEqual(readdirSync(binDir).sort(), ['int-host-reporter', 'int-host-reporter.d', 'ptp']);

    // What of ours is in the kernel: the programs on the hooks, the pinned links and their maps.
    for (const p of [a, b]) assert.equal(ourHooks(p.hostIfindex).length, 2, `${p.name} attached on ingress and egress`);
    assert.equal(ourHooks(remote.dataIfindex).length, 2, 'the data interface attached');
    const progIds = new Set<number>();
    const linkIds = new Set<number>();
    for (const f of pinFiles(daemon.pinRoot)) {
      try {
        const info = bpf.pinnedLinkInfo(f);
        linkIds.add(info.id);
        progIds.add(info.progId);
      } catch {
        /* a map or program pin */
      }
    }
    for (const i of [a.hostIfindex, b.hostIfindex, remote.dataIfindex]) {
      for (const d of ['ingress', 'egress'] as const) for (const h of bpf.query(i, d)) if (h.ours) progIds.add(h.progId);
    }
    const mapIds = new Set<number>();
    for (const id of progIds) {
      const r = spawnSync('bpftool', ['-j', 'prog', 'show', 'id', String(id)], { encoding: 'utf8' });
      for (const m of (JSON.parse(r.stdout) as { map_ids?: number[] }).map_ids ?? []) mapIds.add(m);
    }
    assert.ok(linkIds.size >= 6 && mapIds.size > 0, `pinned links ${linkIds.size} (2 per veth, 2 on the data interface, drops), maps ${mapIds.size}`);
    t.diagnostic(`before: ${linkIds.size} pinned links, ${progIds.size} programs, ${mapIds.size} maps of ours in the kernel`);
    await pingBothWays(scope, a, b, 'installed');

    // The documented order: the DaemonSet goes first (its daemon stops), then the cleanup pod.
    await daemon.stop();
    const mounts = {
      cni: { '/host/etc/cni/net.d': confDir, '/host/opt/cni/bin': binDir, '/run/int-host-reporter-status': statusDir },
      datapath: { '/sys/fs/bpf': '/sys/fs/bpf', '/run/int-host-reporter': daemon.runDir },
    };
    // The test's own pin root instead of the node's default one, which other runs may be using.
    const testPins = { INT_HOST_REPORTER_BPFFS: daemon.pinRoot };

    const cni = runContainer(cniUninstall, mounts.cni);
    assert.equal(cni.code, 0, `${cniUninstall.name}: ${cni.stderr}`);
    assert.equal(readFileSync(conflist, 'utf8'), primary, 'the conflist is the primary\'s again, byte for byte');
    assert.deepEqual(readdirSync(confDir), ['10-primary.conflist']);
    assert.deepEqual(readdirSync(binDir), ['ptp'], 'our plugin files are gone, the other plugin stays');
    assert.equal((JSON.parse(readFileSync(join(statusDir, 'cni-installer.json'), 'utf8')) as Obj).state, 'uninstalled');
    for (const p of [a, b]) assert.equal(ourHooks(p.hostIfindex).length, 2, `${p.name}: our programs go only in the next step`);
    await pingBothWays(scope, a, b, 'plugin removed');

    const t0 = Date.now();
    const dp = runContainer(datapathUninstall, mounts.datapath, testPins);
    t.diagnostic(`${datapathUninstall.name} took ${Date.now() - t0} ms with ${datapathUninstall.securityContext.capabilities.add.join(', ')}`);
    assert.deepEqual({ code: dp.code, stdout: dp.stdout, stderr: dp.stderr },
      { code: 0, stdout: `int-host-reporter: removed 2 pod attachments and everything under ${daemon.pinRoot}\n`, stderr: '' });
    assert.equal(existsSync(daemon.pinRoot), false, 'no pin left');
    assert.deepEqual(readdirSync(daemon.runDir), [], 'no state, spool or socket left');
    for (const i of [a.hostIfindex, b.hostIfindex, remote.dataIfindex]) assert.deepEqual(ourHooks(i), [], `ifindex ${i}: no program of ours`);
    assert.deepEqual(await hooksHolding([...progIds]), [], 'none of our programs on any interface');
    for (const p of [a, b, remote]) {
      const ifname = 'hostIfname' in p ? p.hostIfname : p.dataIfname;
      for (const d of ['ingress', 'egress']) {
        const f = spawnSync('tc', ['filter', 'show', 'dev', ifname, d], { encoding: 'utf8' });
        assert.deepEqual({ code: f.status, out: f.stdout }, { code: 0, out: '' }, `${ifname}: no tc filter on ${d}`);
      }
      const q = spawnSync('tc', ['-j', 'qdisc', 'show', 'dev', ifname], { encoding: 'utf8' });
      assert.deepEqual((JSON.parse(q.stdout) as { kind: string }[]).filter((x) => x.kind === 'clsact'), [], `${ifname}: no clsact qdisc`);
    }
    // The kernel frees programs and maps once the last reference goes (partly after an RCU grace period).
    const stillInKernel = () => {
      const now = { progs: bpftoolIds('prog'), links: bpftoolIds('link'), maps: bpftoolIds('map') };
      return {
        progs: [...progIds].filter((id) => now.progs.has(id)),
        links: [...linkIds].filter((id) => now.links.has(id)),
        maps: [...mapIds].filter((id) => now.maps.has(id)),
      };
    };
    let left = stillInKernel();
    for (const deadline = Date.now() + 5000; left.progs.length + left.links.length + left.maps.length > 0 && Date.now() < deadline;) {
      await sleep(100);
      left = stillInKernel();
    }
    assert.deepEqual(left, { progs: [], links: [], maps: [] }, 'our programs, links and maps freed by the kernel');
    await pingBothWays(scope, a, b, 'uninstalled');

    // A restarted cleanup pod runs both again: nothing to do, nothing fails.
    const again = runContainer(cniUninstall, mounts.cni);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual([readFileSync(conflist, 'utf8'), readdirSync(binDir)], [primary, ['ptp']]);
    const dpAgain = runContainer(datapathUninstall, mounts.datapath, testPins);
    assert.deepEqual({ code: dpAgain.code, stdout: dpAgain.stdout },
      { code: 0, stdout: `int-host-reporter: removed 0 pod attachments and everything under ${daemon.pinRoot}\n` });
    assert.deepEqual(readdirSync(daemon.runDir), []);
  });
});
