// The reference's drop detection, kept as a fallback for kernels without the kfree_skb
// tracepoint: a packet recorded at an ingress hook and not matched at an egress hook within
// 2 s is reported as dropped, reason unknown. It cannot tell a drop from a packet delivered to
// the node itself, which is why the tracepoint is preferred and this has a counter of its own.
import { EVENT_DROP, EventLayout, EventView, F_INGRESS, IntMeta, MAX_HOP_NS, TupleLayout, frameBatch } from '../../bpf/events';
import { numPossibleCpus, type BpfMap } from '../../bpf/index';
import { checksumOf, sumWords } from '../report/checksum';

/** The headers of the packet as its tuple describes it (no payload was kept). */
export function synthesizePacket(tuple: Buffer, t = 0): Buffer {
  const v6 = tuple[t + TupleLayout.ipVersion] === 6;
  const proto = tuple[t + TupleLayout.proto];
  const l4 = proto === 6 ? Buffer.alloc(20) : proto === 17 || proto === 132 || proto === 1 || proto === 58 ? Buffer.alloc(8) : Buffer.alloc(0);
  if (proto === 1 || proto === 58) {
    l4[0] = tuple[t + TupleLayout.icmpType];
    l4[1] = tuple[t + TupleLayout.icmpCode];
    tuple.copy(l4, 4, t + TupleLayout.sport, t + TupleLayout.sport + 2);
  } else if (l4.length > 0) {
    tuple.copy(l4, 0, t + TupleLayout.sport, t + TupleLayout.sport + 4);
    if (proto === 6) l4[12] = 0x50; // data offset: 5 words
    if (proto === 17) l4.writeUInt16BE(8, 4);
  }
  const eth = Buffer.alloc(14);
  eth.writeUInt16BE(v6 ? 0x86dd : 0x0800, 12);
  let ip: Buffer;
  if (v6) {
    ip = Buffer.alloc(40);
    ip[0] = 0x60;
    ip.writeUInt16BE(l4.length, 4);
    ip[6] = proto;
    ip[7] = 64;
    tuple.copy(ip, 8, t + TupleLayout.saddr, t + TupleLayout.saddr + 16);
    tuple.copy(ip, 24, t + TupleLayout.daddr, t + TupleLayout.daddr + 16);
  } else {
    ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(20 + l4.length, 2);
    ip[8] = 64;
    ip[9] = proto;
    tuple.copy(ip, 12, t + TupleLayout.saddr, t + TupleLayout.saddr + 4);
    tuple.copy(ip, 16, t + TupleLayout.daddr, t + TupleLayout.daddr + 4);
    ip.writeUInt16BE(checksumOf(sumWords(ip, 0, 20)), 10);
  }
  return Buffer.concat([eth, ip, l4]);
}

/**
 * One sweep over every CPU's slots: ingress records older than the programs' max_hop_ns (2 s)
 * default are cleared and returned as
 * drop events (a batch in the reader's format), so they take the same path to reports as the
 * kernel's events. Writing a slot back can overwrite a record the kernel made in between; one
 * packet then goes unreported, which this fallback accepts.
 */
export function sweepAged(meta: BpfMap, nowNs: bigint): { batch: Buffer; count: number } {
  const all = Buffer.alloc(meta.valueBufferSize);
  const stride = all.length / numPossibleCpus();
  const records: Buffer[] = [];
  for (const key of meta.keys()) {
    if (!meta.lookup(key, all)) continue;
    let changed = false;
    for (let off = 0; off < all.length; off += stride) {
      const igTs = all.readBigUInt64LE(off + IntMeta.igTs);
      if (all.readBigUInt64LE(off + IntMeta.key) === 0n || nowNs - igTs < MAX_HOP_NS) continue;
      all.writeBigUInt64LE(0n, off + IntMeta.key); // consumed
      changed = true;
      const tuple = all.subarray(off + IntMeta.tuple, off + IntMeta.tuple + TupleLayout.size);
      records.push(dropEvent(tuple, all.readUInt32LE(off + IntMeta.igIfindex), igTs, nowNs));
    }
    if (changed) meta.update(key, all);
  }
  return { batch: frameBatch(records), count: records.length };
}

function dropEvent(tuple: Buffer, ifindex: number, igTs: bigint, nowNs: bigint): Buffer {
  const sample = synthesizePacket(tuple);
  const ev = Buffer.alloc(EventLayout.size + sample.length);
  ev[EventLayout.type] = EVENT_DROP;
  ev[EventLayout.flags] = F_INGRESS;
  ev.writeUInt16LE(sample.length, EventLayout.sampleLen);
  ev.writeUInt32LE(ifindex, EventLayout.igIfindex);
  ev.writeUInt32LE(sample.length - 14, EventLayout.pktLen);
  ev.writeBigUInt64LE(igTs, EventLayout.igTs);
  ev.writeBigUInt64LE(nowNs, EventLayout.egTs);
  tuple.copy(ev, EventLayout.preNat);
  tuple.copy(ev, EventLayout.postNat);
  sample.copy(ev, EventLayout.size);
  return ev;
}

/** Runs sweepAged every second and hands the drops to the pipeline. */
export class AgingDropDetector {
  aged = 0;
  private readonly timer: NodeJS.Timeout;
  private readonly view = new EventView();

  constructor(meta: BpfMap, onBatch: (view: EventView) => void, periodMs = 1000) {
    this.timer = setInterval(() => {
      // bpf_ktime_get_ns and process.hrtime both read CLOCK_MONOTONIC.
      const { batch, count } = sweepAged(meta, process.hrtime.bigint());
      if (count === 0) return;
      this.aged += count;
      onBatch(this.view.reset(batch));
    }, periodMs);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
  }
}
