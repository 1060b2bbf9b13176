// The built-in INT collector: a UDP socket that decodes Telemetry Report v0.5 datagrams and keeps
// counts, plus the `int-host-reporter collect` command that prints one JSON line per report and a
// summary line on exit. Meant for tests, demos and debugging a deployment without DeepInsight.

import dgram from 'node:dgram';
import { isIP } from 'node:net';
import { decodeReport, type DecodedReport, type MalformedCode } from './decoder';

export const DEFAULT_COLLECTOR_PORT = 32766;

export interface ListenAddress {
  host: string;
  port: number;
  family: 4 | 6;
}

/** Parses 'ADDR:PORT' with an IPv4 literal or a bracketed IPv6 literal ('[::1]:32766'). */
export function parseListenAddress(text: string): ListenAddress {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:\[\]]+):(\d+)$/.exec(text);
  if (!m) throw new Error(`listen address "${text}" is not ADDR:PORT (IPv6 as [ADDR]:PORT)`);
  const [, host, portText] = m;
  const family = isIP(host);
  if (family === 0) throw new Error(`listen address "${text}": "${host}" is not an IPv4 or IPv6 literal`);
  const port = Number(portText);
  if (!Number.isInteger(port) || port > 65535) throw new Error(`listen address "${text}": port ${portText} is not 0-65535`);
  return { host, port, family: family as 4 | 6 };
}

export interface CollectorStats {
  reports: number;
  byKind: Record<string, number>;
  /** by switch id, as a decimal string (JSON keys are strings) */
  bySwitchId: Record<string, number>;
  malformed: number;
  malformedByCode: Partial<Record<MalformedCode, number>>;
}

export interface CollectorOptions {
  /** 'ADDR:PORT'; port 0 binds an ephemeral port (see Collector.address) */
  listen: string;
  onReport: (report: DecodedReport, from: dgram.RemoteInfo) => void;
  onMalformed?: (code: MalformedCode, reason: string, from: dgram.RemoteInfo) => void;
  /** socket receive buffer in bytes (the default is small for bursts of reports) */
  receiveBufferSize?: number;
}

export interface Collector {
  /** the bound address, with the real port when 0 was asked for */
  readonly address: ListenAddress;
  readonly stats: CollectorStats;
  close(): Promise<void>;
}

export function newCollectorStats(): CollectorStats {
  return { reports: 0, byKind: {}, bySwitchId: {}, malformed: 0, malformedByCode: {} };
}

/** Counts one datagram into `stats`; returns the decoded report or null when malformed. */
export function countDatagram(stats: CollectorStats, msg: Buffer): DecodedReport | { code: MalformedCode; reason: string } {
  const result = decodeReport(msg);
  if (!result.ok) {
    stats.malformed++;
    stats.malformedByCode[result.code] = (stats.malformedByCode[result.code] ?? 0) + 1;
    return { code: result.code, reason: result.reason };
  }
  const r = result.report;
  stats.reports++;
  stats.byKind[r.kind] = (stats.byKind[r.kind] ?? 0) + 1;
  if (r.switchId !== undefined) {
    const key = String(r.switchId);
    stats.bySwitchId[key] = (stats.bySwitchId[key] ?? 0) + 1;
  }
  return r;
}

