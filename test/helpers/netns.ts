// Network namespaces and a "node" topology for tests.
//
// The root namespace plays the Kubernetes node. Pods are network namespaces joined to it by
// a veth pair: `eth0` inside the pod, the host side in the root namespace (where our TC
// programs attach), either routed (Calico/ptp style: no address on the host veth, /32 and
// /128 host routes, link-local gateways 169.254.1.1 and fe80::1) or bridged (bridge plugin
// style: host veths enslaved to a bridge that holds the gateway addresses). A "remote" is
// a namespace behind another veth pair whose root-side end is the node's data interface,
// optionally with a VXLAN overlay over it.
//
// Everything is registered on a Scope and removed in reverse order when it closes.
import ipaddr from 'ipaddr.js';
import { existsSync, readdirSync } from 'node:fs';
import { ip, ipJson, runSync, CommandError } from './exec';
import { Scope } from './scope';
import { hasIpv6ForceForwarding, holdGlobalForwarding, writeSysctl } from './sysctl';

export { Scope, withScope, runPrefix, uniqueName, type TrackedProcess } from './scope';
export { run, runIn, ip, ipJson, sleep, CommandError } from './exec';
export { readSysctl, writeSysctl, forwardingSnapshot, hasIpv6ForceForwarding } from './sysctl';

// ---------------------------------------------------------------------------------------------
// Namespaces and links

/** Create a network namespace `name` (default: a fresh unique one), lo up, IPv6 DAD off. */
export async function createNetns(scope: Scope, name = scope.name('ns', 64)): Promise<string> {
  if (!name.startsWith(scope.prefix)) throw new Error(`netns ${name} lacks the run prefix ${scope.prefix}`);
  await ip(null, ['netns', 'add', name]);
  scope.defer(`netns ${name}`, () => deleteNetnsSync(name));
  // Interfaces created in or moved into this namespace inherit `default`; DAD off so
  // addresses are usable at once.
  await writeSysctl(name, 'net.ipv6.conf.all.accept_dad', 0);
  await writeSysctl(name, 'net.ipv6.conf.default.accept_dad', 0);
  await ip(name, ['link', 'set', 'lo', 'up']);
  return name;
}

function deleteNetnsSync(name: string): void {
  if (!existsSync(`/run/netns/${name}`)) return;
  runSync(['ip', 'netns', 'delete', name]);
}

/** Register removal of a root-namespace link we created (no-op if already gone). */
export function deferLinkDelete(scope: Scope, ifname: string): void {
  scope.defer(`link ${ifname}`, () => {
    if (!existsSync(`/sys/class/net/${ifname}`)) return;
    try {
      runSync(['ip', 'link', 'del', 'dev', ifname]);
    } catch (err) {
      if (existsSync(`/sys/class/net/${ifname}`)) throw err;
    }
  });
}

interface IpLink {
  ifindex: number;
  ifname: string;
  address?: string;
  mtu?: number;
}

export async function linkInfo(netns: string | null, ifname: string): Promise<IpLink> {
  const [l] = await ipJson<IpLink>(netns, ['link', 'show', 'dev', ifname]);
  if (!l) throw new Error(`no link ${ifname} in ${netns ?? 'root'} namespace`);
  return l;
}

/** Names of harness namespaces and root links currently present with the given prefix. */
export function leftovers(prefix: string): { netns: string[]; links: string[] } {
  const ls = (d: string) => {
    try {
      return readdirSync(d);
    } catch {
      return [];
    }
  };
  return {
    netns: ls('/run/netns').filter((n) => n.startsWith(prefix)),
    links: ls('/sys/class/net').filter((n) => n.startsWith(prefix)),
  };
}

// ---------------------------------------------------------------------------------------------
// Address plan: 10.X.Y.0/24 and fd00:X:Y::/64 (X, Y printed in hex), chosen so that
// they overlap no route present on the machine (any table) and nothing handed out before.

export interface Subnet {
  /** e.g. '10.123.45' — append '.N' for a host. */
  v4Base: string;
  /** e.g. 'fd00:7b:2d' — append '::N' (hex) for a host. */
  v6Base: string;
  v4Cidr: string;
  v6Cidr: string;
  v4(host: number): string;
  v6(host: number): string;
}

const allocated = new Set<string>();

