// Sends encoded reports by UDP to one or more INT collectors without ever blocking the event
// pipeline and without growing when a collector is slow, down or unreachable.
//
// - Each collector has its own bounded queue: a ring of preallocated slots in one buffer. send()
//   copies the report into a slot (the caller may reuse its buffer at once); when the ring is
//   full, the oldest waiting report (drop-oldest, the default: fresh telemetry is worth more) or
//   the new one (drop-newest) is dropped and counted. Memory is queueLimit * slotSize per
//   collector, whatever happens downstream.
// - A flush runs on the next event-loop turn once reports wait and hands each collector's ring to
//   the kernel with sendmmsg (through the udp native module, udp.ts): up to `maxBatch` datagrams in one
//   system call, straight from the ring; runs of reports of one length go as single UDP GSO
//   messages, so the stack is crossed once per run (a path without GSO falls back to one
//   message per report). The call never blocks and completes at once, so nothing
//   is "in flight": when the socket buffer is full (EAGAIN) the reports stay queued and the flush
//   is retried shortly after.
// - Each collector gets a connected UDP socket, so ICMP errors (port unreachable, ...) come back
//   as ECONNREFUSED on a later send; the report that send carried is counted as a send error,
//   never thrown.
// - A DNS name is resolved at start and every `resolveIntervalMs`; when its address changes a new
//   socket takes over and the old one is closed.
//
// Identity and sequence numbers: the spec numbers reports "from a specific hw_id to a particular
// telemetry report destination". So one ReportSender is one hw_id (give each sending worker its
// own sender and hw_id), and every collector has its own sequence, starting at 1 (as the
// reference reporter does) and wrapping from 2^32-1 to 0. The sender stamps hw_id and the
// sequence number into the report (bytes 3-7), overriding what the encoder wrote. A number is
// taken for every report offered to a collector, including those this sender drops, so a
// collector sees our own losses as gaps too.

import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { EAGAIN, EINVAL, EIO, UdpError, errnoName, udpClose, udpOpen, udpSendBatch } from './udp';

export const DEFAULT_REPORT_PORT = 32766;
const FIXED_HEADER_LEN = 12;
const CONNECT_RETRY_MS = 1000;
/** how soon a flush is retried after the socket buffer was full */
const BLOCKED_RETRY_MS = 1;
/** sendmmsg takes at most this many messages (UIO_MAXIOV) */
const MAX_BATCH = 1024;
/**
 * Largest report sent by GSO: a segment must fit the path MTU with its headers, and 1200 bytes
 * does for any IPv6 path (MTU >= 1280) and usual IPv4 ones; longer reports go one by one.
 */
const GSO_MAX_LEN = 1200;

export interface CollectorAddress {
  host: string;
  port: number;
  /** 4 or 6 for an IP literal, 0 for a DNS name */
  family: 0 | 4 | 6;
}

/** Parses 'host:port', '[IPv6]:port' or an IPv4/DNS host without a port (default 32766). */
export function parseCollectorAddress(text: string): CollectorAddress {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  const plain = bracketed ? null : /^([^:\[\]\s]+)(?::(\d+))?$/.exec(text);
  const m = bracketed ?? plain;
  if (!m) throw new Error(`collector "${text}" is not HOST:PORT (an IPv6 address as [ADDR]:PORT)`);
  const host = m[1];
  const family = isIP(host);
  if (bracketed && family !== 6) throw new Error(`collector "${text}": "${host}" in brackets is not an IPv6 address`);
  if (family === 0 && !/^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/.test(host)) {
    throw new Error(`collector "${text}": "${host}" is neither an IP address nor a DNS name`);
  }
  const port = m[2] === undefined ? DEFAULT_REPORT_PORT : Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`collector "${text}": port must be 1-65535`);
  return { host, port, family: family as 0 | 4 | 6 };
}

export type OverflowPolicy = 'drop-oldest' | 'drop-newest';

