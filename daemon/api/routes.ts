// The endpoints of the local API, over the agent's state.
import type { Agent } from '../agent/agent';
import { interfaceAddresses } from '../agent/node-interfaces';
import { counter, gauge, renderMetrics, type Metric } from '../metrics';
import { ApiError, parseNotice, type Route } from './server';
import { CNI_ADD_PATH, CNI_ATTACHMENT_PATH, CNI_DEL_PATH } from '../../plugin/notify';

export function apiRoutes(agent: Agent): Route[] {
  const reg = agent.registry;
  return [
    {
      method: 'POST', path: CNI_ADD_PATH,
      handle: ({ body }) => ({ status: 200, json: reg.added(parseNotice(body)) }),
    },
    {
      method: 'POST', path: CNI_DEL_PATH,
      handle: ({ body }) => {
        const n = parseNotice(body);
        reg.deleted(n);
        return { status: 200, json: { deleted: { network: n.network, containerId: n.containerId, ifname: n.ifname } } };
      },
    },
    {
      method: 'GET', path: CNI_ATTACHMENT_PATH,
      handle: ({ query }) => {
        const key = { network: query.get('network') ?? '', containerId: query.get('containerId') ?? '', ifname: query.get('ifname') ?? '' };
        const r = reg.get(key);
        if (!r) throw new ApiError(404, `unknown attachment ${key.network}/${key.containerId}/${key.ifname}`);
        return { status: 200, json: r };
      },
    },
    { method: 'GET', path: '/v1/attachments', handle: () => ({ status: 200, json: { attachments: reg.list() } }) },
    {
      method: 'GET', path: '/v1/pods/{namespace}/{name}',
      handle: ({ params }) => {
        const atts = reg.byPod(params.namespace, params.name);
        const pod = agent.podWatch?.get(params.namespace, params.name);
        if (atts.length === 0 && !pod) throw new ApiError(404, `pod ${params.namespace}/${params.name} is not known on this node`);
        return { status: 200, json: { namespace: params.namespace, name: params.name, pod: pod ?? null, attachments: atts } };
      },
    },
    { method: 'GET', path: '/v1/topology', public: true, handle: () => ({ status: 200, json: topology(agent) }) },
    { method: 'GET', path: '/api/v1/topology', public: true, handle: () => ({ status: 200, json: topology(agent) }) },
    { method: 'GET', path: '/v1/watchlist', handle: () => ({ status: 200, json: agent.watchlist.current.toDocument() }) },
    {
      method: 'PUT', path: '/v1/watchlist',
      handle: ({ body }) => {
        try {
          const w = agent.replaceWatchlist(body);
          return { status: 200, json: w.toDocument() };
        } catch (e) {
          if (agent.isWatchlistError(e)) throw new ApiError(400, e.message);
          throw e;
        }
      },
    },
    { method: 'GET', path: '/metrics', public: true, handle: () => ({ status: 200, text: renderMetrics(metrics(agent)), contentType: 'text/plain; version=0.0.4' }) },
    { method: 'GET', path: '/healthz', public: true, handle: () => ({ status: 200, json: { ok: true } }) },
    {
      method: 'GET', path: '/readyz', public: true,
      handle: () => ({ status: 200, json: { ready: true, kubernetes: agent.podWatch ? agent.podWatch.isReady : 'disabled' } }),
    },
    { method: 'GET', path: '/v1/status', handle: () => ({ status: 200, json: status(agent) }) },
  ];
}

function status(agent: Agent) {
  return {
    version: '0.1.0',
    startedAt: agent.startedAt.toISOString(),
    switchId: agent.switchId,
    collectors: agent.sender.stats().destinations.map((d) => ({ collector: d.collector, address: d.address, sent: d.sent, lastError: d.lastError })),
    dataInterfaces: agent.dataInterfaces,
    drops: agent.dropsEnabled,
    attachments: agent.registry.countByState(),
    watchlistRules: agent.watchlist.current.size,
    kubernetes: agent.podWatch ? { ready: agent.podWatch.isReady, pods: agent.podWatch.size } : null,
    pipeline: agent.pipeline.counters,
  };
}

