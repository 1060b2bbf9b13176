// Sends encoded reports by UDP to one or more INT collectors without ever blocking the event
// pipeline and without growing when a collector is slow, down or unreachable.
//
// - Each collector has its own bounded queue of preallocated slots. send() copies the report
//   into a slot (the caller may reuse its buffer at once); when the queue is full, the oldest
//   waiting report (drop-oldest, the default: fresh telemetry is worth more) or the new one
//   (drop-newest) is dropped and counted.
// - A flush runs once per event-loop turn while reports wait, handing up to `maxBatch` datagrams
//   per collector to the kernel, with at most `maxInFlight` sends not yet completed; memory is
//   (queueLimit + maxInFlight) * slotSize per collector, whatever happens downstream.
// - Each collector gets a connected UDP socket, so ICMP errors (port unreachable, ...) come back
//   as ECONNREFUSED on a send or on the socket; both are counted, neither is fatal.
// - A DNS name is resolved at start and every `resolveIntervalMs`; when its address changes a new
//   socket takes over and the old one closes once its sends complete.
//
// Identity and sequence numbers: the spec numbers reports "from a specific hw_id to a particular
// telemetry report destination". So one ReportSender is one hw_id (give each sending worker its
// own sender and hw_id), and every collector has its own sequence, starting at 1 (as the
// reference reporter does) and wrapping from 2^32-1 to 0. The sender stamps hw_id and the
// sequence number into the report (bytes 3-7), overriding what the encoder wrote. A number is
// taken for every report offered to a collector, including those this sender drops, so a
// collector sees our own losses as gaps too.

import dgram from 'node:dgram';
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';

export const DEFAULT_REPORT_PORT = 32766;
const FIXED_HEADER_LEN = 12;
const CONNECT_RETRY_MS = 1000;

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
  /** reports waiting per collector (default 1024) */
  queueLimit?: number;
  overflow?: OverflowPolicy;
  /** sends handed to the socket and not yet completed, per collector (default 64) */
  maxInFlight?: number;
  /** datagrams per collector per flush (default 64) */
  maxBatch?: number;
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
  /** asynchronous errors the socket reported (ICMP errors seen on receive) */
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
  inFlight: number;
  /** sequence number the next report will carry */
  nextSeq: number;
  lastError: string | null;
}

export interface SenderStats {
  hwId: number;
  total: SenderCounters;
  destinations: DestinationStats[];
}

interface Slot {
  buf: Buffer;
  len: number;
}

/** One connected socket; outlives a re-resolution until its in-flight sends complete. */
interface Connection {
  socket: dgram.Socket;
  address: string;
  connected: boolean;
  inFlight: number;
  retired: boolean;
}

function newCounters(): SenderCounters {
  return { queued: 0, sent: 0, sendErrors: 0, socketErrors: 0, droppedQueueFull: 0, droppedBadSize: 0, resolveErrors: 0 };
}

class Destination {
  readonly counters = newCounters();
  conn: Connection | null = null;
  /** a resolve/connect is under way: the timers do not start another */
  establishing = false;
  lastError: string | null = null;
  seq = 1;
  inFlight = 0;
  private readonly free: Slot[] = [];
  private readonly ring: Slot[];
  private head = 0;
  count = 0;

  constructor(
    readonly text: string,
    readonly spec: CollectorAddress,
    readonly queueLimit: number,
    maxInFlight: number,
    readonly slotSize: number,
  ) {
    // Enough slots for a full queue plus every send in flight: enqueue never allocates.
    const slots = queueLimit + maxInFlight;
    const memory = Buffer.alloc(slots * slotSize);
    for (let i = 0; i < slots; i++) this.free.push({ buf: memory.subarray(i * slotSize, (i + 1) * slotSize), len: 0 });
    this.ring = new Array<Slot>(queueLimit);
  }

  takeSeq(): number {
    const seq = this.seq;
    this.seq = (seq + 1) >>> 0;
    return seq;
  }

  enqueue(report: Buffer, length: number, hwId: number, seq: number, dropNewest: boolean): void {
    let slot: Slot | undefined;
    if (this.count >= this.queueLimit) {
      this.counters.droppedQueueFull++;
      if (dropNewest) return;
      slot = this.dequeue();
    } else {
      slot = this.free.pop();
    }
    if (slot === undefined) {
      this.counters.droppedQueueFull++; // cannot happen while the slot budget holds; never throw here
      return;
    }
    report.copy(slot.buf, 0, 0, length);
    slot.len = length;
    slot.buf[3] = (slot.buf[3] & 0xc0) | hwId; // keep the reserved bits as the encoder wrote them
    slot.buf.writeUInt32BE(seq, 4);
    this.ring[(this.head + this.count) % this.queueLimit] = slot;
    this.count++;
    this.counters.queued++;
  }