export interface SenderOptions {
  /** 'host:port' each; at least one */
  collectors: readonly string[];
  /** 0-63, stamped into every report */
  hwId?: number;
  /** reports waiting per collector (default 4096: several reader batches while the socket is full) */
  queueLimit?: number;
  overflow?: OverflowPolicy;
  /** datagrams per collector per flush, one sendmmsg (default and most 1024) */
  maxBatch?: number;
  /** socket send buffer, bytes (default 4 MiB; beyond net.core.wmem_max only with CAP_NET_ADMIN) */
  sendBufferBytes?: number;
  /** largest report accepted, bytes (default 2048) */
  slotSize?: number;
  /** DNS re-resolution period (default 30 s) */
  resolveIntervalMs?: number;
  /** name resolution (default dns.promises.lookup) */
  lookup?: (host: string) => Promise<{ address: string; family: number }>;
}

export interface SenderCounters {
  /** reports accepted into a queue */
  queued: number;
  /** datagrams the kernel accepted */
  sent: number;
  /** sends that failed (each a lost report), e.g. ECONNREFUSED after an ICMP port unreachable */
  sendErrors: number;
  /**
   * asynchronous socket errors seen apart from a send. The socket is never read, so an ICMP error
   * surfaces on the next send and is counted in sendErrors: this stays 0 (kept for the metric).
   */
  socketErrors: number;
  /** reports dropped because the queue was full (with drop-oldest: evicted after being queued) */
  droppedQueueFull: number;
  /** reports shorter than the fixed header or longer than slotSize */
  droppedBadSize: number;
  /** failed name resolutions or connects */
  resolveErrors: number;
}

export interface DestinationStats extends SenderCounters {
  collector: string;
  /** the address currently sent to, null before the first resolution */
  address: string | null;
  queueLength: number;
  /** flushes that found the socket buffer full (EAGAIN): the reports stayed queued */
  wouldBlock: number;
  /** sequence number the next report will carry */
  nextSeq: number;
  lastError: string | null;
}

export interface SenderStats {
  hwId: number;
  total: SenderCounters;
  destinations: DestinationStats[];
}

function newCounters(): SenderCounters {
  return { queued: 0, sent: 0, sendErrors: 0, socketErrors: 0, droppedQueueFull: 0, droppedBadSize: 0, resolveErrors: 0 };
}

/** A connected socket: its fd and the address it sends to. */
interface Connection {
  fd: number;
  address: string;
}

class Destination {
  readonly counters = newCounters();
  conn: Connection | null = null;
  /** a resolve/connect is under way: the timers do not start another */
  establishing = false;
  lastError: string | null = null;
  wouldBlock = 0;
  /** reports up to this length go by GSO; 0 once the path refused it */
  segmentMax = GSO_MAX_LEN;
  seq = 1;
  /** the ring: slot i is memory[i * slotSize, +lengths[i]) */
  readonly memory: Buffer;
  readonly lengths: Uint32Array;
  head = 0;
  count = 0;

  constructor(
    readonly text: string,
    readonly spec: CollectorAddress,
    readonly queueLimit: number,
    readonly slotSize: number,
  ) {
    this.memory = Buffer.alloc(queueLimit * slotSize);
    this.lengths = new Uint32Array(queueLimit);
  }

  takeSeq(): number {
    const seq = this.seq;
    this.seq = (seq + 1) >>> 0;
    return seq;
  }

  enqueue(report: Buffer, length: number, hwId: number, seq: number, dropNewest: boolean): void {
    if (this.count >= this.queueLimit) {
      this.counters.droppedQueueFull++;
      if (dropNewest) return;
      this.consume(1); // the oldest slot is overwritten below
    }
    const slot = (this.head + this.count) % this.queueLimit;
    const at = slot * this.slotSize;
    const mem = this.memory;
    report.copy(mem, at, 0, length);
    this.lengths[slot] = length;
    mem[at + 3] = (mem[at + 3] & 0xc0) | hwId; // keep the reserved bits as the encoder wrote them
    mem.writeUInt32BE(seq, at + 4);
    this.count++;
    this.counters.queued++;
  }

