// Real traffic between namespaces, returning exact facts (addresses, ports, ICMP ids,
// counts) for assertions. Every process is started on the test's Scope, so it is killed by
// pid when the scope closes even if the test fails half-way.
//
//   UDP/TCP  : test/helpers/traffic-agent.mjs (node) as server and client, fixed source ports
//   ICMP echo: /usr/bin/ping (Debian package iputils-ping) with a fixed identifier (-e)
//   SCTP     : test/helpers/rawpkt.py sends INIT chunks from a raw socket (no SCTP module here)
//   capture  : test/helpers/rawpkt.py, AF_PACKET, parsed and filtered, VXLAN decapsulation
//   flood    : many UDP flows of small datagrams for a duration (benchmarks)
//   iperf3   : TCP throughput and UDP small-packet rate
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runIn, sleep } from './exec';
import type { Endpoint } from './netns';
import type { Scope, TrackedProcess } from './scope';

export type Family = 4 | 6;

export const PING = '/usr/bin/ping';
export const PYTHON = '/usr/bin/python3';
export const IPERF3 = '/usr/bin/iperf3';
export const AGENT = fileURLToPath(new URL('./traffic-agent.mjs', import.meta.url));
export const RAWPKT = fileURLToPath(new URL('./rawpkt.py', import.meta.url));

/** Fail with a clear message naming the Debian package when a tool is missing. */
export function requireTool(path: string, debianPackage: string): string {
  if (!existsSync(path)) {
    throw new Error(`${path} is missing: install the Debian package "${debianPackage}" (apt-get install -y ${debianPackage}; list it in scripts/packages.txt)`);
  }
  return path;
}

export const addrOf = (e: Endpoint, family: Family): string => (family === 4 ? e.ipv4 : e.ipv6);

let nextPort = 20000 + Math.floor(Math.random() * 5000);
/** A port number for tests that don't care which one (unique within this process). */
export function freshPort(): number {
  nextPort += 1;
  if (nextPort > 29999) nextPort = 20000;
  return nextPort;
}

function jsonLines(lines: readonly string[]): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const l of lines) {
    if (!l.startsWith('{')) continue;
    try {
      out.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      /* not one of ours */
    }
  }
  return out;
}

function resultOf(p: TrackedProcess): Record<string, unknown> {
  const r = jsonLines(p.lines).filter((o) => o.event === 'result').pop();
  if (!r) throw new Error(`${p.argv.join(' ')} printed no result`);
  return r;
}

/** Wait for exit; after graceMs send SIGTERM (the agent prints its result on SIGTERM). */
async function collect(p: TrackedProcess, graceMs: number) {
  const timer = sleep(graceMs).then(() => 'timeout' as const);
  const first = await Promise.race([p.exited, timer]);
  if (first === 'timeout') {
    try {
      process.kill(p.pid, 'SIGTERM');
    } catch {
      /* gone */
    }
  }
  const r = await Promise.race([p.exited, sleep(5000).then(() => undefined)]);
  if (!r) {
    p.kill();
    return p.exited;
  }
  return r;
}

const ready = (l: string) => l.includes('"event":"ready"');

function agent(scope: Scope, netns: string | null, args: string[]): TrackedProcess {
  return scope.spawn(netns, [process.execPath, AGENT, ...args]);
}

// ---------------------------------------------------------------------------------------------
// UDP and TCP

export interface FlowSpec {
  from: Endpoint;
  to: Endpoint;
  family: Family;
  /** destination port (default: a fresh one) */
  dport?: number;
  /** fixed source port (default: chosen by the kernel, reported in the result) */
  sport?: number;
  /** source/destination address overrides (default: the endpoints' address of `family`) */
  srcAddr?: string;
  dstAddr?: string;
  /** where the server listens when that differs from where the client sends (NAT) */
  serverAddr?: string;
  serverPort?: number;
  /** UDP datagrams / TCP writes (default 1; ignored when durationMs is set) */
  count?: number;
  /** bytes per datagram / write (default 64) */
  size?: number;
  /** pause between datagrams / writes (default 0) */
  intervalMs?: number;
  /** keep sending for this long (TCP: one connection kept alive) */
  durationMs?: number;
  timeoutMs?: number;
  /** UDP: number the datagrams; the server counts the missing and duplicated ones */
  seq?: boolean;
}

export interface Peer {
  address: string;
  port: number;
  packets: number;
  bytes: number;
}

