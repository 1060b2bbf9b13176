// The local API and the CLI against a real daemon (its bundle, as a process) over its unix
// socket: pods attached by the real CNI plugin, exact attachment records, 404s, bad bodies,
// metrics, the optional TCP listener, and a non-root caller being refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, statSync } from 'node:fs';
import { withScope, createNode, type Pod, type Scope } from '../helpers/netns';
import { udpFlow } from '../helpers/traffic';
import { DAEMON_BUNDLE, DaemonProcess, ReportSink, cniAdd, watchlistFile, freePort } from '../helpers/daemon';
import * as bpf from '../../bpf/index';
import { IPPROTO } from '../../bpf/events';
import { interfaceAddresses } from '../../daemon/agent/node-interfaces';

const SWITCH_ID = 0x0a000001;

function ourProgramIds(ifindex: number): number[] {
  return (['ingress', 'egress'] as const).flatMap((d) => bpf.query(ifindex, d).filter((h) => h.ours).map((h) => h.progId));
}

/** The record the API must give for a harness pod added by cniAdd. */
function expectedRecord(pod: Pod, containerId: string, podName: string) {
  return {
    network: 'testnet', containerId, ifname: 'eth0', netns: pod.netnsPath, hostIfname: pod.hostIfname, hostIfindex: pod.hostIfindex,
    podNamespace: 'default', podName, podUid: `uid-${podName}`, ips: [pod.ipv4, pod.ipv6], mode: 'tcx',
    programIds: ourProgramIds(pod.hostIfindex), state: 'ok', labels: null, owner: null,
  };
}

type Record_ = ReturnType<typeof expectedRecord> & { attachedAt: string };

function withoutTime(r: Record_): Omit<Record_, 'attachedAt'> {
  const { attachedAt, ...rest } = r;
  assert.ok(!Number.isNaN(Date.parse(attachedAt)), `attachedAt is an ISO time: ${attachedAt}`);
  return rest;
}

/** Parses Prometheus text into "name{labels}" -> value. */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

async function setup(scope: Scope, extraArgs: string[] = []) {
  const node = await createNode(scope);
  const a = await node.addPod();
  const b = await node.addPod({ style: 'bridged' });
  const remote = await node.addRemote();
  const sink = await ReportSink.start(scope);
  const wl = watchlistFile(scope, `rules:\n  - protocol: UDP\n    src-addr: ${a.ipv4}/32\n    dst-addr: ${b.ipv4}/32\n`);
  const daemon = await DaemonProcess.start(scope, {
    collector: sink.address, dataInterface: remote.dataIfname, watchlist: wl, switchId: SWITCH_ID, extraArgs,
  });
  const ids = { a: `cid-a-${scope.prefix}`, b: `cid-b-${scope.prefix}` };
  for (const [pod, cid, name] of [[a, ids.a, 'pod-a'], [b, ids.b, 'pod-b']] as const) {
    const r = cniAdd(daemon, pod, cid, name);
    assert.equal(r.code, 0, `CNI ADD of ${name}: ${r.stdout}${r.stderr}`);
  }
  return { node, a, b, remote, sink, daemon, wl, ids };
}

