// The typed face of the netlink module (rtnetlink): interfaces, qdiscs and tc filters, and the
// route / neighbour / bridge FDB lookups that find a pod's host veth. Errors are NetlinkError,
// naming the operation and the errno (ENODEV: no such interface).
import { NativeError, loadModule, nativeCall, type LoadedModule } from '../native/load';

export type Direction = 'ingress' | 'egress';

/** An error of a netlink operation: names the operation and the errno. */
export class NetlinkError extends NativeError {}

export interface LinkDetails {
  ifindex: number; ifname: string; kind: string; up: boolean; peerIfindex?: number; peerNetnsId?: number;
  master?: number; mac?: string;
}

export interface Qdisc { kind: string; handle: number; parent: number }

export interface TcFilter {
  priority: number; protocol: number; handle: number; kind: string; progId?: number; name?: string; directAction?: boolean;
}

interface NetlinkModule {
  linkGet(spec: { ifindex: number } | { ifname: string }, netns?: string): LinkDetails;
  qdiscs(ifindex: number): Qdisc[];
  tcFilters(ifindex: number, direction: Direction): TcFilter[];
  routeOutputIfindex(ip: string): number | undefined;
  neighbourMac(ifindex: number, ip: string): string | undefined;
  neighbourProbe(ifindex: number, ip: string): void;
  bridgePortOf(bridgeIfindex: number, mac: string): number | undefined;
}

const MODULE_FILE = 'int_host_reporter_netlink.node';
let loaded: LoadedModule<NetlinkModule> | undefined;

function netlink(): NetlinkModule {
  loaded ??= loadModule<NetlinkModule>(MODULE_FILE);
  return loaded.module;
}

/** Where the module was loaded from (the plugin's preflight checks it is its own build dir). */
export function netlinkModulePath(): string {
  netlink();
  return loaded!.path;
}

function call<T>(fn: (n: NetlinkModule) => T): T {
  return nativeCall(NetlinkError, () => fn(netlink()));
}

/** A network interface by index or name, optionally inside another network namespace (a path). ENODEV when there is none. */
export function getLink(spec: { ifindex: number } | { ifname: string }, netnsPath?: string): LinkDetails {
  return call((n) => n.linkGet(spec, netnsPath));
}

/** The qdiscs of an interface. */
export function qdiscs(ifindex: number): Qdisc[] {
  return call((n) => n.qdiscs(ifindex));
}

/** The classic tc filters of one clsact hook of an interface; [] without clsact. */
export function tcFilters(ifindex: number, direction: Direction): TcFilter[] {
  return call((n) => n.tcFilters(ifindex, direction));
}

/** The output interface of this host's route to an IPv4/IPv6 address (RTA_OIF); undefined when unroutable. */
export function routeOutputIfindex(ip: string): number | undefined {
  return call((n) => n.routeOutputIfindex(ip));
}

/** The MAC of the resolved neighbour entry of `ip` on the interface; undefined when there is none. */
export function neighbourMac(ifindex: number, ip: string): string | undefined {
  return call((n) => n.neighbourMac(ifindex, ip));
}

/** Asks the kernel to resolve `ip` on the interface (ARP / neighbour solicitation); asynchronous. */
export function neighbourProbe(ifindex: number, ip: string): void {
  call((n) => n.neighbourProbe(ifindex, ip));
}

/** The port of the bridge whose forwarding database holds the MAC; undefined when none does. */
export function bridgePortOf(bridgeIfindex: number, mac: string): number | undefined {
  return call((n) => n.bridgePortOf(bridgeIfindex, mac));
}
