// The datapath as several processes share it through bpffs: the programs and maps pinned once
// (by the daemon, or by the first plugin run when the daemon has not started yet), and one
// directory of link pins per attachment. Plugin and daemon both go through here.
import { mkdirSync, readdirSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  BpfError, BpfObject, Program, attach, defaultObjectPath, detach, detachPinnedLink, ensureBpffs, query,
  removeEmptyDirs, unpin, type AttachMode, type Attachment, type LoadOptions,
} from './index';
import { PROGRAMS, PinLayout, isHookLinkName, tcMarkerIfindex, type Direction } from './pins';
import { getLink } from '../netlink/index';
import { isErrno } from '../native/load';

export type ProgramSet = Record<keyof typeof PROGRAMS, Program>;

/** Names in a directory; none when it does not exist. */
function namesIn(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

function openPinnedPrograms(layout: PinLayout): ProgramSet | undefined {
  const names = Object.entries(PROGRAMS) as [keyof typeof PROGRAMS, string][];
  const pinned = namesIn(layout.progs);
  if (!names.every(([, n]) => pinned.includes(n))) return undefined;
  const out = {} as ProgramSet;
  for (const [k, n] of names) out[k] = Program.fromPin(layout.prog(n));
  return out;
}

/**
 * Loads the object, reusing maps already pinned under the layout (or pinning new ones), and pins
 * its programs in place of older ones. Returns the loaded object; its programs stay alive
 * through the pins after it is closed.
 */
export function loadAndPin(layout: PinLayout, objectPath = defaultObjectPath(), opts: LoadOptions = {}): BpfObject {
  ensureBpffs(layout.root);
  let obj: BpfObject;
  try {
    obj = BpfObject.load(objectPath, { ...opts, pinMapsDir: layout.maps });
  } catch (e) {
    // Two processes pinning the maps at once: the loser finds them pinned on its second try.
    if (!(e instanceof BpfError && e.code === 'EEXIST')) throw e;
    obj = BpfObject.load(objectPath, { ...opts, pinMapsDir: layout.maps });
  }
  obj.pinPrograms(layout.progs);
  return obj;
}

/** The pinned programs; loads and pins the object first when nothing is pinned yet. */
export function pinnedPrograms(layout: PinLayout, objectPath?: string): ProgramSet {
  const pinned = openPinnedPrograms(layout);
  if (pinned) return pinned;
  loadAndPin(layout, objectPath).close();
  const again = openPinnedPrograms(layout);
  if (!again) throw new Error(`programs are missing under ${layout.progs} right after pinning them`);
  return again;
}

export function closePrograms(p: ProgramSet): void {
  for (const prog of Object.values(p)) prog.close();
}

export interface AttachmentKey {
  network: string;
  containerId: string;
  ifname: string;
}

export interface PodAttachment extends AttachmentKey {
  mode: AttachMode;
  /** the host interface the links point at (from the link info; tc: from the marker) */
  ifindex: number;
  programIds: number[];
}

/**
 * Attaches ingress and egress programs to a pod's host veth, pinning the TCX links under the
 * attachment's directory. Idempotent: an existing attachment is updated in place.
 */
export function attachPod(layout: PinLayout, key: AttachmentKey, hostIfindex: number, progs: ProgramSet, mode?: AttachMode): PodAttachment {
  const dir = layout.attachment(key.network, key.containerId, key.ifname);
  mkdirSync(dir, { recursive: true });
  const done: Attachment[] = [];
  try {
    for (const [direction, prog] of [['ingress', progs.ingress], ['egress', progs.egress]] as [Direction, Program][]) {
      done.push(attach(prog, hostIfindex, direction, {
        mode, linkPin: layout.hookLink(dir, direction), clsactMarker: layout.clsactMarker(hostIfindex),
      }));
    }
  } catch (e) {
    for (const a of done) detach(a); // nothing half-done
    removeEmptyDirs(dir, layout.links);
    throw e;
  }
  if (done[0].mode === 'tc') mkdirSync(layout.tcMarker(dir, hostIfindex), { recursive: true });
  return { ...key, mode: done[0].mode, ifindex: hostIfindex, programIds: done.map((a) => a.progId) };
}

/** Removes an attachment's links (or tc filters) and pins. Succeeds when they are already gone. */
export function detachPod(layout: PinLayout, key: AttachmentKey): void {
  const dir = layout.attachment(key.network, key.containerId, key.ifname);
  detachHooksIn(layout, dir);
  removeEmptyDirs(dir, layout.links);
}

/** Removes a node interface's links (or tc filters) and their pins. */
export function detachNodeInterface(layout: PinLayout, ifname: string): void {
  detachHooksIn(layout, layout.nodeInterface(ifname));
}

/**
 * Detaches what an attachment's or node interface's directory holds: TCX link pins, and tc
 * markers (the filters, and a clsact we created, go with them). Nothing to do when it is gone.
 */
function detachHooksIn(layout: PinLayout, dir: string): void {
  for (const name of namesIn(dir)) {
    const p = join(dir, name);
    const tcIfindex = tcMarkerIfindex(name);
    if (isHookLinkName(name)) {
      detach({ ifindex: 0, direction: name, mode: 'tcx', progId: 0, linkPin: p });
      unpin(p);
    } else if (tcIfindex !== undefined) {
      for (const direction of ['ingress', 'egress'] as const) {
        detach({ ifindex: tcIfindex, direction, mode: 'tc', progId: 0, clsactMarker: layout.clsactMarker(tcIfindex) });
      }
      rmSync(p, { recursive: true, force: true }); // another process may have removed it already
    }
  }
}

/**
 * Removes a pin tree bottom-up: link pins are detached first, other pins (programs, maps) just
 * unpinned, then the directories. Nothing to do when it is gone.
 */
export function removePinTree(dir: string): void {
  for (const name of namesIn(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      removePinTree(p);
      continue;
    }
    try {
      detachPinnedLink(p);
    } catch (e) {
      // EINVAL: a program or map pin, which has no link to detach; unpinning (below) releases it.
      if (!isErrno(e, 'EINVAL')) throw e;
    }
    unpin(p);
  }
  try {
    rmdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/** Attachments with pins under the layout (optionally of one network). */
export function listPodAttachments(layout: PinLayout, network?: string): AttachmentKey[] {
  const base = layout.podLinks;
  const out: AttachmentKey[] = [];
  for (const net of network ? [network] : namesIn(base)) {
    for (const containerId of namesIn(join(base, net))) {
      for (const ifname of namesIn(join(base, net, containerId))) out.push({ network: net, containerId, ifname });
    }
  }
  return out;
}

/** Whether our ingress and egress programs are on the host interface right now. */
export function isPodAttached(hostIfindex: number): boolean {
  try {
    getLink({ ifindex: hostIfindex });
  } catch (e) {
    if (isErrno(e, 'ENODEV')) return false; // the interface is gone
    throw e;
  }
  const has = (d: Direction, name: string) => query(hostIfindex, d).some((h) => h.ours && h.name === name);
  return has('ingress', PROGRAMS.ingress) && has('egress', PROGRAMS.egress);
}
