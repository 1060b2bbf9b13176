// The report sender over real loopback UDP: per-collector sequence numbers and hw_id, queue
// bounds and overflow policies, batches of thousands, a collector that is down, a full socket
// buffer (EAGAIN, in a namespace whose loopback is rate-limited), and DNS re-resolution.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { startCollector, type Collector } from '../../daemon/collector/collector';
import type { DecodedReport } from '../../daemon/collector/decoder';
import { parseCollectorAddress, ReportSender, type SenderOptions } from '../../daemon/report/sender';
import { UdpError, udpClose, udpOpen } from '../../daemon/report/udp';
import { createNetns, runIn, withScope } from '../helpers/netns';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** §4.1 flow report with sequence number 0 and hw_id 0: the sender stamps both. */
const REPORT = hex(`
  02 20 00 00 00 00 00 00 56 78 9a bc c0 a8 21 0b
  00 07 00 02 00 00 00 00 56 78 f6 5c 6a 3f 2e 11
  22 33 0e 8d 4c aa bb cc 08 00 45 00 00 28 1c 46
  40 00 40 06 33 e3 0a 44 eb 0a 0a 44 eb 14 a9 f8
  00 50 1a 2b 3c 4d 5e 6f 70 81 50 10 01 f6 f3 85
  00 00`);

interface Sink {
  collector: Collector;
  reports: DecodedReport[];
  text: string;
}

async function sink(listen: string): Promise<Sink> {
  const reports: DecodedReport[] = [];
  const collector = await startCollector({ listen, onReport: (r) => reports.push(r) });
  const { host, port, family } = collector.address;
  return { collector, reports, text: family === 6 ? `[${host}]:${port}` : `${host}:${port}` };
}