/** Binds the collector socket; resolves once it listens. */
export function startCollector(opts: CollectorOptions): Promise<Collector> {
  const listen = parseListenAddress(opts.listen);
  const socket = dgram.createSocket({ type: listen.family === 6 ? 'udp6' : 'udp4', ipv6Only: listen.family === 6 });
  const stats = newCollectorStats();
  socket.on('message', (msg, from) => {
    const r = countDatagram(stats, msg);
    if ('kind' in r) opts.onReport(r, from);
    else opts.onMalformed?.(r.code, r.reason, from);
  });
  return new Promise((resolve, reject) => {
    const onBindError = (err: Error) => {
      socket.close();
      reject(new Error(`collector cannot listen on ${opts.listen}: ${err.message}`));
    };
    socket.once('error', onBindError);
    socket.bind(listen.port, listen.host, () => {
      socket.off('error', onBindError);
      // Receive errors must not kill the process; there is nothing to do but go on.
      socket.on('error', () => {});
      if (opts.receiveBufferSize) socket.setRecvBufferSize(opts.receiveBufferSize);
      const bound = socket.address();
      let closed: Promise<void> | undefined;
      resolve({
        address: { host: bound.address, port: bound.port, family: listen.family },
        stats,
        close: () => (closed ??= new Promise<void>((done) => socket.close(() => done()))),
      });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// int-host-reporter collect --listen ADDR:PORT [--count N] [--timeout-ms N]
// ---------------------------------------------------------------------------------------------

export interface CollectCommandIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
  /** signals that end the command (default SIGINT and SIGTERM on `process`) */
  signals?: NodeJS.Signals[];
  /** called once the socket listens (tests use it to learn an ephemeral port) */
  onListening?: (address: ListenAddress) => void;
}

export interface CollectArgs {
  listen: string;
  count?: number;
  timeoutMs?: number;
}

export const COLLECT_USAGE =
  'usage: int-host-reporter collect [--listen ADDR:PORT] [--count N] [--timeout-ms N]\n' +
  `  --listen      IPv4 or [IPv6] literal and port (default 0.0.0.0:${DEFAULT_COLLECTOR_PORT})\n` +
  '  --count       exit after N reports\n' +
  '  --timeout-ms  exit after N milliseconds\n';

export function parseCollectArgs(argv: readonly string[]): CollectArgs {
  const args = argv[0] === 'collect' ? argv.slice(1) : argv.slice();
  const out: CollectArgs = { listen: `0.0.0.0:${DEFAULT_COLLECTOR_PORT}` };
  for (let i = 0; i < args.length; i++) {
    const [flag, inline] = args[i].includes('=') ? args[i].split(/=(.*)/s, 2) : [args[i], undefined];
    const value = (): string => {
      const v = inline ?? args[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    const count = (): number => {
      const text = value();
      const n = Number(text);
      if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n <= 0) throw new Error(`${flag} must be a positive integer, not "${text}"`);
      return n;
    };
    if (flag === '--listen') out.listen = value();
    else if (flag === '--count') out.count = count();
    else if (flag === '--timeout-ms') out.timeoutMs = count();
    else throw new Error(`unknown argument "${args[i]}"`);
  }
  parseListenAddress(out.listen); // validate early, with the field named
  return out;
}

/**
 * Runs the collect command until a signal, --count reports or --timeout-ms. Prints one JSON
 * line per report on stdout, then {"kind":"summary",...}. Malformed datagrams are counted (and
 * described on stderr). Returns the exit code: 0, or 2 for bad arguments or a failed bind.
 */
export async function runCollectCommand(argv: readonly string[], io: CollectCommandIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  let args: CollectArgs;
  try {
    args = parseCollectArgs(argv);
  } catch (err) {
    io.stderr.write(`collect: ${(err as Error).message}\n${COLLECT_USAGE}`);
    return 2;
  }

  let done = false;
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = () => {
    done = true;
    resolve();
  }));
  let collector: Collector;
  try {
    collector = await startCollector({
      listen: args.listen,
      onReport: (report) => {
        if (done) return; // datagrams that arrive while closing
        io.stdout.write(JSON.stringify(report) + '\n');
        if (args.count !== undefined && collector.stats.reports >= args.count) finish();
      },
      onMalformed: (code, reason, from) => {
        if (done) return;
        io.stderr.write(JSON.stringify({ kind: 'malformed', code, reason, from: `${from.address}:${from.port}` }) + '\n');
      },
    });
  } catch (err) {
    io.stderr.write(`collect: ${(err as Error).message}\n`);
    return 2;
  }
  io.stderr.write(JSON.stringify({ kind: 'listening', address: collector.address.host, port: collector.address.port }) + '\n');
  io.onListening?.(collector.address);

  const signals = io.signals ?? (['SIGINT', 'SIGTERM'] as NodeJS.Signals[]);
  for (const s of signals) process.once(s, finish);
  const timer = args.timeoutMs !== undefined ? setTimeout(finish, args.timeoutMs) : undefined;
  await finished;
  // The summary must agree with the lines printed, whatever arrives while the socket closes.
  const s: CollectorStats = structuredClone(collector.stats);
  if (timer) clearTimeout(timer);
  for (const sig of signals) process.off(sig, finish);
  await collector.close();
  io.stdout.write(
    JSON.stringify({ kind: 'summary', reports: s.reports, byKind: s.byKind, bySwitchId: s.bySwitchId, malformed: s.malformed, malformedByCode: s.malformedByCode }) + '\n',
  );
  return 0;
}
