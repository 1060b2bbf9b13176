// The notify client: HTTP/1.1 + JSON over the daemon's unix socket, spoken directly on node:net
// (see call() for why). Every call has a hard total budget and resolves to ok/error; nothing here throws, so ADD/DEL can always fail open.
import type * as Net from 'node:net';
import { attachmentQueryTarget, CNI_ADD_PATH, CNI_ATTACHMENT_PATH, CNI_DEL_PATH } from '../protocol/endpoints';
import type { AttachmentKey, AttachmentNotice } from '../protocol/notice';

export const NOTIFY_BUDGET_MS = 1000;

// node:net is loaded on first use: VERSION, STATUS (failurePolicy open) and rejected requests
// never talk to the daemon, so they do not pay for it (a plain require: the bundle and tsx are CJS).
let netModule: typeof Net | undefined;
function connect(path: string): Net.Socket {
  return (netModule ??= require('node:net') as typeof Net).connect({ path });
}

export type CallResult = { ok: true; status: number; body: string } | { ok: false; error: string };

export function notifyDaemon(
  socketPath: string, verb: 'add' | 'del', notice: AttachmentNotice, budgetMs = NOTIFY_BUDGET_MS,
): Promise<CallResult> {
  const path = verb === 'add' ? CNI_ADD_PATH : CNI_DEL_PATH;
  return call(socketPath, 'POST', path, JSON.stringify(notice), budgetMs).then((res) =>
    res.ok && (res.status < 200 || res.status > 299)
      ? { ok: false, error: `daemon answered ${res.status} to POST ${path}: ${res.body.slice(0, 200)}` }
      : res,
  );
}

export type KnownResult = { ok: true; known: boolean } | { ok: false; error: string };

export async function queryAttachment(socketPath: string, key: AttachmentKey, budgetMs = NOTIFY_BUDGET_MS): Promise<KnownResult> {
  const res = await call(socketPath, 'GET', attachmentQueryTarget(key), undefined, budgetMs);
  if (!res.ok) return res;
  if (res.status === 200) return { ok: true, known: true };
  if (res.status === 404) return { ok: true, known: false };
  return { ok: false, error: `daemon answered ${res.status} to GET ${CNI_ATTACHMENT_PATH}` };
}

/** Whether something accepts connections on the socket (STATUS: no request, just a connect). */
export function probeSocket(socketPath: string, budgetMs = NOTIFY_BUDGET_MS): Promise<{ ok: true } | { ok: false; error: string }> {
  return new Promise((resolve) => {
    const socket = connect(socketPath);
    const timer = setTimeout(() => finish({ ok: false, error: `no answer from ${socketPath} within ${budgetMs} ms` }), budgetMs);
    function finish(result: { ok: true } | { ok: false; error: string }): void {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    }
    socket.once('connect', () => finish({ ok: true }));
    socket.once('error', (err) => finish({ ok: false, error: `cannot connect to ${socketPath}: ${err.message}` }));
  });
}

// A minimal HTTP/1.1 client over node:net: one request per connection ("Connection: close"),
// the answer parsed as far as we need it (status, Content-Length or chunked body, else up to
// EOF). node:http would cost the plugin several ms of start-up on every pod for no gain here.
function call(socketPath: string, method: string, path: string, body: string | undefined, budgetMs: number): Promise<CallResult> {
  return new Promise((resolve) => {
    let settled = false;
    let socket: Net.Socket | undefined;
    const finish = (result: CallResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket?.destroy();
      resolve(result);
    };
    // One budget for connect, send and the whole answer: a hung daemon must not hold up the pod.
    const timer = setTimeout(() => finish({ ok: false, error: `daemon did not answer ${method} ${path} within ${budgetMs} ms` }), budgetMs);
    const payload = body === undefined ? undefined : Buffer.from(body, 'utf8');
    let head = `${method} ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n`;
    if (payload !== undefined) head += `Content-Type: application/json\r\nContent-Length: ${payload.length}\r\n`;
    head += '\r\n';
    const request = payload === undefined ? Buffer.from(head, 'latin1') : Buffer.concat([Buffer.from(head, 'latin1'), payload]);

    const answer = new ResponseReader();
    try {
      socket = connect(socketPath);
    } catch (err) {
      finish({ ok: false, error: `cannot reach the daemon at ${socketPath}: ${err instanceof Error ? err.message : String(err)}` });
      return;
    }
    socket.once('connect', () => socket?.write(request));
    socket.on('data', (chunk: Buffer) => {
      const state = answer.push(chunk);
      if (state === 'complete') finish({ ok: true, status: answer.status, body: answer.body() });
      else if (state === 'malformed') finish({ ok: false, error: `cannot reach the daemon at ${socketPath}: malformed HTTP answer` });
    });
    socket.on('end', () => {
      const state = answer.end();
      if (state === 'complete') finish({ ok: true, status: answer.status, body: answer.body() });
      else if (state === 'no-head') finish({ ok: false, error: `cannot reach the daemon at ${socketPath}: socket hang up` });
      else finish({ ok: false, error: "reading the daemon's answer failed: aborted" });
    });
    socket.on('error', (err) => finish(answer.status === 0
      ? { ok: false, error: `cannot reach the daemon at ${socketPath}: ${err.message}` }
      : { ok: false, error: `reading the daemon's answer failed: ${err.message}` }));
  });
}

