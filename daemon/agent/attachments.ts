// The pods the daemon observes: one record per CNI attachment (network, container id, ifname),
// learned from the plugin's notices, its spool, and the pins in bpffs. Records are persisted
// (one small JSON file each) so that a restarted daemon knows its pods again.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import * as bpf from '../../bpf/index';
import {
  attachPod, detachPod, isPodAttached, listPodAttachments, type AttachmentKey, type ProgramSet,
} from '../../bpf/attachments';
import type { PinLayout } from '../../bpf/pins';
import type { AttachmentNotice } from '../api/protocol';
import { readSpool, removeSpoolEntry } from '../../plugin/spool';

export type AttachmentState = 'ok' | 'missing' | 'repairing';

export interface AttachmentRecord extends AttachmentKey {
  netns?: string;
  hostIfname?: string;
  hostIfindex?: number;
  podNamespace?: string;
  podName?: string;
  podUid?: string;
  ips: string[];
  mode?: 'tcx' | 'tc';
  programIds: number[];
  attachedAt?: string;
  state: AttachmentState;
  lastError?: string;
  /** from the Kubernetes pod watch, when there is one */
  labels?: Record<string, string>;
  owner?: { kind: string; name: string } | null;
}

export interface ReconcileCounters {
  runs: number;
  repairs: number;
  repairFailures: number;
  forgotten: number;
  spoolDrained: number;
  stalePinsRemoved: number;
}

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

const keyOf = (k: AttachmentKey) => `${k.network}/${k.containerId}/${k.ifname}`;

export class AttachmentRegistry {
  private readonly records = new Map<string, AttachmentRecord>();
  readonly counters: ReconcileCounters = { runs: 0, repairs: 0, repairFailures: 0, forgotten: 0, spoolDrained: 0, stalePinsRemoved: 0 };

  constructor(
    private readonly layout: PinLayout,
    private readonly programs: () => ProgramSet,
    private readonly stateDir: string,
    private readonly spoolDir: string,
    private readonly log: Logger,
  ) {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
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
    const rec: AttachmentRecord = {
      network: n.network, containerId: n.containerId, ifname: n.ifname, netns: n.netns, hostIfname: n.hostIfname,
      hostIfindex: n.hostIfindex, podNamespace: n.podNamespace, podName: n.podName, podUid: n.podUid, ips: n.ips ?? [],
      mode: n.mode, programIds: n.programIds ?? [], attachedAt: n.attachedAt, state: n.error ? 'missing' : 'ok',
      lastError: n.error,
    };
    const old = this.records.get(keyOf(rec));
    if (old?.labels) rec.labels = old.labels;
    if (old?.owner !== undefined) rec.owner = old.owner;
    this.put(rec);
    if (rec.state !== 'ok') this.repair(rec);
    return rec;
  }

  /** A notice after DEL: the attachment is gone (its pins are removed if anything is left). */
  deleted(key: AttachmentKey): void {
    try {
      detachPod(this.layout, key);
    } catch (e) {
      this.log.warn({ attachment: keyOf(key), err: (e as Error).message }, 'could not remove the pins of a deleted attachment');
    }
    this.forget(key);
  }

  /** Enriches records with what the Kubernetes API says about their pod. */
  setPodMetadata(namespace: string, name: string, meta: { uid?: string; labels: Record<string, string>; owner: { kind: string; name: string } | null }): void {
    for (const r of this.records.values()) {
      if (r.podNamespace === namespace && r.podName === name) {
        r.labels = meta.labels;
        r.owner = meta.owner;
        if (meta.uid && !r.podUid) r.podUid = meta.uid;
        this.persist(r);
      }
    }
  }

