// Contract tests of the CNI plugin: the real plugin process (node --import tsx plugin/main.ts) with
// real stdin/env/stdout/exit codes, a real HTTP daemon stand-in on a unix socket, a real spool on
// disk. Only the datapath is a file-backed fake (INT_HOST_REPORTER_PLUGIN_FAKE_DATAPATH): these
// tests are about the contract shape; the kernel side is tested with real veths elsewhere.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { build } from 'esbuild';
import { readSpool, writeSpoolRecord, MAX_SPOOL_ENTRIES } from '../../plugin/spool';
import {
  CONTAINER_ID, FakeDaemon, fixture, HOST_VETH, type Json, NETNS, parseError, podmanAdd, prevResultFor, REPO, runPlugin,
  Sandbox, type Version, VERSIONS,
} from '../fixtures/cni/harness';

const NETWORK = 'ebpftest';
const KEY_TEXT = `${NETWORK}/${CONTAINER_ID}/eth0`;
const POD = { podNamespace: 'shop', podName: 'cart-5d9f', podUid: '2b1c7f0e-3a4d-4e5f-8a9b-0c1d2e3f4a5b' };
const SUPPORTED = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];
const ISO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const PARALLEL = { concurrency: 6 };

/** A sandbox, optionally with a listening daemon, removed after the test body. */
async function withSandbox(
  body: (sb: Sandbox, daemon: FakeDaemon | undefined) => Promise<void>,
  options: { daemon?: boolean; state?: ConstructorParameters<typeof Sandbox>[0] } = {},
): Promise<void> {
  const sb = new Sandbox(options.state);
  const daemon = options.daemon ? await new FakeDaemon(sb.socketPath).listen() : undefined;
  try {
    await body(sb, daemon);
  } finally {
    await daemon?.close();
    sb.remove();
  }
}

function addNotice(extra: Json = {}): Json {
  return {
    network: NETWORK, containerId: CONTAINER_ID, ifname: 'eth0', netns: NETNS, ...POD, ips: ['10.99.0.2'],
    hostIfname: HOST_VETH.ifname, hostIfindex: HOST_VETH.ifindex, mode: 'tcx', programIds: [191, 192], ...extra,
  };
}

function delNotice(extra: Json = {}): Json {
  return { network: NETWORK, containerId: CONTAINER_ID, ifname: 'eth0', netns: NETNS, ...POD, ...extra };
}

/** Removes attachedAt after checking it is an ISO time (the only field a test cannot predict). */
function withoutTime(notice: Json): Json {
  assert.match(notice.attachedAt, ISO_TIME);
  const { attachedAt: _ignored, ...rest } = notice;
  return rest;
}

function expectedEcho(prevResult: Json, version: string): Json {
  return { ...prevResult, cniVersion: version };
}

// ---------------------------------------------------------------------------------------------
describe('CNI contract: VERSION', PARALLEL, () => {
  for (const version of VERSIONS) {
    test(`contract: VERSION with libcni's dummy env answers in the asked version ${version}`, async () => {
      const res = await runPlugin({
        env: { CNI_COMMAND: 'VERSION', CNI_NETNS: 'dummy', CNI_IFNAME: 'dummy', CNI_PATH: 'dummy', CNI_CONTAINERID: '', CNI_ARGS: '' },
        stdin: { cniVersion: version },
      });
      assert.equal(res.code, 0);
      assert.deepEqual(JSON.parse(res.stdout), { cniVersion: version, supportedVersions: SUPPORTED });
    });
  }
  test('contract: VERSION with empty stdin answers 1.1.0', async () => {
    const res = await runPlugin({ env: { CNI_COMMAND: 'VERSION' }, stdin: '' });
    assert.equal(res.code, 0);
    assert.deepEqual(JSON.parse(res.stdout), { cniVersion: '1.1.0', supportedVersions: SUPPORTED });
  });
  test('contract: VERSION does not validate the config (no name, garbage, unsupported version)', async () => {
    for (const stdin of ['not json', '{"cniVersion":"0.2.0"}', '[]']) {
      const res = await runPlugin({ env: { CNI_COMMAND: 'VERSION' }, stdin });
      assert.equal(res.code, 0, stdin);
      const expectedVersion = stdin.includes('0.2.0') ? '0.2.0' : '1.1.0';
      assert.deepEqual(JSON.parse(res.stdout), { cniVersion: expectedVersion, supportedVersions: SUPPORTED });
    }
  });
  test('contract: VERSION touches no datapath, spool or daemon', () =>
    withSandbox(async (sb) => {
      const res = await runPlugin({ env: { CNI_COMMAND: 'VERSION', INT_HOST_REPORTER_PLUGIN_FAKE_DATAPATH: sb.stateFile }, stdin: { cniVersion: '1.0.0' } });
      assert.equal(res.code, 0);
      assert.deepEqual(sb.state().calls, []);
      assert.equal(existsSync(sb.spoolDir), false);
    }));
});

