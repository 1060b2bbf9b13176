// Issues 4 and 9 benchmark: ADD and DEL latency of the CNI plugin as installed (the static
// launcher starting the plugin's own Node runtime; real netns and veths, the daemon running, attach
// + notify for real) against node's bare start-up (`node -e 0`) and against the same bundle run by
// the host's node (how the plugin ran before it carried its runtime), interleaved in the same run
// so that every arm sees the same machine state. Also the size of what lands in the CNI bin dir.
import { spawnSync } from 'node:child_process';
import { readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { DaemonProcess, cniAdd, cniDel } from '../helpers/daemon';
import { PLUGIN_DIST } from '../helpers/runtime';
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
/** the self-contained plugin may be at most this much slower than the bundle on the host's node */
const GOAL_VS_HOST_NODE = 1.1;

/** The image `npm run image` builds, and its size when it has been built. */
function imageSize(): { name: string; bytes?: number } {
  const version = (JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version;
  const name = `localhost/int-host-reporter:${version}`;
  const r = spawnSync('podman', ['image', 'inspect', '--format', '{{.Size}}', name], { encoding: 'utf8' });
  return r.status === 0 ? { name, bytes: Number(r.stdout.trim()) } : { name };
}

/** Bytes under a directory, following nothing (what `du --apparent-size -b` counts for files). */
function treeBytes(dir: string): number {
  const r = spawnSync('du', ['-s', '-b', dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`du ${dir}: ${r.stderr}`);
  return Number(r.stdout.split(/\s/)[0]);
}

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
  // The same bundle, run by the host's node: the plugin as it was before it carried its runtime.
  const build = realpathSync(join(PLUGIN_DIST, 'int-host-reporter.d', 'current'));
  const onHostNode = [process.execPath, join(build, 'plugin.cjs')];
  const bare: number[] = [];
  const add: number[] = [];
  const del: number[] = [];
  const addHost: number[] = [];
  const delHost: number[] = [];
  let live: { pod: Pod; id: string; plugin?: readonly string[] } | undefined;
  const net = 'benchnet';
  const addDel = (pod: Pod, id: string, name: string, plugin?: readonly string[]): { add: number; del: number } => {
    live = { pod, id, plugin };
    const a = timed(() => cniAdd(daemon, pod, id, name, net, plugin));
    if (a.r.code !== 0) throw new Error(`ADD failed (${a.r.code}): ${a.r.stdout}${a.r.stderr}`);
    const d = timed(() => cniDel(daemon, pod, id, net, plugin));
    if (d.r.code !== 0) throw new Error(`DEL failed (${d.r.code}): ${d.r.stdout}${d.r.stderr}`);
    live = undefined;
    return { add: a.ms, del: d.ms };
  };
  try {
    for (let i = -o.warmup; i < o.n; i++) {
      if (i === 0) log(`plugin: ${o.n} measured rounds (node -e 0, ADD + DEL as installed, ADD + DEL on the host's node)`);
      const pod = pods[((i % o.pods) + o.pods) % o.pods]!;
      const k = i + o.warmup;
      // The plugin's environment (runPlugin passes PATH and the CNI variables only): inherited
      // variables such as NODE_EXTRA_CA_CERTS cost node tens of ms at start-up.
      const b = timed(() => spawnSync(process.execPath, ['-e', '0'], { stdio: 'ignore', timeout: 20_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } }));
      if (b.r.status !== 0) throw new Error('node -e 0 failed');
      // Alternate which arm goes first, so neither always follows the bare start-up.
      const arms = [() => addDel(pod, `bench-${scope.prefix}-${k}`, `bench-pod-${k}`), () => addDel(pod, `bench-${scope.prefix}-h${k}`, `bench-pod-h${k}`, onHostNode)];
      const order = i % 2 === 0 ? [0, 1] : [1, 0];
      const times: { add: number; del: number }[] = [];
      for (const a of order) times[a] = arms[a]!();
      if (i >= 0) {
        bare.push(b.ms);
        add.push(times[0]!.add);
        del.push(times[0]!.del);
        addHost.push(times[1]!.add);
        delHost.push(times[1]!.del);
      }
    }
  } finally {
    const l = live as { pod: Pod; id: string; plugin?: readonly string[] } | undefined;
    if (l) cniDel(daemon, l.pod, l.id, net, l.plugin);
  }
  const base = median(bare);
  const row = (label: string, xs: number[]) => [label, String(xs.length), fmt(median(xs)), fmt(quantile(xs, 0.9)), fmt(Math.min(...xs)), fmt(Math.max(...xs)), `${fmt(median(xs) / base, 2)} x`];
  const ratio = median(add) / base;
  const vsHost = median(add) / median(addHost);
  const binBytes = treeBytes(PLUGIN_DIST);
  const nodeBytes = treeBytes(join(build, 'node'));
  const mb = (n: number) => fmt(n / 1e6, 1);
  const image = imageSize();
  return {
    tables: [{
      title: 'CNI plugin: latency as installed (own runtime) vs the same bundle on the host\'s node vs node\'s bare start-up (ms)',
      head: ['command', 'runs', 'median', 'p90', 'min', 'max', 'median vs node -e 0'],
      rows: [
        row('node -e 0', bare),
        row('plugin ADD, as installed (launcher + own node)', add),
        row('plugin ADD, bundle on the host\'s node', addHost),
        row('plugin DEL, as installed', del),
        row('plugin DEL, bundle on the host\'s node', delHost),
      ],
      notes: [
        `Interleaved rounds (node -e 0, then both ADD + DEL arms in alternating order) after ${o.warmup} warm-up rounds; ${o.pods} routed pods cycled; the daemon running with its pinned programs.`,
        `ADD: real host-veth lookup in the pod netns, TCX attach of both hooks with pinned links, notify over the daemon's unix socket. Goals: median ADD <= ${GOAL_FACTOR} x node -e 0, and as installed <= ${GOAL_VS_HOST_NODE} x the bundle on the host's node.`,
        `What lands in the CNI bin dir (dist/cni): ${mb(binBytes)} MB, of which the Node 20 binary is ${mb(nodeBytes)} MB.`,
        image.bytes === undefined ? `Image: ${image.name} not built (npm run image).` : `Image ${image.name}: ${mb(image.bytes)} MB (podman's size; the node binary is stored once, shared by the daemon and the plugin layout).`,
      ],
    }],
    goals: [
      { benchmark: 'plugin', goal: `median ADD <= ${GOAL_FACTOR} x node -e 0`, measured: `${fmt(ratio, 2)} x (${fmt(median(add))} vs ${fmt(base)} ms)`, met: ratio <= GOAL_FACTOR },
      { benchmark: 'plugin', goal: `ADD as installed <= ${GOAL_VS_HOST_NODE} x the bundle on the host's node`, measured: `${fmt(vsHost, 2)} x (${fmt(median(add))} vs ${fmt(median(addHost))} ms)`, met: vsHost <= GOAL_VS_HOST_NODE },
      { benchmark: 'plugin', goal: 'DEL latency (report)', measured: `median ${fmt(median(del))} ms, p90 ${fmt(quantile(del, 0.9))} ms`, met: null },
      { benchmark: 'plugin', goal: 'size of what lands in the CNI bin dir (report)', measured: `${mb(binBytes)} MB (node ${mb(nodeBytes)} MB)`, met: null },
      { benchmark: 'plugin', goal: 'image size (report)', measured: image.bytes === undefined ? 'not built' : `${mb(image.bytes)} MB`, met: null },
    ],
  };
}