export interface FlowResult {
  proto: 'udp' | 'tcp';
  family: Family;
  src: string;
  sport: number;
  dst: string;
  dport: number;
  sent: { packets: number; bytes: number };
  /** as counted by the receiving server (TCP packets = reads, not segments) */
  received: { packets: number; bytes: number; connections: number; peers: Peer[]; seq?: SeqCount };
}

/** What the server saw of numbered datagrams (spec.seq): missing counts gaps below the highest. */
export interface SeqCount {
  distinct: number;
  duplicates: number;
  max: number;
  missing: number;
}

async function flow(scope: Scope, proto: 'udp' | 'tcp', spec: FlowSpec): Promise<FlowResult> {
  const dst = spec.dstAddr ?? addrOf(spec.to, spec.family);
  const src = spec.srcAddr ?? addrOf(spec.from, spec.family);
  const dport = spec.dport ?? freshPort();
  const count = spec.count ?? 1;
  const timeoutMs = spec.timeoutMs ?? 30_000;
  const expect = proto === 'tcp' ? 1 : spec.durationMs ? 0 : count;
  const server = agent(scope, spec.to.netns, ['server', '--proto', proto, '--addr', spec.serverAddr ?? dst, '--port', String(spec.serverPort ?? dport),
    '--count', String(expect), '--timeout', String(timeoutMs), ...(spec.seq ? ['--seq', '1'] : [])]);
  await server.waitForLine(ready, 10_000, `${proto} server ready`);
  const cargs = ['client', '--proto', proto, '--addr', dst, '--port', String(dport), '--bind', src,
    '--count', String(count), '--size', String(spec.size ?? 64), '--interval', String(spec.intervalMs ?? 0),
    '--timeout', String(timeoutMs)];
  if (spec.sport !== undefined) cargs.push('--sport', String(spec.sport));
  if (spec.durationMs !== undefined) cargs.push('--duration', String(spec.durationMs));
  if (spec.seq) cargs.push('--seq', '1');
  const client = agent(scope, spec.from.netns, cargs);
  const cdone = await client.exited;
  const c = resultOf(client);
  if (c.error || cdone.code !== 0) throw new Error(`${proto} client failed: ${String(c.error ?? cdone.code)}\n${cdone.stderr}`);
  await collect(server, proto === 'tcp' ? 5000 : 2000);
  const s = resultOf(server);
  return {
    proto,
    family: spec.family,
    src: String(c.localAddress),
    sport: Number(c.localPort),
    dst,
    dport,
    sent: { packets: Number(c.packets), bytes: Number(c.bytes) },
    received: {
      packets: Number(s.packets),
      bytes: Number(s.bytes),
      connections: Number(s.connections),
      peers: (s.peers as Peer[] | undefined) ?? [],
      ...(s.seq ? { seq: s.seq as SeqCount } : {}),
    },
  };
}

/** UDP datagrams from one endpoint to another (server in `to`, client in `from`). */
export function udpFlow(scope: Scope, spec: FlowSpec): Promise<FlowResult> {
  return flow(scope, 'udp', spec);
}

/** One TCP connection (optionally kept alive for durationMs, a write every intervalMs). */
export function tcpFlow(scope: Scope, spec: FlowSpec): Promise<FlowResult> {
  return flow(scope, 'tcp', spec);
}

// ---------------------------------------------------------------------------------------------
// Capture

export interface PacketFilter {
  dir?: 'in' | 'out';
  family?: Family;
  proto?: number;
  src?: string;
  dst?: string;
  sport?: number;
  dport?: number;
  icmpType?: number;
  icmpId?: number;
  sctpChunk?: number;
  vni?: number;
  ifname?: string;
  inner?: PacketFilter;
}

export interface CapturedPacket {
  ifname: string;
  dir: 'in' | 'out';
  family: Family;
  proto: number;
  src: string;
  dst: string;
  srcMac: string;
  dstMac: string;
  sport?: number;
  dport?: number;
  tcpFlags?: number;
  payloadLen?: number;
  icmpType?: number;
  icmpCode?: number;
  icmpId?: number;
  icmpSeq?: number;
  sctpChunk?: number;
  vtag?: number;
  crcOk?: boolean;
  vni?: number;
  inner?: CapturedPacket;
}

