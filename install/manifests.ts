// The Kubernetes objects that deploy int-host-reporter, rendered from a few options: what
// `int-host-reporter manifests` prints, and (with the defaults) what install/*.yaml hold; and the
// cleanup DaemonSet that removes it from the nodes (`manifests --uninstall`, install/uninstall.yaml).
// The reasons for each privilege are written into the YAML as comments, next to the field.
import { Document, isMap, isScalar, type YAMLMap } from 'yaml';
import { DEFAULT_SOCKET_PATH } from '../protocol/endpoints';
import { DEFAULT_CNI_BIN_DIR, DEFAULT_CNI_CONF_DIR, DEFAULT_PLUGIN_SOURCE } from './cni-installer';

export interface ManifestOptions {
  namespace: string;
  image: string;
  /** HOST:PORT of the INT collector, into the ConfigMap */
  collector: string;
  /** the host's CNI dirs (the containers see them at /host/...) */
  cniBinDir: string;
  cniConfDir: string;
  /** the daemon privileged instead of its capabilities (kernels before 5.8 have no CAP_BPF/CAP_PERFMON) */
  privileged: boolean;
}

export const DEFAULT_MANIFEST_OPTIONS: Readonly<ManifestOptions> = {
  namespace: 'kube-system',
  image: 'int-host-reporter:0.1.0',
  collector: 'collector.example.net:32766',
  cniBinDir: DEFAULT_CNI_BIN_DIR,
  cniConfDir: DEFAULT_CNI_CONF_DIR,
  privileged: false,
};

const NAME = 'int-host-reporter';
const LABELS = { 'app.kubernetes.io/name': NAME };
/** Where the image keeps our files (install/Containerfile). */
const IMAGE_DIR = '/opt/int-host-reporter';
const ENTRYPOINT = `${IMAGE_DIR}/entrypoint.sh`;
export const HEALTH_PORT = 9880;
const RUN_DIR = '/run/int-host-reporter';
/** Pod-local (emptyDir): a new pod never reads a "chained" left by the previous one. */
const STATUS_DIR = '/run/int-host-reporter-status';
export const STATUS_FILE = `${STATUS_DIR}/cni-installer.json`;
const HOST_CNI_CONF = '/host/etc/cni/net.d';
const HOST_CNI_BIN = '/host/opt/cni/bin';
const WATCHLIST_DIR = '/etc/int-host-reporter/watchlist';

type Obj = Record<string, unknown>;
/** A comment before the key at `path` (keys and sequence indexes from the document's root). */
type Note = { path: (string | number)[]; text: string };

interface Rendered {
  file: 'rbac.yaml' | 'configmap.yaml' | 'daemonset.yaml' | 'uninstall.yaml';
  object: Obj;
  header?: string;
  notes?: Note[];
}

function meta(o: ManifestOptions, namespaced = true): Obj {
  return { name: NAME, ...(namespaced ? { namespace: o.namespace } : {}), labels: { ...LABELS } };
}

function namespace(o: ManifestOptions): Rendered {
  return { file: 'rbac.yaml', object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: o.namespace, labels: { ...LABELS } } } };
}

function rbac(o: ManifestOptions): Rendered[] {
  return [
    {
      file: 'rbac.yaml',
      object: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta(o) },
      header: [
        ' The daemon reads the pods scheduled on its node (LIST + WATCH /api/v1/pods with fieldSelector',
        ' spec.nodeName=<node>) to name the pods behind the veths it instruments. Nothing else: no writes, no',
        ' secrets, no nodes. The CNI installer uses no API at all.',
      ].join('\n'),
    },
    {
      file: 'rbac.yaml',
      object: {
        apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: meta(o, false),
        rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] }],
      },
    },
    {
      file: 'rbac.yaml',
      object: {
        apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: meta(o, false),
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: NAME },
        subjects: [{ kind: 'ServiceAccount', name: NAME, namespace: o.namespace }],
      },
    },
  ];
}

