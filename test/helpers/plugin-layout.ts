// Plugin-source dirs for the CNI installer's tests, made from the real build (dist/cni) the way
// the layout contract describes them: a launcher, int-host-reporter.d/<build>/ and `current`.
// A test gets its own source with the build id it chooses, so it can make builds X and Y, or
// break one (a file removed, a program of another architecture) without touching dist/.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  chmodSync, copyFileSync, cpSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { join } from 'node:path';

export const ROOT = join(__dirname, '..', '..');
export const DIST_CNI = join(ROOT, 'dist', 'cni');
export const LAUNCHER = 'int-host-reporter';
export const PLUGIN_DIR = 'int-host-reporter.d';
/** The native modules in a build dir, sorted: the bpf addon and the netlink module (the daemon's udp module is not the plugin's). */
export const NATIVE_MODULES = ['int_host_reporter.node', 'int_host_reporter_netlink.node'];

/** The launcher and build dir of dist/cni; fails the test saying how to make them when missing. */
export function distLayout(): { launcher: string; buildDir: string; build: string } {
  const current = join(DIST_CNI, PLUGIN_DIR, 'current');
  const launcher = join(DIST_CNI, LAUNCHER);
  if (!existsSync(launcher) || !existsSync(current)) {
    assert.fail(`${DIST_CNI} holds no plugin layout (launcher + ${PLUGIN_DIR}/current): run "node build.mjs" (steps bundle and runtime)`);
  }
  const build = readlinkSync(current);
  const bundle = readFileSync(join(DIST_CNI, PLUGIN_DIR, build, 'plugin.cjs'), 'utf8');
  if (!bundle.includes('--preflight')) assert.fail(`${DIST_CNI}'s plugin.cjs predates the --preflight mode: run "node build.mjs bundle"`);
  return { launcher, build, buildDir: join(DIST_CNI, PLUGIN_DIR, build) };
}

/**
 * Writes a plugin source at `dir`: dist/cni's launcher and build files under the build id `build`.
 * `variant` is appended to plugin.cjs as a comment, so two builds differ in content as real ones do.
 */
export function makePluginSource(dir: string, build: string, variant?: string): string {
  const dist = distLayout();
  mkdirSync(join(dir, PLUGIN_DIR), { recursive: true });
  cpSync(dist.buildDir, join(dir, PLUGIN_DIR, build), { recursive: true });
  if (variant) writeFileSync(join(dir, PLUGIN_DIR, build, 'plugin.cjs'), `${readFileSync(join(dist.buildDir, 'plugin.cjs'), 'utf8')}\n// ${variant}\n`);
  copyFileSync(dist.launcher, join(dir, LAUNCHER));
  chmodSync(join(dir, LAUNCHER), 0o755);
  symlinkSync(build, join(dir, PLUGIN_DIR, 'current'));
  return dir;
}

/** A valid 64-bit little-endian ELF header of an executable for aarch64 (e_machine 183), nothing else. */
export function aarch64Elf(): Buffer {
  const h = Buffer.alloc(64);
  h.write('\x7fELF', 0, 'latin1');
  h[4] = 2; // ELFCLASS64
  h[5] = 1; // little endian
  h[6] = 1; // EV_CURRENT
  h.writeUInt16LE(2, 16); // ET_EXEC
  h.writeUInt16LE(183, 18); // EM_AARCH64
  h.writeUInt32LE(1, 20);
  h.writeBigUInt64LE(0x400000n, 24); // entry
  h.writeBigUInt64LE(64n, 32); // phoff
  h.writeUInt16LE(64, 52); // ehsize
  h.writeUInt16LE(56, 54); // phentsize
  h.writeUInt16LE(64, 58); // shentsize
  return h;
}

/**
 * Every entry under `dir` (recursively) as "dir <mode>", "link -> <target>" or
 * "file <mode> <sha256 prefix>", keyed by relative path: a whole tree in one deepEqual.
 */
export function tree(dir: string, rel = ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(join(dir, rel)).sort()) {
    const r = rel ? `${rel}/${name}` : name;
    const p = join(dir, r);
    const st = lstatSync(p);
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isSymbolicLink()) out[r] = `link -> ${readlinkSync(p)}`;
    else if (st.isDirectory()) {
      out[r] = `dir ${mode}`;
      Object.assign(out, tree(dir, r));
    } else out[r] = `file ${mode} ${createHash('sha256').update(readFileSync(p)).digest('hex').slice(0, 16)}`;
  }
  return out;
}

/** The tree a bin dir must have after installing `source`: its launcher, its build and `current`. */
export function expectedInstall(source: string, build: string): Record<string, string> {
  const src = tree(source);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(src)) {
    if (k === LAUNCHER || k === PLUGIN_DIR || k === `${PLUGIN_DIR}/current` || k.startsWith(`${PLUGIN_DIR}/${build}`)) out[k] = v;
  }
  return out;
}