// ---------------------------------------------------------------------------------------------
describe('CNI contract: ADD echoes prevResult and attaches (every version)', PARALLEL, () => {
  for (const version of VERSIONS) {
    test(`contract: ADD ${version} with podman's stdin prints prevResult unchanged, attaches, notifies`, () =>
      withSandbox(async (sb, daemon) => {
        const stdin = podmanAdd(version, sb);
        const res = await runPlugin({ env: sb.env('ADD'), stdin });
        assert.equal(res.code, 0, res.stdout + res.stderr);
        // byte-equivalent: same keys in the same order, same values
        assert.equal(res.stdout, JSON.stringify(stdin.prevResult) + '\n');
        assert.deepEqual(sb.state().calls, [`findHostVeth ${NETNS} eth0`, `attach ${KEY_TEXT}@19`]);
        assert.equal(daemon!.received.length, 1);
        const got = daemon!.received[0];
        assert.equal(got.method, 'POST');
        assert.equal(got.url, '/v1/cni/add');
        assert.equal(got.contentType, 'application/json');
        assert.deepEqual(withoutTime(got.body), addNotice());
        assert.deepEqual(readSpool(sb.spoolDir), []);
        assert.equal(res.stderr, '');
      }, { daemon: true }));
  }

  test('contract: ADD exact podman 1.0.0 stdin (capabilities, runtimeConfig, dns {}) echoes byte for byte', () =>
    withSandbox(async (sb) => {
      const stdin = { ...fixture('podman-add-1.0.0.json'), ...sb.options() };
      const res = await runPlugin({ env: sb.env('ADD'), stdin });
      assert.equal(res.code, 0);
      assert.equal(res.stdout, JSON.stringify(fixture('podman-add-1.0.0.json').prevResult) + '\n');
      assert.deepEqual(JSON.parse(res.stdout).dns, {});
    }, { daemon: true }));

  test('contract: ADD forces the config cniVersion onto a prevResult of a sibling version (1.0.0 -> 1.1.0, 0.3.1 -> 0.4.0)', () =>
    withSandbox(async (sb) => {
      for (const [from, to] of [['1.0.0', '1.1.0'], ['0.3.1', '0.4.0'], ['0.4.0', '0.3.0']] as [Version, Version][]) {
        const stdin = { ...podmanAdd(to, sb), prevResult: prevResultFor(from) };
        const res = await runPlugin({ env: sb.env('ADD'), stdin });
        assert.equal(res.code, 0);
        assert.equal(res.stdout, JSON.stringify(expectedEcho(prevResultFor(from), to)) + '\n');
      }
    }, { daemon: true }));

  test('contract: ADD converts a 1.x prevResult for a 0.4.0 config (adds ips[].version, drops mtu/socketPath/pciID)', () =>
    withSandbox(async (sb) => {
      const prev = fixture('prevresult-1.1.0-dualstack.json');
      const res = await runPlugin({ env: sb.env('ADD'), stdin: { ...podmanAdd('0.4.0', sb), prevResult: prev } });
      assert.equal(res.code, 0, res.stdout);
      assert.deepEqual(JSON.parse(res.stdout), {
        cniVersion: '0.4.0',
        interfaces: [
          { name: 'vetha3083c04', mac: 'fe:e1:0c:0a:01:e1' },
          { name: 'eth0', mac: '7a:af:d6:39:fd:e7', sandbox: NETNS },
        ],
        ips: [
          { version: '4', address: '10.99.0.7/24', gateway: '10.99.0.1', interface: 1 },
          { version: '6', address: 'fd00:99::7/64', gateway: 'fd00:99::1', interface: 1 },
          { version: '4', address: '192.0.2.9/32' },
        ],
        routes: [{ dst: '0.0.0.0/0', gw: '10.99.0.1', mtu: 1400, priority: 10 }],
        dns: { nameservers: ['10.96.0.10'], search: ['svc.cluster.local'] },
        'x-vendor': { kept: true },
      });
    }, { daemon: true }));

  test('contract: ADD converts a 0.4.0 prevResult for a 1.0.0 config (drops ips[].version, keeps the rest)', () =>
    withSandbox(async (sb) => {
      const prev = fixture('prevresult-0.4.0.json');
      const res = await runPlugin({ env: sb.env('ADD'), stdin: { ...podmanAdd('1.0.0', sb), prevResult: prev } });
      assert.equal(res.code, 0, res.stdout);
      const expected = { ...prev, cniVersion: '1.0.0', ips: [{ address: '10.99.0.5/24', gateway: '10.99.0.1', interface: 2 }] };
      assert.equal(res.stdout, JSON.stringify(expected) + '\n');
    }, { daemon: true }));

  test('contract: ADD reports the pod IPs of CNI_IFNAME only (index into a sandboxed eth0, or no index)', () =>
    withSandbox(async (sb, daemon) => {
      const prev = fixture('prevresult-1.1.0-dualstack.json');
      const res = await runPlugin({ env: sb.env('ADD'), stdin: { ...podmanAdd('1.1.0', sb), prevResult: prev } });
      assert.equal(res.code, 0);
      assert.deepEqual(daemon!.received[0].body.ips, ['10.99.0.7', 'fd00:99::7', '192.0.2.9']);
      const noPodArgs = await runPlugin({ env: sb.env('ADD', { CNI_ARGS: '' }), stdin: podmanAdd('1.0.0', sb) });
      assert.equal(noPodArgs.code, 0);
      const body = daemon!.received[1].body;
      assert.equal('podName' in body || 'podNamespace' in body || 'podUid' in body, false);
      assert.deepEqual(body.ips, ['10.99.0.2']);
    }, { daemon: true }));

  test('contract: ADD run twice for the same attachment succeeds twice (idempotent)', () =>
    withSandbox(async (sb, daemon) => {
      for (let i = 0; i < 2; i++) {
        const res = await runPlugin({ env: sb.env('ADD'), stdin: podmanAdd('1.0.0', sb) });
        assert.equal(res.code, 0);
      }
      assert.equal(Object.keys(sb.state().attachments).length, 1);
      assert.equal(daemon!.received.length, 2);
    }, { daemon: true }));
});

// ---------------------------------------------------------------------------------------------
describe('CNI contract: DEL always succeeds with empty stdout', PARALLEL, () => {
  for (const version of VERSIONS) {
    test(`contract: DEL ${version} with prevResult detaches and notifies`, () =>
      withSandbox(async (sb, daemon) => {
        const res = await runPlugin({ env: sb.env('DEL'), stdin: podmanAdd(version, sb) });
        assert.deepEqual([res.code, res.stdout], [0, '']);
        assert.deepEqual(sb.state().calls, [`detach ${KEY_TEXT}`]);
        assert.deepEqual(daemon!.received.map((r) => [r.method, r.url, r.contentType, r.body]),
          [['POST', '/v1/cni/del', 'application/json', delNotice()]]);
        assert.deepEqual(readSpool(sb.spoolDir), []);
      }, { daemon: true }));

    test(`contract: DEL ${version} without prevResult, with empty CNI_NETNS, repeated 3 times`, () =>
      withSandbox(async (sb, daemon) => {
        const stdin = { ...fixture('podman-del-no-prevresult-1.0.0.json'), cniVersion: version, ...sb.options() };
        for (let i = 0; i < 3; i++) {
          const res = await runPlugin({ env: sb.env('DEL', { CNI_NETNS: '' }), stdin });
          assert.deepEqual([res.code, res.stdout], [0, '']);
        }
        const { netns: _none, ...withoutNetns } = delNotice();
        assert.deepEqual(daemon!.received.map((r) => r.body), [withoutNetns, withoutNetns, withoutNetns]);
      }, { daemon: true }));
  }

  test('contract: DEL with CNI_NETNS unset, a netns that does not exist, and a veth that is gone', () =>
    withSandbox(async (sb) => {
      const stdin = { ...fixture('podman-del-no-prevresult-1.0.0.json'), ...sb.options() };
      for (const env of [sb.env('DEL', { CNI_NETNS: undefined }), sb.env('DEL', { CNI_NETNS: '/run/netns/gone-long-ago' })]) {
        const res = await runPlugin({ env, stdin });
        assert.deepEqual([res.code, res.stdout], [0, '']);
      }
    }, { daemon: true, state: { veths: {} } }));

  test('contract: DEL succeeds when detach fails and the daemon is down (both spooled)', () =>
    withSandbox(async (sb) => {
      const res = await runPlugin({ env: sb.env('DEL'), stdin: podmanAdd('1.0.0', sb) });
      assert.deepEqual([res.code, res.stdout], [0, '']);
      const [entry, ...rest] = readSpool(sb.spoolDir);
      assert.deepEqual(rest, []);
      assert.equal(entry.op, 'del');
      assert.deepEqual(entry.notice, delNotice({ error: 'detach failed: bpffs is read-only' }));
      assert.equal(entry.reasons.length, 2);
      assert.equal(entry.reasons[0], 'detach failed: bpffs is read-only');
      assert.match(entry.reasons[1], /^notify failed: cannot reach the daemon at .*daemon\.sock: connect ENOENT/);
    }, { state: { fail: { detach: 'bpffs is read-only' } } }));
});

