// Every setting once: its flag (also its key in the config file), its environment variables, its
// default and how text becomes its value. parse.ts and usage.ts are driven by this table.
import { hostname } from 'node:os';
import { DEFAULT_BPFFS_ROOT } from '../../bpf/pins';
import { DEFAULT_SOCKET_PATH } from '../../protocol/endpoints';
import { ValueError, parseCollectors, parseDecimal, parseEndpoint, parseSwitchId, type Endpoint } from './values';
import type { LOG_LEVELS } from './schema';

export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Config {
  /** the --config file read, if any */
  configFile?: string;
  /** where reports go, at least one */
  collectors: Endpoint[];
  /** INT switch id; undefined: the daemon derives it from the node's IPv4 address */
  switchId?: number;
  dataInterface?: string;
  /** watchlist file; undefined: no rules, so nothing is reported (as in the reference) */
  watchlistConf?: string;
  logLevel: LogLevel;
  socketPath: string;
  bpffsPath: string;
  reportIntervalMs: number;
  /** how often the attachments are checked against the kernel, the spool and the pod list */
  reconcileIntervalMs: number;
  /** hop-latency bucket width of the kernel flow filter (a power of two) */
  latencyQuantumNs: number;
  /** packet bytes sampled into each event */
  sampleBytes: number;
  nodeName: string;
  /** Prometheus endpoint; undefined: off. host undefined: every local address */
  metricsListen?: Endpoint;
  /** /healthz and /readyz over TCP (for kubelet probes); undefined: off. host defaults to 127.0.0.1 */
  healthListen?: Endpoint;
  /** the CNI installer's status file, read by /readyz; undefined: that check is skipped */
  cniInstallerStatus?: string;
  /** the reference's --cni; accepted for compatibility, not needed by a chained plugin */
  cni?: string;
  /** how drops are found: the kfree_skb tracepoint, or the reference's aging of unmatched packets */
  dropDetection: 'auto' | 'tracepoint' | 'aging' | 'off';
}

export type ConfigKey = keyof Config;

export interface Field {
  key: ConfigKey;
  /** long flag name, without dashes; also the key in the config file */
  flag: string;
  short?: string;
  /** environment variables, strongest first */
  env: readonly string[];
  /** environment variables weaker than the config file (derived defaults, e.g. NODE_IP) */
  fallbackEnv?: readonly string[];
  /** a flag that may be given more than once, its values adding up */
  repeatable?: boolean;
  valueName: string;
  help: string;
  /** text (a flag, a variable, a string in the file) to a value; throws ValueError */
  fromText: (text: string) => unknown;
  /** a non-string value from the config file to a value */
  fromFile?: (value: unknown) => unknown;
  default?: () => unknown;
}

const text = (t: string): string => t;
const integer = { fromText: parseDecimal, fromFile: (v: unknown) => v };

