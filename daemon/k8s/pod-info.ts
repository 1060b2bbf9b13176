// The slice of a Pod object the daemon needs, taken from either a typed V1Pod (LIST through
// CoreV1Api, dates already parsed) or the raw JSON of a watch event (dates as strings): every
// field is read defensively, so both shapes give the same PodInfo.

export interface PodOwner {
  kind: string;
  name: string;
}

export interface PodDeletion {
  /** metadata.deletionTimestamp, ISO 8601 */
  at: string;
  gracePeriodSeconds: number | null;
}

export interface PodInfo {
  namespace: string;
  name: string;
  uid: string;
  labels: Readonly<Record<string, string>>;
  /** the first ownerReference with controller=true (ReplicaSet, DaemonSet, Job, ...), else null */
  owner: PodOwner | null;
  /** status.podIPs (status.podIP when the list is absent), in the API server's order */
  podIPs: readonly string[];
  hostNetwork: boolean;
  /** status.phase, '' before the kubelet reports one */
  phase: string;
  nodeName: string;
  /** set once the pod is terminating */
  deletion: PodDeletion | null;
  resourceVersion: string;
}

type Obj = Record<string, unknown>;

function asObj(v: unknown): Obj | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : undefined;
}

function asString(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

/** A Date (typed client) or an RFC 3339 string (raw JSON), normalised to one ISO form. */
function asIsoTime(v: unknown): string | null {
  const date = v instanceof Date ? v : typeof v === 'string' ? new Date(v) : null;
  if (!date) return null;
  return Number.isNaN(date.getTime()) ? String(v) : date.toISOString();
}

export function podKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/** null when the object lacks what identifies a pod (namespace, name, uid). */
export function toPodInfo(raw: unknown): PodInfo | null {
  const pod = asObj(raw);
  const meta = asObj(pod?.metadata);
  if (!pod || !meta) return null;
  const namespace = asString(meta.namespace);
  const name = asString(meta.name);
  const uid = asString(meta.uid);
  if (!namespace || !name || !uid) return null;
  const spec = asObj(pod.spec) ?? {};
  const status = asObj(pod.status) ?? {};

  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(asObj(meta.labels) ?? {})) if (typeof v === 'string') labels[k] = v;

  let owner: PodOwner | null = null;
  for (const ref of Array.isArray(meta.ownerReferences) ? meta.ownerReferences : []) {
    const r = asObj(ref);
    if (r?.controller === true) {
      owner = { kind: asString(r.kind), name: asString(r.name) };
      break;
    }
  }

  const podIPs: string[] = [];
  for (const entry of Array.isArray(status.podIPs) ? status.podIPs : []) {
    const ip = asString(asObj(entry)?.ip);
    if (ip) podIPs.push(ip);
  }
  if (podIPs.length === 0 && asString(status.podIP)) podIPs.push(asString(status.podIP));

  const deletedAt = asIsoTime(meta.deletionTimestamp);
  const grace = meta.deletionGracePeriodSeconds;
  return Object.freeze({
    namespace,
    name,
    uid,
    labels: Object.freeze(labels),
    owner: owner && Object.freeze(owner),
    podIPs: Object.freeze(podIPs),
    hostNetwork: spec.hostNetwork === true,
    phase: asString(status.phase),
    nodeName: asString(spec.nodeName),
    deletion: deletedAt ? Object.freeze({ at: deletedAt, gracePeriodSeconds: typeof grace === 'number' ? grace : null }) : null,
    resourceVersion: asString(meta.resourceVersion),
  });
}
