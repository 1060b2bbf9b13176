// Contract tests of the CNI plugin: the built plugin (dist/cni: the launcher, its runtime and the
// bundle, as a runtime execs it) with real stdin/env/stdout/exit codes, against real network
// namespaces and veths, attaching for real under a pin root of each test's own (the plugin's
// bpffsRoot), a real HTTP daemon stand-in on a unix socket and a real spool on disk. What the
// datapath did is asked of the kernel and bpffs. Build first: node build.mjs bundle.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DROP_PROGRAM, PROGRAMS } from '../../bpf/pins';
import { readSpool, writeSpoolRecord, MAX_SPOOL_ENTRIES } from '../../protocol/spool';
import { Scope, createNetns, ip } from '../helpers/netns';
import { distLayout } from '../helpers/plugin-layout';
import {
  CONTAINER_ID, createPodVeth, FakeDaemon, FIXTURE_HOST_VETH, fixture, type Json, ourPrograms, parseError, podmanAdd,
  type PodVeth, prevResultFor, runPlugin, Sandbox, type Version, VERSIONS,
} from '../fixtures/cni/harness';

const NETWORK = 'ebpftest';
const KEY_TEXT = `${NETWORK}/${CONTAINER_ID}/eth0`;
const POD = { podNamespace: 'shop', podName: 'cart-5d9f', podUid: '2b1c7f0e-3a4d-4e5f-8a9b-0c1d2e3f4a5b' };
const SUPPORTED = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];
const ISO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const PARALLEL = { concurrency: 6 };

/** A sandbox (by default with a pod of its own), optionally with a listening daemon, removed after the test body. */
async function withSandbox(
  body: (sb: Sandbox, daemon: FakeDaemon | undefined) => Promise<void>,
  options: { daemon?: boolean; pod?: boolean | PodVeth } = {},
): Promise<void> {
  const sb = await Sandbox.create({ pod: options.pod });
  let daemon: FakeDaemon | undefined;
  try {
    daemon = options.daemon ? await new FakeDaemon(sb.socketPath).listen() : undefined;
    await body(sb, daemon);
  } finally {
    await daemon?.close();
    sb.remove();
  }
}

/** A pod shared by the tests of one describe block that never attach to it or look at its hooks. */
function sharedPod(): () => PodVeth {
  const scope = new Scope();
  let pod: PodVeth | undefined;
  before(async () => { pod = await createPodVeth(scope); });
  after(() => assert.deepEqual(scope.close(), []));
  return () => pod!;
}

/** The ids of the pod programs the plugin pinned under the sandbox's root; fails when none are. */
function programIds(sb: Sandbox): number[] {
  const ids = sb.pinnedProgramIds();
  assert.ok(ids, `no programs pinned under ${sb.pinRoot}`);
  return [ids.ingress, ids.egress];
}

/** Our programs are on both hooks of the pod's host veth, once each, and pinned under the key. */
function assertAttached(sb: Sandbox, keys = [KEY_TEXT]): void {
  const [ingress, egress] = programIds(sb);
  assert.deepEqual(ourPrograms(sb.pod.hostIfindex, 'ingress'), [{ mode: 'tcx', progId: ingress }]);
  assert.deepEqual(ourPrograms(sb.pod.hostIfindex, 'egress'), [{ mode: 'tcx', progId: egress }]);
  assert.deepEqual(sb.attachments(), keys);
}

/** Nothing of ours on the pod's host veth and no attachment pinned. */
function assertDetached(sb: Sandbox): void {
  assert.deepEqual([ourPrograms(sb.pod.hostIfindex, 'ingress'), ourPrograms(sb.pod.hostIfindex, 'egress')], [[], []]);
  assert.deepEqual(sb.attachments(), []);
}

function addNotice(sb: Sandbox, extra: Json = {}): Json {
  return {
    network: NETWORK, containerId: CONTAINER_ID, ifname: 'eth0', netns: sb.netns, ...POD, ips: ['10.99.0.2'],
    hostIfname: sb.pod.hostIfname, hostIfindex: sb.pod.hostIfindex, mode: 'tcx', programIds: programIds(sb), ...extra,
  };
}