const SAMPLE_WATCHLIST = [
  'rules:',
  '  - protocol: "TCP"',
  '    src-addr: "10.0.0.0/8"',
  '    dst-addr: "10.0.0.0/8"',
  '  - protocol: "UDP"',
  '    src-addr: "10.0.0.0/8"',
  '    dst-addr: "10.0.0.0/8"',
  '',
].join('\n');

function configMap(o: ManifestOptions): Rendered {
  return {
    file: 'configmap.yaml',
    object: {
      apiVersion: 'v1', kind: 'ConfigMap', metadata: meta(o),
      data: { collector: o.collector, 'log-level': 'info', 'watchlist.yaml': SAMPLE_WATCHLIST },
    },
    header: [
      ' Settings of int-host-reporter. "collector" and the optional "log-level" and "data-interface" (the',
      ' node\'s data interface; default: the interface of the default route) reach the daemon as environment',
      ' variables, read at start: restart the pods after changing them. "watchlist.yaml" is mounted as a file',
      ' in a directory (no subPath), so the kubelet updates it in place and the daemon, which follows the',
      ' file, applies a new watchlist without a restart. Its format is the reference\'s.',
    ].join('\n'),
    notes: [{ path: ['data', 'collector'], text: ' HOST:PORT of the INT collector (UDP; port 32766 when omitted). Several: comma-separated.' }],
  };
}

/** The container's own memory limit in bytes, for entrypoint.sh's heap cap. */
const memoryLimitEnv = () => ({ name: 'MEMORY_LIMIT_BYTES', valueFrom: { resourceFieldRef: { resource: 'limits.memory' } } });

const DAEMON_BUNDLE = `${IMAGE_DIR}/int-host-reporter.cjs`;
const INSTALLER_BUNDLE = `${IMAGE_DIR}/int-host-reporter-cni-install.cjs`;

// Volumes and mounts come from these factories, for the DaemonSet and the cleanup DaemonSet alike,
// and each call makes new objects: the YAML writer turns an object met twice into an anchor.
const hostDir = (name: string, path: string) => ({ name, hostPath: { path, type: 'DirectoryOrCreate' } });
const VOLUMES = {
  bpffs: () => hostDir('bpffs', '/sys/fs/bpf'),
  run: () => hostDir('run', RUN_DIR),
  netns: () => hostDir('netns', '/var/run/netns'),
  cniConf: (o: ManifestOptions) => hostDir('cni-conf', o.cniConfDir),
  cniBin: (o: ManifestOptions) => hostDir('cni-bin', o.cniBinDir),
  installerStatus: () => ({ name: 'installer-status', emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } }),
  watchlist: () => ({ name: 'watchlist', configMap: { name: NAME, items: [{ key: 'watchlist.yaml', path: 'watchlist.yaml' }] } }),
};
const MOUNTS = {
  bpffs: () => ({ name: 'bpffs', mountPath: '/sys/fs/bpf', mountPropagation: 'HostToContainer' }),
  run: () => ({ name: 'run', mountPath: RUN_DIR }),
  cniConf: () => ({ name: 'cni-conf', mountPath: HOST_CNI_CONF }),
  cniBin: () => ({ name: 'cni-bin', mountPath: HOST_CNI_BIN }),
  installerStatus: (readOnly = false) => ({ name: 'installer-status', mountPath: STATUS_DIR, ...(readOnly ? { readOnly } : {}) }),
};
/** The installer's: root, to write root-owned files in the host's CNI dirs, with DAC_OVERRIDE only. */
const installerSecurity = () => ({
  privileged: false,
  allowPrivilegeEscalation: false,
  runAsUser: 0,
  capabilities: { drop: ['ALL'], add: ['DAC_OVERRIDE'] },
});
const installerDirArgs = () => [`--cni-conf-dir=${HOST_CNI_CONF}`, `--cni-bin-dir=${HOST_CNI_BIN}`];

