// Attach, query and detach on real veths, on the TCX path and on the classic tc path: the
// interface ends exactly as it was, someone else's program keeps seeing every packet, and bad
// input fails cleanly with nothing left behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as bpf from '../../bpf/index';
import { NetlinkError } from '../../netlink/index';
import { withScope, createNode, runIn, sleep, type Pod } from '../helpers/netns';
import { testPinRoot, testObject } from '../helpers/bpf';

type HookState = { ingress: bpf.HookProgram[]; egress: bpf.HookProgram[]; clsact: boolean };

function hookState(ifindex: number): HookState {
  return { ingress: bpf.query(ifindex, 'ingress'), egress: bpf.query(ifindex, 'egress'), clsact: bpf.hasClsact(ifindex) };
}

/** Packets the pod has sent, as its own interface counts them. */
async function podTxPackets(pod: Pod): Promise<number> {
  const { stdout } = await runIn(pod.netns, ['cat', '/sys/class/net/eth0/statistics/tx_packets']);
  return Number(stdout.trim());
}

/** Sends n UDP datagrams from the pod to its gateway's address (they cross the host veth). */
async function sendUdp(pod: Pod, n: number): Promise<void> {
  const script = `import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range(${n}): s.sendto(b"x"*32,("${pod.gateway4}",9))`;
  await runIn(pod.netns, ['/usr/bin/python3', '-c', script]);
}

function readForeignCount(map: bpf.BpfMap): bigint {
  const v = Buffer.alloc(8);
  assert.ok(map.lookup(Buffer.alloc(4), v), 'the foreign counter exists');
  return v.readBigUInt64LE();
}

for (const mode of ['tcx', 'tc'] as const) {
  test(`${mode}: attach, query, detach leaves the interface exactly as it was`, async () => {
    await withScope(async (scope) => {
      const node = await createNode(scope);
      const pod = await node.addPod();
      const obj = bpf.BpfObject.load();
      const pins = testPinRoot(scope);
      try {
        const before = hookState(pod.hostIfindex);
        assert.deepEqual(before, { ingress: [], egress: [], clsact: false }, 'a fresh veth has nothing attached');

        const ing = obj.program(bpf.PROGRAMS.ingress);
        const eg = obj.program(bpf.PROGRAMS.egress);
        const linkPin = (d: string) => (mode === 'tcx' ? join(pins, 'links', d) : undefined);
        const a1 = bpf.attach(ing, pod.hostIfindex, 'ingress', { mode, linkPin: linkPin('ingress') });
        const a2 = bpf.attach(eg, pod.hostIfindex, 'egress', { mode, linkPin: linkPin('egress') });
        assert.equal(a1.mode, mode);
        assert.equal(a1.progId, ing.id);
        assert.equal(a2.progId, eg.id);

        const during = hookState(pod.hostIfindex);
        assert.equal(during.ingress.length, 1);
        assert.equal(during.egress.length, 1);
        assert.deepEqual(
          { mode: during.ingress[0].mode, progId: during.ingress[0].progId, name: during.ingress[0].name, ours: during.ingress[0].ours },
          { mode, progId: ing.id, name: 'int_ingress', ours: true },
        );
        assert.deepEqual(
          { mode: during.egress[0].mode, progId: during.egress[0].progId, name: during.egress[0].name, ours: during.egress[0].ours },
          { mode, progId: eg.id, name: 'int_egress', ours: true },
        );
        if (mode === 'tc') {
          assert.equal(during.clsact, true);
          assert.equal(during.ingress[0].priority, bpf.TC_PRIORITY);
          assert.equal(during.ingress[0].handle, bpf.TC_HANDLE);
          assert.equal(during.ingress[0].directAction, true);
          assert.equal(a1.createdClsact, true);
        } else {
          assert.equal(during.clsact, false, 'TCX needs no qdisc');
          assert.equal(during.ingress[0].linkId, a1.linkId);
          assert.ok(existsSync(a1.linkPin!), 'the link is pinned');
          const { id, progId, ifindex, direction } = bpf.pinnedLinkInfo(a2.linkPin!);
          assert.deepEqual({ id, progId, ifindex, direction }, { id: a2.linkId, progId: eg.id, ifindex: pod.hostIfindex, direction: 'egress' });
        }

        // Attaching again is idempotent: still exactly one program per hook.
        bpf.attach(ing, pod.hostIfindex, 'ingress', { mode, linkPin: linkPin('ingress') });
        assert.equal(bpf.query(pod.hostIfindex, 'ingress').length, 1);
        if (mode === 'tcx') {
          // An upgrade: another program on the pinned link swaps the program, the link stays.
          const up = bpf.attach(eg, pod.hostIfindex, 'ingress', { mode, linkPin: linkPin('ingress') });
          assert.deepEqual([up.linkId, up.progId], [a1.linkId, eg.id]);
          assert.deepEqual(bpf.query(pod.hostIfindex, 'ingress').map((h) => [h.linkId, h.progId]), [[a1.linkId, eg.id]]);
          bpf.attach(ing, pod.hostIfindex, 'ingress', { mode, linkPin: linkPin('ingress') });
          assert.equal(bpf.pinnedLinkInfo(a1.linkPin!).progId, ing.id);
        }

        bpf.detach(a1);
        bpf.detach(a2);
        assert.deepEqual(hookState(pod.hostIfindex), before);
        if (mode === 'tcx') assert.equal(existsSync(a1.linkPin!), false, 'the link pin is gone');
        // Detaching twice is harmless.
        bpf.detach(a1);
        bpf.detach(a2);
        assert.deepEqual(hookState(pod.hostIfindex), before);
      } finally {
        obj.close();
      }
    });
  });

  test(`${mode}: someone else's program keeps seeing every packet before, during and after ours`, async () => {
    await withScope(async (scope) => {
      const node = await createNode(scope);
      const pod = await node.addPod();
      const ours = bpf.BpfObject.load();
      const foreign = bpf.BpfObject.load(testObject('foreign.bpf.o'));
      try {
        // The other vendor sits where others usually do: TCX, or tc priority 1 handle 1.
        const theirs = bpf.attach(foreign.program('foreign_prog'), pod.hostIfindex, 'ingress', { mode, tcPriority: 1, tcHandle: 1 });
        const counter = foreign.map('foreign_count');
        const before = hookState(pod.hostIfindex);

        const phase = async (label: string) => {
          const tx0 = await podTxPackets(pod);
          const c0 = readForeignCount(counter);
          await sendUdp(pod, 200);
          // veth hands packets to the host's backlog queue: let the softirq catch up.
          let tx = 0;
          let seen = -1n;
          for (let i = 0; i < 50 && seen !== BigInt(tx); i++) {
            await sleep(20);
            tx = (await podTxPackets(pod)) - tx0;
            seen = readForeignCount(counter) - c0;
          }
          assert.ok(tx >= 200, `${label}: the pod sent its packets`);
          assert.equal(seen, BigInt(tx), `${label}: the foreign program saw every packet the pod sent`);
          return tx;
        };

        await phase('before ours');
        const a = bpf.attach(ours.program(bpf.PROGRAMS.ingress), pod.hostIfindex, 'ingress', { mode });
        const hook = bpf.query(pod.hostIfindex, 'ingress');
        assert.deepEqual(hook.map((h) => [h.name, h.ours]), [['int_ingress', true], ['foreign_prog', false]], 'ours runs first');
        const c0 = bpf.readCounters(ours.map(bpf.MapName.int_counters)).ingress_pkts;
        const tx = await phase('with ours');
        // Ours runs first, so it has counted each packet before the foreign program did.
        assert.equal(bpf.readCounters(ours.map(bpf.MapName.int_counters)).ingress_pkts - c0, BigInt(tx), 'ours saw every packet too');
        bpf.detach(a);
        await phase('after ours');
        assert.deepEqual(hookState(pod.hostIfindex), before, 'their program is untouched');
        bpf.detach(theirs);
      } finally {
        ours.close();
        foreign.close();
      }
    });
  });
}

