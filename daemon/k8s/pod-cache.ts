// The node's pods, indexed by namespace/name and by uid. Every mutation returns the events it
// caused, so the caller decides when to deliver them (after the cache is consistent).
import { podKey, type PodInfo } from './pod-info';

export type PodEventType = 'added' | 'updated' | 'deleted';

export interface PodEvent {
  type: PodEventType;
  /** for 'deleted', the last state the cache knew */
  pod: PodInfo;
  /** for 'updated', the state it replaced */
  previous?: PodInfo;
}

export class PodCache {
  private readonly byKey = new Map<string, PodInfo>();
  private readonly byUid = new Map<string, PodInfo>();

  get size(): number {
    return this.byKey.size;
  }

  get(namespace: string, name: string): PodInfo | undefined {
    return this.byKey.get(podKey(namespace, name));
  }

  getByUid(uid: string): PodInfo | undefined {
    return this.byUid.get(uid);
  }

  list(): PodInfo[] {
    return [...this.byKey.values()];
  }

  upsert(pod: PodInfo): PodEvent[] {
    const key = podKey(pod.namespace, pod.name);
    const old = this.byKey.get(key);
    if (!old) {
      this.put(key, pod);
      return [{ type: 'added', pod }];
    }
    // Same name, new uid: the pod was deleted and re-created (StatefulSet) while we were not
    // looking; consumers keyed by uid must see the old one go.
    if (old.uid !== pod.uid) {
      this.byUid.delete(old.uid);
      this.put(key, pod);
      return [
        { type: 'deleted', pod: old },
        { type: 'added', pod },
      ];
    }
    if (old.resourceVersion !== '' && old.resourceVersion === pod.resourceVersion) return [];
    this.put(key, pod);
    return [{ type: 'updated', pod, previous: old }];
  }

  remove(namespace: string, name: string): PodEvent[] {
    const key = podKey(namespace, name);
    const old = this.byKey.get(key);
    if (!old) return [];
    this.byKey.delete(key);
    this.byUid.delete(old.uid);
    return [{ type: 'deleted', pod: old }];
  }

  /** Makes the cache exactly `pods` (a fresh LIST): what is missing from it is deleted. */
  replace(pods: readonly PodInfo[]): PodEvent[] {
    const keep = new Set(pods.map((p) => podKey(p.namespace, p.name)));
    const events: PodEvent[] = [];
    for (const old of [...this.byKey.values()]) {
      if (!keep.has(podKey(old.namespace, old.name))) events.push(...this.remove(old.namespace, old.name));
    }
    for (const pod of pods) events.push(...this.upsert(pod));
    return events;
  }

  clear(): void {
    this.byKey.clear();
    this.byUid.clear();
  }

  private put(key: string, pod: PodInfo): void {
    this.byKey.set(key, pod);
    this.byUid.set(pod.uid, pod);
  }
}