function daemonSet(o: ManifestOptions): Rendered {
  const optionalFromConfig = (name: string, key: string) => ({ name, valueFrom: { configMapKeyRef: { name: NAME, key, optional: true } } });
  const daemonSecurity = o.privileged
    ? { privileged: true }
    : {
      privileged: false,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'], add: ['BPF', 'PERFMON', 'NET_ADMIN', 'SYS_ADMIN', 'SYS_RESOURCE'] },
    };
  const daemon = {
    name: NAME,
    image: o.image,
    imagePullPolicy: 'IfNotPresent',
    command: [ENTRYPOINT, DAEMON_BUNDLE],
    args: [`--health-listen=127.0.0.1:${HEALTH_PORT}`, `--cni-installer-status=${STATUS_FILE}`],
    env: [
      { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
      { name: 'NODE_IP', valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } } },
      { name: 'COLLECTOR', valueFrom: { configMapKeyRef: { name: NAME, key: 'collector' } } },
      optionalFromConfig('DATA_INTERFACE', 'data-interface'),
      optionalFromConfig('INT_HOST_REPORTER_LOG_LEVEL', 'log-level'),
      { name: 'INT_HOST_REPORTER_WATCHLIST_CONF', value: `${WATCHLIST_DIR}/watchlist.yaml` },
      { name: 'INT_HOST_REPORTER_SOCKET', value: DEFAULT_SOCKET_PATH },
      memoryLimitEnv(),
    ],
    securityContext: daemonSecurity,
    startupProbe: { httpGet: { host: '127.0.0.1', port: HEALTH_PORT, path: '/healthz' }, periodSeconds: 2, failureThreshold: 30 },
    livenessProbe: { httpGet: { host: '127.0.0.1', port: HEALTH_PORT, path: '/healthz' }, periodSeconds: 10, timeoutSeconds: 5, failureThreshold: 3 },
    readinessProbe: { httpGet: { host: '127.0.0.1', port: HEALTH_PORT, path: '/readyz' }, periodSeconds: 5, timeoutSeconds: 5, failureThreshold: 2 },
    resources: { requests: { cpu: '100m', memory: '192Mi' }, limits: { cpu: '1', memory: '512Mi' } },
    volumeMounts: [
      MOUNTS.bpffs(),
      MOUNTS.run(),
      { name: 'netns', mountPath: '/var/run/netns', mountPropagation: 'HostToContainer' },
      MOUNTS.installerStatus(true),
      { name: 'watchlist', mountPath: WATCHLIST_DIR, readOnly: true },
    ],
  };
  const installer = {
    name: 'cni-installer',
    image: o.image,
    imagePullPolicy: 'IfNotPresent',
    command: [ENTRYPOINT, INSTALLER_BUNDLE],
    args: [
      '--watch',
      ...installerDirArgs(),
      `--plugin-source=${DEFAULT_PLUGIN_SOURCE}`,
      `--plugin-config=${JSON.stringify({ socketPath: DEFAULT_SOCKET_PATH })}`,
      `--status-file=${STATUS_FILE}`,
    ],
    env: [memoryLimitEnv()],
    securityContext: installerSecurity(),
    resources: { requests: { cpu: '10m', memory: '96Mi' }, limits: { cpu: '500m', memory: '256Mi' } },
    volumeMounts: [MOUNTS.cniConf(), MOUNTS.cniBin(), MOUNTS.installerStatus()],
  };
  const mountBpffs = {
    name: 'mount-bpffs',
    image: o.image,
    imagePullPolicy: 'IfNotPresent',
    command: ['node', DAEMON_BUNDLE, 'mount-bpffs', '/sys/fs/bpf'],
    securityContext: { privileged: true },
    resources: { requests: { cpu: '10m', memory: '128Mi' }, limits: { cpu: '500m', memory: '192Mi' } },
    volumeMounts: [{ name: 'bpffs', mountPath: '/sys/fs/bpf', mountPropagation: 'Bidirectional' }],
  };
  const pod = ['spec', 'template', 'spec'];
  return {
    file: 'daemonset.yaml',
    object: {
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: meta(o),
      spec: {
        selector: { matchLabels: { ...LABELS } },
        updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } },
        template: {
          metadata: { labels: { ...LABELS } },
          spec: {
            serviceAccountName: NAME,
            hostNetwork: true,
            dnsPolicy: 'ClusterFirstWithHostNet',
            hostPID: false,
            priorityClassName: 'system-node-critical',
            nodeSelector: { 'kubernetes.io/os': 'linux' },
            tolerations: [{ operator: 'Exists' }],
            terminationGracePeriodSeconds: 30,
            initContainers: [mountBpffs],
            containers: [daemon, installer],
            volumes: [
              VOLUMES.bpffs(), VOLUMES.run(), VOLUMES.netns(), VOLUMES.cniConf(o), VOLUMES.cniBin(o), VOLUMES.installerStatus(), VOLUMES.watchlist(),
            ],
          },
        },
      },
    },
    header: [
      ' int-host-reporter on every Linux node: one pod per node.',
      '  - init container "mount-bpffs": mounts a bpf filesystem on the host\'s /sys/fs/bpf if it has none, so',
      '    our pinned programs and links outlive the pod and the CNI plugin on the host finds them.',
      '  - container "int-host-reporter": the daemon, with capabilities instead of privileged.',
      '  - container "cni-installer": copies the plugin into the host\'s CNI bin dir, runs its preflight there,',
      '    and only then chains it into the network config the runtime uses; keeps the entry there when the',
      '    primary CNI rewrites its file. It reports its state in a status file that the daemon\'s /readyz reads.',
      ' Stopping or upgrading the pod leaves the plugin and its entry in place: the plugin is fail-open, and',
      ' pods created during a rolling upgrade keep their telemetry. Removing it for good: see the README.',
    ].join('\n'),
    notes: [
      { path: [...pod, 'hostNetwork'], text: ' The node\'s interfaces and the pods\' host veths are in the host network namespace.' },
      {
        path: [...pod, 'hostPID'],
        text: [
          ' The one netns path the daemon opens is an attachment\'s CNI_NETNS, when it repairs an attachment whose',
          ' host veth it does not know (open + setns in the addon\'s netlink helper). The kubelet\'s runtimes hand out',
          ' /var/run/netns/... paths (mounted below); /proc/<pid>/ns/net paths (containerd\'s ctr) are not used by',
          ' the kubelet, and the plugin resolves the host veth itself. So no hostPID: it would show every host',
          ' process to a container that holds CAP_SYS_ADMIN.',
        ].join('\n'),
      },
      { path: [...pod, 'priorityClassName'], text: ' Evicted last: without it, pods created on the node lose their telemetry.' },
      {
        path: [...pod, 'initContainers', 0, 'securityContext'],
        text: ' mount(2) of a bpf filesystem, propagated to the host (Bidirectional needs privileged). It exits at once.',
      },
      { path: [...pod, 'initContainers', 0, 'resources'], text: ' node loading the daemon bundle peaks near 100 MiB.' },
      {
        path: [...pod, 'containers', 0, 'command'],
        text: ' entrypoint.sh starts node with --max-old-space-size at 3/4 of MEMORY_LIMIT_BYTES (the limit below).',
      },
      {
        path: [...pod, 'containers', 0, 'securityContext'],
        text: o.privileged
          ? ' --privileged: for kernels without CAP_BPF and CAP_PERFMON (before 5.8).'
          : [
            ' BPF: load programs and maps, pin them, make links. PERFMON: the perf event buffer and the kfree_skb',
            ' tracepoint. NET_ADMIN: TCX links and tc filters on the host veths and data interfaces, rtnetlink.',
            ' SYS_ADMIN, for two calls: BPF_PROG_GET_FD_BY_ID/BPF_LINK_GET_FD_BY_ID (the kernel asks CAP_SYS_ADMIN;',
            ' used to name the programs on a hook, to tell ours from others\'), and setns(CLONE_NEWNET) into a pod\'s',
            ' netns when an attachment is repaired (the addon\'s netlink OpenRtnl). SYS_RESOURCE: libbpf raises',
            ' RLIMIT_MEMLOCK on kernels before 5.11 (no memcg accounting of BPF memory there). The kernel lets',
            ' SYS_ADMIN stand in for PERFMON and for NET_ADMIN\'s BPF checks; both are listed for what they are',
            ' used for, and classic tc (kernels before 6.6) goes through rtnetlink, which wants NET_ADMIN itself.',
          ].join('\n'),
      },
      {
        path: [...pod, 'containers', 0, 'startupProbe'],
        text: ' The probes are httpGet on the daemon\'s loopback health listener (--health-listen): no process per probe.',
      },
      {
        path: [...pod, 'containers', 0, 'readinessProbe'],
        text: ' 200 only when the datapath is loaded, the data interfaces attached, the installer says "chained" and\n the pod list is synced; the body names each check.',
      },
      {
        path: [...pod, 'containers', 0, 'resources'],
        text: ' Measured: an idle daemon holds about 130 MiB (node and the bundle); the limits bound a runaway one.',
      },
      {
        path: [...pod, 'containers', 0, 'volumeMounts', 0],
        text: ' Pins are made here; the host sees them (same bpffs). HostToContainer: a bpffs mounted by the init\n container after the host booted shows up.',
      },
      { path: [...pod, 'containers', 0, 'volumeMounts', 1], text: ' The API socket (the plugin on the host connects to it), spool and state.' },
      { path: [...pod, 'containers', 0, 'volumeMounts', 2], text: ' Named netns the runtime creates after we started.' },
      {
        path: [...pod, 'containers', 1, 'resources'],
        text: ' The preflight runs the installed plugin (its own node) inside this container\'s memory limit.',
      },
      {
        path: [...pod, 'containers', 1, 'securityContext'],
        text: ' Writes root-owned files in the host\'s CNI dirs (DAC_OVERRIDE: files of the primary CNI may belong to\n another user or be read-only) and runs the installed plugin\'s --preflight, which loads nothing into the kernel.',
      },
    ],
  };
}

