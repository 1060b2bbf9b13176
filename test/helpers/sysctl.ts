// sysctl access for the harness. Per-interface settings on our own interfaces vanish with
// them; the only global settings the harness may touch are the root namespace's forwarding
// switches, and only when the kernel lacks per-interface IPv6 forwarding. Those are recorded
// first and restored when the last harness process holding them lets go (a small
// cross-process reference count under /run/ihr-harness, so parallel runs don't fight).
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { run, pidAlive, sleepSync } from './exec';
import type { Scope } from './scope';

const keyPath = (key: string) => `/proc/sys/${key.replaceAll('.', '/')}`;

/** Read a sysctl (root namespace when netns is null). */
export async function readSysctl(netns: string | null, key: string): Promise<string> {
  if (netns === null) return readFileSync(keyPath(key), 'utf8').trim();
  const { stdout } = await run(['ip', 'netns', 'exec', netns, 'sysctl', '-n', key]);
  return stdout.trim();
}

/** Write a sysctl (root namespace when netns is null). */
export async function writeSysctl(netns: string | null, key: string, value: string | number): Promise<void> {
  if (netns === null) {
    writeFileSync(keyPath(key), `${value}\n`);
    return;
  }
  await run(['ip', 'netns', 'exec', netns, 'sysctl', '-q', '-w', `${key}=${value}`]);
}

export function readSysctlSync(key: string): string {
  return readFileSync(keyPath(key), 'utf8').trim();
}

/** Does this kernel forward IPv6 per input interface (net.ipv6.conf.X.force_forwarding, Linux 6.17+)? */
export function hasIpv6ForceForwarding(): boolean {
  return existsSync('/proc/sys/net/ipv6/conf/default/force_forwarding') || existsSync('/proc/sys/net/ipv6/conf/lo/force_forwarding');
}

/** The root namespace's forwarding sysctls (global switches and every interface). */
export function forwardingSnapshot(): Record<string, string> {
  const out: Record<string, string> = {};
  out['net/ipv4/ip_forward'] = readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();
  for (const fam of ['ipv4', 'ipv6']) {
    for (const dev of readdirSync(`/proc/sys/net/${fam}/conf`)) {
      const p = `net/${fam}/conf/${dev}/forwarding`;
      try {
        out[p] = readFileSync(`/proc/sys/${p}`, 'utf8').trim();
      } catch {
        /* interface went away */
      }
    }
  }
  return out;
}

const STATE_DIR = '/run/ihr-harness';
const LOCK = `${STATE_DIR}/lock`;

function withLock<T>(fn: () => T): T {
  mkdirSync(STATE_DIR, { recursive: true });
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      mkdirSync(LOCK);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      try {
        if (Date.now() - statSync(LOCK).mtimeMs > 10_000) rmSync(LOCK, { recursive: true, force: true });
      } catch {
        /* raced with its owner */
      }
      if (Date.now() > deadline) throw new Error(`could not take ${LOCK}`);
      sleepSync(10);
    }
  }
  try {
    return fn();
  } finally {
    rmSync(LOCK, { recursive: true, force: true });
  }
}

interface GlobalState {
  saved: Record<string, string>;
  holders: number[];
}

function stateFile(family: 4 | 6) {
  return `${STATE_DIR}/forwarding-ipv${family}.json`;
}

function globalPaths(family: 4 | 6, snap: Record<string, string>): Record<string, string> {
  const fam = `net/ipv${family}/`;
  return Object.fromEntries(Object.entries(snap).filter(([k]) => k.startsWith(fam)));
}

/**
 * Turn on global forwarding for one family in the root namespace, recording the previous
 * values (global and per interface) and restoring them when the scope closes and no other
 * live harness process still holds it.
 */
export function holdGlobalForwarding(scope: Scope, family: 4 | 6): void {
  const file = stateFile(family);
  withLock(() => {
    let state: GlobalState | undefined;
    try {
      state = JSON.parse(readFileSync(file, 'utf8')) as GlobalState;
    } catch {
      state = undefined;
    }
    if (!state) state = { saved: globalPaths(family, forwardingSnapshot()), holders: [] };
    // A holder that died without restoring leaves its record: keep the original values.
    state.holders = state.holders.filter((p) => p !== process.pid && pidAlive(p));
    state.holders.push(process.pid);
    writeFileSync(file, JSON.stringify(state));
    writeFileSync(family === 4 ? '/proc/sys/net/ipv4/ip_forward' : '/proc/sys/net/ipv6/conf/all/forwarding', '1\n');
  });
  scope.defer(`restore IPv${family} forwarding`, () => releaseGlobalForwarding(family));
}

function releaseGlobalForwarding(family: 4 | 6): void {
  const file = stateFile(family);
  withLock(() => {
    let state: GlobalState;
    try {
      state = JSON.parse(readFileSync(file, 'utf8')) as GlobalState;
    } catch {
      return;
    }
    state.holders = state.holders.filter((p) => p !== process.pid && pidAlive(p));
    if (state.holders.length > 0) {
      writeFileSync(file, JSON.stringify(state));
      return;
    }
    // Global switches first (they fan out to every interface), then per-interface values.
    const entries = Object.entries(state.saved).sort(([a], [b]) => rank(a) - rank(b));
    for (const [p, v] of entries) {
      try {
        if (readFileSync(`/proc/sys/${p}`, 'utf8').trim() !== v) writeFileSync(`/proc/sys/${p}`, `${v}\n`);
      } catch {
        /* interface gone since */
      }
    }
    rmSync(file, { force: true });
  });
}

function rank(p: string): number {
  if (p.endsWith('ip_forward') || p.includes('/conf/all/')) return 0;
  if (p.includes('/conf/default/')) return 1;
  return 2;
}
