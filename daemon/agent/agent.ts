// The node agent: wires the datapath, the report pipeline, the attachments and the Kubernetes
// pod watch together, and takes them apart again on SIGTERM (leaving the attachments in place, so
// pods stay observed across a restart or an upgrade). The local API over it is started by
// daemon/main.ts (api/ and agent/ do not import each other).
import { dirname, join } from 'node:path';
import pino, { type Logger } from 'pino';
import * as bpf from '../../bpf/index';
import { PROGRAMS, PinLayout } from '../../bpf/pins';
import type { ProgramSet } from '../../bpf/attachments';
import type { Config } from '../config';
import { ReportSender } from '../report/sender';
import { buildDropCodeTable } from '../report/drop-reasons';
import { readKernelDropReasons } from '../report/kernel-drop-reasons';
import { DropLocations } from '../report/drop-locations';
import { AgingDropDetector } from './aging';
import { Watchlist, WatchlistFile, WatchlistStore } from '../watchlist';
import { PodWatch, type PodInfo } from '../k8s/pod-watch';
import { NodeDatapath } from './datapath';
import { Pipeline } from './pipeline';
import { AttachmentRegistry } from './attachments';
import { WarnLimiter } from './warn-limiter';
import { defaultRouteInterface, interfaceIpv4, ipv4ToU32 } from './node-interfaces';
import { readiness, type Readiness } from './readiness';

export interface AgentOptions {
  /** BPF object to load (default: beside the bundle / in build/) */
  objectPath?: string;
  /** where per-attachment state is kept (default: beside the socket) */
  stateDir?: string;
  /** the plugin's spool (default: beside the socket) */
  spoolDir?: string;
  logger?: Logger;
}

function collectorText(e: { host?: string; port: number }): string {
  if (!e.host) return `127.0.0.1:${e.port}`;
  return e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}

export class Agent {
  readonly log: Logger;
  readonly layout: PinLayout;
  readonly datapath: NodeDatapath;
  readonly sender: ReportSender;
  readonly pipeline: Pipeline;
  readonly registry: AttachmentRegistry;
  readonly watchlist: WatchlistStore;
  readonly dataInterfaces: { ifname: string; ifindex: number; mode: bpf.AttachMode }[] = [];
  readonly switchId: number;
  readonly startedAt = new Date();
  dropsEnabled = false;
  dropDetection: 'tracepoint' | 'aging' | 'off' = 'off';
  private aging?: AgingDropDetector;
  podWatch: PodWatch | null = null;
  /** why there is no pod watch, when there is none */
  podWatchDisabled: string | null = null;
  /** one limiter for the agent's repeated warnings, so its count is one metric */
  readonly warnings: WarnLimiter;
  private timer?: NodeJS.Timeout;
  private reader?: bpf.EventReader;

  private constructor(readonly config: Config, opts: AgentOptions) {
    this.log = opts.logger ?? pino({ level: config.logLevel, base: { component: 'int-host-reporter' } });
    this.warnings = new WarnLimiter(this.log);
    this.layout = new PinLayout(config.bpffsPath);
    const runDir = dirname(config.socketPath);

    this.datapath = new NodeDatapath({
      layout: this.layout,
      reportIntervalNs: BigInt(config.reportIntervalMs) * 1_000_000n,
      latencyQuantumNs: BigInt(config.latencyQuantumNs),
      sampleBytes: config.sampleBytes,
      objectPath: opts.objectPath,
    }, this.log);

    const ifnames = config.dataInterface
      ? config.dataInterface.split(',').map((s) => s.trim()).filter(Boolean)
      : [defaultRouteInterface()].filter((x): x is string => !!x);
    for (const ifname of ifnames) {
      const a = this.datapath.attachInterface(ifname);
      this.dataInterfaces.push({ ifname, ...a });
    }
    if (ifnames.length === 0) this.log.warn({}, 'no data interface (no --data-interface and no default route)');

    const nodeIp = ifnames.map(interfaceIpv4).find(Boolean);
    this.switchId = config.switchId ?? (nodeIp ? ipv4ToU32(nodeIp) : 0);
    if (config.switchId === undefined && !nodeIp) this.log.warn({}, 'switch id 0: no --switch-id and no IPv4 address on the data interface');

    // Drops: the kfree_skb tracepoint (kernel reasons), else the reference's aging fallback.
    const dd = config.dropDetection;
    this.datapath.detachDrops();
    this.dropsEnabled = (dd === 'auto' || dd === 'tracepoint') && this.datapath.attachDrops();
    if (dd === 'tracepoint' && !this.dropsEnabled) throw new Error('--drop-detection tracepoint: the kfree_skb tracepoint cannot be attached');
    this.dropDetection = this.dropsEnabled ? 'tracepoint' : dd === 'off' ? 'off' : 'aging';

    if (config.watchlistConf) {
      const file = new WatchlistFile(config.watchlistConf, {
        onChange: (w) => this.log.info({ rules: w.size, file: config.watchlistConf }, 'watchlist loaded'),
        onError: (e) => this.log.warn({ file: config.watchlistConf, err: e.message }, 'watchlist refused; the previous one stays'),
      });
      file.load(); // a bad file at start is fatal: there is nothing to fall back to
      file.watch();
      this.watchlist = file;
    } else {
      this.watchlist = new WatchlistStore();
      this.log.warn({}, 'no watchlist (-f): no flow matches, so no reports are sent');
    }

    this.sender = new ReportSender({ collectors: config.collectors.map(collectorText) });
    const dropCodes = buildDropCodeTable(readKernelDropReasons() ?? []);
    this.pipeline = new Pipeline(() => this.watchlist.current, this.sender, { switchId: this.switchId, hwId: this.sender.hwId }, dropCodes, new DropLocations());

    this.registry = new AttachmentRegistry({
      layout: this.layout, programs: () => this.programs(), stateDir: opts.stateDir ?? join(runDir, 'state'),
      spoolDir: opts.spoolDir ?? join(runDir, 'spool'), log: this.log, warnings: this.warnings,
    });
  }

