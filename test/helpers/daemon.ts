// The daemon under test, run from its bundle as a real process, with the built-in collector in
// this process and the CNI plugin bundle run as a real CNI binary. Everything goes through the
// scope: the process is stopped by pid, its pins and files removed.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnSync } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { startCollector, type Collector } from '../../daemon/collector/collector';
import type { DecodedReport } from '../../daemon/collector/decoder';
import { callApi } from '../../daemon/cli/client';
import { testPinRoot } from './bpf';
import type { Scope, TrackedProcess } from './scope';
import type { Pod } from './netns';

const ROOT = join(__dirname, '..', '..');
export const DAEMON_BUNDLE = join(ROOT, 'dist', 'int-host-reporter.cjs');
/** The plugin as a runtime execs it: the static launcher of dist/cni, which starts its own node on the bundle. */
export const PLUGIN_BUNDLE = join(ROOT, 'dist', 'cni', 'int-host-reporter');

export class ReportSink {
  readonly reports: DecodedReport[] = [];
  constructor(readonly collector: Collector) {}

  static async start(scope: Scope): Promise<ReportSink> {
    let sink: ReportSink | undefined;
    const c = await startCollector({ listen: '127.0.0.1:0', onReport: (r) => sink!.reports.push(r) });
    sink = new ReportSink(c);
    scope.defer('close collector', () => void c.close());
    return sink;
  }

  get address(): string {
    return `127.0.0.1:${this.collector.address.port}`;
  }

  /** Reports whose inner packet is exactly this tuple (ports compared when given). */
  matching(t: { src: string; dst: string; protocol: number; srcPort?: number; dstPort?: number; kind?: 'flow' | 'drop' }): DecodedReport[] {
    return this.reports.filter((r) => {
      const i = r.inner;
      return i !== undefined && i.src === t.src && i.dst === t.dst && i.protocol === t.protocol &&
        (t.srcPort === undefined || i.srcPort === t.srcPort) && (t.dstPort === undefined || i.dstPort === t.dstPort) &&
        (t.kind === undefined || r.kind === t.kind);
    });
  }

  async waitFor(t: Parameters<ReportSink['matching']>[0], n = 1, timeoutMs = 5000): Promise<DecodedReport[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.matching(t).length < n && Date.now() < deadline) await sleep(20);
    return this.matching(t);
  }
}

export interface DaemonOptions {
  collector: string;
  dataInterface?: string;
  watchlist?: string;
  switchId?: number;
  extraArgs?: string[];
  /** existing run dir / pin root (a restart of the same daemon) */
  runDir?: string;
  pinRoot?: string;
  /** extra environment (e.g. KUBECONFIG, INT_HOST_REPORTER_RECONCILE_INTERVAL_MS), over the defaults */
  env?: Record<string, string>;
  /** a command that execs node with the daemon's arguments (e.g. setpriv limiting capabilities) */
  launcher?: string[];
}

export class DaemonProcess {
  constructor(
    readonly proc: TrackedProcess,
    readonly runDir: string,
    readonly pinRoot: string,
  ) {}

  get socket(): string {
    return join(this.runDir, 'daemon.sock');
  }

  get spoolDir(): string {
    return join(this.runDir, 'spool');
  }

  static async start(scope: Scope, o: DaemonOptions): Promise<DaemonProcess> {
    const runDir = o.runDir ?? mkdtempSync(join(tmpdir(), 'ihr-daemon-'));
    if (!o.runDir) scope.defer(`remove ${runDir}`, () => rmSync(runDir, { recursive: true, force: true }));
    const pinRoot = o.pinRoot ?? testPinRoot(scope);
    const args = [DAEMON_BUNDLE, '--collector', o.collector, '--socket', join(runDir, 'daemon.sock'), '--bpffs', pinRoot,
      '--node-name', 'test-node', '--log-level', 'info'];
    if (o.dataInterface) args.push('--data-interface', o.dataInterface);
    if (o.watchlist) args.push('-f', o.watchlist);
    if (o.switchId !== undefined) args.push('--switch-id', String(o.switchId));
    args.push(...(o.extraArgs ?? []));
    const proc = scope.spawn(null, [...(o.launcher ?? []), process.execPath, ...args], {
      env: { ...process.env, INT_HOST_REPORTER_RECONCILE_INTERVAL_MS: '300', KUBECONFIG: '', NODE_NAME: '', ...o.env },
    });
    const d = new DaemonProcess(proc, runDir, pinRoot);
    await d.waitHealthy();
    return d;
  }