type ReadState = 'more' | 'complete' | 'malformed' | 'no-head' | 'truncated';

const HEAD_END = Buffer.from('\r\n\r\n');
const MAX_HEAD_BYTES = 64 * 1024;

/** Incremental parse of one HTTP/1.1 response (1xx interim answers skipped). */
class ResponseReader {
  status = 0;
  private buffered: Buffer = Buffer.alloc(0);
  /** body framing once the head is read: a length, chunked, or up to EOF */
  private framing: { kind: 'length'; length: number } | { kind: 'chunked' } | { kind: 'eof' } | undefined;
  private chunks: Buffer[] = [];
  private done = false;

  push(data: Buffer): ReadState {
    if (this.done) return 'complete';
    this.buffered = this.buffered.length === 0 ? data : Buffer.concat([this.buffered, data]);
    while (this.framing === undefined) {
      const at = this.buffered.indexOf(HEAD_END);
      if (at < 0) return this.buffered.length > MAX_HEAD_BYTES ? 'malformed' : 'more';
      const head = this.buffered.subarray(0, at).toString('latin1');
      this.buffered = this.buffered.subarray(at + HEAD_END.length);
      if (!this.readHead(head)) return 'malformed';
    }
    return this.readBody();
  }

  end(): ReadState {
    if (this.done) return 'complete';
    if (this.framing === undefined) return this.status === 0 && this.buffered.length === 0 ? 'no-head' : 'truncated';
    if (this.framing.kind === 'eof') {
      this.chunks.push(this.buffered);
      this.done = true;
      return 'complete';
    }
    return 'truncated';
  }

  body(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }

  private readHead(head: string): boolean {
    const lines = head.split('\r\n');
    const statusLine = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(lines[0]);
    if (!statusLine) return false;
    const status = Number(statusLine[1]);
    if (status >= 100 && status < 200) return true; // interim answer: the real head follows
    this.status = status;
    let length: number | undefined;
    let chunked = false;
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon <= 0) return false;
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === 'content-length') {
        if (!/^\d+$/.test(value)) return false;
        length = Number(value);
      } else if (name === 'transfer-encoding') {
        chunked = value.toLowerCase().split(',').map((v) => v.trim()).includes('chunked');
      }
    }
    if (status === 204 || status === 304) length = 0;
    this.framing = chunked ? { kind: 'chunked' } : length !== undefined ? { kind: 'length', length } : { kind: 'eof' };
    return true;
  }

  private readBody(): ReadState {
    const framing = this.framing!;
    if (framing.kind === 'eof') return 'more';
    if (framing.kind === 'length') {
      if (this.buffered.length < framing.length) return 'more';
      this.chunks.push(this.buffered.subarray(0, framing.length));
      this.done = true;
      return 'complete';
    }
    for (;;) {
      const lineEnd = this.buffered.indexOf('\r\n');
      if (lineEnd < 0) return 'more';
      const size = parseInt(this.buffered.subarray(0, lineEnd).toString('latin1').split(';')[0].trim(), 16);
      if (!Number.isInteger(size) || size < 0) return 'malformed';
      if (size === 0) {
        // the last chunk; trailers (if any) are not needed, the body is complete
        this.done = true;
        return 'complete';
      }
      if (this.buffered.length < lineEnd + 2 + size + 2) return 'more';
      this.chunks.push(this.buffered.subarray(lineEnd + 2, lineEnd + 2 + size));
      this.buffered = this.buffered.subarray(lineEnd + 2 + size + 2);
    }
  }
}
