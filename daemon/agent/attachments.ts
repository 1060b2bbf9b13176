// The pods the daemon observes: one record per CNI attachment (network, container id, ifname),
// learned from the plugin's notices, its spool, and the pins in bpffs. Records are persisted
// (one small JSON file each) so that a restarted daemon knows its pods again.
//
// Records hold what the node knows (CNI and kernel); Kubernetes metadata (labels, owner) is
// joined in by the API when it answers, so a pod deleted in the API loses its metadata at once
// while its attachment lives as long as its veth does (CNI DEL, or reconcile finding the veth
// gone, forgets it).
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import * as bpf from '../../bpf/index';
import * as netlink from '../../netlink/index';
import { isErrno } from '../../native/load';
import {
  attachPod, detachPod, isPodAttached, listPodAttachments, type AttachmentKey, type ProgramSet,
} from '../../bpf/attachments';
import { isHookLinkName, tcMarkerIfindex, type PinLayout } from '../../bpf/pins';
import type { AttachmentNotice } from '../../protocol/notice';
import { readSpool, removeSpoolEntry } from '../../protocol/spool';
import type { PodInfo } from '../k8s/pod-info';
import { WarnLimiter } from './warn-limiter';

export type AttachmentState = 'ok' | 'missing' | 'repairing';

/** What the plugin told us (its notice), completed by what the daemon knows of the hook now. */
export interface AttachmentRecord extends Omit<AttachmentNotice, 'ips' | 'programIds' | 'error'> {
  ips: string[];
  programIds: number[];
  state: AttachmentState;
  lastError?: string;
}

export interface ReconcileCounters {
  runs: number;
  repairs: number;
  repairFailures: number;
  forgotten: number;
  spoolDrained: number;
  stalePinsRemoved: number;
  /** pods the API listed, running before the install, attached by reconcile */
  discovered: number;
}

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export interface RegistryOptions {
  layout: PinLayout;
  /** this version's programs, for (re)attaching */
  programs: () => ProgramSet;
  stateDir: string;
  spoolDir: string;
  log: Logger;
  /** repeated warnings (a repair failing every pass) are logged once per interval and key */
  warnings?: WarnLimiter;
}

/** How long a plugin ADD or DEL in progress may leave pins and records apart. */
const PLUGIN_GRACE_MS = 5000;

/**
 * Pods found running without ever passing through the plugin (created before it was installed)
 * are attached by reconcile under this network name, with the pod uid as container id and
 * DISCOVERED_IFNAME as ifname: the pod's own interface name is not known from outside its
 * namespace, so the key names the usual one (CNI's default) rather than the real one.
 */
export const DISCOVERED_NETWORK = 'k8s-discovered';
export const DISCOVERED_IFNAME = 'eth0';

const keyOf = (k: AttachmentKey) => `${k.network}/${k.containerId}/${k.ifname}`;

export class AttachmentRegistry {
  private readonly records = new Map<string, AttachmentRecord>();
  /** attachments whose pins all vanished, since when (a plugin DEL in progress, or tampering) */
  private readonly pinsGoneSince = new Map<string, number>();
  readonly counters: ReconcileCounters = { runs: 0, repairs: 0, repairFailures: 0, forgotten: 0, spoolDrained: 0, stalePinsRemoved: 0, discovered: 0 };
  readonly warnings: WarnLimiter;
  private readonly layout: PinLayout;
  private readonly programs: () => ProgramSet;
  private readonly stateDir: string;
  private readonly spoolDir: string;
  private readonly log: Logger;

  constructor(o: RegistryOptions) {
    ({ layout: this.layout, programs: this.programs, stateDir: this.stateDir, spoolDir: this.spoolDir, log: this.log } = o);
    this.warnings = o.warnings ?? new WarnLimiter(o.log);
    mkdirSync(this.stateDir, { recursive: true, mode: 0o700 });
    this.loadState();
  }

  list(): AttachmentRecord[] {
    return [...this.records.values()].sort((a, b) => keyOf(a).localeCompare(keyOf(b)));
  }

  get(key: AttachmentKey): AttachmentRecord | undefined {
    return this.records.get(keyOf(key));
  }

  byPod(namespace: string, name: string): AttachmentRecord[] {
    return this.list().filter((r) => r.podNamespace === namespace && r.podName === name);
  }

  countByState(): Record<AttachmentState, number> {
    const out: Record<AttachmentState, number> = { ok: 0, missing: 0, repairing: 0 };
    for (const r of this.records.values()) out[r.state]++;
    return out;
  }

