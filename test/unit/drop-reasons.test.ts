// Kernel drop reason names -> INT codes, and the BTF reader against the running kernel
// (bpftool is the independent witness of the enum's values).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { buildDropCodeTable, intDropCode, intDropCodeForName, IntDropCode, KERNEL_DROP_REASON_TO_INT } from '../../daemon/report/drop-reasons';
import { readBtfEnum, readKernelDropReasons, VMLINUX_BTF_PATH } from '../../daemon/report/kernel-drop-reasons';

/** enum skb_drop_reason as bpftool prints it: name (full) -> value. */
function bpftoolDropReasons(): Map<string, number> {
  const c = execFileSync('bpftool', ['btf', 'dump', 'file', VMLINUX_BTF_PATH, 'format', 'c'], { encoding: 'utf8', maxBuffer: 256 << 20 });
  const start = c.indexOf('enum skb_drop_reason {');
  assert.notEqual(start, -1, 'the kernel has enum skb_drop_reason');
  const body = c.slice(start, c.indexOf('};', start));
  const out = new Map<string, number>();
  for (const m of body.matchAll(/^\s*(\w+) = (\d+),$/gm)) out.set(m[1], Number(m[2]));
  return out;
}

test('the names the brief lists map to the switch.p4-16 codes', () => {
  const expected: Record<string, number> = {
    NETFILTER_DROP: 80,
    BPF_CGROUP_EGRESS: 80,
    TC_INGRESS: 80,
    TC_EGRESS: 80,
    TC_CHAIN_NOTFOUND: 80,
    SOCKET_FILTER: 80,
    XDP: 80,
    IP_INNOROUTES: 29,
    IP_OUTNOROUTES: 29,
    IP_INADDRERRORS: 29,
    IP_INHDR: 25,
    IPV6_BAD_EXTHDR: 25,
    PKT_TOO_SMALL: 30,
    IP_CSUM: 31,
    TCP_CSUM: 31,
    UDP_CSUM: 31,
    IP_RPFILTER: 82,
    OTHERHOST: 54,
    UNICAST_IN_L2_MULTICAST: 18,
    QDISC_DROP: 71,
    FULL_RING: 71,
    NOMEM: 71,
    NEIGH_FAILED: 93,
    NEIGH_QUEUEFULL: 93,
    IPV6DISABLED: 100,
    PKT_TOO_BIG: 70,
    NOT_SPECIFIED: 0,
    TCP_RESET: 0,
    NO_SOCKET: 0,
  };
  for (const [name, code] of Object.entries(expected)) assert.equal(intDropCodeForName(name), code, name);
  assert.equal(intDropCodeForName('SKB_DROP_REASON_NETFILTER_DROP'), 80);
  assert.equal(intDropCodeForName('toString'), 0, 'no prototype keys');
  assert.equal(IntDropCode.ACL_DROP, 80);
});

test('every mapped code is a code of the table, and none is out of u8 range', () => {
  const codes = new Set<number>(Object.values(IntDropCode));
  for (const [name, code] of Object.entries(KERNEL_DROP_REASON_TO_INT)) {
    assert.ok(codes.has(code), `${name} -> ${code}`);
    assert.ok(code > 0 && code < 256);
  }
});

test('buildDropCodeTable indexes by kernel value and leaves the rest unknown', () => {
  const table = buildDropCodeTable([
    { name: 'NOT_SPECIFIED', value: 2 },
    { name: 'NETFILTER_DROP', value: 12 },
    { name: 'QDISC_DROP', value: 64 },
    { name: 'SUBSYS_OPENVSWITCH_THING', value: 0x20001 }, // another subsystem: left out
    { name: 'BAD', value: -1 },
  ]);
  assert.equal(table.length, 65);
  assert.equal(table[12], 80);
  assert.equal(table[64], 71);
  assert.equal(table[2], 0);
  assert.equal(intDropCode(table, 12), 80);
  assert.equal(intDropCode(table, 65), 0);
  assert.equal(intDropCode(table, 0x20001), 0);
  assert.equal(intDropCode(table, -3), 0);
  assert.equal(buildDropCodeTable([]).length, 0);
});

