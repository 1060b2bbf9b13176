// The notify client: HTTP/1.1 + JSON over the daemon's unix socket. Every call has a hard
// total budget and resolves to ok/error; nothing here throws, so ADD/DEL can always fail open.
import { request } from 'node:http';
import { connect } from 'node:net';
import type { AttachmentNotice } from '../daemon/api/protocol';
import type { AttachmentKey } from './datapath';

export const NOTIFY_BUDGET_MS = 1000;
export const CNI_ADD_PATH = '/v1/cni/add';
export const CNI_DEL_PATH = '/v1/cni/del';
/** CHECK with checkDaemon: GET ?network=&containerId=&ifname= answers 200 (known) or 404 (unknown). */
export const CNI_ATTACHMENT_PATH = '/v1/cni/attachment';

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
  const query = new URLSearchParams({ network: key.network, containerId: key.containerId, ifname: key.ifname });
  const res = await call(socketPath, 'GET', `${CNI_ATTACHMENT_PATH}?${query}`, undefined, budgetMs);
  if (!res.ok) return res;
  if (res.status === 200) return { ok: true, known: true };
  if (res.status === 404) return { ok: true, known: false };
  return { ok: false, error: `daemon answered ${res.status} to GET ${CNI_ATTACHMENT_PATH}` };
}

/** Whether something accepts connections on the socket (STATUS: no request, just a connect). */
export function probeSocket(socketPath: string, budgetMs = NOTIFY_BUDGET_MS): Promise<{ ok: true } | { ok: false; error: string }> {
  return new Promise((resolve) => {
    const socket = connect({ path: socketPath });
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

function call(socketPath: string, method: string, path: string, body: string | undefined, budgetMs: number): Promise<CallResult> {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (result: CallResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(result);
    };
    const headers: Record<string, string | number> = { connection: 'close' };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(body);
    }
    const req = request({ socketPath, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => finish({ ok: true, status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', (err) => finish({ ok: false, error: `reading the daemon's answer failed: ${err.message}` }));
    });
    // One budget for connect, send and the whole answer: a hung daemon must not hold up the pod.
    const timer = setTimeout(() => {
      finish({ ok: false, error: `daemon did not answer ${method} ${path} within ${budgetMs} ms` });
      req.destroy();
    }, budgetMs);
    req.on('error', (err) => finish({ ok: false, error: `cannot reach the daemon at ${socketPath}: ${err.message}` }));
    req.end(body);
  });
}
