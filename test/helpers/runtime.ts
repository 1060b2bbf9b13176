// Real container runtimes driving a real CNI chain that ends with our plugin bundle:
//
//   PodmanSession     podman 4.3 with the CNI backend, every state dir in a temp dir
//                     (containers.conf through CONTAINERS_CONF, --root/--runroot, tmp_dir, vfs storage),
//                     runc, cgroupfs, file events, the ulimit flags this machine needs.
//   ContainerdSession a private containerd (own config, socket, root and state; CRI disabled) driven
//                     by `ctr run --rm --cni`. go-cni reads the first conflist of /etc/cni/net.d and
//                     looks for plugins in /opt/cni/bin:/usr/lib/cni, so the session drops a uniquely
//                     named conflist that sorts first and a symlink /opt/cni/bin/int-host-reporter
//                     (creating /opt/cni/bin only when missing), under a machine-wide lock, and
//                     removes exactly what it created.
//
// Containers run `/bin/sleep 600` from a busybox-static rootfs (relative applet symlinks). Their
// host veth is found the way a reader would check it by hand: the peer ifindex (IFLA_LINK) of eth0
// inside the container's netns, looked up in the root namespace.
//
// Everything is registered on the test's Scope and undone synchronously (also from the exit
// and signal handlers), newest first.
import {
  closeSync, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmdirSync,
  rmSync, symlinkSync, unlinkSync, writeFileSync, writeSync, copyFileSync, chmodSync,
} from 'node:fs';
import { execFile, execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { ipJson, pidAlive, sleep, sleepSync, CommandError } from './exec';
import { deferLinkDelete, type Endpoint, type Subnet } from './netns';
import type { Scope, TrackedProcess } from './scope';
import { PLUGIN_BUNDLE } from './daemon';
import { requireTool } from './traffic';

export const PLUGIN_DIST = join(__dirname, '..', '..', 'dist', 'cni');
/** What the plugin needs in dist/cni: the launcher and the files of the build `current` names. */
export const PLUGIN_FILES = ['int-host-reporter', ...[
  'node', 'plugin.cjs', 'int_host_reporter.node', 'int_host_reporter_netlink.node', 'datapath.bpf.o', 'lib/ld-linux-x86-64.so.2', 'lib/libc.so.6',
].map((f) => `int-host-reporter.d/current/${f}`)];
export const PLUGIN_TYPE = 'int-host-reporter';
export const SYSTEM_CNI_DIR = '/usr/lib/cni';
export const BUSYBOX = '/bin/busybox';
export const ULIMIT_FLAGS = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=4096:4096'];

// ---------------------------------------------------------------------------------------------
// Tools

/** Fails naming the Debian package of the first missing tool. */
export function requireRuntimeTools(kind: 'podman' | 'containerd'): void {
  requireTool('/usr/bin/nsenter', 'util-linux');
  requireTool(BUSYBOX, 'busybox-static');
  for (const p of ['bridge', 'host-local', 'ptp', 'loopback']) requireTool(join(SYSTEM_CNI_DIR, p), 'containernetworking-plugins');
  requireTool('/usr/sbin/runc', 'runc');
  if (kind === 'podman') {
    requireTool('/usr/bin/podman', 'podman');
    requireTool('/usr/bin/conmon', 'conmon');
  } else {
    requireTool('/usr/bin/containerd', 'containerd');
    requireTool('/usr/bin/ctr', 'containerd');
  }
  for (const f of PLUGIN_FILES) {
    if (!existsSync(join(PLUGIN_DIST, f))) throw new Error(`${join(PLUGIN_DIST, f)} is missing: run "node build.mjs" first`);
  }
}

// ---------------------------------------------------------------------------------------------
// Commands with an environment (exec.ts's run() inherits ours)

export interface EnvRunResult {
  stdout: string;
  stderr: string;
}

export function runEnv(argv: readonly string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000): Promise<EnvRunResult> {
  return new Promise((resolve, reject) => {
    execFile(argv[0]!, argv.slice(1), { env, timeout: timeoutMs, maxBuffer: 64 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) {
        const e = err as NodeJS.ErrnoException & { code?: number | string | null; killed?: boolean };
        reject(new CommandError(argv, e.killed ? 'timeout' : (e.code ?? null), stdout, stderr));
      } else resolve({ stdout, stderr });
    });
  });
}

