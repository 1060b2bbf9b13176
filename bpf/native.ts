// Loads the native addon and gives its functions types. Nothing else in the project touches the
// addon directly: bpf/index.ts wraps it in classes and BpfError, bpf/udp.ts its UDP sockets.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

export interface NativeProgram { name: string; section: string; fd: number }
export interface NativeMap {
  name: string; fd: number; type: number; keySize: number; valueSize: number; maxEntries: number; internal: boolean;
}
export interface NativeBpfObject {
  setConstant(name: string, value: number | bigint): void;
  setMaxEntries(map: string, n: number): void;
  setMapPinPath(map: string, path: string): void;
  load(): void;
  programs(): NativeProgram[];
  maps(): NativeMap[];
  pinProgram(name: string, path: string): void;
  attachTracing(name: string, pinPath: string): number;
  close(): void;
}
export interface NativePerfReader {
  ack(): void;
  close(): void;
  stats(): { records: number; lost: number; batches: number; creditWaits: number; pollErrors: number };
}
export interface NativeLink {
  ifindex: number; ifname: string; kind: string; up: boolean; peerIfindex?: number; peerNetnsId?: number;
  master?: number; mac?: string;
}
export interface NativeTcFilter {
  priority: number; protocol: number; handle: number; kind: string; progId?: number; name?: string; directAction?: boolean;
}

export interface Native {
  libbpfVersion(): string;
  objGet(path: string): number;
  objPin(fd: number, path: string): void;
  closeFd(fd: number): void;
  progInfo(fd: number): { id: number; name: string; tag: string; type: number; runTimeNs: bigint; runCount: bigint };
  linkInfo(fd: number): { id: number; type: number; progId: number; ifindex?: number; attachType?: number };
  progFdById(id: number): number;
  linkFdById(id: number): number;
  enableStats(): number;
  isBpffs(path: string): boolean;
  mountBpffs(path: string): void;
  numPossibleCpus(): number;
  BpfObject: new (path: string) => NativeBpfObject;
  mapLookup(fd: number, key: Buffer, value: Buffer): boolean;
  mapUpdate(fd: number, key: Buffer, value: Buffer, flags?: number): void;
  mapDelete(fd: number, key: Buffer): boolean;
  mapNextKey(fd: number, key: Buffer | null, next: Buffer): boolean;
  mapInfo(fd: number): { id: number; name: string; type: number; keySize: number; valueSize: number; maxEntries: number };
  tcxAttach(progFd: number, ifindex: number, direction: string): number;
  tcxQuery(ifindex: number, direction: string): { revision: bigint; progIds: number[]; linkIds: number[] };
  linkDetach(linkFd: number): void;
  linkUpdate(linkFd: number, progFd: number): void;
  tcAttach(progFd: number, ifindex: number, direction: string, priority: number, handle: number): { progId: number; createdClsact: boolean };
  tcDetach(ifindex: number, direction: string, priority: number, handle: number): boolean;
  clsactDestroy(ifindex: number): void;
  linkGet(spec: { ifindex: number } | { ifname: string }, netns?: string): NativeLink;
  qdiscs(ifindex: number): { kind: string; handle: number; parent: number }[];
  tcFilters(ifindex: number, direction: string): NativeTcFilter[];
  /** RTA_OIF of the route to an IPv4/IPv6 address; undefined without a route */
  routeOutputIfindex(ip: string): number | undefined;
  /** the resolved MAC of a neighbour entry (ifindex, ip); undefined when none */
  neighbourMac(ifindex: number, ip: string): string | undefined;
  /** starts resolution of a neighbour (RTM_NEWNEIGH with NTF_USE) */
  neighbourProbe(ifindex: number, ip: string): void;
  /** the port of a bridge whose FDB holds the MAC; undefined when none */
  bridgePortOf(bridgeIfindex: number, mac: string): number | undefined;
  PerfReader: new (
    mapFd: number,
    opts: { pageCount: number; watermarkBytes: number; batchBytes: number; flushMs: number },
    onBatch: (batch: Buffer, records: number, lost: number) => void,
  ) => NativePerfReader;
  /** fd of a non-blocking UDP socket connected to an IP literal; sendBufferBytes 0 = default */
  udpOpen(address: string, port: number, sendBufferBytes: number): number;
  /** sendmmsg of ring slots first.. (count, wrapping; same-length runs <= segmentMax as GSO): reports sent, or -errno */
  udpSendBatch(fd: number, memory: Buffer, lengths: Uint32Array, slotSize: number, first: number, count: number, segmentMax: number): number;
}

const ADDON_FILE = 'int_host_reporter.node';
const OBJECT_FILE = 'datapath.bpf.o';

/** Beside the bundle (dist/), or in build/ when running from source. */
function findBuilt(file: string, buildSubdir: string, envVar: string): string {
  const fromEnv = process.env[envVar];
  const candidates = [
    ...(fromEnv ? [fromEnv] : []),
    join(__dirname, file),
    join(__dirname, '..', 'build', buildSubdir, file),
  ];
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new Error(`${file} not found (looked in ${candidates.join(', ')}); run "node build.mjs" first`);
  }
  return found;
}

let native: Native | undefined;

export function loadNative(): Native {
  if (!native) native = createRequire(__filename)(findBuilt(ADDON_FILE, 'addon/Release', 'INT_HOST_REPORTER_ADDON')) as Native;
  return native;
}

/** Path of the compiled datapath object. */
export function defaultObjectPath(): string {
  return findBuilt(OBJECT_FILE, 'bpf', 'INT_HOST_REPORTER_BPF_OBJECT');
}
