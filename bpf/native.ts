// Loads the bpf addon (libbpf work only) and gives its functions types. Nothing else in the
// project touches the addon directly: bpf/index.ts wraps it in classes and BpfError.
import { findBuilt, loadModule, type LoadedModule } from '../native/load';

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
export interface Native {
  libbpfVersion(): string;
  objGet(path: string): number;
  objPin(fd: number, path: string): void;
  closeFd(fd: number): void;
  progInfo(fd: number): { id: number; name: string; tag: string; type: number; runTimeNs: bigint; runCount: bigint };
  /** ifindex and direction: of a TCX link */
  linkInfo(fd: number): { id: number; type: number; progId: number; ifindex?: number; direction?: 'ingress' | 'egress' };
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
  PerfReader: new (
    mapFd: number,
    opts: { pageCount: number; watermarkBytes: number; batchBytes: number; flushMs: number },
    onBatch: (batch: Buffer, records: number, lost: number) => void,
  ) => NativePerfReader;
}

const ADDON_FILE = 'int_host_reporter.node';
const OBJECT_FILE = 'datapath.bpf.o';

let addon: LoadedModule<Native> | undefined;

export function loadNative(): Native {
  addon ??= loadModule<Native>(ADDON_FILE);
  return addon.module;
}

/** Where the addon was loaded from (the plugin's preflight checks it is its own build dir). */
export function nativePath(): string {
  loadNative();
  return addon!.path;
}

/** Path of the compiled datapath object. */
export function defaultObjectPath(): string {
  return findBuilt(OBJECT_FILE, 'bpf');
}
