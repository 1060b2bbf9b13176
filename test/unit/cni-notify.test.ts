// The notify client against a real node:http server on a unix socket in a temp dir.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { notifyDaemon, probeSocket, queryAttachment } from '../../plugin/notify';
import type { AttachmentNotice } from '../../protocol/notice';
import { NoticeError, parseNotice } from '../../protocol/notice-validate';
import { FakeDaemon } from '../fixtures/cni/harness';

const notice: AttachmentNotice = {
  network: 'ebpftest', containerId: 'abc', ifname: 'eth0', netns: '/run/netns/x', hostIfname: 'veth1', hostIfindex: 19,
  podNamespace: 'shop', podName: 'cart', podUid: 'u-1', ips: ['10.99.0.2', 'fd00::2'], mode: 'tcx',
  programIds: [5, 6], attachedAt: '2026-01-02T03:04:05.006Z',
};

let dir: string;
let socketPath: string;
let daemon: FakeDaemon | undefined;
let rawServer: Server | undefined;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ihr-notify-'));
  socketPath = join(dir, 'daemon.sock');
});
afterEach(async () => {
  await daemon?.close();
  daemon = undefined;
  const raw = rawServer;
  rawServer = undefined;
  if (raw) await new Promise<void>((resolve) => raw.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

describe('notify client', () => {
  test('notify: ADD posts the exact AttachmentNotice JSON to /v1/cni/add', async () => {
    daemon = await new FakeDaemon(socketPath).listen();
    const res = await notifyDaemon(socketPath, 'add', notice);
    assert.deepEqual(res, { ok: true, status: 200, body: '{}' });
    assert.deepEqual(daemon.received, [{ method: 'POST', url: '/v1/cni/add', contentType: 'application/json', body: notice }]);
  });

  test('notify: DEL posts to /v1/cni/del', async () => {
    daemon = await new FakeDaemon(socketPath).listen();
    const del = { network: 'ebpftest', containerId: 'abc', ifname: 'eth0' };
    assert.equal((await notifyDaemon(socketPath, 'del', del)).ok, true);
    assert.deepEqual(daemon.received, [{ method: 'POST', url: '/v1/cni/del', contentType: 'application/json', body: del }]);
  });

  test('notify: a non-2xx answer is an error naming the status', async () => {
    daemon = await new FakeDaemon(socketPath).listen();
    daemon.status = 503;
    assert.deepEqual(await notifyDaemon(socketPath, 'add', notice), { ok: false, error: 'daemon answered 503 to POST /v1/cni/add: {}' });
  });

  test('notify: an absent socket is an error, not an exception', async () => {
    assert.deepEqual(await notifyDaemon(socketPath, 'add', notice), {
      ok: false, error: `cannot reach the daemon at ${socketPath}: connect ENOENT ${socketPath}`,
    });
  });

  test('notify: a path that is not a socket is an error, not an exception', async () => {
    writeFileSync(socketPath, 'plain file');
    const res = await notifyDaemon(socketPath, 'del', { network: 'n', containerId: 'c', ifname: 'eth0' });
    assert.equal(res.ok, false);
    assert.match(res.ok ? '' : res.error, new RegExp(`^cannot reach the daemon at ${socketPath}: connect ECONNREFUSED`));
  });

  test('notify: a daemon that never answers is given up after the budget', async () => {
    daemon = await new FakeDaemon(socketPath).listen();
    daemon.hang = true;
    assert.deepEqual(await notifyDaemon(socketPath, 'add', notice, 150), { ok: false, error: 'daemon did not answer POST /v1/cni/add within 150 ms' });
    assert.equal(daemon.received.length, 1, 'the request was delivered');
  });

  // The client speaks HTTP/1.1 itself: the framings a server may choose, byte by byte.
  async function rawDaemon(answer: (socket: Socket, request: string) => void): Promise<Server> {
    const server = createServer((socket) => {
      let request = '';
      socket.on('data', (chunk: Buffer) => {
        request += chunk.toString('latin1');
        const head = request.indexOf('\r\n\r\n');
        if (head < 0) return;
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(request.slice(0, head))?.[1] ?? 0);
        if (request.length >= head + 4 + length) answer(socket, request);
      });
    });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    rawServer = server; // closed by afterEach
    return server;
  }

  test('notify: the request is plain HTTP/1.1 with Host, Connection: close and a JSON body', async () => {
    let seen = '';
    await rawDaemon((socket, request) => {
      seen = request;
      socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}');
    });
    const del = { network: 'n', containerId: 'c', ifname: 'eth0' };
    assert.deepEqual(await notifyDaemon(socketPath, 'del', del), { ok: true, status: 200, body: '{}' });
    const body = JSON.stringify(del);
    assert.equal(seen, `POST /v1/cni/del HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  });

  test('notify: chunked, split, up-to-EOF and interim (1xx) answers are read whole', async () => {
    const answers = [
      (s: Socket) => s.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{"a\r\n4;x=y\r\n":1}\r\n0\r\n\r\n'),
      (s: Socket) => { s.write('HTTP/1.1 202 Acc'); setTimeout(() => s.write('epted\r\nContent-Length: 7\r\n\r\n{"a"'), 20); setTimeout(() => s.end(':1}'), 40); },
      (s: Socket) => s.end('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"a":1}'),
      (s: Socket) => s.end('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 7\r\n\r\n{"a":1}'),
    ];
    let next = 0;
    await rawDaemon((socket) => answers[next++](socket));
    const del = { network: 'n', containerId: 'c', ifname: 'eth0' };
    for (const status of [200, 202, 200, 201]) {
      assert.deepEqual(await notifyDaemon(socketPath, 'del', del), { ok: true, status, body: '{"a":1}' });
    }
  });

  test('notify: a daemon that hangs up without an answer, or in the middle of one, is an error', async () => {
    const answers = [
      (s: Socket) => s.end(),
      (s: Socket) => s.end('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{"a"'),
      (s: Socket) => s.end('SSH-2.0-OpenSSH\r\n\r\n'),
    ];
    let next = 0;
    await rawDaemon((socket) => answers[next++](socket));
    const del = { network: 'n', containerId: 'c', ifname: 'eth0' };
    assert.deepEqual(await notifyDaemon(socketPath, 'del', del), { ok: false, error: `cannot reach the daemon at ${socketPath}: socket hang up` });
    assert.deepEqual(await notifyDaemon(socketPath, 'del', del), { ok: false, error: "reading the daemon's answer failed: aborted" });
    assert.deepEqual(await notifyDaemon(socketPath, 'del', del), { ok: false, error: `cannot reach the daemon at ${socketPath}: malformed HTTP answer` });
  });

  test('query: 200 means known, 404 unknown, anything else an error', async () => {
    daemon = await new FakeDaemon(socketPath).listen();
    const key = { network: 'ebpftest', containerId: 'abc', ifname: 'eth0' };
    assert.deepEqual(await queryAttachment(socketPath, key), { ok: true, known: true });
    daemon.status = 404;
    assert.deepEqual(await queryAttachment(socketPath, key), { ok: true, known: false });
    daemon.status = 500;
    assert.deepEqual(await queryAttachment(socketPath, key), { ok: false, error: 'daemon answered 500 to GET /v1/cni/attachment' });
    assert.deepEqual(daemon.received.map((r) => [r.method, r.url, r.body]), Array(3).fill(['GET', '/v1/cni/attachment?network=ebpftest&containerId=abc&ifname=eth0', undefined]));
  });

  test('probe: connects to a listening socket; reports an absent one', async () => {
    assert.deepEqual(await probeSocket(socketPath), { ok: false, error: `cannot connect to ${socketPath}: connect ENOENT ${socketPath}` });
    daemon = await new FakeDaemon(socketPath).listen();
    assert.deepEqual(await probeSocket(socketPath), { ok: true });
  });
});

describe('the notice schema and the type derived from it', () => {
  test('schema: a full notice and a minimal one pass as they are', () => {
    assert.deepEqual(parseNotice(JSON.stringify(notice)), notice);
    assert.deepEqual(parseNotice('{"network":"n","containerId":"c","ifname":"eth0"}'), { network: 'n', containerId: 'c', ifname: 'eth0' });
  });

  test('schema: a bad body is a NoticeError naming the field', () => {
    const cases: [string, string][] = [
      ['', 'body is not JSON: Unexpected end of JSON input'],
      ['[]', 'invalid attachment notice: (body): must be object'],
      ['{"network":"n","ifname":"eth0"}', "invalid attachment notice: containerId: must have required property 'containerId'"],
      ['{"network":"","containerId":"c","ifname":"eth0"}', 'invalid attachment notice: network: must NOT have fewer than 1 characters'],
      ['{"network":"n","containerId":"c","ifname":"a-very-long-name"}', 'invalid attachment notice: ifname: must NOT have more than 15 characters'],
      ['{"network":"n","containerId":"c","ifname":"eth0","hostIfindex":1.5}', 'invalid attachment notice: hostIfindex: must be integer'],
      ['{"network":"n","containerId":"c","ifname":"eth0","mode":"xdp"}', 'invalid attachment notice: mode: must be equal to one of the allowed values'],
      ['{"network":"n","containerId":"c","ifname":"eth0","extra":1}', 'invalid attachment notice: extra: must NOT have additional properties'],
    ];
    for (const [body, message] of cases) {
      assert.throws(() => parseNotice(body), (err: unknown) => err instanceof NoticeError && err.message === message, body);
    }
  });

  test('type: the derived AttachmentNotice is as tight as the schema (checked by tsc)', () => {
    const minimal: AttachmentNotice = { network: 'n', containerId: 'c', ifname: 'eth0' };
    // @ts-expect-error ifname is required
    const missing: AttachmentNotice = { network: 'n', containerId: 'c' };
    // @ts-expect-error mode is 'tcx' or 'tc'
    const badMode: AttachmentNotice = { ...minimal, mode: 'xdp' };
    // @ts-expect-error no additional properties
    const extra: AttachmentNotice = { ...minimal, extra: 1 };
    // @ts-expect-error programIds are numbers
    const badIds: AttachmentNotice = { ...minimal, programIds: ['5'] };
    assert.deepEqual([missing.network, badMode.mode, extra.ifname, badIds.programIds], ['n', 'xdp', 'eth0', ['5']]);
  });
});
