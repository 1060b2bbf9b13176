// The daemon's Prometheus metrics: every counter of every stage, named once here. The tables are
// typed by the stages' counter records, so a counter added to a stage without a metric name
// here fails to compile instead of going missing from /metrics.
import type { CounterName } from '../../bpf/events';
import type { PipelineCounters } from '../agent/pipeline';
import type { ReconcileCounters, AttachmentState } from '../agent/attachments';
import type { SenderCounters } from '../report/sender';
import type { PodWatchCounters } from '../k8s/pod-watch';
import { counter, gauge, type Metric } from '../metrics';

type Names<K extends string> = Record<K, [name: string, help: string]>;

const KERNEL: Names<CounterName> = {
  ingress_pkts: ['int_datapath_ingress_packets_total', 'Packets seen by our ingress hooks.'],
  egress_pkts: ['int_datapath_egress_packets_total', 'Packets seen by our egress hooks.'],
  not_ip: ['int_datapath_not_ip_packets_total', 'Packets passed without parsing (not IP, or truncated).'],
  events: ['int_datapath_events_total', 'Events the kernel wrote to the perf buffer.'],
  events_lost: ['int_datapath_events_lost_total', 'Events lost in the kernel: the perf buffer was full.'],
  meta_miss: ['int_datapath_metadata_misses_total', 'Egress packets without ingress metadata.'],
  meta_stale: ['int_datapath_metadata_stale_total', "Ingress metadata too old to be the packet's."],
  filtered: ['int_datapath_filtered_total', 'Packets the in-kernel flow filter suppressed.'],
  drops: ['int_datapath_drops_total', 'Drop events for packets seen at ingress.'],
};

const PIPELINE: Names<keyof PipelineCounters> = {
  eventsRead: ['int_pipeline_events_total', 'Events processed by the pipeline.'],
  dropEventsRead: ['int_pipeline_drop_events_total', 'Drop events processed by the pipeline.'],
  eventsLostKernel: ['int_pipeline_events_lost_total', 'Events the reader was told were lost (perf buffer full).'],
  filteredByWatchlist: ['int_pipeline_filtered_by_watchlist_total', 'Events no watchlist rule matched.'],
  reportsBuilt: ['int_reports_built_total', 'INT reports built.'],
  encodeErrors: ['int_pipeline_encode_errors_total', 'Events that could not be encoded.'],
  batches: ['int_pipeline_batches_total', 'Event batches processed.'],
};

const SENDER: Names<keyof SenderCounters> = {
  queued: ['int_reports_queued_total', 'Reports queued for a collector.'],
  sent: ['int_reports_sent_total', 'Reports the kernel accepted for sending.'],
  sendErrors: ['int_reports_send_errors_total', 'Reports whose send failed.'],
  socketErrors: ['int_reports_socket_errors_total', 'Asynchronous socket errors (ICMP errors) seen.'],
  droppedQueueFull: ['int_reports_dropped_queue_full_total', 'Reports dropped because a collector queue was full.'],
  droppedBadSize: ['int_reports_dropped_bad_size_total', 'Reports dropped for a bad size.'],
  resolveErrors: ['int_reports_resolve_errors_total', 'Failed collector name resolutions or connects.'],
};

const RECONCILE: Names<keyof ReconcileCounters> = {
  runs: ['int_reconcile_runs_total', 'Reconcile passes.'],
  repairs: ['int_reconcile_repairs_total', 'Attachments re-attached by the daemon.'],
  repairFailures: ['int_reconcile_repair_failures_total', 'Failed repairs.'],
  forgotten: ['int_reconcile_forgotten_total', 'Attachments forgotten (CNI DEL, or the veth is gone).'],
  spoolDrained: ['int_spool_drained_total', 'Plugin spool records processed.'],
  stalePinsRemoved: ['int_reconcile_stale_pins_removed_total', 'Pin directories of ours removed because their hook was gone.'],
  discovered: ['int_reconcile_discovered_total', 'Pods the Kubernetes API lists that ran before the install, attached by reconcile.'],
};

const KUBE: Names<'lists' | 'relists' | 'watchRestarts' | 'watchEvents' | 'errors'> = {
  lists: ['int_kube_lists_total', 'Successful pod LISTs.'],
  relists: ['int_kube_relists_total', 'Pod LISTs caused by 410 Gone.'],
  watchRestarts: ['int_kube_watch_restarts_total', 'Pod watches opened after the first one.'],
  watchEvents: ['int_kube_watch_events_total', 'Pod watch events received.'],
  errors: ['int_kube_errors_total', 'Failed pod LISTs and watches.'],
};

export interface MetricsSnapshot {
  kernel: Record<CounterName, bigint>;
  reader?: { records: number; lost: number };
  pipeline: PipelineCounters;
  collectors: (SenderCounters & { collector: string })[];
  reconcile: ReconcileCounters;
  attachments: Record<AttachmentState, number>;
  warningsSuppressed: number;
  kube: { counters: PodWatchCounters; ready: boolean; pods: number } | null;
  watchlistRules: number;
  /** drops found by the aging fallback (--drop-detection aging), absent with the tracepoint */
  agedDrops?: number;
}

function fromTable<K extends string>(table: Names<K>, values: Record<K, number | bigint>): Metric[] {
  return (Object.keys(table) as K[]).map((k) => counter(table[k][0], table[k][1], values[k]));
}

export function buildMetrics(s: MetricsSnapshot): Metric[] {
  const out: Metric[] = [
    ...fromTable(KERNEL, s.kernel),
    counter('int_reader_records_total', 'Records read from the perf buffer.', s.reader?.records ?? 0),
    counter('int_reader_lost_total', 'Records the kernel reported lost to the reader.', s.reader?.lost ?? 0),
    ...fromTable(PIPELINE, s.pipeline),
  ];
  for (const k of Object.keys(SENDER) as (keyof SenderCounters)[]) {
    const [name, help] = SENDER[k];
    out.push({ name, help, type: 'counter', values: s.collectors.map((c) => ({ labels: { collector: c.collector }, value: c[k] })) });
  }
  out.push(
    ...fromTable(RECONCILE, s.reconcile),
    {
      name: 'int_attachments', help: 'Pod attachments by state.', type: 'gauge',
      values: (['ok', 'missing', 'repairing'] as const).map((state) => ({ labels: { state }, value: s.attachments[state] })),
    },
    counter('int_log_warnings_suppressed_total', 'Repeated warnings not logged (rate limit per cause).', s.warningsSuppressed),
    gauge('int_watchlist_rules', 'Rules of the watchlist in force.', s.watchlistRules),
  );
  if (s.agedDrops !== undefined) {
    out.push(counter('int_drops_aged_total', 'Packets seen at ingress and not at egress within 2 s (aging fallback; includes local deliveries).', s.agedDrops));
  }
  if (s.kube) {
    out.push(
      ...fromTable(KUBE, s.kube.counters),
      gauge('int_kube_ready', '1 once the pod watch has listed the pods of this node.', s.kube.ready ? 1 : 0),
      gauge('int_kube_pods', 'Pods of this node known from the Kubernetes API.', s.kube.pods),
    );
  }
  return out;
}
