// Many drops carry no reason (SKB_DROP_REASON_NOT_SPECIFIED) but their place says what happened:
// ip_error frees a packet that had no route. The kfree_skb tracepoint gives that place as a
// kernel address; this names it through /proc/kallsyms, read once on first need.
import { readFileSync } from 'node:fs';
import { IntDropCode } from './drop-reasons';

/** Kernel functions whose unexplained drops have a known meaning. */
export const DROP_LOCATION_TO_INT: Readonly<Record<string, number>> = Object.freeze({
  ip_error: IntDropCode.OUTER_IP_MISS,        // IPv4: unreachable/blackhole/no route
  ip6_pkt_drop: IntDropCode.OUTER_IP_MISS,    // IPv6: unreachable and blackhole routes
  ip6_pkt_discard: IntDropCode.OUTER_IP_MISS,
  ip6_pkt_discard_out: IntDropCode.OUTER_IP_MISS,
  ip6_pkt_prohibit: IntDropCode.ACL_DROP,     // IPv6: prohibit routes (administratively denied)
  ip6_pkt_prohibit_out: IntDropCode.ACL_DROP,
});

export class DropLocations {
  private addrs?: BigUint64Array;
  private codes?: Uint8Array;
  private readonly cache = new Map<bigint, number>();

  constructor(private readonly kallsyms = '/proc/kallsyms', private readonly table = DROP_LOCATION_TO_INT) {}

  /** The INT drop code of a drop at this kernel address; 0 (unknown) when it has no meaning here. */
  codeFor(address: bigint): number {
    const hit = this.cache.get(address);
    if (hit !== undefined) return hit;
    this.load();
    const a = this.addrs!;
    // The function containing the address: the last symbol starting at or below it.
    let lo = 0;
    let hi = a.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (a[mid] <= address) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    const code = found >= 0 ? this.codes![found] : 0;
    if (this.cache.size < 4096) this.cache.set(address, code);
    return code;
  }

  private load(): void {
    if (this.addrs) return;
    let text = '';
    try {
      text = readFileSync(this.kallsyms, 'utf8');
    } catch {
      /* no kallsyms: every location stays unknown */
    }
    const entries: { addr: bigint; code: number }[] = [];
    for (const line of text.split('\n')) {
      const sp1 = line.indexOf(' ');
      const type = line[sp1 + 1];
      if (type !== 't' && type !== 'T') continue;
      const rest = line.slice(sp1 + 3);
      const name = rest.split(/[\s\t]/, 1)[0];
      const addr = BigInt(`0x${line.slice(0, sp1)}`);
      if (addr === 0n) continue; // addresses hidden (kptr_restrict): nothing to learn
      entries.push({ addr, code: this.table[name] ?? 0 });
    }
    entries.sort((x, y) => (x.addr < y.addr ? -1 : x.addr > y.addr ? 1 : 0));
    this.addrs = BigUint64Array.from(entries.map((e) => e.addr));
    this.codes = Uint8Array.from(entries.map((e) => e.code));
  }
}
