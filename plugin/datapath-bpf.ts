// The real datapath: host-veth discovery in the pod netns and TCX/tc attach through bpf/.
// main.ts loads this module lazily, only when a verb needs the datapath.
import { existsSync } from 'node:fs';
import { getLink } from '../netlink/index';
import { PinLayout } from '../bpf/pins';
import { attachPod, closePrograms, detachPod, isPodAttached, listPodAttachments, pinnedPrograms } from '../bpf/attachments';
import type { AttachmentKey, Attached, DatapathOptions, HostVeth, PluginDatapath } from './datapath';

export function createBpfDatapath(options: DatapathOptions): PluginDatapath {
  const layout = new PinLayout(options.bpffsRoot);
  return {
    findHostVeth(netns: string, ifname: string): HostVeth {
      // The container side names its peer by ifindex (IFLA_LINK); that index is only meaningful
      // in the host netns, where we look it up and require a veth.
      const inside = getLink({ ifname }, netns);
      if (inside.kind !== 'veth' || inside.peerIfindex === undefined) {
        throw new Error(`${ifname} in ${netns} is a ${inside.kind || 'device without a kind'}, not a veth`);
      }
      const host = getLink({ ifindex: inside.peerIfindex });
      if (host.kind !== 'veth' || host.peerIfindex !== inside.ifindex) {
        throw new Error(`host ifindex ${inside.peerIfindex} (${host.ifname}) is not the peer of ${ifname} in ${netns}`);
      }
      return { ifindex: host.ifindex, ifname: host.ifname, kind: host.kind };
    },

    attach(hostIfindex: number, key: AttachmentKey): Attached {
      const progs = pinnedPrograms(layout);
      try {
        const a = attachPod(layout, key, hostIfindex, progs);
        return { mode: a.mode, programIds: a.programIds };
      } finally {
        closePrograms(progs);
      }
    },

    detach(key: AttachmentKey): void {
      detachPod(layout, key);
    },

    isAttached(hostIfindex: number, key: AttachmentKey): boolean {
      return existsSync(layout.attachment(key.network, key.containerId, key.ifname)) && isPodAttached(hostIfindex);
    },

    listAttachments(network: string): AttachmentKey[] {
      return listPodAttachments(layout, network);
    },
  };
}