  /**
   * One reconcile pass: drain the plugin's spool, check every attachment and repair the ones
   * whose programs are missing, forget pods whose veth is gone, adopt pins we have no record
   * of (a restart without state), and remove pins of attachments that no longer exist.
   */
  reconcile(): void {
    this.counters.runs++;
    this.drainSpool();
    for (const r of this.list()) this.check(r);
    for (const key of listPodAttachments(this.layout)) {
      if (this.records.has(keyOf(key))) continue;
      const ifindex = this.pinnedIfindex(key);
      if (ifindex !== undefined && isPodAttached(ifindex)) {
        this.put({ ...key, hostIfindex: ifindex, hostIfname: safeIfname(ifindex), ips: [], programIds: [], state: 'ok' });
      } else {
        detachPod(this.layout, key);
        this.counters.stalePinsRemoved++;
      }
    }
  }

  private check(r: AttachmentRecord): void {
    if (r.hostIfindex === undefined) {
      this.repair(r);
      return;
    }
    let link: bpf.LinkDetails;
    try {
      link = bpf.getLink({ ifindex: r.hostIfindex });
    } catch {
      // The veth is gone: the pod is gone (its DEL may still come; it will find nothing to do).
      this.deleted(r);
      return;
    }
    if (link.ifname !== r.hostIfname && r.hostIfname !== undefined) {
      this.deleted(r); // the ifindex was reused by another interface
      return;
    }
    if (isPodAttached(r.hostIfindex)) {
      if (r.state !== 'ok') {
        r.state = 'ok';
        r.lastError = undefined;
        this.persist(r);
      }
      return;
    }
    this.repair(r);
  }

  /** Attaches our programs again (found missing, or the plugin could not). */
  private repair(r: AttachmentRecord): void {
    r.state = 'repairing';
    try {
      let ifindex = r.hostIfindex;
      if (ifindex === undefined) {
        if (!r.netns) throw new Error('neither the host veth nor the netns is known');
        const inside = bpf.getLink({ ifname: r.ifname }, r.netns);
        if (inside.peerIfindex === undefined) throw new Error(`${r.ifname} in ${r.netns} has no peer`);
        ifindex = inside.peerIfindex;
      }
      const a = attachPod(this.layout, r, ifindex, this.programs());
      Object.assign(r, {
        hostIfindex: ifindex, hostIfname: r.hostIfname ?? safeIfname(ifindex), mode: a.mode, programIds: a.programIds,
        attachedAt: new Date().toISOString(), state: 'ok' as const, lastError: undefined,
      });
      this.counters.repairs++;
      this.log.info({ attachment: keyOf(r), ifindex }, 'attachment repaired');
    } catch (e) {
      r.state = 'missing';
      r.lastError = (e as Error).message;
      this.counters.repairFailures++;
      this.log.warn({ attachment: keyOf(r), err: r.lastError }, 'attachment could not be repaired');
    }
    this.persist(r);
  }

  private drainSpool(): void {
    let entries;
    try {
      entries = readSpool(this.spoolDir);
    } catch (e) {
      this.log.warn({ spool: this.spoolDir, err: (e as Error).message }, 'cannot read the spool');
      return;
    }
    for (const e of entries) {
      if (e.op === 'add') this.added({ ...e.notice, error: e.notice.error ?? (e.reasons.join('; ') || 'spooled') });
      else this.deleted(e.key);
      removeSpoolEntry(this.spoolDir, { key: e.key, id: e.id });
      this.counters.spoolDrained++;
    }
  }

  private pinnedIfindex(key: AttachmentKey): number | undefined {
    const dir = this.layout.attachment(key.network, key.containerId, key.ifname);
    for (const name of existsSync(dir) ? readdirSync(dir) : []) {
      if (name.startsWith('tc-ifindex-')) return Number(name.slice('tc-ifindex-'.length));
      if (name === 'ingress' || name === 'egress') {
        try {
          return bpf.pinnedLinkInfo(join(dir, name)).ifindex;
        } catch {
          return undefined;
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

function safeIfname(ifindex: number): string | undefined {
  try {
    return bpf.getLink({ ifindex }).ifname;
  } catch {
    return undefined;
  }
}
