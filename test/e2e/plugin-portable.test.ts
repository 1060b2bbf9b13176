// The plugin as it lands in a CNI bin dir (dist/cni: a static launcher and its runtime dir) needs
// nothing from the host but the kernel:
//   - its ELF files: the launcher is static (no NEEDED, no PT_INTERP); every library node and the
//     addon need is shipped in lib/, and every symbol version they need is defined there;
//   - it runs in an otherwise empty root file system (chroot, empty environment, no PATH): VERSION,
//     ADD, CHECK and DEL for a real pod netns with a real veth, our programs attached and detached;
//   - when its runtime cannot be found, the launcher still answers the runtime with a CNI error,
//     and DEL still succeeds; the host's LD_* and NODE_OPTIONS do not reach its runtime.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { withScope, createNode } from '../helpers/netns';
import { DaemonProcess, ReportSink, pluginConfig, prevResultOf, type CniResult } from '../helpers/daemon';
import { PLUGIN_DIST, PLUGIN_FILES, tempDir } from '../helpers/runtime';
import { NATIVE_MODULES } from '../helpers/plugin-layout';
import { requireTool } from '../helpers/traffic';
import * as bpf from '../../bpf/index';
import { PinLayout } from '../../bpf/pins';

const LAUNCHER = 'int-host-reporter';
const RUNTIME_LIBS = ['ld-linux-x86-64.so.2', 'libc.so.6', 'libdl.so.2', 'libgcc_s.so.1', 'libm.so.6', 'libpthread.so.0', 'libstdc++.so.6'];
const SUPPORTED = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];
const READELF = '/usr/bin/readelf';

function requireBuilt(): string {
  for (const f of PLUGIN_FILES) {
    if (!existsSync(join(PLUGIN_DIST, f))) throw new Error(`${join(PLUGIN_DIST, f)} is missing: run "node build.mjs" first`);
  }
  return realpathSync(join(PLUGIN_DIST, 'int-host-reporter.d', 'current'));
}

const readelfCache = new Map<string, string>();
function readelf(args: string[], file: string): string {
  requireTool(READELF, 'binutils');
  const key = `${args.join(' ')} ${file}`;
  const cached = readelfCache.get(key);
  if (cached !== undefined) return cached;
  // -V of node lists every dynamic symbol's version: tens of MB.
  const r = spawnSync(READELF, ['-W', ...args, file], { encoding: 'utf8', env: { LC_ALL: 'C' }, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`readelf ${key}: ${r.error?.message ?? r.stderr}`);
  readelfCache.set(key, r.stdout);
  return r.stdout;
}

function isElf(path: string): boolean {
  const head = readFileSync(path).subarray(0, 4);
  return head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
}

/** Regular files under dir (symlinks not followed: `current` names a dir that is walked anyway). */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p));
    else if (e.isFile()) out.push(p);
  }
  return out.sort();
}

const needed = (file: string) => [...readelf(['-d'], file).matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]!);
const programHeaders = (file: string) =>
  readelf(['-l'], file).split('\n').map((l) => l.trim().split(/\s+/)[0]!).filter((t) => /^[A-Z_]+$/.test(t) && t !== 'Type');

/** Symbol versions a file defines (.gnu.version_d), its own soname excluded. */
function versionsDefined(file: string): Set<string> {
  const text = readelf(['-V'], file);
  const start = text.indexOf(".gnu.version_d'");
  if (start < 0) return new Set();
  const end = text.indexOf('Version needs section', start);
  const section = text.slice(start, end < 0 ? undefined : end);
  return new Set([...section.matchAll(/Flags: (?!BASE)\S+\s+Index: \d+\s+Cnt: \d+\s+Name: (\S+)/g)].map((m) => m[1]!));
}

