// Pieces shared by the benchmarks: the counting UDP sink process, CPU time of a pid, and the
// datapath loaded and attached without a test fixture's per-event decoding.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as bpf from '../../bpf/index';
import { sleep } from '../helpers/exec';
import type { Pod } from '../helpers/netns';
import type { Scope, TrackedProcess } from '../helpers/scope';

const SINK = fileURLToPath(new URL('./udp-sink.mjs', import.meta.url));

export class UdpSink {
  private constructor(readonly proc: TrackedProcess, readonly port: number) {}

  static async start(scope: Scope): Promise<UdpSink> {
    const proc = scope.spawn(null, [process.execPath, SINK, '--addr', '127.0.0.1']);
    const line = await proc.waitForLine((l) => l.includes('"event":"ready"'), 10_000, 'udp sink ready');
    return new UdpSink(proc, Number((JSON.parse(line) as { port: number }).port));
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /**
   * Datagrams that reached the sink's socket so far: those the sink process read, plus those
   * the kernel dropped from its receive buffer because the sink (one datagram per callback)
   * could not keep up. What the collector host got is the first plus the second.
   */
  async count(): Promise<number> {
    return (await this.received()) + this.socketDrops();
  }

  /** The kernel's drop count of the sink's socket (last column of /proc/net/udp). */
  socketDrops(): number {
    const local = `0100007F:${this.port.toString(16).toUpperCase().padStart(4, '0')}`;
    for (const line of readFileSync('/proc/net/udp', 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[1] === local) return Number(f[f.length - 1]);
    }
    return 0;
  }

  /** Datagrams the sink process read so far. */
  async received(): Promise<number> {
    const from = this.proc.lines.length;
    process.kill(this.proc.pid, 'SIGUSR2');
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      for (let i = from; i < this.proc.lines.length; i++) {
        const l = this.proc.lines[i];
        if (l.includes('"event":"count"')) return Number((JSON.parse(l) as { packets: number }).packets);
      }
      await sleep(5);
    }
    throw new Error('udp sink did not answer');
  }
}

/** utime + stime of a process in seconds (from /proc/<pid>/stat). */
export function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): utime is field 14, stime field 15
  const ticks = Number(fields[11]) + Number(fields[12]);
  return ticks / 100; // USER_HZ is 100 on Linux
}

/**
 * Mean ns per run and run count of each program while `load` runs, from the kernel's run-time
 * statistics (switched on for the measurement only).
 */
export async function runTimePerRun(progs: readonly bpf.Program[], load: () => Promise<unknown>): Promise<{ ns: number; runs: number }[]> {
  const stats = bpf.enableRunTimeStats();
  try {
    const before = progs.map((p) => p.info());
    await load();
    return progs.map((p, i) => {
      const after = p.info();
      const runs = Number(after.runCount - before[i].runCount);
      return { ns: Number(after.runTimeNs - before[i].runTimeNs) / Math.max(runs, 1), runs };
    });
  } finally {
    stats.close();
  }
}

/** Our programs loaded once; attachable to and detachable from pod veths any number of times. */
export class BenchDatapath {
  private attachments: bpf.Attachment[] = [];
  private reader?: bpf.EventReader;
  readerRecords = 0;
  readerLost = 0;

  private constructor(readonly obj: bpf.BpfObject) {}

  static load(scope: Scope, opts: bpf.LoadOptions = {}, objectPath?: string): BenchDatapath {
    const d = new BenchDatapath(bpf.BpfObject.load(objectPath, opts));
    scope.defer('close bench datapath', () => d.close());
    return d;
  }

  /** A reader that only counts (or hands batches to onBatch). */
  startReader(onBatch?: (view: bpf.EventView, records: number, lost: number) => void, opts?: bpf.ReaderOptions): void {
    this.reader = new bpf.EventReader(this.obj.map(bpf.MapName.int_events), (view, records, lost) => {
      this.readerRecords += records;
      this.readerLost += lost;
      onBatch?.(view, records, lost);
    }, opts);
  }

  readerStats() {
    return this.reader?.stats();
  }

  attachPods(pods: readonly Pod[]): void {
    for (const p of pods) {
      this.attachments.push(bpf.attach(this.obj.program(bpf.PROGRAMS.ingress), p.hostIfindex, 'ingress'));
      this.attachments.push(bpf.attach(this.obj.program(bpf.PROGRAMS.egress), p.hostIfindex, 'egress'));
    }
  }

  detachAll(): void {
    for (const a of this.attachments.splice(0)) bpf.detach(a);
  }

  get attached(): boolean {
    return this.attachments.length > 0;
  }

  counters(): Record<bpf.CounterName, bigint> {
    return bpf.readCounters(this.obj.map(bpf.MapName.int_counters));
  }

  /** Run time and run count of one of our programs (needs enableRunTimeStats while measuring). */
  progStats(name: string): { ns: number; runs: number } {
    const i = this.obj.program(name).info();
    return { ns: Number(i.runTimeNs), runs: Number(i.runCount) };
  }

  close(): void {
    this.reader?.close();
    this.reader = undefined;
    this.detachAll();
    this.obj.close();
  }
}
