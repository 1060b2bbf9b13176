// The generated layout module (bpf/generated/layout.ts, written by bpf/gen-layout.mjs from the
// object's BTF) must say exactly what bpftool reads from the same object, and the hand-written
// decoders must read at its offsets, so the C types and TypeScript can never drift apart.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as layout from '../../bpf/generated/layout';
import {
  Counters, EVENT_DROP, EVENT_TRACE, EventLayout, EventView, F_INGRESS, F_NAT, F_TUNNEL, MAX_HOP_NS, SAMPLE_BYTES_MAX,
  SAMPLE_BYTES_MIN, TupleLayout, defaultObjectPath, frameBatch,
} from '../../bpf/index';
import { configSchema } from '../../daemon/config/schema';

interface BtfType {
  id: number;
  kind: string;
  name?: string;
  size?: number;
  type_id?: number;
  linkage?: string;
  members?: { name: string; type_id: number; bits_offset: number }[];
  values?: { name: string; val: number }[];
  vars?: { type_id: number }[];
}

function btfTypes(): BtfType[] {
  let out: string;
  try {
    out = execFileSync('bpftool', ['-j', 'btf', 'dump', 'file', defaultObjectPath()], { encoding: 'utf8' });
  } catch (e) {
    throw new Error(`bpftool (Debian package bpftool) is needed to read the object's BTF: ${(e as Error).message}`);
  }
  return (JSON.parse(out) as { types: BtfType[] }).types;
}

const camel = (s: string) => s.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
const pascal = (s: string) => camel(s).replace(/^./, (c) => c.toUpperCase());
const generated = layout as unknown as Record<string, Record<string, number | string>>;
const shared = (t: BtfType) => t.name !== undefined && t.name.startsWith('int_') && t.name !== 'int_btf_anchor';

/** sizeof a BTF type as bpftool describes it. */
function sizeOf(types: BtfType[], id: number): number {
  const t = types.find((x) => x.id === id)!;
  if (t.size !== undefined) return t.size;
  if (t.kind === 'PTR') return 8;
  if (t.kind === 'ARRAY') {
    const a = t as unknown as { type_id: number; nr_elems: number };
    return a.nr_elems * sizeOf(types, a.type_id);
  }
  return sizeOf(types, t.type_id!);
}

test('every shared struct of the object is in the generated module, member by member', () => {
  const types = btfTypes();
  const structs = types.filter((t) => t.kind === 'STRUCT' && shared(t));
  assert.deepEqual(structs.map((s) => s.name).sort(), ['int_drop_record', 'int_event', 'int_flow_key', 'int_flow_slot', 'int_meta', 'int_tuple']);
  for (const s of structs) {
    const offsets = generated[pascal(s.name!)];
    const sizes = generated[`${pascal(s.name!)}Sizes`];
    assert.ok(offsets && sizes, `struct ${s.name} is generated`);
    assert.deepEqual(
      { ...offsets },
      Object.fromEntries([['size', s.size], ...s.members!.map((m) => [camel(m.name), m.bits_offset / 8])]),
      `struct ${s.name}: offsets and size`,
    );
    assert.deepEqual({ ...sizes }, Object.fromEntries(s.members!.map((m) => [camel(m.name), sizeOf(types, m.type_id)])), `struct ${s.name}: member sizes`);
  }
});

test('every shared enum of the object is in the generated module, value by value', () => {
  const enums = btfTypes().filter((t) => t.kind === 'ENUM' && shared(t));
  assert.deepEqual(enums.map((e) => e.name).sort(), ['int_bound', 'int_counter', 'int_event_flag', 'int_event_type']);
  for (const e of enums) {
    assert.deepEqual({ ...generated[pascal(e.name!)] }, Object.fromEntries(e.values!.map((v) => [v.name, v.val])), `enum ${e.name}`);
  }
});