function delNotice(sb: Sandbox, extra: Json = {}): Json {
  return { network: NETWORK, containerId: CONTAINER_ID, ifname: 'eth0', netns: sb.netns, ...POD, ...extra };
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

/** ADD through the plugin; fails the test unless it attached. */
async function addPod(sb: Sandbox, version: Version = '1.0.0'): Promise<void> {
  const res = await runPlugin({ env: sb.env('ADD'), stdin: podmanAdd(version, sb) });
  assert.equal(res.code, 0, res.stdout + res.stderr);
  assertAttached(sb);
}

/** A prevResult whose host interfaces do not include the pod's host veth (the fixture's names). */
function foreignPrevResult(sb: Sandbox): Json {
  const stdin = podmanAdd('1.0.0', sb);
  stdin.prevResult.interfaces[1].name = FIXTURE_HOST_VETH;
  return stdin;
}

/** A regular file where the plugin's bpffsRoot should be: nothing can be pinned under it. */
function unusablePinRoot(sb: Sandbox): string {
  const path = join(sb.dir, 'not-a-bpffs-dir');
  writeFileSync(path, '');
  return path;
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
    withSandbox(async (sb, daemon) => {
      const res = await runPlugin({ env: sb.env('ADD', { CNI_COMMAND: 'VERSION' }), stdin: podmanAdd('1.0.0', sb) });
      assert.equal(res.code, 0);
      assert.deepEqual(sb.pinned(), [], 'nothing pinned');
      assertDetached(sb);
      assert.equal(existsSync(sb.spoolDir), false);
      assert.deepEqual(daemon!.received, []);
    }, { daemon: true }));
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
        assertAttached(sb);
        assert.equal(daemon!.received.length, 1);
        const got = daemon!.received[0];
        assert.equal(got.method, 'POST');
        assert.equal(got.url, '/v1/cni/add');
        assert.equal(got.contentType, 'application/json');
        assert.deepEqual(withoutTime(got.body), addNotice(sb));
        assert.deepEqual(readSpool(sb.spoolDir), []);
        assert.equal(res.stderr, '');
      }, { daemon: true }));
  }

  test('contract: ADD exact podman 1.0.0 stdin (capabilities, runtimeConfig, dns {}) echoes byte for byte', () =>
    withSandbox(async (sb) => {
      const stdin = sb.forPod({ ...fixture('podman-add-1.0.0.json'), ...sb.options() });
      const res = await runPlugin({ env: sb.env('ADD'), stdin });
      assert.equal(res.code, 0);
      assert.equal(res.stdout, JSON.stringify(sb.forPod(fixture('podman-add-1.0.0.json').prevResult)) + '\n');
      assert.deepEqual(JSON.parse(res.stdout).dns, {});
    }, { daemon: true }));

  test('contract: ADD forces the config cniVersion onto a prevResult of a sibling version (1.0.0 -> 1.1.0, 0.3.1 -> 0.4.0)', () =>
    withSandbox(async (sb) => {
      for (const [from, to] of [['1.0.0', '1.1.0'], ['0.3.1', '0.4.0'], ['0.4.0', '0.3.0']] as [Version, Version][]) {
        const stdin = { ...podmanAdd(to, sb), prevResult: sb.forPod(prevResultFor(from)) };
        const res = await runPlugin({ env: sb.env('ADD'), stdin });
        assert.equal(res.code, 0);
        assert.equal(res.stdout, JSON.stringify(expectedEcho(sb.forPod(prevResultFor(from)), to)) + '\n');
      }
    }, { daemon: true }));

  test('contract: ADD converts a 1.x prevResult for a 0.4.0 config (adds ips[].version, drops mtu/socketPath/pciID)', () =>
    withSandbox(async (sb) => {
      const prev = sb.forPod(fixture('prevresult-1.1.0-dualstack.json'));
      const res = await runPlugin({ env: sb.env('ADD'), stdin: { ...podmanAdd('0.4.0', sb), prevResult: prev } });
      assert.equal(res.code, 0, res.stdout);
      assert.deepEqual(JSON.parse(res.stdout), {
        cniVersion: '0.4.0',
        interfaces: [
          { name: sb.pod.hostIfname, mac: 'fe:e1:0c:0a:01:e1' },
          { name: 'eth0', mac: '7a:af:d6:39:fd:e7', sandbox: sb.netns },
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
      const prev = sb.forPod(fixture('prevresult-0.4.0.json'));
      const res = await runPlugin({ env: sb.env('ADD'), stdin: { ...podmanAdd('1.0.0', sb), prevResult: prev } });
      assert.equal(res.code, 0, res.stdout);
      const expected = { ...prev, cniVersion: '1.0.0', ips: [{ address: '10.99.0.5/24', gateway: '10.99.0.1', interface: 2 }] };
      assert.equal(res.stdout, JSON.stringify(expected) + '\n');
    }, { daemon: true }));

  test('contract: ADD reports the pod IPs of CNI_IFNAME only (index into a sandboxed eth0, or no index)', () =>
    withSandbox(async (sb, daemon) => {
      const prev = sb.forPod(fixture('prevresult-1.1.0-dualstack.json'));
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
      assertAttached(sb); // one link per hook, not two
      assert.equal(daemon!.received.length, 2);
      assert.deepEqual(daemon!.received.map((r) => r.body.programIds), [programIds(sb), programIds(sb)]);
    }, { daemon: true }));
});

// ---------------------------------------------------------------------------------------------
describe('CNI contract: DEL always succeeds with empty stdout', PARALLEL, () => {
  for (const version of VERSIONS) {
    test(`contract: DEL ${version} with prevResult detaches and notifies`, () =>
      withSandbox(async (sb, daemon) => {
        await addPod(sb, version);
        daemon!.received.length = 0;
        const res = await runPlugin({ env: sb.env('DEL'), stdin: podmanAdd(version, sb) });
        assert.deepEqual([res.code, res.stdout], [0, '']);
        assertDetached(sb);
        assert.deepEqual(daemon!.received.map((r) => [r.method, r.url, r.contentType, r.body]),
          [['POST', '/v1/cni/del', 'application/json', delNotice(sb)]]);
        assert.deepEqual(readSpool(sb.spoolDir), []);
      }, { daemon: true }));

    test(`contract: DEL ${version} without prevResult, with empty CNI_NETNS, repeated 3 times`, () =>
      withSandbox(async (sb, daemon) => {
        await addPod(sb);
        daemon!.received.length = 0;
        const stdin = { ...fixture('podman-del-no-prevresult-1.0.0.json'), cniVersion: version, ...sb.options() };
        for (let i = 0; i < 3; i++) {
          const res = await runPlugin({ env: sb.env('DEL', { CNI_NETNS: '' }), stdin });
          assert.deepEqual([res.code, res.stdout], [0, '']);
          assertDetached(sb); // from the key alone
        }
        const { netns: _none, ...withoutNetns } = delNotice(sb);
        assert.deepEqual(daemon!.received.map((r) => r.body), [withoutNetns, withoutNetns, withoutNetns]);
      }, { daemon: true }));
  }

  test('contract: DEL with CNI_NETNS unset, a netns that does not exist, and a veth that is gone', () =>
    withSandbox(async (sb) => {
      await addPod(sb);
      await ip(null, ['link', 'del', 'dev', sb.pod.hostIfname]); // the pod's veth pair goes with it
      const stdin = { ...fixture('podman-del-no-prevresult-1.0.0.json'), ...sb.options() };
      const gone = `/run/netns/${sb.scope.name('gone', 64)}`;
      for (const env of [sb.env('DEL', { CNI_NETNS: undefined }), sb.env('DEL', { CNI_NETNS: gone })]) {
        const res = await runPlugin({ env, stdin });
        assert.deepEqual([res.code, res.stdout], [0, '']);
        assert.deepEqual(sb.attachments(), [], 'the pins of the attachment are gone');
      }
    }, { daemon: true }));

  test('contract: DEL succeeds when detach fails (a pin root that is a file) and the daemon is down (both spooled)', () =>
    withSandbox(async (sb) => {
      const root = unusablePinRoot(sb);
      const res = await runPlugin({ env: sb.env('DEL'), stdin: podmanAdd('1.0.0', sb, { bpffsRoot: root }) });
      assert.deepEqual([res.code, res.stdout], [0, '']);
      const [entry, ...rest] = readSpool(sb.spoolDir);
      assert.deepEqual(rest, []);
      assert.equal(entry.op, 'del');
      const detachError = `detach failed: ENOTDIR: not a directory, scandir '${root}/links/cni/${KEY_TEXT}'`;
      assert.deepEqual(entry.notice, delNotice(sb, { error: detachError }));
      assert.equal(entry.reasons.length, 2);
      assert.equal(entry.reasons[0], detachError);
      assert.match(entry.reasons[1], /^notify failed: cannot reach the daemon at .*daemon\.sock: connect ENOENT/);
    }));
});

// ---------------------------------------------------------------------------------------------
describe('CNI contract: CHECK', PARALLEL, () => {
  for (const version of ['0.4.0', '1.0.0', '1.1.0'] as Version[]) {
    test(`contract: CHECK ${version} after ADD succeeds with empty stdout`, () =>
      withSandbox(async (sb) => {
        await addPod(sb, version);
        const res = await runPlugin({ env: sb.env('CHECK'), stdin: podmanAdd(version, sb) });
        assert.deepEqual([res.code, res.stdout], [0, '']);
        assertAttached(sb);
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
        assert.deepEqual(sb.pinned(), [], 'nothing pinned');
      }));
  }
  test('contract: CHECK when our programs are not attached -> code 101 naming the veth', () =>
    withSandbox(async (sb) => {
      const res = await runPlugin({ env: sb.env('CHECK'), stdin: podmanAdd('1.0.0', sb) });
      assert.equal(res.code, 1);
      assert.deepEqual(parseError(res.stdout), {
        cniVersion: '1.0.0', code: 101, msg: 'int-host-reporter programs are not attached to the host veth',
        details: `${sb.pod.hostIfname} (ifindex ${sb.pod.hostIfindex}) for ${KEY_TEXT}`,
      });
    }));
  test('contract: CHECK when the host veth cannot be found (no such interface in the netns) -> code 100', () =>
    withSandbox(async (sb) => {
      const res = await runPlugin({ env: sb.env('CHECK', { CNI_IFNAME: 'eth1' }), stdin: podmanAdd('1.0.0', sb) });
      assert.deepEqual(parseError(res.stdout), {
        cniVersion: '1.0.0', code: 100, msg: 'cannot find the host veth of the pod interface',
        details: `eth1 in ${sb.netns}: link eth1 in netns ${sb.netns}: No such device (ENODEV)`,
      });
    }));
  test('contract: CHECK when the peer is not among prevResult host interfaces -> code 100', () =>
    withSandbox(async (sb) => {
      await addPod(sb);
      const res = await runPlugin({ env: sb.env('CHECK'), stdin: foreignPrevResult(sb) });
      assert.deepEqual(parseError(res.stdout), {
        cniVersion: '1.0.0', code: 100, msg: 'host veth does not match prevResult',
        details: `host veth ${sb.pod.hostIfname} (ifindex ${sb.pod.hostIfindex}) is not among prevResult's host interfaces [cni-ebpft0, ${FIXTURE_HOST_VETH}]`,
      });
    }));
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
    }, { pod: false }));
  test('contract: STATUS with failurePolicy closed and the daemon down -> code 50', () =>
    withSandbox(async (sb) => {
      const res = await runPlugin({ env: { CNI_COMMAND: 'STATUS', CNI_PATH: '/opt/cni/bin' }, stdin: { cniVersion: '1.1.0', name: NETWORK, type: 'int-host-reporter', failurePolicy: 'closed', ...sb.options() } });
      assert.equal(res.code, 1);
      const err = parseError(res.stdout);
      assert.deepEqual([err.cniVersion, err.code, err.msg], ['1.1.0', 50, 'int-host-reporter daemon is not reachable']);
      assert.equal(err.details, `cannot connect to ${sb.socketPath}: connect ENOENT ${sb.socketPath}; with failurePolicy "closed" ADD would fail`);
    }, { pod: false }));
  test('contract: STATUS with failurePolicy closed and the daemon up exits 0', () =>
    withSandbox(async (sb) => {
      const res = await runPlugin({ env: { CNI_COMMAND: 'STATUS', CNI_PATH: '/opt/cni/bin' }, stdin: { cniVersion: '1.1.0', name: NETWORK, type: 'int-host-reporter', failurePolicy: 'closed', ...sb.options() } });
      assert.deepEqual([res.code, res.stdout], [0, '']);
    }, { daemon: true, pod: false }));
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
  const HELD = [[NETWORK, 'keep-one'], [NETWORK, 'stale-two'], ['othernet', 'stale-two']] as const;

  /**
   * The attachments GC starts from, made by real ADDs under the sandbox's pin root, one pod each.
   * The setup ADDs get a spool and socket of their own, so the test's spool and daemon see only GC.
   * Returns the pod of each key.
   */
  async function holdAttachments(sb: Sandbox): Promise<Map<string, PodVeth>> {
    const pods = new Map<string, PodVeth>();
    for (const [network, containerId] of HELD) {
      const pod = await createPodVeth(sb.scope);
      const stdin = {
        cniVersion: '1.0.0', name: network, type: 'int-host-reporter', bpffsRoot: sb.pinRoot,
        spoolDir: join(sb.dir, 'setup-spool'), socketPath: join(sb.dir, 'setup.sock'),
        prevResult: { cniVersion: '1.0.0', interfaces: [{ name: pod.hostIfname }, { name: 'eth0', sandbox: pod.netns }], ips: [] },
      };
      const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: containerId, CNI_NETNS: pod.netns, CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' };
      const res = await runPlugin({ env, stdin });
      assert.equal(res.code, 0, res.stdout + res.stderr);
      pods.set(`${network}/${containerId}/eth0`, pod);
    }
    assert.deepEqual(sb.attachments(), [...pods.keys()].sort());
    return pods;
  }

  /** Keys whose pod still has our programs on its host veth, asked of the kernel. */
  function hooked(pods: Map<string, PodVeth>): string[] {
    return [...pods].filter(([, pod]) => ourPrograms(pod.hostIfindex, 'ingress').length + ourPrograms(pod.hostIfindex, 'egress').length === 2)
      .map(([key]) => key).sort();
  }

  const gcEnv: Json = { CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin' };

  for (const keys of [['cni.dev/valid-attachments', 'cni.dev/attachments'], ['cni.dev/valid-attachments'], ['cni.dev/attachments']]) {
    test(`contract: GC with ${keys.join(' + ')} removes only this network's stale attachments and spool records`, () =>
      withSandbox(async (sb, daemon) => {
        const pods = await holdAttachments(sb);
        const gc = fixture('gc-1.1.0.json');
        for (const k of ['cni.dev/valid-attachments', 'cni.dev/attachments']) if (!keys.includes(k)) delete gc[k];
        writeSpoolRecord(sb.spoolDir, 'add', { network: NETWORK, containerId: 'spooled-three', ifname: 'eth0' }, ['notify failed']);
        writeSpoolRecord(sb.spoolDir, 'add', { network: NETWORK, containerId: 'keep-one', ifname: 'eth0' }, ['notify failed']);
        const res = await runPlugin({ env: gcEnv, stdin: { ...gc, ...sb.options() } });
        assert.deepEqual([res.code, res.stdout], [0, '']);
        assert.deepEqual(sb.attachments(), [`${NETWORK}/keep-one/eth0`, 'othernet/stale-two/eth0']);
        assert.deepEqual(hooked(pods), [`${NETWORK}/keep-one/eth0`, 'othernet/stale-two/eth0']);
        // released in order: the attachments held in bpffs, then the spooled ones
        assert.deepEqual(daemon!.received.map((r) => [r.url, r.body]), [
          ['/v1/cni/del', { network: NETWORK, containerId: 'stale-two', ifname: 'eth0' }],
          ['/v1/cni/del', { network: NETWORK, containerId: 'spooled-three', ifname: 'eth0' }],
        ]);
        assert.deepEqual(readSpool(sb.spoolDir).map((e) => e.key.containerId), ['keep-one']);
      }, { daemon: true, pod: false }));
  }

  test('contract: GC with the daemon down turns stale ADD repairs into DEL records', () =>
    withSandbox(async (sb) => {
      await holdAttachments(sb);
      writeSpoolRecord(sb.spoolDir, 'add', { network: NETWORK, containerId: 'stale-two', ifname: 'eth0' }, ['notify failed']);
      const res = await runPlugin({ env: gcEnv, stdin: { ...fixture('gc-1.1.0.json'), ...sb.options() } });
      assert.deepEqual([res.code, res.stdout], [0, '']);
      const entries = readSpool(sb.spoolDir);
      assert.deepEqual(entries.map((e) => [e.op, e.key.containerId]), [['del', 'stale-two']]);
      assert.deepEqual(sb.attachments(), [`${NETWORK}/keep-one/eth0`, 'othernet/stale-two/eth0']);
    }, { pod: false }));

  test('contract: GC with an empty list (or null) releases everything of the network', () =>
    withSandbox(async (sb) => {
      const pods = await holdAttachments(sb);
      const stdin = { cniVersion: '1.1.0', name: NETWORK, type: 'int-host-reporter', 'cni.dev/valid-attachments': null, 'cni.dev/attachments': [], ...sb.options() };
      const res = await runPlugin({ env: gcEnv, stdin });
      assert.deepEqual([res.code, res.stdout], [0, '']);
      assert.deepEqual(sb.attachments(), ['othernet/stale-two/eth0']);
      assert.deepEqual(hooked(pods), ['othernet/stale-two/eth0']);
    }, { daemon: true, pod: false }));

  test('contract: GC without either list removes nothing', () =>
    withSandbox(async (sb, daemon) => {
      const pods = await holdAttachments(sb);
      const res = await runPlugin({ env: gcEnv, stdin: { cniVersion: '1.1.0', name: NETWORK, type: 'int-host-reporter', ...sb.options() } });
      assert.deepEqual([res.code, res.stdout], [0, '']);
      assert.equal(sb.attachments().length, 3);
      assert.equal(hooked(pods).length, 3);
      assert.deepEqual(daemon!.received, []);
    }, { daemon: true, pod: false }));

  test('contract: GC with a malformed list -> code 7 naming the key and entry', () =>
    withSandbox(async (sb) => {
      const pods = await holdAttachments(sb);
      for (const [list, msg] of [
        [{ containerID: 'x' }, 'field "cni.dev/valid-attachments" must be an array'],
        [[{ containerID: 'x', ifname: 'eth0' }, { containerID: 5, ifname: 'eth0' }], 'field "cni.dev/valid-attachments"[1] must be {"containerID": string, "ifname": string}'],
      ] as [Json, string][]) {
        const res = await runPlugin({ env: gcEnv, stdin: { cniVersion: '1.1.0', name: NETWORK, type: 'int-host-reporter', 'cni.dev/valid-attachments': list, ...sb.options() } });
        const err = parseError(res.stdout);
        assert.deepEqual([res.code, err.code, err.msg], [1, 7, msg]);
      }
      assert.equal(sb.attachments().length, 3);
      assert.equal(hooked(pods).length, 3);
    }, { pod: false }));

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
  // Nothing here gets as far as attaching (but the last test, under its own pin root): one pod for all.
  const pod = sharedPod();
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
        assert.deepEqual(sb.pinned(), [], 'a bad request touches nothing');
      }, { pod: pod() }));
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
        assert.deepEqual(sb.pinned(), [], 'a bad request touches nothing');
      }, { pod: pod() }));
  }

  test('contract: DEL with a bad config still reports the config error (not a resource problem)', () =>
    withSandbox(async (sb) => {
      const res = await runPlugin({ env: sb.env('DEL'), stdin: { ...podmanAdd('1.0.0', sb), failurePolicy: 'never' } });
      assert.equal(res.code, 1);
      assert.equal(parseError(res.stdout).code, 2);
    }, { pod: pod() }));

  test('contract: unknown fields, capabilities, args and runtimeConfig are accepted', () =>
    withSandbox(async (sb) => {
      const stdin = podmanAdd('1.1.0', sb, { args: { cni: { labels: [{ key: 'a', value: 'b' }] } }, 'cni.dev/future': 1, extra: { deep: [1] } });
      const res = await runPlugin({ env: sb.env('ADD'), stdin });
      assert.equal(res.code, 0, res.stdout);
      assert.equal(res.stdout, JSON.stringify(stdin.prevResult) + '\n');
    }, { daemon: true, pod: pod() }));
});

