// Issue 3 benchmark: datapath events to INT reports sent per second, with the losses at every
// stage, CPU per 10,000 reports/s and event-loop lag.
//   A. in process: our programs (flow filter interval 0: every packet an event) on a veth path
//      under a UDP flood of many flows, the real EventReader -> Pipeline -> ReportSender, and a
//      counting UDP sink in its own process; event-loop lag measured here (monitorEventLoopDelay).
//   B. the daemon itself (--report-interval-ms 0, a watchlist matching everything, pods attached
//      by the CNI plugin), same flood; CPU from /proc/<pid>/stat, losses from its /metrics.
//   C. the user-space ceiling: the same Pipeline + ReportSender on synthetic batches (frameBatch),
//      no kernel in the loop.
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { setImmediate as tick } from 'node:timers/promises';
import * as bpf from '../../bpf/index';
import { EventLayout, EventView, EVENT_TRACE, F_INGRESS, TupleLayout, frameBatch } from '../../bpf/events';
import { Pipeline } from '../../daemon/agent/pipeline';
import { callApi } from '../../daemon/cli/client';
import { ReportSender } from '../../daemon/report/sender';
import { Watchlist } from '../../daemon/watchlist';
import { parseWatchlistText } from '../../daemon/watchlist/rules';
import { DaemonProcess, cniAdd, watchlistFile } from '../helpers/daemon';
import { sleep } from '../helpers/exec';
import { createNode } from '../helpers/netns';
import type { Scope } from '../helpers/scope';
import { udpFlood } from '../helpers/traffic';
import { BenchDatapath, UdpSink, cpuSecondsOf } from './common';
import { fmt, fmtInt, median, type BenchResult, type Table } from './report';

export interface PipelineBenchOptions {
  trials: number;
  floodSeconds: number;
  floodFlows: number;
  syntheticSeconds: number;
}

export const PIPELINE_DEFAULTS: PipelineBenchOptions = { trials: 3, floodSeconds: 5, floodFlows: 64, syntheticSeconds: 3 };

const GOAL_RPS = 500_000;
const MATCH_ALL = 'rules:\n  - protocol: any\n    src-addr: 0.0.0.0/0\n    dst-addr: 0.0.0.0/0\n  - protocol: any\n    src-addr: ::/0\n    dst-addr: ::/0\n';

interface Trial {
  seconds: number;
  /** packets the flood receiver got / events the kernel emitted (A, B) or offered (C) */
  offered: number;
  eventsKernel: number;
  lostKernel: number;
  lostReader: number;
  built: number;
  sent: number;
  droppedQueue: number;
  sendErrors: number;
  delivered: number;
  cpuSeconds: number;
  lagP99Ms: number;
  lagMaxMs: number;
}

const rate = (t: Trial, n: number) => n / t.seconds;
/** Events lost to a full perf buffer: the kernel's failed outputs and the reader's lost samples
 * are the same events seen from both sides, so they count once. */
const perfLoss = (t: Trial) => Math.max(t.lostKernel, t.lostReader);
/** Every report lost on the way, wherever: perf buffer, sender, or between sender and sink. */
const trialLoss = (t: Trial) => perfLoss(t) + t.droppedQueue + t.sendErrors + Math.max(0, t.sent - t.delivered);
/** A trial's loss and where it happened. */
function lossText(t: Trial): string {
  if (trialLoss(t) === 0) return '0';
  const parts = [['perf buffer full', perfLoss(t)], ['sender', t.droppedQueue + t.sendErrors], ['sink', Math.max(0, t.sent - t.delivered)]] as const;
  return `${fmtInt(trialLoss(t))} (${parts.filter(([, n]) => n > 0).map(([w, n]) => `${w} ${fmtInt(n)}`).join(', ')})`;
}

