// Connected UDP sockets with batched sends (sendmmsg), for the report sender: the TypeScript face
// of the udp native module (udp/). Errors of opening become UdpError, naming the operation and
// the errno; send errors are returned, not thrown.
import { constants } from 'node:os';
import { NativeError, loadModule, nativeCall } from '../../native/load';

/** An error of a UDP socket operation: names the operation and the errno. */
export class UdpError extends NativeError {}

export const { EAGAIN, EIO, EINVAL } = constants.errno;

const names = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/** 'ECONNREFUSED' for 111, and so on. */
export function errnoName(errno: number): string {
  return names.get(errno) ?? `E${errno}`;
}

interface UdpModule {
  udpOpen(address: string, port: number, sendBufferBytes: number): number;
  udpSendBatch(fd: number, memory: Buffer, lengths: Uint32Array, slotSize: number, first: number, count: number, segmentMax: number): number;
  udpClose(fd: number): void;
}

let udp: UdpModule | undefined;

/**
 * Opens a non-blocking UDP socket connected to address:port (an IPv4 or IPv6 literal) and returns
 * its fd. sendBufferBytes 0 keeps the system's default socket buffer.
 */
export function udpOpen(address: string, port: number, sendBufferBytes = 0): number {
  udp ??= loadModule<UdpModule>('int_host_reporter_udp.node').module;
  const m = udp;
  return nativeCall(UdpError, () => m.udpOpen(address, port, sendBufferBytes));
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
  return udp!.udpSendBatch(fd, memory, lengths, slotSize, first, count, segmentMax);
}

/** Closes a socket of udpOpen. */
export function udpClose(fd: number): void {
  udp?.udpClose(fd);
}