export function runEnvSync(argv: readonly string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000): string {
  try {
    return execFileSync(argv[0]!, argv.slice(1), { env, timeout: timeoutMs, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { status?: number | null; stdout?: string; stderr?: string };
    throw new CommandError(argv, e.status ?? null, String(e.stdout ?? ''), String(e.stderr ?? ''));
  }
}

/** A sleep that does not keep the process alive (for races against a process's exit). */
function unrefSleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

/** Waits (bounded) until no process but us has `text` in its command line. Stops nothing. */
function waitForProcessesNaming(text: string, timeoutMs: number): void {
  const needle = Buffer.from(text);
  const others = (): number[] => readdirSync('/proc').filter((d) => /^\d+$/.test(d) && Number(d) !== process.pid).map(Number).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`).includes(needle);
    } catch {
      return false; // gone meanwhile
    }
  });
  const until = Date.now() + timeoutMs;
  while (others().length > 0 && Date.now() < until) sleepSync(100);
}

/**
 * containers.conf and storage.conf of a private podman whose state, temp files and events live
 * under `dir` (root/, runroot/ and tmp/ must exist); returns the environment that selects them.
 */
export function writePodmanConfig(
  dir: string,
  o: { containers?: string[]; network: string[]; driver: 'vfs' | 'overlay'; storageOptions?: string[] },
): NodeJS.ProcessEnv {
  const conf = join(dir, 'containers.conf');
  writeFileSync(conf, [
    ...(o.containers ? ['[containers]', ...o.containers] : []),
    '[network]',
    'network_backend = "cni"',
    ...o.network,
    '[engine]',
    'cgroup_manager = "cgroupfs"',
    'events_logger = "file"',
    `events_logfile_path = ${JSON.stringify(join(dir, 'events.log'))}`,
    'runtime = "runc"',
    `tmp_dir = ${JSON.stringify(join(dir, 'tmp'))}`,
    '',
  ].join('\n'));
  const storage = join(dir, 'storage.conf');
  writeFileSync(storage, [
    '[storage]',
    `driver = "${o.driver}"`,
    `runroot = ${JSON.stringify(join(dir, 'runroot'))}`,
    `graphroot = ${JSON.stringify(join(dir, 'root'))}`,
    ...(o.storageOptions ? ['[storage.options]', ...o.storageOptions] : []),
    '',
  ].join('\n'));
  return { ...process.env, CONTAINERS_CONF: conf, CONTAINERS_STORAGE_CONF: storage };
}

export function tempDir(scope: Scope, tag: string): string {
  const dir = mkdtempSync(join(tmpdir(), `${scope.prefix}-${tag}-`));
  scope.defer(`remove ${dir}`, () => removeTree(dir));
  return dir;
}

/** Unmounts anything left mounted below dir (deepest first), then removes it. */
function removeTree(dir: string): void {
  if (!existsSync(dir)) return;
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
    .map((l) => l.split(' ')[4] ?? '').filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) {
    try {
      execFileSync('umount', ['-l', m], { stdio: 'ignore' });
    } catch {
      /* already gone */
    }
  }
  rmSync(dir, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------------------------
// Rootfs and plugin dir

/** A busybox-static rootfs: /bin/busybox with relative applet symlinks, and the usual empty dirs. */
export function busyboxRootfs(scope: Scope): string {
  requireTool(BUSYBOX, 'busybox-static');
  const root = join(tempDir(scope, 'rootfs'), 'rootfs');
  for (const d of ['bin', 'proc', 'sys', 'dev', 'etc', 'tmp', 'run', 'var']) mkdirSync(join(root, d), { recursive: true });
  copyFileSync(BUSYBOX, join(root, 'bin', 'busybox'));
  chmodSync(join(root, 'bin', 'busybox'), 0o755);
  const applets = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).split('\n').map((s) => s.trim()).filter(Boolean);
  for (const a of applets) if (a !== 'busybox' && !a.includes('/')) symlinkSync('busybox', join(root, 'bin', a));
  writeFileSync(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/:/bin/sh\n');
  writeFileSync(join(root, 'etc', 'group'), 'root:x:0:\n');
  return root;
}

export interface PluginCall {
  command: string;
  containerId: string;
  netns: string;
  ifname: string;
  args: string;
}

export interface PluginDir {
  dir: string;
  /** every call the runtime made to our plugin, in order */
  calls(): PluginCall[];
}

/**
 * A plugin dir for the runtime: `int-host-reporter` is a two-line sh wrapper that appends the
 * verb and CNI_* values to a log, then execs the real launcher in dist/cni (which finds its
 * runtime dir beside its own path).
 */
export function pluginDir(scope: Scope): PluginDir {
  requireRuntimeTools('podman');
  const dir = tempDir(scope, 'cnibin');
  const log = join(dir, 'calls.log');
  writeFileSync(log, '');
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  writeFileSync(join(dir, PLUGIN_TYPE), [
    '#!/bin/sh',
    `printf '%s\\t%s\\t%s\\t%s\\t%s\\n' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_IFNAME" "$CNI_ARGS" >> ${q(log)}`,
    `exec ${q(PLUGIN_BUNDLE)} "$@"`,
    '',
  ].join('\n'), { mode: 0o755 });
  return {
    dir,
    calls: () => readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => {
      const [command = '', containerId = '', netns = '', ifname = '', args = ''] = l.split('\t');
      return { command, containerId, netns, ifname, args };
    }),
  };
}