function summaryRow(label: string, ts: Trial[], lag: boolean): string[] {
  const m = (f: (t: Trial) => number) => median(ts.map(f));
  const rps = m((t) => rate(t, t.delivered));
  const cpuShare = m((t) => t.cpuSeconds / t.seconds);
  const lossy = ts.filter((t) => trialLoss(t) > 0).length;
  return [
    label,
    String(ts.length),
    fmtInt(m((t) => rate(t, t.eventsKernel || t.offered))),
    fmtInt(m((t) => rate(t, t.built))),
    fmtInt(m((t) => rate(t, t.sent))),
    fmtInt(rps),
    fmtInt(m(perfLoss)),
    fmtInt(m((t) => t.droppedQueue + t.sendErrors)),
    fmtInt(m((t) => Math.max(0, t.sent - t.delivered))),
    lossy === 0 ? 'yes' : `no (${lossy} of ${ts.length} trials)`,
    `${fmt(cpuShare * 100)} %`,
    rps > 0 ? `${fmt((cpuShare * 100) / (rps / 10_000), 2)} %` : '-',
    lag ? fmt(m((t) => t.lagP99Ms), 1) : 'n/e',
    lag ? fmt(m((t) => t.lagMaxMs), 1) : 'n/e',
  ];
}

const HEAD = ['run', 'trials', 'events/s', 'reports built/s', 'reports sent/s', 'reports delivered/s', 'lost in perf buffer', 'dropped in sender',
  'lost at sink', 'zero loss', 'CPU (1 core = 100 %)', 'CPU per 10k rep/s', 'lag p99 ms', 'lag max ms'];

function newLag() {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  return {
    stop(): { p99: number; max: number } {
      h.disable();
      return { p99: h.percentile(99) / 1e6, max: h.max / 1e6 };
    },
  };
}

// --- A: in process, real datapath ------------------------------------------------------------

async function inProcess(scope: Scope, o: PipelineBenchOptions, log: (s: string) => void, pods: Awaited<ReturnType<typeof setupPods>>): Promise<{ trials: Trial[]; egressNs: number }> {
  const sink = await UdpSink.start(scope);
  const dp = BenchDatapath.load(scope, { constants: { report_interval_ns: 0n } });
  const sender = new ReportSender({ collectors: [sink.address] });
  scope.defer('close sender', () => void sender.close());
  await sender.ready();
  const wl = new Watchlist(parseWatchlistText(MATCH_ALL, 'bench watchlist'));
  const pipeline = new Pipeline(() => wl, sender, { switchId: 0x0a000001, hwId: sender.hwId }, new Uint8Array(0));
  dp.startReader((view, _records, lost) => pipeline.process(view, lost));
  dp.attachPods([pods.a, pods.b]);
  const trials: Trial[] = [];
  const egressNs: number[] = [];
  try {
    for (let i = 0; i < o.trials; i++) {
      log(`pipeline: in-process trial ${i + 1}/${o.trials}`);
      const k0 = dp.counters();
      const r0 = dp.readerStats()!;
      const p0 = { ...pipeline.counters };
      const s0 = sender.stats().total;
      const d0 = await sink.count();
      const e0 = dp.progStats(bpf.PROGRAMS.egress);
      const stats = bpf.enableRunTimeStats();
      const cpu0 = process.cpuUsage();
      const lag = newLag();
      const t0 = performance.now();
      const flood = await udpFlood(scope, { from: pods.a, to: pods.b, family: 4, flows: o.floodFlows, size: 64, durationMs: o.floodSeconds * 1000 });
      await sender.drain(1000);
      const seconds = (performance.now() - t0) / 1000;
      const l = lag.stop();
      const cpu = process.cpuUsage(cpu0);
      const e1 = dp.progStats(bpf.PROGRAMS.egress);
      stats.close();
      egressNs.push((e1.ns - e0.ns) / Math.max(1, e1.runs - e0.runs));
      await sleep(200);
      const k1 = dp.counters();
      const r1 = dp.readerStats()!;
      const s1 = sender.stats().total;
      trials.push({
        seconds,
        offered: flood.received,
        eventsKernel: Number(k1.events - k0.events),
        lostKernel: Number(k1.events_lost - k0.events_lost),
        lostReader: r1.lost - r0.lost,
        built: pipeline.counters.reportsBuilt - p0.reportsBuilt,
        sent: s1.sent - s0.sent,
        droppedQueue: s1.droppedQueueFull - s0.droppedQueueFull,
        sendErrors: s1.sendErrors - s0.sendErrors,
        delivered: (await sink.count()) - d0,
        cpuSeconds: (cpu.user + cpu.system) / 1e6,
        lagP99Ms: l.p99,
        lagMaxMs: l.max,
      });
    }
  } finally {
    dp.close();
    await sender.close();
  }
  return { trials, egressNs: median(egressNs) };
}

