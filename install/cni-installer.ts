// The CNI installer: puts the int-host-reporter chained plugin on a node and keeps it there.
//
//   1. install the plugin's self-contained layout into the CNI bin dir (a launcher and a build dir
//      with its own node, libraries, bundle, addon and BPF object; see "plugin files" below), a
//      new build going live only by renames, so an ADD that starts meanwhile runs the old build or
//      the new one, never half of one;
//   2. preflight it: run it the way a runtime will (CNI_COMMAND=VERSION, then its --preflight
//      self-test, with an empty environment); a plugin that cannot start would fail every pod of
//      the node, so one that fails is never chained: we report why and try again later;
//   3. find the network configuration the runtime uses, the way libcni's callers (containerd's
//      go-cni, CRI-O's ocicni, the old kubelet) do: every .conf/.conflist/.json file of the dir,
//      sorted by name byte-wise, the first that loads as a valid config wins;
//   4. make sure that config ends with exactly one {"type":"int-host-reporter", ...} entry, by
//      splicing text: nothing else in the file changes, not even whitespace;
//   5. optionally keep watching the dir and put the entry back when the primary CNI rewrites its
//      file without it (Calico, Flannel, Cilium and others do, on every restart);
//   6. say where it stands in a status file (the daemon's /readyz reads it).
//
// We never own the primary's config: we add one entry and take exactly that entry out again. We
// never rename, delete or reformat a file that is not ours.
//
// Single-plugin .conf files. libcni turns one into a list of one; chaining needs a list, so we
// write one. Where? "10-flannel.conf" sorts *before* "10-flannel.conflist", so a list with the
// same stem would never be picked. We write a "shadow" list whose name sorts just before the .conf:
// "<stem>-int-host-reporter.conflist" ('-' is 0x2d, '.' is 0x2e, so "<stem>-…" < "<stem>.…"). Any
// file between the two also sorted before the .conf, and the .conf was the first valid one, so
// those are not valid configs: the shadow becomes the runtime's pick. The shadow holds exactly what
// libcni's ConfListFromConf would build (list name and cniVersion taken from the .conf, the .conf
// object verbatim as the first plugin) plus our entry. Why not rename the .conf out of the way?
// Because the .conf stays the primary's file, untouched: tools and readiness probes that look for
// it keep working (renaming it broke Istio's redeploys, istio/cni#85, and OpenShift's probe,
// istio/istio#20202), and uninstall restores the original by deleting the shadow. The price: the
// shadow is a copy, so when the primary rewrites the .conf the copy is stale until we regenerate it
// (the watch does, within a debounce; the periodic re-check catches missed events), and when the
// primary deletes the .conf we delete the shadow. The "-int-host-reporter.conflist" suffix is ours.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync, closeSync, constants, copyFileSync, existsSync, fchmodSync, fchownSync, fsyncSync, lstatSync, mkdirSync, openSync,
  readdirSync, readFileSync, readlinkSync, readSync, realpathSync, renameSync, rmSync, statSync, symlinkSync, unlinkSync,
  watch as fsWatch, writeFileSync, writeSync, type FSWatcher,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { LATEST_VERSION as LATEST_CNI_VERSION, SUPPORTED_VERSIONS as PLUGIN_CNI_VERSIONS } from '../plugin/result';
import { arrayElements, leadingWs, lineIndent, topLevelValue } from './json-splice';
import { errnoCode } from '../protocol/errno';
import { processAlive } from '../protocol/process';

export const PLUGIN_TYPE = 'int-host-reporter';
/** The file the runtime execs: the launcher. */
export const PLUGIN_LAUNCHER = 'int-host-reporter';
/** Beside it: the builds and the `current` symlink. */
export const PLUGIN_DIR = 'int-host-reporter.d';
export const CURRENT_LINK = 'current';
/** What a build dir must hold (its lib/ holds more: the loader is the one the launcher execs). */
export const BUILD_FILES = ['node', 'plugin.cjs', 'int_host_reporter.node', 'int_host_reporter_netlink.node', 'datapath.bpf.o', 'lib/ld-linux-x86-64.so.2'] as const;
/** The previous layout's files beside a `#!/usr/bin/env node` launcher; ours, removed on upgrade. */
export const OLD_LAYOUT_FILES = ['int_host_reporter.node', 'datapath.bpf.o'] as const;
export const SHADOW_SUFFIX = '-int-host-reporter.conflist';
/** What libcni's callers load (containerd go-cni and CRI-O ocicni both pass these three). */
export const CONFIG_EXTENSIONS = ['.conf', '.conflist', '.json'];
/** Our temp files: ".<name>.ihr-tmp-<pid>-<n>"; the extension is not a config one, so libcni ignores them. */
const TMP_MARK = '.ihr-tmp-';
/** prevResult (and so chaining) appeared in spec 0.3.0. */
const MIN_CHAIN_VERSION: Version = [0, 3, 0];

export const DEFAULT_CNI_CONF_DIR = '/etc/cni/net.d';
export const DEFAULT_CNI_BIN_DIR = '/opt/cni/bin';
export const DEFAULT_PLUGIN_SOURCE = '/opt/int-host-reporter/cni';
export const DEFAULT_STATUS_FILE = '/run/int-host-reporter/cni-installer.json';
/** Generous: node starts in ~0.1 s, but a loaded node may be slow to page in 100 MB the first time. */
export const DEFAULT_PREFLIGHT_TIMEOUT_MS = 20_000;
/**
 * How long a replaced build stays after `current` moved away from it: an exec that resolved it just
 * before the swap still opens its files (the loader, node, the bundle, later the addon) for a while.
 */
export const DEFAULT_OLD_BUILD_GRACE_MS = 10_000;

/** pino-compatible, so the CLI passes pino and tests a silent one. */
export interface Log {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}
export const silentLog: Log = { info() {}, warn() {}, error() {}, debug() {} };

export type JsonObject = Record<string, unknown>;

/** A problem the operator must fix; `code` is the CLI's exit status. */
export class InstallError extends Error {
  constructor(message: string, readonly code = 1) {
    super(message);
    this.name = 'InstallError';
  }
}
export const EXIT_REFUSED = 3;
export const EXIT_NO_PRIMARY = 4;
export const EXIT_PREFLIGHT = 5;

/** The file changed between our read and our rename: somebody else wrote it; read again. */
class ConcurrentChange extends Error {}

export interface InstallerOptions {
  confDir: string;
  binDir: string;
  /** where the plugin's layout is (the image's copy of dist/cni) */
  pluginSource: string;
  /** how long each preflight run may take (default DEFAULT_PREFLIGHT_TIMEOUT_MS) */
  preflightTimeoutMs?: number;
  /** how long a replaced build is kept (default DEFAULT_OLD_BUILD_GRACE_MS) */
  oldBuildGraceMs?: number;
  /** extra fields of our entry, e.g. {"socketPath": "..."} */
  pluginConfig?: JsonObject;
  log?: Log;
}

// --- versions ---------------------------------------------------------------------------

type Version = [number, number, number];

function parseVersion(v: string): Version | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(v);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

function versionLess(a: Version, b: Version): boolean {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i] < b[i];
  return false;
}