  /** A notice from the plugin after ADD: the attachment exists (or must be repaired). */
  added(n: AttachmentNotice): AttachmentRecord {
    // Discovery found the pod from the API between its CNI ADD and the plugin's attach: the
    // plugin's attachment replaces the discovered one, so the veth keeps one pair of our links.
    for (const r of this.list()) {
      if (r.network === DISCOVERED_NETWORK && n.hostIfindex !== undefined && r.hostIfindex === n.hostIfindex) this.deleted(r);
    }
    const rec: AttachmentRecord = {
      network: n.network, containerId: n.containerId, ifname: n.ifname, netns: n.netns, hostIfname: n.hostIfname,
      hostIfindex: n.hostIfindex, podNamespace: n.podNamespace, podName: n.podName, podUid: n.podUid, ips: n.ips ?? [],
      mode: n.mode, programIds: n.programIds ?? [], attachedAt: n.attachedAt, state: n.error ? 'missing' : 'ok',
      lastError: n.error,
    };
    this.put(rec);
    if (rec.state !== 'ok') this.repair(rec);
    return rec;
  }

  /** A notice after DEL: the attachment is gone (its pins are removed if anything is left). */
  deleted(key: AttachmentKey): void {
    try {
      detachPod(this.layout, key);
    } catch (e) {
      this.warnings.warn(`detach ${keyOf(key)}`, { attachment: keyOf(key), err: (e as Error).message }, 'could not remove the pins of a deleted attachment');
    }
    this.forget(key);
  }

  /**
   * One reconcile pass: drain the plugin's spool, check every attachment and repair the ones
   * whose programs are missing, forget pods whose veth is gone, adopt pins we have no record
   * of (a restart without state), and remove pins of attachments that no longer exist.
   */
  reconcile(discoverable: readonly PodInfo[] = []): void {
    this.counters.runs++;
    this.drainSpool();
    for (const r of this.list()) this.guarded(keyOf(r), () => this.check(r));
    for (const key of listPodAttachments(this.layout)) {
      if (this.records.has(keyOf(key))) continue;
      this.guarded(keyOf(key), () => this.adoptOrRemovePins(key));
    }
    for (const pod of discoverable) this.guarded(`discover ${pod.namespace}/${pod.name}`, () => this.discover(pod));
  }

  /** Pods attached by discovery (running pods the plugin never saw), since start. */

  /**
   * A running pod of this node (from the API) that no record knows, by name or by IP: its host
   * veth is found from its IP (route, and on a bridge the neighbour and FDB entries) and our
   * programs are attached to it. Anything that is not a veth is left alone.
   */
  private discover(pod: PodInfo): void {
    if (pod.hostNetwork || pod.phase !== 'Running' || pod.deletion || pod.podIPs.length === 0) return;
    const ips = new Set(pod.podIPs.map(bareIp));
    for (const r of this.records.values()) {
      if (r.podNamespace === pod.namespace && r.podName === pod.name) return;
      if (r.network === DISCOVERED_NETWORK && r.containerId === pod.uid) return;
      if (r.ips.some((ip) => ips.has(bareIp(ip)))) return;
    }
    let veth: HostVeth | undefined;
    for (const ip of ips) {
      veth = hostVethOfPodIp(ip, { probe: true });
      if (veth) break;
    }
    if (!veth) return;
    const ifindex = veth.ifindex;
    // Tracked under another key (e.g. adopted pins without identity), or a plugin ADD in
    // progress that attached and has not notified yet: not ours to attach again.
    if ([...this.records.values()].some((r) => r.hostIfindex === ifindex)) return;
    if (isPodAttached(ifindex)) return;
    const key: AttachmentKey = { network: DISCOVERED_NETWORK, containerId: pod.uid, ifname: DISCOVERED_IFNAME };
    const a = attachPod(this.layout, key, ifindex, this.programs());
    this.put({
      ...key, hostIfname: veth.ifname, hostIfindex: ifindex, podNamespace: pod.namespace, podName: pod.name, podUid: pod.uid,
      ips: [...pod.podIPs], mode: a.mode, programIds: a.programIds, attachedAt: new Date().toISOString(), state: 'ok',
    });
    this.counters.discovered++;
    this.log.info({ attachment: keyOf(key), pod: `${pod.namespace}/${pod.name}`, ifindex, ifname: veth.ifname }, 'attached a pod the plugin never saw');
  }

  /** One attachment's trouble must not stop the pass over the others. */
  private guarded(key: string, step: () => void): void {
    try {
      step();
    } catch (e) {
      this.warnings.warn(`reconcile ${key}`, { attachment: key, err: (e as Error).message }, 'reconcile step failed');
    }
  }

