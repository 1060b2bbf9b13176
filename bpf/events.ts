// The kernel/user contract as TypeScript reads it: struct int_event (bpf/progs/int_types.h) and a
// decoder for the batches the event reader hands over. Every offset, enum value and bound comes
// from bpf/generated/layout.ts, which the build writes from the compiled object's BTF.
//
// A batch is one Buffer of records, each `[u32 LE size][size bytes]`, where the bytes are one
// perf sample: struct int_event, then sample_len packet bytes, then perf's alignment padding.
// EventView reads fields in place: nothing is allocated per event on the hot path.
import { IntBound, IntCounter, IntEvent, IntEventFlag, IntEventType, IntTuple } from './generated/layout';

export { ConstName, IntMeta, MapName, ProgramName } from './generated/layout';

export const EVENT_TRACE = IntEventType.INT_EVENT_TRACE;
export const EVENT_DROP = IntEventType.INT_EVENT_DROP;

export const F_TUNNEL = IntEventFlag.INT_F_TUNNEL;
export const F_INGRESS = IntEventFlag.INT_F_INGRESS;
export const F_NAT = IntEventFlag.INT_F_NAT;

/** The load-time sample_bytes the programs accept (a drop event copies at least the minimum). */
export const SAMPLE_BYTES_MIN = IntBound.INT_SAMPLE_MIN;
export const SAMPLE_BYTES_MAX = IntBound.INT_SAMPLE_MAX;
/** The programs' default max_hop_ns: older ingress metadata is another packet's. */
export const MAX_HOP_NS = BigInt(IntBound.INT_MAX_HOP_MS) * 1_000_000n;

/** Byte offsets of struct int_event and its size. */
export const EventLayout = IntEvent;
/** Byte offsets of struct int_tuple and its size. */
export const TupleLayout = IntTuple;

type CounterKey = Exclude<keyof typeof IntCounter, 'INT_CNT_MAX'>;
type CounterNameOf<K> = K extends `INT_CNT_${infer R}` ? Lowercase<R> : never;
/** A counter of the per-CPU array `int_counters`: enum int_counter, lower-cased, without INT_CNT_. */
export type CounterName = CounterNameOf<CounterKey>;

/** Counter names in index order. */
export const Counters: readonly CounterName[] = (Object.entries(IntCounter) as [string, number][])
  .filter(([k]) => k !== 'INT_CNT_MAX')
  .sort((a, b) => a[1] - b[1])
  .map(([k]) => k.slice('INT_CNT_'.length).toLowerCase() as CounterName);

export const IPPROTO = { ICMP: 1, TCP: 6, UDP: 17, ICMPV6: 58, SCTP: 132 } as const;

/** A decoded 5-tuple (allocates; for tests, logs and the API, not for the per-event path). */
export interface Tuple {
  ipVersion: 4 | 6;
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  protocol: number;
  icmpType: number;
  icmpCode: number;
}

/** A readable copy of one event (allocates; for tests, logs and the API). */
export interface DatapathEvent {
  type: 'trace' | 'drop';
  flags: number;
  dropReason: number;
  ingressIfindex: number;
  egressIfindex: number;
  packetLength: number;
  ingressTs: bigint;
  egressTs: bigint;
  innerOffset: number;
  preNat: Tuple;
  postNat: Tuple;
  dropLocation: bigint;
  sample: Buffer;
}

