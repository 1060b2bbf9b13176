// Issue 4 benchmark: ADD and DEL latency of the bundled CNI plugin (real netns and veths, the
// daemon running, attach + notify for real) against node's bare start-up (`node -e 0`), measured
// interleaved in the same run so that both see the same machine state.
import { spawnSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { DaemonProcess, cniAdd, cniDel } from '../helpers/daemon';
import { createNode, type Pod } from '../helpers/netns';
import type { Scope } from '../helpers/scope';
import { UdpSink } from './common';
import { fmt, median, quantile, type BenchResult } from './report';

export interface PluginBenchOptions {
  /** measured runs of each command */
  n: number;
  pods: number;
  warmup: number;
}

export const PLUGIN_DEFAULTS: PluginBenchOptions = { n: 30, pods: 3, warmup: 3 };
const GOAL_FACTOR = 1.3;

function timed<T>(fn: () => T): { ms: number; r: T } {
  const t0 = performance.now();
  const r = fn();
  return { ms: performance.now() - t0, r };
}

export async function benchPlugin(scope: Scope, o: PluginBenchOptions, log: (s: string) => void): Promise<BenchResult> {
  const node = await createNode(scope);
  const pods: Pod[] = [];
  for (let i = 0; i < o.pods; i++) pods.push(await node.addPod({ label: 'cni' }));
  const remote = await node.addRemote({ label: 'crem' });
  const sink = await UdpSink.start(scope);
  const daemon = await DaemonProcess.start(scope, { collector: sink.address, dataInterface: remote.dataIfname });
  const bare: number[] = [];
  const add: number[] = [];
  const del: number[] = [];
  let live: { pod: Pod; id: string } | undefined;
  const net = 'benchnet';
  try {
    for (let i = -o.warmup; i < o.n; i++) {
      if (i === 0) log(`plugin: ${o.n} measured rounds (node -e 0, ADD, DEL)`);
      const pod = pods[((i % o.pods) + o.pods) % o.pods];
      const id = `bench-${scope.prefix}-${i + o.warmup}`;
      const b = timed(() => spawnSync(process.execPath, ['-e', '0'], { stdio: 'ignore', timeout: 20_000 }));
      if (b.r.status !== 0) throw new Error('node -e 0 failed');
      live = { pod, id };
      const a = timed(() => cniAdd(daemon, pod, id, `bench-pod-${i + o.warmup}`, net));
      if (a.r.code !== 0) throw new Error(`ADD failed (${a.r.code}): ${a.r.stdout}${a.r.stderr}`);
      const d = timed(() => cniDel(daemon, pod, id, net));
      if (d.r.code !== 0) throw new Error(`DEL failed (${d.r.code}): ${d.r.stdout}${d.r.stderr}`);
      live = undefined;
      if (i >= 0) {
        bare.push(b.ms);
        add.push(a.ms);
        del.push(d.ms);
      }
    }
  } finally {
    if (live) cniDel(daemon, live.pod, live.id, net);
  }
  const base = median(bare);
  const row = (label: string, xs: number[]) => [label, String(xs.length), fmt(median(xs)), fmt(quantile(xs, 0.9)), fmt(Math.min(...xs)), fmt(Math.max(...xs)), `${fmt(median(xs) / base, 2)} x`];
  const ratio = median(add) / base;
  return {
    tables: [{
      title: 'CNI plugin: latency of the bundled plugin vs node\'s bare start-up (ms)',
      head: ['command', 'runs', 'median', 'p90', 'min', 'max', 'median vs node -e 0'],
      rows: [row('node -e 0', bare), row('plugin ADD (attach + notify)', add), row('plugin DEL', del)],
      notes: [
        `Interleaved rounds (node -e 0, ADD, DEL) after ${o.warmup} warm-up rounds; ${o.pods} routed pods cycled; the daemon running with its pinned programs.`,
        `ADD: real host-veth lookup in the pod netns, TCX attach of both hooks with pinned links, notify over the daemon's unix socket. Goal: median ADD <= ${GOAL_FACTOR} x node -e 0.`,
      ],
    }],
    goals: [
      { benchmark: 'plugin', goal: `median ADD <= ${GOAL_FACTOR} x node -e 0`, measured: `${fmt(ratio, 2)} x (${fmt(median(add))} vs ${fmt(base)} ms)`, met: ratio <= GOAL_FACTOR },
      { benchmark: 'plugin', goal: 'DEL latency (report)', measured: `median ${fmt(median(del))} ms, p90 ${fmt(quantile(del, 0.9))} ms`, met: null },
    ],
  };
}