  /** Pins without a record: still on a live hook, they are adopted; otherwise they are stale. */
  private adoptOrRemovePins(key: AttachmentKey): void {
    // A plugin ADD in progress pins before it notifies: give its notice time to arrive.
    if (Date.now() - this.pinDirMtime(key) < PLUGIN_GRACE_MS) return;
    const ifindex = this.pinnedIfindex(key);
    if (ifindex !== undefined && isPodAttached(ifindex)) {
      this.put({
        ...key, hostIfindex: ifindex, hostIfname: safeIfname(ifindex), ips: [], programIds: ourProgramIds(ifindex), state: 'ok',
      });
      this.log.info({ attachment: keyOf(key), ifindex }, 'adopted pinned attachment without a record');
    } else {
      detachPod(this.layout, key);
      this.counters.stalePinsRemoved++;
      this.log.info({ attachment: keyOf(key) }, 'removed stale pins');
    }
  }

  private check(r: AttachmentRecord): void {
    if (r.hostIfindex === undefined) {
      this.repair(r);
      return;
    }
    let link: netlink.LinkDetails;
    try {
      link = netlink.getLink({ ifindex: r.hostIfindex });
    } catch (e) {
      if (!isErrno(e, 'ENODEV')) throw e;
      // The veth is gone: the pod is gone (its DEL may still come; it will find nothing to do).
      this.deleted(r);
      return;
    }
    if (link.ifname !== r.hostIfname && r.hostIfname !== undefined) {
      this.deleted(r); // the ifindex was reused by another interface
      return;
    }
    if (isPodAttached(r.hostIfindex)) {
      this.pinsGoneSince.delete(keyOf(r));
      // A restarted daemon swaps its programs into the existing links: the ids change.
      const ids = ourProgramIds(r.hostIfindex);
      if (r.state !== 'ok' || ids.join() !== r.programIds.join()) {
        r.state = 'ok';
        r.lastError = undefined;
        r.programIds = ids;
        this.persist(r);
        this.warnings.clear(`repair ${keyOf(r)}`);
      }
      return;
    }
    // All pins gone from an attachment that was fine: a plugin DEL is removing it and its
    // notice (or spool record) follows. Repair only if none came within the grace period.
    if (r.state === 'ok' && !existsSync(this.layout.attachment(r.network, r.containerId, r.ifname))) {
      const since = this.pinsGoneSince.get(keyOf(r)) ?? Date.now();
      this.pinsGoneSince.set(keyOf(r), since);
      if (Date.now() - since < PLUGIN_GRACE_MS) return;
    }
    this.pinsGoneSince.delete(keyOf(r));
    this.repair(r);
  }

  private pinDirMtime(key: AttachmentKey): number {
    try {
      return statSync(this.layout.attachment(key.network, key.containerId, key.ifname)).mtimeMs;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0; // removed meanwhile
      throw e;
    }
  }

  /** Attaches our programs again (found missing, or the plugin could not). */
  private repair(r: AttachmentRecord): void {
    r.state = 'repairing';
    try {
      let ifindex = r.hostIfindex;
      if (ifindex === undefined) {
        if (!r.netns) throw new Error('neither the host veth nor the netns is known');
        const inside = netlink.getLink({ ifname: r.ifname }, r.netns);
        if (inside.peerIfindex === undefined) throw new Error(`${r.ifname} in ${r.netns} has no peer`);
        ifindex = inside.peerIfindex;
      }
      const a = attachPod(this.layout, r, ifindex, this.programs());
      Object.assign(r, {
        hostIfindex: ifindex, hostIfname: r.hostIfname ?? safeIfname(ifindex), mode: a.mode, programIds: a.programIds,
        attachedAt: new Date().toISOString(), state: 'ok' as const, lastError: undefined,
      });
      this.counters.repairs++;
      this.warnings.clear(`repair ${keyOf(r)}`);
      this.log.info({ attachment: keyOf(r), ifindex }, 'attachment repaired');
    } catch (e) {
      r.state = 'missing';
      r.lastError = (e as Error).message;
      this.counters.repairFailures++;
      this.warnings.warn(`repair ${keyOf(r)}`, { attachment: keyOf(r), err: r.lastError }, 'attachment could not be repaired');
    }
    this.persist(r);
  }