export function formatAddress(buf: Buffer, off: number, ipVersion: number): string {
  if (ipVersion === 4) return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`;
  const parts: string[] = [];
  for (let i = 0; i < 16; i += 2) parts.push(buf.readUInt16BE(off + i).toString(16));
  // Compress the longest run of zero groups, as RFC 5952 asks.
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (parts[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && parts[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) { best = i; bestLen = j - i; }
    i = j;
  }
  if (best < 0) return parts.join(':');
  return `${parts.slice(0, best).join(':')}::${parts.slice(best + bestLen).join(':')}`;
}

/**
 * A cursor over the events of one batch. `next()` moves to the next record; the getters read the
 * current one. The view is only valid until the batch is acknowledged.
 */
export class EventView {
  buf: Buffer = Buffer.alloc(0);
  /** offset of the current struct int_event in buf */
  off = 0;
  private nextOff = 0;
  private end = 0;

  reset(batch: Buffer): this {
    this.buf = batch;
    this.off = 0;
    this.nextOff = 0;
    this.end = batch.length;
    return this;
  }

  /** Advances to the next record; false at the end of the batch or on a truncated record. */
  next(): boolean {
    if (this.nextOff + 4 > this.end) return false;
    const size = this.buf.readUInt32LE(this.nextOff);
    const start = this.nextOff + 4;
    if (size < EventLayout.size || start + size > this.end) return false;
    this.off = start;
    this.nextOff = start + size;
    // The sample must fit in the record (perf pads, never truncates).
    return this.off + EventLayout.size + this.sampleLen <= this.nextOff;
  }

  get type(): number { return this.buf[this.off + EventLayout.type]; }
  get flags(): number { return this.buf[this.off + EventLayout.flags]; }
  get sampleLen(): number { return this.buf.readUInt16LE(this.off + EventLayout.sampleLen); }
  get dropReason(): number { return this.buf.readUInt32LE(this.off + EventLayout.dropReason); }
  get ingressIfindex(): number { return this.buf.readUInt32LE(this.off + EventLayout.igIfindex); }
  get egressIfindex(): number { return this.buf.readUInt32LE(this.off + EventLayout.egIfindex); }
  get packetLength(): number { return this.buf.readUInt32LE(this.off + EventLayout.pktLen); }
  /** Low 32 bits of the ingress timestamp, as INT v0.5 reports carry it. */
  get ingressTs32(): number { return this.buf.readUInt32LE(this.off + EventLayout.igTs); } // little-endian host: low word first
  get egressTs32(): number { return this.buf.readUInt32LE(this.off + EventLayout.egTs); }
  get ingressTs(): bigint { return this.buf.readBigUInt64LE(this.off + EventLayout.igTs); }
  get egressTs(): bigint { return this.buf.readBigUInt64LE(this.off + EventLayout.egTs); }
  get innerOffset(): number { return this.buf.readUInt16LE(this.off + EventLayout.innerOffset); }
  /** Drops: the kernel address that freed the packet. */
  get dropLocation(): bigint { return this.buf.readBigUInt64LE(this.off + EventLayout.dropLocation); }
  /** Offset in buf of the pre-NAT struct int_tuple. */
  get preNatOff(): number { return this.off + EventLayout.preNat; }
  /** Offset in buf of the post-NAT struct int_tuple. */
  get postNatOff(): number { return this.off + EventLayout.postNat; }
  /** Offset in buf of the first sampled packet byte. */
  get sampleOff(): number { return this.off + EventLayout.size; }
  /** The sampled packet (a view into the batch, not a copy). */
  sample(): Buffer { return this.buf.subarray(this.sampleOff, this.sampleOff + this.sampleLen); }

  tuple(tupleOff: number): Tuple {
    const b = this.buf;
    const ipVersion = b[tupleOff + TupleLayout.ipVersion] === 6 ? 6 : 4;
    return {
      ipVersion,
      src: formatAddress(b, tupleOff + TupleLayout.saddr, ipVersion),
      dst: formatAddress(b, tupleOff + TupleLayout.daddr, ipVersion),
      srcPort: b.readUInt16BE(tupleOff + TupleLayout.sport),
      dstPort: b.readUInt16BE(tupleOff + TupleLayout.dport),
      protocol: b[tupleOff + TupleLayout.proto],
      icmpType: b[tupleOff + TupleLayout.icmpType],
      icmpCode: b[tupleOff + TupleLayout.icmpCode],
    };
  }

  /** A copy of the current event as a plain object. */
  toObject(): DatapathEvent {
    return {
      type: this.type === EVENT_DROP ? 'drop' : 'trace',
      flags: this.flags,
      dropReason: this.dropReason,
      ingressIfindex: this.ingressIfindex,
      egressIfindex: this.egressIfindex,
      packetLength: this.packetLength,
      ingressTs: this.ingressTs,
      egressTs: this.egressTs,
      innerOffset: this.innerOffset,
      preNat: this.tuple(this.preNatOff),
      postNat: this.tuple(this.postNatOff),
      dropLocation: this.dropLocation,
      sample: Buffer.from(this.sample()),
    };
  }
}

/** Decodes a whole batch into plain objects (tests and tools; the daemon uses EventView). */
export function decodeBatch(batch: Buffer): DatapathEvent[] {
  const v = new EventView().reset(batch);
  const out: DatapathEvent[] = [];
  while (v.next()) out.push(v.toObject());
  return out;
}

/** Builds a batch from records, the inverse of decodeBatch's framing (tests and benchmarks). */
export function frameBatch(records: Buffer[]): Buffer {
  const total = records.reduce((n, r) => n + 4 + r.length, 0);
  const out = Buffer.alloc(total);
  let off = 0;
  for (const r of records) {
    out.writeUInt32LE(r.length, off);
    r.copy(out, off + 4);
    off += 4 + r.length;
  }
  return out;
}