// ---------------------------------------------------------------------------------------------
// Conflists

export interface DaemonEndpoints {
  socket: string;
  spoolDir: string;
  pinRoot: string;
}

export interface ChainOptions {
  /** network name (default: a fresh `<prefix>-net<n>`) */
  network?: string;
  /** the interface plugin before ours */
  kind?: 'bridge' | 'ptp';
  subnet: Subnet;
  daemon: DaemonEndpoints;
  cniVersion?: string;
  /** host-local range override (e.g. an exhausted or invalid one) */
  range?: Record<string, string>;
  /** extra fields merged into the interface plugin's entry (a deliberate misconfig) */
  interfaceOverrides?: Record<string, unknown>;
  /** our plugin's log file */
  logFile?: string;
  /** leave our plugin out of the chain */
  withoutPlugin?: boolean;
}

export interface Chain {
  network: string;
  /** bridge device name (bridge chains) */
  bridge?: string;
  conflist: Record<string, unknown>;
  /** host-local's dataDir (a temp dir) */
  ipamDataDir: string;
}

/**
 * bridge (or ptp) + host-local, then `{"type":"int-host-reporter", socketPath, spoolDir, bpffsRoot}`.
 * The bridge device is removed with the scope (the bridge plugin never deletes it).
 */
export function chainConflist(scope: Scope, o: ChainOptions): Chain {
  const network = o.network ?? scope.name('-net', 64);
  const kind = o.kind ?? 'bridge';
  const ipamDataDir = tempDir(scope, 'ipam');
  const range = o.range ?? { subnet: o.subnet.v4Cidr, gateway: o.subnet.v4(1) };
  const ipam = { type: 'host-local', dataDir: ipamDataDir, ranges: [[range]], routes: [{ dst: '0.0.0.0/0' }] };
  let first: Record<string, unknown>;
  let bridge: string | undefined;
  if (kind === 'bridge') {
    bridge = scope.name('cb');
    deferLinkDelete(scope, bridge);
    first = { type: 'bridge', bridge, isGateway: true, ipMasq: false, hairpinMode: false, ipam };
  } else {
    first = { type: 'ptp', ipMasq: false, ipam };
  }
  Object.assign(first, o.interfaceOverrides ?? {});
  const ours: Record<string, unknown> = {
    type: PLUGIN_TYPE, socketPath: o.daemon.socket, spoolDir: o.daemon.spoolDir, bpffsRoot: o.daemon.pinRoot,
  };
  if (o.logFile) ours.logFile = o.logFile;
  const conflist = { cniVersion: o.cniVersion ?? '1.0.0', name: network, plugins: o.withoutPlugin ? [first] : [first, ours] };
  return { network, bridge, conflist, ipamDataDir };
}

