// What the API answers, built from the agent's state at request time. Kubernetes metadata is
// joined in here (not stored with the attachments), so a pod deleted in the API loses its labels
// and owner at once, and a restarted daemon gets them back as soon as its watch has listed.
import type { AttachmentRecord } from '../agent/attachments';
import { interfaceAddresses } from '../agent/node-interfaces';
import type { PodInfo, PodOwner } from '../k8s/pod-watch';

/** What the views need of the agent (a narrow face, so they read clearly and test easily). */
export interface ViewSource {
  attachments(): AttachmentRecord[];
  /** the pod as the Kubernetes API has it, when there is a pod watch */
  pod(namespace: string, name: string): PodInfo | undefined;
  dataInterfaces: readonly { ifname: string; ifindex: number }[];
  switchId: number;
}

export interface AttachmentView extends AttachmentRecord {
  /** from the Kubernetes API; null when the pod is not (or no longer) known there */
  labels: Record<string, string> | null;
  owner: PodOwner | null;
}

/** The API's pod for a record: same namespace/name, and the same uid when the CNI gave one. */
function apiPodOf(src: ViewSource, r: AttachmentRecord): PodInfo | undefined {
  if (!r.podNamespace || !r.podName) return undefined;
  const pod = src.pod(r.podNamespace, r.podName);
  if (!pod || (r.podUid && r.podUid !== pod.uid)) return undefined; // a re-created pod of the same name
  return pod;
}

export function attachmentView(src: ViewSource, r: AttachmentRecord): AttachmentView {
  const pod = apiPodOf(src, r);
  return {
    ...r,
    podUid: r.podUid ?? pod?.uid,
    ips: r.ips.length > 0 ? r.ips : [...(pod?.podIPs ?? [])],
    labels: pod ? { ...pod.labels } : null,
    owner: pod?.owner ? { ...pod.owner } : null,
  };
}

export function attachmentsView(src: ViewSource): { attachments: AttachmentView[] } {
  return { attachments: src.attachments().map((r) => attachmentView(src, r)) };
}

export interface PodView {
  namespace: string;
  name: string;
  uid: string | null;
  labels: Record<string, string> | null;
  owner: PodOwner | null;
  podIPs: string[];
  phase: string | null;
  attachments: AttachmentView[];
}

/** One pod: known from its attachments, from the API, or both; undefined when neither knows it. */
export function podView(src: ViewSource, namespace: string, name: string): PodView | undefined {
  const atts = src.attachments().filter((r) => r.podNamespace === namespace && r.podName === name);
  const pod = src.pod(namespace, name);
  if (atts.length === 0 && !pod) return undefined;
  const views = atts.map((r) => attachmentView(src, r));
  return {
    namespace,
    name,
    uid: pod?.uid ?? views.find((v) => v.podUid)?.podUid ?? null,
    labels: pod ? { ...pod.labels } : null,
    owner: pod?.owner ? { ...pod.owner } : null,
    podIPs: pod ? [...pod.podIPs] : [...new Set(atts.flatMap((r) => r.ips))],
    phase: pod?.phase || null,
    attachments: views,
  };
}

export interface TopologyLink {
  id: number;
  name: string;
  'ip-addresses': string[];
  'is-node-iface': boolean;
  pod?: { namespace: string; name: string; uid: string | null } | null;
}

/** The reference's topology: every port of this "switch" (ifindex), with the pod behind pod ports. */
export function topologyView(src: ViewSource): { 'switch-id': number; links: TopologyLink[] } {
  const links: TopologyLink[] = src.dataInterfaces.map((d) => ({
    id: d.ifindex, name: d.ifname, 'ip-addresses': interfaceAddresses(d.ifname), 'is-node-iface': true,
  }));
  for (const r of src.attachments()) {
    if (r.hostIfindex === undefined) continue;
    const v = attachmentView(src, r);
    links.push({
      id: r.hostIfindex, name: r.hostIfname ?? '', 'ip-addresses': v.ips, 'is-node-iface': false,
      pod: r.podNamespace && r.podName ? { namespace: r.podNamespace, name: r.podName, uid: v.podUid ?? null } : null,
    });
  }
  return { 'switch-id': src.switchId, links };
}
