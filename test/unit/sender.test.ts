// The report sender over real loopback UDP: per-collector sequence numbers and hw_id, queue
// bounds and overflow policies, a collector that is down, and DNS re-resolution.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { startCollector, type Collector } from '../../daemon/collector/collector';
import type { DecodedReport } from '../../daemon/collector/decoder';
import { parseCollectorAddress, ReportSender, type SenderOptions } from '../../daemon/report/sender';

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

/** A UDP port on 127.0.0.1 with nobody listening. */
async function closedPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
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
      assert.deepEqual(st.destinations.map((d) => [d.collector, d.address, d.queueLength, d.inFlight, d.nextSeq, d.lastError]), [
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
  await withSender({ collectors: [`127.0.0.1:${port}`], queueLimit: 16, maxInFlight: 4, overflow: 'drop-newest' }, async (s) => {
    for (let i = 0; i < 1000; i++) s.send(REPORT);
    let d = s.stats().destinations[0];
    assert.equal(d.queueLength, 16);
    assert.equal(d.queued, 16);
    assert.equal(d.droppedQueueFull, 984);

    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 50; i++) s.send(REPORT);
      d = s.stats().destinations[0];
      assert.ok(d.queueLength <= 16 && d.inFlight <= 4, `bounded: ${d.queueLength} queued, ${d.inFlight} in flight`);
      await s.drain();
      await new Promise((r) => setTimeout(r, 5));
    }
    d = s.stats().destinations[0];
    assert.equal(d.queueLength, 0);
    assert.equal(d.inFlight, 0);
    assert.ok(d.sendErrors + d.socketErrors > 0, 'ICMP port unreachable was seen');
    assert.equal(d.lastError, 'ECONNREFUSED');
    // Every accepted report was either sent or failed; every offered one has a number.
    assert.equal(d.queued, d.sent + d.sendErrors);
    assert.equal(d.queued + d.droppedQueueFull, 2000);
    assert.equal(d.nextSeq, 2001);
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