/** A DaemonProcess as the endpoints a conflist points at. */
export function daemonEndpoints(d: { socket: string; spoolDir: string; pinRoot: string }): DaemonEndpoints {
  return { socket: d.socket, spoolDir: d.spoolDir, pinRoot: d.pinRoot };
}

// ---------------------------------------------------------------------------------------------
// Containers

export interface Container {
  /** runtime name (podman: container name = K8S_POD_NAME; ctr: container id) */
  name: string;
  /** podman: 64-hex id; ctr: the same as name */
  id: string;
  /** what the runtime passes as CNI_CONTAINERID */
  cniContainerId: string;
  pid: number;
  netnsPath: string;
  /** a name under /run/netns for `ip netns exec` (podman's own, or an `ip netns attach` alias) */
  netnsName: string;
  ipv4: string;
  eth0Ifindex: number;
  hostIfindex: number;
  hostIfname: string;
}

interface IpLinkJson {
  ifindex: number;
  ifname: string;
  link_index?: number;
  linkinfo?: { info_kind?: string };
  master?: string;
}

/** eth0's peer ifindex inside `netnsPath`, and that link in the root namespace (must be a veth). */
export async function hostVethOf(netnsPath: string): Promise<{ eth0Ifindex: number; hostIfindex: number; hostIfname: string; ipv4: string }> {
  const out = await runEnv(['nsenter', `--net=${netnsPath}`, 'ip', '-j', '-d', 'addr', 'show', 'dev', 'eth0'], process.env);
  const [eth0] = JSON.parse(out.stdout) as Array<IpLinkJson & { addr_info?: Array<{ family: string; local: string }> }>;
  if (!eth0 || eth0.link_index === undefined) throw new Error(`eth0 in ${netnsPath} has no peer ifindex: ${out.stdout}`);
  const ipv4 = eth0.addr_info?.find((a) => a.family === 'inet')?.local ?? '';
  const links = await ipJson<IpLinkJson>(null, ['-d', 'link', 'show']);
  const host = links.find((l) => l.ifindex === eth0.link_index);
  if (!host) throw new Error(`no root-namespace link with ifindex ${eth0.link_index} (peer of eth0 in ${netnsPath})`);
  if (host.linkinfo?.info_kind !== 'veth') throw new Error(`${host.ifname} is ${host.linkinfo?.info_kind}, not a veth`);
  return { eth0Ifindex: eth0.ifindex, hostIfindex: host.ifindex, hostIfname: host.ifname, ipv4 };
}

/** The container as a traffic endpoint for test/helpers/traffic.ts (IPv4 only). */
export function endpointOf(c: Container): Endpoint {
  return { name: c.name, netns: c.netnsName, ipv4: c.ipv4, ipv6: '' };
}

// ---------------------------------------------------------------------------------------------
// podman

export interface PodmanOptions {
  pluginDir: string;
  rootfs: string;
}

export class PodmanSession {
  readonly env: NodeJS.ProcessEnv;
  readonly netDir: string;
  private readonly globals: string[];
  readonly containers = new Map<string, Container>();

  private constructor(
    readonly scope: Scope,
    readonly dir: string,
    readonly opts: PodmanOptions,
  ) {
    this.netDir = join(dir, 'net.d');
    mkdirSync(this.netDir);
    for (const d of ['root', 'runroot', 'tmp']) mkdirSync(join(dir, d));
    this.env = writePodmanConfig(dir, {
      network: [
        `cni_plugin_dirs = ${JSON.stringify([opts.pluginDir, SYSTEM_CNI_DIR])}`,
        `network_config_dir = ${JSON.stringify(this.netDir)}`,
        `default_network = "${scope.prefix}-none"`,
      ],
      driver: 'vfs',
    });
    this.globals = ['--root', join(dir, 'root'), '--runroot', join(dir, 'runroot'), '--storage-driver', 'vfs'];
  }