/**
 * Why this config cannot carry a chained plugin, or undefined when it can. Every version a runtime
 * may pick (cniVersion, and the cniVersions list of spec 1.1) must be at least 0.3.0: an old runtime
 * reads only cniVersion, a new one picks from both.
 */
export function chainingProblem(config: JsonObject): string | undefined {
  const versions: unknown[] = [];
  if (config.cniVersion !== undefined) versions.push(config.cniVersion);
  if (Array.isArray(config.cniVersions)) versions.push(...config.cniVersions);
  if (versions.length === 0) return 'it has no cniVersion, which means 0.2.0, and chained plugins need 0.3.0 or later';
  for (const v of versions) {
    const parsed = typeof v === 'string' ? parseVersion(v) : undefined;
    if (!parsed) return `its cniVersion ${JSON.stringify(v)} is not a version of the form X.Y.Z`;
    if (versionLess(parsed, MIN_CHAIN_VERSION)) {
      return `its cniVersion "${v}" is older than 0.3.0, the first version with chained plugins (prevResult)`;
    }
  }
  return undefined;
}

// --- our entry --------------------------------------------------------------------------

const RUNTIME_FIELDS = ['name', 'cniVersion', 'cniVersions', 'prevResult', 'runtimeConfig', 'args', 'capabilities'];

/** Our plugin entry: type first, then the extra fields; refuses fields the runtime owns. */
export function buildEntry(pluginConfig: JsonObject = {}): JsonObject {
  if (typeof pluginConfig !== 'object' || pluginConfig === null || Array.isArray(pluginConfig)) {
    throw new InstallError('--plugin-config must be a JSON object', 2);
  }
  if (pluginConfig.type !== undefined && pluginConfig.type !== PLUGIN_TYPE) {
    throw new InstallError(`--plugin-config: field "type" must be "${PLUGIN_TYPE}" (or absent), got ${JSON.stringify(pluginConfig.type)}`, 2);
  }
  for (const key of Object.keys(pluginConfig)) {
    if (RUNTIME_FIELDS.includes(key) && key !== 'capabilities') {
      throw new InstallError(`--plugin-config: field "${key}" is set by the runtime or by the network list, not by a plugin entry`, 2);
    }
    if (key.startsWith('cni.dev/')) throw new InstallError(`--plugin-config: keys starting "cni.dev/" are reserved (got "${key}")`, 2);
  }
  const { type: _ignored, ...rest } = pluginConfig;
  return { type: PLUGIN_TYPE, ...rest };
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isOurs(plugin: unknown): boolean {
  return isObject(plugin) && plugin.type === PLUGIN_TYPE;
}

/** Deep equality where key order does not matter (a primary that re-serialises may reorder our keys). */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => sameJson(x, b[i]));
  }
  if (!isObject(a) || !isObject(b)) return false;
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && sameJson(a[k], b[k]));
}

// --- reading the config dir like libcni's callers ---------------------------------------

/** Go's filepath.Ext: from the last dot of the name (a leading dot counts too, unlike node's extname). */
function goExt(name: string): string {
  const i = name.lastIndexOf('.');
  return i >= 0 ? name.slice(i) : '';
}

/** Go's sort.Strings order: byte-wise on UTF-8. */
function byteCompare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

export function isShadowName(name: string): boolean {
  return name.endsWith(SHADOW_SUFFIX);
}

export function shadowNameFor(confName: string): string {
  return confName.slice(0, confName.length - goExt(confName).length) + SHADOW_SUFFIX;
}

/** The config files of the dir as libcni's ConfFiles lists them (directories skipped), sorted. */
export function configFiles(dir: string): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return entries
    .filter((e) => !e.isDirectory() && CONFIG_EXTENSIONS.includes(goExt(e.name)))
    .map((e) => e.name)
    .sort(byteCompare);
}

export interface ConfigFile {
  name: string;
  path: string;
  kind: 'conflist' | 'conf';
  text: string;
  json: JsonObject;
}

function stringField(obj: JsonObject, key: string): string | undefined {
  const v = obj[key];
  if (v !== undefined && typeof v !== 'string') return `field "${key}" is not a string`;
  return undefined;
}

function boolish(obj: JsonObject, key: string): string | undefined {
  const v = obj[key];
  if (v === undefined || typeof v === 'boolean') return undefined;
  if (typeof v === 'string' && /^(1|t|T|TRUE|true|True|0|f|F|FALSE|false|False)$/.test(v)) return undefined;
  return `field "${key}" is not a boolean`;
}

/** What libcni's ConfFromBytes refuses in one plugin object. */
function pluginProblem(p: unknown): string | undefined {
  if (!isObject(p)) return 'is not an object';
  if (p.type === undefined || p.type === '') return "is missing 'type'";
  return stringField(p, 'type') ?? stringField(p, 'name') ?? stringField(p, 'cniVersion');
}

/** What libcni's ConfListFromBytes refuses; undefined when the list loads. */
export function conflistProblem(json: unknown): string | undefined {
  if (!isObject(json)) return 'is not a JSON object';
  if (json.name === undefined) return 'has no name';
  const bad = stringField(json, 'name') ?? stringField(json, 'cniVersion') ?? boolish(json, 'disableCheck') ?? boolish(json, 'disableGC');
  if (bad) return bad;
  if (json.cniVersions !== undefined && !(Array.isArray(json.cniVersions) && json.cniVersions.every((v) => typeof v === 'string'))) {
    return 'field "cniVersions" is not a list of strings';
  }
  if (json.plugins === undefined) return "has no 'plugins' key";
  if (!Array.isArray(json.plugins)) return "field 'plugins' is not a list";
  if (json.plugins.length === 0) return 'has no plugins in its list';
  for (let i = 0; i < json.plugins.length; i++) {
    const problem = pluginProblem(json.plugins[i]);
    if (problem) return `plugin ${i} ${problem}`;
  }
  return undefined;
}

/** Reads one file as libcni would load it; a reason instead when it would be skipped. */
export function loadConfigFile(dir: string, name: string): ConfigFile | { name: string; skipped: string } {
  const path = join(dir, name);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return { name, skipped: `cannot be read: ${(err as Error).message}` };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return { name, skipped: `is not JSON: ${(err as Error).message}` };
  }
  if (goExt(name) === '.conflist') {
    const problem = conflistProblem(json);
    if (problem) return { name, skipped: problem };
    return { name, path, kind: 'conflist', text, json: json as JsonObject };
  }
  // .conf/.json: one plugin; a list saved as .conf has no top-level type and is skipped, as in go-cni.
  const problem = pluginProblem(json);
  if (problem) return { name, skipped: `is not a single-plugin config: it ${problem}` };
  return { name, path, kind: 'conf', text, json: json as JsonObject };
}

export interface PrimaryLookup {
  primary?: ConfigFile;
  /** files before the primary that libcni would skip too, with why */
  skipped: { name: string; reason: string }[];
}

/**
 * The primary CNI's config: the first valid config file in libcni's order, leaving out our own
 * shadow lists, and lists that hold nothing but our plugin (chaining into ourselves makes no sense).
 * With `includeShadows` it answers "what would the runtime load now" instead.
 */
