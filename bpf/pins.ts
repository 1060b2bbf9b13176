// Where our objects live in bpffs. The daemon pins programs and maps here; the CNI plugin pins one
// TCX link per hook of each pod attachment, keyed by (network name, container id, ifname).
import { join } from 'node:path';

export const DEFAULT_BPFFS_ROOT = '/sys/fs/bpf/int-host-reporter';

/** Program names in the BPF object (bpf/progs/datapath.bpf.c); at most 15 characters, the
 *  kernel's limit, so the names the kernel reports are these. */
export const PROGRAMS = {
  /** pod veths and other plain interfaces */
  ingress: 'int_ingress',
  egress: 'int_egress',
  /** the node's data interface(s): also parses VXLAN/Geneve inner headers */
  ingressNic: 'int_ingress_nic',
  egressNic: 'int_egress_nic',
} as const;

/** The drop tracepoint program (tp_btf/kfree_skb). */
export const DROP_PROGRAM = 'int_kfree_skb';

export type Direction = 'ingress' | 'egress';

export class PinLayout {
  constructor(readonly root: string = process.env.INT_HOST_REPORTER_BPFFS || DEFAULT_BPFFS_ROOT) {}
  get progs(): string { return join(this.root, 'progs'); }
  get maps(): string { return join(this.root, 'maps'); }
  get links(): string { return join(this.root, 'links'); }
  prog(name: string): string { return join(this.progs, name); }
  map(name: string): string { return join(this.maps, name); }
  /** Directory holding the link pins of one CNI attachment. */
  attachment(network: string, containerId: string, ifname: string): string {
    return join(this.links, 'cni', network, containerId, ifname);
  }
  /** The pinned link of the drop tracepoint program. */
  get dropLink(): string { return join(this.links, 'node', 'kfree_skb'); }
  /** Directory holding the link pins of a node interface (data interface). */
  nodeInterface(ifname: string): string {
    return join(this.links, 'node', ifname);
  }
}