test('the BTF reader finds enum skb_drop_reason with the values bpftool prints', () => {
  const fromBpftool = bpftoolDropReasons();
  const ours = readKernelDropReasons();
  assert.ok(ours !== null);
  assert.equal(ours.length, fromBpftool.size);
  const netfilter = ours.find((r) => r.name === 'NETFILTER_DROP');
  assert.equal(netfilter?.value, fromBpftool.get('SKB_DROP_REASON_NETFILTER_DROP'));
  // Every member, names with the prefix stripped.
  for (const r of ours) {
    const full = r.name === 'NOT_DROPPED_YET' || r.name === 'CONSUMED' ? `SKB_${r.name}` : `SKB_DROP_REASON_${r.name}`;
    assert.equal(fromBpftool.get(full), r.value, full);
  }
  const table = buildDropCodeTable(ours);
  assert.equal(table[fromBpftool.get('SKB_DROP_REASON_NETFILTER_DROP')!], 80);
  assert.equal(table[fromBpftool.get('SKB_DROP_REASON_IP_CSUM')!], 31);
  assert.equal(table[fromBpftool.get('SKB_DROP_REASON_NOT_SPECIFIED')!], 0);
});

/** A tiny little-endian BTF blob: INT, ENUM 'colour', FUNC_PROTO, ENUM64 'big'. */
function syntheticBtf(): Buffer {
  const strings = Buffer.from('\0int\0colour\0RED\0BLUE\0big\0HUGE\0');
  const off = (s: string) => strings.indexOf(Buffer.from(`\0${s}\0`)) + 1;
  const types: Buffer[] = [];
  const type = (nameOff: number, kind: number, vlen: number, size: number, extra: number[], kindFlag = 0) => {
    const b = Buffer.alloc(12 + 4 * extra.length);
    b.writeUInt32LE(nameOff, 0);
    b.writeUInt32LE(((kindFlag << 31) | (kind << 24) | vlen) >>> 0, 4);
    b.writeUInt32LE(size, 8);
    extra.forEach((v, i) => b.writeUInt32LE(v >>> 0, 12 + 4 * i));
    types.push(b);
  };
  type(off('int'), 1, 0, 4, [0x01000020]);
  type(0, 13, 1, 1, [0, 1]); // FUNC_PROTO with one param
  type(off('colour'), 6, 2, 4, [off('RED'), -1, off('BLUE'), 7], 1); // signed enum
  type(off('big'), 19, 1, 8, [off('HUGE'), 5, 1]); // 2^32 + 5
  const typeSec = Buffer.concat(types);
  const hdr = Buffer.alloc(24);
  hdr.writeUInt16LE(0xeb9f, 0);
  hdr[2] = 1;
  hdr.writeUInt32LE(24, 4);
  hdr.writeUInt32LE(0, 8);
  hdr.writeUInt32LE(typeSec.length, 12);
  hdr.writeUInt32LE(typeSec.length, 16);
  hdr.writeUInt32LE(strings.length, 20);
  return Buffer.concat([hdr, typeSec, strings]);
}

test('readBtfEnum decodes ENUM (signed) and ENUM64 and steps over other kinds', () => {
  const btf = syntheticBtf();
  assert.deepEqual(readBtfEnum(btf, 'colour'), [
    { name: 'RED', value: -1 },
    { name: 'BLUE', value: 7 },
  ]);
  assert.deepEqual(readBtfEnum(btf, 'big'), [{ name: 'HUGE', value: 2 ** 32 + 5 }]);
  assert.equal(readBtfEnum(btf, 'missing'), null);
  assert.throws(() => readBtfEnum(Buffer.alloc(24), 'x'), /bad magic/);
  assert.throws(() => readBtfEnum(Buffer.alloc(3), 'x'), /too short/);
  const unknownKind = Buffer.from(btf);
  unknownKind.writeUInt32LE((30 << 24) >>> 0, 24 + 4);
  assert.throws(() => readBtfEnum(unknownKind, 'colour'), /unknown type kind 30/);
});