  /** Removes n reports from the front of the ring. */
  consume(n: number): void {
    this.head = (this.head + n) % this.queueLimit;
    this.count -= n;
  }
}

/**
 * UDP sender of encoded reports to a fixed set of collectors. Construct, optionally await
 * ready(), call send() per report, and close() at the end.
 */
export class ReportSender {
  readonly hwId: number;
  private readonly destinations: Destination[];
  private readonly overflowNewest: boolean;
  private readonly maxBatch: number;
  private readonly sendBufferBytes: number;
  private readonly lookup: (host: string) => Promise<{ address: string; family: number }>;
  private readonly resolveTimer: NodeJS.Timeout;
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private readonly firstAttempts: Promise<void>[];
  private flushScheduled = false;
  private blockedTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(opts: SenderOptions) {
    if (opts.collectors.length === 0) throw new Error('sender: at least one collector is needed');
    const hwId = opts.hwId ?? 0;
    if (!Number.isInteger(hwId) || hwId < 0 || hwId > 63) throw new Error(`sender: hwId ${hwId} is not 0-63`);
    const queueLimit = positive('queueLimit', opts.queueLimit ?? 4096);
    this.maxBatch = positive('maxBatch', opts.maxBatch ?? MAX_BATCH);
    if (this.maxBatch > MAX_BATCH) throw new Error(`sender: maxBatch ${this.maxBatch} is more than ${MAX_BATCH}`);
    this.sendBufferBytes = positive('sendBufferBytes', opts.sendBufferBytes ?? 4 * 1024 * 1024);
    const slotSize = positive('slotSize', opts.slotSize ?? 2048);
    if (slotSize < FIXED_HEADER_LEN) throw new Error(`sender: slotSize ${slotSize} is smaller than a report header`);
    this.hwId = hwId;
    this.overflowNewest = (opts.overflow ?? 'drop-oldest') === 'drop-newest';
    this.lookup = opts.lookup ?? ((host) => dnsLookup(host));
    const specs = opts.collectors.map((c) => ({ text: c, spec: parseCollectorAddress(c) }));
    this.destinations = specs.map(({ text, spec }) => new Destination(text, spec, queueLimit, slotSize));
    this.firstAttempts = this.destinations.map((d) => this.establish(d));
    this.resolveTimer = setInterval(() => {
      for (const d of this.destinations) if (d.spec.family === 0 || d.conn === null) void this.establish(d);
    }, positive('resolveIntervalMs', opts.resolveIntervalMs ?? 30_000));
    this.resolveTimer.unref();
  }

  /** Resolves once every collector has been resolved and connected once (or failed to). */
  async ready(): Promise<void> {
    await Promise.all(this.firstAttempts);
  }

  /**
   * Queues report[0, length) for every collector. Never throws, never blocks; a report that does
   * not fit a slot or is shorter than the fixed header is counted and dropped.
   */
  send(report: Buffer, length = report.length): void {
    if (this.closed) return;
    const badSize = length < FIXED_HEADER_LEN || length > report.length;
    for (const d of this.destinations) {
      const seq = d.takeSeq();
      if (badSize || length > d.slotSize) {
        d.counters.droppedBadSize++;
        continue;
      }
      d.enqueue(report, length, this.hwId, seq, this.overflowNewest);
    }
    this.scheduleFlush();
  }

  stats(): SenderStats {
    const total = newCounters();
    const destinations = this.destinations.map((d) => {
      for (const k of Object.keys(total) as (keyof SenderCounters)[]) total[k] += d.counters[k];
      return {
        collector: d.text,
        address: d.conn?.address ?? null,
        queueLength: d.count,
        wouldBlock: d.wouldBlock,
        nextSeq: d.seq,
        lastError: d.lastError,
        ...d.counters,
      };
    });
    return { hwId: this.hwId, total, destinations };
  }

