// The endpoints of the local API, over the agent's state. Routes marked public are also served on
// the optional TCP listener (--metrics-listen): metrics and topology only, nothing that changes
// state or names pods beyond what the topology already says. Routes marked health (/healthz,
// /readyz) are also served on --health-listen.
//
// The routes see the agent through ApiAgent (not the Agent class), so api/ and agent/ do not
// import each other: daemon/main.ts hands the agent to apiRoutes.
import { attachmentKeyOfQuery, CNI_ADD_PATH, CNI_ATTACHMENT_PATH, CNI_DEL_PATH } from '../../protocol/endpoints';
import type { AttachmentNotice } from '../../protocol/notice';
import { NoticeError, parseNotice } from '../../protocol/notice-validate';
import type { AttachmentRegistry } from '../agent/attachments';
import type { NodeDatapath } from '../agent/datapath';
import type { Pipeline } from '../agent/pipeline';
import type { Readiness } from '../agent/readiness';
import type { WarnLimiter } from '../agent/warn-limiter';
import type { PodWatch } from '../k8s/pod-watch';
import { renderMetrics } from '../metrics';
import type { ReportSender } from '../report/sender';
import { WatchlistError, type Watchlist, type WatchlistStore } from '../watchlist';
import { ApiError, type Route } from './server';
import { attachmentsView, podView, topologyView, type ViewSource } from './views';
import { buildMetrics, type MetricsSnapshot } from './metrics-view';

/** What the API reads and changes of the running agent (daemon/agent/agent.ts implements it). */
export interface ApiAgent {
  readonly registry: AttachmentRegistry;
  readonly podWatch: PodWatch | null;
  /** why there is no pod watch, when there is none */
  readonly podWatchDisabled: string | null;
  readonly dataInterfaces: ViewSource['dataInterfaces'];
  readonly switchId: number;
  readonly startedAt: Date;
  readonly dropDetection: string;
  readonly watchlist: WatchlistStore;
  readonly sender: Pick<ReportSender, 'stats'>;
  readonly pipeline: Pick<Pipeline, 'counters'>;
  readonly datapath: Pick<NodeDatapath, 'kernelCounters'>;
  readonly warnings: Pick<WarnLimiter, 'suppressed'>;
  /** a bad watchlist throws WatchlistError and changes nothing */
  replaceWatchlist(body: string): Watchlist;
  readiness(): Readiness;
  readerStats(): { records: number; lost: number } | undefined;
  agedDrops(): number | undefined;
}

/** A notice body, or a 400 naming what is wrong with it. */
function notice(body: string): AttachmentNotice {
  try {
    return parseNotice(body);
  } catch (e) {
    if (e instanceof NoticeError) throw new ApiError(400, e.message);
    throw e;
  }
}

export function apiRoutes(agent: ApiAgent): Route[] {
  const reg = agent.registry;
  const src: ViewSource = {
    attachments: () => reg.list(),
    pod: (namespace, name) => agent.podWatch?.get(namespace, name),
    dataInterfaces: agent.dataInterfaces,
    switchId: agent.switchId,
  };
  return [
    {
      method: 'POST', path: CNI_ADD_PATH,
      handle: ({ body }) => ({ status: 200, json: reg.added(notice(body)) }),
    },
    {
      method: 'POST', path: CNI_DEL_PATH,
      handle: ({ body }) => {
        const n = notice(body);
        reg.deleted(n);
        return { status: 200, json: { deleted: { network: n.network, containerId: n.containerId, ifname: n.ifname } } };
      },
    },
    {
      method: 'GET', path: CNI_ATTACHMENT_PATH,
      handle: ({ query }) => {
        const key = attachmentKeyOfQuery(query);
        const r = reg.get(key);
        if (!r) throw new ApiError(404, `unknown attachment ${key.network}/${key.containerId}/${key.ifname}`);
        return { status: 200, json: r };
      },
    },
    { method: 'GET', path: '/v1/attachments', handle: () => ({ status: 200, json: attachmentsView(src) }) },
    {
      method: 'GET', path: '/v1/pods/{namespace}/{name}',
      handle: ({ params }) => {
        const pod = podView(src, params.namespace, params.name);
        if (!pod) {
          throw new ApiError(404, `pod ${params.namespace}/${params.name} is not known on this node: no attachment of it`
            + (agent.podWatch ? ` and the Kubernetes API lists no such pod on node ${agent.podWatch.nodeName}` : ' (no Kubernetes pod watch)'));
        }
        return { status: 200, json: pod };
      },
    },
    { method: 'GET', path: '/v1/topology', public: true, handle: () => ({ status: 200, json: topologyView(src) }) },
    { method: 'GET', path: '/api/v1/topology', public: true, handle: () => ({ status: 200, json: topologyView(src) }) },
    { method: 'GET', path: '/v1/watchlist', handle: () => ({ status: 200, json: agent.watchlist.current.toDocument() }) },
    {
      method: 'PUT', path: '/v1/watchlist',
      handle: ({ body }) => {
        try {
          const w = agent.replaceWatchlist(body);
          return { status: 200, json: w.toDocument() };
        } catch (e) {
          if (e instanceof WatchlistError) throw new ApiError(400, e.message);
          throw e;
        }
      },
    },
    {
      method: 'GET', path: '/metrics', public: true,
      handle: () => ({ status: 200, text: renderMetrics(buildMetrics(snapshot(agent))), contentType: 'text/plain; version=0.0.4' }),
    },
    // Liveness: the event loop answers. Readiness: every check of agent/readiness.ts passes (503
    // otherwise, with each check's message, so `kubectl describe` and `status` say what is missing).
    { method: 'GET', path: '/healthz', health: true, handle: () => ({ status: 200, json: { ok: true } }) },
    {
      method: 'GET', path: '/readyz', health: true,
      handle: () => {
        const r = agent.readiness();
        return { status: r.ready ? 200 : 503, json: r };
      },
    },
    { method: 'GET', path: '/v1/status', handle: () => ({ status: 200, json: status(agent) }) },
  ];
}

function status(agent: ApiAgent) {
  return {
    version: '0.1.0',
    startedAt: agent.startedAt.toISOString(),
    switchId: agent.switchId,
    collectors: agent.sender.stats().destinations.map((d) => ({ collector: d.collector, address: d.address, sent: d.sent, lastError: d.lastError })),
    dataInterfaces: agent.dataInterfaces,
    drops: agent.dropDetection,
    attachments: agent.registry.countByState(),
    watchlistRules: agent.watchlist.current.size,
    kubernetes: agent.podWatch
      ? { ready: agent.podWatch.isReady, pods: agent.podWatch.size, server: agent.podWatch.server, lastError: agent.podWatch.counters().lastError }
      : { disabled: agent.podWatchDisabled },
    pipeline: agent.pipeline.counters,
    readiness: agent.readiness(),
  };
}

function snapshot(agent: ApiAgent): MetricsSnapshot {
  const pw = agent.podWatch;
  return {
    kernel: agent.datapath.kernelCounters(),
    reader: agent.readerStats(),
    pipeline: agent.pipeline.counters,
    collectors: agent.sender.stats().destinations,
    reconcile: agent.registry.counters,
    attachments: agent.registry.countByState(),
    warningsSuppressed: agent.warnings.suppressed,
    kube: pw ? { counters: pw.counters(), ready: pw.isReady, pods: pw.size } : null,
    watchlistRules: agent.watchlist.current.size,
    agedDrops: agent.agedDrops(),
  };
}