// --- B: the daemon process -------------------------------------------------------------------

function parseMetrics(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    // Counters with labels (one per collector) are summed over their label sets.
    const m = /^([a-z_]+)(?:\{[^}]*\})? ([0-9.eE+-]+)$/.exec(line);
    if (m) out[m[1]] = (out[m[1]] ?? 0) + Number(m[2]);
  }
  return out;
}

async function daemonRun(scope: Scope, o: PipelineBenchOptions, log: (s: string) => void, pods: Awaited<ReturnType<typeof setupPods>>): Promise<Trial[]> {
  const sink = await UdpSink.start(scope);
  const wl = watchlistFile(scope, MATCH_ALL);
  const daemon = await DaemonProcess.start(scope, {
    collector: sink.address, dataInterface: pods.remote.dataIfname, watchlist: wl, extraArgs: ['--report-interval-ms', '0'],
    // Reconcile at the production period, not the tests' fast one: measure the daemon as it runs.
    env: { INT_HOST_REPORTER_RECONCILE_INTERVAL_MS: '30000' },
  });
  for (const [pod, name] of [[pods.a, 'bench-a'], [pods.b, 'bench-b']] as const) {
    const r = cniAdd(daemon, pod, `cid-${name}-${scope.prefix}`, name);
    if (r.code !== 0) throw new Error(`CNI ADD of ${name} failed: ${r.stdout}${r.stderr}`);
  }
  const metrics = async () => {
    const r = await callApi(daemon.socket, 'GET', '/metrics', undefined, 5000);
    return parseMetrics(r.body ?? '');
  };
  const trials: Trial[] = [];
  for (let i = 0; i < o.trials; i++) {
    log(`pipeline: daemon trial ${i + 1}/${o.trials}`);
    const m0 = await metrics();
    const d0 = await sink.count();
    const c0 = cpuSecondsOf(daemon.proc.pid);
    const t0 = performance.now();
    const flood = await udpFlood(scope, { from: pods.a, to: pods.b, family: 4, flows: o.floodFlows, size: 64, durationMs: o.floodSeconds * 1000 });
    const seconds = (performance.now() - t0) / 1000;
    const c1 = cpuSecondsOf(daemon.proc.pid);
    await sleep(500);
    const m1 = await metrics();
    const d = (k: string) => (m1[k] ?? 0) - (m0[k] ?? 0);
    trials.push({
      seconds,
      offered: flood.received,
      eventsKernel: d('int_datapath_events_total'),
      lostKernel: d('int_datapath_events_lost_total'),
      lostReader: d('int_reader_lost_total'),
      built: d('int_reports_built_total'),
      sent: d('int_reports_sent_total'),
      droppedQueue: d('int_reports_dropped_queue_full_total'),
      sendErrors: d('int_reports_send_errors_total'),
      delivered: (await sink.count()) - d0,
      cpuSeconds: c1 - c0,
      lagP99Ms: NaN,
      lagMaxMs: NaN,
    });
  }
  await daemon.stop();
  return trials;
}

// --- C: synthetic batches ----------------------------------------------------------------------

