// Where our objects live in bpffs. The daemon pins programs and maps here; the CNI plugin pins one
// TCX link per hook of each pod attachment, keyed by (network name, container id, ifname).
import { join } from 'node:path';
import { ProgramName } from './generated/layout';

export const DEFAULT_BPFFS_ROOT = '/sys/fs/bpf/int-host-reporter';

/** Program names in the BPF object (generated from its BTF); at most 15 characters, the
 *  kernel's limit, so the names the kernel reports are these. */
export const PROGRAMS = {
  /** pod veths and other plain interfaces */
  ingress: ProgramName.int_ingress,
  egress: ProgramName.int_egress,
  /** the node's data interface(s): also parses VXLAN/Geneve inner headers */
  ingressNic: ProgramName.int_ingress_nic,
  egressNic: ProgramName.int_egress_nic,
} as const;

/** The drop tracepoint program (tp_btf/kfree_skb). */
export const DROP_PROGRAM = ProgramName.int_kfree_skb;

export type Direction = 'ingress' | 'egress';

/** Every path of ours in bpffs, under one root the caller chooses (daemon config, plugin conf's
 *  bpffsRoot, uninstall flag). Nothing else spells out a pin path. */
export class PinLayout {
  constructor(readonly root: string) {}
  get progs(): string { return join(this.root, 'progs'); }
  get maps(): string { return join(this.root, 'maps'); }
  get links(): string { return join(this.root, 'links'); }
  prog(name: string): string { return join(this.progs, name); }
  map(name: string): string { return join(this.maps, name); }
  /** Directory holding the CNI attachments: <network>/<containerId>/<ifname>/. */
  get podLinks(): string { return join(this.links, 'cni'); }
  /** Directory holding the link pins of one CNI attachment. */
  attachment(network: string, containerId: string, ifname: string): string {
    return join(this.podLinks, network, containerId, ifname);
  }
  /** Directory holding the node interfaces' link dirs and the drop link. */
  get nodeLinks(): string { return join(this.links, 'node'); }
  /** The pinned link of the drop tracepoint program. */
  get dropLink(): string { return join(this.nodeLinks, 'kfree_skb'); }
  /** Directory holding the link pins of a node interface (data interface). */
  nodeInterface(ifname: string): string {
    return join(this.nodeLinks, ifname);
  }
  /** The TCX link pin of one hook, in an attachment's or node interface's directory. */
  hookLink(dir: string, direction: Direction): string {
    return join(dir, direction);
  }
  /** Marker directory in an attachment's or node interface's directory: attached with classic
   *  tc on that ifindex (tc filters have no link to pin). */
  tcMarker(dir: string, ifindex: number): string {
    return join(dir, `${TC_MARKER}${ifindex}`);
  }
  /** Marker directory: our attach created the clsact qdisc of that interface. */
  clsactMarker(ifindex: number): string {
    return join(this.root, 'tc', `clsact-${ifindex}`);
  }
}

const TC_MARKER = 'tc-ifindex-';

/** The ifindex a tc marker's name stands for, or undefined when the name is not a tc marker. */
export function tcMarkerIfindex(name: string): number | undefined {
  return name.startsWith(TC_MARKER) ? Number(name.slice(TC_MARKER.length)) : undefined;
}

/** Whether a file name in an attachment's or node interface's directory is a hook's link pin. */
export function isHookLinkName(name: string): name is Direction {
  return name === 'ingress' || name === 'egress';
}