  async waitHealthy(timeoutMs = 15000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const r = await callApi(this.socket, 'GET', '/healthz', undefined, 1000);
        if (r.status === 200) return;
      } catch {
        /* not yet */
      }
      const exited = await Promise.race([this.proc.exited.then(() => true), sleep(100).then(() => false)]);
      if (exited) throw new Error(`daemon exited at start: ${(await this.proc.exited).stderr}\n${this.proc.lines.join('\n')}`);
      if (Date.now() > deadline) throw new Error(`daemon not healthy after ${timeoutMs} ms:\n${this.proc.lines.join('\n')}`);
    }
  }

  async api<T = unknown>(method: string, path: string, body?: string): Promise<{ status: number; json: T }> {
    const r = await callApi(this.socket, method, path, body);
    return { status: r.status, json: (r.body ? JSON.parse(r.body) : undefined) as T };
  }

  /** SIGTERM and wait: attachments stay. */
  async stop(): Promise<void> {
    this.proc.kill();
    await this.proc.exited;
  }
}

/** A watchlist file in a temp dir (removed with the scope). */
export function watchlistFile(scope: Scope, yaml: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'ihr-wl-'));
  scope.defer(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  const p = join(dir, 'watchlist.yaml');
  writeFileSync(p, yaml);
  return p;
}

export interface CniResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the plugin like a container runtime does (env + stdin). */
export function runPlugin(command: string, env: Record<string, string>, config: object, plugin: readonly string[] = [PLUGIN_BUNDLE]): CniResult {
  const r = spawnSync(plugin[0]!, plugin.slice(1), {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', CNI_COMMAND: command, CNI_PATH: '/usr/lib/cni', ...env },
    input: JSON.stringify(config),
    encoding: 'utf8',
    timeout: 20000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** CNI ADD of a harness pod through the real plugin, as the last plugin of a chain. */
export function cniAdd(daemon: DaemonProcess, pod: Pod, containerId: string, podName: string, network = 'testnet', plugin?: readonly string[]): CniResult {
  const prevResult = prevResultOf(pod);
  return runPlugin('ADD', {
    CNI_CONTAINERID: containerId, CNI_NETNS: pod.netnsPath, CNI_IFNAME: 'eth0',
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${podName};K8S_POD_UID=uid-${podName}`,
  }, pluginConfig(daemon, network, prevResult), plugin);
}

/** The result an interface plugin before ours would pass on for a harness pod. */
export function prevResultOf(pod: Pod): object {
  return {
    cniVersion: '1.0.0',
    interfaces: [{ name: pod.hostIfname, mac: pod.hostMac }, { name: 'eth0', mac: pod.podMac, sandbox: pod.netnsPath }],
    ips: [{ address: `${pod.ipv4}/32`, interface: 1 }, { address: `${pod.ipv6}/128`, interface: 1 }],
  };
}

export function cniDel(daemon: DaemonProcess, pod: Pod | undefined, containerId: string, network = 'testnet', plugin?: readonly string[]): CniResult {
  return runPlugin('DEL', { CNI_CONTAINERID: containerId, CNI_NETNS: pod?.netnsPath ?? '', CNI_IFNAME: 'eth0' }, pluginConfig(daemon, network), plugin);
}

export function pluginConfig(daemon: DaemonProcess, network: string, prevResult?: object): object {
  return {
    cniVersion: '1.0.0', name: network, type: 'int-host-reporter',
    socketPath: daemon.socket, spoolDir: daemon.spoolDir, bpffsRoot: daemon.pinRoot,
    ...(prevResult ? { prevResult } : {}),
  };
}

/** A TCP port on 127.0.0.1 that was free a moment ago (for a listener the daemon opens itself). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}
