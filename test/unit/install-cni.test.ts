// The CNI installer on temp dirs with real files: exact bytes before and after every operation.
// The plugin it installs is the real one (dist/cni's launcher and build, under build ids the test
// chooses), so every preflight here really runs it.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync,
  statSync, unlinkSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  EXIT_PREFLIGHT, InstallError, SHADOW_SUFFIX, buildEntry, ensurePlugin, findPrimary, install, reconcile, removeOurEntries,
  uninstall, upsertEntry, waitForPrimary, watch, type InstallerOptions, type PluginState, type ReconcileResult,
} from '../../install/cni-installer';
import { aarch64Elf, distLayout, expectedInstall, makePluginSource, tree } from '../helpers/plugin-layout';

const ROOT = join(__dirname, '..', '..');
const MAIN = join(ROOT, 'install', 'cni-install-main.ts');
const temps: string[] = [];
const children = new Set<ChildProcess>();
after(() => {
  for (const c of children) c.kill('SIGKILL'); // a test that failed midway may leave a --watch behind
  for (const t of temps) rmSync(t, { recursive: true, force: true });
});

function tempDir(tag: string): string {
  const t = mkdtempSync(join(tmpdir(), `ihr-${tag}-`));
  temps.push(t);
  return t;
}

// Build ids as the build makes them (16 hex digits); the contents are dist/cni's, made different.
const X = '0123456789abcdef';
const Y = 'fedcba9876543210';
const Z = '00000000000000aa';

let shared: string | undefined;
/** One plugin source for the tests that do not change it (build X). */
function sharedSource(): string {
  shared ??= makePluginSource(tempDir('source'), X, 'build X');
  return shared;
}

interface Env {
  confDir: string;
  binDir: string;
  source: string;
  status: string;
  opts: InstallerOptions;
}

/** A node's two CNI dirs and a status file path in a fresh temp dir; the plugin source is shared unless given. */
function env(pluginConfig?: Record<string, unknown>, source?: string): Env {
  const t = tempDir('install');
  const confDir = join(t, 'net.d');
  const binDir = join(t, 'bin');
  for (const d of [confDir, binDir]) mkdirSync(d);
  const src = source ?? sharedSource();
  return { confDir, binDir, source: src, status: join(t, 'run', 'cni-installer.json'), opts: { confDir, binDir, pluginSource: src, pluginConfig } };
}

/** A plugin source of its own (build `build`), for a test that changes or breaks it. */
function ownSource(build: string, variant = `build ${build}`): string {
  return makePluginSource(tempDir('source'), build, variant);
}

function put(dir: string, name: string, text: string, mode = 0o644): void {
  writeFileSync(join(dir, name), text, { mode });
  chmodSync(join(dir, name), mode);
}
const read = (dir: string, name: string) => readFileSync(join(dir, name), 'utf8');