export const CLEANUP_NAME = `${NAME}-cleanup`;
const CLEANUP_LABELS = { 'app.kubernetes.io/name': CLEANUP_NAME };

/**
 * The cleanup pod's main container: prints one line and stays Running until it is deleted. It
 * handles SIGTERM itself: as PID 1 with no handler, node would ignore it until the grace period ends.
 */
const CLEANED_SCRIPT = [
  "process.on('SIGTERM', () => process.exit(0));",
  "console.log('int-host-reporter: removed from this node');",
  'setInterval(() => {}, 1 << 30);',
].join(' ');

/**
 * The uninstall: a DaemonSet whose init containers remove, on each node and in this order, our
 * conflist entry and plugin files (the installer's --uninstall), then our programs, links, pins
 * and state (the daemon's `uninstall`). Its main container only stays Running, so that
 * `kubectl rollout status` says when every node is clean.
 */
function cleanupDaemonSet(o: ManifestOptions): Rendered {
  const cniUninstall = {
    name: 'cni-uninstall',
    image: o.image,
    imagePullPolicy: 'IfNotPresent',
    command: [ENTRYPOINT, INSTALLER_BUNDLE],
    args: ['--uninstall', ...installerDirArgs(), `--status-file=${STATUS_FILE}`],
    env: [memoryLimitEnv()],
    securityContext: installerSecurity(),
    resources: { requests: { cpu: '10m', memory: '64Mi' }, limits: { cpu: '500m', memory: '128Mi' } },
    volumeMounts: [MOUNTS.cniConf(), MOUNTS.cniBin(), MOUNTS.installerStatus()],
  };
  const datapathUninstall = {
    name: 'datapath-uninstall',
    image: o.image,
    imagePullPolicy: 'IfNotPresent',
    command: [ENTRYPOINT, DAEMON_BUNDLE, 'uninstall'],
    env: [{ name: 'INT_HOST_REPORTER_SOCKET', value: DEFAULT_SOCKET_PATH }, memoryLimitEnv()],
    // a kernel without CAP_BPF (before 5.8), where the daemon ran privileged: a runtime refuses the name
    securityContext: o.privileged
      ? { privileged: true }
      : {
        privileged: false,
        allowPrivilegeEscalation: false,
        capabilities: { drop: ['ALL'], add: ['BPF', 'NET_ADMIN'] },
        seccompProfile: { type: 'Unconfined' },
      },
    resources: { requests: { cpu: '10m', memory: '128Mi' }, limits: { cpu: '500m', memory: '192Mi' } },
    volumeMounts: [MOUNTS.bpffs(), MOUNTS.run()],
  };
  const cleaned = {
    name: 'cleaned',
    image: o.image,
    imagePullPolicy: 'IfNotPresent',
    command: ['node', '-e', CLEANED_SCRIPT],
    securityContext: {
      privileged: false,
      allowPrivilegeEscalation: false,
      runAsUser: 65534,
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    },
    resources: { requests: { cpu: '1m', memory: '48Mi' }, limits: { cpu: '100m', memory: '96Mi' } },
  };
  const pod = ['spec', 'template', 'spec'];
  const ns = o.namespace;
  return {
    file: 'uninstall.yaml',
    object: {
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: { name: CLEANUP_NAME, namespace: ns, labels: { ...CLEANUP_LABELS } },
      spec: {
        selector: { matchLabels: { ...CLEANUP_LABELS } },
        template: {
          metadata: { labels: { ...CLEANUP_LABELS } },
          spec: {
            hostNetwork: true,
            automountServiceAccountToken: false,
            nodeSelector: { 'kubernetes.io/os': 'linux' },
            tolerations: [{ operator: 'Exists' }],
            affinity: {
              podAntiAffinity: {
                requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: { ...LABELS } }, topologyKey: 'kubernetes.io/hostname' }],
              },
            },
            terminationGracePeriodSeconds: 10,
            initContainers: [cniUninstall, datapathUninstall],
            containers: [cleaned],
            volumes: [VOLUMES.cniConf(o), VOLUMES.cniBin(o), VOLUMES.installerStatus(), VOLUMES.bpffs(), VOLUMES.run()],
          },
        },
      },
    },
    header: [
      ' Removes int-host-reporter from every Linux node. On each node, in this order: our entry leaves the CNI',
      ' network config (new pods no longer run our plugin), our plugin files leave the CNI bin dir, then our',
      ' programs leave the pods\' veths and the data interfaces, and our pins and state go. Running pods keep',
      ' their networking: only our telemetry programs are taken off their interfaces. The steps:',
      `   kubectl -n ${ns} delete daemonset ${NAME}`,
      '   int-host-reporter manifests --uninstall [the options of the install] | kubectl apply -f -',
      `   kubectl -n ${ns} rollout status daemonset ${CLEANUP_NAME}     (done: every node is clean)`,
      '   int-host-reporter manifests --uninstall [...] | kubectl delete -f -',
      '   int-host-reporter manifests [...] | kubectl delete --ignore-not-found -f -',
      ' (or the same with install/uninstall.yaml and the other files of install/ for the default options).',
    ].join('\n'),
    notes: [
      {
        path: [...pod, 'hostNetwork'],
        text: ' Our tc filters and links are on the node\'s interfaces: rtnetlink must talk to the host network namespace.',
      },
      { path: [...pod, 'automountServiceAccountToken'], text: ' No Kubernetes API call: no token.' },
      {
        path: [...pod, 'affinity'],
        text: [
          ' Not on a node where an int-host-reporter pod still runs or stops: its installer would put our entry back',
          ' and its daemon our programs. The pod stays Pending there until that pod is gone.',
        ].join('\n'),
      },
      {
        path: [...pod, 'initContainers', 0],
        text: ' First, so no new pod is handed to the plugin: our entry out of every conflist, then the plugin files.',
      },
      { path: [...pod, 'initContainers', 0, 'securityContext'], text: ' The installer\'s own privileges (see daemonset.yaml).' },
      { path: [...pod, 'initContainers', 0, 'resources'], text: ' Measured: about 50 MiB (no preflight here).' },
      {
        path: [...pod, 'initContainers', 1],
        text: ' Then our programs off the veths and data interfaces, our pins, the daemon\'s state and spool.',
      },
      {
        path: [...pod, 'initContainers', 1, 'securityContext'],
        text: o.privileged
          ? ' --privileged: for kernels without CAP_BPF (before 5.8), as the daemon.'
          : [
            ' BPF: open our pins and detach our links (kernels before 6.5 refuse every bpf() call without it).',
            ' NET_ADMIN: delete our tc filters and the clsact qdisc we made (kernels before 6.6, classic tc).',
            ' Nothing is loaded and no program is named by id, so neither SYS_ADMIN nor PERFMON. Unconfined: the',
            ' default seccomp profile of some runtimes (podman 4.3\'s, measured) allows bpf(2) only with SYS_ADMIN;',
            ' no seccomp filter is also what the kubelet gives a container unless told otherwise.',
          ].join('\n'),
      },
      { path: [...pod, 'initContainers', 1, 'resources'], text: ' Measured: about 100 MiB (node loading the daemon bundle).' },
      {
        path: [...pod, 'containers', 0],
        text: ' Only stays Running (Ready), so `kubectl rollout status` reports every node done. No privileges.',
      },
      { path: [...pod, 'containers', 0, 'resources'], text: ' Measured: about 44 MiB (node itself).' },
    ],
  };
}

