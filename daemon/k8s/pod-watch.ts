// Keeps a cache of the pods scheduled on this node (LIST + WATCH with fieldSelector
// spec.nodeName=<node>) and tells listeners what changed.
//
// Why our own loop over the client's Watch rather than its ListWatch (1.4.0): ListWatch stays
// stopped after any error but 410, re-opens a closed watch at once (a server that keeps closing
// it is hammered), cannot cancel a LIST or a watch whose response has not started, and offers no
// counters. Here one loop owns everything:
//   LIST (consistent read) -> replace the cache (pods gone meanwhile are deleted)
//   WATCH from the LIST's resourceVersion -> apply events, track the latest resourceVersion
//   watch ended: closed normally -> re-watch from the last resourceVersion
//                410 Gone (HTTP or an ERROR event) -> LIST again
//                any other error -> back off, then re-watch (an old version will get a 410)
// Backoff grows only while things keep failing; a watch that delivered events or stayed open for
// `healthyAfterMs` counts as a success. Errors are counted and logged once per failure streak
// (warn), never thrown: the daemon works without Kubernetes.
import http from 'node:http';
import { CoreV1Api, KubeConfig, Observable, Watch, type ObservableMiddleware } from '@kubernetes/client-node';
import { Backoff } from './backoff';
import { kubeConfigForServer, loadKubeConfig, type KubeConfigSource } from './kubeconfig';
import { PodCache, type PodEvent } from './pod-cache';
import { toPodInfo, type PodInfo } from './pod-info';

export type { PodEvent, PodEventType } from './pod-cache';
export type { PodDeletion, PodInfo, PodOwner } from './pod-info';

/** What we need of a pino logger (pino's Logger fits). */
export interface PodWatchLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export type PodListener = (event: PodEvent) => void;

export interface PodWatchOptions {
  /** this node's name (downward API NODE_NAME); only its pods are watched */
  nodeName: string;
  /** the API server: a KubeConfig, or a server URL without credentials (tests, kubectl proxy) */
  kubeConfig?: KubeConfig;
  server?: string;
  logger?: PodWatchLogger;
  backoff?: { baseMs?: number; maxMs?: number; random?: () => number };
  /** timeoutSeconds asked of the server per watch; default a random 300-600 s, spreading re-watches */
  watchTimeoutSeconds?: number;
  /** abort a watch that received nothing for this long (a silently dead connection) */
  idleTimeoutMs?: number;
  listTimeoutMs?: number;
  /** a watch open this long counts as healthy (resets the backoff); default backoff.maxMs */
  healthyAfterMs?: number;
}

export interface PodWatchCounters {
  /** successful LISTs (the first one and every relist) */
  lists: number;
  /** LISTs caused by 410 Gone */
  relists: number;
  /** watches opened after the first one */
  watchRestarts: number;
  /** ADDED/MODIFIED/DELETED/BOOKMARK events received */
  watchEvents: number;
  /** failed LISTs and watches that ended with an error */
  errors: number;
  lastError: string | null;
  lastErrorAt: string | null;
  /** failures since the last success */
  failureStreak: number;
  listenerErrors: number;
}

export type PodWatchSetup =
  | { enabled: true; watch: PodWatch; source: KubeConfigSource; server: string }
  | { enabled: false; watch: null; reason: string };

export interface FromEnvironmentOptions extends Omit<PodWatchOptions, 'nodeName' | 'kubeConfig' | 'server'> {
  /** default env.NODE_NAME */
  nodeName?: string;
  env?: NodeJS.ProcessEnv;
  inClusterPathPrefix?: string;
}

type WatchEnd =
  | { kind: 'closed' | 'gone' | 'stopped'; events: number; ms: number }
  | { kind: 'error'; error: unknown; events: number; ms: number };

const PODS_PATH = '/api/v1/pods';
const silentLogger: PodWatchLogger = { info() {}, warn() {}, debug() {} };

export class PodWatch {
  readonly nodeName: string;
  readonly server: string;
  /** resolves true after the first successful LIST, false if stopped before */
  readonly ready: Promise<boolean>;

  private readonly fieldSelector: string;
  private readonly log: PodWatchLogger;
  private readonly core: CoreV1Api;
  private readonly watcher: Watch;
  private readonly backoff: Backoff;
  private readonly cache = new PodCache();
  private readonly listeners = new Set<PodListener>();
  private readonly agents = new Set<http.Agent>();
  private readonly opts: Required<Pick<PodWatchOptions, 'idleTimeoutMs' | 'listTimeoutMs' | 'healthyAfterMs'>> & {
    watchTimeoutSeconds?: number;
  };
  private readonly stats: PodWatchCounters = {
    lists: 0,
    relists: 0,
    watchRestarts: 0,
    watchEvents: 0,
    errors: 0,
    lastError: null,
    lastErrorAt: null,
    failureStreak: 0,
    listenerErrors: 0,
  };