/** Symbol versions a file needs (.gnu.version_r), by the library that must define them. */
function versionsNeeded(file: string): Map<string, string[]> {
  const text = readelf(['-V'], file);
  const start = text.indexOf(".gnu.version_r'");
  const out = new Map<string, string[]>();
  if (start < 0) return out;
  let lib = '';
  for (const line of text.slice(start).split('\n')) {
    const f = /File: (\S+)/.exec(line);
    if (f) {
      lib = f[1]!;
      out.set(lib, []);
      continue;
    }
    const n = /^\s+0x[0-9a-f]+:\s+Name: (\S+)/.exec(line);
    if (n && lib) out.get(lib)!.push(n[1]!);
  }
  return out;
}

/** GLIBC_2.28 -> [2, 28], for ordering. */
function glibcVersion(v: string): number[] {
  return v.slice('GLIBC_'.length).split('.').map(Number);
}
function newer(a: number[], b: number[]): boolean {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  }
  return false;
}

test('the ELF files of dist/cni: a static launcher, and a runtime that needs only its own lib/', () => {
  const build = requireBuilt();
  const launcher = join(PLUGIN_DIST, LAUNCHER);
  assert.deepEqual(needed(launcher), [], 'the launcher needs no shared library');
  const headers = programHeaders(launcher);
  assert.ok(headers.includes('LOAD'), `readelf -l of the launcher shows its segments: ${headers.join(' ')}`);
  assert.equal(headers.includes('INTERP'), false, 'the launcher has no PT_INTERP');
  assert.equal(headers.includes('DYNAMIC'), false, 'the launcher has no dynamic section');

  assert.deepEqual(readdirSync(join(build, 'lib')).sort(), RUNTIME_LIBS);
  const elves = filesUnder(build).filter(isElf).map((f) => f.slice(build.length + 1));
  assert.deepEqual(elves, ['datapath.bpf.o', ...NATIVE_MODULES, ...RUNTIME_LIBS.map((l) => `lib/${l}`), 'node']);

  const libc = versionsDefined(join(build, 'lib', 'libc.so.6'));
  const glibcMax = [...libc].filter((v) => v.startsWith('GLIBC_2.')).map(glibcVersion).reduce((a, b) => (newer(a, b) ? a : b));
  const checked: string[] = [];
  for (const rel of elves.filter((f) => f !== 'datapath.bpf.o')) {
    const file = join(build, rel);
    for (const lib of needed(file)) {
      assert.ok(RUNTIME_LIBS.includes(lib), `${rel} needs ${lib}, which is not shipped in lib/`);
    }
    for (const [lib, versions] of versionsNeeded(file)) {
      const defined = versionsDefined(join(build, 'lib', lib));
      for (const v of versions) {
        assert.ok(defined.has(v), `${rel} needs ${lib} version ${v}, which lib/${lib} does not define`);
        if (v.startsWith('GLIBC_2.')) {
          assert.ok(!newer(glibcVersion(v), glibcMax), `${rel} needs ${v}, newer than lib/libc.so.6 (GLIBC_${glibcMax.join('.')})`);
        }
      }
    }
    checked.push(rel);
  }
  // node and the native modules at least: were they really read?
  for (const f of ['node', ...NATIVE_MODULES]) {
    assert.ok(versionsNeeded(join(build, f)).get('libc.so.6')!.length > 0, `${f} needs versioned libc symbols`);
  }
  assert.equal(checked.length, RUNTIME_LIBS.length + 1 + NATIVE_MODULES.length);
});

/**
 * Runs the plugin from `<root>/opt/cni/bin` in a chroot into root, in a mount namespace of its own
 * (the bind mounts vanish with it), with exactly `env` as its environment.
 */
