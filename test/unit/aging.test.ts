// The aging fallback: ingress records older than 2 s become drop events with the tuple's headers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as bpf from '../../bpf/index';
import { sweepAged, synthesizePacket } from '../../daemon/agent/aging';
import { decodeInnerFrame } from '../../daemon/collector/decoder';

function tuple(v: { src: number[]; dst: number[]; sport: number; dport: number; proto: number }): Buffer {
  const t = Buffer.alloc(bpf.TupleLayout.size);
  Buffer.from(v.src).copy(t, bpf.TupleLayout.saddr);
  Buffer.from(v.dst).copy(t, bpf.TupleLayout.daddr);
  t.writeUInt16BE(v.sport, bpf.TupleLayout.sport);
  t.writeUInt16BE(v.dport, bpf.TupleLayout.dport);
  t[bpf.TupleLayout.proto] = v.proto;
  t[bpf.TupleLayout.ipVersion] = v.src.length === 16 ? 6 : 4;
  return t;
}

test('the synthesized packet decodes back to the tuple, with a valid IPv4 header checksum', () => {
  const t = tuple({ src: [10, 1, 2, 3], dst: [10, 4, 5, 6], sport: 1234, dport: 80, proto: 6 });
  const p = synthesizePacket(t);
  const d = decodeInnerFrame(p, 0, p.length);
  assert.deepEqual(
    { v: d.ipVersion, src: d.src, dst: d.dst, proto: d.protocol, sport: d.srcPort, dport: d.dstPort, ipOk: d.ipChecksumValid },
    { v: 4, src: '10.1.2.3', dst: '10.4.5.6', proto: 6, sport: 1234, dport: 80, ipOk: true },
  );
  const t6 = tuple({ src: [0xfd, 0, ...Array(13).fill(0), 1], dst: [0xfd, 0, ...Array(13).fill(0), 2], sport: 53, dport: 5353, proto: 17 });
  const d6 = decodeInnerFrame(synthesizePacket(t6), 0, synthesizePacket(t6).length);
  assert.deepEqual([d6.ipVersion, d6.src, d6.dst, d6.srcPort, d6.dstPort], [6, 'fd00::1', 'fd00::2', 53, 5353]);
});

test('sweepAged turns only records older than 2 s into drop events, and clears them', () => {
  const obj = bpf.BpfObject.load();
  try {
    const meta = obj.map('int_meta');
    const cpus = bpf.numPossibleCpus();
    const stride = meta.valueBufferSize / cpus;
    const now = 10_000_000_000n;
    // Slot 3: an old record on CPU 0 and a young one on the last CPU.
    const all = Buffer.alloc(meta.valueBufferSize);
    const put = (cpu: number, igTs: bigint, ifindex: number, t: Buffer) => {
      const off = cpu * stride;
      all.writeBigUInt64LE(0xabcn + BigInt(cpu), off);
      all.writeBigUInt64LE(igTs, off + 8);
      all.writeUInt32LE(ifindex, off + 16);
      t.copy(all, off + 24);
    };
    const old = tuple({ src: [10, 0, 0, 1], dst: [10, 0, 0, 2], sport: 1111, dport: 2222, proto: 17 });
    put(0, now - 3_000_000_000n, 42, old);
    put(cpus - 1, now - 1_000_000_000n, 43, tuple({ src: [10, 0, 0, 3], dst: [10, 0, 0, 4], sport: 1, dport: 2, proto: 17 }));
    const key = Buffer.alloc(4);
    key.writeUInt32LE(3);
    meta.update(key, all);
    const { batch, count } = sweepAged(meta, now);
    assert.equal(count, cpus > 1 ? 1 : 0, 'only the record older than 2 s');
    if (cpus === 1) return;
    const [ev] = bpf.decodeBatch(batch);
    assert.deepEqual(
      { type: ev.type, ig: ev.ingressIfindex, eg: ev.egressIfindex, igTs: ev.ingressTs, egTs: ev.egressTs, reason: ev.dropReason, src: ev.postNat.src, sport: ev.postNat.srcPort },
      { type: 'drop', ig: 42, eg: 0, igTs: now - 3_000_000_000n, egTs: now, reason: 0, src: '10.0.0.1', sport: 1111 },
    );
    const after = Buffer.alloc(meta.valueBufferSize);
    assert.ok(meta.lookup(key, after), 'the slot is readable');
    assert.equal(after.readBigUInt64LE(0), 0n, 'the aged record is cleared');
    assert.equal(after.readBigUInt64LE((cpus - 1) * stride), 0xabcn + BigInt(cpus - 1), 'the young one stays');
  } finally {
    obj.close();
  }
});
