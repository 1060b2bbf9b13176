// The CNI installer: puts the int-host-reporter chained plugin on a node and keeps it there.
//
//   1. copy the plugin (one bundled file) and the two files it loads from beside itself (the addon
//      and the BPF object) into the CNI bin dir, each by write-to-temp + rename, so an ADD that
//      starts meanwhile runs either the old file or the new one, never half of one;
//   2. find the network configuration the runtime uses, the way libcni's callers (containerd's
//      go-cni, CRI-O's ocicni, the old kubelet) do: every .conf/.conflist/.json file of the dir,
//      sorted by name byte-wise, the first that loads as a valid config wins;
//   3. make sure that config ends with exactly one {"type":"int-host-reporter", ...} entry, by
//      splicing text: nothing else in the file changes, not even whitespace;
//   4. optionally keep watching the dir and put the entry back when the primary CNI rewrites its
//      file without it (Calico, Flannel, Cilium and others do, on every restart).
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
import { createHash } from 'node:crypto';
import {
  closeSync, constants, existsSync, fchmodSync, fchownSync, fsyncSync, openSync, readdirSync, readFileSync,
  renameSync, statSync, unlinkSync, watch as fsWatch, writeSync, type FSWatcher,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { arrayElements, leadingWs, lineIndent, topLevelValue } from './json-splice';

export const PLUGIN_TYPE = 'int-host-reporter';
export const PLUGIN_BINARY = 'int-host-reporter';
export const PLUGIN_ADDON = 'int_host_reporter.node';
export const PLUGIN_OBJECT = 'datapath.bpf.o';
/** Copy order: what the plugin loads first, the plugin itself last (so a new plugin never starts without them). */
export const PLUGIN_FILES = [PLUGIN_ADDON, PLUGIN_OBJECT, PLUGIN_BINARY] as const;
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

/** The file changed between our read and our rename: somebody else wrote it; read again. */
class ConcurrentChange extends Error {}

export interface InstallerOptions {
  confDir: string;
  binDir: string;
  /** where the bundled plugin, addon and object are (the image's dist/cni) */
  pluginSource: string;
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
  } catch {
    /* best effort: some filesystems refuse fsync on a directory */
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
    } catch {
      /* already renamed or never created */
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
  } catch {
    return removed;
  }
  for (const name of names) {
    const i = name.lastIndexOf(TMP_MARK);
    if (!name.startsWith('.') || i < 0) continue;
    const pid = Number(name.slice(i + TMP_MARK.length).split('-')[0]);
    if (pid === process.pid) continue;
    if (Number.isInteger(pid) && pid > 0 && processAlive(pid)) continue;
    try {
      unlinkSync(join(dir, name));
      removed.push(name);
    } catch {
      /* gone already */
    }
  }
  return removed;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// --- binaries ---------------------------------------------------------------------------

function digest(path: string): string | undefined {
  try {
    return createHash('sha256').update(readFileSync(path)).digest('hex');
  } catch {
    return undefined;
  }
}

/** Copies the plugin, addon and object into the bin dir; files already identical are left alone. */
export function installBinaries(opts: Pick<InstallerOptions, 'binDir' | 'pluginSource' | 'log'>): { copied: string[]; unchanged: string[] } {
  const log = opts.log ?? silentLog;
  const missing = PLUGIN_FILES.filter((f) => !existsSync(join(opts.pluginSource, f)));
  if (missing.length > 0) {
    throw new InstallError(`plugin source ${opts.pluginSource} lacks ${missing.join(', ')} (it must hold the bundled plugin with its addon and BPF object)`);
  }
  if (!existsSync(opts.binDir)) throw new InstallError(`CNI bin dir ${opts.binDir} does not exist`);
  const copied: string[] = [];
  const unchanged: string[] = [];
  removeStaleTemps(opts.binDir);
  for (const f of PLUGIN_FILES) {
    const src = join(opts.pluginSource, f);
    const dst = join(opts.binDir, f);
    const data = readFileSync(src);
    if (digest(dst) === createHash('sha256').update(data).digest('hex')) {
      unchanged.push(f);
      continue;
    }
    writeFileAtomic(dst, data, { mode: statSync(src).mode & 0o777 });
    copied.push(f);
  }
  if (copied.length) log.info({ binDir: opts.binDir, copied }, 'installed plugin files');
  return { copied, unchanged };
}

/** True when every plugin file in the bin dir has the source's size (a cheap check for the periodic loop). */
function binariesLookInstalled(opts: Pick<InstallerOptions, 'binDir' | 'pluginSource'>): boolean {
  return PLUGIN_FILES.every((f) => {
    try {
      return statSync(join(opts.binDir, f)).size === statSync(join(opts.pluginSource, f)).size;
    } catch {
      return false;
    }
  });
}

export function removeBinaries(binDir: string): string[] {
  const removed: string[] = [];
  // the plugin first: once it is gone nothing new loads the other two
  for (const f of [...PLUGIN_FILES].reverse()) {
    try {
      unlinkSync(join(binDir, f));
      removed.push(f);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return removed;
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
  try {
    const json = JSON.parse(text) as JsonObject;
    const plugins = json.plugins;
    return Array.isArray(plugins) && plugins.length > 0 && isOurs(plugins[plugins.length - 1]);
  } catch {
    return false;
  }
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

/** Binaries, then the entry. undefined when no primary config exists yet. */
export function install(opts: InstallerOptions): ReconcileResult | undefined {
  installBinaries(opts);
  return reconcile(opts);
}

// --- uninstall --------------------------------------------------------------------------

export interface UninstallResult {
  /** lists we took our entry out of */
  edited: string[];
  /** our shadow lists, deleted */
  removedShadows: string[];
  /** our files in the bin dir, deleted */
  removedBinaries: string[];
}

/**
 * Takes our entry out of every list in the dir (not only the current primary's: it may have changed
 * since we inserted), deletes our shadow lists, then the plugin files. Nothing else is touched.
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
        plugins = (JSON.parse(text) as JsonObject).plugins;
      } catch {
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
  const removedBinaries = opts.keepBinaries ? [] : removeBinaries(opts.binDir);
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
}

/**
 * Keeps our entry in place until the signal aborts: re-inserts it when the primary rewrites its
 * file, follows a new primary, regenerates a shadow, puts back deleted plugin files. Errors are
 * logged (each distinct one once) and the loop goes on: the primary may fix its config later.
 */
export async function watch(opts: InstallerOptions & LoopOptions & WatchEvents, signal: AbortSignal): Promise<void> {
  const log = opts.log ?? silentLog;
  let lastError = '';
  const rewrites: number[] = [];
  await watchDir(opts.confDir, () => {
    try {
      if (!binariesLookInstalled(opts)) installBinaries(opts);
      const r = reconcile(opts);
      lastError = '';
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
      if (msg !== lastError) log.error({ err: msg }, 'CNI config check failed; will retry');
      lastError = msg;
    }
  }, signal, opts, log);
}