/** A realistic trace event: IPv4 UDP, 64-byte payload, the whole 106-byte frame sampled. */
function syntheticRecord(flow: number): Buffer {
  const payload = 64;
  const frameLen = 14 + 20 + 8 + payload;
  const rec = Buffer.alloc(EventLayout.size + frameLen + ((8 - ((4 + EventLayout.size + frameLen) % 8)) % 8));
  const src = [10, 200, 0, 2];
  const dst = [10, 200, 0, 3];
  const sport = 40000 + flow;
  const dport = 5201;
  rec[EventLayout.type] = EVENT_TRACE;
  rec[EventLayout.flags] = F_INGRESS;
  rec.writeUInt16LE(frameLen, EventLayout.sampleLen);
  rec.writeUInt32LE(11, EventLayout.igIfindex);
  rec.writeUInt32LE(12, EventLayout.egIfindex);
  rec.writeUInt32LE(frameLen, EventLayout.pktLen);
  rec.writeBigUInt64LE(1_000_000_000n + BigInt(flow), EventLayout.igTs);
  rec.writeBigUInt64LE(1_000_012_000n + BigInt(flow), EventLayout.egTs);
  for (const base of [EventLayout.preNat, EventLayout.postNat]) {
    Buffer.from(src).copy(rec, base + TupleLayout.saddr);
    Buffer.from(dst).copy(rec, base + TupleLayout.daddr);
    rec.writeUInt16BE(sport, base + TupleLayout.sport);
    rec.writeUInt16BE(dport, base + TupleLayout.dport);
    rec[base + TupleLayout.proto] = 17;
    rec[base + TupleLayout.ipVersion] = 4;
  }
  const f = rec.subarray(EventLayout.size, EventLayout.size + frameLen);
  f.fill(0x02, 0, 12); // MACs
  f.writeUInt16BE(0x0800, 12);
  const ip = 14;
  f[ip] = 0x45;
  f.writeUInt16BE(20 + 8 + payload, ip + 2);
  f[ip + 8] = 64;
  f[ip + 9] = 17;
  Buffer.from(src).copy(f, ip + 12);
  Buffer.from(dst).copy(f, ip + 16);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += f.readUInt16BE(ip + i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  f.writeUInt16BE(~sum & 0xffff, ip + 10);
  const udp = ip + 20;
  f.writeUInt16BE(sport, udp);
  f.writeUInt16BE(dport, udp + 2);
  f.writeUInt16BE(8 + payload, udp + 4);
  f.fill(0x62, udp + 8);
  return rec;
}

/**
 * Feeds one synthetic batch of perTurn events per event-loop turn for `seconds`, as the reader
 * hands them over; `finish` (the sender's drain) counts in the elapsed time, CPU and lag.
 */
async function feedSynthetic(pipeline: Pipeline, seconds: number, perTurn: number, finish: () => Promise<void>) {
  const batch = frameBatch(Array.from({ length: perTurn }, (_, i) => syntheticRecord(i % 64)));
  const view = new EventView();
  const cpu0 = process.cpuUsage();
  const lag = newLag();
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  let offered = 0;
  while (performance.now() < end) {
    pipeline.process(view.reset(batch), 0);
    offered += perTurn;
    await tick();
  }
  await finish();
  const elapsed = (performance.now() - t0) / 1000;
  const l = lag.stop();
  const cpu = process.cpuUsage(cpu0);
  return { offered, seconds: elapsed, cpuSeconds: (cpu.user + cpu.system) / 1e6, lagP99Ms: l.p99, lagMaxMs: l.max };
}

async function synthetic(scope: Scope, seconds: number, perTurn: number, send = true): Promise<Trial> {
  const wl = new Watchlist(parseWatchlistText(MATCH_ALL, 'bench watchlist'));
  if (!send) {
    // Match + encode only: the sender replaced by a counter, to separate the two costs.
    let handed = 0;
    const nullSender = { send: () => void handed++ } as unknown as ReportSender;
    const pipeline = new Pipeline(() => wl, nullSender, { switchId: 0x0a000001, hwId: 0 }, new Uint8Array(0));
    const f = await feedSynthetic(pipeline, seconds, perTurn, async () => undefined);
    return {
      ...f, eventsKernel: 0, lostKernel: 0, lostReader: 0, built: pipeline.counters.reportsBuilt,
      sent: handed, droppedQueue: 0, sendErrors: 0, delivered: handed,
    };
  }
  const sink = await UdpSink.start(scope);
  const sender = new ReportSender({ collectors: [sink.address] });
  scope.defer('close sender', () => void sender.close());
  await sender.ready();
  const pipeline = new Pipeline(() => wl, sender, { switchId: 0x0a000001, hwId: sender.hwId }, new Uint8Array(0));
  const f = await feedSynthetic(pipeline, seconds, perTurn, () => sender.drain(1000).then(() => undefined));
  await sleep(200);
  const s = sender.stats().total;
  const delivered = await sink.count();
  await sender.close();
  sink.proc.kill();
  return {
    ...f, eventsKernel: 0, lostKernel: 0, lostReader: 0, built: pipeline.counters.reportsBuilt,
    sent: s.sent, droppedQueue: s.droppedQueueFull, sendErrors: s.sendErrors, delivered,
  };
}

async function setupPods(scope: Scope) {
  const node = await createNode(scope);
  const a = await node.addPod({ label: 'psrc' });
  const b = await node.addPod({ label: 'pdst' });
  const remote = await node.addRemote({ label: 'prem' });
  return { a, b, remote };
}

export async function benchPipeline(scope: Scope, o: PipelineBenchOptions, log: (s: string) => void): Promise<BenchResult> {
  const pods = await setupPods(scope);
  const a = await inProcess(scope, o, log, pods);
  const b = await daemonRun(scope, o, log, pods);
  // Reader-sized batches (64 KiB, about 280 events) and batches the size of the sender's flush.
  const synth: Record<string, Trial[]> = { 280: [], 64: [], 32: [] };
  const encodeOnly: Trial[] = [];
  for (let i = 0; i < o.trials; i++) {
    for (const n of Object.keys(synth)) {
      log(`pipeline: synthetic ${n} events/turn, trial ${i + 1}/${o.trials}`);
      synth[n].push(await synthetic(scope, o.syntheticSeconds, Number(n)));
    }
    encodeOnly.push(await synthetic(scope, o.syntheticSeconds, 280, false));
  }
  const floodPps = median(a.trials.map((t) => t.offered / t.seconds));
  const tables: Table[] = [{
    title: 'Pipeline: events -> INT reports delivered to a UDP sink (report interval 0, watchlist matching everything)',
    head: HEAD,
    rows: [
      summaryRow(`A. in process, veth flood (${o.floodFlows} flows)`, a.trials, true),
      summaryRow(`B. daemon process, veth flood (${o.floodFlows} flows)`, b, false),
      ...Object.entries(synth).map(([n, ts]) => summaryRow(`C. synthetic, ${n} events per loop turn`, ts, true)),
      summaryRow('D. synthetic, match + encode only (no sending)', encodeOnly, true),
    ],
    notes: [
      `Medians of ${o.trials} trials, except "zero loss", which holds only when every trial lost nothing. Reports lost per trial: ` +
        `A ${a.trials.map(lossText).join(' / ')}, B ${b.map(lossText).join(' / ')}.`,
      `A and B: ${o.floodSeconds} s UDP floods of 64-byte datagrams between two pods (about ${fmtInt(floodPps)} packets/s reached the receiver in A).`,
      'CPU: A and C = this process (pipeline thread + native reader thread), from process.cpuUsage(); B = the daemon pid, utime+stime from /proc/<pid>/stat.',
      'Lag: monitorEventLoopDelay in this process (A, C). The daemon exposes no event-loop metric: B lag not exposed (n/e).',
      'Losses: perf buffer = events the kernel could not output because the buffer was full (the events_lost counter; the reader sees the same events as lost samples), sender = dropped from its bounded queue or failed sends, sink = sent but never reached the sink\'s socket.',
      'Delivered = datagrams that reached the sink\'s socket: read by the sink process, or dropped from its receive buffer because a Node sink reads one datagram per callback (the kernel\'s count in /proc/net/udp).',
      `Kernel cost with an event per packet: int_egress ${fmt(a.egressNs)} ns/run (run-time statistics during A).`,
      'C feeds one batch per event-loop turn; the sender queues reports in a ring per collector and flushes them with one sendmmsg (UDP GSO for runs of equal-sized reports) per turn.',
      'D: the same batches through watchlist match + encode with the sender replaced by a counter (the cost of user-space work before the socket).',
    ],
  }];
  const zeroLoss = (ts: Trial[]) => ts.every((t) => trialLoss(t) === 0);
  const bestZero = (ts: Trial[]) => (zeroLoss(ts) ? median(ts.map((t) => t.delivered / t.seconds)) : NaN);
  const rpsA = median(a.trials.map((t) => t.delivered / t.seconds));
  const rpsB = median(b.map((t) => t.delivered / t.seconds));
  const ceiling = Math.max(...Object.values(synth).map((ts) => median(ts.map((t) => t.delivered / t.seconds))));
  const zeroSynth = Math.max(...Object.values(synth).map(bestZero).filter(Number.isFinite), 0);
  const cpu10k = (ts: Trial[]) => {
    const share = median(ts.map((t) => t.cpuSeconds / t.seconds));
    const r = median(ts.map((t) => t.delivered / t.seconds));
    return (share * 100) / (r / 10_000);
  };
  return {
    tables,
    goals: [
      { benchmark: 'pipeline', goal: `>= ${fmtInt(GOAL_RPS)} reports/s, zero loss, one core (daemon, veth flood)`,
        measured: `${fmtInt(rpsB)} reports/s, ${zeroLoss(b) ? 'zero loss' : 'with loss'} (flood-limited)`, met: rpsB >= GOAL_RPS && zeroLoss(b) },
      { benchmark: 'pipeline', goal: `>= ${fmtInt(GOAL_RPS)} reports/s (in process, veth flood)`,
        measured: `${fmtInt(rpsA)} reports/s, ${zeroLoss(a.trials) ? 'zero loss' : 'with loss'}`, met: rpsA >= GOAL_RPS && zeroLoss(a.trials) },
      { benchmark: 'pipeline', goal: `user-space ceiling (synthetic) >= ${fmtInt(GOAL_RPS)} reports/s`,
        measured: `${fmtInt(ceiling)} reports/s max; ${zeroSynth ? `${fmtInt(zeroSynth)} with zero loss` : 'none with zero loss'}`, met: ceiling >= GOAL_RPS && zeroSynth >= GOAL_RPS },
      { benchmark: 'pipeline', goal: `match + encode alone >= ${fmtInt(GOAL_RPS)} events/s (synthetic)`,
        measured: `${fmtInt(median(encodeOnly.map((t) => t.built / t.seconds)))} events/s`, met: median(encodeOnly.map((t) => t.built / t.seconds)) >= GOAL_RPS },
      { benchmark: 'pipeline', goal: 'CPU per 10k reports/s (report)', measured: `daemon ${fmt(cpu10k(b), 2)} %, in-process ${fmt(cpu10k(a.trials), 2)} % of a core`, met: null },
      { benchmark: 'pipeline', goal: 'event-loop lag p99 under load (report; reader goal max 20 ms)',
        measured: `${fmt(median(a.trials.map((t) => t.lagP99Ms)))} ms p99, ${fmt(median(a.trials.map((t) => t.lagMaxMs)))} ms max (in process)`,
        met: median(a.trials.map((t) => t.lagMaxMs)) <= 20 },
    ],
  };
}
