// The real datapath: host-veth discovery in the pod netns and TCX/tc attach through bpf/.
// main.ts loads this module lazily, only when a verb needs the datapath.
import type { AttachmentKey, Attached, DatapathOptions, HostVeth, PluginDatapath } from './datapath';

// TODO(bpf owner): implement on top of '../bpf' (peer ifindex via IFLA_LINK inside the netns,
// TCX links placed before other programs, clsact + cls_bpf fallback, pins under
// PinLayout.attachment(network, containerId, ifname)). Until then every method throws, which
// ADD turns into a fail-open spool record and DEL into a spooled cleanup.
export function createBpfDatapath(options: DatapathOptions): PluginDatapath {
  const notYet = (what: string): never => {
    throw new Error(`int-host-reporter datapath is not implemented yet (${what}, bpffs ${options.bpffsRoot})`);
  };
  return {
    findHostVeth: (_netns: string, _ifname: string): HostVeth => notYet('findHostVeth'),
    attach: (_hostIfindex: number, _key: AttachmentKey): Attached => notYet('attach'),
    detach: (_key: AttachmentKey): void => notYet('detach'),
    isAttached: (_hostIfindex: number, _key: AttachmentKey): boolean => notYet('isAttached'),
    listAttachments: (_network: string): AttachmentKey[] => notYet('listAttachments'),
  };
}