// ---------------------------------------------------------------------------------------------
describe('CNI contract: CHECK', PARALLEL, () => {
  for (const version of ['0.4.0', '1.0.0', '1.1.0'] as Version[]) {
    test(`contract: CHECK ${version} after ADD succeeds with empty stdout`, () =>
      withSandbox(async (sb) => {
        assert.equal((await runPlugin({ env: sb.env('ADD'), stdin: podmanAdd(version, sb) })).code, 0);
        const res = await runPlugin({ env: sb.env('CHECK'), stdin: podmanAdd(version, sb) });
        assert.deepEqual([res.code, res.stdout], [0, '']);
        assert.equal(sb.state().calls.at(-1), `isAttached ${KEY_TEXT}@19`);
      }, { daemon: true }));
  }
  for (const version of ['0.3.0', '0.3.1'] as Version[]) {
    test(`contract: CHECK on a ${version} config is refused like skel (code 1)`, () =>
      withSandbox(async (sb) => {
        const res = await runPlugin({ env: sb.env('CHECK'), stdin: podmanAdd(version, sb) });
        assert.equal(res.code, 1);
        assert.deepEqual(parseError(res.stdout), {
          cniVersion: version, code: 1, msg: 'config version does not allow CHECK',
          details: `config is "${version}", CHECK needs cniVersion 0.4.0 or later`,
        });
        assert.deepEqual(sb.state().calls, []);
      }));
  }
  test('contract: CHECK when our programs are not attached -> code 101 naming the veth', () =>
    withSandbox(async (sb) => {
      const res = await runPlugin({ env: sb.env('CHECK'), stdin: podmanAdd('1.0.0', sb) });
      assert.equal(res.code, 1);
      assert.deepEqual(parseError(res.stdout), {
        cniVersion: '1.0.0', code: 101, msg: 'int-host-reporter programs are not attached to the host veth',
        details: `vetha3083c04 (ifindex 19) for ${KEY_TEXT}`,
      });
    }));
  test('contract: CHECK when the host veth cannot be found -> code 100', () =>
    withSandbox(async (sb) => {
      const res = await runPlugin({ env: sb.env('CHECK'), stdin: podmanAdd('1.0.0', sb) });
      assert.deepEqual(parseError(res.stdout), {
        cniVersion: '1.0.0', code: 100, msg: 'cannot find the host veth of the pod interface',
        details: `eth0 in ${NETNS}: no interface eth0 in netns ${NETNS}`,
      });
    }, { state: { veths: {} } }));
  test('contract: CHECK when the peer is not among prevResult host interfaces -> code 100', () =>
    withSandbox(async (sb) => {
      const res = await runPlugin({ env: sb.env('CHECK'), stdin: podmanAdd('1.0.0', sb) });
      assert.deepEqual(parseError(res.stdout), {
        cniVersion: '1.0.0', code: 100, msg: 'host veth does not match prevResult',
        details: "host veth veth0ther (ifindex 23) is not among prevResult's host interfaces [cni-ebpft0, vetha3083c04]",
      });
    }, { state: { veths: { [`${NETNS}|eth0`]: { ifindex: 23, ifname: 'veth0ther', kind: 'veth' } } } }));
  test('contract: CHECK without prevResult -> code 7', () =>
    withSandbox(async (sb) => {
      const { prevResult: _p, ...stdin } = podmanAdd('1.0.0', sb);
      const res = await runPlugin({ env: sb.env('CHECK'), stdin });
      assert.deepEqual(parseError(res.stdout), {
        cniVersion: '1.0.0', code: 7, msg: 'must be called as a chained plugin', details: 'prevResult is missing from the network config',
      });
    }));
  test('contract: CHECK with checkDaemon asks the daemon (200 ok, 404 -> code 102, down -> code 102)', () =>
    withSandbox(async (sb, daemon) => {
      const stdin = podmanAdd('1.1.0', sb, { checkDaemon: true });
      assert.equal((await runPlugin({ env: sb.env('ADD'), stdin })).code, 0);
      const ok = await runPlugin({ env: sb.env('CHECK'), stdin });
      assert.deepEqual([ok.code, ok.stdout], [0, '']);
      const query = daemon!.received[1];
      assert.equal(query.method, 'GET');
      assert.equal(query.url, `/v1/cni/attachment?network=${NETWORK}&containerId=${CONTAINER_ID}&ifname=eth0`);
      daemon!.status = 404;
      const unknown = await runPlugin({ env: sb.env('CHECK'), stdin });
      assert.deepEqual(parseError(unknown.stdout), {
        cniVersion: '1.1.0', code: 102, msg: 'the int-host-reporter daemon does not know the attachment', details: KEY_TEXT,
      });
      await daemon!.close();
      const down = await runPlugin({ env: sb.env('CHECK'), stdin });
      const err = parseError(down.stdout);
      assert.deepEqual([err.code, err.msg], [102, 'cannot ask the int-host-reporter daemon about the attachment']);
      assert.match(err.details, /connect ENOENT/);
    }, { daemon: true }));
});

