// `int-host-reporter --preflight`: can this plugin, as installed, do its work on this host? The
// installer runs it before chaining us (a plugin that cannot start fails every pod of the node,
// and fail-open cannot help there). It loads what ADD loads (the bpf and netlink native modules,
// every shared library they need) and opens the BPF object without loading it into the kernel,
// then prints one JSON line and exits 0 (all checks passed) or 1. main.ts imports this module
// only for that flag.
import { readFileSync, realpathSync, existsSync, writeSync } from 'node:fs';
import { basename, dirname, join, sep } from 'node:path';
import { defaultObjectPath, loadNative, nativePath, type Native } from '../bpf/native';
import { netlinkModulePath } from '../netlink/index';
import { PROGRAMS } from '../bpf/pins';

export interface PreflightCheck {
  name: string;
  ok: boolean;
  message: string;
}

export interface PreflightReport {
  ok: boolean;
  /** the build id: the name of the dir the bundle runs from (null when not run from a build dir) */
  build: string | null;
  checks: PreflightCheck[];
}

const BUILD_ID = /^[0-9a-f]{16}$/;

function errorText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').trim();
}

function check(name: string, fn: () => string): PreflightCheck {
  try {
    return { name, ok: true, message: fn() };
  } catch (err) {
    return { name, ok: false, message: errorText(err) };
  }
}

/** Executable file mappings of this process, deduplicated (the loader, node, every library, the addon). */
function mappedExecutables(): string[] {
  const paths = new Set<string>();
  for (const line of readFileSync('/proc/self/maps', 'utf8').split('\n')) {
    // address perms offset dev inode path
    const m = /^\S+ (\S{4}) \S+ \S+ \d+ +(\/.*)$/.exec(line);
    if (m && m[1][2] === 'x') paths.add(m[2].replace(/ \(deleted\)$/, ''));
  }
  return [...paths].sort();
}

/** Runs every check; `dir` is where the bundle, the addon and the object are (the build dir). */
export function runPreflight(dir: string = __dirname): PreflightReport {
  const real = realpathSync(dir);
  const checks: PreflightCheck[] = [];
  checks.push(check('runtime', () => {
    const major = Number(process.versions.node.split('.')[0]);
    if (major < 20) throw new Error(`node ${process.version} is older than 20, which the bundle targets`);
    return `node ${process.version} on ${process.arch}`;
  }));

  let native: Native | undefined;
  // Both native modules ADD loads, each from this build dir: a copy found elsewhere (a source
  // checkout's build/) would hide a file missing from the build.
  checks.push(check('addon', () => {
    const loaded = loadNative();
    const paths = [nativePath(), netlinkModulePath()];
    const foreign = paths.filter((p) => dirname(realpathSync(p)) !== real);
    if (foreign.length) throw new Error(`loaded from outside ${real}: ${foreign.join(', ')}`);
    native = loaded;
    return `loaded ${paths.map((p) => basename(p)).join(' and ')}, libbpf ${loaded.libbpfVersion()}`;
  }));

  checks.push(check('bpf-object', () => {
    if (!native) throw new Error('not tried: the addon did not load');
    const path = defaultObjectPath();
    const obj = new native.BpfObject(path);
    try {
      const names = obj.programs().map((p) => p.name);
      const missing = Object.values(PROGRAMS).filter((p) => !names.includes(p));
      if (missing.length) throw new Error(`${path} lacks the programs ${missing.join(', ')}`);
      return `${path} opened (not loaded): ${names.length} programs`;
    } finally {
      obj.close();
    }
  }));

  // A self-contained build carries its own loader and libraries in lib/. The loader still falls
  // back to the host's system dirs for a library missing there, which would work here and break
  // on a host without it: so every executable mapping must come from the build dir.
  if (existsSync(join(real, 'lib'))) {
    checks.push(check('self-contained', () => {
      const foreign = mappedExecutables().filter((p) => !p.startsWith(real + sep));
      if (foreign.length) throw new Error(`loaded from outside ${real}: ${foreign.join(', ')} (a file of the build is missing or unusable)`);
      return `every executable mapping is under ${real}`;
    }));
  }

  const name = basename(real);
  return { ok: checks.every((c) => c.ok), build: BUILD_ID.test(name) ? name : null, checks };
}

export function main(): void {
  let report: PreflightReport;
  try {
    report = runPreflight();
  } catch (err) {
    report = { ok: false, build: null, checks: [{ name: 'preflight', ok: false, message: errorText(err) }] };
  }
  writeSync(1, JSON.stringify(report) + '\n');
  process.exit(report.ok ? 0 : 1);
}
