// The deployment files in install/: every YAML parses, and the fields that make the deployment work
// are what the daemon, the installer and Kubernetes expect. The Containerfile cannot be built here
// (no container engine); the entrypoint script it installs is run with stand-in programs.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Script } from 'node:vm';
import { after, describe, test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { parseConfig } from '../../daemon/config';
import { parseWatchlistText } from '../../daemon/watchlist';
import { buildEntry } from '../../install/cni-installer';

const INSTALL = join(__dirname, '..', '..', 'install');

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function loadAll(): Obj[] {
  const docs: Obj[] = [];
  for (const f of readdirSync(INSTALL).filter((n) => n.endsWith('.yaml')).sort()) {
    for (const d of parseAllDocuments(readFileSync(join(INSTALL, f), 'utf8'))) {
      assert.deepEqual(d.errors.map(String), [], `${f} must parse`);
      const js = d.toJS() as Obj | null;
      if (js) docs.push({ ...js, __file: f });
    }
  }
  return docs;
}

const docs = loadAll();
const one = (kind: string): Obj => {
  const found = docs.filter((d) => d.kind === kind);
  assert.equal(found.length, 1, `exactly one ${kind}, found ${found.length}`);
  return found[0];
};
const ds = one('DaemonSet');
const pod = ds.spec.template.spec as Obj;
const daemon = (pod.containers as Obj[]).find((c) => c.name === 'int-host-reporter') as Obj;
const init = (pod.initContainers as Obj[]).find((c) => c.name === 'install-cni') as Obj;
const cm = one('ConfigMap');
const envOf = (c: Obj) => new Map((c.env as Obj[]).map((e) => [e.name as string, e]));
const mountAt = (c: Obj, path: string) => (c.volumeMounts as Obj[]).find((m) => m.mountPath === path);
const volume = (name: string) => (pod.volumes as Obj[]).find((v) => v.name === name) as Obj;

describe('install/*.yaml', () => {
  test('every document has apiVersion, kind and metadata.name; the expected kinds are all there', () => {
    for (const d of docs) {
      assert.ok(d.apiVersion && d.kind && d.metadata?.name, `${d.__file}: apiVersion, kind and metadata.name are required`);
    }
    assert.deepEqual(docs.map((d) => d.kind).sort(), ['ClusterRole', 'ClusterRoleBinding', 'ConfigMap', 'DaemonSet', 'ServiceAccount']);
    for (const d of docs.filter((x) => x.kind !== 'ClusterRole' && x.kind !== 'ClusterRoleBinding')) {
      assert.equal(d.metadata.namespace, 'kube-system', `${d.kind} lives in kube-system`);
    }
  });

  test('RBAC: get, list and watch on pods, nothing more, bound to the DaemonSet\'s service account', () => {
    const role = one('ClusterRole');
    assert.deepEqual(role.rules, [{ apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] }]);
    const sa = one('ServiceAccount');
    const binding = one('ClusterRoleBinding');
    assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata.name });
    assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: sa.metadata.namespace }]);
    assert.equal(pod.serviceAccountName, sa.metadata.name, 'the pods run as that service account');
  });

  test('DaemonSet: host network and PID namespace, labels that match, privileged daemon', () => {
    assert.equal(ds.apiVersion, 'apps/v1');
    assert.equal(pod.hostNetwork, true, 'hostNetwork: the veths and the data interface are in the host netns');
    assert.equal(pod.hostPID, true, 'hostPID: /proc/<pid>/ns/net paths of the runtime must resolve');
    assert.equal(pod.dnsPolicy, 'ClusterFirstWithHostNet', 'cluster DNS with host networking');
    assert.deepEqual(ds.spec.selector.matchLabels, { 'app.kubernetes.io/name': 'int-host-reporter' });
    for (const [k, v] of Object.entries(ds.spec.selector.matchLabels as Obj)) {
      assert.equal(ds.spec.template.metadata.labels[k], v, `template label ${k} must match the selector`);
    }
    assert.equal(daemon.securityContext.privileged, true, 'the daemon loads BPF and needs a Bidirectional bpffs mount');
    assert.deepEqual(pod.tolerations, [{ operator: 'Exists' }], 'runs on every node, tainted or not');
  });

  test('daemon env: NODE_NAME and NODE_IP from the downward API, COLLECTOR from the ConfigMap; the daemon reads them', () => {
    const env = envOf(daemon);
    assert.deepEqual(env.get('NODE_NAME')?.valueFrom, { fieldRef: { fieldPath: 'spec.nodeName' } });
    assert.deepEqual(env.get('NODE_IP')?.valueFrom, { fieldRef: { fieldPath: 'status.hostIP' } });
    assert.deepEqual(env.get('COLLECTOR')?.valueFrom, { configMapKeyRef: { name: cm.metadata.name, key: 'collector' } });
    assert.ok(typeof cm.data.collector === 'string' && cm.data.collector !== '', 'the ConfigMap has a collector');
    for (const [name, e] of env) {
      const ref = e.valueFrom?.configMapKeyRef as Obj | undefined;
      if (!ref) continue;
      assert.equal(ref.name, cm.metadata.name, `${name} refers to our ConfigMap`);
      assert.ok(ref.optional === true || ref.key in cm.data, `${name}: key ${ref.key} must exist or be optional`);
    }
    // The daemon's own parser, given the environment the pod would have.
    const podEnv: Record<string, string> = { NODE_NAME: 'node-1', NODE_IP: '192.0.2.10', COLLECTOR: cm.data.collector, INT_HOST_REPORTER_LOG_LEVEL: cm.data['log-level'] };
    for (const [name, e] of env) if (typeof e.value === 'string') podEnv[name] = e.value;
    const config = parseConfig([], podEnv, () => cm.data['watchlist.yaml']);
    assert.equal(config.watchlistConf, env.get('INT_HOST_REPORTER_WATCHLIST_CONF')?.value, 'the watchlist path reaches the daemon');
    assert.equal(config.nodeName, 'node-1', 'NODE_NAME reaches the daemon');
  });

  test('mounts: bpffs bidirectional, run dir, CNI dirs, netns; every mount has its volume', () => {
    const bpffs = mountAt(daemon, '/sys/fs/bpf');
    assert.equal(bpffs?.mountPropagation, 'Bidirectional', 'pins must be visible on the host');
    assert.deepEqual(volume(bpffs.name).hostPath, { path: '/sys/fs/bpf', type: 'DirectoryOrCreate' });
    const run = mountAt(daemon, '/run/int-host-reporter');
    assert.equal(volume(run?.name).hostPath.path, '/run/int-host-reporter', 'socket at the same path on host and in the pod');
    const netns = mountAt(daemon, '/var/run/netns');
    assert.equal(netns?.mountPropagation, 'HostToContainer', 'netns created later must show up');
    for (const c of [init, daemon]) {
      assert.equal(volume(mountAt(c, '/host/etc/cni/net.d')?.name).hostPath.path, '/etc/cni/net.d', `${c.name}: CNI config dir`);
      assert.equal(volume(mountAt(c, '/host/opt/cni/bin')?.name).hostPath.path, '/opt/cni/bin', `${c.name}: CNI bin dir`);
      for (const m of c.volumeMounts as Obj[]) assert.ok(volume(m.name), `${c.name}: mount ${m.name} has a volume`);
    }
  });

  test('watchlist: a ConfigMap directory mount (no subPath) that the daemon\'s parser accepts', () => {
    const path = envOf(daemon).get('INT_HOST_REPORTER_WATCHLIST_CONF')?.value as string;
    const m = (daemon.volumeMounts as Obj[]).find((x) => path.startsWith(x.mountPath + '/'));
    assert.ok(m, `a mount holds ${path}`);
    assert.equal(m.subPath, undefined, 'no subPath: ConfigMap updates must propagate');
    const v = volume(m.name);
    assert.equal(v.configMap?.name, cm.metadata.name, 'the mount is our ConfigMap');
    const item = (v.configMap.items as Obj[]).find((i) => join(m.mountPath, i.path) === path);
    assert.ok(item && item.key in cm.data, `the file ${path} comes from a ConfigMap key`);
    const rules = parseWatchlistText(cm.data[item.key], 'configmap.yaml');
    assert.ok(rules.length > 0, 'the sample watchlist has rules');
  });

  test('installer: init container waits for the primary; plugin config and probes use the daemon socket', () => {
    assert.deepEqual(init.command, ['node', '/opt/int-host-reporter/int-host-reporter-cni-install.cjs']);
    assert.ok((init.args as string[]).includes('--wait'), 'the init container waits for the primary CNI');
    const socket = envOf(daemon).get('INT_HOST_REPORTER_SOCKET')?.value as string;
    const initConfig = (init.args as string[]).find((a) => a.startsWith('--plugin-config='))!.slice('--plugin-config='.length);
    for (const text of [initConfig, envOf(daemon).get('CNI_PLUGIN_CONFIG')?.value as string]) {
      assert.deepEqual(buildEntry(JSON.parse(text)), { type: 'int-host-reporter', socketPath: socket }, `plugin config ${text}`);
    }
    assert.deepEqual(daemon.command, ['/opt/int-host-reporter/entrypoint.sh'], 'the daemon runs with the installer watch beside it');
    for (const probe of [daemon.readinessProbe, daemon.livenessProbe]) {
      const script = (probe.exec.command as string[]).join(' ');
      assert.ok(script.includes(`socketPath:'${socket}'`), `probe must use ${socket}: ${script}`);
      assert.doesNotThrow(() => new Script((probe.exec.command as string[])[2]), `probe script is valid JS: ${script}`);
      assert.deepEqual((probe.exec.command as string[]).slice(0, 2), ['node', '-e'], 'a node one-liner: no curl in the image');
    }
  });
});