// ---------------------------------------------------------------------------------------------
describe('CNI contract: STATUS (1.1.0)', PARALLEL, () => {
  test('contract: STATUS with failurePolicy open exits 0 even with the daemon down', () =>
    withSandbox(async (sb) => {
      const res = await runPlugin({ env: { CNI_COMMAND: 'STATUS', CNI_PATH: '/opt/cni/bin' }, stdin: { cniVersion: '1.1.0', name: NETWORK, type: 'int-host-reporter', ...sb.options() } });
      assert.deepEqual([res.code, res.stdout], [0, '']);
    }));
  test('contract: STATUS with failurePolicy closed and the daemon down -> code 50', () =>
    withSandbox(async (sb) => {
      const res = await runPlugin({ env: { CNI_COMMAND: 'STATUS', CNI_PATH: '/opt/cni/bin' }, stdin: { cniVersion: '1.1.0', name: NETWORK, type: 'int-host-reporter', failurePolicy: 'closed', ...sb.options() } });
      assert.equal(res.code, 1);
      const err = parseError(res.stdout);
      assert.deepEqual([err.cniVersion, err.code, err.msg], ['1.1.0', 50, 'int-host-reporter daemon is not reachable']);
      assert.equal(err.details, `cannot connect to ${sb.socketPath}: connect ENOENT ${sb.socketPath}; with failurePolicy "closed" ADD would fail`);
    }));
  test('contract: STATUS with failurePolicy closed and the daemon up exits 0', () =>
    withSandbox(async (sb) => {
      const res = await runPlugin({ env: { CNI_COMMAND: 'STATUS', CNI_PATH: '/opt/cni/bin' }, stdin: { cniVersion: '1.1.0', name: NETWORK, type: 'int-host-reporter', failurePolicy: 'closed', ...sb.options() } });
      assert.deepEqual([res.code, res.stdout], [0, '']);
    }, { daemon: true }));
  for (const version of ['0.3.0', '0.3.1', '0.4.0', '1.0.0'] as Version[]) {
    test(`contract: STATUS on a ${version} config -> code 1`, async () => {
      const res = await runPlugin({ env: { CNI_COMMAND: 'STATUS', CNI_PATH: '/opt/cni/bin' }, stdin: { cniVersion: version, name: NETWORK, type: 'int-host-reporter' } });
      assert.deepEqual(parseError(res.stdout), {
        cniVersion: version, code: 1, msg: 'config version does not allow STATUS', details: `config is "${version}", STATUS needs cniVersion 1.1.0 or later`,
      });
    });
  }
});

