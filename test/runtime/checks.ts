// Assertions shared by the real-runtime tests: our programs on a pod's host veth, the daemon's
// records, flow reports with exact ports and tuples, and "nothing of ours is left".
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as bpf from '../../bpf/index';
import { PinLayout, PROGRAMS } from '../../bpf/pins';
import { listPodAttachments } from '../../bpf/attachments';
import type { AttachmentRecord } from '../../daemon/agent/attachments';
import type { DecodedReport } from '../../daemon/collector/decoder';
import type { ExpectedTuple } from '../helpers/datapath';
import { IPPROTO } from '../../bpf/events';
import { ipJson } from '../helpers/exec';
import type { DaemonProcess, ReportSink } from '../helpers/daemon';
import type { Container } from '../helpers/runtime';
import type { Scope } from '../helpers/scope';
import { watchlistFile } from '../helpers/daemon';

export const SWITCH_ID = 0x0a0b0c0e;

/** A watchlist reporting every packet from (and to) the given IPv4 prefixes. */
export function watchPrefixes(scope: Scope, prefixes: string[]): string {
  return watchlistFile(scope, `rules:\n${prefixes.map((p) => `  - src-addr: ${p}\n    dst-addr: 0.0.0.0/0\n`).join('')}`);
}

/** Our ingress and egress programs, and only those of ours, on the container's host veth. */
export function assertAttached(c: Container, label = c.name): number[] {
  const ours = (d: bpf.Direction) => bpf.query(c.hostIfindex, d).filter((h) => h.ours);
  const ing = ours('ingress');
  const eg = ours('egress');
  assert.deepEqual(ing.map((h) => h.name), [PROGRAMS.ingress], `${label}: our ingress program on ${c.hostIfname} (${c.hostIfindex})`);
  assert.deepEqual(eg.map((h) => h.name), [PROGRAMS.egress], `${label}: our egress program on ${c.hostIfname} (${c.hostIfindex})`);
  return [ing[0]!.progId, eg[0]!.progId];
}

export async function attachments(daemon: DaemonProcess): Promise<AttachmentRecord[]> {
  const r = await daemon.api<{ attachments: AttachmentRecord[] }>('GET', '/v1/attachments');
  assert.equal(r.status, 200, 'GET /v1/attachments');
  return r.json.attachments;
}

/** Polls /v1/attachments until pred holds (or the timeout); returns the last list. */
export async function waitAttachments(daemon: DaemonProcess, pred: (a: AttachmentRecord[]) => boolean, timeoutMs = 5000): Promise<AttachmentRecord[]> {
  const deadline = Date.now() + timeoutMs;
  let list = await attachments(daemon);
  while (!pred(list) && Date.now() < deadline) {
    await sleep(100);
    list = await attachments(daemon);
  }
  return list;
}

export interface ExpectedRecord {
  network: string;
  container: Container;
  /** K8S_POD_NAME the runtime passed (undefined: none) */
  podName?: string;
}

/** The daemon knows exactly these attachments, each state ok with the container's facts. */
export function assertRecords(list: AttachmentRecord[], expected: ExpectedRecord[], label: string): void {
  const got = list.map((r) => ({
    network: r.network, containerId: r.containerId, ifname: r.ifname, state: r.state, podName: r.podName,
    hostIfindex: r.hostIfindex, hostIfname: r.hostIfname, ips: r.ips, mode: r.mode, netns: r.netns,
  })).sort((a, b) => a.containerId.localeCompare(b.containerId));
  const want = expected.map((e) => ({
    network: e.network, containerId: e.container.cniContainerId, ifname: 'eth0', state: 'ok', podName: e.podName,
    hostIfindex: e.container.hostIfindex, hostIfname: e.container.hostIfname, ips: [e.container.ipv4], mode: 'tcx',
    netns: e.container.netnsPath,
  })).sort((a, b) => a.containerId.localeCompare(b.containerId));
  assert.deepEqual(got, want, `${label}: the daemon's attachment records`);
}

/** A report's inner tuple to look for: the same fields the datapath tests match events on. */
export type FlowMatch = ExpectedTuple;

function matches(r: DecodedReport, m: FlowMatch): boolean {
  const i = r.inner;
  return r.kind === 'flow' && i.src === m.src && i.dst === m.dst && i.protocol === m.protocol &&
    (m.srcPort === undefined || i.srcPort === m.srcPort) && (m.dstPort === undefined || i.dstPort === m.dstPort) &&
    (m.icmpType === undefined || i.icmpType === m.icmpType);
}

