// Malformed request targets on the daemon's listeners (the loopback health port the kubelet
// probes, and the root-only unix socket) get a 400 with a JSON error; the daemon keeps serving.
// Requests are written raw on a socket: an HTTP client would normalise or refuse these targets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type NetConnectOpts } from 'node:net';
import { withScope, createNode } from '../helpers/netns';
import { DaemonProcess, ReportSink, freePort } from '../helpers/daemon';

interface RawAnswer { status: number; json: unknown }

/** Sends one raw HTTP/1.1 request and reads the whole answer (the server closes the connection). */
function rawRequest(target: NetConnectOpts, requestLine: string): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const s = connect(target);
    const chunks: Buffer[] = [];
    s.setTimeout(10_000, () => s.destroy(new Error(`no answer to ${requestLine} within 10 s`)));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', reject);
    s.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);
      const head = text.slice(0, text.indexOf('\r\n\r\n'));
      let body = text.slice(head.length + 4);
      if (/^transfer-encoding: chunked$/im.test(head)) body = unchunk(body);
      try {
        resolve({ status, json: JSON.parse(body) });
      } catch {
        reject(new Error(`not a JSON answer to ${requestLine}: ${JSON.stringify(text)}`));
      }
    });
    s.write(`${requestLine}\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
  });
}

/** The data of a chunked body (each chunk: hex size, CRLF, data, CRLF; a 0 chunk ends it). */
function unchunk(raw: string): string {
  let out = '';
  for (let at = 0; ;) {
    const eol = raw.indexOf('\r\n', at);
    const size = parseInt(raw.slice(at, eol), 16);
    if (!(size > 0)) return out;
    out += raw.slice(eol + 2, eol + 2 + size);
    at = eol + 2 + size + 2;
  }
}

test('malformed request targets get 400 with a JSON error on the health port and the socket; the daemon keeps serving', async () => {
  await withScope(async (scope) => {
    const node = await createNode(scope);
    const remote = await node.addRemote();
    const sink = await ReportSink.start(scope);
    const port = await freePort();
    const daemon = await DaemonProcess.start(scope, {
      collector: sink.address, dataInterface: remote.dataIfname, extraArgs: ['--health-listen', `127.0.0.1:${port}`],
    });
    const tcp = { host: '127.0.0.1', port };
    const unix = { path: daemon.socket };

    assert.deepEqual(await rawRequest(tcp, 'GET // HTTP/1.1'), { status: 400, json: { error: 'malformed request target: "//"' } });
    assert.deepEqual(await rawRequest(unix, 'GET // HTTP/1.1'), { status: 400, json: { error: 'malformed request target: "//"' } });
    assert.deepEqual(await rawRequest(unix, 'GET /v1/pods/%C0%AE%C0%AE/x HTTP/1.1'),
      { status: 400, json: { error: 'malformed percent-encoding in the path: "%C0%AE%C0%AE"' } });

    assert.deepEqual(await rawRequest(tcp, 'GET /healthz HTTP/1.1'), { status: 200, json: { ok: true } }, 'still alive on TCP');
    assert.deepEqual(await daemon.api('GET', '/healthz'), { status: 200, json: { ok: true } }, 'still alive on the socket');
  });
});
