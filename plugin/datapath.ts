// What the CNI contract needs from the datapath. The implementation (plugin/datapath-bpf.ts)
// enters the pod netns and drives bpf/; the contract tests run it against real namespaces.
// Methods may be synchronous or return a promise; the contract awaits both.

export interface AttachmentKey {
  network: string;
  containerId: string;
  ifname: string;
}

export interface HostVeth {
  ifindex: number;
  ifname: string;
  /** link kind in the host netns, "veth" for the pods we serve */
  kind: string;
}

export interface Attached {
  mode: 'tcx' | 'tc';
  programIds: number[];
}

type Awaitable<T> = T | Promise<T>;

export interface PluginDatapath {
  /** Peer of `ifname` inside `netns`, looked up in the host netns. Throws when it cannot be found. */
  findHostVeth(netns: string, ifname: string): Awaitable<HostVeth>;
  /** Attaches (idempotently) our programs to the host veth and pins them under the key. */
  attach(hostIfindex: number, key: AttachmentKey): Awaitable<Attached>;
  /** Removes the key's links and pins; succeeds when they are already gone. */
  detach(key: AttachmentKey): Awaitable<void>;
  /** Whether the key's programs are attached to that host ifindex right now. */
  isAttached(hostIfindex: number, key: AttachmentKey): Awaitable<boolean>;
  /** Keys of the attachments we hold for a network (pins present), for GC. */
  listAttachments(network: string): Awaitable<AttachmentKey[]>;
}

/** Options the real datapath needs from the plugin config. */
export interface DatapathOptions {
  bpffsRoot: string;
}

export function sameKey(a: AttachmentKey, b: AttachmentKey): boolean {
  return a.network === b.network && a.containerId === b.containerId && a.ifname === b.ifname;
}

export function keyText(key: AttachmentKey): string {
  return `${key.network}/${key.containerId}/${key.ifname}`;
}
