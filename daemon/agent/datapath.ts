// The daemon's side of the datapath: load this version's programs and pin them in place of an
// older version, move every existing attachment to them without detaching it, attach the
// data interfaces, attach the drop tracepoint, and read events.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as bpf from '../../bpf/index';
import * as netlink from '../../netlink/index';
import { detachNodeInterface, loadAndPin } from '../../bpf/attachments';
import { isErrno } from '../../native/load';
import { DROP_PROGRAM, PROGRAMS, PinLayout, isHookLinkName, tcMarkerIfindex, type Direction } from '../../bpf/pins';

export interface DatapathOptions {
  layout: PinLayout;
  reportIntervalNs: bigint;
  latencyQuantumNs: bigint;
  sampleBytes: number;
  objectPath?: string;
}

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

interface PinnedHook {
  /** a TCX link pin, or a tc attachment's marker directory (tc-ifindex-N) */
  path: string;
  nic: boolean;
  direction?: Direction;
  tcIfindex?: number;
}

/** Every attachment of ours found in bpffs: pod attachments and node interfaces. */
function pinnedHooks(layout: PinLayout): PinnedHook[] {
  const out: PinnedHook[] = [];
  const walk = (dir: string, nic: boolean) => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // nothing pinned there yet
      throw e;
    }
    for (const name of names) {
      const p = join(dir, name);
      const tcIfindex = tcMarkerIfindex(name);
      if (tcIfindex !== undefined) out.push({ path: p, nic, tcIfindex });
      else if (statSync(p).isDirectory()) walk(p, nic);
      else if (isHookLinkName(name)) out.push({ path: p, direction: name, nic });
    }
  };
  walk(layout.podLinks, false);
  walk(layout.nodeLinks, true);
  return out;
}

export class NodeDatapath {
  readonly obj: bpf.BpfObject;
  readonly counters = { linksUpdated: 0, linksStale: 0 };
  private reader?: bpf.EventReader;

  constructor(private readonly opts: DatapathOptions, private readonly log: Logger) {
    const constants = {
      [bpf.ConstName.report_interval_ns]: opts.reportIntervalNs,
      [bpf.ConstName.latency_quantum_ns]: opts.latencyQuantumNs,
      [bpf.ConstName.sample_bytes]: opts.sampleBytes,
    };
    this.obj = loadAndPin(opts.layout, opts.objectPath, { constants });
    this.relinkExisting();
  }

  private program(direction: Direction, nic: boolean): bpf.Program {
    const name = nic
      ? direction === 'ingress' ? PROGRAMS.ingressNic : PROGRAMS.egressNic
      : direction === 'ingress' ? PROGRAMS.ingress : PROGRAMS.egress;
    return this.obj.program(name);
  }

  /**
   * Links pinned by an earlier daemon or by the plugin keep their hooks: each one gets this
   * version's program swapped in atomically. A pin whose interface is gone is removed.
   */
  private relinkExisting(): void {
    for (const h of pinnedHooks(this.opts.layout)) {
      try {
        if (h.direction) {
          bpf.updatePinnedLink(h.path, this.program(h.direction, h.nic));
        } else {
          // classic tc: replacing the filter at our priority/handle swaps the program
          for (const d of ['ingress', 'egress'] as const) bpf.attach(this.program(d, h.nic), h.tcIfindex!, d, { mode: 'tc' });
        }
        this.counters.linksUpdated++;
      } catch (e) {
        // ENOLINK: the link's interface is gone; ENODEV: the tc attachment's. Anything else is
        // not a reason to forget a pod's attachment: it keeps the program it has.
        if (!isErrno(e, 'ENOLINK', 'ENODEV')) {
          this.log.warn({ link: h.path, err: (e as Error).message }, 'cannot move a pinned attachment to this version; it keeps its program');
          continue;
        }
        this.counters.linksStale++;
        this.log.warn({ link: h.path, err: (e as Error).message }, 'removing a pinned attachment whose interface is gone');
        if (h.direction) bpf.detachPinnedLink(h.path);
      }
    }
    if (this.counters.linksUpdated > 0) this.log.info({ links: this.counters.linksUpdated }, 'existing attachments moved to this version');
  }

  /** Attaches the tunnel-aware programs to a node interface, pinned so they survive restarts. */
  attachInterface(ifname: string): { ifindex: number; mode: bpf.AttachMode } {
    const link = netlink.getLink({ ifname });
    const dir = this.opts.layout.nodeInterface(ifname);
    let mode: bpf.AttachMode = 'tcx';
    for (const direction of ['ingress', 'egress'] as const) {
      const a = bpf.attach(this.program(direction, true), link.ifindex, direction, {
        linkPin: this.opts.layout.hookLink(dir, direction), clsactMarker: this.opts.layout.clsactMarker(link.ifindex),
      });
      mode = a.mode;
    }
    return { ifindex: link.ifindex, mode };
  }

  /** Removes our programs from a node interface. */
  detachInterface(ifname: string): void {
    detachNodeInterface(this.opts.layout, ifname);
  }

  /** Releases the drop tracepoint of an earlier run (a tracing link goes when its pin does). */
  detachDrops(): void {
    bpf.detachPinnedLink(this.opts.layout.dropLink);
  }

  /** Attaches the kfree_skb tracepoint program; false if the kernel refuses. */
  attachDrops(): boolean {
    const pin = this.opts.layout.dropLink;
    try {
      this.obj.attachTracing(DROP_PROGRAM, pin);
      return true;
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'drop tracepoint unavailable: no drop reports');
      return false;
    }
  }

  startReader(onBatch: (view: bpf.EventView, records: number, lost: number) => void): bpf.EventReader {
    this.reader = new bpf.EventReader(this.obj.map(bpf.MapName.int_events), onBatch);
    return this.reader;
  }

  kernelCounters(): Record<bpf.CounterName, bigint> {
    return bpf.readCounters(this.obj.map(bpf.MapName.int_counters));
  }

  /** Stops reading; attachments and pins stay (pods stay observed across a restart). */
  close(): void {
    this.reader?.close();
    this.obj.close();
  }
}