test('map, program and load-time constant names are the object\'s', () => {
  const types = btfTypes();
  const varsOf = (section: string) => types.find((t) => t.kind === 'DATASEC' && t.name === section)!.vars!
    .map((v) => types.find((t) => t.id === v.type_id)!.name!).sort();
  const keys = (o: object) => Object.entries(o).map(([k, v]) => (assert.equal(k, v), k)).sort();
  assert.deepEqual(keys(layout.MapName), varsOf('.maps'));
  assert.deepEqual(keys(layout.ConstName), varsOf('.rodata'));
  assert.deepEqual(keys(layout.ProgramName), types.filter((t) => t.kind === 'FUNC' && t.linkage === 'global').map((t) => t.name!).sort());
});

test('the decoder reads every field of struct int_event at its generated offset', () => {
  assert.equal(EventLayout, layout.IntEvent);
  assert.equal(TupleLayout, layout.IntTuple);
  const ev = Buffer.alloc(layout.IntEvent.size + 4);
  const E = layout.IntEvent;
  const T = layout.IntTuple;
  ev[E.type] = EVENT_DROP;
  ev[E.flags] = F_INGRESS | F_NAT;
  ev.writeUInt16LE(4, E.sampleLen);
  ev.writeUInt32LE(77, E.dropReason);
  ev.writeUInt32LE(11, E.igIfindex);
  ev.writeUInt32LE(12, E.egIfindex);
  ev.writeUInt32LE(1500, E.pktLen);
  ev.writeUInt16LE(50, E.innerOffset);
  ev.writeBigUInt64LE(1000n, E.igTs);
  ev.writeBigUInt64LE(2000n, E.egTs);
  ev.writeBigUInt64LE(0xffffffff81000000n, E.dropLocation);
  for (const [base, last] of [[E.preNat, 1], [E.postNat, 2]]) {
    ev.set([10, 0, 0, last], base + T.saddr);
    ev.set([10, 0, 1, last], base + T.daddr);
    ev.writeUInt16BE(1000 + last, base + T.sport);
    ev.writeUInt16BE(2000 + last, base + T.dport);
    ev[base + T.proto] = 17;
    ev[base + T.ipVersion] = 4;
    ev[base + T.icmpType] = last;
    ev[base + T.icmpCode] = last + 1;
  }
  ev.set([1, 2, 3, 4], E.size);
  const v = new EventView().reset(frameBatch([ev]));
  assert.ok(v.next());
  const tuple = (last: number) => ({
    ipVersion: 4, src: `10.0.0.${last}`, dst: `10.0.1.${last}`, srcPort: 1000 + last, dstPort: 2000 + last, protocol: 17, icmpType: last, icmpCode: last + 1,
  });
  assert.deepEqual(v.toObject(), {
    type: 'drop', flags: F_INGRESS | F_NAT, dropReason: 77, ingressIfindex: 11, egressIfindex: 12, packetLength: 1500,
    ingressTs: 1000n, egressTs: 2000n, innerOffset: 50, preNat: tuple(1), postNat: tuple(2), dropLocation: 0xffffffff81000000n,
    sample: Buffer.from([1, 2, 3, 4]),
  });
});

test('event types, flags, counters and bounds come from the generated enums', () => {
  assert.deepEqual([EVENT_TRACE, EVENT_DROP], [layout.IntEventType.INT_EVENT_TRACE, layout.IntEventType.INT_EVENT_DROP]);
  assert.deepEqual([F_TUNNEL, F_INGRESS, F_NAT], [layout.IntEventFlag.INT_F_TUNNEL, layout.IntEventFlag.INT_F_INGRESS, layout.IntEventFlag.INT_F_NAT]);
  const counters = Object.entries(layout.IntCounter).filter(([k]) => k !== 'INT_CNT_MAX');
  assert.deepEqual(Counters.map((n, i) => [i, n]), counters.map(([k, v]) => [v, k.replace(/^INT_CNT_/, '').toLowerCase()]));
  assert.equal(layout.IntCounter.INT_CNT_MAX, Counters.length);
  assert.equal(MAX_HOP_NS, BigInt(layout.IntBound.INT_MAX_HOP_MS) * 1_000_000n);
  // The configuration accepts exactly the sample sizes the programs handle.
  assert.deepEqual([configSchema.properties.sampleBytes.minimum, configSchema.properties.sampleBytes.maximum], [SAMPLE_BYTES_MIN, SAMPLE_BYTES_MAX]);
});