/** Runs the CLI from the daemon bundle, optionally as the unprivileged user nobody. */
function cli(args: string[], opts: { asNobody?: boolean } = {}) {
  const argv = opts.asNobody
    ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, DAEMON_BUNDLE, ...args]
    : [process.execPath, DAEMON_BUNDLE, ...args];
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: 20_000, cwd: '/' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('API: the socket is root-only, attachments and pods are exact, unknown things are 404', async () => {
  await withScope(async (scope) => {
    const { a, b, remote, daemon, ids } = await setup(scope);
    const st = statSync(daemon.socket);
    assert.equal(st.isSocket(), true, 'the API is a unix socket');
    assert.deepEqual({ uid: st.uid, mode: st.mode & 0o777 }, { uid: 0, mode: 0o600 });

    const att = await daemon.api<{ attachments: Record_[] }>('GET', '/v1/attachments');
    assert.equal(att.status, 200);
    const expected = [expectedRecord(a, ids.a, 'pod-a'), expectedRecord(b, ids.b, 'pod-b')]
      .sort((x, y) => `testnet/${x.containerId}/eth0`.localeCompare(`testnet/${y.containerId}/eth0`));
    assert.deepEqual(att.json.attachments.map(withoutTime), expected);
    assert.equal(expected[0].programIds.length, 2, 'one program of ours on each hook');

    const pod = await daemon.api<Record<string, unknown> & { attachments: Record_[] }>('GET', '/v1/pods/default/pod-a');
    assert.equal(pod.status, 200);
    const podA = att.json.attachments.find((r) => r.podName === 'pod-a');
    assert.deepEqual(pod.json, {
      namespace: 'default', name: 'pod-a', uid: 'uid-pod-a', labels: null, owner: null, podIPs: [a.ipv4, a.ipv6], phase: null,
      attachments: [podA],
    });

    const missing = await daemon.api('GET', '/v1/pods/default/nope');
    assert.deepEqual(missing, {
      status: 404, json: { error: 'pod default/nope is not known on this node: no attachment of it (no Kubernetes pod watch)' },
    });
    assert.deepEqual(await daemon.api('GET', '/v1/nope'), { status: 404, json: { error: 'no such endpoint: /v1/nope' } });
    assert.deepEqual(await daemon.api('DELETE', '/v1/attachments'), { status: 405, json: { error: 'DELETE is not allowed on /v1/attachments' } });

    const topo = await daemon.api('GET', '/v1/topology');
    assert.deepEqual(topo, {
      status: 200,
      json: {
        'switch-id': SWITCH_ID,
        links: [
          { id: remote.dataIfindex, name: remote.dataIfname, 'ip-addresses': interfaceAddresses(remote.dataIfname), 'is-node-iface': true },
          ...expected.map((r) => ({
            id: r.hostIfindex, name: r.hostIfname, 'ip-addresses': r.ips, 'is-node-iface': false,
            pod: { namespace: 'default', name: r.podName, uid: r.podUid },
          })),
        ],
      },
    });
    assert.deepEqual(await daemon.api('GET', '/api/v1/topology'), topo, 'the reference path answers the same');
    assert.deepEqual(await daemon.api('GET', '/healthz'), { status: 200, json: { ok: true } });
    assert.deepEqual(await daemon.api('GET', '/readyz'), {
      status: 200,
      json: {
        ready: true,
        checks: [
          { name: 'datapath', ok: true, message: `programs loaded and pinned in ${daemon.pinRoot}; event reader running` },
          { name: 'data-interfaces', ok: true, message: `attached on ingress and egress: ${remote.dataIfname} (ifindex ${remote.dataIfindex})` },
          { name: 'cni-installer', ok: true, message: 'not checked (no --cni-installer-status)' },
          { name: 'kubernetes', ok: true, message: 'not checked: no pod watch (no in-cluster service account (KUBERNETES_SERVICE_HOST unset) and no KUBECONFIG)' },
        ],
      },
    }); // every check in test/e2e/readiness.test.ts

    const status = await daemon.api<Record<string, unknown>>('GET', '/v1/status');
    assert.equal(status.status, 200);
    assert.deepEqual(
      { switchId: status.json.switchId, attachments: status.json.attachments, drops: status.json.drops },
      { switchId: SWITCH_ID, attachments: { ok: 2, missing: 0, repairing: 0 }, drops: 'tracepoint' },
    );
  });
});

test('API: watchlist GET/PUT; a bad body is a 400 naming the field and changes nothing', async () => {
  await withScope(async (scope) => {
    const { a, b, daemon } = await setup(scope);
    const before = await daemon.api('GET', '/v1/watchlist');
    assert.equal(before.status, 200);

    const bad = await daemon.api('PUT', '/v1/watchlist', 'rules:\n  - protocol: UDP\n    src-addr: 10.0.0.300/32\n    dst-addr: 0.0.0.0/0\n');
    assert.deepEqual(bad, { status: 400, json: { error: 'request body:3: rule 0 (src-addr): "10.0.0.300/32" is not a CIDR' } });
    assert.deepEqual(await daemon.api('GET', '/v1/watchlist'), before, 'a refused watchlist changes nothing');

    const notYaml = await daemon.api<{ error: string }>('PUT', '/v1/watchlist', 'rules: [');
    assert.equal(notYaml.status, 400);
    assert.match(notYaml.json.error, /^request body:1: not valid YAML: /, notYaml.json.error);
    assert.deepEqual(await daemon.api('GET', '/v1/watchlist'), before);

    const good = await daemon.api('PUT', '/v1/watchlist', `rules:\n  - protocol: TCP\n    src-addr: ${b.ipv4}/32\n    dst-addr: ${a.ipv4}/32\n`);
    assert.equal(good.status, 200);
    const after = await daemon.api('GET', '/v1/watchlist');
    assert.deepEqual(after, good, 'GET returns what PUT installed');
    assert.notDeepEqual(after.json, before.json);
    const metrics = parseMetrics((await fetchUnixText(daemon, '/metrics')));
    assert.equal(metrics.get('int_watchlist_rules'), 1);
  });
});