  static create(scope: Scope, opts: PodmanOptions): PodmanSession {
    requireRuntimeTools('podman');
    const dir = tempDir(scope, 'podman');
    const s = new PodmanSession(scope, dir, opts);
    const cniState = snapshotCniState();
    const cgroups = snapshotCgroupParents('libpod_parent');
    scope.defer('podman cgroup parents', () => removeCgroupParents(cgroups));
    // Runs before the temp dir goes (registered after it): every container of this session.
    scope.defer(`podman containers in ${dir}`, () => {
      try {
        runEnvSync(['podman', ...s.globals, 'rm', '-f', '-t', '0', '--all'], s.env, 60_000);
      } catch {
        /* keep cleaning */
      }
      // conmon runs `podman container cleanup` for each container as it exits, after `rm`
      // returned: removing the dir under it would let it recreate root/ and runroot/ there.
      waitForProcessesNaming(dir, 15_000);
      cleanCniState(cniState, [...s.networks]);
      // host-local's DEL during `rm` may have recreated a data dir already removed.
      for (const d of s.ipamDirs) rmSync(d, { recursive: true, force: true });
    });
    return s;
  }

  private readonly networks = new Set<string>();
  private readonly ipamDirs = new Set<string>();

  /** Writes the conflist into this session's network dir. */
  addNetwork(chain: Chain): void {
    writeFileSync(join(this.netDir, `${chain.network}.conflist`), JSON.stringify(chain.conflist, null, 2));
    this.networks.add(chain.network);
    this.ipamDirs.add(chain.ipamDataDir);
  }

  podman(args: readonly string[], timeoutMs = 60_000): Promise<EnvRunResult> {
    return runEnv(['podman', ...this.globals, ...args], this.env, timeoutMs);
  }

  /** `podman run -d` a container on `network`; rejects with podman's error when the chain fails. */
  async run(name: string, network: string, cmd: readonly string[] = ['/bin/sleep', '600']): Promise<Container> {
    await this.podman(['run', '-d', '--name', name, '--network', network, ...ULIMIT_FLAGS, '--rootfs', this.opts.rootfs, ...cmd]);
    const [info] = JSON.parse((await this.podman(['inspect', '--type', 'container', name])).stdout) as Array<{
      Id: string; State: { Pid: number }; NetworkSettings: { SandboxKey: string; Networks?: Record<string, { IPAddress?: string }> };
    }>;
    if (!info) throw new Error(`podman inspect ${name} returned nothing`);
    const netnsPath = info.NetworkSettings.SandboxKey;
    const v = await hostVethOf(netnsPath);
    const ip = info.NetworkSettings.Networks?.[network]?.IPAddress ?? '';
    if (ip !== v.ipv4) throw new Error(`podman says ${name} has ${ip}, eth0 has ${v.ipv4}`);
    const c: Container = {
      name, id: info.Id, cniContainerId: info.Id, pid: info.State.Pid, netnsPath,
      netnsName: netnsPath.startsWith('/run/netns/') ? basename(netnsPath) : '', ...v,
    };
    this.containers.set(name, c);
    return c;
  }

  /** `podman exec` in a container. */
  exec(name: string, argv: readonly string[], timeoutMs = 30_000): Promise<EnvRunResult> {
    return this.podman(['exec', name, ...argv], timeoutMs);
  }

  /** Stop (CNI DEL happens here) and remove. */
  async remove(name: string): Promise<void> {
    await this.podman(['stop', '-t', '0', name]);
    await this.podman(['rm', name]);
    this.containers.delete(name);
  }

  /** Container names podman still knows. */
  async list(): Promise<string[]> {
    const out = (await this.podman(['ps', '-a', '--format', '{{.Names}}'])).stdout;
    return out.split('\n').map((s) => s.trim()).filter(Boolean);
  }
}

// ---------------------------------------------------------------------------------------------
// Cgroup parents a runtime creates on first use (podman: libpod_parent, with cgroupfs): removed
// afterwards when they did not exist before (rmdir only: a cgroup still in use stays).

function cgroupParents(name: string): string[] {
  const base = '/sys/fs/cgroup';
  const out = [join(base, name)];
  try {
    for (const d of readdirSync(base)) out.push(join(base, d, name));
  } catch {
    /* no cgroupfs */
  }
  return out;
}

