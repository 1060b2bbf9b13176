// The CNI installer on temp dirs with real files: exact bytes before and after every operation.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  InstallError, PLUGIN_FILES, SHADOW_SUFFIX, buildEntry, findPrimary, install, installBinaries, reconcile, removeOurEntries,
  uninstall, upsertEntry, waitForPrimary, watch, type InstallerOptions, type ReconcileResult,
} from '../../install/cni-installer';

const ROOT = join(__dirname, '..', '..');
const MAIN = join(ROOT, 'install', 'cni-install-main.ts');
const temps: string[] = [];
after(() => {
  for (const t of temps) rmSync(t, { recursive: true, force: true });
});

interface Env {
  confDir: string;
  binDir: string;
  source: string;
  opts: InstallerOptions;
}

/** A node's two CNI dirs and an image's plugin source dir, in a fresh temp dir. */
function env(pluginConfig?: Record<string, unknown>): Env {
  const t = mkdtempSync(join(tmpdir(), 'ihr-install-'));
  temps.push(t);
  const confDir = join(t, 'net.d');
  const binDir = join(t, 'bin');
  const source = join(t, 'image-cni');
  for (const d of [confDir, binDir, source]) mkdirSync(d);
  writeFileSync(join(source, 'int-host-reporter'), '#!/usr/bin/env node\n// plugin v1\n', { mode: 0o755 });
  writeFileSync(join(source, 'int_host_reporter.node'), 'addon v1', { mode: 0o755 });
  writeFileSync(join(source, 'datapath.bpf.o'), 'object v1', { mode: 0o644 });
  return { confDir, binDir, source, opts: { confDir, binDir, pluginSource: source, pluginConfig } };
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
  test('inserts our entry last and changes no other byte; plugin files copied', () => {
    const e = env(SOCKET);
    put(e.confDir, '10-calico.conflist', CALICO);
    const r = install(e.opts);
    assert.deepEqual(r, { primary: '10-calico.conflist', target: '10-calico.conflist', action: 'inserted', removedShadows: [] },
      `unexpected result ${JSON.stringify(r)}`);
    assert.equal(read(e.confDir, '10-calico.conflist'), CALICO_WITH_US);
    for (const f of PLUGIN_FILES) {
      assert.equal(read(e.binDir, f), read(e.source, f), `${f} must be copied byte for byte`);
      assert.equal(statSync(join(e.binDir, f)).mode & 0o777, statSync(join(e.source, f)).mode & 0o777, `${f} keeps its mode`);
    }
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
    assert.equal(statSync(join(e.binDir, 'int-host-reporter')).ino, binBefore.ino, 'an identical plugin file must not be replaced');
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

  test('uninstall takes out our entry only (original bytes back) and our three files only', () => {
    const e = env(SOCKET);
    put(e.confDir, '10-calico.conflist', CALICO);
    put(e.binDir, 'bridge', 'not ours', 0o755);
    put(e.binDir, 'portmap', 'not ours either', 0o755);
    install(e.opts);
    const r = uninstall(e.opts);
    assert.deepEqual(r, { edited: ['10-calico.conflist'], removedShadows: [], removedBinaries: ['int-host-reporter', 'datapath.bpf.o', 'int_host_reporter.node'] },
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

  test('a missing source file is named; a changed plugin replaces the old one by rename', () => {
    const e = env();
    unlinkSync(join(e.source, 'datapath.bpf.o'));
    assert.throws(() => installBinaries(e.opts), /lacks datapath\.bpf\.o/, 'the missing file must be named');
    writeFileSync(join(e.source, 'datapath.bpf.o'), 'object v1');
    installBinaries(e.opts);
    const ino = statSync(join(e.binDir, 'int-host-reporter')).ino;
    writeFileSync(join(e.source, 'int-host-reporter'), '#!/usr/bin/env node\n// plugin v2\n');
    assert.deepEqual(installBinaries(e.opts), { copied: ['int-host-reporter'], unchanged: ['int_host_reporter.node', 'datapath.bpf.o'] });
    assert.notEqual(statSync(join(e.binDir, 'int-host-reporter')).ino, ino, 'a new inode: replaced by rename, not rewritten in place');
    assert.equal(read(e.binDir, 'int-host-reporter'), '#!/usr/bin/env node\n// plugin v2\n');
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

describe('command line', () => {
  function run(args: string[], onSpawn?: (kill: () => void) => void): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      child.on('close', (code) => resolve({ code, stdout, stderr }));
      onSpawn?.(() => child.kill('SIGTERM'));
    });
  }
  const dirs = (e: Env) => ['--cni-conf-dir', e.confDir, '--cni-bin-dir', e.binDir, '--plugin-source', e.source];

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