async function fetchUnixText(daemon: DaemonProcess, path: string): Promise<string> {
  const { callApi } = await import('../../daemon/cli/client');
  const r = await callApi(daemon.socket, 'GET', path);
  assert.equal(r.status, 200, `GET ${path}`);
  return r.body;
}

test('metrics count what happened; the TCP listener serves metrics and topology only', async () => {
  await withScope(async (scope) => {
    const port = await freePort();
    const { a, b, sink, daemon } = await setup(scope, ['--metrics-listen', `127.0.0.1:${port}`]);
    const flow = await udpFlow(scope, { from: a, to: b, family: 4, sport: 47111, count: 3 });
    const reports = await sink.waitFor({ src: a.ipv4, dst: b.ipv4, protocol: IPPROTO.UDP, srcPort: flow.sport }, 1);
    assert.ok(reports.length >= 1, 'the watched flow was reported');

    // Wait until the daemon has sent everything it built (no timing claim: just until stable).
    let m = parseMetrics(await fetchUnixText(daemon, '/metrics'));
    const collector = `collector="${sink.address}"`;
    for (let i = 0; i < 100 && m.get(`int_reports_sent_total{${collector}}`) !== sink.reports.length; i++) {
      await new Promise((r) => setTimeout(r, 50));
      m = parseMetrics(await fetchUnixText(daemon, '/metrics'));
    }
    assert.equal(m.get(`int_reports_sent_total{${collector}}`), sink.reports.length, 'every report sent arrived');
    assert.equal(m.get('int_reports_built_total'), sink.reports.length, 'every report built was sent');
    assert.equal(m.get(`int_reports_queued_total{${collector}}`), sink.reports.length);
    assert.equal(m.get(`int_reports_send_errors_total{${collector}}`), 0);
    assert.equal(m.get('int_attachments{state="ok"}'), 2);
    assert.equal(m.get('int_attachments{state="missing"}'), 0);
    assert.equal(m.get('int_attachments{state="repairing"}'), 0);
    assert.equal(m.get('int_reconcile_repairs_total'), 0);
    assert.equal(m.get('int_reconcile_repair_failures_total'), 0);
    assert.equal(m.get('int_spool_drained_total'), 0);
    assert.equal(m.get('int_datapath_events_lost_total'), 0);
    assert.equal(m.get('int_reader_lost_total'), 0);
    assert.equal(m.get('int_pipeline_events_lost_total'), 0);
    assert.ok((m.get('int_reconcile_runs_total') ?? 0) >= 1, 'reconcile ran at start');
    assert.ok((m.get('int_pipeline_events_total') ?? 0) >= sink.reports.length, 'every report came from an event');
    for (const name of ['int_datapath_ingress_packets_total', 'int_datapath_egress_packets_total', 'int_datapath_events_total',
      'int_datapath_drops_total', 'int_pipeline_filtered_by_watchlist_total', 'int_pipeline_drop_events_total', 'int_pipeline_batches_total',
      'int_reconcile_forgotten_total', 'int_reconcile_stale_pins_removed_total', 'int_log_warnings_suppressed_total']) {
      assert.ok(m.has(name), `${name} is exported`);
    }

    const tcp = (path: string, method = 'GET') => fetch(`http://127.0.0.1:${port}${path}`, { method });
    const metrics = await tcp('/metrics');
    assert.equal(metrics.status, 200);
    assert.equal(metrics.headers.get('content-type'), 'text/plain; version=0.0.4');
    assert.equal(parseMetrics(await metrics.text()).get('int_attachments{state="ok"}'), 2);
    const topo = await tcp('/api/v1/topology');
    assert.equal(topo.status, 200);
    assert.deepEqual(await topo.json(), (await daemon.api('GET', '/v1/topology')).json);
    for (const [path, method] of [['/v1/attachments', 'GET'], ['/v1/pods/default/pod-a', 'GET'], ['/v1/watchlist', 'PUT'],
      ['/v1/status', 'GET'], ['/v1/cni/add', 'POST'], ['/healthz', 'GET']]) {
      const r = await tcp(path, method);
      assert.equal(r.status, 404, `${method} ${path} is not served on TCP`);
      await r.body?.cancel();
    }
  });
});