export interface CaptureOptions {
  /** namespace to capture in (null = root) */
  netns: string | null;
  /** one interface (default: every interface of the namespace) */
  ifname?: string;
  filter?: PacketFilter;
  /** stop after this many matches (default 0 = until timeout / finish) */
  count?: number;
  timeoutMs?: number;
  /** parse UDP to this port as VXLAN and match `filter.inner` against the inner packet */
  decapVxlan?: number;
}

export interface Capture {
  readonly process: TrackedProcess;
  /** Matched packets so far. */
  packets(): CapturedPacket[];
  /** Wait for `count` matches (or graceMs), stop, and return every match. */
  finish(graceMs?: number): Promise<CapturedPacket[]>;
}

/** Start an AF_PACKET capture; resolves once the socket is bound (traffic may start). */
export async function startCapture(scope: Scope, opts: CaptureOptions): Promise<Capture> {
  requireTool(PYTHON, 'python3');
  const args = [PYTHON, RAWPKT, 'capture', '--timeout-ms', String(opts.timeoutMs ?? 20_000), '--count', String(opts.count ?? 0)];
  if (opts.ifname) args.push('--ifname', opts.ifname);
  if (opts.filter) args.push('--filter', JSON.stringify(opts.filter));
  if (opts.decapVxlan) args.push('--decap-vxlan', String(opts.decapVxlan));
  const proc = scope.spawn(opts.netns, args);
  await proc.waitForLine(ready, 10_000, 'capture ready');
  const packets = () =>
    jsonLines(proc.lines)
      .filter((o) => o.event === 'packet')
      .map(({ event: _e, ...rest }) => rest as unknown as CapturedPacket);
  return {
    process: proc,
    packets,
    async finish(graceMs = 3000) {
      const want = opts.count ?? 0;
      const deadline = Date.now() + graceMs;
      while (Date.now() < deadline && (want === 0 || packets().length < want)) {
        const r = await Promise.race([proc.exited.then(() => true), sleep(25).then(() => false)]);
        if (r) break;
      }
      proc.kill();
      await proc.exited;
      return packets();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// ICMP echo

export interface EchoSpec {
  from: Endpoint;
  to: Endpoint;
  family: Family;
  /** ICMP echo identifier (default: random); ping -e */
  id?: number;
  count?: number;
  intervalMs?: number;
  srcAddr?: string;
  dstAddr?: string;
  /** capture requests at the receiver and replies at the sender (default true) */
  verify?: boolean;
}

export interface EchoResult {
  family: Family;
  src: string;
  dst: string;
  id: number;
  transmitted: number;
  received: number;
  /** echo requests with this id seen arriving in the receiver namespace */
  requestsSeen?: CapturedPacket[];
  /** echo replies with this id seen arriving back in the sender namespace */
  repliesSeen?: CapturedPacket[];
}

/** Fails with a message naming iputils-ping if ping is not installed. */
export function requirePing(): string {
  return requireTool(PING, 'iputils-ping');
}

export async function icmpEcho(scope: Scope, spec: EchoSpec): Promise<EchoResult> {
  requirePing();
  const src = spec.srcAddr ?? addrOf(spec.from, spec.family);
  const dst = spec.dstAddr ?? addrOf(spec.to, spec.family);
  const id = spec.id ?? 1 + Math.floor(Math.random() * 65534);
  const count = spec.count ?? 3;
  const proto = spec.family === 4 ? 1 : 58;
  const verify = spec.verify ?? true;
  let reqCap: Capture | undefined;
  let repCap: Capture | undefined;
  if (verify) {
    reqCap = await startCapture(scope, {
      netns: spec.to.netns,
      filter: { dir: 'in', family: spec.family, proto, src, dst, icmpType: spec.family === 4 ? 8 : 128, icmpId: id },
      count,
    });
    repCap = await startCapture(scope, {
      netns: spec.from.netns,
      filter: { dir: 'in', family: spec.family, proto, src: dst, dst: src, icmpType: spec.family === 4 ? 0 : 129, icmpId: id },
      count,
    });
  }
  const interval = ((spec.intervalMs ?? 200) / 1000).toFixed(3);
  const argv = [PING, `-${spec.family}`, '-n', '-c', String(count), '-i', interval, '-W', '2', '-e', String(id), '-I', src, dst];
  const p = scope.spawn(spec.from.netns, argv);
  const r = await p.exited;
  const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
  if (!m) throw new Error(`unexpected ping output (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  const res: EchoResult = { family: spec.family, src, dst, id, transmitted: Number(m[1]), received: Number(m[2]) };
  if (reqCap && repCap) {
    res.requestsSeen = await reqCap.finish(1500);
    res.repliesSeen = await repCap.finish(1500);
  }
  return res;
}

// ---------------------------------------------------------------------------------------------
// SCTP (raw INIT chunks; the receiver cannot answer, arrival is asserted by capture)

export interface SctpSpec {
  from: Endpoint;
  to: Endpoint;
  family: Family;
  sport: number;
  dport: number;
  count?: number;
  intervalMs?: number;
  srcAddr?: string;
  dstAddr?: string;
  /** capture the INITs arriving in the receiver namespace (default true) */
  verify?: boolean;
}

export interface SctpResult {
  family: Family;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  sent: number;
  /** INIT chunks with these addresses and ports seen arriving at the receiver */
  arrived?: CapturedPacket[];
}

export async function sctpInit(scope: Scope, spec: SctpSpec): Promise<SctpResult> {
  requireTool(PYTHON, 'python3');
  const src = spec.srcAddr ?? addrOf(spec.from, spec.family);
  const dst = spec.dstAddr ?? addrOf(spec.to, spec.family);
  const count = spec.count ?? 3;
  let cap: Capture | undefined;
  if (spec.verify ?? true) {
    cap = await startCapture(scope, {
      netns: spec.to.netns,
      filter: { dir: 'in', family: spec.family, proto: 132, src, dst, sport: spec.sport, dport: spec.dport, sctpChunk: 1 },
      count,
    });
  }
  const p = scope.spawn(spec.from.netns, [PYTHON, RAWPKT, 'sctp-send', '--family', String(spec.family), '--src', src,
    '--dst', dst, '--sport', String(spec.sport), '--dport', String(spec.dport), '--count', String(count),
    '--interval-ms', String(spec.intervalMs ?? 20)]);
  const r = await p.exited;
  if (r.code !== 0) throw new Error(`sctp-send failed (${r.code}): ${r.stderr}`);
  const out = resultOf(p);
  const res: SctpResult = { family: spec.family, src, dst, sport: spec.sport, dport: spec.dport, sent: Number(out.sent) };
  if (cap) res.arrived = await cap.finish(2000);
  return res;
}

// ---------------------------------------------------------------------------------------------
// Flood (benchmarks)

export interface FloodSpec {
  from: Endpoint;
  to: Endpoint;
  family: Family;
  dport?: number;
  /** number of UDP flows (sockets), default 8 */
  flows?: number;
  /** flow i uses source port sportBase + i (default: kernel-chosen) */
  sportBase?: number;
  /** payload bytes (default 64) */
  size?: number;
  durationMs?: number;
}

export interface FloodResult {
  flows: number;
  sports: number[];
  dport: number;
  sent: number;
  received: number;
  sendErrors: number;
  elapsedMs: number;
  sentPps: number;
  receivedPps: number;
}

export async function udpFlood(scope: Scope, spec: FloodSpec): Promise<FloodResult> {
  const dst = addrOf(spec.to, spec.family);
  const src = addrOf(spec.from, spec.family);
  const dport = spec.dport ?? freshPort();
  const durationMs = spec.durationMs ?? 2000;
  const server = agent(scope, spec.to.netns, ['server', '--proto', 'udp', '--addr', dst, '--port', String(dport),
    '--count', '0', '--timeout', String(durationMs + 30_000)]);
  await server.waitForLine(ready, 10_000, 'flood receiver ready');
  const args = ['flood', '--addr', dst, '--port', String(dport), '--bind', src, '--flows', String(spec.flows ?? 8),
    '--size', String(spec.size ?? 64), '--duration', String(durationMs)];
  if (spec.sportBase !== undefined) args.push('--sport-base', String(spec.sportBase));
  const client = agent(scope, spec.from.netns, args);
  const cr = await client.exited;
  const c = resultOf(client);
  if (c.error || cr.code !== 0) throw new Error(`flood failed: ${String(c.error ?? cr.code)} ${cr.stderr}`);
  await sleep(300);
  await collect(server, 0);
  const s = resultOf(server);
  const elapsedMs = Number(c.elapsedMs);
  return {
    flows: Number(c.flows),
    sports: c.ports as number[],
    dport,
    sent: Number(c.sent),
    received: Number(s.packets),
    sendErrors: Number(c.errors),
    elapsedMs,
    sentPps: (Number(c.sent) * 1000) / elapsedMs,
    receivedPps: (Number(s.packets) * 1000) / elapsedMs,
  };
}

// ---------------------------------------------------------------------------------------------
// iperf3

export interface IperfSpec {
  from: Endpoint;
  to: Endpoint;
  family: Family;
  port?: number;
  seconds?: number;
  srcAddr?: string;
  dstAddr?: string;
  /** seconds at the start left out of the result (slow start, warm-up): iperf3 -O */
  omitSeconds?: number;
  /** CPUs for the client and the server (iperf3 -A client,server): less scheduling noise in benchmarks */
  cpus?: [number, number];
}

export interface IperfTcpResult {
  bitsPerSecondSent: number;
  bitsPerSecondReceived: number;
  bytesSent: number;
  bytesReceived: number;
  retransmits: number;
  sport: number;
  raw: unknown;
}

export interface IperfUdpResult {
  packets: number;
  lostPackets: number;
  bitsPerSecond: number;
  pps: number;
  sport: number;
  raw: unknown;
}

async function iperf(scope: Scope, spec: IperfSpec, extra: string[]): Promise<Record<string, any>> {
  requireTool(IPERF3, 'iperf3');
  const dst = spec.dstAddr ?? addrOf(spec.to, spec.family);
  const src = spec.srcAddr ?? addrOf(spec.from, spec.family);
  const port = spec.port ?? freshPort();
  const seconds = spec.seconds ?? 2;
  const server = scope.spawn(spec.to.netns, [IPERF3, '-s', '-1', '-J', '-B', dst, '-p', String(port)]);
  // iperf3 -J prints nothing until the end: wait for its control socket to listen.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { stdout } = await runIn(spec.to.netns, ['ss', '-Hltn', 'sport', '=', `:${port}`]);
    if (stdout.trim()) break;
    if (Date.now() > deadline) throw new Error(`iperf3 server did not listen on ${dst}:${port}`);
    await sleep(20);
  }
  const tuning = [...(spec.omitSeconds ? ['-O', String(spec.omitSeconds)] : []), ...(spec.cpus ? ['-A', spec.cpus.join(',')] : [])];
  const client = scope.spawn(spec.from.netns, [IPERF3, '-c', dst, '-B', src, '-p', String(port), '-t', String(seconds), '-J', ...tuning, ...extra]);
  const timer = setTimeout(() => client.kill(), (seconds + (spec.omitSeconds ?? 0) + 20) * 1000);
  const r = await client.exited;
  clearTimeout(timer);
  await collect(server, 3000);
  let parsed: Record<string, any>;
  try {
    parsed = JSON.parse(r.stdout) as Record<string, any>;
  } catch {
    throw new Error(`iperf3 client printed no JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  }
  if (parsed.error) throw new Error(`iperf3: ${String(parsed.error)}`);
  return parsed;
}

/** TCP throughput from `from` to `to`. */
export async function iperfTcp(scope: Scope, spec: IperfSpec): Promise<IperfTcpResult> {
  const j = await iperf(scope, spec, []);
  const end = j.end ?? {};
  return {
    bitsPerSecondSent: Number(end.sum_sent?.bits_per_second ?? 0),
    bitsPerSecondReceived: Number(end.sum_received?.bits_per_second ?? 0),
    bytesSent: Number(end.sum_sent?.bytes ?? 0),
    bytesReceived: Number(end.sum_received?.bytes ?? 0),
    retransmits: Number(end.sum_sent?.retransmits ?? 0),
    sport: Number(j.start?.connected?.[0]?.local_port ?? 0),
    raw: j,
  };
}

/** UDP small-packet rate (payload `size`, default 64 bytes; bandwidth '0' = unlimited). */
export async function iperfUdp(scope: Scope, spec: IperfSpec & { size?: number; bandwidth?: string }): Promise<IperfUdpResult> {
  const j = await iperf(scope, spec, ['-u', '-b', spec.bandwidth ?? '0', '-l', String(spec.size ?? 64)]);
  const end = j.end ?? {};
  const sum = end.sum_received ?? end.sum ?? {};
  const packets = Number(sum.packets ?? 0);
  const lost = Number(sum.lost_packets ?? 0);
  const seconds = Number(sum.seconds ?? spec.seconds ?? 2) || 1;
  return {
    packets,
    lostPackets: lost,
    bitsPerSecond: Number(sum.bits_per_second ?? 0),
    pps: (packets - lost) / seconds,
    sport: Number(j.start?.connected?.[0]?.local_port ?? 0),
    raw: j,
  };
}