  private drainSpool(): void {
    let entries;
    try {
      entries = readSpool(this.spoolDir);
    } catch (e) {
      this.warnings.warn('spool', { spool: this.spoolDir, err: (e as Error).message }, 'cannot read the spool');
      return;
    }
    for (const e of entries) {
      // An ADD the daemon missed: the plugin may well have attached (only the notify failed),
      // so the kernel is checked before anything is repaired.
      if (e.op === 'add') {
        const rec = this.added(e.notice);
        if (rec.state === 'ok') this.guarded(keyOf(rec), () => this.check(rec));
      } else {
        this.deleted(e.key);
      }
      removeSpoolEntry(this.spoolDir, { key: e.key, id: e.id });
      this.counters.spoolDrained++;
    }
  }

  private pinnedIfindex(key: AttachmentKey): number | undefined {
    const dir = this.layout.attachment(key.network, key.containerId, key.ifname);
    for (const name of existsSync(dir) ? readdirSync(dir) : []) {
      const tcIfindex = tcMarkerIfindex(name);
      if (tcIfindex !== undefined) return tcIfindex;
      if (isHookLinkName(name)) {
        try {
          return bpf.pinnedLinkInfo(this.layout.hookLink(dir, name)).ifindex;
        } catch (e) {
          if (isErrno(e, 'ENOENT')) return undefined; // unpinned meanwhile (a plugin DEL)
          throw e;
        }
      }
    }
    return undefined;
  }

  private put(r: AttachmentRecord): void {
    this.records.set(keyOf(r), r);
    this.persist(r);
  }

  private forget(key: AttachmentKey): void {
    if (this.records.delete(keyOf(key))) this.counters.forgotten++;
    const f = this.stateFile(key);
    if (existsSync(f)) unlinkSync(f);
  }

  private stateFile(key: AttachmentKey): string {
    return join(this.stateDir, createHash('sha256').update(keyOf(key)).digest('hex').slice(0, 40) + '.json');
  }

  private persist(r: AttachmentRecord): void {
    const f = this.stateFile(r);
    const tmp = `${f}.tmp`;
    writeFileSync(tmp, JSON.stringify(r) + '\n', { mode: 0o600 });
    renameSync(tmp, f);
  }

  private loadState(): void {
    for (const name of readdirSync(this.stateDir)) {
      if (!name.endsWith('.json')) continue;
      try {
        const r = JSON.parse(readFileSync(join(this.stateDir, name), 'utf8')) as AttachmentRecord;
        this.records.set(keyOf(r), r);
      } catch (e) {
        this.log.warn({ file: name, err: (e as Error).message }, 'ignoring an unreadable state file');
      }
    }
  }
}

export interface HostVeth {
  ifindex: number;
  ifname: string;
}

/** '10.1.2.3/24' -> '10.1.2.3' (the plugin's records carry CNI's CIDR form). */
function bareIp(ip: string): string {
  const slash = ip.indexOf('/');
  return slash < 0 ? ip : ip.slice(0, slash);
}

/**
 * The host-side veth of the pod that owns `ip`, found from this host's tables without entering
 * any namespace: the route's output interface when it is a veth (routed CNIs: Calico, Cilium,
 * ptp); when it is a bridge, the bridge port the IP's MAC (neighbour entry) was learned on,
 * which must be a veth of that bridge. Undefined for anything else (no route, a local address,
 * a tunnel, a dummy, a physical NIC, an unresolved neighbour). With `probe`, an unresolved
 * neighbour on a bridge is asked for (ARP / ND), so a later call can find it.
 */
export function hostVethOfPodIp(ip: string, opts: { probe?: boolean } = {}): HostVeth | undefined {
  const oif = netlink.routeOutputIfindex(ip);
  if (oif === undefined) return undefined;
  const out = netlink.getLink({ ifindex: oif });
  if (out.kind === 'veth') return { ifindex: out.ifindex, ifname: out.ifname };
  if (out.kind !== 'bridge') return undefined;
  const mac = netlink.neighbourMac(oif, ip);
  if (mac === undefined) {
    if (opts.probe) netlink.neighbourProbe(oif, ip);
    return undefined;
  }
  const port = netlink.bridgePortOf(oif, mac);
  if (port === undefined) return undefined;
  const link = netlink.getLink({ ifindex: port });
  if (link.kind !== 'veth' || link.master !== oif) return undefined;
  return { ifindex: link.ifindex, ifname: link.ifname };
}

/** Ids of our programs on the host interface's hooks, ingress then egress. */
function ourProgramIds(ifindex: number): number[] {
  return (['ingress', 'egress'] as const).flatMap((d) => bpf.query(ifindex, d).filter((h) => h.ours).map((h) => h.progId));
}

function safeIfname(ifindex: number): string | undefined {
  try {
    return netlink.getLink({ ifindex }).ifname;
  } catch (e) {
    if (isErrno(e, 'ENODEV')) return undefined; // gone meanwhile
    throw e;
  }
}