test('CLI: tables, --json, 404 exit code, refused for non-root, clear message without a daemon', async () => {
  await withScope(async (scope) => {
    const { a, daemon, ids, wl } = await setup(scope);
    const sock = ['--socket', daemon.socket];

    const pods = cli(['pods', ...sock]);
    assert.equal(pods.code, 0, pods.stderr);
    const lines = pods.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 3, pods.stdout);
    assert.match(lines[0], /^NAMESPACE\s+POD\s+IFINDEX\s+HOST IF\s+IPS\s+MODE\s+STATE\s+SINCE\s+OWNER\s+CONTAINER$/);
    const rowA = lines.find((l) => l.includes('pod-a'));
    assert.ok(rowA, `a row for pod-a: ${pods.stdout}`);
    assert.deepEqual(rowA.split(/\s+/).filter((_, i) => i !== 7), ['default', 'pod-a', String(a.hostIfindex), a.hostIfname,
      `${a.ipv4},${a.ipv6}`, 'tcx', 'ok', '-', ids.a.slice(0, 12)]);

    const json = cli(['pods', '--json', ...sock]);
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), (await daemon.api('GET', '/v1/attachments')).json);

    const one = cli(['pod', 'default/pod-a', ...sock]);
    assert.equal(one.code, 0, one.stderr);
    assert.deepEqual(one.stdout.split('\n').slice(0, 6), [
      'pod       default/pod-a', 'uid       uid-pod-a', 'phase     -', `ips       ${a.ipv4},${a.ipv6}`, 'owner     -',
      'labels    (not known to the Kubernetes API)',
    ]);
    const unknown = cli(['pod', 'default/nope', ...sock]);
    assert.deepEqual(unknown, {
      code: 5, stdout: '',
      stderr: 'int-host-reporter: pod default/nope is not known on this node: no attachment of it (no Kubernetes pod watch)\n',
    });
    assert.deepEqual(cli(['pod', 'nope', ...sock]), { code: 2, stdout: '', stderr: 'int-host-reporter: pod wants NAMESPACE/NAME\n' });

    const topo = cli(['topology', ...sock]);
    assert.equal(topo.code, 0, topo.stderr);
    assert.match(topo.stdout, new RegExp(`^switch id ${SWITCH_ID}\\nPORT\\s+NAME\\s+ADDRESSES\\s+KIND\\s+POD\\n`));
    assert.ok(topo.stdout.includes(`${a.hostIfindex}`) && topo.stdout.includes('default/pod-a'), topo.stdout);
    const status = cli(['status', '--json', ...sock]);
    assert.equal(status.code, 0, status.stderr);
    assert.deepEqual(JSON.parse(status.stdout).attachments, { ok: 2, missing: 0, repairing: 0 });

    const wget = cli(['watchlist', 'get', ...sock]);
    assert.equal(wget.code, 0, wget.stderr);
    assert.deepEqual(JSON.parse(wget.stdout), (await daemon.api('GET', '/v1/watchlist')).json);
    const badFile = watchlistFile(scope, 'rules:\n  - src-addr: not-an-address\n    dst-addr: 0.0.0.0/0\n');
    const refused = cli(['watchlist', 'set', badFile, ...sock]);
    assert.deepEqual(refused, {
      code: 1, stdout: '', stderr: 'int-host-reporter: watchlist refused: request body:2: rule 0 (src-addr): "not-an-address" is not a CIDR\n',
    });
    const set = cli(['watchlist', 'set', wl, ...sock]);
    assert.deepEqual(set, { code: 0, stdout: 'watchlist replaced\n', stderr: '' });

    // Non-root: the directory is open to everyone, so the socket's own mode (0600, root) refuses.
    chmodSync(daemon.runDir, 0o755);
    const denied = cli(['pods', ...sock], { asNobody: true });
    assert.deepEqual(denied, { code: 4, stdout: '', stderr: `int-host-reporter: permission denied on ${daemon.socket}: run as root\n` });

    const gone = `${daemon.runDir}/no-such.sock`;
    assert.deepEqual(cli(['status', '--socket', gone]), {
      code: 3, stdout: '', stderr: `int-host-reporter: the daemon is not running (no socket at ${gone})\n`,
    });
  });
});
