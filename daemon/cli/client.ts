// A client of the local API over its unix socket, for the CLI.
import { request } from 'node:http';

export class ClientError extends Error {
  constructor(message: string, readonly exitCode: number) {
    super(message);
  }
}

export interface Reply {
  status: number;
  body: string;
}

export function callApi(socketPath: string, method: string, path: string, body?: string, timeoutMs = 5000): Promise<Reply> {
  return new Promise((resolve, reject) => {
    // agent: false, one connection per call: a kept-alive socket that the daemon closed while this
    // process was busy would be reused and fail with EPIPE.
    const req = request({ socketPath, method, path, agent: false, timeout: timeoutMs, headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (data += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: data }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') {
        reject(new ClientError(`the daemon is not running (no socket at ${socketPath})`, 3));
      } else if (e.code === 'ECONNREFUSED') {
        reject(new ClientError(`the daemon is not running (nothing listens on ${socketPath})`, 3));
      } else if (e.code === 'EACCES' || e.code === 'EPERM') {
        reject(new ClientError(`permission denied on ${socketPath}: run as root`, 4));
      } else {
        reject(new ClientError(`cannot talk to the daemon at ${socketPath}: ${e.message}`, 1));
      }
    });
    req.end(body);
  });
}