async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A UDP port on 127.0.0.1 (or ::1) with nobody listening. */
async function closedPort(host = '127.0.0.1'): Promise<number> {
  const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  await new Promise<void>((r) => s.bind(0, host, () => r()));
  const { port } = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function withSender<T>(opts: SenderOptions, body: (s: ReportSender) => Promise<T>): Promise<T> {
  const s = new ReportSender(opts);
  try {
    await s.ready();
    return await body(s);
  } finally {
    await s.close();
  }
}

test('parseCollectorAddress', () => {
  assert.deepEqual(parseCollectorAddress('192.168.33.50:32766'), { host: '192.168.33.50', port: 32766, family: 4 });
  assert.deepEqual(parseCollectorAddress('[fd00::50]:30001'), { host: 'fd00::50', port: 30001, family: 6 });
  assert.deepEqual(parseCollectorAddress('collector.monitoring.svc:9000'), { host: 'collector.monitoring.svc', port: 9000, family: 0 });
  assert.deepEqual(parseCollectorAddress('10.0.0.1'), { host: '10.0.0.1', port: 32766, family: 4 });
  assert.throws(() => parseCollectorAddress('fd00::50:30001'), /not HOST:PORT/);
  assert.throws(() => parseCollectorAddress('[10.0.0.1]:5'), /not an IPv6 address/);
  assert.throws(() => parseCollectorAddress('host:0'), /port must be 1-65535/);
  assert.throws(() => parseCollectorAddress('bad_host!:5'), /neither an IP address nor a DNS name/);
  assert.throws(() => new ReportSender({ collectors: [] }), /at least one collector/);
  assert.throws(() => new ReportSender({ collectors: ['127.0.0.1:1'], hwId: 64 }), /hwId 64 is not 0-63/);
  assert.throws(() => new ReportSender({ collectors: ['127.0.0.1:1'], queueLimit: 0 }), /queueLimit must be a positive integer/);
});

test('each collector gets its own sequence from 1, with the sender hw_id; the report is copied', async () => {
  const a = await sink('127.0.0.1:0');
  const b = await sink('[::1]:0');
  try {
    await withSender({ collectors: [a.text, b.text], hwId: 5 }, async (s) => {
      const scratch = Buffer.from(REPORT);
      s.send(scratch);
      scratch.fill(0xff); // the caller reuses its buffer at once
      s.send(REPORT);
      s.send(REPORT);
      assert.equal(await s.drain(), true);
      await until(() => a.reports.length === 3 && b.reports.length === 3);
      for (const k of [a, b]) {
        assert.deepEqual(k.reports.map((r) => [r.seq, r.hwId, r.hopLatencyNs, r.inner.srcPort]), [
          [1, 5, 23456, 43512],
          [2, 5, 23456, 43512],
          [3, 5, 23456, 43512],
        ]);
      }
      const st = s.stats();
      assert.equal(st.hwId, 5);
      assert.deepEqual(st.total, { queued: 6, sent: 6, sendErrors: 0, socketErrors: 0, droppedQueueFull: 0, droppedBadSize: 0, resolveErrors: 0 });
      assert.deepEqual(st.destinations.map((d) => [d.collector, d.address, d.queueLength, d.wouldBlock, d.nextSeq, d.lastError]), [
        [a.text, '127.0.0.1', 0, 0, 4, null],
        [b.text, '::1', 0, 0, 4, null],
      ]);
    });
  } finally {
    await a.collector.close();
    await b.collector.close();
  }
});

test('sends a length-limited view and drops reports of a bad size (their numbers are used)', async () => {
  const a = await sink('127.0.0.1:0');
  try {
    await withSender({ collectors: [a.text], slotSize: 64 }, async (s) => {
      s.send(REPORT); // 82 > 64
      s.send(REPORT, 11); // shorter than a fixed header
      s.send(REPORT, 100); // longer than the buffer
      s.send(REPORT, 60); // cut: still a report
      assert.equal(await s.drain(), true);
      await until(() => a.reports.length === 1);
      assert.equal(a.reports[0].seq, 4);
      assert.equal(a.reports[0].innerLength, 32);
      assert.equal(s.stats().total.droppedBadSize, 3);
      assert.equal(s.stats().total.sent, 1);
    });
  } finally {
    await a.collector.close();
  }
});

test('drop-oldest keeps the newest reports; drop-newest keeps the oldest', async () => {
  for (const [overflow, expected] of [
    ['drop-oldest', [16, 17, 18, 19, 20]],
    ['drop-newest', [1, 2, 3, 4, 5]],
  ] as const) {
    const a = await sink('127.0.0.1:0');
    try {
      await withSender({ collectors: [a.text], queueLimit: 5, overflow }, async (s) => {
        // Synchronously, before any flush: the queue holds 5.
        for (let i = 0; i < 20; i++) s.send(REPORT);
        const before = s.stats().destinations[0];
        assert.equal(before.queueLength, 5);
        assert.equal(before.droppedQueueFull, 15);
        assert.equal(before.queued, overflow === 'drop-oldest' ? 20 : 5);
        assert.equal(await s.drain(), true);
        await until(() => a.reports.length === 5);
        assert.deepEqual(a.reports.map((r) => r.seq), expected);
        assert.equal(s.stats().total.sent, 5);
      });
    } finally {
      await a.collector.close();
    }
  }
});

test('sequence numbers wrap from 2^32-1 to 0', async () => {
  const a = await sink('127.0.0.1:0');
  try {
    await withSender({ collectors: [a.text] }, async (s) => {
      // Reach into the destination to avoid sending 4 billion reports.
      (s as unknown as { destinations: { seq: number }[] }).destinations[0].seq = 0xfffffffe;
      s.send(REPORT);
      s.send(REPORT);
      s.send(REPORT);
      assert.equal(await s.drain(), true);
      await until(() => a.reports.length === 3);
      assert.deepEqual(a.reports.map((r) => r.seq), [0xfffffffe, 0xffffffff, 0]);
    });
  } finally {
    await a.collector.close();
  }
});

test('a collector that is down: errors are counted, the queue stays bounded, nothing throws', async () => {
  const port = await closedPort();
  await withSender({ collectors: [`127.0.0.1:${port}`], queueLimit: 16, overflow: 'drop-newest' }, async (s) => {
    for (let i = 0; i < 1000; i++) s.send(REPORT);
    let d = s.stats().destinations[0];
    assert.equal(d.queueLength, 16);
    assert.equal(d.queued, 16);
    assert.equal(d.droppedQueueFull, 984);

    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 50; i++) s.send(REPORT);
      d = s.stats().destinations[0];
      assert.ok(d.queueLength <= 16, `bounded: ${d.queueLength} queued`);
      await s.drain();
      await new Promise((r) => setTimeout(r, 5));
    }
    d = s.stats().destinations[0];
    assert.equal(d.queueLength, 0);
    assert.ok(d.sendErrors + d.socketErrors > 0, 'ICMP port unreachable was seen');
    assert.equal(d.lastError, 'ECONNREFUSED');
    // Every accepted report was either sent or failed; every offered one has a number.
    assert.equal(d.queued, d.sent + d.sendErrors);
    assert.equal(d.queued + d.droppedQueueFull, 2000);
    assert.equal(d.nextSeq, 2001);
  });
});

