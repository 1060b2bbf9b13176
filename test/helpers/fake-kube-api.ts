// A real loopback HTTP server that speaks just enough of the Kubernetes API for the pod watch:
// LIST and WATCH of /api/v1/pods (and /api/v1/namespaces/{ns}/pods), with fieldSelector
// spec.nodeName=X, resourceVersions, watch replay from a resourceVersion, 410 Gone (as an ERROR
// event in a 200 stream, the way kube-apiserver reports an expired version, or as HTTP 410),
// bookmarks, dropped connections and injected failures. It exercises the client's real
// fetch/streaming code, which a module mock would not.
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Scope } from './scope';

export type Pod = {
  apiVersion: 'v1';
  kind: 'Pod';
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }[];
    deletionTimestamp?: string;
    deletionGracePeriodSeconds?: number;
    [k: string]: unknown;
  };
  spec: { nodeName?: string; hostNetwork?: boolean; [k: string]: unknown };
  status: { phase?: string; podIP?: string; podIPs?: { ip: string }[]; [k: string]: unknown };
};

export interface PodSpecInput {
  namespace?: string;
  name: string;
  nodeName: string;
  uid?: string;
  labels?: Record<string, string>;
  /** controller owner, e.g. { kind: 'ReplicaSet', name: 'web-5d9c' } */
  owner?: { kind: string; name: string };
  /** extra non-controller owners listed before the controller */
  otherOwners?: { kind: string; name: string }[];
  podIPs?: string[];
  hostNetwork?: boolean;
  phase?: string;
}

export function makePod(p: PodSpecInput): Pod {
  const refs = [
    ...(p.otherOwners ?? []).map((o) => ({ apiVersion: 'v1', kind: o.kind, name: o.name, uid: randomUUID() })),
    ...(p.owner ? [{ apiVersion: 'apps/v1', kind: p.owner.kind, name: p.owner.name, uid: randomUUID(), controller: true }] : []),
  ];
  const ips = p.podIPs ?? [];
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: p.name,
      namespace: p.namespace ?? 'default',
      uid: p.uid ?? randomUUID(),
      labels: p.labels ?? {},
      ...(refs.length ? { ownerReferences: refs } : {}),
    },
    spec: { nodeName: p.nodeName, hostNetwork: p.hostNetwork ?? false },
    status: { phase: p.phase ?? 'Running', ...(ips.length ? { podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) } : {}) },
  };
}

export interface RequestRecord {
  method: string;
  path: string;
  query: Record<string, string>;
  watch: boolean;
  /** HTTP status answered (200 for a watch that then reported an ERROR event, 0 if held by hang()) */
  status: number;
}

type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';
interface HistoryEntry {
  rv: number;
  type: EventType;
  pod: Pod;
  /** the pod before this change, to tell whether it matched a selector then */
  before: Pod | null;
}

interface OpenWatch {
  res: http.ServerResponse;
  node: string | null;
  namespace: string | null;
  bookmarks: boolean;
}

export interface FakeKubeApiOptions {
  /** listen on this port (0: any free one) */
  port?: number;
}

export class FakeKubeApi {
  readonly requests: RequestRecord[] = [];
  private readonly server: http.Server;
  private readonly pods = new Map<string, Pod>();
  private readonly history: HistoryEntry[] = [];
  private readonly watches = new Set<OpenWatch>();
  private readonly sockets = new Set<Socket>();
  private rv = 100;
  /** watches asking for a version below this get 410 Gone */
  private compactedBelow = 0;
  private goneAs: 'event' | 'http' = 'event';
  private failures: { count: number; status: number; watchOnly: boolean } | null = null;
  private hanging: 'none' | 'all' | 'watch' = 'none';
  private readonly held = new Set<http.ServerResponse>();
  private port = 0;

