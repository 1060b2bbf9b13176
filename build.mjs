#!/usr/bin/env node
// Builds everything: libbpf (PIC, from Debian's source package), the BPF objects, the native
// addon, and the esbuild bundles of the daemon/CLI and the CNI plugin.
//   node build.mjs            all steps (each one skips itself when its output is up to date)
//   node build.mjs bpf        one step: libbpf | bpf | addon | bundle
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync, readFileSync, rmSync, copyFileSync, chmodSync, renameSync } from 'node:fs';
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

// --- libbpf -----------------------------------------------------------------------------
// Debian's libbpf.a is not position independent, so it cannot go into a .node. We build the very
// same version from Debian's source package with -fPIC. The deb-src entries are derived from the
// machine's own apt sources (same archives), into a private apt state dir: /etc is not touched.
const libbpfDir = join(out, 'libbpf');
const libbpfA = join(libbpfDir, 'obj', 'libbpf.a');
const libbpfInclude = join(libbpfDir, 'include');

function buildLibbpf() {
  const version = capture('dpkg-query', ['-W', '-f=${source:Version}', 'libbpf-dev']);
  const stamp = join(libbpfDir, 'version');
  if (existsSync(libbpfA) && existsSync(stamp) && readFileSync(stamp, 'utf8') === version) return;
  console.log(`build: libbpf ${version} from Debian's source package (-fPIC)`);
  rmSync(libbpfDir, { recursive: true, force: true });
  const apt = join(libbpfDir, 'apt');
  mkdirSync(join(apt, 'lists', 'partial'), { recursive: true });
  mkdirSync(join(apt, 'parts'), { recursive: true });
  const sourcesDir = '/etc/apt/sources.list.d';
  let n = 0;
  for (const f of readdirSync(sourcesDir)) {
    if (f.endsWith('.sources')) {
      const text = readFileSync(join(sourcesDir, f), 'utf8').replace(/^Types:.*$/gm, 'Types: deb-src');
      writeFileSync(join(apt, 'parts', f), text);
      n++;
    } else if (f.endsWith('.list')) {
      const text = readFileSync(join(sourcesDir, f), 'utf8').replace(/^deb\s/gm, 'deb-src ');
      writeFileSync(join(apt, 'parts', f), text);
      n++;
    }
  }
  let sourceList = '/dev/null';
  if (existsSync('/etc/apt/sources.list')) {
    const text = readFileSync('/etc/apt/sources.list', 'utf8').replace(/^deb\s/gm, 'deb-src ');
    sourceList = join(apt, 'sources.list');
    writeFileSync(sourceList, text);
    n++;
  }
  if (n === 0) throw new Error('build: no apt sources found to derive deb-src entries from');
  const aptOpts = [
    '-o', `Dir::Etc::SourceList=${sourceList}`,
    '-o', `Dir::Etc::SourceParts=${join(apt, 'parts')}`,
    '-o', `Dir::State::Lists=${join(apt, 'lists')}`,
    '-o', 'APT::Sandbox::User=root',
    '-q',
  ];
  run('apt-get', [...aptOpts, 'update']);
  run('apt-get', [...aptOpts, 'source', `libbpf=${version}`], { cwd: libbpfDir });
  const srcDir = readdirSync(libbpfDir).find((d) => d.startsWith('libbpf-') && statSync(join(libbpfDir, d)).isDirectory());
  if (!srcDir) throw new Error('build: apt-get source libbpf produced no source tree');
  const objDir = join(libbpfDir, 'obj');
  run('make', ['-s', '-C', join(libbpfDir, srcDir, 'src'), '-j2', 'BUILD_STATIC_ONLY=1', `OBJDIR=${objDir}`,
    'CFLAGS=-O2 -g -fPIC', `DESTDIR=${libbpfDir}`, 'INCLUDEDIR=/include', 'LIBDIR=/lib', 'UAPIDIR=/uapi',
    'install_headers', objDir + '/libbpf.a']);
  rmSync(apt, { recursive: true, force: true });
  writeFileSync(stamp, version);
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
  if (upToDate(addonNode, [addonDir, libbpfA])) return;
  console.log('build: native addon');
  const gyp = require.resolve('node-gyp/bin/node-gyp.js');
  // node-gyp builds in <cwd>/build; keep it under build/addon so the source dir stays clean.
  mkdirSync(addonOut, { recursive: true });
  // Build against the headers of the node that runs us (no download: there is no internet here).
  const nodedir = join(dirname(process.execPath), '..');
  if (!existsSync(join(nodedir, 'include', 'node', 'node_api.h'))) {
    throw new Error(`node's headers are missing under ${nodedir}/include/node (install Node 20 with its headers)`);
  }
  run(process.execPath, [gyp, 'rebuild', '--directory', addonDir, `--nodedir=${nodedir}`, `--libbpf_dir=${libbpfDir}`, '--loglevel=warn'], {
    env: { ...process.env, npm_config_build_from_source: 'true' },
  });
  const built = join(addonDir, 'build', 'Release', 'int_host_reporter.node');
  mkdirSync(dirname(addonNode), { recursive: true });
  installFile(built, addonNode);
  rmSync(join(addonDir, 'build'), { recursive: true, force: true });
}

// --- bundles ----------------------------------------------------------------------------
const dist = join(root, 'dist');
async function buildBundles() {
  const esbuild = require('esbuild');
  const entries = [
    { entry: join(root, 'daemon', 'main.ts'), outfile: join(dist, 'int-host-reporter.cjs') },
    // The plugin is exec'd once per pod verb: minified and without the inline source map, its
    // file is ~35 KB instead of ~250 KB to read and compile on every call.
    { entry: join(root, 'plugin', 'main.ts'), outfile: join(dist, 'cni', 'int-host-reporter'),
      options: { minify: true, legalComments: 'none', sourcemap: false } },
  ].filter((e) => existsSync(e.entry));
  for (const e of entries) {
    if (upToDate(e.outfile, [join(root, 'bpf'), join(root, 'daemon'), join(root, 'plugin')])) continue;
    console.log(`build: bundle ${e.outfile.slice(root.length + 1)}`);
    await esbuild.build({
      entryPoints: [e.entry], outfile: e.outfile, bundle: true, platform: 'node', target: 'node20',
      format: 'cjs', sourcemap: 'inline', logLevel: 'warning', external: ['*.node'],
      banner: { js: '#!/usr/bin/env node' }, ...e.options,
    });
    chmodSync(e.outfile, 0o755);
  }
  // The bundles load the addon and the BPF object from beside themselves.
  for (const d of [dist, join(dist, 'cni')]) {
    if (!existsSync(d)) continue;
    if (existsSync(addonNode)) installFile(addonNode, join(d, 'int_host_reporter.node'));
    for (const f of existsSync(bpfOut) ? readdirSync(bpfOut) : []) installFile(join(bpfOut, f), join(d, f));
  }
}

const steps = { libbpf: buildLibbpf, bpf: buildBpf, addon: buildAddon, bundle: buildBundles };
const want = process.argv.slice(2);
try {
  for (const [name, fn] of Object.entries(steps)) {
    if (want.length === 0 || want.includes(name)) await fn();
  }
} catch (err) {
  console.error(`build failed: ${err.message}`);
  process.exit(1);
}
