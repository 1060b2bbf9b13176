// The TypeScript mirror of the kernel/user layout (bpf/events.ts) must match the compiled
// object's BTF exactly, so the two can never drift apart silently.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Counters, EventLayout, TupleLayout, defaultObjectPath } from '../../bpf/index';

interface BtfType {
  id: number;
  kind: string;
  name?: string;
  size?: number;
  members?: { name: string; bits_offset: number }[];
  values?: { name: string; val: number }[];
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

const camel = (s: string) => s.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

function checkStruct(types: BtfType[], name: string, layout: Record<string, number>) {
  const t = types.find((x) => x.kind === 'STRUCT' && x.name === name);
  assert.ok(t, `struct ${name} is in the object's BTF`);
  assert.equal(layout.size, t.size, `sizeof(struct ${name})`);
  const members = t.members!.filter((m) => !m.name.startsWith('pad'));
  for (const m of members) {
    const k = camel(m.name);
    assert.ok(k in layout, `${name}.${m.name} has a TypeScript offset (${k})`);
    assert.equal(layout[k], m.bits_offset / 8, `offset of ${name}.${m.name}`);
  }
  const tsKeys = Object.keys(layout).filter((k) => k !== 'size');
  assert.equal(tsKeys.length, members.length, `${name}: TypeScript has exactly the C members`);
}

test('struct int_event offsets and size match the BTF of the compiled object', () => {
  checkStruct(btfTypes(), 'int_event', EventLayout);
});

test('struct int_tuple offsets and size match the BTF of the compiled object', () => {
  checkStruct(btfTypes(), 'int_tuple', TupleLayout);
});

test('counter names and indices match enum int_counter', () => {
  const e = btfTypes().find((x) => x.kind === 'ENUM' && x.name === 'int_counter');
  assert.ok(e, 'enum int_counter is in the BTF');
  const values = e.values!.filter((v) => v.name !== 'INT_CNT_MAX');
  assert.deepEqual(
    values.map((v) => [v.val, v.name.replace(/^INT_CNT_/, '').toLowerCase()]),
    Counters.map((n, i) => [i, n]),
  );
  assert.equal(e.values!.find((v) => v.name === 'INT_CNT_MAX')!.val, Counters.length);
});