  /**
   * Waits until nothing is queued; false if `timeoutMs` passed first. Reports waiting for a
   * collector that is not resolved or connected yet do not hold it up.
   */
  async drain(timeoutMs = 1000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.destinations.some((d) => d.count > 0 && d.conn !== null)) {
      if (Date.now() >= deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    return true;
  }

  /** Stops timers and closes the sockets; queued reports are discarded. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.resolveTimer);
    for (const t of this.retryTimers) clearTimeout(t);
    this.retryTimers.clear();
    if (this.blockedTimer) clearTimeout(this.blockedTimer);
    for (const d of this.destinations) {
      if (d.conn) udpClose(d.conn.fd);
      d.conn = null;
    }
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    setImmediate(this.flush);
  }

  private readonly flush = (): void => {
    this.flushScheduled = false;
    if (this.closed) return;
    let more = false;
    let blocked = false;
    for (const d of this.destinations) {
      if (d.conn === null || d.count === 0) continue; // waits (bounded) until connected
      if (this.flushOne(d, d.conn.fd)) blocked = true;
      else if (d.count > 0) more = true;
    }
    if (more) this.scheduleFlush();
    // A full socket buffer empties at the link's pace: look again soon rather than spin.
    if (blocked && this.blockedTimer === null) {
      this.blockedTimer = setTimeout(() => {
        this.blockedTimer = null;
        this.scheduleFlush();
      }, BLOCKED_RETRY_MS);
    }
  };

  /** Hands up to maxBatch queued reports to the kernel; true when the socket buffer was full. */
  private flushOne(d: Destination, fd: number): boolean {
    let budget = Math.min(this.maxBatch, d.count);
    while (budget > 0) {
      const r = udpSendBatch(fd, d.memory, d.lengths, d.slotSize, d.head, budget, d.segmentMax);
      if ((r === -EIO || r === -EINVAL) && d.segmentMax > 0) {
        d.segmentMax = 0; // no GSO here (no checksum offload, small MTU): one message per report
        continue;
      }
      if (r === -EAGAIN) {
        d.wouldBlock++;
        return true;
      }
      if (r === 0) return true; // nothing taken without an error: treat as a full buffer
      const n = r > 0 ? r : 1;
      if (r > 0) {
        d.counters.sent += r;
      } else {
        // The first report failed (e.g. ECONNREFUSED after an ICMP port unreachable): it is lost.
        d.counters.sendErrors++;
        d.lastError = errnoName(-r);
      }
      d.consume(n);
      budget -= n;
    }
    return false;
  }

  /** Resolves the collector's address and connects a socket to it if it changed. */
  private async establish(d: Destination): Promise<void> {
    if (d.establishing || this.closed) return;
    d.establishing = true;
    try {
      await this.resolveAndConnect(d);
    } finally {
      d.establishing = false;
    }
  }

  private async resolveAndConnect(d: Destination): Promise<void> {
    let address = d.spec.host;
    if (d.spec.family === 0) {
      try {
        ({ address } = await this.lookup(d.spec.host));
      } catch (err) {
        d.counters.resolveErrors++;
        d.lastError = `resolve ${d.spec.host}: ${errorText(err)}`;
        return;
      }
    }
    if (this.closed || (d.conn !== null && d.conn.address === address)) return;
    let fd: number;
    try {
      fd = udpOpen(address, d.spec.port, this.sendBufferBytes);
    } catch (err) {
      if (!(err instanceof UdpError)) throw err; // not a socket error: a bug, not a collector's state
      d.counters.resolveErrors++;
      d.lastError = `connect ${address}:${d.spec.port}: ${errorText(err)}`;
      this.retryLater(d);
      return;
    }
    // Sends complete synchronously, so the old socket has nothing pending: close it now.
    if (d.conn) udpClose(d.conn.fd);
    d.conn = { fd, address };
    this.scheduleFlush();
  }

  private retryLater(d: Destination): void {
    if (this.closed) return;
    const t = setTimeout(() => {
      this.retryTimers.delete(t);
      void this.establish(d);
    }, CONNECT_RETRY_MS);
    t.unref();
    this.retryTimers.add(t);
  }
}

function positive(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw new Error(`sender: ${name} must be a positive integer, not ${value}`);
  return value;
}

function errorText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e?.code ?? e?.message ?? String(err);
}