  private resolveReady!: (ready: boolean) => void;
  private readyFlag = false;
  private started = false;
  private stopping = false;
  private loop: Promise<void> | null = null;
  private needList = true;
  private resourceVersion = '';
  private listAbort: AbortController | null = null;
  private endWatch: (() => void) | null = null;
  private wake: (() => void) | null = null;

  constructor(options: PodWatchOptions) {
    if (!options.nodeName) throw new Error('PodWatch: nodeName is required');
    if (!options.kubeConfig === !options.server) throw new Error('PodWatch: give exactly one of kubeConfig or server');
    const kc = options.kubeConfig ?? kubeConfigForServer(options.server as string);
    const server = kc.getCurrentCluster()?.server;
    if (!server) throw new Error('PodWatch: the kubeconfig has no current cluster');
    this.nodeName = options.nodeName;
    this.server = server;
    this.fieldSelector = `spec.nodeName=${options.nodeName}`;
    this.log = options.logger ?? silentLogger;
    const baseMs = options.backoff?.baseMs ?? 500;
    const maxMs = options.backoff?.maxMs ?? 30_000;
    this.backoff = new Backoff({ baseMs, maxMs, random: options.backoff?.random });
    const watchTimeoutSeconds = options.watchTimeoutSeconds;
    this.opts = {
      watchTimeoutSeconds,
      idleTimeoutMs: options.idleTimeoutMs ?? ((watchTimeoutSeconds ?? 600) + 60) * 1000,
      listTimeoutMs: options.listTimeoutMs ?? 60_000,
      healthyAfterMs: options.healthyAfterMs ?? maxMs,
    };
    this.core = kc.makeApiClient(CoreV1Api);
    this.watcher = new Watch(this.trackAgents(kc));
    this.ready = new Promise((resolve) => {
      this.resolveReady = resolve;
    });
  }

  /**
   * From the process environment: KUBECONFIG, else the in-cluster service account. Without
   * either (or without a node name) the watch is disabled and the reason says why.
   */
  static fromEnvironment(options: FromEnvironmentOptions = {}): PodWatchSetup {
    const { env = process.env, inClusterPathPrefix, nodeName = env.NODE_NAME, ...rest } = options;
    const log = options.logger ?? silentLogger;
    const disabled = (reason: string): PodWatchSetup => {
      log.warn({ reason }, 'Kubernetes pod watch disabled');
      return { enabled: false, watch: null, reason };
    };
    if (!nodeName) return disabled('no node name (set NODE_NAME from the downward API spec.nodeName)');
    const loaded = loadKubeConfig({ env, inClusterPathPrefix });
    if (!loaded.ok) return disabled(loaded.reason);
    try {
      const watch = new PodWatch({ ...rest, nodeName, kubeConfig: loaded.kubeConfig });
      return { enabled: true, watch, source: loaded.source, server: loaded.server };
    } catch (err) {
      return disabled(errorText(err));
    }
  }

  get isReady(): boolean {
    return this.readyFlag;
  }

  get size(): number {
    return this.cache.size;
  }

  get(namespace: string, name: string): PodInfo | undefined {
    return this.cache.get(namespace, name);
  }

  getByUid(uid: string): PodInfo | undefined {
    return this.cache.getByUid(uid);
  }

  list(): PodInfo[] {
    return this.cache.list();
  }

  counters(): PodWatchCounters {
    return { ...this.stats };
  }