export const FIELDS: readonly Field[] = [
  {
    key: 'collectors',
    flag: 'collector',
    env: ['INT_HOST_REPORTER_COLLECTOR', 'COLLECTOR'],
    repeatable: true,
    valueName: 'HOST:PORT',
    help: 'INT collector to send reports to (UDP; port 32766 if omitted). Repeat or comma-separate for several.',
    fromText: parseCollectors,
  },
  {
    key: 'switchId',
    flag: 'switch-id',
    env: ['INT_HOST_REPORTER_SWITCH_ID'],
    fallbackEnv: ['NODE_IP'],
    valueName: 'ID|IPv4',
    help: 'INT switch id: a decimal u32, or an IPv4 address read as a big-endian u32. Default: $NODE_IP, else the node address.',
    fromText: parseSwitchId,
    fromFile: (v) => v,
  },
  {
    key: 'dataInterface',
    flag: 'data-interface',
    env: ['INT_HOST_REPORTER_DATA_INTERFACE', 'DATA_INTERFACE'],
    valueName: 'IFNAME',
    help: "The node's data interface (instrumented too).",
    fromText: text,
  },
  {
    key: 'watchlistConf',
    flag: 'watchlist-conf',
    short: 'f',
    env: ['INT_HOST_REPORTER_WATCHLIST_CONF'],
    valueName: 'FILE',
    help: 'Watchlist file (YAML), followed for changes. Without one nothing is reported.',
    fromText: text,
  },
  {
    key: 'logLevel',
    flag: 'log-level',
    env: ['INT_HOST_REPORTER_LOG_LEVEL'],
    valueName: 'LEVEL',
    help: 'info, debug or trace (also fatal, error, warn, silent).',
    fromText: (t) => t.trim().toLowerCase(),
    default: () => 'info',
  },
  {
    key: 'socketPath',
    flag: 'socket',
    env: ['INT_HOST_REPORTER_SOCKET'],
    valueName: 'PATH',
    help: 'Unix socket of the local API.',
    fromText: text,
    default: () => DEFAULT_SOCKET_PATH,
  },
  {
    key: 'bpffsPath',
    flag: 'bpffs',
    env: ['INT_HOST_REPORTER_BPFFS'],
    valueName: 'PATH',
    help: 'Directory in bpffs for our pinned programs, maps and links.',
    fromText: text,
    default: () => DEFAULT_BPFFS_ROOT,
  },
  {
    key: 'reportIntervalMs',
    flag: 'report-interval-ms',
    env: ['INT_HOST_REPORTER_REPORT_INTERVAL_MS'],
    valueName: 'MS',
    help: 'At most one flow report per flow and port pair in this time (0-3600000; 0 reports every packet).',
    ...integer,
    default: () => 1000,
  },
  {
    key: 'reconcileIntervalMs',
    flag: 'reconcile-interval-ms',
    env: ['INT_HOST_REPORTER_RECONCILE_INTERVAL_MS'],
    valueName: 'MS',
    help: 'Check the pod attachments (kernel, plugin spool, pod list) and repair them this often (100-3600000).',
    ...integer,
    default: () => 30_000,
  },
  {
    key: 'latencyQuantumNs',
    flag: 'latency-quantum-ns',
    env: ['INT_HOST_REPORTER_LATENCY_QUANTUM_NS'],
    valueName: 'NS',
    help: 'Also report a flow when its hop latency moves to another bucket of this width (a power of two).',
    ...integer,
    default: () => 65536,
  },
  {
    key: 'sampleBytes',
    flag: 'sample-bytes',
    env: ['INT_HOST_REPORTER_SAMPLE_BYTES'],
    valueName: 'N',
    help: 'Packet bytes copied into each report (64-256).',
    ...integer,
    default: () => 128,
  },
  {
    key: 'nodeName',
    flag: 'node-name',
    env: ['INT_HOST_REPORTER_NODE_NAME', 'NODE_NAME'],
    valueName: 'NAME',
    help: 'Kubernetes node name, for the pod watch. Default: the host name.',
    fromText: text,
    default: () => hostname(),
  },
  {
    key: 'metricsListen',
    flag: 'metrics-listen',
    env: ['INT_HOST_REPORTER_METRICS_LISTEN'],
    valueName: 'ADDR:PORT',
    help: 'Serve Prometheus metrics over TCP here (":9100" for every address). Default: off.',
    fromText: (t) => (t.trim() === 'off' ? undefined : parseEndpoint(t, undefined, true)),
  },
  {
    key: 'healthListen',
    flag: 'health-listen',
    env: ['INT_HOST_REPORTER_HEALTH_LISTEN'],
    valueName: 'ADDR:PORT',
    help: 'Serve /healthz and /readyz over TCP here, for probes (":9880" is 127.0.0.1:9880). Default: off.',
    // Loopback unless an address is named: the probes come from the kubelet on this host.
    fromText: (t) => (t.trim() === 'off' ? undefined : { host: '127.0.0.1', ...parseEndpoint(t, undefined, true) }),
  },
  {
    key: 'cniInstallerStatus',
    flag: 'cni-installer-status',
    env: ['INT_HOST_REPORTER_CNI_INSTALLER_STATUS'],
    valueName: 'FILE',
    help: "The CNI installer's status file: /readyz is ready only while it says \"chained\". Default: not checked.",
    fromText: text,
  },
  {
    key: 'dropDetection',
    flag: 'drop-detection',
    env: ['INT_HOST_REPORTER_DROP_DETECTION'],
    valueName: 'HOW',
    help: 'tracepoint (kernel drop reasons), aging (packets seen at ingress and never at egress within 2 s, as the reference; counts locally delivered packets too), auto (tracepoint, else aging) or off. (default auto)',
    fromText: (t) => {
      if (!['auto', 'tracepoint', 'aging', 'off'].includes(t)) throw new ValueError(`"${t}" is not one of auto, tracepoint, aging, off`);
      return t;
    },
    default: () => 'auto',
  },
  {
    key: 'cni',
    flag: 'cni',
    short: 'c',
    env: ['CNI'],
    valueName: 'NAME',
    help: "Accepted for compatibility with the reference's deployments; ignored (any CNI works).",
    fromText: text,
  },
];

/** --config: read before everything else, so it is not a field of the file itself. */
export const CONFIG_FLAG = { flag: 'config', env: ['INT_HOST_REPORTER_CONFIG'], valueName: 'FILE' } as const;