test('attach to an interface that does not exist fails with ENODEV and changes nothing', () => {
  const obj = bpf.BpfObject.load();
  const dir = mkdtempSync(join(tmpdir(), 'ihr-'));
  try {
    for (const mode of ['tcx', 'tc'] as const) {
      const pin = join(dir, 'link');
      assert.throws(
        () => bpf.attach(obj.program(bpf.PROGRAMS.ingress), 999999, 'ingress', { mode, linkPin: pin }),
        (e: unknown) => e instanceof NetlinkError && e.code === 'ENODEV' && e.message === 'link ifindex 999999: No such device (ENODEV)',
      );
      assert.equal(existsSync(pin), false);
    }
  } finally {
    obj.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a missing bpffs is a clear error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ihr-nobpffs-'));
  try {
    assert.throws(
      () => bpf.ensureBpffs(join(dir, 'root'), { mount: false }),
      (e: unknown) => e instanceof bpf.BpfError && e.message.includes(`${join(dir, 'root')} is not a bpf filesystem`),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a link pin outside bpffs fails and leaves nothing attached', async () => {
  await withScope(async (scope) => {
    const node = await createNode(scope);
    const pod = await node.addPod();
    const obj = bpf.BpfObject.load();
    const dir = mkdtempSync(join(tmpdir(), 'ihr-notbpffs-'));
    try {
      assert.throws(
        () => bpf.attach(obj.program(bpf.PROGRAMS.ingress), pod.hostIfindex, 'ingress', { mode: 'tcx', linkPin: join(dir, 'l') }),
        (e: unknown) => e instanceof bpf.BpfError && e.op.startsWith('bpf_obj_pin'),
      );
      assert.deepEqual(bpf.query(pod.hostIfindex, 'ingress'), []);
    } finally {
      obj.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('an object the verifier rejects fails with the tail of the verifier log', () => {
  assert.throws(
    () => bpf.BpfObject.load(testObject('unverifiable.bpf.o')),
    (e: unknown) => {
      assert.ok(e instanceof bpf.BpfError, 'a BpfError');
      assert.equal(e.op, `bpf_object__load ${testObject('unverifiable.bpf.o')}`);
      assert.match(e.log ?? '', /invalid access to packet/);
      assert.match(e.log ?? '', /prog 'unverifiable': failed to load/);
      return true;
    },
  );
});

test('load-time constants: unknown names and values that do not fit are refused', () => {
  assert.throws(
    () => bpf.BpfObject.load(undefined, { constants: { no_such_constant: 1 } }),
    (e: unknown) => e instanceof bpf.BpfError && e.code === 'ENOENT' && /no constant named no_such_constant/.test(e.message),
  );
  assert.throws(
    () => bpf.BpfObject.load(undefined, { constants: { sample_bytes: 2n ** 40n } }),
    (e: unknown) => e instanceof bpf.BpfError && e.code === 'ERANGE',
  );
  // The source of truth for the defaults is the object itself (its config header).
  const progs = join(__dirname, '../../bpf/progs');
  const sources = readdirSync(progs).filter((f) => /\.(c|h)$/.test(f)).map((f) => readFileSync(join(progs, f), 'utf8')).join('\n');
  assert.match(sources, /sample_bytes = 128;/);
});