  /** Returns the function that unsubscribes. Listeners run synchronously; their errors are counted. */
  on(listener: PodListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Starts the list/watch loop in the background; never throws for API trouble. */
  start(): void {
    if (this.started || this.stopping) return;
    this.started = true;
    this.log.info({ server: this.server, fieldSelector: this.fieldSelector }, 'pod watch starting');
    this.loop = this.run();
  }

  /** Ends the loop, aborts the LIST or watch in flight and cancels timers; resolves when all is closed. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.listAbort?.abort();
    this.endWatch?.();
    this.wake?.();
    this.destroyAgents();
    this.resolveReady(false);
    await this.loop;
  }

  private async run(): Promise<void> {
    let watches = 0;
    while (!this.stopping) {
      let delay = 0;
      try {
        if (this.needList) await this.listPods();
        if (this.stopping) break;
        if (watches++ > 0) this.stats.watchRestarts++;
        delay = this.afterWatch(await this.watchPods());
      } catch (err) {
        if (this.stopping) break;
        this.recordError(err, 'list');
        delay = this.backoff.next();
      }
      if (delay > 0 && !this.stopping) await this.sleep(delay);
    }
  }

  private async listPods(): Promise<void> {
    const abort = new AbortController();
    this.listAbort = abort;
    const timer = setTimeout(() => abort.abort(new Error(`LIST timed out after ${this.opts.listTimeoutMs} ms`)), this.opts.listTimeoutMs);
    try {
      const list = await this.core.listPodForAllNamespaces(
        { fieldSelector: this.fieldSelector },
        { middleware: [abortMiddleware(abort.signal)], middlewareMergeStrategy: 'append' },
      );
      if (this.stopping) return;
      const pods: PodInfo[] = [];
      for (const item of list.items ?? []) {
        const pod = toPodInfo(item);
        if (pod && pod.nodeName === this.nodeName) pods.push(pod);
      }
      this.resourceVersion = list.metadata?.resourceVersion ?? '';
      this.needList = false;
      this.stats.lists++;
      this.recovered('list');
      this.deliver(this.cache.replace(pods));
      this.log.debug({ pods: pods.length, resourceVersion: this.resourceVersion }, 'pods listed');
      if (!this.readyFlag) {
        this.readyFlag = true;
        this.resolveReady(true);
      }
    } finally {
      clearTimeout(timer);
      this.listAbort = null;
    }
  }

  /** One watch, from the current resourceVersion until it ends; never rejects. */
  private watchPods(): Promise<WatchEnd> {
    return new Promise((resolve) => {
      const started = Date.now();
      let events = 0;
      let settled = false;
      let controller: AbortController | null = null;
      let idle: NodeJS.Timeout | undefined;

      const finish = (end: WatchEnd['kind'], error?: unknown): void => {
        if (settled) return;
        settled = true;
        clearTimeout(idle);
        this.endWatch = null;
        controller?.abort();
        this.destroyAgents();
        const ms = Date.now() - started;
        resolve(end === 'error' ? { kind: end, error, events, ms } : { kind: end, events, ms });
      };
      const armIdle = (): void => {
        clearTimeout(idle);
        idle = setTimeout(() => finish('error', new Error(`watch silent for ${this.opts.idleTimeoutMs} ms`)), this.opts.idleTimeoutMs);
      };
      this.endWatch = () => finish('stopped');
      armIdle();

      const onEvent = (type: string, obj: unknown): void => {
        if (settled) return;
        armIdle();
        if (type === 'ERROR') {
          // The API server reports an expired resourceVersion inside a 200 stream as a Status.
          const status = (obj ?? {}) as { code?: unknown; reason?: unknown; message?: unknown };
          if (status.code === 410) finish('gone');
          else finish('error', new Error(`watch ERROR event: ${String(status.code)} ${String(status.reason)}: ${String(status.message)}`));
          return;
        }
        if (events++ === 0) this.recovered('watch');
        this.stats.watchEvents++;
        const rv = (obj as { metadata?: { resourceVersion?: unknown } } | null)?.metadata?.resourceVersion;
        if (typeof rv === 'string' && rv !== '') this.resourceVersion = rv;
        if (type === 'ADDED' || type === 'MODIFIED') this.applyPod(obj);
        else if (type === 'DELETED') this.deletePod(obj);
      };
      const onDone = (err: unknown): void => {
        if (err == null) finish('closed');
        else if ((err as { statusCode?: unknown }).statusCode === 410) finish('gone');
        else finish('error', err);
      };

      const query: Record<string, string | number | boolean> = {
        fieldSelector: this.fieldSelector,
        resourceVersion: this.resourceVersion,
        allowWatchBookmarks: true,
        timeoutSeconds: this.opts.watchTimeoutSeconds ?? 300 + Math.floor(Math.random() * 300),
      };
      this.watcher.watch(PODS_PATH, query, onEvent, onDone).then(
        (c) => {
          controller = c;
          if (settled) c.abort();
        },
        (err: unknown) => finish('error', err),
      );
    });
  }

  /** Decides the delay before the next round after a watch ended. */
  private afterWatch(end: WatchEnd): number {
    if (end.kind === 'stopped') return 0;
    const healthy = end.events > 0 || end.ms >= this.opts.healthyAfterMs;
    if (healthy) {
      this.backoff.reset();
      this.recovered('watch');
    }
    if (end.kind === 'gone') {
      this.needList = true;
      this.stats.relists++;
      this.log.info({ resourceVersion: this.resourceVersion }, 'pod watch: resourceVersion expired (410 Gone), listing again');
    } else if (end.kind === 'error') {
      this.recordError(end.error, 'watch');
      return this.backoff.next();
    } else {
      this.log.debug({ events: end.events, ms: end.ms }, 'pod watch closed by the server, watching again');
    }
    return healthy ? 0 : this.backoff.next();
  }

  private applyPod(obj: unknown): void {
    const pod = toPodInfo(obj);
    if (!pod) return;
    // The server filters by node; a pod that is not ours (a selector-ignoring proxy) is dropped.
    if (pod.nodeName !== this.nodeName) this.deliver(this.cache.remove(pod.namespace, pod.name));
    else this.deliver(this.cache.upsert(pod));
  }

  private deletePod(obj: unknown): void {
    const pod = toPodInfo(obj);
    if (pod) this.deliver(this.cache.remove(pod.namespace, pod.name));
  }

  private deliver(events: PodEvent[]): void {
    for (const event of events) {
      for (const listener of this.listeners) {
        try {
          listener(event);
        } catch (err) {
          if (this.stats.listenerErrors++ === 0) this.log.warn({ err: errorText(err) }, 'a pod watch listener threw (logged once, counted)');
        }
      }
    }
  }

  private recordError(err: unknown, phase: 'list' | 'watch'): void {
    const text = errorText(err);
    this.stats.errors++;
    this.stats.lastError = `${phase}: ${text}`;
    this.stats.lastErrorAt = new Date().toISOString();
    const fields = { phase, server: this.server, err: text, failures: this.stats.failureStreak + 1 };
    if (this.stats.failureStreak++ === 0) this.log.warn(fields, 'Kubernetes API request failed; pod watch retrying with backoff');
    else this.log.debug(fields, 'Kubernetes API request failed again');
  }

  private recovered(phase: 'list' | 'watch'): void {
    if (this.stats.failureStreak === 0) return;
    this.log.info({ phase, failures: this.stats.failureStreak }, 'Kubernetes API reachable again');
    this.stats.failureStreak = 0;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = null;
        done();
      };
    });
  }

  /**
   * Watch.watch() hands back its AbortController only once the response has started; to be
   * able to cancel a watch still waiting for the server, we keep the per-request agents it
   * creates and destroy their sockets when the watch ends or we stop.
   */
  private trackAgents(kc: KubeConfig): KubeConfig {
    const tracked = Object.create(kc) as KubeConfig;
    tracked.applyToFetchOptions = async (opts) => {
      const init = await kc.applyToFetchOptions(opts);
      if (init.agent instanceof http.Agent) {
        if (this.stopping) init.agent.destroy();
        else this.agents.add(init.agent);
      }
      return init;
    };
    return tracked;
  }

  private destroyAgents(): void {
    for (const agent of this.agents) agent.destroy();
    this.agents.clear();
  }
}