async function routePrefixes(): Promise<Array<[ipaddr.IPv4 | ipaddr.IPv6, number]>> {
  const out: Array<[ipaddr.IPv4 | ipaddr.IPv6, number]> = [];
  for (const fam of ['-4', '-6']) {
    const routes = await ipJson<{ dst?: string }>(null, [fam, 'route', 'show', 'table', 'all']);
    for (const r of routes) {
      if (!r.dst || r.dst === 'default') continue;
      try {
        const [a, bits] = r.dst.includes('/') ? ipaddr.parseCIDR(r.dst) : [ipaddr.parse(r.dst), -1];
        const b = bits >= 0 ? bits : a.kind() === 'ipv4' ? 32 : 128;
        if (b === 0) continue;
        out.push([a, b]);
      } catch {
        /* multicast names and such */
      }
    }
  }
  return out;
}

function overlaps(a: [ipaddr.IPv4 | ipaddr.IPv6, number], b: [ipaddr.IPv4 | ipaddr.IPv6, number]): boolean {
  if (a[0].kind() !== b[0].kind()) return false;
  return a[0].match(b[0], b[1]) || b[0].match(a[0], a[1]);
}

/** A fresh /24 + /64 pair unused on this machine. */
export async function allocateSubnet(): Promise<Subnet> {
  const routes = await routePrefixes();
  for (let i = 0; i < 500; i++) {
    const x = 100 + Math.floor(Math.random() * 150);
    const y = Math.floor(Math.random() * 256);
    const key = `${x}.${y}`;
    if (allocated.has(key)) continue;
    const v4Cidr = `10.${x}.${y}.0/24`;
    const v6Base = `fd00:${x.toString(16)}:${y.toString(16)}`;
    const v6Cidr = `${v6Base}::/64`;
    const mine4 = ipaddr.parseCIDR(v4Cidr);
    const mine6 = ipaddr.parseCIDR(v6Cidr);
    if (routes.some((r) => overlaps(r, mine4) || overlaps(r, mine6))) continue;
    allocated.add(key);
    const v4Base = `10.${x}.${y}`;
    return {
      v4Base,
      v6Base,
      v4Cidr,
      v6Cidr,
      v4: (h) => `${v4Base}.${h}`,
      v6: (h) => `${v6Base}::${h.toString(16)}`,
    };
  }
  throw new Error('no free 10.X.Y.0/24 subnet found');
}

// ---------------------------------------------------------------------------------------------
// The node topology

export type PodStyle = 'routed' | 'bridged';

/** Anything traffic can be sent from/to: a namespace (null = root) with addresses. */
export interface Endpoint {
  name: string;
  netns: string | null;
  ipv4: string;
  ipv6: string;
}

export interface Pod extends Endpoint {
  netns: string;
  netnsPath: string;
  style: PodStyle;
  podIfname: 'eth0';
  podIfindex: number;
  podMac: string;
  hostIfname: string;
  /** ifindex of the host-side veth in the root namespace. */
  hostIfindex: number;
  hostMac: string;
  gateway4: string;
  gateway6: string;
}

export interface VxlanInfo {
  vni: number;
  port: number;
  /** vxlan device in the root namespace */
  ifname: string;
  ifindex: number;
  /** root-side overlay addresses */
  rootIpv4: string;
  rootIpv6: string;
  /** remote-side vxlan device name and overlay addresses */
  remoteIfname: string;
  ipv4: string;
  ipv6: string;
  v4Cidr: string;
  v6Cidr: string;
}

export interface Remote extends Endpoint {
  netns: string;
  netnsPath: string;
  /** interface inside the remote namespace */
  ifname: 'eth0';
  ifindex: number;
  mac: string;
  /** the node's data interface: root-side end of the veth pair to the remote */
  dataIfname: string;
  dataIfindex: number;
  dataMac: string;
  dataIpv4: string;
  dataIpv6: string;
  v4Cidr: string;
  v6Cidr: string;
  vxlan?: VxlanInfo;
}

export interface BridgeInfo {
  ifname: string;
  ifindex: number;
  mac: string;
  ipv4: string;
  ipv6: string;
  subnet: Subnet;
}

export interface NodeOptions {
  /**
   * 'interface' (default): forwarding is enabled only on the harness's own root-side
   * interfaces (IPv4 conf.X.forwarding, IPv6 conf.X.force_forwarding), nothing global changes;
   * falls back to 'global' for IPv6 on kernels without force_forwarding.
   * 'global': net.ipv4.ip_forward / net.ipv6.conf.all.forwarding are set, and restored on close.
   */
  forwarding?: 'interface' | 'global';
}

export interface PodOptions {
  style?: PodStyle;
  /** label used in the namespace name (letters/digits, short) */
  label?: string;
}

