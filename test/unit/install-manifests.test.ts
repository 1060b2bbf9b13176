// The deployment: install/*.yaml are exactly the default rendering of install/manifests.ts (what
// `int-host-reporter manifests` prints, and with --uninstall the cleanup DaemonSet of
// install/uninstall.yaml); every object of the default and of a non-default rendering validates
// against the Kubernetes OpenAPI schemas (kubernetes-models, offline); and checks for the mistakes
// a schema cannot see (a mount without its volume, a probe on another port than the health
// listener, a privilege we did not mean to give, cleanup steps out of order). Then the programs the
// pods run besides our bundles: entrypoint.sh's heap cap, the init container's bpffs mount, the
// cleanup pod's main container.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { parseConfig } from '../../daemon/config';
import { parseWatchlistText } from '../../daemon/watchlist';
import { MANIFESTS_USAGE, runManifests } from '../../daemon/cli/manifests';
import { buildEntry } from '../../install/cni-installer';
import {
  CLEANUP_NAME, DEFAULT_MANIFEST_OPTIONS, manifestObjects, renderFiles, renderManifests, renderUninstall, uninstallObjects, type ManifestOptions,
} from '../../install/manifests';
import { DEFAULT_BPFFS_ROOT } from '../../bpf/pins';

const ROOT = join(__dirname, '..', '..');
const INSTALL = join(ROOT, 'install');
const DAEMON_BUNDLE = join(ROOT, 'dist', 'int-host-reporter.cjs');

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const CUSTOM: ManifestOptions = {
  namespace: 'telemetry', image: 'registry.example.net/ihr/int-host-reporter:1.2.3', collector: '192.0.2.7:9000,[2001:db8::7]:9001',
  cniBinDir: '/var/lib/cni/bin', cniConfDir: '/etc/cni/custom.d', privileged: true,
};

function parseStream(text: string): Obj[] {
  return parseAllDocuments(text).map((d) => {
    assert.deepEqual(d.errors.map(String), [], 'the YAML parses');
    return d.toJS() as Obj;
  });
}

/** `int-host-reporter manifests ARGS`, in process: exit code, stdout. */
function manifestsCli(argv: string[]): { code: number; out: string } {
  let out = '';
  const sink = new Writable({ write: (chunk, _enc, cb) => { out += String(chunk); cb(); } });
  const stderr = process.stderr.write;
  process.stderr.write = (() => true) as typeof process.stderr.write; // the usage text on errors
  try {
    return { code: runManifests(argv, sink), out };
  } finally {
    process.stderr.write = stderr;
  }
}

const cliArgs = (o: ManifestOptions) => [
  '--namespace', o.namespace, '--image', o.image, `--collector=${o.collector}`, '--cni-bin-dir', o.cniBinDir, '--cni-conf-dir', o.cniConfDir,
  ...(o.privileged ? ['--privileged'] : []),
];