  /** Programs of this version (owned by the loaded object). */
  programs(): ProgramSet {
    const p = (n: string) => this.datapath.obj.program(n);
    return { ingress: p(PROGRAMS.ingress), egress: p(PROGRAMS.egress), ingressNic: p(PROGRAMS.ingressNic), egressNic: p(PROGRAMS.egressNic) };
  }

  static async start(config: Config, opts: AgentOptions = {}): Promise<Agent> {
    const agent = new Agent(config, opts);
    try {
      agent.run();
    } catch (e) {
      await agent.stop();
      throw e;
    }
    return agent;
  }

  private run(): void {
    this.reader = this.datapath.startReader((view, _records, lost) => this.pipeline.process(view, lost));
    if (this.dropDetection === 'aging') {
      this.aging = new AgingDropDetector(this.datapath.obj.map(bpf.MapName.int_meta), (view) => this.pipeline.process(view, 0));
    }
    this.reconcile();
    this.timer = setInterval(() => this.reconcile(), this.config.reconcileIntervalMs);

    const setup = PodWatch.fromEnvironment({ nodeName: this.config.nodeName, logger: this.log });
    // Without Kubernetes (no config, API down) everything works from the plugin's notices; the
    // watch only adds labels and owners, joined in when the API answers (see api/views.ts).
    if (setup.enabled) {
      this.podWatch = setup.watch;
      this.podWatch.on((ev) => this.log.debug({ pod: `${ev.pod.namespace}/${ev.pod.name}`, event: ev.type }, 'pod watch event'));
      this.podWatch.start();
    } else {
      this.podWatchDisabled = setup.reason;
    }

    this.log.info({
      switchId: this.switchId,
      dataInterfaces: this.dataInterfaces,
      collectors: this.config.collectors.map(collectorText),
      socket: this.config.socketPath,
      health: this.config.healthListen,
      drops: this.dropsEnabled,
      libbpf: bpf.libbpfVersion(),
    }, 'int-host-reporter running');
  }

  /** A reconcile pass; whatever goes wrong is a (rate-limited) warning, never the daemon's end. */
  reconcile(): void {
    try {
      this.registry.reconcile(this.discoverablePods());
    } catch (e) {
      this.warnings.warn('reconcile', { err: (e as Error).message }, 'reconcile pass failed');
    }
  }

  /**
   * Pods the API lists on this node as running with their own network and IPs: reconcile
   * attaches to the ones no record knows (pods created before the plugin was installed).
   */
  private discoverablePods(): PodInfo[] {
    if (!this.podWatch) return [];
    return this.podWatch.list().filter((p) =>
      p.nodeName === this.config.nodeName && p.phase === 'Running' && !p.hostNetwork && p.deletion === null && p.podIPs.length > 0);
  }

  /** What /readyz answers: every check, computed now. */
  readiness(): Readiness {
    const pw = this.podWatch;
    return readiness({
      readerRunning: this.reader !== undefined,
      bpffsRoot: this.layout.root,
      dataInterfaces: this.dataInterfaces,
      nicProgramIds: () => ({
        ingress: this.datapath.obj.program(PROGRAMS.ingressNic).id,
        egress: this.datapath.obj.program(PROGRAMS.egressNic).id,
      }),
      cniInstallerStatus: this.config.cniInstallerStatus,
      kube: pw
        ? { ready: pw.isReady, nodeName: pw.nodeName, server: pw.server, lastError: pw.counters().lastError }
        : { disabled: this.podWatchDisabled },
    });
  }

  /** Drops found by the aging fallback; undefined when it is not in use. */
  agedDrops(): number | undefined {
    return this.aging?.aged;
  }

  readerStats(): { records: number; lost: number } | undefined {
    return this.reader?.stats();
  }

  /** Replaces the watchlist through the API; a bad one throws WatchlistError and changes nothing. */
  replaceWatchlist(body: string): Watchlist {
    return this.watchlist.replace(body);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.podWatch?.stop();
    if (this.watchlist instanceof WatchlistFile) this.watchlist.close();
    this.aging?.close();
    this.reader?.close();
    await this.sender?.drain?.(500);
    this.sender?.close();
    this.datapath.close();
    this.log.info({}, 'stopped; attachments stay in place');
  }
}