/** Every object, in the order `kubectl apply` needs (namespace first, the DaemonSet last). */
function renderAll(o: ManifestOptions): Rendered[] {
  return [...(o.namespace === 'kube-system' ? [] : [namespace(o)]), ...rbac(o), configMap(o), daemonSet(o)];
}

export function manifestObjects(o: ManifestOptions = DEFAULT_MANIFEST_OPTIONS): Obj[] {
  return renderAll(o).map((r) => r.object);
}

/** What `int-host-reporter manifests --uninstall` prints: the cleanup DaemonSet, in the install's namespace. */
export function uninstallObjects(o: ManifestOptions = DEFAULT_MANIFEST_OPTIONS): Obj[] {
  return [cleanupDaemonSet(o).object];
}

function keyOf(node: unknown): unknown {
  return isScalar(node) ? node.value : node;
}

function toYaml(r: Rendered): string {
  const doc = new Document(r.object);
  if (r.header) doc.commentBefore = r.header;
  for (const n of r.notes ?? []) {
    const parentPath = n.path.slice(0, -1);
    const last = n.path[n.path.length - 1];
    const parent = (parentPath.length ? doc.getIn(parentPath, true) : doc.contents) as unknown;
    if (typeof last === 'number') {
      const item = (parent as { items: { commentBefore?: string }[] }).items[last];
      if (!item) throw new Error(`manifests: no item at ${n.path.join('.')}`);
      item.commentBefore = n.text;
    } else {
      if (!isMap(parent)) throw new Error(`manifests: no mapping at ${parentPath.join('.')}`);
      const pair = (parent as YAMLMap).items.find((p) => keyOf(p.key) === last);
      if (!pair || !isScalar(pair.key)) throw new Error(`manifests: no key ${n.path.join('.')}`);
      pair.key.commentBefore = n.text;
    }
  }
  return doc.toString({ lineWidth: 0 });
}

/** All objects as one multi-document YAML stream (what `int-host-reporter manifests` prints). */
export function renderManifests(o: ManifestOptions = DEFAULT_MANIFEST_OPTIONS): string {
  return renderAll(o).map(toYaml).join('---\n');
}

/** The cleanup DaemonSet as YAML (what `int-host-reporter manifests --uninstall` prints). */
export function renderUninstall(o: ManifestOptions = DEFAULT_MANIFEST_OPTIONS): string {
  return toYaml(cleanupDaemonSet(o));
}

/** The objects grouped into install/'s files (file name to text). */
export function renderFiles(o: ManifestOptions = DEFAULT_MANIFEST_OPTIONS): Map<string, string> {
  const out = new Map<string, string>();
  for (const r of [...renderAll(o), cleanupDaemonSet(o)]) {
    const prev = out.get(r.file);
    out.set(r.file, prev === undefined ? toYaml(r) : `${prev}---\n${toYaml(r)}`);
  }
  return out;
}