describe('install/*.yaml and `int-host-reporter manifests`', () => {
  test('install/*.yaml are exactly the default rendering', () => {
    const files = renderFiles();
    assert.deepEqual([...files.keys()].sort(), ['configmap.yaml', 'daemonset.yaml', 'rbac.yaml', 'uninstall.yaml']);
    assert.equal(files.get('uninstall.yaml'), renderUninstall(), 'uninstall.yaml is what `manifests --uninstall` prints');
    assert.deepEqual(readdirSync(INSTALL).filter((f) => f.endsWith('.yaml')).sort(), [...files.keys()].sort());
    for (const [file, text] of files) {
      assert.equal(readFileSync(join(INSTALL, file), 'utf8'), text, `install/${file} differs from the rendering: node --import tsx install/render-manifests.ts`);
    }
  });

  test('the command prints the rendering: defaults with no options, every option taken, bad ones refused', () => {
    assert.deepEqual(manifestsCli([]), { code: 0, out: renderManifests(DEFAULT_MANIFEST_OPTIONS) });
    assert.deepEqual(manifestsCli(cliArgs(CUSTOM)), { code: 0, out: renderManifests(CUSTOM) });
    assert.deepEqual(manifestsCli(['--help']), { code: 0, out: MANIFESTS_USAGE });
    assert.deepEqual(manifestsCli(['--uninstall']), { code: 0, out: renderUninstall(DEFAULT_MANIFEST_OPTIONS) });
    assert.deepEqual(manifestsCli([...cliArgs(CUSTOM), '--uninstall']), { code: 0, out: renderUninstall(CUSTOM) });
    assert.deepEqual(manifestsCli(['--uninstall', ...cliArgs(CUSTOM)]), { code: 0, out: renderUninstall(CUSTOM) }, 'the flag anywhere');
    assert.equal(readFileSync(join(INSTALL, 'uninstall.yaml'), 'utf8'), renderUninstall());
    // the install files, concatenated, are the default stream
    assert.equal(['rbac.yaml', 'configmap.yaml', 'daemonset.yaml'].map((f) => readFileSync(join(INSTALL, f), 'utf8')).join('---\n'), renderManifests());
    for (const bad of [['--nope'], ['--image'], ['--namespace', 'Kube_System'], ['--collector', 'a:99999'], ['--cni-bin-dir', 'opt/cni/bin']]) {
      assert.deepEqual(manifestsCli(bad), { code: 2, out: '' }, `refused: ${bad.join(' ')}`);
    }
  });

  test('the shipped bundle prints the same (what an operator runs)', () => {
    assert.ok(existsSync(DAEMON_BUNDLE), `${DAEMON_BUNDLE} is missing: run node build.mjs bundle`);
    const r = spawnSync(process.execPath, [DAEMON_BUNDLE, 'manifests', ...cliArgs(CUSTOM)], { encoding: 'utf8', timeout: 30_000 });
    assert.deepEqual({ code: r.status, out: r.stdout, err: r.stderr }, { code: 0, out: renderManifests(CUSTOM), err: '' });
    const u = spawnSync(process.execPath, [DAEMON_BUNDLE, 'manifests', '--uninstall', ...cliArgs(CUSTOM)], { encoding: 'utf8', timeout: 30_000 });
    assert.deepEqual({ code: u.status, out: u.stdout, err: u.stderr }, { code: 0, out: renderUninstall(CUSTOM), err: '' });
    const bad = spawnSync(process.execPath, [DAEMON_BUNDLE, 'manifests', '--namespace'], { encoding: 'utf8', timeout: 30_000 });
    assert.deepEqual({ code: bad.status, out: bad.stdout }, { code: 2, out: '' });
    assert.equal(bad.stderr, `int-host-reporter manifests: --namespace needs a value\n\n${MANIFESTS_USAGE}`);
  });

  test('the kinds: a namespace only when it is not kube-system', () => {
    assert.deepEqual(manifestObjects().map((o) => o.kind), ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'ConfigMap', 'DaemonSet']);
    assert.deepEqual(manifestObjects(CUSTOM).map((o) => o.kind), ['Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'ConfigMap', 'DaemonSet']);
    assert.deepEqual(uninstallObjects(CUSTOM).map((o) => `${o.kind}/${(o.metadata as Obj).name}`), [`DaemonSet/${CLEANUP_NAME}`], 'into the install\'s namespace');
  });

  for (const [label, opts] of [['default', DEFAULT_MANIFEST_OPTIONS], ['non-default', CUSTOM]] as const) {
    describe(`${label} rendering`, () => {
      const objs = parseStream(renderManifests(opts));
      const one = (kind: string): Obj => {
        const found = objs.filter((d) => d.kind === kind);
        assert.equal(found.length, 1, `exactly one ${kind}`);
        return found[0];
      };
      const ds = one('DaemonSet');
      const cm = one('ConfigMap');
      const pod = ds.spec.template.spec as Obj;
      const containers = [...pod.initContainers, ...pod.containers] as Obj[];
      const byName = (n: string) => containers.find((c) => c.name === n) as Obj;
      const daemon = byName('int-host-reporter');
      const installer = byName('cni-installer');
      const initBpffs = byName('mount-bpffs');
      const volume = (name: string) => (pod.volumes as Obj[]).find((v) => v.name === name) as Obj;
      const envOf = (c: Obj) => new Map((c.env as Obj[]).map((e) => [e.name as string, e]));
      const argOf = (c: Obj, flag: string) => (c.args as string[]).find((a) => a.startsWith(`--${flag}=`))?.slice(flag.length + 3);
      const mountAt = (c: Obj, path: string) => (c.volumeMounts as Obj[]).find((m) => m.mountPath === path) as Obj;

      test('every object validates against the Kubernetes OpenAPI schemas', async () => {
        const core = await import('kubernetes-models/v1');
        const apps = await import('kubernetes-models/apps/v1');
        const rbacModels = await import('kubernetes-models/rbac.authorization.k8s.io/v1');
        const models: Record<string, new (o: any) => { validate(): void }> = { // eslint-disable-line @typescript-eslint/no-explicit-any
          'v1/Namespace': core.Namespace, 'v1/ServiceAccount': core.ServiceAccount, 'v1/ConfigMap': core.ConfigMap,
          'apps/v1/DaemonSet': apps.DaemonSet,
          'rbac.authorization.k8s.io/v1/ClusterRole': rbacModels.ClusterRole, 'rbac.authorization.k8s.io/v1/ClusterRoleBinding': rbacModels.ClusterRoleBinding,
        };
        for (const o of objs) {
          const Model = models[`${o.apiVersion}/${o.kind}`];
          assert.ok(Model, `a schema for ${o.apiVersion} ${o.kind}`);
          assert.doesNotThrow(() => new Model(o).validate(), `${o.kind} ${o.metadata.name} validates`);
        }
        // The validation is real: a wrong quantity fails it.
        const broken = structuredClone(ds);
        broken.spec.template.spec.containers[0].resources.limits.memory = '512 MB';
        assert.throws(() => new apps.DaemonSet(broken).validate(), /limits\/memory/);
      });

      test('namespaces and RBAC: pods get, list and watch, nothing more, bound to the pods\' service account', () => {
        for (const o of objs.filter((x) => !['Namespace', 'ClusterRole', 'ClusterRoleBinding'].includes(x.kind))) {
          assert.equal(o.metadata.namespace, opts.namespace, `${o.kind} in ${opts.namespace}`);
        }
        const role = one('ClusterRole');
        const sa = one('ServiceAccount');
        assert.deepEqual(role.rules, [{ apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] }]);
        assert.deepEqual(one('ClusterRoleBinding').roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata.name });
        assert.deepEqual(one('ClusterRoleBinding').subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: opts.namespace }]);
        assert.equal(pod.serviceAccountName, sa.metadata.name);
      });

      test('every mount names a volume, every volume is mounted, no path mounted twice in a container', () => {
        const used = new Set<string>();
        for (const c of containers) {
          const paths = (c.volumeMounts as Obj[]).map((m) => m.mountPath);
          assert.equal(new Set(paths).size, paths.length, `${c.name}: a path mounted twice`);
          for (const m of c.volumeMounts as Obj[]) {
            assert.ok(volume(m.name), `${c.name}: mount ${m.name} has a volume`);
            used.add(m.name);
          }
        }
        assert.deepEqual((pod.volumes as Obj[]).map((v) => v.name).filter((n) => !used.has(n)), [], 'volumes no container mounts');
      });

      test('the pod: host network, no host PID, node-critical, Linux nodes, rolling update, selector matches', () => {
        assert.deepEqual(
          { hostNetwork: pod.hostNetwork, hostPID: pod.hostPID, dnsPolicy: pod.dnsPolicy, priorityClassName: pod.priorityClassName, nodeSelector: pod.nodeSelector, tolerations: pod.tolerations },
          { hostNetwork: true, hostPID: false, dnsPolicy: 'ClusterFirstWithHostNet', priorityClassName: 'system-node-critical', nodeSelector: { 'kubernetes.io/os': 'linux' }, tolerations: [{ operator: 'Exists' }] },
        );
        assert.equal(ds.spec.updateStrategy.type, 'RollingUpdate');
        for (const [k, v] of Object.entries(ds.spec.selector.matchLabels as Obj)) assert.equal(ds.spec.template.metadata.labels[k], v);
        for (const c of containers) assert.equal(c.image, opts.image, `${c.name} runs our image`);
      });

      test('privileges: capabilities for the daemon (privileged only with --privileged), Bidirectional only where privileged', () => {
        if (opts.privileged) {
          assert.deepEqual(daemon.securityContext, { privileged: true });
        } else {
          assert.deepEqual(daemon.securityContext, {
            privileged: false, allowPrivilegeEscalation: false,
            capabilities: { drop: ['ALL'], add: ['BPF', 'PERFMON', 'NET_ADMIN', 'SYS_ADMIN', 'SYS_RESOURCE'] },
          });
        }
        assert.deepEqual(installer.securityContext, {
          privileged: false, allowPrivilegeEscalation: false, runAsUser: 0, capabilities: { drop: ['ALL'], add: ['DAC_OVERRIDE'] },
        });
        assert.deepEqual(initBpffs.securityContext, { privileged: true }, 'mounts bpffs for the host');
        assert.deepEqual(pod.initContainers.map((c: Obj) => c.name), ['mount-bpffs'], 'one init container');
        for (const c of containers) {
          for (const m of c.volumeMounts as Obj[]) {
            // the API server refuses Bidirectional in an unprivileged container
            if (m.mountPropagation === 'Bidirectional') assert.equal(c.securityContext?.privileged, true, `${c.name}: ${m.name} Bidirectional needs privileged`);
          }
        }
        assert.equal(mountAt(initBpffs, '/sys/fs/bpf').mountPropagation, 'Bidirectional', 'the mount reaches the host');
        assert.equal(mountAt(daemon, '/sys/fs/bpf').mountPropagation, 'HostToContainer', 'the daemon sees it');
        assert.deepEqual(volume(mountAt(daemon, '/sys/fs/bpf').name).hostPath, { path: '/sys/fs/bpf', type: 'DirectoryOrCreate' });
        assert.equal(mountAt(daemon, '/var/run/netns').mountPropagation, 'HostToContainer', 'netns created later show up');
      });

      test('the daemon\'s settings as its parser reads them; probes on its health listener; installer status shared', () => {
        const env = envOf(daemon);
        assert.deepEqual(env.get('NODE_NAME')?.valueFrom, { fieldRef: { fieldPath: 'spec.nodeName' } });
        assert.deepEqual(env.get('NODE_IP')?.valueFrom, { fieldRef: { fieldPath: 'status.hostIP' } });
        assert.deepEqual(env.get('COLLECTOR')?.valueFrom, { configMapKeyRef: { name: cm.metadata.name, key: 'collector' } });
        for (const c of containers) {
          for (const e of (c.env ?? []) as Obj[]) {
            const ref = e.valueFrom?.configMapKeyRef as Obj | undefined;
            if (ref) assert.ok(ref.name === cm.metadata.name && (ref.optional === true || ref.key in cm.data), `${c.name} ${e.name}: key ${ref.key}`);
          }
        }
        const podEnv: Record<string, string> = { NODE_NAME: 'node-1', NODE_IP: '192.0.2.10', COLLECTOR: cm.data.collector, INT_HOST_REPORTER_LOG_LEVEL: cm.data['log-level'] };
        for (const [name, e] of env) if (typeof e.value === 'string') podEnv[name] = e.value;
        assert.equal(daemon.command[1], '/opt/int-host-reporter/int-host-reporter.cjs');
        const config = parseConfig(daemon.args, podEnv);
        assert.deepEqual(config.collectors, parseConfig(['--collector', opts.collector], {}).collectors, 'the collector reaches the daemon');
        assert.equal(config.nodeName, 'node-1');
        assert.equal(config.socketPath, JSON.parse(argOf(installer, 'plugin-config')!).socketPath, 'the plugin talks to the daemon\'s socket');
        assert.deepEqual(buildEntry(JSON.parse(argOf(installer, 'plugin-config')!)), { type: 'int-host-reporter', socketPath: config.socketPath });
        assert.equal(volume(mountAt(daemon, '/run/int-host-reporter').name).hostPath.path, '/run/int-host-reporter', 'the socket is at the same path on the host');

        assert.deepEqual(config.healthListen, { host: '127.0.0.1', port: 9880 });
        for (const [probe, path] of [['startupProbe', '/healthz'], ['livenessProbe', '/healthz'], ['readinessProbe', '/readyz']]) {
          assert.deepEqual(daemon[probe].httpGet, { host: config.healthListen!.host, port: config.healthListen!.port, path }, `${probe} on the health listener`);
        }
        assert.equal(installer.readinessProbe, undefined);

        // The status file: written by the installer, read by the daemon, in a volume both mount.
        const status = config.cniInstallerStatus!;
        assert.equal(argOf(installer, 'status-file'), status);
        const dir = status.slice(0, status.lastIndexOf('/'));
        assert.equal(mountAt(daemon, dir).name, mountAt(installer, dir).name, 'one volume for the status dir');
        assert.deepEqual(volume(mountAt(daemon, dir).name).emptyDir, { medium: 'Memory', sizeLimit: '1Mi' }, 'pod-local: no stale status of an earlier pod');

        const wl = config.watchlistConf!;
        const m = (daemon.volumeMounts as Obj[]).find((x) => wl.startsWith(x.mountPath + '/'))!;
        assert.equal(m.subPath, undefined, 'no subPath: ConfigMap updates must propagate');
        const item = (volume(m.name).configMap.items as Obj[]).find((i) => join(m.mountPath, i.path) === wl)!;
        assert.ok(parseWatchlistText(cm.data[item.key], 'configmap').length > 0, 'the sample watchlist has rules');
      });

      test('the installer: watches, on the host\'s CNI dirs, plugin from the image', () => {
        assert.deepEqual(installer.command, ['/opt/int-host-reporter/entrypoint.sh', '/opt/int-host-reporter/int-host-reporter-cni-install.cjs']);
        assert.ok((installer.args as string[]).includes('--watch'));
        assert.equal(argOf(installer, 'plugin-source'), '/opt/int-host-reporter/cni');
        for (const [flag, hostDir] of [['cni-conf-dir', opts.cniConfDir], ['cni-bin-dir', opts.cniBinDir]]) {
          const inPod = argOf(installer, flag)!;
          assert.deepEqual(volume(mountAt(installer, inPod).name).hostPath, { path: hostDir, type: 'DirectoryOrCreate' }, `--${flag} is the host's ${hostDir}`);
        }
        assert.equal(cm.data.collector, opts.collector);
      });

      test('resources: requests and limits everywhere; the heap cap reads the container\'s own memory limit', () => {
        for (const c of containers) {
          assert.ok(c.resources.requests.cpu && c.resources.requests.memory && c.resources.limits.memory, `${c.name} has requests and a memory limit`);
        }
        for (const c of [daemon, installer]) {
          assert.equal(c.command[0], '/opt/int-host-reporter/entrypoint.sh', `${c.name} starts through entrypoint.sh`);
          assert.deepEqual(envOf(c).get('MEMORY_LIMIT_BYTES')?.valueFrom, { resourceFieldRef: { resource: 'limits.memory' } }, `${c.name}: its own limit`);
        }
      });
    });
  }
});