/** The reference's topology: every port of this "switch", with the pods behind pod ports. */
function topology(agent: Agent) {
  const links = [
    ...agent.dataInterfaces.map((d) => ({ id: d.ifindex, name: d.ifname, 'ip-addresses': interfaceAddresses(d.ifname), 'is-node-iface': true })),
    ...agent.registry.list().filter((r) => r.hostIfindex !== undefined).map((r) => ({
      id: r.hostIfindex!, name: r.hostIfname ?? '', 'ip-addresses': r.ips, 'is-node-iface': false,
      pod: r.podName ? { namespace: r.podNamespace, name: r.podName, uid: r.podUid ?? null } : null,
    })),
  ];
  return { 'switch-id': agent.switchId, links };
}

function metrics(agent: Agent): Metric[] {
  const k = agent.datapath.kernelCounters();
  const r = agent.readerStats();
  const p = agent.pipeline.counters;
  const s = agent.sender.stats().total;
  const byState = agent.registry.countByState();
  const rc = agent.registry.counters;
  const out: Metric[] = [
    counter('int_datapath_ingress_packets_total', 'Packets seen by our ingress hooks.', k.ingress_pkts),
    counter('int_datapath_egress_packets_total', 'Packets seen by our egress hooks.', k.egress_pkts),
    counter('int_datapath_not_ip_packets_total', 'Packets passed without parsing (not IP, or truncated).', k.not_ip),
    counter('int_datapath_events_total', 'Events the kernel wrote to the perf buffer.', k.events),
    counter('int_datapath_events_lost_total', 'Events the perf buffer refused (full).', k.events_lost),
    counter('int_datapath_metadata_misses_total', 'Egress packets without ingress metadata.', k.meta_miss),
    counter('int_datapath_metadata_stale_total', 'Ingress metadata too old to be the packet\'s.', k.meta_stale),
    counter('int_datapath_filtered_total', 'Packets the in-kernel flow filter suppressed.', k.filtered),
    counter('int_datapath_drops_total', 'Drop events for packets seen at ingress.', k.drops),
    counter('int_reader_records_total', 'Records read from the perf buffer.', r?.records ?? 0),
    counter('int_reader_lost_total', 'Records the kernel reported lost to the reader.', r?.lost ?? 0),
    counter('int_pipeline_events_total', 'Events processed by the pipeline.', p.eventsRead),
    counter('int_pipeline_filtered_by_watchlist_total', 'Events no watchlist rule matched.', p.filteredByWatchlist),
    counter('int_pipeline_encode_errors_total', 'Events that could not be encoded.', p.encodeErrors),
    counter('int_reports_built_total', 'INT reports built.', p.reportsBuilt),
    counter('int_reports_queued_total', 'Reports queued for a collector.', s.queued),
    counter('int_reports_sent_total', 'Reports the kernel accepted for sending.', s.sent),
    counter('int_reports_send_errors_total', 'Reports whose send failed.', s.sendErrors),
    counter('int_reports_dropped_queue_full_total', 'Reports dropped because a collector queue was full.', s.droppedQueueFull),
    counter('int_reconcile_runs_total', 'Reconcile passes.', rc.runs),
    counter('int_reconcile_repairs_total', 'Attachments re-attached by reconcile.', rc.repairs),
    counter('int_reconcile_repair_failures_total', 'Failed repairs.', rc.repairFailures),
    counter('int_spool_drained_total', 'Plugin spool records processed.', rc.spoolDrained),
    { name: 'int_attachments', help: 'Pod attachments by state.', type: 'gauge', values: Object.entries(byState).map(([state, value]) => ({ labels: { state }, value })) },
    gauge('int_watchlist_rules', 'Rules of the watchlist in force.', agent.watchlist.current.size),
  ];
  return out;
}


