// Connected UDP sockets with batched sends (sendmmsg), for the report sender. The only caller of
// the addon's UDP functions: errors become UdpError, naming the operation and the errno.
import { constants } from 'node:os';
import { loadNative, type Native } from './native';

/** An error of a UDP socket operation: names the operation and the errno. */
export class UdpError extends Error {
  constructor(message: string, readonly op: string, readonly errno: number, readonly code: string) {
    super(message);
    this.name = 'UdpError';
  }
}

export const { EAGAIN, EIO, EINVAL } = constants.errno;

const names = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/** 'ECONNREFUSED' for 111, and so on. */
export function errnoName(errno: number): string {
  return names.get(errno) ?? `E${errno}`;
}

let native: Native | undefined;

/**
 * Opens a non-blocking UDP socket connected to address:port (an IPv4 or IPv6 literal) and returns
 * its fd. sendBufferBytes 0 keeps the system's default socket buffer.
 */
export function udpOpen(address: string, port: number, sendBufferBytes = 0): number {
  native ??= loadNative();
  try {
    return native.udpOpen(address, port, sendBufferBytes);
  } catch (e) {
    const err = e as Error & { op?: string; errno?: number; code?: string };
    if (typeof err?.op === 'string' && typeof err.errno === 'number') throw new UdpError(err.message, err.op, err.errno, err.code ?? 'EUNKNOWN');
    throw e;
  }
}

/**
 * Sends `count` datagrams (at most 1024) from a ring of `lengths.length` slots of `slotSize`
 * bytes in `memory`, starting at slot `first` and wrapping; consecutive ones of the same length,
 * at most `segmentMax` bytes, go as one UDP GSO message (0: never). Returns how many datagrams
 * the kernel took, or -errno when the first message failed (-EAGAIN: the socket buffer is full,
 * nothing was sent; -EIO or -EINVAL with segmentMax > 0: possibly no GSO on this path). Never
 * blocks and never throws for a send error: the caller counts them.
 */
export function udpSendBatch(fd: number, memory: Buffer, lengths: Uint32Array, slotSize: number, first: number, count: number, segmentMax: number): number {
  return native!.udpSendBatch(fd, memory, lengths, slotSize, first, count, segmentMax);
}

export function udpClose(fd: number): void {
  native?.closeFd(fd);
}