/** Every file of a dir with its content, for "nothing else changed" checks. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    out[name] = statSync(p).isDirectory() ? '<dir>' : readFileSync(p, 'utf8');
  }
  return out;
}

function noTempFiles(dir: string): void {
  const left = readdirSync(dir).filter((n) => n.includes('.ihr-tmp-'));
  assert.deepEqual(left, [], `temp files left in ${dir}: ${left.join(', ')}`);
}

async function until(what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const CALICO = `{
  "name": "k8s-pod-network",
  "cniVersion": "0.3.1",
  "plugins": [
    {
      "type": "calico",
      "log_level": "info",
      "mtu": 1500,
      "ipam": { "type": "calico-ipam" }
    },
    {
      "type": "portmap",
      "snat": true,
      "capabilities": { "portMappings": true }
    }
  ]
}
`;

const CALICO_WITH_US = `{
  "name": "k8s-pod-network",
  "cniVersion": "0.3.1",
  "plugins": [
    {
      "type": "calico",
      "log_level": "info",
      "mtu": 1500,
      "ipam": { "type": "calico-ipam" }
    },
    {
      "type": "portmap",
      "snat": true,
      "capabilities": { "portMappings": true }
    },
    {
      "type": "int-host-reporter",
      "socketPath": "/run/int-host-reporter/daemon.sock"
    }
  ]
}
`;

const SOCKET = { socketPath: '/run/int-host-reporter/daemon.sock' };

describe('conflist', () => {
  test('inserts our entry last and changes no other byte; plugin installed', () => {
    const e = env(SOCKET);
    put(e.confDir, '10-calico.conflist', CALICO);
    const r = install(e.opts);
    assert.deepEqual(r, { primary: '10-calico.conflist', target: '10-calico.conflist', action: 'inserted', removedShadows: [] },
      `unexpected result ${JSON.stringify(r)}`);
    assert.equal(read(e.confDir, '10-calico.conflist'), CALICO_WITH_US);
    assert.deepEqual(tree(e.binDir), expectedInstall(e.source, X));
    noTempFiles(e.confDir);
    noTempFiles(e.binDir);
  });

  test('a second run is byte-identical and writes nothing (same inode, same mtime)', () => {
    const e = env(SOCKET);
    put(e.confDir, '10-calico.conflist', CALICO);
    install(e.opts);
    const before = statSync(join(e.confDir, '10-calico.conflist'));
    const binBefore = statSync(join(e.binDir, 'int-host-reporter'));
    const r = install(e.opts);
    assert.equal(r?.action, 'unchanged', 'second run must change nothing');
    assert.equal(read(e.confDir, '10-calico.conflist'), CALICO_WITH_US);
    const afterStat = statSync(join(e.confDir, '10-calico.conflist'));
    assert.equal(afterStat.ino, before.ino, 'the conflist must not be rewritten');
    assert.equal(afterStat.mtimeMs, before.mtimeMs, 'the conflist mtime must not move');
    assert.equal(statSync(join(e.binDir, 'int-host-reporter')).ino, binBefore.ino, 'an identical launcher must not be replaced');
  });

  test('our entry spelled differently (keys reordered by a re-serialising primary) counts as in place', () => {
    const e = env({ socketPath: '/s', logFile: '/l' });
    const text = '{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"ptp"},{"logFile":"/l","socketPath":"/s","type":"int-host-reporter"}]}';
    put(e.confDir, '10-n.conflist', text);
    assert.equal(reconcile(e.opts)?.action, 'unchanged', 'same entry, other key order: nothing to do');
    assert.equal(read(e.confDir, '10-n.conflist'), text);
  });

  test('replaces an outdated entry of ours, moves it last, and drops duplicates', () => {
    const e = env({ socketPath: '/new.sock' });
    const text = `{
  "cniVersion": "1.0.0",
  "name": "net",
  "plugins": [
    { "type": "int-host-reporter", "socketPath": "/old.sock" },
    { "type": "bridge", "bridge": "cni0" },
    { "type": "int-host-reporter" },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}`;
    put(e.confDir, '10-net.conflist', text);
    const r = reconcile(e.opts);
    assert.equal(r?.action, 'updated', `expected updated, got ${r?.action}`);
    assert.equal(read(e.confDir, '10-net.conflist'), `{
  "cniVersion": "1.0.0",
  "name": "net",
  "plugins": [
    { "type": "bridge", "bridge": "cni0" },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    {
      "type": "int-host-reporter",
      "socketPath": "/new.sock"
    }
  ]
}`);
  });

  test('a one-line list gets a one-line entry; numbers, key order and odd keys stay as written', () => {
    const e = env();
    const text = '{"plugins":[{"type":"flannel","delegate":{"hairpinMode":true,"mtu":1.50e3}},{"type":"portmap","2":"numeric key","big":12345678901234567890}],"name":"cbr0","cniVersion":"0.3.1"}';
    put(e.confDir, '10-flannel.conflist', text);
    reconcile(e.opts);
    assert.equal(read(e.confDir, '10-flannel.conflist'),
      '{"plugins":[{"type":"flannel","delegate":{"hairpinMode":true,"mtu":1.50e3}},{"type":"portmap","2":"numeric key","big":12345678901234567890},{"type":"int-host-reporter"}],"name":"cbr0","cniVersion":"0.3.1"}');
  });

  test('keeps the file mode and owner of the primary\'s file; no temp file left', () => {
    const e = env();
    put(e.confDir, '10-calico.conflist', CALICO, 0o600);
    reconcile(e.opts);
    assert.equal(statSync(join(e.confDir, '10-calico.conflist')).mode & 0o7777, 0o600, 'mode 0600 must survive the rewrite');
    noTempFiles(e.confDir);
  });

  test('uninstall takes out our entry only (original bytes back) and our plugin files only', () => {
    const e = env(SOCKET);
    put(e.confDir, '10-calico.conflist', CALICO);
    put(e.binDir, 'bridge', 'not ours', 0o755);
    put(e.binDir, 'portmap', 'not ours either', 0o755);
    install(e.opts);
    const r = uninstall(e.opts);
    assert.deepEqual(r, { edited: ['10-calico.conflist'], removedShadows: [], removedBinaries: ['int-host-reporter', 'int-host-reporter.d'] },
      `unexpected result ${JSON.stringify(r)}`);
    assert.deepEqual(snapshot(e.confDir), { '10-calico.conflist': CALICO });
    assert.deepEqual(snapshot(e.binDir), { bridge: 'not ours', portmap: 'not ours either' });
    assert.deepEqual(uninstall(e.opts), { edited: [], removedShadows: [], removedBinaries: [] }, 'a second uninstall finds nothing of ours');
  });

  test('uninstall also cleans a list that is no longer the primary', () => {
    const e = env();
    put(e.confDir, '20-old.conflist', '{"cniVersion":"0.4.0","name":"old","plugins":[{"type":"bridge"},{"type":"int-host-reporter"}]}');
    put(e.confDir, '10-new.conflist', '{"cniVersion":"0.4.0","name":"new","plugins":[{"type":"ptp"}]}');
    reconcile(e.opts);
    uninstall({ ...e.opts, keepBinaries: true });
    assert.deepEqual(snapshot(e.confDir), {
      '10-new.conflist': '{"cniVersion":"0.4.0","name":"new","plugins":[{"type":"ptp"}]}',
      '20-old.conflist': '{"cniVersion":"0.4.0","name":"old","plugins":[{"type":"bridge"}]}',
    });
  });

  test('removeOurEntries inverts upsertEntry exactly, whatever the layout', () => {
    const layouts = [
      CALICO,
      '{"name":"a","cniVersion":"1.0.0","plugins":[{"type":"x"}]}',
      '{\n\t"name": "a",\n\t"cniVersion": "1.0.0",\n\t"plugins": [\n\t\t{"type": "x"},\n\t\t{"type": "y"}\n\t]\n}\n',
      '{ "name":"a", "cniVersion":"1.0.0", "plugins":[ {"type":"x"} ] }',
    ];
    for (const text of layouts) {
      const added = upsertEntry(text, buildEntry({ socketPath: '/s' }));
      assert.notEqual(added, text, 'the entry must be added');
      assert.deepEqual((JSON.parse(added) as { plugins: unknown[] }).plugins.at(-1), { type: 'int-host-reporter', socketPath: '/s' }, `entry last in ${added}`);
      assert.equal(removeOurEntries(added), text, `round trip must restore ${JSON.stringify(text)}`);
    }
  });
});

describe('single-plugin .conf', () => {
  const BRIDGE_CONF = `{
    "cniVersion": "0.4.0",
    "name": "mynet",
    "type": "bridge",
    "bridge": "cni0",
    "isGateway": true,
    "ipam": {
        "type": "host-local",
        "subnet": "10.22.0.0/16"
    }
}
`;
  const SHADOW = `{
  "cniVersion": "0.4.0",
  "name": "mynet",
  "plugins": [
    {
        "cniVersion": "0.4.0",
        "name": "mynet",
        "type": "bridge",
        "bridge": "cni0",
        "isGateway": true,
        "ipam": {
            "type": "host-local",
            "subnet": "10.22.0.0/16"
        }
    },
    {
      "type": "int-host-reporter"
    }
  ]
}
`;

  test('writes a shadow list that sorts first; the .conf stays untouched; uninstall restores the dir exactly', () => {
    const e = env();
    put(e.confDir, '10-bridge.conf', BRIDGE_CONF, 0o640);
    put(e.confDir, '99-loopback.conf', '{"cniVersion":"0.3.1","name":"lo","type":"loopback"}');
    const original = snapshot(e.confDir);
    const r = install(e.opts);
    assert.deepEqual(r, { primary: '10-bridge.conf', target: `10-bridge${SHADOW_SUFFIX}`, action: 'inserted', removedShadows: [] },
      `unexpected result ${JSON.stringify(r)}`);
    assert.deepEqual(snapshot(e.confDir), { ...original, '10-bridge-int-host-reporter.conflist': SHADOW });
    assert.equal(statSync(join(e.confDir, '10-bridge-int-host-reporter.conflist')).mode & 0o7777, 0o640, 'the shadow takes the .conf mode');
    assert.equal(findPrimary(e.confDir, { includeShadows: true }).primary?.name, '10-bridge-int-host-reporter.conflist',
      'libcni order must now pick the shadow');
    assert.equal(findPrimary(e.confDir).primary?.name, '10-bridge.conf', 'the primary is still the .conf');
    assert.equal(install(e.opts)?.action, 'unchanged', 'idempotent');
    uninstall(e.opts);
    assert.deepEqual(snapshot(e.confDir), original);
    noTempFiles(e.confDir);
  });

  test('a stale shadow is regenerated when the .conf changes, and removed when the .conf goes', () => {
    const e = env();
    put(e.confDir, '10-bridge.conf', BRIDGE_CONF);
    reconcile(e.opts);
    put(e.confDir, '10-bridge.conf', BRIDGE_CONF.replace('10.22.0.0/16', '10.33.0.0/16'));
    assert.equal(reconcile(e.opts)?.action, 'updated', 'the shadow must follow the .conf');
    assert.equal(read(e.confDir, '10-bridge-int-host-reporter.conflist'), SHADOW.replace('10.22.0.0/16', '10.33.0.0/16'));
    unlinkSync(join(e.confDir, '10-bridge.conf'));
    assert.equal(reconcile(e.opts), undefined, 'no primary left');
    assert.deepEqual(snapshot(e.confDir), {}, 'a shadow without its .conf must go');
  });

  test('a .json single config and a primary switching from .conf to .conflist', () => {
    const e = env();
    put(e.confDir, '20-ptp.json', '{"cniVersion":"1.0.0","name":"p","type":"ptp"}');
    assert.equal(reconcile(e.opts)?.target, '20-ptp-int-host-reporter.conflist', 'a .json is a single config too');
    put(e.confDir, '10-new.conflist', '{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"cilium-cni"}]}');
    const r = reconcile(e.opts);
    assert.deepEqual(r, { primary: '10-new.conflist', target: '10-new.conflist', action: 'inserted', removedShadows: ['20-ptp-int-host-reporter.conflist'] },
      `unexpected result ${JSON.stringify(r)}`);
    assert.deepEqual(snapshot(e.confDir), {
      '10-new.conflist': '{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"cilium-cni"},{"type":"int-host-reporter"}]}',
      '20-ptp.json': '{"cniVersion":"1.0.0","name":"p","type":"ptp"}',
    });
  });
});

describe('which file, as libcni picks it', () => {
  test('sorted by name, first valid wins; invalid and non-config files are skipped and left alone', () => {
    const e = env();
    const files: Record<string, string> = {
      '00-half-written.conflist': '{"name":"x","cniVersion":"1.0.0","plugins":[{"ty',
      '01-no-plugins.conflist': '{"name":"x","cniVersion":"1.0.0","plugins":[]}',
      '02-list-saved-as.conf': '{"name":"x","cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}',
      '03-no-type.conflist': '{"name":"x","cniVersion":"1.0.0","plugins":[{"bridge":"cni0"}]}',
      '04-only-ours.conflist': '{"name":"x","cniVersion":"1.0.0","plugins":[{"type":"int-host-reporter"}]}',
      '05-calico-kubeconfig': 'apiVersion: v1\nkind: Config\n',
      '06-notes.txt': '{"name":"x","cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}',
      '07-backup.conflist.bak': '{"name":"x","cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}',
      '100-second.conflist': '{"name":"second","cniVersion":"1.0.0","plugins":[{"type":"ptp"}]}',
      '11-primary.conflist': '{"name":"primary","cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}',
      '9-later.conflist': '{"name":"later","cniVersion":"1.0.0","plugins":[{"type":"ptp"}]}',
      'Z-upper.conflist': '{"name":"upper","cniVersion":"1.0.0","plugins":[{"type":"ptp"}]}',
    };
    for (const [n, t] of Object.entries(files)) put(e.confDir, n, t);
    mkdirSync(join(e.confDir, '08-dir.conflist'));
    const lookup = findPrimary(e.confDir);
    // byte order: "100-" < "11-" < "9-" < "Z-"
    assert.equal(lookup.primary?.name, '100-second.conflist', `picked ${lookup.primary?.name}`);
    assert.deepEqual(lookup.skipped.map((s) => s.name),
      ['00-half-written.conflist', '01-no-plugins.conflist', '02-list-saved-as.conf', '03-no-type.conflist', '04-only-ours.conflist'],
      'exactly the invalid config files are skipped; other extensions and the dir are not even read');
    const r = reconcile(e.opts);
    assert.equal(r?.target, '100-second.conflist', 'our entry goes into the picked file');
    const after = snapshot(e.confDir);
    for (const [n, t] of Object.entries(files)) {
      if (n !== '100-second.conflist') assert.equal(after[n], t, `${n} must not change`);
    }
    assert.equal(after['100-second.conflist'], '{"name":"second","cniVersion":"1.0.0","plugins":[{"type":"ptp"},{"type":"int-host-reporter"}]}');
  });

  test('no config at all: undefined, nothing written', () => {
    const e = env();
    put(e.confDir, 'README', 'hello');
    assert.equal(reconcile(e.opts), undefined, 'no primary means no result');
    assert.deepEqual(snapshot(e.confDir), { README: 'hello' });
  });
});

describe('versions', () => {
  const refused = (text: string, name = '10-old.conflist') => {
    const e = env();
    put(e.confDir, name, text);
    assert.throws(() => reconcile(e.opts), (err: unknown) => {
      assert.ok(err instanceof InstallError, `expected InstallError, got ${String(err)}`);
      assert.equal(err.code, 3, 'exit status 3: refused');
      assert.match(err.message, new RegExp(`refusing to chain into .*${name.replace('.', '\\.')}`), err.message);
      assert.match(err.message, /0\.3\.0/, `the message must name the minimum version: ${err.message}`);
      return true;
    });
    assert.deepEqual(snapshot(e.confDir), { [name]: text }, 'a refused config is not touched');
    return e;
  };

  test('cniVersion 0.2.0 is refused with a clear error and the file is left as it is', () => {
    refused('{"cniVersion":"0.2.0","name":"old","plugins":[{"type":"bridge"}]}');
  });
  test('a missing cniVersion (0.2.0) and an old .conf are refused too', () => {
    refused('{"name":"old","plugins":[{"type":"bridge"}]}');
    refused('{"cniVersion":"0.1.0","name":"old","type":"bridge"}', '10-old.conf');
  });
  test('a cniVersions list (spec 1.1) with an old version in it is refused; a new one is accepted', () => {
    refused('{"cniVersion":"1.0.0","cniVersions":["0.2.0","1.0.0"],"name":"n","plugins":[{"type":"bridge"}]}');
    const e = env();
    put(e.confDir, '10-n.conflist', '{"cniVersion":"1.0.0","cniVersions":["1.0.0","1.1.0"],"name":"n","plugins":[{"type":"bridge"}]}');
    assert.equal(reconcile(e.opts)?.action, 'inserted', '1.0.0/1.1.0 can chain');
  });
});

describe('plugin config and files', () => {
  test('--plugin-config fields the runtime owns are refused', () => {
    for (const bad of [{ type: 'other' }, { cniVersion: '1.0.0' }, { name: 'x' }, { prevResult: {} }, { 'cni.dev/x': 1 }]) {
      assert.throws(() => buildEntry(bad), InstallError, `must refuse ${JSON.stringify(bad)}`);
    }
    assert.deepEqual(buildEntry({ socketPath: '/s', type: 'int-host-reporter' }), { type: 'int-host-reporter', socketPath: '/s' });
  });

  test('a missing source file is named; a changed launcher replaces the old one by rename', () => {
    const source = ownSource(X);
    const e = env(undefined, source);
    unlinkSync(join(source, 'int-host-reporter.d', X, 'plugin.cjs'));
    assert.throws(() => ensurePlugin(e.opts), new RegExp(`lacks int-host-reporter\\.d/${X}/plugin\\.cjs`), 'the missing file must be named');
    copyFileSync(join(distLayout().buildDir, 'plugin.cjs'), join(source, 'int-host-reporter.d', X, 'plugin.cjs'));
    const state: PluginState = {};
    assert.equal(ensurePlugin(e.opts, state).ok, true);
    const ino = statSync(join(e.binDir, 'int-host-reporter')).ino;
    // the same launcher with a trailing byte more still runs: a new launcher for the same build
    writeFileSync(join(source, 'int-host-reporter'), Buffer.concat([readFileSync(join(source, 'int-host-reporter')), Buffer.from([0])]));
    const r = ensurePlugin(e.opts, state);
    assert.deepEqual([r.ok, r.switched, r.preflighted], [true, true, true], `a new launcher is preflighted, then swapped: ${JSON.stringify(r)}`);
    assert.notEqual(statSync(join(e.binDir, 'int-host-reporter')).ino, ino, 'a new inode: replaced by rename, not rewritten in place');
    assert.deepEqual(tree(e.binDir), expectedInstall(source, X));
    noTempFiles(e.binDir);
  });

  test('temp files of a dead run are cleaned up; a live one\'s are not', () => {
    const e = env();
    put(e.confDir, '10-calico.conflist', CALICO);
    put(e.confDir, '.10-calico.conflist.ihr-tmp-999999999-1', 'half');
    put(e.confDir, `.10-calico.conflist.ihr-tmp-${process.ppid}-1`, 'alive');
    reconcile(e.opts);
    assert.deepEqual(Object.keys(snapshot(e.confDir)), [`.10-calico.conflist.ihr-tmp-${process.ppid}-1`, '10-calico.conflist'],
      'only the dead pid\'s temp file goes');
  });
});

describe('wait and watch', () => {
  test('wait: the primary appears later, half-written first', async () => {
    const e = env();
    const stop = new AbortController();
    const waiting = waitForPrimary({ ...e.opts, debounceMs: 50 }, stop.signal);
    await new Promise((r) => setTimeout(r, 150));
    put(e.confDir, '10-calico.conflist', CALICO.slice(0, 40));
    await new Promise((r) => setTimeout(r, 150));
    put(e.confDir, '10-calico.conflist', CALICO);
    const primary = await Promise.race([waiting, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 15_000))]);
    stop.abort();
    assert.ok(primary !== 'timeout' && primary?.name === '10-calico.conflist', `waited for the primary, got ${JSON.stringify(primary)}`);
    assert.equal(primary.text, CALICO, 'only the complete file counts');
  });

  test('watch: the primary rewrites its file without us -> we are back', async () => {
    const e = env(SOCKET);
    const stop = new AbortController();
    const seen: ReconcileResult[] = [];
    const running = watch({ ...e.opts, debounceMs: 50, recheckMs: 500, onReconcile: (r) => seen.push(r) }, stop.signal);
    try {
      put(e.confDir, '10-calico.conflist', CALICO);
      await until('our entry inserted', () => existsSync(join(e.confDir, '10-calico.conflist')) && read(e.confDir, '10-calico.conflist') === CALICO_WITH_US);
      // the primary restarts and writes its config again, atomically, as most do
      put(e.confDir, '.calico-tmp', CALICO);
      renameSync(join(e.confDir, '.calico-tmp'), join(e.confDir, '10-calico.conflist'));
      await until('our entry re-inserted', () => read(e.confDir, '10-calico.conflist') === CALICO_WITH_US);
      // and in place, truncate + write
      writeFileSync(join(e.confDir, '10-calico.conflist'), CALICO);
      await until('our entry re-inserted after an in-place write', () => read(e.confDir, '10-calico.conflist') === CALICO_WITH_US);
      // a plugin file deleted from the bin dir comes back with the periodic check
      unlinkSync(join(e.binDir, 'int-host-reporter'));
      await until('the plugin file restored', () => existsSync(join(e.binDir, 'int-host-reporter')));
      assert.ok(seen.some((r) => r.action === 'inserted'), `the watch reports its passes: ${JSON.stringify(seen)}`);
    } finally {
      stop.abort();
      await running;
    }
    assert.deepEqual(Object.keys(snapshot(e.confDir)), ['10-calico.conflist'], 'no temp files, nothing else');
  });

  test('watch: a .conf primary rewritten -> the shadow list follows; the .conf removed -> the shadow goes', async () => {
    const e = env();
    const stop = new AbortController();
    const running = watch({ ...e.opts, debounceMs: 50, recheckMs: 500 }, stop.signal);
    const shadow = join(e.confDir, '10-ptp-int-host-reporter.conflist');
    const expected = (type: string) =>
      `{\n  "cniVersion": "1.0.0",\n  "name": "p",\n  "plugins": [\n    {"cniVersion":"1.0.0","name":"p","type":"${type}"},\n    {\n      "type": "int-host-reporter"\n    }\n  ]\n}\n`;
    try {
      put(e.confDir, '10-ptp.conf', '{"cniVersion":"1.0.0","name":"p","type":"ptp"}');
      await until('shadow written', () => existsSync(shadow) && readFileSync(shadow, 'utf8') === expected('ptp'));
      put(e.confDir, '10-ptp.conf', '{"cniVersion":"1.0.0","name":"p","type":"bridge"}');
      await until('shadow regenerated', () => readFileSync(shadow, 'utf8') === expected('bridge'));
      unlinkSync(join(e.confDir, '10-ptp.conf'));
      await until('shadow removed', () => !existsSync(shadow));
    } finally {
      stop.abort();
      await running;
    }
    assert.deepEqual(snapshot(e.confDir), {}, 'nothing of ours left behind');
  });

  test('watch on a dir that does not exist yet: starts when it appears', async () => {
    const e = env();
    const dir = join(e.confDir, 'later');
    const stop = new AbortController();
    const running = watch({ ...e.opts, confDir: dir, debounceMs: 50, recheckMs: 200 }, stop.signal);
    try {
      await new Promise((r) => setTimeout(r, 100));
      mkdirSync(dir);
      put(dir, '10-a.conflist', '{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"ptp"}]}');
      await until('entry in the late dir', () => read(dir, '10-a.conflist').includes('int-host-reporter'));
      put(dir, '10-a.conflist', '{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge"}]}');
      await until('entry back after a rewrite', () => read(dir, '10-a.conflist') === '{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge"},{"type":"int-host-reporter"}]}');
    } finally {
      stop.abort();
      await running;
    }
  });
});

type RunResult = { code: number | null; stdout: string; stderr: string };
/** The installer's command line, from source; `onSpawn` gets a SIGTERM sender. */
function run(args: string[], onSpawn?: (kill: () => void) => void): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => {
      children.delete(child);
      resolve({ code, stdout, stderr });
    });
    onSpawn?.(() => child.kill('SIGTERM'));
  });
}
const dirs = (e: Env) => ['--cni-conf-dir', e.confDir, '--cni-bin-dir', e.binDir, '--plugin-source', e.source, '--status-file', e.status];