describe('the cleanup DaemonSet (`manifests --uninstall`)', () => {
  for (const [label, opts] of [['default', DEFAULT_MANIFEST_OPTIONS], ['non-default', CUSTOM]] as const) {
    describe(`${label} rendering`, () => {
      const [cleanup, ...rest] = parseStream(renderUninstall(opts));
      const install = parseStream(renderManifests(opts)).find((o) => o.kind === 'DaemonSet')!;
      const pod = cleanup.spec.template.spec as Obj;
      const installPod = install.spec.template.spec as Obj;
      const inits = pod.initContainers as Obj[];
      const all = [...inits, ...pod.containers] as Obj[];
      const installContainer = (n: string) => [...installPod.initContainers, ...installPod.containers].find((c: Obj) => c.name === n) as Obj;
      const volume = (p: Obj, name: string) => (p.volumes as Obj[]).find((v) => v.name === name) as Obj;
      const mountAt = (c: Obj, path: string) => (c.volumeMounts as Obj[]).find((m) => m.mountPath === path || path.startsWith(`${m.mountPath}/`)) as Obj;
      const argOf = (c: Obj, flag: string) => (c.args as string[]).find((a) => a.startsWith(`--${flag}=`))?.slice(flag.length + 3);

      test('one object, and it validates against the Kubernetes OpenAPI schema', async () => {
        assert.equal(rest.length, 0);
        assert.deepEqual([cleanup.apiVersion, cleanup.kind, cleanup.metadata.name, cleanup.metadata.namespace], ['apps/v1', 'DaemonSet', CLEANUP_NAME, opts.namespace]);
        const apps = await import('kubernetes-models/apps/v1');
        assert.doesNotThrow(() => new apps.DaemonSet(cleanup).validate());
        const broken = structuredClone(cleanup);
        broken.spec.template.spec.initContainers[1].resources.limits.memory = '192 MB';
        assert.throws(() => new apps.DaemonSet(broken).validate(), /limits\/memory/, 'the validation is real');
      });

      test('in order: the installer\'s --uninstall, then the daemon\'s uninstall; then a container that only stays', () => {
        assert.deepEqual(inits.map((c) => c.name), ['cni-uninstall', 'datapath-uninstall']);
        const [cni, datapath] = inits;
        const installer = installContainer('cni-installer');
        assert.deepEqual(cni.command, installer.command, 'the installer\'s program');
        assert.deepEqual(cni.args, ['--uninstall', `--cni-conf-dir=${argOf(installer, 'cni-conf-dir')}`, `--cni-bin-dir=${argOf(installer, 'cni-bin-dir')}`,
          `--status-file=${argOf(installer, 'status-file')}`]);
        const daemon = installContainer('int-host-reporter');
        assert.deepEqual(datapath.command, [...daemon.command, 'uninstall'], 'the daemon\'s program, its uninstall command');
        assert.equal(datapath.args, undefined);
        assert.deepEqual(pod.containers.map((c: Obj) => c.name), ['cleaned']);
        assert.deepEqual(pod.containers[0].command.slice(0, 2), ['node', '-e']);
        assert.equal(pod.containers[0].volumeMounts, undefined, 'nothing of the node');
      });

      test('every mount names a volume, every volume is mounted, each the install\'s own definition', () => {
        const used = new Set<string>();
        for (const c of all) {
          const paths = ((c.volumeMounts ?? []) as Obj[]).map((m) => m.mountPath);
          assert.equal(new Set(paths).size, paths.length, `${c.name}: a path mounted twice`);
          for (const m of (c.volumeMounts ?? []) as Obj[]) {
            assert.ok(volume(pod, m.name), `${c.name}: mount ${m.name} has a volume`);
            used.add(m.name);
          }
        }
        assert.deepEqual((pod.volumes as Obj[]).map((v) => v.name).filter((n) => !used.has(n)), [], 'volumes no container mounts');
        for (const v of pod.volumes as Obj[]) assert.deepEqual(v, volume(installPod, v.name), `volume ${v.name} as the install has it`);
        // the same mounts as the install's containers that work on the same files
        const [cni, datapath] = inits;
        assert.deepEqual(cni.volumeMounts, installContainer('cni-installer').volumeMounts);
        const daemonMounts = installContainer('int-host-reporter').volumeMounts as Obj[];
        for (const m of datapath.volumeMounts as Obj[]) assert.deepEqual(m, daemonMounts.find((d) => d.name === m.name), `${m.name} as the daemon mounts it`);
      });

      test('the paths each step works on are the host\'s, through its mounts', () => {
        const [cni, datapath] = inits;
        for (const [flag, hostDir] of [['cni-conf-dir', opts.cniConfDir], ['cni-bin-dir', opts.cniBinDir]]) {
          const inPod = argOf(cni, flag)!;
          assert.deepEqual(volume(pod, mountAt(cni, inPod).name).hostPath, { path: hostDir, type: 'DirectoryOrCreate' }, `--${flag} is the host's ${hostDir}`);
        }
        assert.ok(mountAt(cni, argOf(cni, 'status-file')!), 'the status file is in a volume, not in the image');
        // The daemon's uninstall finds what the daemon made: its default pin root and its socket's dir.
        const env = new Map((datapath.env as Obj[]).map((e) => [e.name, e]));
        const daemonEnv = new Map((installContainer('int-host-reporter').env as Obj[]).map((e) => [e.name, e]));
        assert.deepEqual(env.get('INT_HOST_REPORTER_SOCKET'), daemonEnv.get('INT_HOST_REPORTER_SOCKET'));
        assert.equal(env.has('INT_HOST_REPORTER_BPFFS') || daemonEnv.has('INT_HOST_REPORTER_BPFFS'), false, 'both use the default pin root');
        const socketDir = env.get('INT_HOST_REPORTER_SOCKET')!.value.replace(/\/[^/]+$/, '');
        assert.deepEqual(volume(pod, mountAt(datapath, socketDir).name).hostPath, { path: socketDir, type: 'DirectoryOrCreate' });
        const pins = mountAt(datapath, DEFAULT_BPFFS_ROOT);
        assert.deepEqual(volume(pod, pins.name).hostPath, { path: pins.mountPath, type: 'DirectoryOrCreate' }, `${DEFAULT_BPFFS_ROOT} is the host's`);
        assert.deepEqual(env.get('MEMORY_LIMIT_BYTES')?.valueFrom, { resourceFieldRef: { resource: 'limits.memory' } });
      });

      test('privileges: each step only what it needs, the waiting container none', () => {
        const [cni, datapath] = inits;
        assert.deepEqual(cni.securityContext, installContainer('cni-installer').securityContext, 'the installer\'s');
        assert.deepEqual(datapath.securityContext, opts.privileged
          ? { privileged: true }
          : {
            privileged: false, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'], add: ['BPF', 'NET_ADMIN'] },
            seccompProfile: { type: 'Unconfined' }, // bpf(2) with CAP_BPF alone: see the manifest's comment
          });
        assert.deepEqual(pod.containers[0].securityContext, {
          privileged: false, allowPrivilegeEscalation: false, runAsUser: 65534, runAsNonRoot: true, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] },
        });
        assert.equal(pod.automountServiceAccountToken, false, 'no API token');
        assert.equal(pod.serviceAccountName, undefined);
        assert.equal(pod.hostNetwork, true, 'tc and links of the host\'s interfaces');
        assert.equal(pod.hostPID, undefined);
      });

      test('on every node the install ran on, and only once no install pod is there', () => {
        for (const k of ['nodeSelector', 'tolerations']) assert.deepEqual(pod[k], installPod[k], k);
        assert.deepEqual(pod.affinity, {
          podAntiAffinity: {
            requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: install.spec.template.metadata.labels }, topologyKey: 'kubernetes.io/hostname' }],
          },
        });
        const own = cleanup.spec.template.metadata.labels as Obj;
        assert.deepEqual(cleanup.spec.selector.matchLabels, own);
        const selects = (sel: Obj, labels: Obj) => Object.entries(sel).every(([k, v]) => labels[k] === v);
        assert.equal(selects(install.spec.selector.matchLabels, own), false, 'the install DaemonSet does not select cleanup pods');
        assert.equal(selects(pod.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector.matchLabels, own), false, 'nor the anti-affinity');
        for (const c of all) {
          assert.equal(c.image, opts.image, `${c.name} runs our image`);
          assert.ok(c.resources.requests.cpu && c.resources.requests.memory && c.resources.limits.memory, `${c.name} has requests and a memory limit`);
        }
      });
    });
  }

  test('the waiting container prints one line, stays, and exits 0 at SIGTERM', async () => {
    const c = (uninstallObjects()[0] as Obj).spec.template.spec.containers[0] as Obj;
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, c.command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise<[number | null, string | null]>((resolve) => child.once('exit', (code, sig) => resolve([code, sig])));
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(child.exitCode, null, 'still running');
    child.kill('SIGTERM');
    assert.deepEqual(await exited, [0, null], 'SIGTERM ends it at once (as PID 1 it would otherwise ignore it)');
    assert.equal(out, 'int-host-reporter: removed from this node\n');
  });
});