// ---------------------------------------------------------------------------------------------
describe('CNI contract: fail-open ADD and the spool', PARALLEL, () => {
  test('contract: ADD with the daemon socket absent prints prevResult, exits 0 and spools the notice', () =>
    withSandbox(async (sb) => {
      const stdin = podmanAdd('1.0.0', sb);
      const res = await runPlugin({ env: sb.env('ADD'), stdin });
      assert.deepEqual([res.code, res.stdout], [0, JSON.stringify(stdin.prevResult) + '\n']);
      assertAttached(sb);
      const [entry, ...rest] = readSpool(sb.spoolDir);
      assert.deepEqual(rest, []);
      assert.deepEqual([entry.version, entry.op, entry.key], [1, 'add', { network: NETWORK, containerId: CONTAINER_ID, ifname: 'eth0' }]);
      assert.deepEqual(withoutTime(entry.notice), addNotice(sb));
      assert.deepEqual(entry.reasons, [`notify failed: cannot reach the daemon at ${sb.socketPath}: connect ENOENT ${sb.socketPath}`]);
      assert.match(entry.writtenAt, ISO_TIME);
      assert.deepEqual(readdirSync(sb.spoolDir), [entry.file], 'no tmp or lock file left behind');
      const log = JSON.parse(res.stderr.trim());
      assert.deepEqual([log.level, log.msg], ['warn', 'telemetry setup incomplete; pod networking unaffected (failurePolicy open)']);
    }));

  test('contract: ADD with a pin root that cannot be used (a file) still prints prevResult; the daemon gets the error and the spool a record', () =>
    withSandbox(async (sb, daemon) => {
      const root = unusablePinRoot(sb);
      const stdin = podmanAdd('0.4.0', sb, { bpffsRoot: root });
      const res = await runPlugin({ env: sb.env('ADD'), stdin });
      assert.deepEqual([res.code, res.stdout], [0, JSON.stringify(stdin.prevResult) + '\n']);
      const error = `attach failed: ENOTDIR: not a directory, scandir '${root}/progs'`;
      const expected = { network: NETWORK, containerId: CONTAINER_ID, ifname: 'eth0', netns: sb.netns, ...POD, ips: ['10.99.0.2'], hostIfname: sb.pod.hostIfname, hostIfindex: sb.pod.hostIfindex, error };
      assert.deepEqual(daemon!.received.map((r) => r.body), [expected]);
      assert.deepEqual(readSpool(sb.spoolDir).map((e) => [e.op, e.notice, e.reasons]), [['add', expected, [error]]]);
      assertDetached(sb);
    }, { daemon: true }));

  test('contract: ADD whose host peer is not in prevResult does not attach, fails open', () =>
    withSandbox(async (sb, daemon) => {
      const res = await runPlugin({ env: sb.env('ADD'), stdin: foreignPrevResult(sb) });
      assert.equal(res.code, 0);
      assert.equal(daemon!.received[0].body.error, `attach failed: host veth ${sb.pod.hostIfname} (ifindex ${sb.pod.hostIfindex}) is not among prevResult's host interfaces [cni-ebpft0, ${FIXTURE_HOST_VETH}]`);
      assert.equal(readSpool(sb.spoolDir).length, 1);
      assertDetached(sb);
      assert.deepEqual(sb.pinned(), [], 'nothing pinned');
    }, { daemon: true }));

  test('contract: ADD whose pod interface is not a veth (a bridge named eth0) fails open', () =>
    withSandbox(async (sb, daemon) => {
      const netns = await createNetns(sb.scope);
      await ip(netns, ['link', 'add', 'eth0', 'type', 'bridge']);
      const res = await runPlugin({ env: sb.env('ADD', { CNI_NETNS: `/run/netns/${netns}` }), stdin: podmanAdd('1.0.0', sb) });
      assert.equal(res.code, 0);
      assert.equal(daemon!.received[0].body.error, `attach failed: eth0 in /run/netns/${netns} is a bridge, not a veth`);
      assert.deepEqual(sb.pinned(), [], 'nothing pinned');
    }, { daemon: true, pod: false }));

  test('contract: ADD whose netns does not exist fails open', () =>
    withSandbox(async (sb) => {
      const stdin = podmanAdd('1.1.0', sb);
      const gone = `/run/netns/${sb.scope.name('gone', 64)}`;
      const res = await runPlugin({ env: sb.env('ADD', { CNI_NETNS: gone }), stdin });
      assert.deepEqual([res.code, res.stdout], [0, JSON.stringify(stdin.prevResult) + '\n']);
      assert.equal(readSpool(sb.spoolDir)[0].notice.error, `attach failed: open netns ${gone}: No such file or directory (ENOENT)`);
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
      assertAttached(sb);
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
      assert.deepEqual([readSpool(sb.spoolDir).length, entry.op, entry.notice], [1, 'del', delNotice(sb)]);
      assertDetached(sb);
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

  test('contract: 20 concurrent ADD/DEL processes with the daemon down (netns gone) leave 20 intact spool records', () =>
    withSandbox(async (sb) => {
      const gone = `/run/netns/${sb.scope.name('gone', 64)}`;
      const runs = Array.from({ length: 20 }, (_, i) => {
        const verb = i % 2 === 0 ? 'ADD' : 'DEL';
        return runPlugin({ env: sb.env(verb, { CNI_CONTAINERID: `pod-${i}`, CNI_NETNS: gone }), stdin: podmanAdd('1.0.0', sb) });
      });
      const results = await Promise.all(runs);
      assert.deepEqual(results.map((r) => r.code), Array(20).fill(0));
      const entries = readSpool(sb.spoolDir);
      assert.deepEqual(entries.map((e) => e.key.containerId).sort(), Array.from({ length: 20 }, (_, i) => `pod-${i}`).sort());
      for (const e of entries) assert.equal(e.op, Number(e.key.containerId.slice(4)) % 2 === 0 ? 'add' : 'del');
      assert.deepEqual(readdirSync(sb.spoolDir).filter((f) => f.startsWith('.')), [], 'no tmp or lock file left behind');
      assert.deepEqual(sb.attachments(), [], 'no ADD found its netns, every DEL found nothing to detach');
    }, { pod: false }));
});

// ---------------------------------------------------------------------------------------------
describe('CNI contract: the built plugin', () => {
  test('contract: the bundle run by node without the launcher answers as the launcher does', () =>
    withSandbox(async (sb, daemon) => {
      const bundle = join(distLayout().buildDir, 'plugin.cjs');
      const version = await runPlugin({ argv: [bundle], env: { CNI_COMMAND: 'VERSION' }, stdin: { cniVersion: '1.0.0' } });
      assert.deepEqual(JSON.parse(version.stdout), { cniVersion: '1.0.0', supportedVersions: SUPPORTED });
      const stdin = podmanAdd('1.0.0', sb);
      const add = await runPlugin({ argv: [bundle], env: sb.env('ADD'), stdin });
      assert.deepEqual([add.code, add.stdout], [0, JSON.stringify(stdin.prevResult) + '\n']);
      assert.deepEqual(withoutTime(daemon!.received[0].body), addNotice(sb));
      assertAttached(sb);
    }, { daemon: true }));

  test('contract: the first ADD on a node without the daemon loads and pins the programs itself; DEL leaves only them', () =>
    withSandbox(async (sb) => {
      assert.deepEqual(sb.pinned(), [], 'a fresh pin root');
      const stdin = podmanAdd('1.0.0', sb);
      const add = await runPlugin({ env: sb.env('ADD'), stdin });
      assert.deepEqual([add.code, add.stdout], [0, JSON.stringify(stdin.prevResult) + '\n']);
      assertAttached(sb);
      const programs = [...Object.values(PROGRAMS), DROP_PROGRAM].map((p) => `progs/${p}`).sort();
      const maps = sb.pinned().filter((p) => p.startsWith('maps/'));
      assert.ok(maps.length > 0, 'the maps are pinned');
      const attachment = `links/cni/${KEY_TEXT}`;
      assert.deepEqual(sb.pinned(), [
        'links', 'links/cni', `links/cni/${NETWORK}`, `links/cni/${NETWORK}/${CONTAINER_ID}`, attachment, `${attachment}/egress`, `${attachment}/ingress`,
        'maps', ...maps, 'progs', ...programs,
      ].sort());
      const del = await runPlugin({ env: sb.env('DEL'), stdin });
      assert.deepEqual([del.code, del.stdout], [0, '']);
      assertDetached(sb);
      assert.deepEqual(sb.pinned(), ['links', 'maps', ...maps, 'progs', ...programs].sort());
    }));
});