/** A plain dgram sink that keeps each datagram's sequence number and hw_id. */
async function rawSink(host: string): Promise<{ socket: dgram.Socket; text: string; seqs: number[]; lengths: number[]; hwIds: Set<number> }> {
  const socket = dgram.createSocket({ type: host.includes(':') ? 'udp6' : 'udp4', recvBufferSize: 4 * 1024 * 1024 });
  const seqs: number[] = [];
  const lengths: number[] = [];
  const hwIds = new Set<number>();
  socket.on('message', (m) => {
    seqs.push(m.readUInt32BE(4));
    lengths.push(m.length);
    hwIds.add(m[3] & 0x3f);
  });
  await new Promise<void>((r) => socket.bind(0, host, () => r()));
  const { port } = socket.address();
  return { socket, text: host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`, seqs, lengths, hwIds };
}

const oneTo = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);

test('5000 reports queued at once reach IPv4 and IPv6 sinks complete and in order', async () => {
  const v4 = await rawSink('127.0.0.1');
  const v6 = await rawSink('::1');
  try {
    await withSender({ collectors: [v4.text, v6.text], hwId: 42, queueLimit: 8192 }, async (s) => {
      for (let i = 0; i < 5000; i++) s.send(REPORT);
      assert.equal(s.stats().total.queued, 10000);
      assert.equal(await s.drain(5000), true, 'drained');
      await until(() => v4.seqs.length >= 5000 && v6.seqs.length >= 5000, 5000);
      for (const k of [v4, v6]) {
        assert.deepEqual(k.seqs, oneTo(5000), `${k.text}: every report, in order`);
        assert.deepEqual([...k.hwIds], [42]);
      }
      const st = s.stats();
      assert.deepEqual(st.total, { queued: 10000, sent: 10000, sendErrors: 0, socketErrors: 0, droppedQueueFull: 0, droppedBadSize: 0, resolveErrors: 0 });
      assert.deepEqual(st.destinations.map((d) => [d.queueLength, d.nextSeq]), [[0, 5001], [0, 5001]]);
    });
  } finally {
    v4.socket.close();
    v6.socket.close();
  }
});

test('runs of equal lengths (sent by GSO) and odd ones arrive as separate datagrams of their own lengths', async () => {
  const sink = await rawSink('127.0.0.1');
  const big = Buffer.concat([REPORT, Buffer.alloc(1300)]); // longer than a GSO segment may be
  const pattern = [82, 82, 82, 60, 1300, 82, 60];
  try {
    await withSender({ collectors: [sink.text], queueLimit: 4096 }, async (s) => {
      for (let i = 0; i < 3000; i++) s.send(big, pattern[i % 7]);
      assert.equal(await s.drain(5000), true, 'drained');
      await until(() => sink.seqs.length >= 3000, 5000);
      assert.deepEqual(sink.seqs, oneTo(3000));
      assert.deepEqual(sink.lengths, Array.from({ length: 3000 }, (_, i) => pattern[i % 7]));
      assert.equal(s.stats().total.sent, 3000);
    });
  } finally {
    sink.socket.close();
  }
});

test('a collector that is down under a flood: counted errors, bounded queue, the event loop keeps turning', async () => {
  const ports = [await closedPort('127.0.0.1'), await closedPort('::1')];
  await withSender({ collectors: [`127.0.0.1:${ports[0]}`, `[::1]:${ports[1]}`], queueLimit: 1024 }, async (s) => {
    const lag = monitorEventLoopDelay({ resolution: 1 });
    lag.enable();
    let offered = 0;
    let maxQueue = 0;
    const end = Date.now() + 300;
    while (Date.now() < end) {
      for (let i = 0; i < 500; i++) s.send(REPORT);
      offered += 500;
      for (const d of s.stats().destinations) maxQueue = Math.max(maxQueue, d.queueLength);
      await new Promise((r) => setImmediate(r));
    }
    lag.disable();
    assert.equal(await s.drain(), true, 'drained');
    assert.ok(maxQueue <= 1024, `bounded: at most ${maxQueue} queued`);
    // Generous: a blocked loop would show seconds; a flush is one system call per 1024 reports.
    assert.ok(lag.max / 1e6 < 200, `event-loop delay max ${lag.max / 1e6} ms`);
    for (const d of s.stats().destinations) {
      assert.ok(d.sendErrors > 0, `${d.collector}: ICMP port unreachable was counted`);
      assert.equal(d.lastError, 'ECONNREFUSED');
      assert.equal(d.queueLength, 0);
      assert.equal(d.queued, d.sent + d.sendErrors, `${d.collector}: every accepted report was sent or failed`);
      assert.equal(d.queued + d.droppedQueueFull, offered);
      assert.equal(d.nextSeq, offered + 1);
    }
  });
});

// Runs in a namespace whose loopback is rate-limited (tbf): datagrams wait in the qdisc charged to
// the sender's small socket buffer, so sendmmsg meets EAGAIN. Prints the stats as JSON.
const EAGAIN_CHILD = `
const dgram = require('node:dgram');
const { ReportSender } = require(${JSON.stringify(join(__dirname, '../../daemon/report/sender.ts'))});
(async () => {
  const report = Buffer.from(${JSON.stringify(REPORT.toString('hex'))}, 'hex');
  const sink = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
  const seqs = [];
  sink.on('message', (m) => seqs.push(m.readUInt32BE(4)));
  await new Promise((r) => sink.bind(0, '127.0.0.1', r));
  const s = new ReportSender({ collectors: ['127.0.0.1:' + sink.address().port], queueLimit: 1000, overflow: 'drop-newest', sendBufferBytes: 4096 });
  await s.ready();
  for (let i = 0; i < 1000; i++) s.send(report);
  await new Promise((r) => setImmediate(r)); // after the first flush
  const first = s.stats().destinations[0];
  const room = 1000 - first.queueLength;
  for (let i = 0; i < room + 10; i++) s.send(report);
  const full = s.stats().destinations[0];
  const drained = await s.drain(20000);
  const deadline = Date.now() + 5000;
  while (seqs.length < 1000 + room && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const last = s.stats().destinations[0];
  await s.close();
  sink.close();
  console.log(JSON.stringify({ first, full, drained, last, seqs }));
})();
`;

test('a full socket buffer (EAGAIN) keeps reports queued: none lost, drops only when the queue is full', async () => {
  await withScope(async (scope) => {
    const ns = await createNetns(scope);
    await runIn(ns, ['tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'tbf', 'rate', '10mbit', 'burst', '10kb', 'limit', '1mb']);
    const { stdout } = await runIn(ns, [process.execPath, '--import', 'tsx', '-e', EAGAIN_CHILD], { timeoutMs: 60_000 });
    type D = { queued: number; sent: number; sendErrors: number; droppedQueueFull: number; queueLength: number; wouldBlock: number };
    const r = JSON.parse(stdout) as { first: D; full: D; drained: boolean; last: D; seqs: number[] };
    const room = 1000 - r.first.queueLength;
    // The first flush went as far as the socket buffer allowed and left the rest queued.
    assert.ok(r.first.wouldBlock >= 1, `EAGAIN seen (${r.first.wouldBlock})`);
    assert.ok(room > 0 && room < 1000, `the first flush sent part of the queue (${room})`);
    assert.equal(r.first.sent, room);
    assert.equal(r.first.droppedQueueFull, 0);
    // Refilled to the limit and 10 beyond: exactly those 10 dropped.
    assert.equal(r.full.queueLength, 1000);
    assert.equal(r.full.droppedQueueFull, 10);
    assert.equal(r.drained, true, 'drained');
    assert.equal(r.last.sent, 1000 + room);
    assert.equal(r.last.sendErrors, 0);
    assert.equal(r.last.droppedQueueFull, 10);
    assert.equal(r.last.queueLength, 0);
    assert.ok(r.last.wouldBlock > r.first.wouldBlock, `blocked again while draining (${r.last.wouldBlock})`);
    assert.deepEqual(r.seqs, oneTo(1000 + room), 'every queued report arrived, in order; the 10 dropped were the newest');
  });
});

test('a DNS name is resolved, and re-resolved to a new address', async () => {
  const first = await sink('127.0.0.1:0');
  const second = await sink(`127.0.0.2:${first.collector.address.port}`);
  let answer = '127.0.0.1';
  const asked: string[] = [];
  try {
    await withSender(
      {
        collectors: [`collector.test:${first.collector.address.port}`],
        resolveIntervalMs: 20,
        lookup: async (host) => {
          asked.push(host);
          return { address: answer, family: 4 };
        },
      },
      async (s) => {
        s.send(REPORT);
        assert.equal(await s.drain(), true);
        await until(() => first.reports.length === 1);
        answer = '127.0.0.2';
        await until(() => s.stats().destinations[0].address === '127.0.0.2');
        s.send(REPORT);
        assert.equal(await s.drain(), true);
        await until(() => second.reports.length === 1);
        assert.equal(first.reports[0].seq, 1);
        assert.equal(second.reports[0].seq, 2, 'the sequence continues across addresses');
        assert.equal(first.reports.length, 1);
        assert.equal(asked[0], 'collector.test');
      },
    );
  } finally {
    await first.collector.close();
    await second.collector.close();
  }
});

test('a name that does not resolve is counted and reports wait, bounded', async () => {
  await withSender(
    {
      collectors: ['nowhere.test:9'],
      queueLimit: 3,
      lookup: async () => {
        throw Object.assign(new Error('getaddrinfo ENOTFOUND nowhere.test'), { code: 'ENOTFOUND' });
      },
    },
    async (s) => {
      for (let i = 0; i < 5; i++) s.send(REPORT);
      await new Promise((r) => setImmediate(r));
      const d = s.stats().destinations[0];
      assert.equal(d.address, null);
      assert.equal(d.resolveErrors, 1);
      assert.equal(d.lastError, 'resolve nowhere.test: ENOTFOUND');
      assert.equal(d.queueLength, 3);
      assert.equal(d.droppedQueueFull, 2);
      assert.equal(d.sent, 0);
    },
  );
});

test('close is idempotent and send after close does nothing', async () => {
  const a = await sink('127.0.0.1:0');
  try {
    const s = new ReportSender({ collectors: [a.text] });
    await s.ready();
    await s.close();
    await s.close();
    s.send(REPORT);
    assert.equal(s.stats().total.queued, 0);
  } finally {
    await a.collector.close();
  }
});

test('the udp module: opening a socket to something that is not an IP literal is a UdpError naming it', () => {
  assert.throws(
    () => udpOpen('collector.example', 5000),
    (e: unknown) => e instanceof UdpError && e.code === 'EINVAL' && e.op === 'udp open collector.example:5000 (not an IP address)'
      && e.message === 'udp open collector.example:5000 (not an IP address): Invalid argument (EINVAL)',
  );
  const fd = udpOpen('::1', 9);
  assert.ok(fd > 2, `an fd: ${fd}`);
  udpClose(fd);
});