describe('command line', () => {
  test('--wait: exits 0 once the primary appears and the entry is in', async () => {
    const e = env();
    const done = run([...dirs(e), '--wait', '--recheck-interval-ms', '100', '--plugin-config', JSON.stringify(SOCKET)]);
    await new Promise((r) => setTimeout(r, 500));
    put(e.confDir, '10-calico.conflist', CALICO);
    const r = await done;
    assert.equal(r.code, 0, `exit 0 expected: ${r.stderr}${r.stdout}`);
    assert.equal(read(e.confDir, '10-calico.conflist'), CALICO_WITH_US);
  });

  test('exit 4 without a primary and without --wait; exit 3 for 0.2.0; exit 2 for bad usage', async () => {
    const e = env();
    assert.equal((await run(dirs(e))).code, 4, 'no primary: exit 4');
    put(e.confDir, '10-old.conflist', '{"cniVersion":"0.2.0","name":"old","plugins":[{"type":"bridge"}]}');
    const old = await run(dirs(e));
    assert.equal(old.code, 3, `0.2.0: exit 3 (${old.stdout})`);
    assert.match(old.stdout, /older than 0\.3\.0/, 'the log says why');
    const bad = await run([...dirs(e), '--plugin-config', '{"type":"bridge"}']);
    assert.equal(bad.code, 2, 'a foreign type in --plugin-config is a usage error');
    assert.match(bad.stderr, /field "type" must be "int-host-reporter"/, bad.stderr);
    assert.equal((await run(['--bogus'])).code, 2, 'unknown flag: exit 2');
  });

  test('--watch exits 0 on SIGTERM leaving the entry; --uninstall-on-exit takes it out', async () => {
    for (const [extra, expectText, expectBin] of [[[], CALICO_WITH_US.replace(/,\n {4}\{\n {6}"type": "int-host-reporter",\n {6}"socketPath": "[^"]*"\n {4}\}/, ',\n    {\n      "type": "int-host-reporter"\n    }'), true], [['--uninstall-on-exit'], CALICO, false]] as const) {
      const e = env();
      put(e.confDir, '10-calico.conflist', CALICO);
      let kill: () => void = () => {};
      const done = run([...dirs(e), '--watch', ...extra], (k) => (kill = k));
      await until('entry inserted by the watch', () => read(e.confDir, '10-calico.conflist').includes('int-host-reporter'));
      kill();
      const r = await done;
      assert.equal(r.code, 0, `clean exit on SIGTERM: ${r.stderr}`);
      assert.equal(read(e.confDir, '10-calico.conflist'), expectText, `conflist after exit with [${extra.join(' ')}]`);
      assert.equal(existsSync(join(e.binDir, 'int-host-reporter')), expectBin, 'plugin file kept unless uninstalling');
    }
  });

  test('--uninstall', async () => {
    const e = env();
    put(e.confDir, '10-calico.conflist', CALICO);
    install(e.opts);
    const r = await run([...dirs(e), '--uninstall']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(snapshot(e.confDir), { '10-calico.conflist': CALICO });
    assert.deepEqual(snapshot(e.binDir), {});
  });
});

// --- the plugin layout, its preflight and the status file ---------------------------------

interface Status { state: string; message: string; conflist: string | null; pluginBuild: string | null; updatedAt: string }

function readStatus(e: Env): Status {
  const status = JSON.parse(readFileSync(e.status, 'utf8')) as Status;
  assert.deepEqual(Object.keys(status).sort(), ['conflist', 'message', 'pluginBuild', 'state', 'updatedAt'], 'the status file holds exactly the contract\'s fields');
  assert.ok(!Number.isNaN(Date.parse(status.updatedAt)) && new Date(status.updatedAt).toISOString() === status.updatedAt, `updatedAt is an ISO time: ${status.updatedAt}`);
  return status;
}

/** Runs the installed plugin as a runtime would: CNI_COMMAND=VERSION, no other environment. */
function runsVersion(binDir: string): boolean {
  const r = spawnSync(join(binDir, 'int-host-reporter'), [], { env: { CNI_COMMAND: 'VERSION' }, input: '{"cniVersion":"1.0.0"}', encoding: 'utf8', timeout: 20_000 });
  return r.status === 0 && r.stdout.includes('"supportedVersions"');
}

describe('plugin layout', () => {
  test('installed exactly: launcher, build dir, current -> build (modes kept); a second pass copies and runs nothing', () => {
    const e = env();
    put(e.binDir, 'bridge', 'not ours', 0o755);
    const state: PluginState = {};
    const r = ensurePlugin(e.opts, state);
    assert.deepEqual(r, { ok: true, build: X, reason: '', switched: true, preflighted: true, pendingRemoval: [] }, `first install: ${JSON.stringify(r)}`);
    const expected = { ...expectedInstall(e.source, X), bridge: tree(e.binDir).bridge };
    assert.deepEqual(tree(e.binDir), expected);
    assert.equal(readlinkSync(join(e.binDir, 'int-host-reporter.d', 'current')), X, 'current is the relative name of the build');
    assert.equal(statSync(join(e.binDir, 'int-host-reporter')).mode & 0o7777, 0o755, 'the launcher is executable');
    assert.equal(statSync(join(e.binDir, 'int-host-reporter.d', X, 'node')).mode & 0o7777, 0o755, 'node is executable');
    assert.ok(runsVersion(e.binDir), 'the installed plugin answers VERSION with an empty environment');
    const inodes = [join(e.binDir, 'int-host-reporter'), join(e.binDir, 'int-host-reporter.d', X), join(e.binDir, 'int-host-reporter.d', X, 'node')].map((p) => statSync(p).ino);
    const again = ensurePlugin(e.opts, state);
    assert.deepEqual(again, { ok: true, build: X, reason: '', switched: false, preflighted: false, pendingRemoval: [] }, 'a passed build is not preflighted again');
    assert.deepEqual(tree(e.binDir), expected);
    assert.deepEqual([join(e.binDir, 'int-host-reporter'), join(e.binDir, 'int-host-reporter.d', X), join(e.binDir, 'int-host-reporter.d', X, 'node')].map((p) => statSync(p).ino), inodes,
      'nothing replaced');
    // a new installer process has not seen it pass: it runs the preflight once, and copies nothing
    assert.deepEqual(ensurePlugin(e.opts, {}), { ok: true, build: X, reason: '', switched: false, preflighted: true, pendingRemoval: [] });
    noTempFiles(e.binDir);
    noTempFiles(join(e.binDir, 'int-host-reporter.d'));
  });

  test('upgrade X -> Y -> Z leaves exactly the last build, and the plugin runs at every moment meanwhile', async () => {
    const e = env(undefined, ownSource(X));
    ensurePlugin(e.opts);
    // a runtime execing the plugin in a loop the whole time; every failure is counted
    const stop = join(e.binDir, '..', 'stop');
    const loop = spawn('/bin/sh', ['-c', `n=0; f=0; while [ ! -e "$1" ]; do n=$((n+1)); CNI_COMMAND=VERSION "$2" </dev/null >/dev/null 2>&1 || f=$((f+1)); done; echo "$n $f"`,
      'sh', stop, join(e.binDir, 'int-host-reporter')], { stdio: ['ignore', 'pipe', 'inherit'], env: {} });
    children.add(loop);
    let out = '';
    loop.stdout.on('data', (d) => (out += d));
    const ended = new Promise<void>((resolve) => loop.on('close', () => resolve()));
    try {
      await new Promise((r) => setTimeout(r, 300));
      let previous = X;
      for (const build of [Y, Z]) {
        const source = ownSource(build);
        const opts = { ...e.opts, pluginSource: source, oldBuildGraceMs: 1500 };
        const r = ensurePlugin(opts);
        assert.deepEqual(r, { ok: true, build, reason: '', switched: true, preflighted: true, pendingRemoval: [previous] }, `upgrade to ${build}: ${JSON.stringify(r)}`);
        assert.equal(tree(e.binDir)[`int-host-reporter.d/${previous}`], 'dir 755', `build ${previous} is kept for its grace period`);
        await new Promise((r2) => setTimeout(r2, 1600));
        const later = ensurePlugin(opts);
        assert.deepEqual(later.pendingRemoval, [], 'after the grace period a pass removes it');
        assert.deepEqual(tree(e.binDir), expectedInstall(source, build), `only build ${build} is left`);
        previous = build;
      }
    } finally {
      writeFileSync(stop, '');
      await ended;
      children.delete(loop);
    }
    const [runs, failures] = out.trim().split(' ').map(Number);
    assert.ok(runs >= 5, `the plugin was run ${runs} times during the upgrades`);
    assert.equal(failures, 0, `${failures} of ${runs} runs of the plugin failed during the upgrades`);
  });

  test('from the previous layout: the node script, addon and object beside it are replaced and removed', () => {
    const e = env();
    put(e.binDir, 'int-host-reporter', '#!/usr/bin/env node\n"use strict";\n', 0o755);
    put(e.binDir, 'int_host_reporter.node', 'old addon', 0o755);
    put(e.binDir, 'datapath.bpf.o', 'old object');
    put(e.binDir, 'portmap', 'not ours', 0o755);
    assert.equal(ensurePlugin(e.opts).ok, true);
    assert.deepEqual(tree(e.binDir), { ...expectedInstall(e.source, X), portmap: tree(e.binDir).portmap });
  });

  test('a damaged installed build is repaired from the source and preflighted again; a dead run\'s temp dir goes', () => {
    const e = env();
    const state: PluginState = {};
    ensurePlugin(e.opts, state);
    const build = join(e.binDir, 'int-host-reporter.d', X);
    unlinkSync(join(build, 'lib', 'libstdc++.so.6'));
    chmodSync(join(build, 'node'), 0o644);
    mkdirSync(join(e.binDir, 'int-host-reporter.d', `.${Y}.ihr-tmp-999999999-1`, 'lib'), { recursive: true });
    const r = ensurePlugin(e.opts, state);
    assert.deepEqual(r, { ok: true, build: X, reason: '', switched: false, preflighted: true, pendingRemoval: [] }, JSON.stringify(r));
    assert.deepEqual(tree(e.binDir), expectedInstall(e.source, X));
  });
});

describe('preflight', () => {
  const cases: { name: string; cause: RegExp; breakIt: (source: string) => void }[] = [
    {
      name: 'a runtime library removed (lib/libstdc++.so.6)',
      // the loader falls back to the host's copy: the plugin's own check names the file it took from outside
      cause: /self-contained: loaded from outside .*\/int-host-reporter\.d\/fedcba9876543210: \/\S*libstdc\+\+\.so\.6/,
      breakIt: (source) => unlinkSync(join(source, 'int-host-reporter.d', Y, 'lib', 'libstdc++.so.6')),
    },
    {
      name: 'a launcher for another architecture (aarch64)',
      cause: /\/bin\/int-host-reporter is an ELF program for aarch64, this machine is x86-64/,
      breakIt: (source) => writeFileSync(join(source, 'int-host-reporter'), aarch64Elf()),
    },
    {
      name: 'a node for another architecture (aarch64)',
      cause: /\/int-host-reporter\.d\/fedcba9876543210\/node is an ELF program for aarch64, this machine is x86-64/,
      breakIt: (source) => writeFileSync(join(source, 'int-host-reporter.d', Y, 'node'), aarch64Elf()),
    },
  ];

  for (const c of cases) {
    test(`${c.name}: not chained, conflist byte-identical, status preflight-failed naming it, exit ${EXIT_PREFLIGHT}`, async () => {
      const source = ownSource(Y);
      c.breakIt(source);
      const e = env(undefined, source);
      put(e.confDir, '10-calico.conflist', CALICO);
      const before = statSync(join(e.confDir, '10-calico.conflist'));
      const r = await run(dirs(e));
      assert.equal(r.code, EXIT_PREFLIGHT, `exit ${EXIT_PREFLIGHT}: ${r.stdout}${r.stderr}`);
      assert.equal(read(e.confDir, '10-calico.conflist'), CALICO, 'the conflist is byte-identical');
      assert.equal(statSync(join(e.confDir, '10-calico.conflist')).mtimeMs, before.mtimeMs, 'and not even rewritten');
      assert.deepEqual(readdirSync(e.confDir), ['10-calico.conflist'], 'no shadow, no temp file');
      const status = readStatus(e);
      assert.equal(status.state, 'preflight-failed');
      assert.match(status.message, c.cause);
      assert.deepEqual([status.conflist, status.pluginBuild], [null, null], 'nothing chained, no build live');
      assert.ok(!existsSync(join(e.binDir, 'int-host-reporter')), 'nothing a runtime would exec is in the bin dir');
      const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { level: number; msg: string });
      const errors = lines.filter((l) => l.level >= 50);
      assert.equal(errors.length, 1, `one error line: ${r.stdout}`);
      assert.match(errors[0].msg, /^not chaining the plugin: the plugin \(build fedcba9876543210\) failed its preflight: /);
      assert.match(errors[0].msg, c.cause);
    });
  }

  test('an upgrade to a build that fails keeps the running build live and chained', async () => {
    const e = env();
    put(e.confDir, '10-calico.conflist', CALICO);
    install(e.opts);
    const installed = tree(e.binDir);
    const broken = ownSource(Y);
    unlinkSync(join(broken, 'int-host-reporter.d', Y, 'lib', 'libstdc++.so.6'));
    const r = await run([...dirs({ ...e, source: broken })]);
    assert.equal(r.code, EXIT_PREFLIGHT, r.stdout);
    assert.equal(read(e.confDir, '10-calico.conflist'), CALICO_WITH_US.replace(/,\n {6}"socketPath": "[^"]*"/, ''), 'our entry of build X stays');
    const status = readStatus(e);
    assert.equal(status.state, 'preflight-failed');
    assert.match(status.message, new RegExp(`build ${Y}\\) failed its preflight: .*libstdc\\+\\+.*; build ${X} stays the one installed$`));
    assert.equal(status.pluginBuild, X);
    const now = tree(e.binDir);
    assert.equal(now['int-host-reporter.d/current'], `link -> ${X}`, 'current still names X');
    assert.equal(now['int-host-reporter'], installed['int-host-reporter'], 'the launcher is X\'s');
    assert.ok(runsVersion(e.binDir), 'and the plugin still runs');
  });

  test('--watch: preflight-failed (logged once) until the source is fixed, then chained on the next re-check', async () => {
    const source = ownSource(Y);
    const lib = join(source, 'int-host-reporter.d', Y, 'lib', 'libstdc++.so.6');
    const saved = readFileSync(lib);
    unlinkSync(lib);
    const e = env(SOCKET, source);
    put(e.confDir, '10-calico.conflist', CALICO);
    let kill: () => void = () => {};
    const done = run([...dirs(e), '--watch', '--recheck-interval-ms', '300', '--plugin-config', JSON.stringify(SOCKET)], (k) => (kill = k));
    try {
      await until('status preflight-failed', () => existsSync(e.status) && readStatus(e).state === 'preflight-failed', 30_000);
      // several re-checks go by, each one failing again
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(read(e.confDir, '10-calico.conflist'), CALICO, 'not chained while the preflight fails');
      assert.equal(readStatus(e).state, 'preflight-failed');
      writeFileSync(lib, saved, { mode: 0o755 });
      chmodSync(lib, 0o755);
      await until('status chained', () => readStatus(e).state === 'chained', 30_000);
      assert.equal(read(e.confDir, '10-calico.conflist'), CALICO_WITH_US);
      const status = readStatus(e);
      assert.deepEqual([status.conflist, status.pluginBuild], [join(e.confDir, '10-calico.conflist'), Y]);
      assert.deepEqual(tree(e.binDir), expectedInstall(source, Y), 'the repaired build installed exactly');
    } finally {
      kill();
    }
    const r = await done;
    assert.equal(r.code, 0, r.stderr);
    const failures = r.stdout.split('\n').filter((l) => l.includes('not chaining the plugin'));
    assert.equal(failures.length, 1, `the same failure is logged once, not on every re-check:\n${failures.join('\n')}`);
  });
});

describe('status file', () => {
  test('waiting-for-primary, chained, error, uninstalled; the parent dir is created', async () => {
    const e = env();
    assert.ok(!existsSync(join(e.status, '..')), 'the status dir does not exist yet');
    assert.equal((await run(dirs(e))).code, 4, 'no primary: exit 4');
    let s = readStatus(e);
    assert.deepEqual([s.state, s.conflist, s.pluginBuild], ['waiting-for-primary', null, X]);
    assert.match(s.message, /no valid CNI config in .*net\.d yet/);
    put(e.confDir, '10-calico.conflist', CALICO);
    assert.equal((await run(dirs(e))).code, 0);
    s = readStatus(e);
    assert.deepEqual([s.state, s.conflist, s.pluginBuild], ['chained', join(e.confDir, '10-calico.conflist'), X]);
    assert.equal(s.message, `our entry is the last plugin of ${join(e.confDir, '10-calico.conflist')}`);
    assert.equal((await run([...dirs(e), '--uninstall'])).code, 0);
    s = readStatus(e);
    assert.deepEqual([s.state, s.conflist, s.pluginBuild], ['uninstalled', null, null]);
    assert.deepEqual(snapshot(e.confDir), { '10-calico.conflist': CALICO });
    assert.deepEqual(readdirSync(e.binDir), [], 'no plugin file left');
    put(e.confDir, '10-calico.conflist', '{"cniVersion":"0.2.0","name":"old","plugins":[{"type":"bridge"}]}');
    assert.equal((await run(dirs(e))).code, 3);
    s = readStatus(e);
    assert.equal(s.state, 'error');
    assert.match(s.message, /refusing to chain into .*10-calico\.conflist: its cniVersion "0\.2\.0" is older than 0\.3\.0/);
    noTempFiles(join(e.status, '..'));
  });
});