export function snapshotCgroupParents(name: string): string[] {
  return cgroupParents(name).filter((p) => !existsSync(p));
}

export function removeCgroupParents(absentBefore: string[]): void {
  const rmTree = (dir: string) => {
    let entries: string[] = [];
    try {
      entries = readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    } catch {
      return;
    }
    for (const e of entries) rmTree(join(dir, e));
    try {
      rmdirSync(dir);
    } catch {
      /* busy or gone */
    }
  };
  for (const p of absentBefore) if (existsSync(p)) rmTree(p);
}

// ---------------------------------------------------------------------------------------------
// libcni's cache (/var/lib/cni): what a session created there goes, nothing else.

interface CniStateSnapshot {
  existed: string[];
}

const CNI_STATE_DIRS = ['/var/lib/cni/results', '/var/lib/cni/networks', '/var/lib/cni'];

function snapshotCniState(): CniStateSnapshot {
  return { existed: CNI_STATE_DIRS.filter((d) => existsSync(d)) };
}

function cleanCniState(s: CniStateSnapshot, networks: string[]): void {
  const results = '/var/lib/cni/results';
  if (existsSync(results)) {
    for (const f of readdirSync(results)) if (networks.some((n) => f.startsWith(`${n}-`))) rmSync(join(results, f), { force: true });
  }
  for (const n of networks) rmSync(join('/var/lib/cni/networks', n), { recursive: true, force: true });
  for (const d of CNI_STATE_DIRS) {
    if (s.existed.includes(d) || !existsSync(d)) continue;
    try {
      rmdirSync(d); // only when empty: another user may have put something there meanwhile
    } catch {
      /* not empty */
    }
  }
}

// ---------------------------------------------------------------------------------------------
// containerd + ctr

const CONF_DIR = '/etc/cni/net.d';
const OPT_CNI = '/opt/cni';
const OPT_CNI_BIN = '/opt/cni/bin';
const OPT_CONTAINERD = '/opt/containerd';
const LOCK = '/run/int-host-reporter-test-containerd.lock';

/** Machine-wide exclusive lock (a file holding the owner's pid; a dead owner's lock is taken over). */
function acquireLock(scope: Scope, timeoutMs = 180_000): void {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fd = openSync(LOCK, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      scope.defer(`release ${LOCK}`, () => {
        try {
          if (readFileSync(LOCK, 'utf8').trim() === String(process.pid)) unlinkSync(LOCK);
        } catch {
          /* gone */
        }
      });
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let owner = 0;
    try {
      owner = Number(readFileSync(LOCK, 'utf8').trim());
    } catch {
      continue;
    }
    if (!owner || !pidAlive(owner)) {
      try {
        unlinkSync(LOCK);
      } catch {
        /* someone else took it over */
      }
      continue;
    }
    if (Date.now() > deadline) throw new Error(`${LOCK} is held by pid ${owner} for more than ${timeoutMs} ms`);
    sleepSync(200);
  }
}

export class ContainerdSession {
  readonly socket: string;
  readonly containers = new Map<string, Container>();
  private readonly runs = new Map<string, TrackedProcess>();
  private conflistPath?: string;
  private readonly ipamDirs: string[] = [];

  private constructor(
    readonly scope: Scope,
    readonly dir: string,
    readonly rootfs: string,
    readonly daemon: TrackedProcess,
    private readonly networks: string[],
  ) {
    this.socket = join(dir, 'containerd.sock');
  }

