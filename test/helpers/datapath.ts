// The datapath under test: our programs loaded, attached to the pods' host veths and to the
// remotes' data interfaces, and an event reader collecting every event. Everything is
// detached and closed through the scope.
import { setTimeout as sleep } from 'node:timers/promises';
import * as bpf from '../../bpf/index';
import type { Scope } from './scope';
import { createNode, type Pod, type PodStyle, type Remote } from './netns';

export interface ExpectedTuple {
  src: string;
  dst: string;
  protocol: number;
  srcPort?: number;
  dstPort?: number;
  icmpType?: number;
}

export class DatapathFixture {
  readonly events: bpf.DatapathEvent[] = [];
  readonly attachments: bpf.Attachment[] = [];
  lost = 0;
  private reader?: bpf.EventReader;

  private constructor(readonly obj: bpf.BpfObject) {}

  static start(scope: Scope, opts: bpf.LoadOptions = {}): DatapathFixture {
    const obj = bpf.BpfObject.load(undefined, opts);
    const f = new DatapathFixture(obj);
    scope.defer('close datapath', () => f.close());
    f.reader = new bpf.EventReader(obj.map(bpf.MapName.int_events), (view, _records, lost) => {
      f.lost += lost;
      while (view.next()) f.events.push(view.toObject());
    });
    return f;
  }

  /** The usual setup: a node with two pods, our programs on both. */
  static async twoPods(scope: Scope, opts: bpf.LoadOptions = {}, style: PodStyle = 'routed'): Promise<{ dp: DatapathFixture; a: Pod; b: Pod }> {
    const node = await createNode(scope);
    const a = await node.addPod({ style });
    const b = await node.addPod({ style });
    const dp = DatapathFixture.start(scope, opts);
    dp.attachPod(a);
    dp.attachPod(b);
    return { dp, a, b };
  }

  /** Our ingress and egress programs on a pod's host veth. */
  attachPod(pod: Pod, mode?: bpf.AttachMode): void {
    this.attachments.push(bpf.attach(this.obj.program(bpf.PROGRAMS.ingress), pod.hostIfindex, 'ingress', { mode }));
    this.attachments.push(bpf.attach(this.obj.program(bpf.PROGRAMS.egress), pod.hostIfindex, 'egress', { mode }));
  }

  /** The data-interface programs (tunnel-aware) on a remote's data interface. */
  attachDataInterface(remote: Remote, mode?: bpf.AttachMode): void {
    this.attachments.push(bpf.attach(this.obj.program(bpf.PROGRAMS.ingressNic), remote.dataIfindex, 'ingress', { mode }));
    this.attachments.push(bpf.attach(this.obj.program(bpf.PROGRAMS.egressNic), remote.dataIfindex, 'egress', { mode }));
  }

  counters(): Record<bpf.CounterName, bigint> {
    return bpf.readCounters(this.obj.map(bpf.MapName.int_counters));
  }

  /** Events whose post-NAT tuple is exactly t (ports only compared when given). */
  matching(t: ExpectedTuple): bpf.DatapathEvent[] {
    return this.events.filter((e) => {
      const p = e.postNat;
      return p.src === t.src && p.dst === t.dst && p.protocol === t.protocol &&
        (t.srcPort === undefined || p.srcPort === t.srcPort) && (t.dstPort === undefined || p.dstPort === t.dstPort) &&
        (t.icmpType === undefined || p.icmpType === t.icmpType);
    });
  }

  /** Waits until at least n events match t (or the timeout), then returns them. */
  async waitFor(t: ExpectedTuple, n = 1, timeoutMs = 3000): Promise<bpf.DatapathEvent[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.matching(t).length < n && Date.now() < deadline) await sleep(10);
    return this.matching(t);
  }

  /** Hop latency bucket of an event at the default quantum (2^16 ns). */
  static bucket(e: bpf.DatapathEvent): bigint {
    return (e.egressTs - e.ingressTs) / 65536n;
  }

  /** Lets in-flight events arrive (the reader flushes every 2 ms). */
  settle(ms = 150): Promise<void> {
    return sleep(ms).then(() => undefined);
  }

  close(): void {
    this.reader?.close();
    this.reader = undefined;
    for (const a of this.attachments.splice(0)) bpf.detach(a);
    this.obj.close();
  }
}