export interface RemoteOptions {
  label?: string;
  /** add a VXLAN overlay over the data interface (true or a VNI) */
  vxlan?: boolean | { vni?: number; port?: number };
}

export const ROUTED_GW4 = '169.254.1.1';
export const ROUTED_GW6 = 'fe80::1';
export const VXLAN_PORT = 4789;

export class NodeHost {
  readonly pods: Pod[] = [];
  readonly remotes: Remote[] = [];
  bridge?: BridgeInfo;
  private routedSubnet?: Subnet;
  private routedNext = 2;
  private bridgedNext = 2;
  private globalHeld = new Set<4 | 6>();

  private constructor(
    readonly scope: Scope,
    readonly forwarding: 'interface' | 'global',
  ) {}

  static async create(scope: Scope, opts: NodeOptions = {}): Promise<NodeHost> {
    const node = new NodeHost(scope, opts.forwarding ?? 'interface');
    if (node.forwarding === 'global') {
      node.holdGlobal(4);
      node.holdGlobal(6);
    }
    return node;
  }

  /** Families for which this node turned on root-namespace global forwarding (restored on close). */
  get globalForwarding(): Array<4 | 6> {
    return [...this.globalHeld].sort();
  }

  private holdGlobal(family: 4 | 6): void {
    if (this.globalHeld.has(family)) return;
    holdGlobalForwarding(this.scope, family);
    this.globalHeld.add(family);
  }

  /** Root-side interface settings: DAD off, and forwarding of what arrives on it. */
  private async prepareRootIf(ifname: string): Promise<void> {
    await writeSysctl(null, `net.ipv6.conf.${ifname}.accept_dad`, 0);
    if (this.forwarding === 'interface') {
      await writeSysctl(null, `net.ipv4.conf.${ifname}.forwarding`, 1);
      if (hasIpv6ForceForwarding()) await writeSysctl(null, `net.ipv6.conf.${ifname}.force_forwarding`, 1);
      else this.holdGlobal(6);
    }
  }

  private async ensureBridge(): Promise<BridgeInfo> {
    if (this.bridge) return this.bridge;
    const subnet = await allocateSubnet();
    const ifname = this.scope.name('br');
    await ip(null, ['link', 'add', ifname, 'type', 'bridge']);
    deferLinkDelete(this.scope, ifname);
    await this.prepareRootIf(ifname);
    await ip(null, ['addr', 'add', `${subnet.v4(1)}/24`, 'dev', ifname]);
    await ip(null, ['-6', 'addr', 'add', `${subnet.v6(1)}/64`, 'dev', ifname, 'nodad']);
    await ip(null, ['link', 'set', ifname, 'up']);
    const l = await linkInfo(null, ifname);
    this.bridge = { ifname, ifindex: l.ifindex, mac: l.address ?? '', ipv4: subnet.v4(1), ipv6: subnet.v6(1), subnet };
    return this.bridge;
  }

