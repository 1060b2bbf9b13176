// The local API: HTTP with JSON over a unix socket (root only, mode 0600), and optionally the
// read-only part (metrics, topology) on TCP for Prometheus and topology-pulling collectors, and
// /healthz and /readyz on a loopback TCP port for the kubelet's httpGet probes.
import { chmodSync, existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { dirname } from 'node:path';

export interface Route {
  method: 'GET' | 'POST' | 'PUT';
  /** a literal path, or a pattern with {name} segments */
  path: string;
  /** true: also served on the metrics TCP listener (--metrics-listen) */
  public?: boolean;
  /** true: also served on the health TCP listener (--health-listen) */
  health?: boolean;
  handle(req: ApiRequest): Promise<ApiResponse> | ApiResponse;
}

export interface ApiRequest {
  params: Record<string, string>;
  query: URLSearchParams;
  body: string;
}

export type ApiResponse =
  | { status: number; json: unknown }
  | { status: number; text: string; contentType?: string };

const MAX_BODY = 1 << 20;

export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch (e) {
    if (!(e instanceof URIError)) throw e;
    throw new ApiError(400, `malformed percent-encoding in the path: ${JSON.stringify(segment)}`);
  }
}

function match(pattern: string, path: string): Record<string, string> | undefined {
  const p = pattern.split('/');
  const a = path.split('/');
  if (p.length !== a.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < p.length; i++) {
    if (p[i].startsWith('{') && p[i].endsWith('}')) params[p[i].slice(1, -1)] = decodeSegment(a[i]);
    else if (p[i] !== a[i]) return undefined;
  }
  return params;
}

function send(res: ServerResponse, r: ApiResponse): void {
  if ('json' in r) {
    const body = JSON.stringify(r.json, null, 2) + '\n';
    res.writeHead(r.status, { 'content-type': 'application/json' });
    res.end(body);
  } else {
    res.writeHead(r.status, { 'content-type': r.contentType ?? 'text/plain; charset=utf-8' });
    res.end(r.text);
  }
}

/** Which routes a listener serves: all (the root-only socket), or the ones marked for a TCP listener. */
export type RouteSet = 'all' | 'public' | 'health';

function handler(routes: Route[], set: RouteSet) {
  const served = routes.filter((r) => set === 'all' || (set === 'public' ? r.public : r.health));
  return (req: IncomingMessage, res: ServerResponse) => {
    // Anything a peer sends must end in an answer, never in an exception: a malformed request
    // target (e.g. "//") or path segment is a 400.
    let url: URL;
    let candidates: Route[];
    try {
      url = new URL(req.url ?? '/', 'http://local');
      candidates = served.filter((r) => match(r.path, url.pathname));
    } catch (e) {
      const message = e instanceof ApiError ? e.message : `malformed request target: ${JSON.stringify(req.url)}`;
      send(res, { status: 400, json: { error: message } });
      return;
    }
    if (candidates.length === 0) {
      send(res, { status: 404, json: { error: `no such endpoint: ${url.pathname}` } });
      return;
    }
    const route = candidates.find((r) => r.method === req.method);
    if (!route) {
      send(res, { status: 405, json: { error: `${req.method} is not allowed on ${url.pathname}` } });
      return;
    }
    let body = '';
    let tooBig = false;
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      body += chunk;
      if (body.length > MAX_BODY) {
        tooBig = true;
        req.destroy();
      }
    });
    req.on('end', async () => {
      if (tooBig) return;
      try {
        send(res, await route.handle({ params: match(route.path, url.pathname)!, query: url.searchParams, body }));
      } catch (e) {
        const status = e instanceof ApiError ? e.status : 500;
        send(res, { status, json: { error: (e as Error).message } });
      }
    });
  };
}

/** Serves routes on a unix socket that only root can use. */
export async function listenUnix(path: string, routes: Route[]): Promise<Server> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  if (existsSync(path)) unlinkSync(path); // a stale socket of an earlier run
  const server = createServer(handler(routes, 'all'));
  // Created 0600 through the umask (bind happens inside listen(), synchronously), so there is no
  // window in which others could connect; the chmod only makes it explicit.
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const umask = process.umask(0o177);
    try {
      server.listen(path, () => resolve());
    } finally {
      process.umask(umask);
    }
  });
  chmodSync(path, 0o600);
  return server;
}

/** Serves the public routes (metrics, topology) or the health routes on TCP. */
export async function listenTcp(host: string | undefined, port: number, routes: Route[], set: Exclude<RouteSet, 'all'>): Promise<Server> {
  const server = createServer(handler(routes, set));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}

/** Where the API is served: the root-only socket, and the TCP listeners the config asks for. */
export interface ApiListeners {
  socketPath: string;
  metricsListen?: { host?: string; port: number };
  healthListen?: { host?: string; port: number };
}

/** Serves routes on every listener; resolves to the function that closes them all. */
export async function serveApi(listeners: ApiListeners, routes: Route[]): Promise<() => Promise<void>> {
  const servers: Server[] = [];
  const close = async (): Promise<void> => {
    for (const s of servers.splice(0)) await new Promise<void>((r) => s.close(() => r()));
  };
  try {
    servers.push(await listenUnix(listeners.socketPath, routes));
    const { metricsListen, healthListen } = listeners;
    if (metricsListen) servers.push(await listenTcp(metricsListen.host, metricsListen.port, routes, 'public'));
    if (healthListen) servers.push(await listenTcp(healthListen.host, healthListen.port, routes, 'health'));
  } catch (e) {
    await close(); // the ones that did open
    throw e;
  }
  return close;
}