// ---------------------------------------------------------------------------------------------
describe('CNI contract: GC (1.1.0)', PARALLEL, () => {
  function attachment(containerId: string): Json {
    return { key: { network: NETWORK, containerId, ifname: 'eth0' }, hostIfindex: 30, mode: 'tcx', programIds: [1] };
  }
  const heldState = {
    attachments: {
      [`${NETWORK}/keep-one/eth0`]: attachment('keep-one'),
      [`${NETWORK}/stale-two/eth0`]: attachment('stale-two'),
      ['othernet/stale-two/eth0']: { ...attachment('stale-two'), key: { network: 'othernet', containerId: 'stale-two', ifname: 'eth0' } },
    },
  };
  const gcEnv = (sb: Sandbox): Json => ({ CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin', INT_HOST_REPORTER_PLUGIN_FAKE_DATAPATH: sb.stateFile });

  for (const keys of [['cni.dev/valid-attachments', 'cni.dev/attachments'], ['cni.dev/valid-attachments'], ['cni.dev/attachments']]) {
    test(`contract: GC with ${keys.join(' + ')} removes only this network's stale attachments and spool records`, () =>
      withSandbox(async (sb, daemon) => {
        const gc = fixture('gc-1.1.0.json');
        for (const k of ['cni.dev/valid-attachments', 'cni.dev/attachments']) if (!keys.includes(k)) delete gc[k];
        writeSpoolRecord(sb.spoolDir, 'add', { network: NETWORK, containerId: 'spooled-three', ifname: 'eth0' }, ['notify failed']);
        writeSpoolRecord(sb.spoolDir, 'add', { network: NETWORK, containerId: 'keep-one', ifname: 'eth0' }, ['notify failed']);
        const res = await runPlugin({ env: gcEnv(sb), stdin: { ...gc, ...sb.options() } });
        assert.deepEqual([res.code, res.stdout], [0, '']);
        assert.deepEqual(Object.keys(sb.state().attachments).sort(), [`${NETWORK}/keep-one/eth0`, 'othernet/stale-two/eth0']);
        assert.deepEqual(sb.state().calls, [
          `listAttachments ${NETWORK}`, `detach ${NETWORK}/stale-two/eth0`, `detach ${NETWORK}/spooled-three/eth0`,
        ]);
        assert.deepEqual(daemon!.received.map((r) => [r.url, r.body]), [
          ['/v1/cni/del', { network: NETWORK, containerId: 'stale-two', ifname: 'eth0' }],
          ['/v1/cni/del', { network: NETWORK, containerId: 'spooled-three', ifname: 'eth0' }],
        ]);
        assert.deepEqual(readSpool(sb.spoolDir).map((e) => e.key.containerId), ['keep-one']);
      }, { daemon: true, state: heldState }));
  }

  test('contract: GC with the daemon down turns stale ADD repairs into DEL records', () =>
    withSandbox(async (sb) => {
      writeSpoolRecord(sb.spoolDir, 'add', { network: NETWORK, containerId: 'stale-two', ifname: 'eth0' }, ['notify failed']);
      const res = await runPlugin({ env: gcEnv(sb), stdin: { ...fixture('gc-1.1.0.json'), ...sb.options() } });
      assert.deepEqual([res.code, res.stdout], [0, '']);
      const entries = readSpool(sb.spoolDir);
      assert.deepEqual(entries.map((e) => [e.op, e.key.containerId]), [['del', 'stale-two']]);
    }, { state: heldState }));

  test('contract: GC with an empty list (or null) releases everything of the network', () =>
    withSandbox(async (sb) => {
      const stdin = { cniVersion: '1.1.0', name: NETWORK, type: 'int-host-reporter', 'cni.dev/valid-attachments': null, 'cni.dev/attachments': [], ...sb.options() };
      const res = await runPlugin({ env: gcEnv(sb), stdin });
      assert.deepEqual([res.code, res.stdout], [0, '']);
      assert.deepEqual(Object.keys(sb.state().attachments), ['othernet/stale-two/eth0']);
    }, { daemon: true, state: heldState }));

  test('contract: GC without either list removes nothing', () =>
    withSandbox(async (sb) => {
      const res = await runPlugin({ env: gcEnv(sb), stdin: { cniVersion: '1.1.0', name: NETWORK, type: 'int-host-reporter', ...sb.options() } });
      assert.deepEqual([res.code, res.stdout], [0, '']);
      assert.equal(Object.keys(sb.state().attachments).length, 3);
      assert.deepEqual(sb.state().calls, []);
    }, { daemon: true, state: heldState }));

  test('contract: GC with a malformed list -> code 7 naming the key and entry', () =>
    withSandbox(async (sb) => {
      for (const [list, msg] of [
        [{ containerID: 'x' }, 'field "cni.dev/valid-attachments" must be an array'],
        [[{ containerID: 'x', ifname: 'eth0' }, { containerID: 5, ifname: 'eth0' }], 'field "cni.dev/valid-attachments"[1] must be {"containerID": string, "ifname": string}'],
      ] as [Json, string][]) {
        const res = await runPlugin({ env: gcEnv(sb), stdin: { cniVersion: '1.1.0', name: NETWORK, type: 'int-host-reporter', 'cni.dev/valid-attachments': list } });
        const err = parseError(res.stdout);
        assert.deepEqual([res.code, err.code, err.msg], [1, 7, msg]);
      }
      assert.equal(Object.keys(sb.state().attachments).length, 3);
    }, { state: heldState }));

  for (const version of ['0.3.0', '0.3.1', '0.4.0', '1.0.0'] as Version[]) {
    test(`contract: GC on a ${version} config -> code 1`, async () => {
      const res = await runPlugin({ env: { CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin' }, stdin: { ...fixture('gc-1.1.0.json'), cniVersion: version } });
      assert.deepEqual(parseError(res.stdout), {
        cniVersion: version, code: 1, msg: 'config version does not allow GC', details: `config is "${version}", GC needs cniVersion 1.1.0 or later`,
      });
    });
  }
});

// ---------------------------------------------------------------------------------------------
describe('CNI contract: malformed input gives the exact error code on stdout', PARALLEL, () => {
  const base = (): Json => ({ ...fixture('podman-add-1.0.0.json') });
  const without = (key: string): Json => { const c = base(); delete c[key]; return c; };
  const versionDetails = (shown: string): string => `config is ${shown}, plugin supports [0.3.0 0.3.1 0.4.0 1.0.0 1.1.0]`;
  const TRUNCATED_JSON = '{"cniVersion": "1.0.0", ';
  const jsonErrorOf = (text: string): string => { try { JSON.parse(text); return ''; } catch (err) { return (err as Error).message; } };
  const cases: { name: string; stdin: Json; code: number; msg: string; details: string; cniVersion?: string }[] = [
    { name: 'stdin not JSON', stdin: TRUNCATED_JSON, code: 6, msg: 'error decoding network config from stdin', details: jsonErrorOf(TRUNCATED_JSON), cniVersion: '1.1.0' },
    { name: 'stdin a JSON array', stdin: '[]', code: 7, msg: 'network config must be a JSON object', details: '', cniVersion: '1.1.0' },
    { name: 'cniVersion missing', stdin: without('cniVersion'), code: 1, msg: 'incompatible CNI versions', details: versionDetails('missing (taken as 0.2.0)'), cniVersion: '1.1.0' },
    { name: 'cniVersion 0.1.0', stdin: { ...base(), cniVersion: '0.1.0' }, code: 1, msg: 'incompatible CNI versions', details: versionDetails('"0.1.0"'), cniVersion: '1.1.0' },
    { name: 'cniVersion 0.2.0', stdin: { ...base(), cniVersion: '0.2.0' }, code: 1, msg: 'incompatible CNI versions', details: versionDetails('"0.2.0"'), cniVersion: '1.1.0' },
    { name: 'cniVersion 2.0.0 (unknown)', stdin: { ...base(), cniVersion: '2.0.0' }, code: 1, msg: 'incompatible CNI versions', details: versionDetails('"2.0.0"'), cniVersion: '1.1.0' },
    { name: 'cniVersion a number', stdin: { ...base(), cniVersion: 1 }, code: 1, msg: 'incompatible CNI versions', details: versionDetails('1'), cniVersion: '1.1.0' },
    { name: 'name missing', stdin: without('name'), code: 7, msg: 'missing network name', details: 'field "name"' },
    { name: 'name not a string', stdin: { ...base(), name: 42 }, code: 7, msg: 'field "name" must be a string', details: '42' },
    { name: 'name with invalid characters', stdin: { ...base(), name: 'my net' }, code: 7, msg: 'invalid characters in network name', details: 'my net' },
    { name: 'type missing', stdin: without('type'), code: 7, msg: 'missing plugin type', details: 'field "type"' },
    { name: 'type not a string', stdin: { ...base(), type: ['x'] }, code: 7, msg: 'field "type" must be a string', details: '["x"]' },
    { name: 'failurePolicy unsupported value', stdin: { ...base(), failurePolicy: 'sometimes' }, code: 2, msg: 'unsupported value for field "failurePolicy": "sometimes"', details: 'failurePolicy must be "open" or "closed"' },
    { name: 'failurePolicy not a string', stdin: { ...base(), failurePolicy: true }, code: 7, msg: 'field "failurePolicy" must be a string', details: 'got true' },
    { name: 'notifyTimeoutMs not an integer', stdin: { ...base(), notifyTimeoutMs: '1s' }, code: 7, msg: 'field "notifyTimeoutMs" must be an integer', details: 'got "1s"' },
    { name: 'notifyTimeoutMs out of range', stdin: { ...base(), notifyTimeoutMs: 50 }, code: 2, msg: 'unsupported value for field "notifyTimeoutMs": 50', details: 'notifyTimeoutMs must be between 100 and 30000' },
    { name: 'socketPath not a string', stdin: { ...base(), socketPath: 5 }, code: 7, msg: 'field "socketPath" must be a non-empty string', details: 'got 5' },
    { name: 'socketPath relative', stdin: { ...base(), socketPath: 'daemon.sock' }, code: 7, msg: 'field "socketPath" must be an absolute path', details: 'got "daemon.sock"' },
    { name: 'spoolDir not a string', stdin: { ...base(), spoolDir: [] }, code: 7, msg: 'field "spoolDir" must be a non-empty string', details: 'got []' },
    { name: 'bpffsRoot empty', stdin: { ...base(), bpffsRoot: '' }, code: 7, msg: 'field "bpffsRoot" must be a non-empty string', details: 'got ""' },
    { name: 'checkDaemon not a boolean', stdin: { ...base(), checkDaemon: 'yes' }, code: 7, msg: 'field "checkDaemon" must be a boolean', details: 'got "yes"' },
    { name: 'prevResult missing on ADD', stdin: without('prevResult'), code: 7, msg: 'must be called as a chained plugin', details: 'prevResult is missing from the network config' },
    { name: 'prevResult not an object', stdin: { ...base(), prevResult: 'x' }, code: 7, msg: 'prevResult must be an object', details: '' },
    { name: 'prevResult.interfaces not an array', stdin: { ...base(), prevResult: { ...base().prevResult, interfaces: {} } }, code: 7, msg: 'prevResult.interfaces must be an array', details: '' },
    { name: 'prevResult.ips[0].address not a string', stdin: { ...base(), prevResult: { ...base().prevResult, ips: [{ address: 10 }] } }, code: 7, msg: 'prevResult.ips[0].address must be a string', details: '' },
    { name: 'prevResult.ips[0].interface negative', stdin: { ...base(), prevResult: { ...base().prevResult, ips: [{ address: '10.0.0.1/24', interface: -1 }] } }, code: 7, msg: 'prevResult.ips[0].interface must be a non-negative integer', details: '' },
    { name: 'prevResult in the 0.2.0 ip4 shape', stdin: { ...base(), prevResult: { cniVersion: '0.2.0', ip4: { ip: '10.0.0.2/24' } } }, code: 1, msg: 'prevResult uses the pre-0.3.0 result format (ip4/ip6)', details: 'plugin supports results of 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0' },
    { name: 'prevResult with an unknown cniVersion', stdin: { ...base(), prevResult: { ...base().prevResult, cniVersion: '9.9.9' } }, code: 1, msg: 'prevResult has unsupported cniVersion "9.9.9"', details: 'plugin supports results of 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0' },
  ];
  for (const c of cases) {
    test(`contract: ADD with ${c.name} -> code ${c.code}`, () =>
      withSandbox(async (sb) => {
        const stdin = typeof c.stdin === 'string' ? c.stdin : { ...sb.options(), ...c.stdin };
        const res = await runPlugin({ env: sb.env('ADD'), stdin });
        assert.equal(res.code, 1);
        const err = parseError(res.stdout);
        assert.equal(err.code, c.code);
        assert.equal(err.msg, c.msg);
        assert.equal(err.details, c.details);
        assert.equal(err.cniVersion, c.cniVersion ?? '1.0.0');
        assert.deepEqual(sb.state().calls, [], 'a bad request touches nothing');
      }));
  }

  const envCases: { name: string; env: (sb: Sandbox) => Json; code: number; msg: string; details?: string }[] = [
    { name: 'CNI_COMMAND missing', env: (sb) => sb.env('ADD', { CNI_COMMAND: undefined }), code: 4, msg: 'required env variables [CNI_COMMAND] missing' },
    { name: 'CNI_COMMAND unknown', env: (sb) => sb.env('ADD', { CNI_COMMAND: 'UPDATE' }), code: 4, msg: 'unknown CNI_COMMAND: UPDATE', details: 'CNI_COMMAND must be one of ADD, DEL, CHECK, VERSION, STATUS, GC' },
    { name: 'ADD without CNI_NETNS and CNI_PATH', env: (sb) => sb.env('ADD', { CNI_NETNS: undefined, CNI_PATH: '' }), code: 4, msg: 'required env variables [CNI_NETNS,CNI_PATH] missing', details: 'CNI_COMMAND=ADD needs CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_PATH' },
    { name: 'CHECK without CNI_IFNAME', env: (sb) => sb.env('CHECK', { CNI_IFNAME: undefined }), code: 4, msg: 'required env variables [CNI_IFNAME] missing' },
    { name: 'DEL without CNI_CONTAINERID', env: (sb) => sb.env('DEL', { CNI_CONTAINERID: undefined }), code: 4, msg: 'required env variables [CNI_CONTAINERID] missing', details: 'CNI_COMMAND=DEL needs CNI_COMMAND, CNI_CONTAINERID, CNI_IFNAME, CNI_PATH' },
    { name: 'GC without CNI_PATH', env: () => ({ CNI_COMMAND: 'GC' }), code: 4, msg: 'required env variables [CNI_PATH] missing', details: 'CNI_COMMAND=GC needs CNI_COMMAND, CNI_PATH' },
    { name: 'STATUS without CNI_PATH', env: () => ({ CNI_COMMAND: 'STATUS' }), code: 4, msg: 'required env variables [CNI_PATH] missing', details: 'CNI_COMMAND=STATUS needs CNI_COMMAND, CNI_PATH' },
    { name: 'CNI_CONTAINERID with a slash', env: (sb) => sb.env('ADD', { CNI_CONTAINERID: 'abc/def' }), code: 4, msg: 'invalid characters in CNI_CONTAINERID', details: 'abc/def' },
    { name: 'CNI_CONTAINERID starting with a dash', env: (sb) => sb.env('DEL', { CNI_CONTAINERID: '-abc' }), code: 4, msg: 'invalid characters in CNI_CONTAINERID', details: '-abc' },
    { name: 'CNI_IFNAME of 16 characters', env: (sb) => sb.env('ADD', { CNI_IFNAME: 'eth0123456789abc' }), code: 4, msg: 'CNI_IFNAME is too long', details: 'interface name "eth0123456789abc" has 16 characters, at most 15 are allowed' },
    { name: 'CNI_IFNAME ..', env: (sb) => sb.env('ADD', { CNI_IFNAME: '..' }), code: 4, msg: 'CNI_IFNAME is . or ..', details: '..' },
    { name: 'CNI_IFNAME with a colon', env: (sb) => sb.env('DEL', { CNI_IFNAME: 'eth0:1' }), code: 4, msg: 'CNI_IFNAME contains / or : or whitespace', details: '"eth0:1"' },
    { name: 'CNI_IFNAME with a space', env: (sb) => sb.env('CHECK', { CNI_IFNAME: 'eth 0' }), code: 4, msg: 'CNI_IFNAME contains / or : or whitespace', details: '"eth 0"' },
  ];
  for (const c of envCases) {
    test(`contract: ${c.name} -> code ${c.code}`, () =>
      withSandbox(async (sb) => {
        const res = await runPlugin({ env: c.env(sb), stdin: podmanAdd('1.1.0', sb) });
        assert.equal(res.code, 1);
        const err = parseError(res.stdout);
        assert.deepEqual([err.code, err.msg], [c.code, c.msg]);
        if (c.details !== undefined) assert.equal(err.details, c.details);
        assert.deepEqual(sb.state().calls, []);
      }));
  }

  test('contract: DEL with a bad config still reports the config error (not a resource problem)', () =>
    withSandbox(async (sb) => {
      const res = await runPlugin({ env: sb.env('DEL'), stdin: { ...podmanAdd('1.0.0', sb), failurePolicy: 'never' } });
      assert.equal(res.code, 1);
      assert.equal(parseError(res.stdout).code, 2);
    }));

  test('contract: unknown fields, capabilities, args and runtimeConfig are accepted', () =>
    withSandbox(async (sb) => {
      const stdin = podmanAdd('1.1.0', sb, { args: { cni: { labels: [{ key: 'a', value: 'b' }] } }, 'cni.dev/future': 1, extra: { deep: [1] } });
      const res = await runPlugin({ env: sb.env('ADD'), stdin });
      assert.equal(res.code, 0, res.stdout);
      assert.equal(res.stdout, JSON.stringify(stdin.prevResult) + '\n');
    }, { daemon: true }));
});

// ---------------------------------------------------------------------------------------------
describe('CNI contract: fail-open ADD and the spool', PARALLEL, () => {
  test('contract: ADD with the daemon socket absent prints prevResult, exits 0 and spools the notice', () =>
    withSandbox(async (sb) => {
      const stdin = podmanAdd('1.0.0', sb);
      const res = await runPlugin({ env: sb.env('ADD'), stdin });
      assert.deepEqual([res.code, res.stdout], [0, JSON.stringify(stdin.prevResult) + '\n']);
      const [entry, ...rest] = readSpool(sb.spoolDir);
      assert.deepEqual(rest, []);
      assert.deepEqual([entry.version, entry.op, entry.key], [1, 'add', { network: NETWORK, containerId: CONTAINER_ID, ifname: 'eth0' }]);
      assert.deepEqual(withoutTime(entry.notice), addNotice());
      assert.deepEqual(entry.reasons, [`notify failed: cannot reach the daemon at ${sb.socketPath}: connect ENOENT ${sb.socketPath}`]);
      assert.match(entry.writtenAt, ISO_TIME);
      assert.deepEqual(readdirSync(sb.spoolDir), [entry.file], 'no tmp or lock file left behind');
      const log = JSON.parse(res.stderr.trim());
      assert.deepEqual([log.level, log.msg], ['warn', 'telemetry setup incomplete; pod networking unaffected (failurePolicy open)']);
    }));

  test('contract: ADD with a failing attach still prints prevResult; the daemon gets the error and the spool a record', () =>
    withSandbox(async (sb, daemon) => {
      const stdin = podmanAdd('0.4.0', sb);
      const res = await runPlugin({ env: sb.env('ADD'), stdin });
      assert.deepEqual([res.code, res.stdout], [0, JSON.stringify(stdin.prevResult) + '\n']);
      const expected = { network: NETWORK, containerId: CONTAINER_ID, ifname: 'eth0', netns: NETNS, ...POD, ips: ['10.99.0.2'], hostIfname: 'vetha3083c04', hostIfindex: 19, error: 'attach failed: TCX not supported' };
      assert.deepEqual(daemon!.received.map((r) => r.body), [expected]);
      assert.deepEqual(readSpool(sb.spoolDir).map((e) => [e.op, e.notice, e.reasons]), [['add', expected, ['attach failed: TCX not supported']]]);
    }, { daemon: true, state: { fail: { attach: 'TCX not supported' } } }));

  test('contract: ADD whose host peer is not in prevResult does not attach, fails open', () =>
    withSandbox(async (sb, daemon) => {
      const res = await runPlugin({ env: sb.env('ADD'), stdin: podmanAdd('1.0.0', sb) });
      assert.equal(res.code, 0);
      assert.deepEqual(sb.state().calls, [`findHostVeth ${NETNS} eth0`]);
      assert.equal(daemon!.received[0].body.error, "attach failed: host veth veth0ther (ifindex 23) is not among prevResult's host interfaces [cni-ebpft0, vetha3083c04]");
      assert.equal(readSpool(sb.spoolDir).length, 1);
    }, { daemon: true, state: { veths: { [`${NETNS}|eth0`]: { ifindex: 23, ifname: 'veth0ther', kind: 'veth' } } } }));

  test('contract: ADD whose host peer is not a veth fails open', () =>
    withSandbox(async (sb, daemon) => {
      const res = await runPlugin({ env: sb.env('ADD'), stdin: podmanAdd('1.0.0', sb) });
      assert.equal(res.code, 0);
      assert.equal(daemon!.received[0].body.error, 'attach failed: peer vetha3083c04 (ifindex 19) is a macvlan link, not a veth');
    }, { daemon: true, state: { veths: { [`${NETNS}|eth0`]: { ...HOST_VETH, kind: 'macvlan' } } } }));

  test('contract: ADD whose netns lookup fails (e.g. real datapath unavailable) fails open', () =>
    withSandbox(async (sb) => {
      const stdin = podmanAdd('1.1.0', sb);
      const res = await runPlugin({ env: sb.env('ADD', { CNI_NETNS: '/proc/4242/ns/net' }), stdin });
      assert.deepEqual([res.code, res.stdout], [0, JSON.stringify(stdin.prevResult) + '\n']);
      assert.equal(readSpool(sb.spoolDir)[0].notice.error, 'attach failed: no interface eth0 in netns /proc/4242/ns/net');
    }));

  test('contract: ADD with failurePolicy closed and the daemon down -> code 11, nothing spooled', () =>
    withSandbox(async (sb) => {
      const res = await runPlugin({ env: sb.env('ADD'), stdin: podmanAdd('1.0.0', sb, { failurePolicy: 'closed' }) });
      assert.equal(res.code, 1);
      assert.deepEqual(parseError(res.stdout), {
        cniVersion: '1.0.0', code: 11, msg: 'int-host-reporter could not set up telemetry for the pod',
        details: `notify failed: cannot reach the daemon at ${sb.socketPath}: connect ENOENT ${sb.socketPath}`,
      });
      assert.deepEqual(readSpool(sb.spoolDir), []);
    }));

  test('contract: ADD with failurePolicy closed and a daemon answering 500 -> code 11 naming the status', () =>
    withSandbox(async (sb, daemon) => {
      daemon!.status = 500;
      const res = await runPlugin({ env: sb.env('ADD'), stdin: podmanAdd('1.0.0', sb, { failurePolicy: 'closed' }) });
      const err = parseError(res.stdout);
      assert.deepEqual([err.code, err.details], [11, 'notify failed: daemon answered 500 to POST /v1/cni/add: {}']);
    }, { daemon: true }));

  test('contract: ADD with failurePolicy closed and everything working exits 0', () =>
    withSandbox(async (sb) => {
      const stdin = podmanAdd('1.0.0', sb, { failurePolicy: 'closed' });
      const res = await runPlugin({ env: sb.env('ADD'), stdin });
      assert.deepEqual([res.code, res.stdout], [0, JSON.stringify(stdin.prevResult) + '\n']);
    }, { daemon: true }));

  test('contract: ADD against a daemon that never answers gives up within the 1 s budget and spools', () =>
    withSandbox(async (sb, daemon) => {
      daemon!.hang = true;
      const { notifyTimeoutMs: _generous, ...stdin } = podmanAdd('1.0.0', sb); // the default budget
      const res = await runPlugin({ env: sb.env('ADD'), stdin });
      assert.equal(res.code, 0);
      assert.deepEqual(readSpool(sb.spoolDir)[0].reasons, ['notify failed: daemon did not answer POST /v1/cni/add within 1000 ms']);
    }, { daemon: true }));

  test('contract: DEL with the daemon down replaces the pending ADD record by a DEL record; a later success clears it', () =>
    withSandbox(async (sb) => {
      assert.equal((await runPlugin({ env: sb.env('ADD'), stdin: podmanAdd('1.0.0', sb) })).code, 0);
      assert.deepEqual(readSpool(sb.spoolDir).map((e) => e.op), ['add']);
      assert.equal((await runPlugin({ env: sb.env('DEL'), stdin: podmanAdd('1.0.0', sb) })).code, 0);
      const [entry] = readSpool(sb.spoolDir);
      assert.deepEqual([readSpool(sb.spoolDir).length, entry.op, entry.notice], [1, 'del', delNotice()]);
      const daemon = await new FakeDaemon(sb.socketPath).listen();
      try {
        assert.equal((await runPlugin({ env: sb.env('DEL'), stdin: podmanAdd('1.0.0', sb) })).code, 0);
        assert.deepEqual(readSpool(sb.spoolDir), []);
      } finally {
        await daemon.close();
      }
    }));

  test(`contract: the spool is bounded to ${MAX_SPOOL_ENTRIES} records; a full spool drops new keys but ADD still succeeds`, () =>
    withSandbox(async (sb) => {
      for (let i = 0; i < MAX_SPOOL_ENTRIES; i++) {
        writeSpoolRecord(sb.spoolDir, 'add', { network: NETWORK, containerId: `filler-${i}`, ifname: 'eth0' }, ['test']);
      }
      const stdin = podmanAdd('1.0.0', sb);
      const res = await runPlugin({ env: sb.env('ADD'), stdin });
      assert.deepEqual([res.code, res.stdout], [0, JSON.stringify(stdin.prevResult) + '\n']);
      assert.equal(readSpool(sb.spoolDir).length, MAX_SPOOL_ENTRIES);
      assert.equal(readSpool(sb.spoolDir).some((e) => e.key.containerId === CONTAINER_ID), false);
      const logs = res.stderr.trim().split('\n').map((l) => JSON.parse(l));
      assert.deepEqual(logs.map((l) => l.msg), ['telemetry setup incomplete; pod networking unaffected (failurePolicy open)', 'spool record dropped']);
      assert.equal(logs[1].reason, `spool ${sb.spoolDir} is full (${MAX_SPOOL_ENTRIES} of ${MAX_SPOOL_ENTRIES} records)`);
      // an existing key may still be replaced when full
      const del = await runPlugin({ env: sb.env('DEL', { CNI_CONTAINERID: 'filler-7' }), stdin: podmanAdd('1.0.0', sb) });
      assert.equal(del.code, 0);
      assert.equal(readSpool(sb.spoolDir).find((e) => e.key.containerId === 'filler-7')?.op, 'del');
    }));

  test('contract: a stale spool lock left by a dead process is broken', () =>
    withSandbox(async (sb) => {
      mkdirSync(sb.spoolDir, { recursive: true });
      writeFileSync(join(sb.spoolDir, '.lock'), `999999999 ${Date.now()} dead`);
      const res = await runPlugin({ env: sb.env('ADD'), stdin: podmanAdd('1.0.0', sb) });
      assert.equal(res.code, 0);
      assert.equal(readSpool(sb.spoolDir).length, 1);
      assert.equal(existsSync(join(sb.spoolDir, '.lock')), false);
    }));

  test('contract: 20 concurrent ADD/DEL processes with the daemon down leave 20 intact spool records', () =>
    withSandbox(async (sb) => {
      const runs = Array.from({ length: 20 }, (_, i) => {
        const verb = i % 2 === 0 ? 'ADD' : 'DEL';
        return runPlugin({ env: sb.env(verb, { CNI_CONTAINERID: `pod-${i}` }), stdin: podmanAdd('1.0.0', sb) });
      });
      const results = await Promise.all(runs);
      assert.deepEqual(results.map((r) => r.code), Array(20).fill(0));
      const entries = readSpool(sb.spoolDir);
      assert.deepEqual(entries.map((e) => e.key.containerId).sort(), Array.from({ length: 20 }, (_, i) => `pod-${i}`).sort());
      for (const e of entries) assert.equal(e.op, Number(e.key.containerId.slice(4)) % 2 === 0 ? 'add' : 'del');
      assert.deepEqual(readdirSync(sb.spoolDir).filter((f) => f.startsWith('.')), [], 'no tmp or lock file left behind');
      assert.equal(Object.keys(sb.state().attachments).length, 0, 'every DEL detached; ADDs attached different keys');
    }, { state: { veths: {} } }));
});

// ---------------------------------------------------------------------------------------------
describe('CNI contract: the esbuild bundle behaves like the source', () => {
  const outDir = join(REPO, 'node_modules', '.cache', `ihr-cni-bundle-${process.pid}`);
  const bundle = join(outDir, 'int-host-reporter');
  before(async () => {
    await build({
      entryPoints: [join(REPO, 'plugin', 'main.ts')], outfile: bundle, bundle: true, platform: 'node', target: 'node20',
      format: 'cjs', logLevel: 'silent', external: ['*.node'], banner: { js: '#!/usr/bin/env node' },
    });
  });
  after(() => import('node:fs').then((fs) => fs.rmSync(outDir, { recursive: true, force: true })));

  test('contract (bundle): VERSION and ADD through the single bundled file', () =>
    withSandbox(async (sb, daemon) => {
      const version = await runPlugin({ argv: [bundle], env: { CNI_COMMAND: 'VERSION' }, stdin: { cniVersion: '1.0.0' } });
      assert.deepEqual(JSON.parse(version.stdout), { cniVersion: '1.0.0', supportedVersions: SUPPORTED });
      const stdin = podmanAdd('1.0.0', sb);
      const add = await runPlugin({ argv: [bundle], env: sb.env('ADD'), stdin });
      assert.deepEqual([add.code, add.stdout], [0, JSON.stringify(stdin.prevResult) + '\n']);
      assert.deepEqual(withoutTime(daemon!.received[0].body), addNotice());
    }, { daemon: true }));

  test('contract (bundle): without the fake hook the unimplemented bpf datapath fails open', () =>
    withSandbox(async (sb) => {
      const stdin = podmanAdd('1.0.0', sb);
      const add = await runPlugin({ argv: [bundle], env: sb.env('ADD', { INT_HOST_REPORTER_PLUGIN_FAKE_DATAPATH: undefined }), stdin });
      assert.deepEqual([add.code, add.stdout], [0, JSON.stringify(stdin.prevResult) + '\n']);
      assert.match(readSpool(sb.spoolDir)[0].notice.error ?? '', /^attach failed: /);
      const del = await runPlugin({ argv: [bundle], env: sb.env('DEL', { INT_HOST_REPORTER_PLUGIN_FAKE_DATAPATH: undefined }), stdin });
      assert.deepEqual([del.code, del.stdout], [0, '']);
    }));
});