  /** A pod: its own namespace, eth0 inside, host veth in the root namespace. */
  async addPod(opts: PodOptions = {}): Promise<Pod> {
    const style = opts.style ?? 'routed';
    const netns = await createNetns(this.scope, this.scope.name(opts.label ?? 'pod', 64));
    const hostIfname = this.scope.name('h');
    await ip(null, ['link', 'add', hostIfname, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
    deferLinkDelete(this.scope, hostIfname);
    await this.prepareRootIf(hostIfname);

    let ipv4: string;
    let ipv6: string;
    let gateway4: string;
    let gateway6: string;
    if (style === 'routed') {
      if (!this.routedSubnet) this.routedSubnet = await allocateSubnet();
      const n = this.routedNext++;
      if (n > 254) throw new Error('routed pod subnet exhausted');
      ipv4 = this.routedSubnet.v4(n);
      ipv6 = this.routedSubnet.v6(n);
      gateway4 = ROUTED_GW4;
      gateway6 = ROUTED_GW6;
      await writeSysctl(null, `net.ipv4.conf.${hostIfname}.proxy_arp`, 1);
      // Answer proxy ARP at once (the kernel otherwise delays it by up to 0.8 s).
      await writeSysctl(null, `net.ipv4.neigh.${hostIfname}.proxy_delay`, 0);
      await ip(null, ['-6', 'addr', 'add', `${ROUTED_GW6}/64`, 'dev', hostIfname, 'nodad']);
      await ip(null, ['link', 'set', hostIfname, 'up']);
      await ip(netns, ['addr', 'add', `${ipv4}/32`, 'dev', 'eth0']);
      await ip(netns, ['-6', 'addr', 'add', `${ipv6}/128`, 'dev', 'eth0', 'nodad']);
      await ip(netns, ['link', 'set', 'eth0', 'up']);
      await ip(netns, ['route', 'add', gateway4, 'dev', 'eth0', 'scope', 'link']);
      await ip(netns, ['route', 'add', 'default', 'via', gateway4, 'dev', 'eth0']);
      await ip(netns, ['-6', 'route', 'add', 'default', 'via', gateway6, 'dev', 'eth0']);
      await ip(null, ['route', 'add', `${ipv4}/32`, 'dev', hostIfname]);
      await ip(null, ['-6', 'route', 'add', `${ipv6}/128`, 'dev', hostIfname]);
    } else {
      const br = await this.ensureBridge();
      const n = this.bridgedNext++;
      if (n > 254) throw new Error('bridged pod subnet exhausted');
      ipv4 = br.subnet.v4(n);
      ipv6 = br.subnet.v6(n);
      gateway4 = br.ipv4;
      gateway6 = br.ipv6;
      await ip(null, ['link', 'set', hostIfname, 'master', br.ifname]);
      await ip(null, ['link', 'set', hostIfname, 'up']);
      await ip(netns, ['addr', 'add', `${ipv4}/24`, 'dev', 'eth0']);
      await ip(netns, ['-6', 'addr', 'add', `${ipv6}/64`, 'dev', 'eth0', 'nodad']);
      await ip(netns, ['link', 'set', 'eth0', 'up']);
      await ip(netns, ['route', 'add', 'default', 'via', gateway4, 'dev', 'eth0']);
      await ip(netns, ['-6', 'route', 'add', 'default', 'via', gateway6, 'dev', 'eth0']);
    }
    const host = await linkInfo(null, hostIfname);
    const inner = await linkInfo(netns, 'eth0');
    const pod: Pod = {
      name: netns,
      netns,
      netnsPath: `/run/netns/${netns}`,
      style,
      podIfname: 'eth0',
      podIfindex: inner.ifindex,
      podMac: inner.address ?? '',
      hostIfname,
      hostIfindex: host.ifindex,
      hostMac: host.address ?? '',
      ipv4,
      ipv6,
      gateway4,
      gateway6,
    };
    this.pods.push(pod);
    return pod;
  }

  /**
   * A remote host behind the node's data interface (a veth pair whose root-side end is the
   * data interface). The remote's default routes point back at the node, so it reaches
   * every pod. With `vxlan`, a VXLAN device on each side (UDP 4789 over the data link)
   * carries an overlay subnet; traffic from the remote's overlay address returns through it.
   */
  async addRemote(opts: RemoteOptions = {}): Promise<Remote> {
    const netns = await createNetns(this.scope, this.scope.name(opts.label ?? 'rem', 64));
    const dataIfname = this.scope.name('d');
    const link = await allocateSubnet();
    const mtu = opts.vxlan ? '1600' : '1500';
    await ip(null, ['link', 'add', dataIfname, 'mtu', mtu, 'type', 'veth', 'peer', 'name', 'eth0', 'mtu', mtu, 'netns', netns]);
    deferLinkDelete(this.scope, dataIfname);
    await this.prepareRootIf(dataIfname);
    await ip(null, ['addr', 'add', `${link.v4(1)}/24`, 'dev', dataIfname]);
    await ip(null, ['-6', 'addr', 'add', `${link.v6(1)}/64`, 'dev', dataIfname, 'nodad']);
    await ip(null, ['link', 'set', dataIfname, 'up']);
    await ip(netns, ['addr', 'add', `${link.v4(2)}/24`, 'dev', 'eth0']);
    await ip(netns, ['-6', 'addr', 'add', `${link.v6(2)}/64`, 'dev', 'eth0', 'nodad']);
    await ip(netns, ['link', 'set', 'eth0', 'up']);
    await ip(netns, ['route', 'add', 'default', 'via', link.v4(1), 'dev', 'eth0']);
    await ip(netns, ['-6', 'route', 'add', 'default', 'via', link.v6(1), 'dev', 'eth0']);

    let vxlan: VxlanInfo | undefined;
    if (opts.vxlan) {
      const overlay = await allocateSubnet();
      const wanted = typeof opts.vxlan === 'object' ? opts.vxlan.vni : undefined;
      const port = (typeof opts.vxlan === 'object' && opts.vxlan.port) || VXLAN_PORT;
      const tunnelArgs = (local: string, remote: string, dev: string) =>
        ['type', 'vxlan', 'id', String(vni), 'local', local, 'remote', remote, 'dstport', String(port), 'dev', dev];
      const ifname = this.scope.name('vx');
      let vni = wanted ?? 0;
      for (let attempt = 0; ; attempt++) {
        if (wanted === undefined) vni = 100_000 + Math.floor(Math.random() * 16_000_000);
        try {
          await ip(null, ['link', 'add', ifname, 'mtu', '1500', ...tunnelArgs(link.v4(1), link.v4(2), dataIfname)]);
          break;
        } catch (err) {
          // VNI already used by someone else's device on this port: pick another.
          if (wanted !== undefined || attempt > 5 || !(err instanceof CommandError) || !/exists/i.test(err.stderr)) throw err;
        }
      }
      deferLinkDelete(this.scope, ifname);
      await this.prepareRootIf(ifname);
      await ip(null, ['addr', 'add', `${overlay.v4(1)}/24`, 'dev', ifname]);
      await ip(null, ['-6', 'addr', 'add', `${overlay.v6(1)}/64`, 'dev', ifname, 'nodad']);
      await ip(null, ['link', 'set', ifname, 'up']);
      const remoteIfname = 'vxlan0';
      await ip(netns, ['link', 'add', remoteIfname, 'mtu', '1500', ...tunnelArgs(link.v4(2), link.v4(1), 'eth0')]);
      await ip(netns, ['addr', 'add', `${overlay.v4(2)}/24`, 'dev', remoteIfname]);
      await ip(netns, ['-6', 'addr', 'add', `${overlay.v6(2)}/64`, 'dev', remoteIfname, 'nodad']);
      await ip(netns, ['link', 'set', remoteIfname, 'up']);
      // Replies from the overlay address go back through the overlay (symmetric path).
      await ip(netns, ['rule', 'add', 'from', overlay.v4(2), 'table', '100']);
      await ip(netns, ['route', 'add', 'default', 'via', overlay.v4(1), 'dev', remoteIfname, 'table', '100']);
      await ip(netns, ['-6', 'rule', 'add', 'from', overlay.v6(2), 'table', '100']);
      await ip(netns, ['-6', 'route', 'add', 'default', 'via', overlay.v6(1), 'dev', remoteIfname, 'table', '100']);
      const l = await linkInfo(null, ifname);
      vxlan = {
        vni,
        port,
        ifname,
        ifindex: l.ifindex,
        rootIpv4: overlay.v4(1),
        rootIpv6: overlay.v6(1),
        remoteIfname,
        ipv4: overlay.v4(2),
        ipv6: overlay.v6(2),
        v4Cidr: overlay.v4Cidr,
        v6Cidr: overlay.v6Cidr,
      };
    }

    const data = await linkInfo(null, dataIfname);
    const inner = await linkInfo(netns, 'eth0');
    const remote: Remote = {
      name: netns,
      netns,
      netnsPath: `/run/netns/${netns}`,
      ifname: 'eth0',
      ifindex: inner.ifindex,
      mac: inner.address ?? '',
      ipv4: link.v4(2),
      ipv6: link.v6(2),
      dataIfname,
      dataIfindex: data.ifindex,
      dataMac: data.address ?? '',
      dataIpv4: link.v4(1),
      dataIpv6: link.v6(1),
      v4Cidr: link.v4Cidr,
      v6Cidr: link.v6Cidr,
      vxlan,
    };
    this.remotes.push(remote);
    return remote;
  }

  /** The root namespace as an endpoint, addressed on the data interface of `remote`. */
  rootEndpoint(remote: Remote): Endpoint {
    return { name: 'root', netns: null, ipv4: remote.dataIpv4, ipv6: remote.dataIpv6 };
  }
}

/** Shorthand for NodeHost.create. */
export function createNode(scope: Scope, opts?: NodeOptions): Promise<NodeHost> {
  return NodeHost.create(scope, opts);
}

/** The remote's overlay addresses as an endpoint (requires a VXLAN remote). */
export function overlayEndpoint(remote: Remote): Endpoint {
  if (!remote.vxlan) throw new Error(`remote ${remote.name} has no VXLAN overlay`);
  return { name: `${remote.name}-overlay`, netns: remote.netns, ipv4: remote.vxlan.ipv4, ipv6: remote.vxlan.ipv6 };
}
