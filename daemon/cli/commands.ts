// The operator commands: status, pods, pod, topology, watchlist. Readable tables by default,
// --json for scripts.
import { readFileSync } from 'node:fs';
import { DEFAULT_SOCKET_PATH } from '../../protocol/endpoints';
import { callApi, ClientError } from './client';

export const CLI_USAGE = `Usage: int-host-reporter COMMAND [--socket PATH] [--json]

Commands (they ask the running daemon over its socket):
  status                 the daemon's state: collectors, data interfaces, attachments, counters
  pods                   every pod attachment on this node
  pod NAMESPACE/NAME     one pod
  topology               this node as an INT switch: ports (ifindex) and what is behind them
  watchlist [get]        the watchlist in force
  watchlist set FILE     replace the watchlist (YAML or JSON, validated like the file)

Other commands:
  manifests [options]    print the Kubernetes objects that deploy int-host-reporter (manifests --help)

Options:
  --socket PATH          the daemon's socket (default ${DEFAULT_SOCKET_PATH}, env INT_HOST_REPORTER_SOCKET)
  --json                 print the API's JSON instead of a table
`;

interface CliArgs {
  command: string;
  rest: string[];
  socket: string;
  json: boolean;
}

function parseArgs(argv: string[]): CliArgs {
  let socket = process.env.INT_HOST_REPORTER_SOCKET || DEFAULT_SOCKET_PATH;
  let json = false;
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') json = true;
    else if (a === '--socket') {
      const v = argv[++i];
      if (!v) throw new ClientError('--socket needs a path', 2);
      socket = v;
    } else if (a.startsWith('--socket=')) socket = a.slice('--socket='.length);
    else if (a.startsWith('-')) throw new ClientError(`unknown option ${a}\n\n${CLI_USAGE}`, 2);
    else positional.push(a);
  }
  return { command: positional[0], rest: positional.slice(1), socket, json };
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (c ?? '').padEnd(widths[i])).join('  ').trimEnd()).join('\n') + '\n';
}

async function get(args: CliArgs, path: string): Promise<unknown> {
  const r = await callApi(args.socket, 'GET', path);
  const body = r.body ? JSON.parse(r.body) : {};
  if (r.status !== 200) throw new ClientError((body as { error?: string }).error ?? `HTTP ${r.status}`, r.status === 404 ? 5 : 1);
  return body;
}

interface AttachmentRow {
  network: string; containerId: string; ifname: string; podNamespace?: string; podName?: string; hostIfname?: string;
  hostIfindex?: number; ips: string[]; mode?: string; state: string; attachedAt?: string; lastError?: string;
  owner?: { kind: string; name: string } | null;
}

interface PodReply {
  namespace: string; name: string; uid: string | null; labels: Record<string, string> | null;
  owner: { kind: string; name: string } | null; podIPs: string[]; phase: string | null; attachments: AttachmentRow[];
}

const ownerText = (o: { kind: string; name: string } | null | undefined) => (o ? `${o.kind}/${o.name}` : '-');

function attachmentTable(atts: AttachmentRow[]): string {
  const rows = [['NAMESPACE', 'POD', 'IFINDEX', 'HOST IF', 'IPS', 'MODE', 'STATE', 'SINCE', 'OWNER', 'CONTAINER']];
  for (const a of atts) {
    rows.push([
      a.podNamespace ?? '-', a.podName ?? '-', String(a.hostIfindex ?? '-'), a.hostIfname ?? '-', a.ips.join(',') || '-',
      a.mode ?? '-', a.state + (a.lastError ? ` (${a.lastError})` : ''), a.attachedAt ?? '-', ownerText(a.owner), a.containerId.slice(0, 12),
    ]);
  }
  return table(rows);
}

function podText(p: PodReply): string {
  const labels = p.labels ? Object.entries(p.labels).map(([k, v]) => `${k}=${v}`).join(',') || '-' : '(not known to the Kubernetes API)';
  const head = [
    `pod       ${p.namespace}/${p.name}`,
    `uid       ${p.uid ?? '-'}`,
    `phase     ${p.phase ?? '-'}`,
    `ips       ${p.podIPs.join(',') || '-'}`,
    `owner     ${ownerText(p.owner)}`,
    `labels    ${labels}`,
  ].join('\n');
  return `${head}\n\n${p.attachments.length ? attachmentTable(p.attachments) : 'no attachment on this node\n'}`;
}

/** Runs a CLI command; returns the exit code. */
export async function runCli(argv: string[], out: NodeJS.WritableStream = process.stdout): Promise<number> {
  let args: CliArgs;
  try {
    args = parseArgs(argv);
    const print = (v: unknown, text: () => string) => out.write(args.json ? JSON.stringify(v, null, 2) + '\n' : text());
    switch (args.command) {
      case 'status': {
        const s = (await get(args, '/v1/status')) as Record<string, unknown> & { attachments: Record<string, number> };
        print(s, () => Object.entries(s).map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join('\n') + '\n');
        return 0;
      }
      case 'pods': {
        const r = (await get(args, '/v1/attachments')) as { attachments: AttachmentRow[] };
        print(r, () => attachmentTable(r.attachments));
        return 0;
      }
      case 'pod': {
        const ref = args.rest[0] ?? '';
        const m = /^([^/]+)\/([^/]+)$/.exec(ref);
        if (!m) throw new ClientError('pod wants NAMESPACE/NAME', 2);
        const r = (await get(args, `/v1/pods/${encodeURIComponent(m[1])}/${encodeURIComponent(m[2])}`)) as PodReply;
        print(r, () => podText(r));
        return 0;
      }
      case 'topology': {
        const t = (await get(args, '/v1/topology')) as { 'switch-id': number; links: { id: number; name: string; 'ip-addresses': string[]; 'is-node-iface': boolean; pod?: { namespace: string; name: string } | null }[] };
        print(t, () => `switch id ${t['switch-id']}\n` + table([
          ['PORT', 'NAME', 'ADDRESSES', 'KIND', 'POD'],
          ...t.links.map((l) => [String(l.id), l.name, l['ip-addresses'].join(',') || '-', l['is-node-iface'] ? 'node' : 'pod', l.pod ? `${l.pod.namespace}/${l.pod.name}` : '-']),
        ]));
        return 0;
      }
      case 'watchlist': {
        const sub = args.rest[0] ?? 'get';
        if (sub === 'get') {
          const w = await get(args, '/v1/watchlist');
          out.write(JSON.stringify(w, null, 2) + '\n');
          return 0;
        }
        if (sub === 'set') {
          const file = args.rest[1];
          if (!file) throw new ClientError('watchlist set wants a FILE', 2);
          const r = await callApi(args.socket, 'PUT', '/v1/watchlist', readFileSync(file, 'utf8'));
          if (r.status !== 200) throw new ClientError(`watchlist refused: ${(JSON.parse(r.body) as { error: string }).error}`, 1);
          out.write(args.json ? r.body : 'watchlist replaced\n');
          return 0;
        }
        throw new ClientError(`unknown watchlist command ${sub}`, 2);
      }
      default:
        throw new ClientError(args.command ? `unknown command ${args.command}\n\n${CLI_USAGE}` : CLI_USAGE, 2);
    }
  } catch (e) {
    const code = e instanceof ClientError ? e.exitCode : 1;
    process.stderr.write(`int-host-reporter: ${(e as Error).message}\n`);
    return code;
  }
}