describe('entrypoint.sh and the init container, run', () => {
  const temps: string[] = [];
  after(() => {
    for (const t of temps) rmSync(t, { recursive: true, force: true });
  });
  const entry = join(INSTALL, 'entrypoint.sh');

  /** entrypoint.sh with a bundle that reports what node it became. */
  function run(env: Record<string, string>): Obj {
    const dir = mkdtempSync(join(tmpdir(), 'ihr-entry-'));
    temps.push(dir);
    const bundle = join(dir, 'bundle.cjs');
    writeFileSync(bundle, "console.log(JSON.stringify({ pid: process.pid, ppid: process.ppid, execArgv: process.execArgv, argv: process.argv.slice(2), heapMiB: require('v8').getHeapStatistics().heap_size_limit / 1048576 }))");
    const dirOfNode = process.execPath.slice(0, process.execPath.lastIndexOf('/'));
    const r = spawnSync(entry, [bundle, '--log-level', 'a b'], { env: { PATH: `${dirOfNode}:/usr/bin:/bin`, ...env }, encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as Obj;
  }

  test('the old space gets 3/4 of the memory limit; node replaces the shell; arguments unchanged', () => {
    const r = run({ MEMORY_LIMIT_BYTES: String(512 * 1048576) });
    assert.deepEqual(r.execArgv, ['--max-old-space-size=384']);
    assert.deepEqual(r.argv, ['--log-level', 'a b']);
    assert.ok(r.heapMiB >= 384 && r.heapMiB < 512, `V8's heap limit ${r.heapMiB} MiB is below the 512 MiB limit`);
    assert.equal(r.ppid, process.pid, 'exec: node is the process the runtime started');
  });

  test('no limit, or one that is not a number: node\'s default; a tiny limit: 32 MiB', () => {
    assert.deepEqual(run({}).execArgv, []);
    assert.deepEqual(run({ MEMORY_LIMIT_BYTES: '512Mi' }).execArgv, []);
    assert.deepEqual(run({ MEMORY_LIMIT_BYTES: String(16 * 1048576) }).execArgv, ['--max-old-space-size=32']);
  });

  test('mount-bpffs (the init container\'s command) mounts bpffs only where there is none', () => {
    assert.ok(existsSync(DAEMON_BUNDLE), `${DAEMON_BUNDLE} is missing: run node build.mjs bundle`);
    const init = (manifestObjects().find((o) => o.kind === 'DaemonSet') as Obj).spec.template.spec.initContainers[0] as Obj;
    assert.deepEqual(init.command, ['node', '/opt/int-host-reporter/int-host-reporter.cjs', 'mount-bpffs', '/sys/fs/bpf']);
    const cmd = [process.execPath, DAEMON_BUNDLE, ...init.command.slice(2)].map((a: string) => `'${a}'`).join(' ');
    const fsType = "stat -f -c %T /sys/fs/bpf; grep -c ' /sys/fs/bpf ' /proc/self/mounts";
    // In a mount namespace of its own (private propagation): nothing reaches the host's mounts.
    const script = [
      'set -e', fsType, cmd, fsType, // the host has a bpffs: nothing mounted on top
      'mount -t tmpfs ihr-test-no-bpffs /sys/fs/bpf', fsType, cmd, fsType, // none: one mounted
    ].join('\n');
    const r = spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.error, undefined, 'unshare runs (Debian package util-linux)');
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines[0], 'bpf_fs', 'this host has bpffs on /sys/fs/bpf (the test needs it)');
    const before = Number(lines[1]);
    assert.deepEqual(lines, ['bpf_fs', String(before), 'bpffs on /sys/fs/bpf', 'bpf_fs', String(before),
      'tmpfs', String(before + 1), 'bpffs on /sys/fs/bpf', 'bpf_fs', String(before + 2)]);
  });
});
