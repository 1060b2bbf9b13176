// The typed face of the datapath: load the programs, pin them, attach them to interfaces
// (TCX first, classic tc as the fallback), ask what is attached, read counters, read events.
import { existsSync, mkdirSync, readdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { defaultObjectPath, loadNative, type Native, type NativeBpfObject } from './native';
import { NativeError, isErrno, nativeCall } from '../native/load';
import { getLink, qdiscs, tcFilters } from '../netlink/index';
import { Counters, EventView, type CounterName } from './events';
import { PROGRAMS, type Direction } from './pins';

export * from './events';
export * from './pins';
export { defaultObjectPath } from './native';

/** An error of a BPF operation: names the operation and the errno (interface lookups on the
 *  way throw the netlink module's NetlinkError; both are NativeErrors). */
export class BpfError extends NativeError {}

function native(): Native {
  return loadNative();
}

/** Runs an addon call, turning its errors into BpfError. */
function call<T>(fn: () => T): T {
  return nativeCall(BpfError, fn);
}

function errnoError(op: string, code: string, errno: number, message: string): BpfError {
  return new BpfError(`${op}: ${message} (${code})`, op, errno, code);
}

export function numPossibleCpus(): number {
  return native().numPossibleCpus();
}

export function libbpfVersion(): string {
  return native().libbpfVersion();
}

// --- bpffs ------------------------------------------------------------------------------

/**
 * Makes sure `root` is a directory on a bpf filesystem. Under /sys/fs/bpf the standard mount is
 * used (mounted first if missing, unless mount is false); elsewhere root itself becomes a mount.
 */
export function ensureBpffs(root: string, opts: { mount?: boolean } = {}): void {
  const mountPoint = root === '/sys/fs/bpf' || root.startsWith('/sys/fs/bpf/') ? '/sys/fs/bpf' : root;
  if (!(existsSync(mountPoint) && native().isBpffs(mountPoint))) {
    if (opts.mount === false) {
      throw errnoError('bpffs', 'ENOENT', 2, `${mountPoint} is not a bpf filesystem (mount one: mount -t bpf bpf ${mountPoint})`);
    }
    mkdirSync(mountPoint, { recursive: true });
    call(() => native().mountBpffs(mountPoint));
  }
  mkdirSync(root, { recursive: true, mode: 0o700 });
}

/** Removes a pin if present; true when something was removed. */
export function unpin(path: string): boolean {
  try {
    unlinkSync(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/** Pins a BPF object by fd at path, replacing an older pin there. */
function pinFd(fd: number, path: string): void {
  mkdirSync(dirname(path), { recursive: true });
  unpin(path);
  call(() => native().objPin(fd, path));
}

/** Removes empty directories from `dir` up to (not including) `stop`. */
export function removeEmptyDirs(dir: string, stop: string): void {
  for (let d = dir; d.startsWith(stop + '/') && d !== stop; d = dirname(d)) {
    try {
      if (readdirSync(d).length > 0) return;
      rmdirSync(d);
    } catch (e) {
      // Removed, or filled again, by another process meanwhile: nothing more to remove.
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTEMPTY') return;
      throw e;
    }
  }
}

// --- objects, programs, maps -------------------------------------------------------------

export interface LoadOptions {
  /** load-time constants (`const volatile` globals), e.g. report_interval_ns */
  constants?: Record<string, number | bigint>;
  /** map sizes by name (the datapath's own tables have fixed sizes its code relies on) */
  maxEntries?: Record<string, number>;
  /** pin (or reuse, when already pinned and compatible) every map in this bpffs directory */
  pinMapsDir?: string;
}

/** A program by fd: loaded from an object, or opened from a pin. */
export class Program {
  constructor(readonly name: string, readonly fd: number, private readonly owned: boolean) {}

  static fromPin(path: string): Program {
    const fd = call(() => native().objGet(path));
    const info = call(() => native().progInfo(fd));
    return new Program(info.name, fd, true);
  }

  info(): { id: number; name: string; tag: string; type: number; runTimeNs: bigint; runCount: bigint } {
    return call(() => native().progInfo(this.fd));
  }

  get id(): number {
    return this.info().id;
  }

  pin(path: string): void {
    pinFd(this.fd, path);
  }

  close(): void {
    if (this.owned) native().closeFd(this.fd);
  }
}

export class BpfMap {
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly type: number;

  constructor(readonly name: string, readonly fd: number, private readonly owned = false) {
    const info = call(() => native().mapInfo(fd));
    this.keySize = info.keySize;
    this.valueSize = info.valueSize;
    this.maxEntries = info.maxEntries;
    this.type = info.type;
  }

  static fromPin(path: string, name = path.split('/').pop() ?? path): BpfMap {
    return new BpfMap(name, call(() => native().objGet(path)), true);
  }

  /** Bytes a value buffer needs: per-CPU maps hold one 8-byte aligned value per possible CPU. */
  get valueBufferSize(): number {
    return PERCPU_TYPES.has(this.type) ? Math.ceil(this.valueSize / 8) * 8 * native().numPossibleCpus() : this.valueSize;
  }

  // The kernel writes valueBufferSize bytes and reads keySize bytes: check before it does.
  private checkSizes(key: Buffer, value?: Buffer): void {
    if (key.length < this.keySize) throw new RangeError(`${this.name}: key of ${key.length} bytes, the map's are ${this.keySize}`);
    if (value && value.length < this.valueBufferSize) {
      throw new RangeError(`${this.name}: value buffer of ${value.length} bytes, ${this.valueBufferSize} needed`);
    }
  }

  lookup(key: Buffer, value: Buffer): boolean {
    this.checkSizes(key, value);
    return call(() => native().mapLookup(this.fd, key, value));
  }
  update(key: Buffer, value: Buffer, flags = 0): void {
    this.checkSizes(key, value);
    call(() => native().mapUpdate(this.fd, key, value, flags));
  }
  delete(key: Buffer): boolean {
    this.checkSizes(key);
    return call(() => native().mapDelete(this.fd, key));
  }
  *keys(): Generator<Buffer> {
    let key: Buffer | null = null;
    for (;;) {
      const next = Buffer.alloc(this.keySize);
      if (!call(() => native().mapNextKey(this.fd, key, next))) return;
      yield next;
      key = next;
    }
  }
  pin(path: string): void {
    pinFd(this.fd, path);
  }
  close(): void {
    if (this.owned) native().closeFd(this.fd);
  }
}

const PERCPU_ARRAY = 6;
/** BPF_MAP_TYPE_PERCPU_HASH, _PERCPU_ARRAY, _LRU_PERCPU_HASH */
const PERCPU_TYPES = new Set([5, 6, 10]);

/** Every CPU's value of every entry of a per-CPU array, as one Buffer each. */
export function readPercpuValues(map: BpfMap): Buffer[] {
  const cpus = native().numPossibleCpus();
  const stride = Math.ceil(map.valueSize / 8) * 8; // the kernel pads per-CPU values to 8 bytes
  const value = Buffer.alloc(map.valueBufferSize);
  const out: Buffer[] = [];
  for (const key of map.keys()) {
    if (!map.lookup(key, value)) continue;
    for (let c = 0; c < cpus; c++) out.push(Buffer.from(value.subarray(c * stride, c * stride + map.valueSize)));
  }
  return out;
}

/** Sums the datapath's per-CPU counters (map int_counters). */
export function readCounters(map: BpfMap): Record<CounterName, bigint> {
  if (map.type !== PERCPU_ARRAY || map.valueSize !== 8) throw new Error(`${map.name} is not a per-CPU u64 array`);
  const cpus = native().numPossibleCpus();
  const key = Buffer.alloc(4);
  const value = Buffer.alloc(8 * cpus);
  const out = {} as Record<CounterName, bigint>;
  Counters.forEach((name, i) => {
    key.writeUInt32LE(i);
    let sum = 0n;
    if (map.lookup(key, value)) for (let c = 0; c < cpus; c++) sum += value.readBigUInt64LE(8 * c);
    out[name] = sum;
  });
  return out;
}

/** A loaded BPF object file: its programs and maps stay loaded while it is open or pinned. */
export class BpfObject {
  private constructor(private obj: NativeBpfObject, readonly path: string) {}

  /** Opens, configures and loads; a verifier rejection throws a BpfError whose log holds the tail of the verifier log. */
  static load(path: string = defaultObjectPath(), opts: LoadOptions = {}): BpfObject {
    const obj = call(() => new (native().BpfObject)(path));
    try {
      for (const [k, v] of Object.entries(opts.constants ?? {})) call(() => obj.setConstant(k, v));
      for (const [k, v] of Object.entries(opts.maxEntries ?? {})) call(() => obj.setMaxEntries(k, v));
      if (opts.pinMapsDir) {
        mkdirSync(opts.pinMapsDir, { recursive: true });
        for (const m of obj.maps()) if (!m.internal) call(() => obj.setMapPinPath(m.name, join(opts.pinMapsDir!, m.name)));
      }
      call(() => obj.load());
    } catch (e) {
      obj.close();
      throw e;
    }
    return new BpfObject(obj, path);
  }

  programNames(): string[] {
    return this.obj.programs().map((p) => p.name);
  }

  /** The program; its fd belongs to the object (valid until close()). */
  program(name: string): Program {
    const p = this.obj.programs().find((x) => x.name === name);
    if (!p) throw errnoError(`program ${name}`, 'ENOENT', 2, `no program named ${name} in ${this.path}`);
    return new Program(p.name, p.fd, false);
  }

  map(name: string): BpfMap {
    const m = this.obj.maps().find((x) => x.name === name);
    if (!m) throw errnoError(`map ${name}`, 'ENOENT', 2, `no map named ${name} in ${this.path}`);
    return new BpfMap(m.name, m.fd);
  }

  /** Pins every program as dir/<name>, replacing older pins of the same name. */
  pinPrograms(dir: string): void {
    mkdirSync(dir, { recursive: true });
    for (const name of this.programNames()) {
      unpin(join(dir, name));
      call(() => this.obj.pinProgram(name, join(dir, name)));
    }
  }

  /** Attaches a tracing program (kfree_skb) and pins its link at pinPath; returns the link id. */
  attachTracing(name: string, pinPath: string): number {
    mkdirSync(dirname(pinPath), { recursive: true });
    return call(() => this.obj.attachTracing(name, pinPath));
  }

  close(): void {
    this.obj.close();
  }
}

// --- attach, query, detach ---------------------------------------------------------------

/** Our classic-tc filter: a priority and handle of our own ('INT' in ASCII). */
export const TC_PRIORITY = 1;
export const TC_HANDLE = 0x494e54;

export type AttachMode = 'tcx' | 'tc';

export interface AttachOptions {
  /** 'auto' (default): TCX where the kernel has it, classic tc otherwise */
  mode?: 'auto' | AttachMode;
  /** TCX: pin the link here so it outlives this process */
  linkPin?: string;
  tcPriority?: number;
  tcHandle?: number;
  /** tc: a bpffs path marking "our attach created this interface's clsact", so that a later
   *  detach (by another process) removes the qdisc once no filter is left */
  clsactMarker?: string;
}

export interface Attachment {
  ifindex: number;
  direction: Direction;
  mode: AttachMode;
  progId: number;
  /** TCX: the link's id, and its pin if pinned */
  linkId?: number;
  linkPin?: string;
  /** TCX without a pin: the open link fd that keeps it attached */
  linkFd?: number;
  /** tc: our filter, and whether the clsact qdisc was created by us */
  tcPriority?: number;
  tcHandle?: number;
  createdClsact?: boolean;
  clsactMarker?: string;
}

let tcxSupported: boolean | undefined;

function attachTcx(prog: Program, ifindex: number, direction: Direction, linkPin?: string): Attachment {
  // Idempotent: a link already pinned there for this hook gets the program swapped in.
  if (linkPin && existsSync(linkPin)) {
    const fd = call(() => native().objGet(linkPin));
    try {
      const info = call(() => native().linkInfo(fd));
      if (info.ifindex === ifindex && info.direction === direction) {
        if (info.progId !== prog.id) call(() => native().linkUpdate(fd, prog.fd));
        return { ifindex, direction, mode: 'tcx', progId: prog.id, linkId: info.id, linkPin };
      }
    } finally {
      native().closeFd(fd);
    }
    unpin(linkPin); // a stale pin of another interface (ifindex reused): replace it
  }
  const linkFd = call(() => native().tcxAttach(prog.fd, ifindex, direction));
  const info = call(() => native().linkInfo(linkFd));
  if (!linkPin) return { ifindex, direction, mode: 'tcx', progId: info.progId, linkId: info.id, linkFd };
  try {
    mkdirSync(dirname(linkPin), { recursive: true });
    call(() => native().objPin(linkFd, linkPin));
  } finally {
    native().closeFd(linkFd); // the pin holds the link now; without a pin this detaches it
  }
  return { ifindex, direction, mode: 'tcx', progId: info.progId, linkId: info.id, linkPin };
}

/** Interfaces whose clsact qdisc this process created (the marker does the same across processes). */
const clsactCreated = new Set<number>();

function attachTc(prog: Program, ifindex: number, direction: Direction, priority: number, handle: number, marker?: string): Attachment {
  const r = call(() => native().tcAttach(prog.fd, ifindex, direction, priority, handle));
  if (r.createdClsact) {
    clsactCreated.add(ifindex);
    if (marker) mkdirSync(marker, { recursive: true });
  }
  const created = clsactCreated.has(ifindex) || (marker !== undefined && existsSync(marker));
  return {
    ifindex, direction, mode: 'tc', progId: r.progId, tcPriority: priority, tcHandle: handle, createdClsact: created,
    ...(marker ? { clsactMarker: marker } : {}),
  };
}

/**
 * Attaches a program to an interface hook so that it runs before other programs there. TCX
 * links go first on the hook; classic tc uses our own priority and handle and never replaces a
 * filter that is not ours. The interface must exist: ENODEV otherwise, with nothing changed.
 */
export function attach(prog: Program, ifindex: number, direction: Direction, opts: AttachOptions = {}): Attachment {
  const mode = opts.mode ?? 'auto';
  const prio = opts.tcPriority ?? TC_PRIORITY;
  const handle = opts.tcHandle ?? TC_HANDLE;
  // Check the interface first (NetlinkError ENODEV): a TCX attach to a missing ifindex fails the
  // same way, but tc would otherwise report a less clear netlink error.
  getLink({ ifindex });
  if (mode === 'tc') return attachTc(prog, ifindex, direction, prio, handle, opts.clsactMarker);
  if (mode === 'tcx' || tcxSupported !== false) {
    try {
      const a = attachTcx(prog, ifindex, direction, opts.linkPin);
      tcxSupported = true;
      return a;
    } catch (e) {
      // EINVAL for an unknown attach type: a kernel before 6.6. Anything else is a real error.
      if (mode === 'tcx' || !(e instanceof BpfError) || e.code !== 'EINVAL' || tcxSupported) throw e;
      tcxSupported = false;
    }
  }
  return attachTc(prog, ifindex, direction, prio, handle, opts.clsactMarker);
}

/**
 * Undoes an attach: the TCX link is detached and unpinned; the tc filter is removed, and the
 * clsact qdisc too when we created it and no filter is left on it. Safe to repeat.
 */
export function detach(a: Attachment): void {
  if (a.mode === 'tcx') {
    if (a.linkFd !== undefined) {
      native().closeFd(a.linkFd);
      a.linkFd = undefined;
    }
    if (a.linkPin && existsSync(a.linkPin)) {
      let fd: number;
      try {
        fd = call(() => native().objGet(a.linkPin!));
      } catch (e) {
        // Removed meanwhile by another process (a plugin DEL and the daemon's reconcile may
        // detach the same attachment at once): already done.
        if (e instanceof BpfError && e.code === 'ENOENT') return;
        throw e;
      }
      try {
        call(() => native().linkDetach(fd));
      } catch (e) {
        // ENOLINK: already detached, e.g. the interface is gone. EOPNOTSUPP: a tracing link,
        // which cannot be detached: removing its pin (below) releases it.
        if (!(e instanceof BpfError && (e.code === 'ENOLINK' || e.code === 'EOPNOTSUPP'))) throw e;
      } finally {
        native().closeFd(fd);
      }
      unpin(a.linkPin);
    }
    return;
  }
  const n = native();
  try {
    getLink({ ifindex: a.ifindex });
  } catch (e) {
    if (isErrno(e, 'ENODEV')) return; // interface gone: its filters went with it
    throw e;
  }
  call(() => n.tcDetach(a.ifindex, a.direction, a.tcPriority ?? TC_PRIORITY, a.tcHandle ?? TC_HANDLE));
  const ours = a.createdClsact || clsactCreated.has(a.ifindex) || (a.clsactMarker !== undefined && existsSync(a.clsactMarker));
  // Only a qdisc we created, and only once nobody (us included) has a filter on it any more.
  if (ours && hasClsact(a.ifindex) && tcFilters(a.ifindex, 'ingress').length === 0 && tcFilters(a.ifindex, 'egress').length === 0) {
    call(() => n.clsactDestroy(a.ifindex));
    clsactCreated.delete(a.ifindex);
    if (a.clsactMarker && existsSync(a.clsactMarker)) rmdirSync(a.clsactMarker);
  }
}

/** What a pinned TCX link points at. */
export function pinnedLinkInfo(path: string): { id: number; progId: number; ifindex?: number; direction?: Direction } {
  const fd = call(() => native().objGet(path));
  try {
    return call(() => native().linkInfo(fd));
  } finally {
    native().closeFd(fd);
  }
}

/** Swaps the program of the TCX link pinned at `path`, atomically: the hook is never empty. */
export function updatePinnedLink(path: string, prog: Program): void {
  const fd = call(() => native().objGet(path));
  try {
    call(() => native().linkUpdate(fd, prog.fd));
  } finally {
    native().closeFd(fd);
  }
}

/** Detaches the TCX link pinned at `path` (if any) and removes the pin. */
export function detachPinnedLink(path: string): boolean {
  if (!existsSync(path)) return false;
  detach({ ifindex: 0, direction: 'ingress', mode: 'tcx', progId: 0, linkPin: path });
  return true;
}

export interface HookProgram {
  mode: AttachMode;
  progId: number;
  name: string;
  /** one of our programs (by name) */
  ours: boolean;
  linkId?: number;
  priority?: number;
  handle?: number;
  kind?: string;
  directAction?: boolean;
}

const OUR_NAMES = new Set<string>(Object.values(PROGRAMS));

/** The name of a program by id; '' when it is gone meanwhile (its hook was emptied). */
function progName(id: number): string {
  let fd: number;
  try {
    fd = call(() => native().progFdById(id));
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return '';
    throw e;
  }
  try {
    return call(() => native().progInfo(fd)).name;
  } finally {
    native().closeFd(fd);
  }
}

/**
 * Everything attached to one hook of an interface, in run order: TCX programs first (the kernel
 * runs them before the clsact filters), then classic tc filters by priority.
 */
export function query(ifindex: number, direction: Direction): HookProgram[] {
  const n = native();
  getLink({ ifindex });
  const out: HookProgram[] = [];
  let tcx: { progIds: number[]; linkIds: number[] } = { progIds: [], linkIds: [] };
  try {
    tcx = call(() => n.tcxQuery(ifindex, direction));
  } catch (e) {
    if (!isErrno(e, 'EINVAL')) throw e; // no TCX on this kernel
  }
  tcx.progIds.forEach((id, i) => {
    const name = progName(id);
    out.push({ mode: 'tcx', progId: id, linkId: tcx.linkIds[i] || undefined, name, ours: OUR_NAMES.has(name) });
  });
  const filters = tcFilters(ifindex, direction);
  filters.sort((a, b) => a.priority - b.priority);
  for (const f of filters) {
    const name = f.name ?? '';
    // cls_bpf reports "<object file>:[<section>]" for tc-loaded programs; ours carry the prog name.
    const realName = f.progId ? progName(f.progId) || name : name;
    out.push({
      mode: 'tc', progId: f.progId ?? 0, name: realName, ours: OUR_NAMES.has(realName) && f.handle === TC_HANDLE,
      priority: f.priority, handle: f.handle, kind: f.kind, directAction: f.directAction,
    });
  }
  return out;
}

/** Does the interface have a clsact qdisc? */
export function hasClsact(ifindex: number): boolean {
  return qdiscs(ifindex).some((q) => q.kind === 'clsact');
}

// --- events --------------------------------------------------------------------------------

export interface ReaderOptions {
  /** perf ring pages per CPU (power of two); default 256 (1 MiB: tens of ms of a flood while
   *  JavaScript collects garbage) */
  pageCount?: number;
  /** wake the reader only when this many bytes wait in a CPU's ring; default a quarter ring */
  watermarkBytes?: number;
  /** hand a batch over once it holds this many bytes; default 64 KiB */
  batchBytes?: number;
  /** ... or once its oldest record is this old; default 2 ms */
  flushMs?: number;
}

/**
 * Reads the datapath's events. onBatch gets a view over one batch; the next batch comes only
 * after onBatch returns (or its promise settles) and the event loop had a turn.
 */
export class EventReader {
  private reader;
  private closed = false;
  private view = new EventView();

  constructor(
    events: BpfMap,
    onBatch: (events: EventView, records: number, lost: number) => void | Promise<void>,
    opts: ReaderOptions = {},
  ) {
    const pageCount = opts.pageCount ?? 256;
    const o = {
      pageCount,
      watermarkBytes: opts.watermarkBytes ?? (pageCount * 4096) / 4,
      batchBytes: opts.batchBytes ?? 64 * 1024,
      flushMs: opts.flushMs ?? 2,
    };
    const ack = () => {
      if (!this.closed) setImmediate(() => !this.closed && this.reader.ack());
    };
    this.reader = call(() => new (native().PerfReader)(events.fd, o, (batch, records, lost) => {
      if (this.closed) return;
      let r: void | Promise<void>;
      try {
        r = onBatch(this.view.reset(batch), records, lost);
      } catch (e) {
        ack();
        throw e;
      }
      if (r && typeof (r as Promise<void>).then === 'function') (r as Promise<void>).finally(ack);
      else ack();
    }));
  }

  stats(): { records: number; lost: number; batches: number; creditWaits: number; pollErrors: number } {
    return this.reader.stats();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.reader.close();
  }
}

/** Turns on the kernel's run-time statistics for BPF programs while the returned handle is open. */
export function enableRunTimeStats(): { close(): void } {
  const fd = call(() => native().enableStats());
  return { close: () => native().closeFd(fd) };
}
