// Facts about the node's own interfaces, read without shelling out: the interface of the IPv4
// default route (/proc/net/route), and an interface's IPv4 address (for the switch id).
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';

/** Name of the interface of the IPv4 default route with the lowest metric, if any. */
export function defaultRouteInterface(routeTable = '/proc/net/route'): string | undefined {
  let text: string;
  try {
    text = readFileSync(routeTable, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined; // a kernel without IPv4
    throw e;
  }
  let best: { iface: string; metric: number } | undefined;
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const [iface, destination, , flags, , , metric, mask] = f;
    const up = (parseInt(flags, 16) & 0x1) !== 0;
    if (!up || destination !== '00000000' || mask !== '00000000') continue;
    const m = Number(metric);
    if (!best || m < best.metric) best = { iface, metric: m };
  }
  return best?.iface;
}

/** The first IPv4 address of an interface. */
export function interfaceIpv4(ifname: string): string | undefined {
  return networkInterfaces()[ifname]?.find((a) => a.family === 'IPv4' && !a.internal)?.address;
}

/** Every address of an interface, without prefix lengths. */
export function interfaceAddresses(ifname: string): string[] {
  return (networkInterfaces()[ifname] ?? []).map((a) => a.address);
}

/** Dotted IPv4 to the u32 the reference uses as switch id (big-endian). */
export function ipv4ToU32(ip: string): number {
  const p = ip.split('.').map(Number);
  return ((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]) >>> 0;
}