test('the probe one-liners exit 0 when the daemon answers 200 and 1 when there is no daemon', async () => {
  const { createServer } = await import('node:http');
  const { execFile } = await import('node:child_process');
  const exitOf = (script: string) => new Promise<number | null>((resolve) => {
    execFile(process.execPath, ['-e', script], { timeout: 10_000 }, (err) => resolve(err ? (typeof err.code === 'number' ? err.code : -1) : 0));
  });
  const dir = mkdtempSync(join(tmpdir(), 'ihr-probe-'));
  const sock = join(dir, 'daemon.sock');
  const server = createServer((req, res) => res.writeHead(req.url === '/readyz' || req.url === '/healthz' ? 200 : 404).end('{}'));
  await new Promise<void>((r) => server.listen(sock, r));
  try {
    for (const probe of [daemon.readinessProbe, daemon.livenessProbe]) {
      const script = ((probe.exec.command as string[])[2]).replace('/run/int-host-reporter/daemon.sock', sock);
      assert.equal(await exitOf(script), 0, 'exit 0 with a daemon');
      assert.equal(await exitOf(script.replace(sock, join(dir, 'absent.sock'))), 1, 'exit 1 without a daemon');
    }
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

describe('install/Containerfile and entrypoint.sh', () => {
  const temps: string[] = [];
  after(() => {
    for (const t of temps) rmSync(t, { recursive: true, force: true });
  });

  test('Containerfile: Debian 12 slim, Node 20, libelf and zlib, dist/ in /opt/int-host-reporter, the daemon as entrypoint', () => {
    const text = readFileSync(join(INSTALL, 'Containerfile'), 'utf8');
    assert.match(text, /^FROM docker\.io\/library\/debian:12-slim$/m, 'Debian 12 slim base');
    assert.match(text, /^FROM docker\.io\/library\/node:20-bookworm-slim AS node$/m, 'Node 20 built for bookworm');
    assert.match(text, /install -y --no-install-recommends [^\n]*\blibelf1\b[^\n]*\bzlib1g\b/, 'libelf1 and zlib1g installed');
    assert.match(text, /^COPY dist\/ \/opt\/int-host-reporter\/$/m, 'dist/ copied');
    assert.match(text, /^ENTRYPOINT \["node", "\/opt\/int-host-reporter\/int-host-reporter\.cjs"\]$/m, 'the daemon is the entrypoint');
    assert.match(text, /NOT BUILT OR RUN HERE/, 'says it was not built');
  });

  function entrypoint(watcherBody: string): { dir: string; run: () => Promise<{ code: number | null; out: string }>; term: () => void } {
    const dir = mkdtempSync(join(tmpdir(), 'ihr-entry-'));
    temps.push(dir);
    mkdirSync(join(dir, 'cni'));
    writeFileSync(join(dir, 'int-host-reporter.cjs'),
      "console.log('daemon ' + JSON.stringify(process.argv.slice(2))); process.on('SIGTERM', () => { console.log('daemon stopped'); process.exit(0); }); setInterval(() => {}, 1000);");
    writeFileSync(join(dir, 'int-host-reporter-cni-install.cjs'), watcherBody);
    let child: ReturnType<typeof spawn>;
    return {
      dir,
      run: () => new Promise((resolve) => {
        child = spawn(join(INSTALL, 'entrypoint.sh'), ['--log-level', 'debug'], {
          env: { ...process.env, INT_HOST_REPORTER_DIR: dir, CNI_PLUGIN_CONFIG: '{"socketPath": "/a b"}' }, stdio: ['ignore', 'pipe', 'inherit'],
        });
        let out = '';
        child.stdout!.on('data', (d) => (out += d));
        child.on('close', (code) => resolve({ code, out }));
      }),
      term: () => child.kill('SIGTERM'),
    };
  }

  test('entrypoint.sh: both processes start with their arguments; SIGTERM stops both and exits 0', async () => {
    const e = entrypoint("console.log('watcher ' + JSON.stringify(process.argv.slice(2))); process.on('SIGTERM', () => { console.log('watcher stopped'); process.exit(0); }); setInterval(() => {}, 1000);");
    const done = e.run();
    await new Promise((r) => setTimeout(r, 1500));
    e.term();
    const { code, out } = await done;
    assert.equal(code, 0, `clean exit expected: ${out}`);
    assert.ok(out.includes('daemon ["--log-level","debug"]'), `daemon gets the script's arguments: ${out}`);
    assert.ok(out.includes(`watcher ["--watch","--cni-conf-dir","/host/etc/cni/net.d","--cni-bin-dir","/host/opt/cni/bin","--plugin-source","${e.dir}/cni","--plugin-config","{\\"socketPath\\": \\"/a b\\"}"]`),
      `watcher gets its flags, the JSON unsplit: ${out}`);
    assert.ok(out.includes('daemon stopped') && out.includes('watcher stopped'), `both got SIGTERM: ${out}`);
  });

  test('entrypoint.sh: the watcher dying ends the daemon and the container fails', async () => {
    // it dies once the daemon is up (the daemon stand-in prints on SIGTERM only after it started)
    const e = entrypoint("setTimeout(() => { console.log('watcher crashed'); process.exit(7); }, 1000);");
    const { code, out } = await e.run();
    assert.equal(code, 7, `the watcher's status: ${out}`);
    assert.ok(out.includes('daemon stopped'), `the daemon was stopped: ${out}`);
  });
});