  dequeue(): Slot | undefined {
    if (this.count === 0) return undefined;
    const slot = this.ring[this.head];
    this.head = (this.head + 1) % this.queueLimit;
    this.count--;
    return slot;
  }

  release(slot: Slot): void {
    this.free.push(slot);
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
  private readonly maxInFlight: number;
  private readonly maxBatch: number;
  private readonly lookup: (host: string) => Promise<{ address: string; family: number }>;
  private readonly resolveTimer: NodeJS.Timeout;
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private readonly firstAttempts: Promise<void>[];
  private flushScheduled = false;
  private closed = false;

  constructor(opts: SenderOptions) {
    if (opts.collectors.length === 0) throw new Error('sender: at least one collector is needed');
    const hwId = opts.hwId ?? 0;
    if (!Number.isInteger(hwId) || hwId < 0 || hwId > 63) throw new Error(`sender: hwId ${hwId} is not 0-63`);
    const queueLimit = positive('queueLimit', opts.queueLimit ?? 1024);
    this.maxInFlight = positive('maxInFlight', opts.maxInFlight ?? 64);
    this.maxBatch = positive('maxBatch', opts.maxBatch ?? 64);
    const slotSize = positive('slotSize', opts.slotSize ?? 2048);
    if (slotSize < FIXED_HEADER_LEN) throw new Error(`sender: slotSize ${slotSize} is smaller than a report header`);
    this.hwId = hwId;
    this.overflowNewest = (opts.overflow ?? 'drop-oldest') === 'drop-newest';
    this.lookup = opts.lookup ?? ((host) => dnsLookup(host));
    const specs = opts.collectors.map((c) => ({ text: c, spec: parseCollectorAddress(c) }));
    this.destinations = specs.map(({ text, spec }) => new Destination(text, spec, queueLimit, this.maxInFlight, slotSize));
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
        inFlight: d.inFlight,
        nextSeq: d.seq,
        lastError: d.lastError,
        ...d.counters,
      };
    });
    return { hwId: this.hwId, total, destinations };
  }

  /**
   * Waits until nothing is queued or in flight; false if `timeoutMs` passed first. Reports
   * waiting for a collector that is not resolved or connected yet do not hold it up.
   */
  async drain(timeoutMs = 1000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.destinations.some((d) => d.inFlight > 0 || (d.count > 0 && d.conn?.connected))) {
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
    await Promise.all(this.destinations.map((d) => (d.conn ? closeSocket(d.conn.socket) : undefined)));
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
    for (const d of this.destinations) {
      const conn = d.conn;
      if (conn === null || !conn.connected) continue; // waits (bounded) until connected
      for (let n = 0; n < this.maxBatch && d.count > 0 && d.inFlight < this.maxInFlight; n++) {
        const slot = d.dequeue()!;
        d.inFlight++;
        conn.inFlight++;
        conn.socket.send(slot.buf, 0, slot.len, (err) => this.afterSend(d, conn, slot, err));
      }
      if (d.count > 0 && d.inFlight < this.maxInFlight) more = true;
    }
    if (more) this.scheduleFlush();
  };

  private afterSend(d: Destination, conn: Connection, slot: Slot, err: Error | null): void {
    d.inFlight--;
    conn.inFlight--;
    d.release(slot);
    if (err) {
      d.counters.sendErrors++;
      d.lastError = errorText(err);
    } else {
      d.counters.sent++;
    }
    if (conn.retired && conn.inFlight === 0) void closeSocket(conn.socket);
    if (d.count > 0) this.scheduleFlush();
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
    let family: number = d.spec.family;
    if (family === 0) {
      try {
        ({ address, family } = await this.lookup(d.spec.host));
      } catch (err) {
        d.counters.resolveErrors++;
        d.lastError = `resolve ${d.spec.host}: ${errorText(err)}`;
        return;
      }
    }
    if (this.closed || (d.conn !== null && d.conn.address === address)) return;
    const socket = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
    const conn: Connection = { socket, address, connected: false, inFlight: 0, retired: false };
    await new Promise<void>((resolve) => {
      socket.on('error', (err) => {
        if (conn.connected) {
          // Receive-side ICMP errors for earlier sends land here.
          d.counters.socketErrors++;
          d.lastError = errorText(err);
          return;
        }
        d.counters.resolveErrors++;
        d.lastError = `connect ${address}:${d.spec.port}: ${errorText(err)}`;
        void closeSocket(socket);
        this.retryLater(d);
        resolve();
      });
      socket.connect(d.spec.port, address, () => {
        conn.connected = true;
        resolve();
      });
    });
    if (!conn.connected) return;
    if (this.closed) {
      await closeSocket(socket);
      return;
    }
    const old = d.conn;
    d.conn = conn;
    if (old) {
      old.retired = true;
      if (old.inFlight === 0) void closeSocket(old.socket);
    }
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

function closeSocket(socket: dgram.Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve(); // already closed
    }
  });
}