export function findPrimary(dir: string, opts: { includeShadows?: boolean } = {}): PrimaryLookup {
  const skipped: PrimaryLookup['skipped'] = [];
  for (const name of configFiles(dir)) {
    if (!opts.includeShadows && isShadowName(name)) continue;
    const loaded = loadConfigFile(dir, name);
    if ('skipped' in loaded) {
      skipped.push({ name, reason: loaded.skipped });
      continue;
    }
    if (loaded.kind === 'conflist' && (loaded.json.plugins as unknown[]).every(isOurs)) {
      skipped.push({ name, reason: `holds only the ${PLUGIN_TYPE} plugin` });
      continue;
    }
    return { primary: loaded, skipped };
  }
  return { skipped };
}

// --- editing a conflist by splicing text ------------------------------------------------

function pluginsArray(text: string): { open: number; elements: { start: number; end: number; value: unknown }[] } {
  const span = topLevelValue(text, 'plugins');
  if (!span || text[span.start] !== '[') throw new InstallError('the config has no "plugins" list');
  const elements = arrayElements(text, span.start).map((e) => ({ ...e, value: JSON.parse(text.slice(e.start, e.end)) as unknown }));
  return { open: span.start, elements };
}

/** Removes every entry of ours from the list; the text around them stays byte for byte. */
export function removeOurEntries(text: string): string {
  for (;;) {
    const { open, elements } = pluginsArray(text);
    let k = elements.length - 1;
    while (k >= 0 && !isOurs(elements[k].value)) k--;
    if (k < 0) return text;
    if (elements.length === 1) {
      const close = elements[0].end + (text.slice(elements[0].end).search(/\]/));
      text = text.slice(0, open + 1) + text.slice(close);
    } else if (k > 0) {
      // from the end of the element before ours to the end of ours: takes the ',' and our whitespace
      text = text.slice(0, elements[k - 1].end) + text.slice(elements[k].end);
    } else {
      text = text.slice(0, elements[0].start) + text.slice(elements[1].start);
    }
  }
}

/** Our entry as text, shaped like the element it follows (one line in a one-line list, indented otherwise). */
function formatEntry(entry: JsonObject, text: string, open: number, lastStart: number): { sep: string; body: string } {
  const ws = leadingWs(text, lastStart);
  if (!ws.includes('\n')) return { sep: ws, body: JSON.stringify(entry) };
  const indent = ws.slice(ws.lastIndexOf('\n') + 1);
  const outer = lineIndent(text, open);
  const unit = indent.startsWith(outer) && indent.length > outer.length ? indent.slice(outer.length) : '  ';
  return { sep: ws, body: JSON.stringify(entry, null, unit).replace(/\n/g, '\n' + indent) };
}

/**
 * The list text with exactly one entry of ours, last. Unchanged text (same string) when that is
 * already so, whatever the spelling of our entry; otherwise every other byte is kept.
 */
export function upsertEntry(text: string, entry: JsonObject): string {
  const { elements } = pluginsArray(text);
  const ours = elements.filter((e) => isOurs(e.value));
  const last = elements[elements.length - 1];
  if (ours.length === 1 && ours[0] === last && sameJson(last.value, entry)) return text;
  const stripped = removeOurEntries(text);
  const { open, elements: rest } = pluginsArray(stripped);
  if (rest.length === 0) throw new InstallError('the config has no plugin of its own to chain after');
  const tail = rest[rest.length - 1];
  const { sep, body } = formatEntry(entry, stripped, open, tail.start);
  return stripped.slice(0, tail.end) + ',' + sep + body + stripped.slice(tail.end);
}

/** The list libcni would make of a single-plugin config (ConfListFromConf), with our entry after it. */
export function buildShadow(conf: ConfigFile, entry: JsonObject): string {
  const indent = (s: string, by: string) => by + s.replace(/\n/g, '\n' + by);
  const head = [
    `  "cniVersion": ${JSON.stringify(conf.json.cniVersion ?? '')},`,
    `  "name": ${JSON.stringify(conf.json.name ?? '')},`,
  ];
  // The .conf object goes in verbatim (newlines never occur inside JSON strings, so indenting is safe).
  return ['{', ...head, '  "plugins": [', indent(conf.text.trim(), '    ') + ',', indent(JSON.stringify(entry, null, 2), '    '), '  ]', '}', ''].join('\n');
}

// --- atomic files -----------------------------------------------------------------------

let tmpCounter = 0;

function tmpPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}${TMP_MARK}${process.pid}-${++tmpCounter}`);
}

function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    fsyncSync(fd);
  } catch (err) {
    // best effort: some filesystems refuse fsync on a directory
    if (!['EINVAL', 'ENOTSUP', 'EOPNOTSUPP'].includes(errnoCode(err) ?? '')) throw err;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function readOrNull(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

export interface AtomicWriteOptions {
  mode: number;
  uid?: number;
  gid?: number;
  /** compare-and-swap: the content the file must still have (null: must not exist) right before the rename */
  expect?: string | null;
}

/** Writes a temp file beside `path` (same mode and owner), fsyncs it, renames it over `path`. */
export function writeFileAtomic(path: string, data: string | Buffer, opts: AtomicWriteOptions): void {
  const tmp = tmpPathFor(path);
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, opts.mode & 0o7777);
  try {
    try {
      const buf = typeof data === 'string' ? Buffer.from(data) : data;
      for (let off = 0; off < buf.length;) off += writeSync(fd, buf, off, buf.length - off);
      fchmodSync(fd, opts.mode & 0o7777); // the umask may have taken bits away
      if (opts.uid !== undefined && opts.gid !== undefined) fchownSync(fd, opts.uid, opts.gid);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (opts.expect !== undefined && readOrNull(path) !== opts.expect) throw new ConcurrentChange(path);
    renameSync(tmp, path);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch (unlinkErr) {
      if (errnoCode(unlinkErr) !== 'ENOENT') throw unlinkErr; // ENOENT: already renamed or never created
    }
    throw err;
  }
  fsyncDir(dirname(path));
}

/** Temp files of ours that a killed run left behind (never another process's: the pid is checked). */
export function removeStaleTemps(dir: string): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return removed;
    throw err;
  }
  for (const name of names) {
    const i = name.lastIndexOf(TMP_MARK);
    if (!name.startsWith('.') || i < 0) continue;
    const pid = Number(name.slice(i + TMP_MARK.length).split('-')[0]);
    if (pid === process.pid) continue;
    if (Number.isInteger(pid) && pid > 0 && processAlive(pid)) continue;
    rmSync(join(dir, name), { recursive: true, force: true }); // a file, or a half-copied build dir
    removed.push(name);
  }
  return removed;
}

// --- plugin files: the self-contained layout ---------------------------------------------
//
// What we install (the same shape as the plugin source, the image's dist/cni):
//   <bin>/int-host-reporter                     static launcher: execs the build `current` names
//   <bin>/int-host-reporter.d/current -> <id>   relative symlink
//   <bin>/int-host-reporter.d/<id>/             node, lib/, plugin.cjs, the addon, the BPF object
// A build id is a hash of the build's contents, so a build dir with the right name is complete
// unless somebody damaged it (repaired below from the source, file by file).
//
// An upgrade never leaves a moment when <bin>/int-host-reporter cannot run: the new build dir
// appears by rename, `current` is swapped by rename, then the launcher; the old build is removed
// only a grace period after the swap (an exec that resolved it just before still reads it), by a
// later pass. Before all that, the new build passes the preflight from a staging copy of the
// launcher whose `current` points at it, so a build that cannot run on this host never becomes
// the one the runtime execs.

function digest(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function readlinkOrNull(path: string): string | null {
  try {
    return readlinkSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EINVAL') return null; // EINVAL: not a symlink
    throw err;
  }
}

function readBufferOrNull(path: string): Buffer | null {
  try {
    return readFileSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** A build id is one plain file name; never ".", "..", a path or one of our temp names. */
function isBuildName(name: string): boolean {
  return /^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(name) && !name.includes(TMP_MARK);
}

export interface PluginSource {
  launcher: Buffer;
  launcherMode: number;
  /** the build id `current` names */
  build: string;
  buildDir: string;
}

/** Reads the plugin source and checks that it holds a complete layout. */
export function readPluginSource(dir: string): PluginSource {
  const launcherPath = join(dir, PLUGIN_LAUNCHER);
  const current = join(dir, PLUGIN_DIR, CURRENT_LINK);
  const build = readlinkOrNull(current);
  if (build === null) {
    throw new InstallError(`plugin source ${dir} has no ${PLUGIN_DIR}/${CURRENT_LINK} symlink (it must hold the launcher and a build dir, as "node build.mjs" makes dist/cni)`);
  }
  if (!isBuildName(build)) throw new InstallError(`plugin source ${current} points at "${build}", which is not a build dir name`);
  const buildDir = join(dir, PLUGIN_DIR, build);
  const missing = [PLUGIN_LAUNCHER, ...BUILD_FILES.map((f) => join(PLUGIN_DIR, build, f))].filter((f) => !existsSync(join(dir, f)));
  if (missing.length) throw new InstallError(`plugin source ${dir} lacks ${missing.join(', ')}`);
  return { launcher: readFileSync(launcherPath), launcherMode: statSync(launcherPath).mode & 0o777, build, buildDir };
}

/** The build the installed launcher runs now (what `current` names), or null. */
export function installedBuild(binDir: string): string | null {
  const build = readlinkOrNull(join(binDir, PLUGIN_DIR, CURRENT_LINK));
  return build !== null && isBuildName(build) ? build : null;
}

/** Copies a file to a temp name beside dst (mode set, data synced) and renames it over dst. */
function copyFileAtomic(src: string, dst: string, mode: number): void {
  const tmp = tmpPathFor(dst);
  try {
    copyFileSync(src, tmp);
    chmodSync(tmp, mode);
    const fd = openSync(tmp, constants.O_RDONLY);
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, dst);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** Copies a directory tree to dst (which must not exist), keeping modes and symlinks. */
function copyTree(src: string, dst: string): void {
  mkdirSync(dst, { mode: statSync(src).mode & 0o777 });
  chmodSync(dst, statSync(src).mode & 0o777);
  for (const e of readdirSync(src, { withFileTypes: true })) {
    const from = join(src, e.name);
    const to = join(dst, e.name);
    if (e.isSymbolicLink()) symlinkSync(readlinkSync(from), to);
    else if (e.isDirectory()) copyTree(from, to);
    else if (e.isFile()) {
      copyFileSync(from, to);
      chmodSync(to, statSync(from).mode & 0o777);
      const fd = openSync(to, constants.O_RDONLY);
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
  }
  fsyncDir(dst);
}

/** Copies a build dir into place under a temp name, then renames it: it appears complete or not at all. */
function copyTreeAtomic(src: string, dst: string): void {
  const tmp = tmpPathFor(dst);
  try {
    copyTree(src, tmp);
    renameSync(tmp, dst);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  fsyncDir(dirname(dst));
}

/**
 * Puts back what differs from the source in an installed build (missing, another type, size, mode
 * or link target), each file by temp + rename. Cheap: stats only, no reading. Returns the paths.
 */
function repairTree(src: string, dst: string, rel = ''): string[] {
  const repaired: string[] = [];
  for (const e of readdirSync(src, { withFileTypes: true })) {
    const from = join(src, e.name);
    const to = join(dst, e.name);
    const name = rel ? `${rel}/${e.name}` : e.name;
    let have;
    try {
      have = lstatSync(to);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
      have = undefined;
    }
    if (e.isSymbolicLink()) {
      const target = readlinkSync(from);
      if (have?.isSymbolicLink() && readlinkSync(to) === target) continue;
      const tmp = tmpPathFor(to);
      symlinkSync(target, tmp);
      if (have?.isDirectory()) rmSync(to, { recursive: true, force: true });
      renameSync(tmp, to);
    } else if (e.isDirectory()) {
      if (have?.isDirectory()) {
        repaired.push(...repairTree(from, to, name));
        continue;
      }
      rmSync(to, { force: true });
      copyTreeAtomic(from, to);
    } else if (e.isFile()) {
      const want = statSync(from);
      if (have?.isFile() && have.size === want.size && (have.mode & 0o777) === (want.mode & 0o777)) continue;
      if (have?.isDirectory()) rmSync(to, { recursive: true, force: true });
      copyFileAtomic(from, to, want.mode & 0o777);
    } else {
      continue;
    }
    repaired.push(name);
  }
  return repaired;
}

// --- preflight --------------------------------------------------------------------------

/** ELF e_machine values of the architectures Linux nodes run, for naming a mismatch. */
const ELF_MACHINES: Record<number, string> = { 3: 'i386', 21: 'ppc64', 22: 's390x', 40: 'arm', 62: 'x86-64', 183: 'aarch64', 243: 'riscv64' };
const NODE_ARCH_MACHINE: Record<string, number> = { ia32: 3, ppc64: 21, s390x: 22, arm: 40, x64: 62, arm64: 183, riscv64: 243 };

/** "x is an ELF program for aarch64, this machine is x86-64", or undefined (right machine, or not ELF). */
export function elfMachineProblem(path: string): string | undefined {
  const head = Buffer.alloc(20);
  let fd: number | undefined;
  try {
    fd = openSync(path, constants.O_RDONLY);
    if (readSync(fd, head, 0, 20, 0) < 20) return undefined;
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT' || code === 'EISDIR') return undefined; // nothing to run there
    return `cannot read ${path}: ${(err as Error).message}`;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  if (head.readUInt32BE(0) !== 0x7f454c46) return undefined;
  const machine = head[5] === 2 ? head.readUInt16BE(18) : head.readUInt16LE(18);
  const host = NODE_ARCH_MACHINE[process.arch];
  if (host === undefined || machine === host) return undefined;
  return `${path} is an ELF program for ${ELF_MACHINES[machine] ?? `machine ${machine}`}, this machine is ${ELF_MACHINES[host]}`;
}

export interface PreflightOutcome {
  ok: boolean;
  /** why it failed, one line; empty when ok */
  reason: string;
}

/** The last bytes of a program's output, on one line, for a log message. */
function tail(text: string, max = 600): string {
  // a foreign binary run as a shell script echoes its own bytes: keep the line printable
  const t = text.replace(/[^\x20-\x7e\u00a0-\ufffc]+/g, ' ').replace(/\s+/g, ' ').trim();
  return t.length > max ? '…' + t.slice(t.length - max) : t;
}

/** Runs the launcher as the runtime would (no environment at all beyond `env`), output captured. */
function runLauncher(launcher: string, args: string[], env: Record<string, string>, input: string, timeoutMs: number): { problem?: string; stdout: string; status: number } {
  const r = spawnSync(launcher, args, {
    env, input, cwd: '/', encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 1 << 20,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const what = `${[...Object.entries(env).map(([k, v]) => `${k}=${v}`), launcher, ...args].join(' ')}`;
  // EPIPE: it exited without reading its stdin; its status and output say why
  const err = (r.error as NodeJS.ErrnoException | undefined)?.code === 'EPIPE' ? undefined : (r.error as NodeJS.ErrnoException | undefined);
  if (err?.code === 'ETIMEDOUT') return { problem: `${what} did not finish within ${timeoutMs} ms`, stdout: '', status: -1 };
  if (err) return { problem: `${what} could not be started: ${err.message}`, stdout: '', status: -1 };
  if (r.signal) return { problem: `${what} was killed by ${r.signal}${r.stderr ? `: ${tail(r.stderr)}` : ''}`, stdout: r.stdout, status: -1 };
  if (r.status !== 0) {
    const out = tail(r.stderr || r.stdout || '');
    return { problem: `${what} exited with status ${r.status}${out ? `: ${out}` : ' and no output'}`, stdout: r.stdout, status: r.status ?? -1 };
  }
  return { stdout: r.stdout, status: 0 };
}

/**
 * The preflight of an installed (or staged) launcher: CNI_COMMAND=VERSION must answer with every
 * version we speak, then `--preflight` must load the addon and open the BPF object. Both with an
 * empty environment, as a runtime may run us (no PATH, no HOME).
 */
export function preflight(launcher: string, timeoutMs = DEFAULT_PREFLIGHT_TIMEOUT_MS): PreflightOutcome {
  const failed = (reason: string): PreflightOutcome => {
    // name the cause when it is the classic one: a program built for another machine
    let buildDir = join(dirname(launcher), PLUGIN_DIR, CURRENT_LINK);
    try {
      buildDir = realpathSync(buildDir);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err; // ENOENT: no build, the launcher alone is checked
    }
    const libDir = join(buildDir, 'lib');
    const elf = [launcher, join(buildDir, 'node'), ...(existsSync(libDir) ? readdirSync(libDir).map((f) => join(libDir, f)) : [])]
      .map(elfMachineProblem).filter((p): p is string => p !== undefined);
    return { ok: false, reason: elf.length ? `${elf.join('; ')} (${reason})` : reason };
  };

  const version = runLauncher(launcher, [], { CNI_COMMAND: 'VERSION' }, `{"cniVersion":"${LATEST_CNI_VERSION}"}`, timeoutMs);
  if (version.problem) return failed(version.problem);
  let supported: unknown;
  try {
    supported = (JSON.parse(version.stdout) as JsonObject | null)?.supportedVersions;
  } catch (err) {
    if (!(err instanceof SyntaxError)) throw err;
    return failed(`CNI_COMMAND=VERSION printed no JSON: ${JSON.stringify(tail(version.stdout, 200))}`);
  }
  const lacking = Array.isArray(supported) ? PLUGIN_CNI_VERSIONS.filter((v) => !supported.includes(v)) : PLUGIN_CNI_VERSIONS;
  if (lacking.length) return failed(`CNI_COMMAND=VERSION lists ${JSON.stringify(supported)}, which lacks ${lacking.join(', ')}`);

  const self = runLauncher(launcher, ['--preflight'], {}, '', timeoutMs);
  let report: { ok?: unknown; checks?: { name?: unknown; ok?: unknown; message?: unknown }[] } | undefined;
  try {
    report = JSON.parse(self.stdout.trim().split('\n').at(-1) ?? '') as typeof report;
  } catch (err) {
    if (!(err instanceof SyntaxError)) throw err;
    report = undefined; // no report: the exit status and stderr below say what happened
  }
  if (report && Array.isArray(report.checks) && (report.ok !== true || self.problem)) {
    const bad = report.checks.filter((c) => c.ok !== true).map((c) => `${String(c.name)}: ${String(c.message)}`);
    return failed(`--preflight failed: ${bad.length ? bad.join('; ') : self.problem}`);
  }
  if (self.problem) return failed(self.problem);
  if (report?.ok !== true) return failed(`--preflight printed no report: ${JSON.stringify(tail(self.stdout, 200))}`);
  return { ok: true, reason: '' };
}

/**
 * Runs the preflight on a build that is not live yet: a staging dir beside the builds holds a copy
 * of the new launcher and its own `current` pointing at the new build, so the launcher resolves
 * exactly the files that will go live, in their final place.
 */
function preflightStaged(pluginDir: string, src: PluginSource, timeoutMs?: number): PreflightOutcome {
  const stage = join(pluginDir, `.stage${TMP_MARK}${process.pid}-${++tmpCounter}`);
  try {
    mkdirSync(join(stage, PLUGIN_DIR), { recursive: true });
    writeFileSync(join(stage, PLUGIN_LAUNCHER), src.launcher, { mode: src.launcherMode });
    chmodSync(join(stage, PLUGIN_LAUNCHER), src.launcherMode);
    symlinkSync(join('..', '..', src.build), join(stage, PLUGIN_DIR, CURRENT_LINK));
    const outcome = preflight(join(stage, PLUGIN_LAUNCHER), timeoutMs);
    // say where the files will be, not where the staging copy was
    return { ...outcome, reason: outcome.reason.split(stage).join(dirname(pluginDir)) };
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

// --- installing the plugin --------------------------------------------------------------

/** What passed a preflight in this process: "<build>:<sha256 of the launcher>". */
export interface PluginState {
  passed?: string;
}

export interface PluginResult {
  ok: boolean;
  /** the build the installed launcher runs now (null: none installed) */
  build: string | null;
  /** why the plugin is not fit to chain (when !ok) */
  reason: string;
  /** whether this call made another build or launcher live */
  switched: boolean;
  /** whether this call ran the preflight */
  preflighted: boolean;
  /** replaced builds still kept for their grace period (a later pass removes them) */
  pendingRemoval: string[];
}

/**
 * Installs the plugin from the source and makes sure it runs here. A new build or launcher goes
 * live only after it passed the preflight; one already live is preflighted again only when it
 * changed (or never passed in this process). Throws InstallError when the source is unusable.
 */
export function ensurePlugin(opts: Pick<InstallerOptions, 'binDir' | 'pluginSource' | 'log' | 'preflightTimeoutMs' | 'oldBuildGraceMs'>, state: PluginState = {}): PluginResult {
  const log = opts.log ?? silentLog;
  const src = readPluginSource(opts.pluginSource);
  if (!existsSync(opts.binDir)) throw new InstallError(`CNI bin dir ${opts.binDir} does not exist`);
  const pluginDir = join(opts.binDir, PLUGIN_DIR);
  if (!existsSync(pluginDir)) mkdirSync(pluginDir, { mode: 0o755 });
  removeStaleTemps(opts.binDir);
  removeStaleTemps(pluginDir);

  const buildDir = join(pluginDir, src.build);
  let changed = false;
  if (!existsSync(buildDir)) {
    copyTreeAtomic(src.buildDir, buildDir);
    log.info({ build: src.build, dir: buildDir }, 'copied the plugin build');
    changed = true;
  } else {
    const repaired = repairTree(src.buildDir, buildDir);
    if (repaired.length) {
      log.warn({ build: src.build, repaired }, 'put back files of the installed build that differed from the plugin source');
      changed = true;
    }
  }

  const launcherPath = join(opts.binDir, PLUGIN_LAUNCHER);
  const key = `${src.build}:${digest(src.launcher)}`;
  const launcherInstalled = readBufferOrNull(launcherPath);
  const live = installedBuild(opts.binDir) === src.build && launcherInstalled !== null && launcherInstalled.equals(src.launcher);
  const grace = opts.oldBuildGraceMs ?? DEFAULT_OLD_BUILD_GRACE_MS;
  const done = (r: Omit<PluginResult, 'pendingRemoval' | 'build'>): PluginResult => {
    const build = installedBuild(opts.binDir);
    return { ...r, build, pendingRemoval: removeOldBuilds(opts.binDir, src.build, grace, log) };
  };
  if (live) {
    if (!changed && state.passed === key) return done({ ok: true, reason: '', switched: false, preflighted: false });
    const outcome = preflight(launcherPath, opts.preflightTimeoutMs);
    if (!outcome.ok) {
      state.passed = undefined;
      return done({ ok: false, reason: `the installed plugin (build ${src.build}) failed its preflight: ${outcome.reason}`, switched: false, preflighted: true });
    }
    state.passed = key;
    return done({ ok: true, reason: '', switched: false, preflighted: true });
  }

  const outcome = preflightStaged(pluginDir, src, opts.preflightTimeoutMs);
  if (!outcome.ok) {
    // The build stays beside the live one (if any), not live; the next try repairs it from the
    // source and runs the preflight again.
    const running = installedBuild(opts.binDir);
    const keeps = running && running !== src.build ? `; build ${running} stays the one installed` : '';
    return done({ ok: false, reason: `the plugin (build ${src.build}) failed its preflight: ${outcome.reason}${keeps}`, switched: false, preflighted: true });
  }
  goLive(opts.binDir, src, log);
  state.passed = key;
  return done({ ok: true, reason: '', switched: true, preflighted: true });
}

/** Makes a preflighted build live: `current`, then the launcher; then the previous layout's files go. */
function goLive(binDir: string, src: PluginSource, log: Log): void {
  const pluginDir = join(binDir, PLUGIN_DIR);
  const current = join(pluginDir, CURRENT_LINK);
  const before = readlinkOrNull(current);
  if (before !== src.build) {
    const tmp = tmpPathFor(current);
    symlinkSync(src.build, tmp); // its mtime dates the swap: the grace period of the old build runs from it
    renameSync(tmp, current);
    fsyncDir(pluginDir);
  }
  const launcherPath = join(binDir, PLUGIN_LAUNCHER);
  if (!readBufferOrNull(launcherPath)?.equals(src.launcher)) writeFileAtomic(launcherPath, src.launcher, { mode: src.launcherMode });
  // the old launcher was a node script that loaded these from beside itself; it is gone now
  const removed = OLD_LAYOUT_FILES.filter((f) => rmIfExists(join(binDir, f)));
  log.info({ build: src.build, previous: before, removed }, 'the plugin build is live');
}

/**
 * Removes the builds that are neither live nor the source's (a candidate kept for its next try),
 * once `current` has named another build for `graceMs`. Returns those still within the grace.
 */
function removeOldBuilds(binDir: string, sourceBuild: string, graceMs: number, log: Log): string[] {
  const pluginDir = join(binDir, PLUGIN_DIR);
  const live = installedBuild(binDir);
  if (live === null) return [];
  const old = readdirSync(pluginDir).filter((n) => n !== CURRENT_LINK && n !== live && n !== sourceBuild && !n.includes(TMP_MARK));
  if (old.length === 0) return [];
  if (Date.now() - lstatSync(join(pluginDir, CURRENT_LINK)).mtimeMs < graceMs) return old;
  for (const name of old) rmSync(join(pluginDir, name), { recursive: true, force: true });
  fsyncDir(pluginDir);
  log.info({ removed: old.map((n) => `${PLUGIN_DIR}/${n}`) }, 'removed replaced plugin builds');
  return [];
}

function rmIfExists(path: string): boolean {
  try {
    lstatSync(path);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw err;
  }
  rmSync(path, { recursive: true, force: true });
  return true;
}

/** Removes the plugin: the launcher first (nothing new starts), then the builds, then old-layout files. */
export function removePluginFiles(binDir: string): string[] {
  const removed: string[] = [];
  for (const f of [PLUGIN_LAUNCHER, PLUGIN_DIR, ...OLD_LAYOUT_FILES]) {
    if (rmIfExists(join(binDir, f))) removed.push(f);
  }
  return removed;
}

// --- status file (read by the daemon's /readyz) --------------------------------------------

export type InstallerState = 'chained' | 'waiting-for-primary' | 'preflight-failed' | 'error' | 'uninstalled';

export interface InstallerStatus {
  state: InstallerState;
  message: string;
  /** the file holding our entry, when chained */
  conflist: string | null;
  /** the build the installed launcher runs */
  pluginBuild: string | null;
  updatedAt: string;
}

/** Writes the status atomically when it changed; no path: does nothing. */
export class StatusFile {
  private last = '';

  constructor(readonly path: string | undefined, private readonly log: Log = silentLog) {}

  /** True when the status changed (and so was written). */
  set(state: InstallerState, message: string, conflist: string | null, pluginBuild: string | null): boolean {
    const key = JSON.stringify([state, message, conflist, pluginBuild]);
    if (key === this.last) return false;
    if (this.path !== undefined) {
      const status: InstallerStatus = { state, message, conflist, pluginBuild, updatedAt: new Date().toISOString() };
      try {
        mkdirSync(dirname(this.path), { recursive: true });
        writeFileAtomic(this.path, JSON.stringify(status) + '\n', { mode: 0o644 });
      } catch (err) {
        this.log.error({ file: this.path, err: (err as Error).message }, 'cannot write the status file; will retry');
        return true; // not remembered: the next pass writes again
      }
    }
    this.last = key;
    return true;
  }
}

// --- install (one pass) -----------------------------------------------------------------

export interface ReconcileResult {
  /** the primary CNI's file */
  primary: string;
  /** the file that holds our entry: the primary itself, or our shadow list of a .conf */
  target: string;
  action: 'inserted' | 'updated' | 'unchanged';
  /** shadow lists removed because they no longer match a primary */
  removedShadows: string[];
}

function fileMeta(path: string): { mode: number; uid: number; gid: number } {
  const st = statSync(path);
  return { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
}

/** A shadow list is ours if its last plugin is ours; only those are ever deleted. */
function isOurShadow(dir: string, name: string): boolean {
  const text = readOrNull(join(dir, name));
  if (text === null) return false;
  let json: JsonObject | null;
  try {
    json = JSON.parse(text) as JsonObject | null;
  } catch (err) {
    if (err instanceof SyntaxError) return false; // not JSON: not a list we wrote
    throw err;
  }
  const plugins = json?.plugins;
  return Array.isArray(plugins) && plugins.length > 0 && isOurs(plugins[plugins.length - 1]);
}

function removeShadows(dir: string, keep?: string): string[] {
  const removed: string[] = [];
  for (const name of configFiles(dir)) {
    if (!isShadowName(name) || name === keep || !isOurShadow(dir, name)) continue;
    unlinkSync(join(dir, name));
    removed.push(name);
  }
  if (removed.length) fsyncDir(dir);
  return removed;
}

/**
 * One pass: make the runtime's config end with our entry. Returns undefined when there is no primary
 * config yet; throws InstallError (code 3) when the primary cannot chain.
 */
export function reconcile(opts: InstallerOptions): ReconcileResult | undefined {
  const log = opts.log ?? silentLog;
  const entry = buildEntry(opts.pluginConfig);
  removeStaleTemps(opts.confDir);
  for (let attempt = 0; ; attempt++) {
    try {
      return reconcileOnce(opts.confDir, entry, log);
    } catch (err) {
      if (!(err instanceof ConcurrentChange) || attempt >= 5) throw err;
      log.debug({ file: err.message }, 'the file changed while we edited it; reading it again');
    }
  }
}

function reconcileOnce(dir: string, entry: JsonObject, log: Log): ReconcileResult | undefined {
  const { primary, skipped } = findPrimary(dir);
  for (const s of skipped) log.debug({ file: s.name, reason: s.reason }, 'not a usable CNI config, skipped as libcni does');
  if (!primary) {
    const removedShadows = removeShadows(dir); // a shadow without its .conf would shadow nothing real
    if (removedShadows.length) log.info({ removed: removedShadows }, 'removed shadow lists whose primary is gone');
    return undefined;
  }
  const problem = chainingProblem(primary.json);
  if (problem) throw new InstallError(`refusing to chain into ${primary.path}: ${problem}`, EXIT_REFUSED);

  let result: ReconcileResult;
  if (primary.kind === 'conflist') {
    const before = (primary.json.plugins as unknown[]).some(isOurs);
    const next = upsertEntry(primary.text, entry);
    const changed = next !== primary.text;
    if (changed) writeFileAtomic(primary.path, next, { ...fileMeta(primary.path), expect: primary.text });
    result = { primary: primary.name, target: primary.name, action: !changed ? 'unchanged' : before ? 'updated' : 'inserted', removedShadows: [] };
  } else {
    const shadowName = shadowNameFor(primary.name);
    const shadowPath = join(dir, shadowName);
    const current = readOrNull(shadowPath);
    const next = buildShadow(primary, entry);
    if (current !== next) {
      writeFileAtomic(shadowPath, next, { ...fileMeta(primary.path), expect: current });
      // the .conf changed under us while we built its copy: build again from the new one
      if (readOrNull(primary.path) !== primary.text) throw new ConcurrentChange(primary.path);
    }
    result = { primary: primary.name, target: shadowName, action: current === next ? 'unchanged' : current === null ? 'inserted' : 'updated', removedShadows: [] };
  }
  result.removedShadows = removeShadows(dir, result.target);
  const picked = findPrimary(dir, { includeShadows: true }).primary;
  if (picked?.name !== result.target) {
    log.warn({ expected: result.target, picked: picked?.name }, 'the runtime would load another file than the one holding our entry');
  }
  if (result.action !== 'unchanged') log.info({ ...result }, `${result.action} the ${PLUGIN_TYPE} entry`);
  return result;
}

/**
 * The plugin, its preflight, then the entry. undefined when no primary config exists yet; throws
 * InstallError (EXIT_PREFLIGHT) when the plugin failed its preflight, with the conflist untouched.
 */
export function install(opts: InstallerOptions, state: PluginState = {}): ReconcileResult | undefined {
  const plugin = ensurePlugin(opts, state);
  if (!plugin.ok) throw new InstallError(plugin.reason, EXIT_PREFLIGHT);
  return reconcile(opts);
}

export interface PassResult {
  state: Exclude<InstallerState, 'uninstalled'>;
  message: string;
  /** the file holding our entry (chained only) */
  conflist: string | null;
  pluginBuild: string | null;
  /** the exit status of a one-shot run that ends here */
  code: number;
  reconcile?: ReconcileResult;
  /** replaced builds kept for their grace period; a pass after it removes them */
  pendingRemoval: string[];
}

/**
 * One full pass (plugin, preflight, entry) that never throws an InstallError: what went wrong is
 * the result, for the status file and the exit status. The conflist is only looked at once the
 * plugin passed its preflight.
 */
export function installPass(opts: InstallerOptions, state: PluginState): PassResult {
  let build: string | null = null;
  try {
    build = installedBuild(opts.binDir);
    const plugin = ensurePlugin(opts, state);
    build = plugin.build;
    const { pendingRemoval } = plugin;
    if (!plugin.ok) return { state: 'preflight-failed', message: plugin.reason, conflist: null, pluginBuild: build, code: EXIT_PREFLIGHT, pendingRemoval };
    const r = reconcile(opts);
    if (!r) {
      const message = `no valid CNI config in ${opts.confDir} yet (the primary CNI has not written one)`;
      return { state: 'waiting-for-primary', message, conflist: null, pluginBuild: build, code: EXIT_NO_PRIMARY, pendingRemoval };
    }
    const via = r.target === r.primary ? '' : ` (a copy of ${r.primary} with our entry, which the runtime loads instead)`;
    const conflist = join(opts.confDir, r.target);
    return { state: 'chained', message: `our entry is the last plugin of ${conflist}${via}`, conflist, pluginBuild: build, code: 0, reconcile: r, pendingRemoval };
  } catch (err) {
    if (!(err instanceof InstallError)) throw err;
    return { state: 'error', message: err.message, conflist: null, pluginBuild: build, code: err.code, pendingRemoval: [] };
  }
}

/** Logs a pass's outcome once (a watch repeats the same failure every re-check) and records it. */
export function reportPass(p: PassResult, status: StatusFile, log: Log): void {
  if (!status.set(p.state, p.message, p.conflist, p.pluginBuild)) return;
  if (p.state === 'preflight-failed') log.error({ build: p.pluginBuild }, `not chaining the plugin: ${p.message}`);
  else if (p.state === 'error') log.error({ build: p.pluginBuild }, p.message);
  else if (p.state === 'waiting-for-primary') log.info({}, p.message);
  else log.info({ conflist: p.conflist, build: p.pluginBuild }, `chained: ${p.message}`);
}

// --- uninstall --------------------------------------------------------------------------

export interface UninstallResult {
  /** lists we took our entry out of */
  edited: string[];
  /** our shadow lists, deleted */
  removedShadows: string[];
  /** our files in the bin dir, deleted (the launcher, the builds dir, old-layout files) */
  removedBinaries: string[];
}

/**
 * Takes our entry out of every list in the dir (not only the current primary's: it may have changed
 * since we inserted), deletes our shadow lists, then the plugin files (so no runtime is left with
 * an entry whose plugin is gone). Nothing else is touched.
 */
export function uninstall(opts: Pick<InstallerOptions, 'confDir' | 'binDir' | 'log'> & { keepBinaries?: boolean }): UninstallResult {
  const log = opts.log ?? silentLog;
  const edited: string[] = [];
  removeStaleTemps(opts.confDir);
  for (const name of configFiles(opts.confDir)) {
    if (isShadowName(name) || goExt(name) !== '.conflist') continue;
    for (let attempt = 0; ; attempt++) {
      const path = join(opts.confDir, name);
      const text = readOrNull(path);
      if (text === null) break;
      let plugins: unknown;
      try {
        plugins = (JSON.parse(text) as JsonObject | null)?.plugins;
      } catch (err) {
        if (!(err instanceof SyntaxError)) throw err;
        break; // not JSON: cannot hold an entry of ours that a runtime would run
      }
      if (!Array.isArray(plugins) || !plugins.some(isOurs)) break;
      try {
        writeFileAtomic(path, removeOurEntries(text), { ...fileMeta(path), expect: text });
        edited.push(name);
        break;
      } catch (err) {
        if (!(err instanceof ConcurrentChange) || attempt >= 5) throw err;
      }
    }
  }
  const removedShadows = removeShadows(opts.confDir);
  const removedBinaries = opts.keepBinaries ? [] : removePluginFiles(opts.binDir);
  log.info({ edited, removedShadows, removedBinaries }, `removed the ${PLUGIN_TYPE} plugin`);
  return { edited, removedShadows, removedBinaries };
}

// --- waiting and watching ---------------------------------------------------------------

export interface LoopOptions {
  /** the periodic re-check, for events fs.watch misses (default 5 s) */
  recheckMs?: number;
  /** how long the dir must be quiet after an event before we look (default 200 ms) */
  debounceMs?: number;
}

/**
 * Calls `check` after changes in `dir` (debounced) and every `recheckMs`, one call at a time, until
 * the signal aborts. fs.watch needs the dir to exist; until it does, only the periodic check runs.
 */
function watchDir(dir: string, check: () => void, signal: AbortSignal, opts: LoopOptions, log: Log): Promise<void> {
  const recheckMs = opts.recheckMs ?? 5000;
  const debounceMs = opts.debounceMs ?? 200;
  return new Promise<void>((resolve) => {
    let watcher: FSWatcher | undefined;
    let debounce: NodeJS.Timeout | undefined;
    let running = false;
    let again = false;
    const run = () => {
      if (signal.aborted) return;
      if (running) {
        again = true;
        return;
      }
      running = true;
      try {
        ensureWatcher();
        check();
      } finally {
        running = false;
      }
      if (again) {
        again = false;
        setImmediate(run);
      }
    };
    const kick = () => {
      clearTimeout(debounce);
      debounce = setTimeout(run, debounceMs);
    };
    const ensureWatcher = () => {
      if (watcher || !existsSync(dir)) return;
      try {
        watcher = fsWatch(dir, { persistent: true }, kick);
        watcher.on('error', (err) => {
          log.warn({ dir, err: err.message }, 'watching the CNI config dir failed; the periodic re-check goes on');
          watcher?.close();
          watcher = undefined;
        });
      } catch (err) {
        log.warn({ dir, err: (err as Error).message }, 'cannot watch the CNI config dir yet');
      }
    };
    const interval = setInterval(run, recheckMs);
    const stop = () => {
      clearInterval(interval);
      clearTimeout(debounce);
      watcher?.close();
      resolve();
    };
    if (signal.aborted) return stop();
    signal.addEventListener('abort', stop, { once: true });
    run();
  });
}

/**
 * Waits until a valid primary config exists and has not changed for one debounce (a primary that
 * writes in place must finish first: antrea-io/antrea#6506). Resolves undefined if aborted.
 */
export async function waitForPrimary(opts: InstallerOptions & LoopOptions, signal: AbortSignal): Promise<ConfigFile | undefined> {
  const log = opts.log ?? silentLog;
  const inner = new AbortController();
  const onAbort = () => inner.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  let seen: string | undefined;
  let found: ConfigFile | undefined;
  let logged = false;
  // the periodic check doubles as the settle timer: a candidate must read the same twice in a row
  await watchDir(opts.confDir, () => {
    const { primary } = findPrimary(opts.confDir);
    const key = primary ? `${primary.name}\0${primary.text}` : undefined;
    if (primary && key === seen) {
      found = primary;
      inner.abort();
      return;
    }
    seen = key;
    if (!primary && !logged) {
      log.info({ dir: opts.confDir }, 'waiting for the primary CNI to write its config');
      logged = true;
    }
  }, inner.signal, { recheckMs: Math.min(opts.recheckMs ?? 1000, opts.debounceMs ?? 200), debounceMs: opts.debounceMs }, log);
  signal.removeEventListener('abort', onAbort);
  return found;
}

export interface WatchEvents {
  /** after every pass that found a primary (tests wait on it) */
  onReconcile?: (r: ReconcileResult) => void;
  /** after every pass */
  onPass?: (p: PassResult) => void;
  /** where to say how it stands (default: nowhere) */
  status?: StatusFile;
}

/**
 * Keeps our entry in place until the signal aborts: re-inserts it when the primary rewrites its
 * file, follows a new primary, regenerates a shadow, puts back deleted or damaged plugin files,
 * installs a new plugin build that passed its preflight. A plugin that fails its preflight is
 * tried again on each re-check and chained once it passes. Errors are logged (each distinct one
 * once) and the loop goes on: the primary may fix its config later.
 */
export async function watch(opts: InstallerOptions & LoopOptions & WatchEvents, signal: AbortSignal): Promise<void> {
  const log = opts.log ?? silentLog;
  const status = opts.status ?? new StatusFile(undefined);
  const state: PluginState = {};
  let lastError = '';
  const rewrites: number[] = [];
  await watchDir(opts.confDir, () => {
    try {
      const p = installPass(opts, state);
      reportPass(p, status, log);
      lastError = '';
      opts.onPass?.(p);
      const r = p.reconcile;
      if (!r) return;
      if (r.action !== 'unchanged') {
        const now = Date.now();
        rewrites.push(now);
        while (rewrites.length && rewrites[0] < now - 60_000) rewrites.shift();
        if (rewrites.length > 5) {
          log.warn({ file: r.target, perMinute: rewrites.length }, 'another agent keeps rewriting the CNI config without our entry');
        }
      }
      opts.onReconcile?.(r);
    } catch (err) {
      const msg = (err as Error).message;
      if (msg !== lastError) log.error({ err: msg }, 'CNI install pass failed; will retry');
      lastError = msg;
      status.set('error', msg, null, installedBuildOrNull(opts.binDir, log));
    }
  }, signal, opts, log);
}

/** The installed build for the error status. Fails open: the pass's own error is what the status
 *  reports, a second one from the same broken bin dir is only logged. */
function installedBuildOrNull(binDir: string, log: Log): string | null {
  try {
    return installedBuild(binDir);
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'cannot read the installed plugin build for the status');
    return null;
  }
}