  /** Starts a private containerd (takes the machine-wide lock for /etc/cni/net.d and /opt/cni/bin). */
  static async start(scope: Scope, rootfs: string): Promise<ContainerdSession> {
    requireRuntimeTools('containerd');
    acquireLock(scope);
    const optContainerdExisted = existsSync(OPT_CONTAINERD);
    const cniState = snapshotCniState();
    const networks: string[] = [];
    scope.defer('containerd-created /opt/containerd and libcni cache', () => {
      if (!optContainerdExisted) rmSync(OPT_CONTAINERD, { recursive: true, force: true });
      cleanCniState(cniState, networks);
    });
    const dir = tempDir(scope, 'containerd');
    const config = join(dir, 'config.toml');
    writeFileSync(config, [
      'version = 2',
      `root = ${JSON.stringify(join(dir, 'root'))}`,
      `state = ${JSON.stringify(join(dir, 'state'))}`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = ${JSON.stringify(join(dir, 'containerd.sock'))}`,
      '[ttrpc]',
      `  address = ${JSON.stringify(join(dir, 'containerd-ttrpc.sock'))}`,
      '[debug]',
      `  address = ""`,
      '',
    ].join('\n'));
    // Output to a file: the shims containerd starts inherit its stdio and outlive it for a
    // while, which would keep a pipe to this process open.
    const proc = scope.spawn(null, ['sh', '-c', 'exec containerd --config "$1" >"$2" 2>&1', 'sh', config, join(dir, 'containerd.log')]);
    const s = new ContainerdSession(scope, dir, rootfs, proc, networks);
    // Runs before containerd is killed (registered after it): every task and container left.
    scope.defer(`ctr containers of ${dir}`, () => s.removeAllSync());
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        await s.ctr(['version'], 3000);
        break;
      } catch (e) {
        if (!pidAlive(proc.pid)) throw new Error(`containerd exited: ${readFileSync(join(dir, 'containerd.log'), 'utf8').slice(-2000)}`);
        if (Date.now() > deadline) throw new Error(`containerd not answering on ${s.socket}: ${(e as Error).message}`);
        await sleep(100);
      }
    }
    return s;
  }

  ctr(args: readonly string[], timeoutMs = 60_000): Promise<EnvRunResult> {
    return runEnv(['ctr', '--address', this.socket, ...args], process.env, timeoutMs);
  }

  /**
   * Installs the chain for go-cni: `/etc/cni/net.d/00-<prefix>-<network>.conflist` (must sort
   * before every file there) and `/opt/cni/bin/int-host-reporter` → our plugin dir.
   */
  installChain(chain: Chain, pluginDirPath: string): void {
    if (this.conflistPath) throw new Error('a chain is already installed in this session');
    mkdirSync(CONF_DIR, { recursive: true });
    const name = `00-${chain.network}.conflist`;
    const first = readdirSync(CONF_DIR).sort()[0];
    if (first !== undefined && first <= name) throw new Error(`${CONF_DIR}/${first} sorts before ${name}: go-cni would not use ours`);
    const path = join(CONF_DIR, name);
    this.networks.push(chain.network);
    this.ipamDirs.push(chain.ipamDataDir);
    writeFileSync(path, JSON.stringify(chain.conflist, null, 2));
    this.conflistPath = path;
    this.scope.defer(`remove ${path}`, () => rmSync(path, { force: true }));

    const createdOpt = !existsSync(OPT_CNI);
    const createdBin = !existsSync(OPT_CNI_BIN);
    mkdirSync(OPT_CNI_BIN, { recursive: true });
    const link = join(OPT_CNI_BIN, PLUGIN_TYPE);
    const target = join(pluginDirPath, PLUGIN_TYPE);
    let isLink = false;
    try {
      isLink = lstatSync(link).isSymbolicLink();
    } catch {
      /* absent */
    }
    if (existsSync(link) || isLink) throw new Error(`${link} already exists: not replacing what this test did not create`);
    symlinkSync(target, link);
    this.scope.defer(`remove ${link}`, () => {
      try {
        if (readlinkSync(link) === target) unlinkSync(link);
      } catch {
        /* gone */
      }
      for (const [d, created] of [[OPT_CNI_BIN, createdBin], [OPT_CNI, createdOpt]] as const) {
        if (!created) continue;
        try {
          rmdirSync(d);
        } catch {
          /* not empty: someone else's */
        }
      }
    });
  }

  /**
   * `ctr run --rm --cni` in the background (the ctr process stays: when the task exits it runs
   * CNI DEL, with CNI_NETNS empty, and removes the container). Resolves once the task runs.
   */
  async run(id: string, cmd: readonly string[] = ['/bin/sleep', '600']): Promise<Container> {
    const proc = this.scope.spawn(null, ['ctr', '--address', this.socket, 'run', '--rm', '--cni', '--rootfs', this.rootfs, id, ...cmd]);
    this.runs.set(id, proc);
    const deadline = Date.now() + 30_000;
    let pid = 0;
    while (!pid) {
      const r = await Promise.race([proc.exited.then((x) => x), unrefSleep(150).then(() => undefined)]);
      if (r) throw new Error(`ctr run ${id} exited (${r.code ?? r.signal}): ${r.stderr}`);
      const ls = (await this.ctr(['task', 'ls'])).stdout.split('\n').map((l) => l.trim().split(/\s+/));
      const row = ls.find((f) => f[0] === id && f[2] === 'RUNNING');
      if (row) pid = Number(row[1]);
      if (!pid && Date.now() > deadline) throw new Error(`task ${id} not running after 30 s: ${proc.lines.join('\n')}`);
    }
    const netnsPath = `/proc/${pid}/ns/net`;
    // go-cni sets the network up before the task starts; wait until eth0 exists to be sure.
    let v: Awaited<ReturnType<typeof hostVethOf>> | undefined;
    while (!v) {
      try {
        v = await hostVethOf(netnsPath);
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await sleep(100);
      }
    }
    // A name under /run/netns for `ip netns exec` (a bind mount of the task's netns).
    const netnsName = `${this.scope.prefix}-ctr-${id}`;
    await runEnv(['ip', 'netns', 'attach', netnsName, String(pid)], process.env);
    this.scope.defer(`netns alias ${netnsName}`, () => {
      if (existsSync(`/run/netns/${netnsName}`)) runEnvSync(['ip', 'netns', 'delete', netnsName], process.env);
    });
    const c: Container = { name: id, id, cniContainerId: `default-${id}`, pid, netnsPath, netnsName, ...v };
    this.containers.set(id, c);
    return c;
  }

  exec(id: string, argv: readonly string[], timeoutMs = 30_000): Promise<EnvRunResult> {
    return this.ctr(['task', 'exec', '--exec-id', `x${Date.now()}${Math.floor(Math.random() * 1e6)}`, id, ...argv], timeoutMs);
  }

  /** Kills the task; its `ctr run --rm` then runs CNI DEL and deletes the container. */
  async remove(id: string): Promise<void> {
    const c = this.containers.get(id);
    if (c && existsSync(`/run/netns/${c.netnsName}`)) await runEnv(['ip', 'netns', 'delete', c.netnsName], process.env);
    await this.ctr(['task', 'kill', '-s', 'SIGKILL', id]);
    const proc = this.runs.get(id);
    if (proc) {
      const r = await Promise.race([proc.exited, unrefSleep(30_000).then(() => undefined)]);
      if (!r) throw new Error(`ctr run ${id} did not finish after its task was killed`);
    }
    this.containers.delete(id);
    this.runs.delete(id);
  }

  async listContainers(): Promise<string[]> {
    const out = (await this.ctr(['containers', 'ls', '-q'])).stdout;
    return out.split('\n').map((s) => s.trim()).filter(Boolean);
  }

  private removeAllSync(): void {
    if (!pidAlive(this.daemon.pid)) return;
    const ctr = (args: string[]) => {
      try {
        return runEnvSync(['ctr', '--address', this.socket, ...args], process.env, 20_000);
      } catch {
        return '';
      }
    };
    const ids = ctr(['containers', 'ls', '-q']).split('\n').map((s) => s.trim()).filter(Boolean);
    // Killing the tasks lets each `ctr run --rm` run its CNI DEL and remove its container.
    for (const id of ids) ctr(['task', 'kill', '-s', 'SIGKILL', id]);
    const deadline = Date.now() + 10_000;
    while ([...this.runs.values()].some((p) => pidAlive(p.pid)) && Date.now() < deadline) sleepSync(50);
    for (const p of this.runs.values()) p.kill();
    for (const id of ctr(['containers', 'ls', '-q']).split('\n').map((s) => s.trim()).filter(Boolean)) {
      ctr(['task', 'delete', '-f', id]);
      ctr(['containers', 'delete', id]);
    }
    // host-local's DEL (run by `ctr run --rm` above) may have recreated a data dir already removed.
    for (const d of this.ipamDirs) rmSync(d, { recursive: true, force: true });
  }
}