/** Waits for a flow report of exactly this packet and checks its ports and header fields. */
export async function expectFlowReport(sink: ReportSink, m: FlowMatch, ingress: number, egress: number, label: string, timeoutMs = 5000): Promise<DecodedReport> {
  const deadline = Date.now() + timeoutMs;
  let hit: DecodedReport | undefined;
  while (!(hit = sink.reports.find((r) => matches(r, m))) && Date.now() < deadline) await sleep(20);
  assert.ok(hit, `${label}: a flow report for ${JSON.stringify(m)} (got ${sink.reports.length} reports: ${
    JSON.stringify(sink.reports.slice(-5).map((r) => ({ ...r.inner, i: r.ingressPort, e: r.egressPort })))})`);
  assert.deepEqual(
    { ingressPort: hit.ingressPort, egressPort: hit.egressPort, switchId: hit.switchId, version: hit.version, dropped: hit.dropped, ipVersion: hit.inner.ipVersion },
    { ingressPort: ingress, egressPort: egress, switchId: SWITCH_ID, version: 0, dropped: false, ipVersion: 4 },
    `${label}: report ports and header`,
  );
  assert.equal(hit.inner.ipChecksumValid, true, `${label}: inner IPv4 checksum valid`);
  assert.ok(hit.hopLatencyNs !== undefined && hit.hopLatencyNs < 1e9, `${label}: hop latency present and below 1 s`);
  return hit;
}

/** Every report in the sink that is about one of these addresses names only the given ports. */
export function reportPortsWithin(sink: ReportSink, addrs: string[], ports: number[]): DecodedReport[] {
  return sink.reports.filter((r) => addrs.includes(r.inner.src ?? '') && addrs.includes(r.inner.dst ?? '') &&
    !(ports.includes(r.ingressPort ?? -1) && ports.includes(r.egressPort ?? -1)));
}

/** Spool record files (valid JSON required) in the daemon's spool dir. */
export function spoolRecords(spoolDir: string): Array<Record<string, unknown>> {
  if (!existsSync(spoolDir)) return [];
  return readdirSync(spoolDir).filter((f) => f.endsWith('.json') && !f.startsWith('.')).map((f) => {
    const text = readFileSync(join(spoolDir, f), 'utf8');
    try {
      return JSON.parse(text) as Record<string, unknown>;
    } catch (e) {
      throw new Error(`spool file ${f} is not valid JSON: ${(e as Error).message}: ${text.slice(0, 200)}`);
    }
  });
}

/** Programs with these ids on any hook of any root-namespace interface (should be none after DEL). */
export async function hooksHolding(progIds: number[]): Promise<string[]> {
  const ids = new Set(progIds);
  const out: string[] = [];
  for (const l of await ipJson<{ ifindex: number; ifname: string }>(null, ['link', 'show'])) {
    for (const d of ['ingress', 'egress'] as const) {
      let hooks: bpf.HookProgram[] = [];
      try {
        hooks = bpf.query(l.ifindex, d);
      } catch {
        continue; // gone meanwhile
      }
      for (const h of hooks) if (ids.has(h.progId)) out.push(`${l.ifname}/${d}:${h.name}#${h.progId}`);
    }
  }
  return out;
}

/**
 * After the pods are deleted: no link pins of ours, no host veth left, none of the programs we
 * saw attached on any interface, the daemon's registry empty (after its reconcile), no spool.
 */
export async function assertNothingLeft(daemon: DaemonProcess, gone: Container[], progIds: number[], label: string): Promise<void> {
  const layout = new PinLayout(daemon.pinRoot);
  assert.deepEqual(listPodAttachments(layout), [], `${label}: no attachment pins left under ${layout.links}`);
  for (const c of gone) {
    assert.equal(existsSync(`/sys/class/net/${c.hostIfname}`), false, `${label}: host veth ${c.hostIfname} of ${c.name} is gone`);
  }
  assert.deepEqual(await hooksHolding(progIds), [], `${label}: none of our attached programs remains on any interface`);
  const list = await waitAttachments(daemon, (l) => l.length === 0);
  assert.deepEqual(list.map((r) => `${r.network}/${r.containerId}`), [], `${label}: the daemon's registry is empty`);
  assert.deepEqual(spoolRecords(daemon.spoolDir), [], `${label}: no spool record left`);
}

export { IPPROTO };