  private constructor() {
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  static async start(opts: FakeKubeApiOptions = {}): Promise<FakeKubeApi> {
    const api = new FakeKubeApi();
    await new Promise<void>((resolve, reject) => {
      api.server.once('error', reject);
      api.server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
    });
    api.port = (api.server.address() as AddressInfo).port;
    return api;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get resourceVersion(): string {
    return String(this.rv);
  }

  /** watch streams currently open */
  get openWatches(): number {
    return this.watches.size;
  }

  /** TCP connections currently open (any request) */
  get openConnections(): number {
    return this.sockets.size;
  }

  /** the server's pods, optionally of one node, as `namespace/name` sorted */
  podKeys(nodeName?: string): string[] {
    return [...this.pods.values()]
      .filter((p) => nodeName === undefined || p.spec.nodeName === nodeName)
      .map((p) => `${p.metadata.namespace}/${p.metadata.name}`)
      .sort();
  }

  getPod(namespace: string, name: string): Pod | undefined {
    const p = this.pods.get(`${namespace}/${name}`);
    return p && structuredClone(p);
  }

  addPod(pod: Pod): Pod {
    const key = `${pod.metadata.namespace}/${pod.metadata.name}`;
    if (this.pods.has(key)) throw new Error(`fake-kube-api: pod ${key} exists`);
    return this.commit('ADDED', structuredClone(pod), null);
  }

  /** Applies `change` to a copy of the stored pod and stores it with a new resourceVersion. */
  updatePod(namespace: string, name: string, change: (pod: Pod) => void): Pod {
    const before = this.mustGet(namespace, name);
    const after = structuredClone(before);
    change(after);
    return this.commit('MODIFIED', after, before);
  }

  deletePod(namespace: string, name: string): Pod {
    const before = this.mustGet(namespace, name);
    return this.commit('DELETED', structuredClone(before), before);
  }

  /**
   * Forgets the history up to now (etcd compaction): a later watch from an older resourceVersion
   * is answered 410 Gone, by default as an ERROR event carrying a Status (code 410) in a 200
   * stream that then ends, or with `as: 'http'` as an HTTP 410 with that Status as body.
   */
  expire(opts: { as?: 'event' | 'http' } = {}): void {
    this.compactedBelow = this.rv;
    this.goneAs = opts.as ?? 'event';
  }

  /** Cuts every open watch stream mid-response (no terminating chunk), as a crashed server would. */
  dropConnections(): number {
    const n = this.watches.size;
    for (const w of this.watches) w.res.socket?.destroy();
    this.watches.clear();
    return n;
  }

  /** Sends a BOOKMARK with the current resourceVersion to watches that asked for bookmarks. */
  bookmark(): void {
    const event = { type: 'BOOKMARK', object: { kind: 'Pod', apiVersion: 'v1', metadata: { resourceVersion: this.resourceVersion } } };
    for (const w of this.watches) if (w.bookmarks) this.send(w, event);
  }

  /** The next `count` requests (or only watch requests) are answered with HTTP `status`. */
  failNext(count: number, status = 500, opts: { watchOnly?: boolean } = {}): void {
    this.failures = { count, status, watchOnly: opts.watchOnly ?? false };
  }

  /**
   * From now on, requests (all, or only watches) are accepted but never answered, like a server
   * that stopped responding; 'none' answers new requests normally again (held ones stay held).
   */
  hang(mode: 'none' | 'all' | 'watch'): void {
    this.hanging = mode;
  }

  /** requests accepted and left unanswered by hang() whose connection is still open */
  get heldRequests(): number {
    return this.held.size;
  }

  async close(): Promise<void> {
    for (const res of this.held) res.socket?.destroy();
    this.held.clear();
    for (const w of this.watches) w.res.end();
    this.watches.clear();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }

  private mustGet(namespace: string, name: string): Pod {
    const pod = this.pods.get(`${namespace}/${name}`);
    if (!pod) throw new Error(`fake-kube-api: no pod ${namespace}/${name}`);
    return pod;
  }

  private commit(type: EventType, pod: Pod, before: Pod | null): Pod {
    this.rv++;
    pod.metadata.resourceVersion = String(this.rv);
    const key = `${pod.metadata.namespace}/${pod.metadata.name}`;
    if (type === 'DELETED') this.pods.delete(key);
    else this.pods.set(key, pod);
    const entry: HistoryEntry = { rv: this.rv, type, pod: structuredClone(pod), before };
    this.history.push(entry);
    for (const w of this.watches) this.deliver(w, entry);
    return structuredClone(pod);
  }

  /** What a watch filtered by node/namespace sees of one change (the API server's rules). */
  private deliver(w: OpenWatch, e: HistoryEntry): void {
    const matches = (p: Pod | null): boolean =>
      p !== null && (w.node === null || p.spec.nodeName === w.node) && (w.namespace === null || p.metadata.namespace === w.namespace);
    const was = e.type !== 'ADDED' && matches(e.before);
    const is = e.type !== 'DELETED' && matches(e.pod);
    let type: EventType | null = null;
    if (e.type === 'DELETED') type = was ? 'DELETED' : null;
    else if (is && was) type = 'MODIFIED';
    else if (is) type = 'ADDED';
    else if (was) type = 'DELETED'; // no longer matches the selector
    if (type) this.send(w, { type, object: e.pod });
  }

  private send(w: OpenWatch, event: unknown): void {
    w.res.write(`${JSON.stringify(event)}\n`);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fake');
    const query = Object.fromEntries(url.searchParams);
    const watch = query.watch === 'true' || query.watch === '1';
    const record: RequestRecord = { method: req.method ?? '', path: url.pathname, query, watch, status: 200 };
    this.requests.push(record);
    const answer = (status: number, body: unknown): void => {
      record.status = status;
      res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(body));
    };

    if (this.hanging === 'all' || (this.hanging === 'watch' && watch)) {
      record.status = 0;
      this.held.add(res);
      res.on('close', () => this.held.delete(res));
      return;
    }
    const m = /^\/api\/v1\/(?:namespaces\/([^/]+)\/)?pods$/.exec(url.pathname);
    if (req.method !== 'GET' || !m) return answer(404, status(404, 'NotFound', `${req.method} ${url.pathname} is not served here`));
    if (this.failures && (watch || !this.failures.watchOnly)) {
      const code = this.failures.status;
      if (--this.failures.count <= 0) this.failures = null;
      return answer(code, status(code, 'InternalError', 'injected failure'));
    }
    let node: string | null = null;
    if (query.fieldSelector !== undefined) {
      const f = /^spec\.nodeName==?([^,]*)$/.exec(query.fieldSelector);
      if (!f) return answer(400, status(400, 'BadRequest', `unsupported fieldSelector "${query.fieldSelector}"`));
      node = f[1];
    }
    const namespace = m[1] ? decodeURIComponent(m[1]) : null;
    const selected = [...this.pods.values()].filter(
      (p) => (node === null || p.spec.nodeName === node) && (namespace === null || p.metadata.namespace === namespace),
    );

    if (!watch) {
      return answer(200, { apiVersion: 'v1', kind: 'PodList', metadata: { resourceVersion: this.resourceVersion }, items: selected });
    }

    const from = query.resourceVersion;
    const fromRv = from === undefined || from === '' || from === '0' ? null : Number(from);
    if (fromRv !== null && (!Number.isInteger(fromRv) || fromRv < this.compactedBelow)) {
      const gone = status(410, 'Expired', `too old resource version: ${from} (${this.compactedBelow})`);
      if (this.goneAs === 'http') return answer(410, gone);
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(`${JSON.stringify({ type: 'ERROR', object: gone })}\n`);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    const w: OpenWatch = { res, node, namespace, bookmarks: query.allowWatchBookmarks === 'true' };
    this.watches.add(w);
    res.on('close', () => this.watches.delete(w));
    if (fromRv === null) {
      // No version: the current state as ADDED events, then changes.
      for (const p of selected) this.send(w, { type: 'ADDED', object: p });
    } else {
      for (const e of this.history) if (e.rv > fromRv) this.deliver(w, e);
    }
    const timeout = Number(query.timeoutSeconds);
    if (timeout > 0) {
      const t = setTimeout(() => res.end(), timeout * 1000);
      res.on('close', () => clearTimeout(t));
    }
  }
}

function status(code: number, reason: string, message: string): object {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

/** A kubeconfig file (removed with the scope) pointing at a fake API server, no credentials. */
export function kubeconfigFor(scope: Scope, server: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'ihr-kube-'));
  scope.defer(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'config');
  writeFileSync(file, [
    'apiVersion: v1',
    'kind: Config',
    `clusters: [{ name: fake, cluster: { server: "${server}", insecure-skip-tls-verify: true } }]`,
    'users: [{ name: anonymous, user: {} }]',
    'contexts: [{ name: fake, context: { cluster: fake, user: anonymous } }]',
    'current-context: fake',
  ].join('\n'));
  return file;
}

/** Polls until `check` returns a value (not undefined); fails naming `what` after about 15 s. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 300; i++) {
    const v = await check();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`never happened: ${what}`);
}