function abortMiddleware(signal: AbortSignal): ObservableMiddleware {
  return {
    pre(ctx) {
      ctx.setSignal(signal);
      return new Observable(Promise.resolve(ctx));
    },
    post(rsp) {
      return new Observable(Promise.resolve(rsp));
    },
  };
}

/** One line, no stack and no header dump (ApiException messages carry body and headers). */
function errorText(err: unknown): string {
  if (!(err instanceof Error)) return String(err).slice(0, 300);
  const e = err as Error & { code?: unknown; statusCode?: unknown; body?: unknown };
  const status = typeof e.statusCode === 'number' ? e.statusCode : typeof e.code === 'number' ? e.code : null;
  if (status === null) return e.message.split('\n')[0].slice(0, 300);
  // A Kubernetes Status body says what went wrong ("pods is forbidden: ..."); prefer it.
  let body = e.body;
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body);
    } catch (e) {
      if (!(e instanceof SyntaxError)) throw e; // not JSON: the message below stays the error's
    }
  }
  const detail = (body as { message?: unknown } | null | undefined)?.message;
  const text = typeof detail === 'string' ? detail : e.message.startsWith('HTTP-Code:') ? (e.message.split('\n')[1] ?? '').replace(/^Message: /, '') : e.message;
  return `HTTP ${status}: ${text.split('\n')[0].slice(0, 300)}`;
}