function runInChroot(root: string, binds: string[], env: Record<string, string>, stdin: object | string): CniResult {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const script = [
    'set -e',
    ...binds.map((b) => `/bin/mount ${b === '/run/netns' ? '--rbind' : '--bind'} ${q(b)} ${q(root + b)}`),
    'exec /usr/bin/env -i "$@"',
  ].join('\n');
  const vars = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  const r = spawnSync('/usr/bin/unshare', ['--mount', '--propagation', 'private', '/bin/sh', '-c', script, 'sh',
    ...vars, '/usr/sbin/chroot', root, `/opt/cni/bin/${LAUNCHER}`], {
    env: {}, input: typeof stdin === 'string' ? stdin : JSON.stringify(stdin), encoding: 'utf8', timeout: 30_000,
  });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('the plugin runs in an empty root file system: VERSION, ADD, CHECK, DEL for a real pod', async () => {
  requireBuilt();
  requireTool('/usr/bin/unshare', 'util-linux');
  requireTool('/bin/mount', 'mount');
  requireTool('/usr/sbin/chroot', 'coreutils');
  await withScope(async (scope) => {
    const node = await createNode(scope);
    const pod = await node.addPod();
    const sink = await ReportSink.start(scope);
    const daemon = await DaemonProcess.start(scope, { collector: sink.address });

    // The root: our files, and mount points for what a node's runtime shares with its plugins.
    const root = join(tempDir(scope, 'chroot'), 'root');
    mkdirSync(join(root, 'opt', 'cni', 'bin'), { recursive: true });
    const cp = spawnSync('/bin/cp', ['-a', `${PLUGIN_DIST}/.`, join(root, 'opt', 'cni', 'bin')], { encoding: 'utf8' });
    assert.equal(cp.status, 0, cp.stderr);
    const binds = ['/proc', '/sys', '/sys/fs/bpf', '/run/netns', '/dev/null', daemon.runDir];
    for (const b of binds) if (b !== '/dev/null' && b !== '/sys/fs/bpf') mkdirSync(join(root, b), { recursive: true });
    mkdirSync(join(root, 'dev'));
    writeFileSync(join(root, 'dev', 'null'), '');
    // Nothing else is there: no /usr, no /lib, no /etc, no node, no libelf.
    assert.deepEqual(readdirSync(root).sort(), [...new Set(['opt', ...binds.map((b) => b.split('/')[1]!)])].sort());

    const cid = `cid-${scope.prefix}-chroot`;
    const env = (command: string): Record<string, string> => ({
      CNI_COMMAND: command, CNI_CONTAINERID: cid, CNI_NETNS: pod.netnsPath, CNI_IFNAME: 'eth0',
      CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=chroot-pod;K8S_POD_UID=uid-chroot-pod',
      CNI_PATH: '/opt/cni/bin',
    });
    const prevResult = prevResultOf(pod);
    const config = pluginConfig(daemon, 'testnet', prevResult);
    const pins = new PinLayout(daemon.pinRoot).attachment('testnet', cid, 'eth0');
    const ours = () => (['ingress', 'egress'] as const).flatMap((d) => bpf.query(pod.hostIfindex, d).filter((h) => h.ours).map((h) => h.name));
    let added = false;
    scope.defer('CNI DEL in the chroot', () => {
      if (added) runInChroot(root, binds, env('DEL'), config);
    });

    const version = runInChroot(root, binds, { CNI_COMMAND: 'VERSION' }, { cniVersion: '1.0.0' });
    assert.equal(version.code, 0, version.stdout + version.stderr);
    assert.equal(version.stdout, JSON.stringify({ cniVersion: '1.0.0', supportedVersions: SUPPORTED }) + '\n');

    assert.deepEqual(ours(), []);
    added = true;
    const add = runInChroot(root, binds, env('ADD'), config);
    assert.equal(add.code, 0, add.stdout + add.stderr);
    assert.equal(add.stdout, JSON.stringify(prevResult) + '\n');
    assert.deepEqual(ours(), ['int_ingress', 'int_egress'], 'our programs on the host veth after ADD');
    assert.deepEqual(readdirSync(pins).sort(), ['egress', 'ingress'], 'the attachment is pinned');
    // The notice reached the daemon through its socket (bind-mounted like a node's /run).
    let known = false;
    for (let i = 0; i < 100 && !known; i++) {
      const list = (await daemon.api<{ attachments: Array<{ containerId: string; ifname: string }> }>('GET', '/v1/attachments')).json.attachments;
      known = list.some((a) => a.containerId === cid && a.ifname === 'eth0');
      if (!known) await sleep(50);
    }
    assert.ok(known, 'the daemon knows the attachment made in the chroot');

    const check = runInChroot(root, binds, env('CHECK'), config);
    assert.equal(check.code, 0, check.stdout + check.stderr);
    assert.equal(check.stdout, '');

    const del = runInChroot(root, binds, env('DEL'), pluginConfig(daemon, 'testnet'));
    assert.equal(del.code, 0, del.stdout + del.stderr);
    assert.equal(del.stdout, '');
    added = false;
    assert.deepEqual(ours(), [], 'our programs gone from the host veth after DEL');
    assert.equal(existsSync(pins), false, 'the attachment pins are gone');
  });
});

test('without its runtime the launcher answers with a CNI error, and DEL still succeeds', async () => {
  requireBuilt();
  await withScope(async (scope) => {
    const dir = realpathSync(tempDir(scope, 'nort'));
    const launcher = join(dir, LAUNCHER);
    copyFileSync(join(PLUGIN_DIST, LAUNCHER), launcher);
    chmodSync(launcher, 0o755);
    const run = (command: string): CniResult => {
      const r = spawnSync(launcher, [], { env: { CNI_COMMAND: command }, input: '{"cniVersion":"1.0.0"}', encoding: 'utf8', timeout: 10_000 });
      return { code: r.status, stdout: r.stdout, stderr: r.stderr };
    };
    const error = (details: string) => JSON.stringify({
      cniVersion: '1.0.0', code: 999, msg: 'int-host-reporter: cannot start its runtime', details,
    }) + '\n';

    // No int-host-reporter.d at all.
    for (const command of ['ADD', 'VERSION', 'CHECK']) {
      assert.deepEqual(run(command), { code: 1, stdout: error(`${dir}/int-host-reporter.d/current: No such file or directory`), stderr: '' }, command);
    }
    assert.deepEqual(run('DEL'), { code: 0, stdout: '', stderr: '' });

    // A build dir with its loader but without node (a removed runtime file).
    const build = join(dir, 'int-host-reporter.d', '0123456789abcdef');
    mkdirSync(join(build, 'lib'), { recursive: true });
    copyFileSync(join(PLUGIN_DIST, 'int-host-reporter.d', 'current', 'lib', 'ld-linux-x86-64.so.2'), join(build, 'lib', 'ld-linux-x86-64.so.2'));
    chmodSync(join(build, 'lib', 'ld-linux-x86-64.so.2'), 0o755);
    symlinkSync('0123456789abcdef', join(dir, 'int-host-reporter.d', 'current'));
    assert.ok(lstatSync(join(dir, 'int-host-reporter.d', 'current')).isSymbolicLink());
    assert.deepEqual(run('ADD'), { code: 1, stdout: error(`${build}/node: No such file or directory`), stderr: '' });
    assert.deepEqual(run('DEL'), { code: 0, stdout: '', stderr: '' });
  });
});

test("the host's loader and node settings do not reach the plugin's runtime", () => {
  requireBuilt();
  const r = spawnSync(join(PLUGIN_DIST, LAUNCHER), [], {
    env: { CNI_COMMAND: 'VERSION', LD_PRELOAD: '/nonexistent/libpreload.so', LD_LIBRARY_PATH: '/nonexistent', NODE_OPTIONS: '--require=/nonexistent/hook.js' },
    input: '{"cniVersion":"1.0.0"}', encoding: 'utf8', timeout: 10_000,
  });
  assert.deepEqual({ code: r.status, stdout: r.stdout, stderr: r.stderr },
    { code: 0, stdout: JSON.stringify({ cniVersion: '1.0.0', supportedVersions: SUPPORTED }) + '\n', stderr: '' });
});
