// PodWatch against a real loopback HTTP server speaking the Kubernetes list/watch protocol
// (test/helpers/fake-kube-api.ts): the client's own fetch and streaming code runs unmocked.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import { PodWatch, type PodEvent, type PodInfo, type PodWatchLogger, type PodWatchOptions } from '../../daemon/k8s/pod-watch';
import { FakeKubeApi, makePod, type Pod } from '../helpers/fake-kube-api';

const NODE = 'node-a';
const FAST = { baseMs: 20, maxMs: 200 };

interface LogLine {
  level: 'info' | 'warn' | 'debug';
  msg: string;
  obj: Record<string, unknown>;
}

function captureLogger(): PodWatchLogger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: LogLine['level']) => (obj: object, msg?: string) => lines.push({ level, msg: msg ?? '', obj: obj as Record<string, unknown> });
  return { lines, info: at('info'), warn: at('warn'), debug: at('debug') };
}

async function waitFor(what: string, predicate: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A fake API server with `pods`, a started PodWatch on it and its events; both closed in finally. */
async function withWatch(
  pods: Pod[],
  body: (ctx: { api: FakeKubeApi; watch: PodWatch; events: string[]; raw: PodEvent[]; log: ReturnType<typeof captureLogger> }) => Promise<void>,
  extra: Partial<PodWatchOptions> = {},
): Promise<void> {
  const api = await FakeKubeApi.start();
  const log = captureLogger();
  const watch = new PodWatch({ nodeName: NODE, server: api.url, logger: log, backoff: FAST, ...extra });
  const events: string[] = [];
  const raw: PodEvent[] = [];
  try {
    for (const p of pods) api.addPod(p);
    watch.on((e) => {
      raw.push(e);
      events.push(`${e.type} ${e.pod.namespace}/${e.pod.name}`);
    });
    watch.start();
    assert.equal(await watch.ready, true);
    await waitFor('the watch open', () => api.openWatches === 1);
    await body({ api, watch, events, raw, log });
  } finally {
    await watch.stop();
    await api.close();
  }
}

const keys = (pods: PodInfo[]) => pods.map((p) => `${p.namespace}/${p.name}`).sort();
const watchRequests = (api: FakeKubeApi) => api.requests.filter((r) => r.watch);

test('lists and watches the pods of this node only, with labels and controller owner', async () => {
  const web = makePod({
    name: 'web-1',
    nodeName: NODE,
    labels: { app: 'web', tier: 'front' },
    otherOwners: [{ kind: 'ConfigMap', name: 'not-a-controller' }],
    owner: { kind: 'ReplicaSet', name: 'web-5d9c' },
    podIPs: ['10.1.0.5', 'fd00::5'],
  });
  const db = makePod({ namespace: 'data', name: 'db-0', nodeName: NODE, labels: { app: 'db' }, owner: { kind: 'StatefulSet', name: 'db' }, phase: 'Pending' });
  const agent = makePod({ namespace: 'kube-system', name: 'agent', nodeName: NODE, hostNetwork: true, podIPs: ['192.0.2.10'] });
  const foreign = makePod({ name: 'elsewhere', nodeName: 'node-b', labels: { app: 'web' } });

  await withWatch([web, db, agent, foreign], async ({ api, watch, events }) => {
    assert.deepEqual(keys(watch.list()), ['data/db-0', 'default/web-1', 'kube-system/agent']);
    assert.deepEqual(watch.get('default', 'web-1'), {
      namespace: 'default',
      name: 'web-1',
      uid: web.metadata.uid,
      labels: { app: 'web', tier: 'front' },
      owner: { kind: 'ReplicaSet', name: 'web-5d9c' },
      podIPs: ['10.1.0.5', 'fd00::5'],
      hostNetwork: false,
      phase: 'Running',
      nodeName: NODE,
      deletion: null,
      resourceVersion: '101',
    });
    const dbInfo = watch.get('data', 'db-0');
    assert.deepEqual(dbInfo?.owner, { kind: 'StatefulSet', name: 'db' });
    assert.equal(dbInfo?.phase, 'Pending');
    assert.deepEqual(dbInfo?.podIPs, []);
    const agentInfo = watch.getByUid(agent.metadata.uid);
    assert.equal(agentInfo?.name, 'agent');
    assert.equal(agentInfo?.hostNetwork, true);
    assert.equal(agentInfo?.owner, null);
    assert.deepEqual(agentInfo?.podIPs, ['192.0.2.10']);
    assert.equal(watch.getByUid(foreign.metadata.uid), undefined);
    assert.equal(watch.isReady, true);

    // Changes arriving by the watch: another node's pod is never seen, ours is.
    api.addPod(makePod({ name: 'elsewhere-2', nodeName: 'node-b' }));
    api.updatePod('default', 'elsewhere', (p) => (p.metadata.labels = { app: 'changed' }));
    const late = api.addPod(makePod({ name: 'web-2', nodeName: NODE, owner: { kind: 'ReplicaSet', name: 'web-5d9c' } }));
    await waitFor('web-2', () => watch.get('default', 'web-2') !== undefined);
    assert.equal(watch.get('default', 'web-2')?.uid, late.metadata.uid);
    assert.equal(watch.size, 4);
    assert.deepEqual([...events].sort(), ['added data/db-0', 'added default/web-1', 'added default/web-2', 'added kube-system/agent']);
    assert.equal(events.at(-1), 'added default/web-2');

    // The client asked the server for this node only, on every request.
    assert.deepEqual(
      api.requests.map((r) => [r.method, r.path, r.watch, r.query.fieldSelector]),
      [
        ['GET', '/api/v1/pods', false, `spec.nodeName=${NODE}`],
        ['GET', '/api/v1/pods', true, `spec.nodeName=${NODE}`],
      ],
    );
    const w = watchRequests(api)[0];
    assert.equal(w.query.resourceVersion, '104'); // the LIST's version: four pods were added
    assert.equal(w.query.allowWatchBookmarks, 'true');
    assert.deepEqual(watch.counters(), {
      lists: 1,
      relists: 0,
      watchRestarts: 0,
      watchEvents: 1,
      errors: 0,
      lastError: null,
      lastErrorAt: null,
      failureStreak: 0,
      listenerErrors: 0,
    });
  });
});

test('a MODIFIED event updates labels, phase, IPs and deletion; a throwing listener does not stop the watch', async () => {
  const pod = makePod({ name: 'web-1', nodeName: NODE, labels: { app: 'web', version: 'v1' }, phase: 'Pending' });
  await withWatch([pod], async ({ api, watch, raw, log }) => {
    let throws = 0;
    watch.on(() => {
      throws++;
      throw new Error('listener bug');
    });
    api.updatePod('default', 'web-1', (p) => {
      p.metadata.labels = { app: 'web', version: 'v2' };
      p.status = { phase: 'Running', podIP: '10.1.0.7', podIPs: [{ ip: '10.1.0.7' }] };
    });
    await waitFor('labels v2', () => watch.get('default', 'web-1')?.labels.version === 'v2');
    const updated = raw.at(-1);
    assert.equal(updated?.type, 'updated');
    assert.deepEqual(updated?.previous?.labels, { app: 'web', version: 'v1' });
    assert.deepEqual(updated?.pod.labels, { app: 'web', version: 'v2' });
    assert.equal(updated?.pod.phase, 'Running');
    assert.deepEqual(updated?.pod.podIPs, ['10.1.0.7']);
    assert.equal(watch.getByUid(pod.metadata.uid), updated?.pod);

    api.updatePod('default', 'web-1', (p) => {
      p.metadata.deletionTimestamp = '2025-01-02T03:04:05Z';
      p.metadata.deletionGracePeriodSeconds = 30;
    });
    await waitFor('deletion', () => watch.get('default', 'web-1')?.deletion !== null);
    assert.deepEqual(watch.get('default', 'web-1')?.deletion, { at: '2025-01-02T03:04:05.000Z', gracePeriodSeconds: 30 });
    assert.equal(throws, 2);
    assert.equal(watch.counters().listenerErrors, 2);
    assert.equal(log.lines.filter((l) => l.level === 'warn').length, 1);
  });
});

test('a DELETED pod is forgotten by name and by uid', async () => {
  const a = makePod({ name: 'a', nodeName: NODE });
  const b = makePod({ name: 'b', nodeName: NODE });
  await withWatch([a, b], async ({ api, watch, events }) => {
    api.deletePod('default', 'a');
    await waitFor('a deleted', () => watch.get('default', 'a') === undefined);
    assert.equal(watch.getByUid(a.metadata.uid), undefined);
    assert.deepEqual(keys(watch.list()), ['default/b']);
    assert.equal(watch.size, 1);
    assert.deepEqual(events.slice(2), ['deleted default/a']);
  });
});

test('a dropped watch connection is re-opened from the last resourceVersion and later events arrive', async () => {
  await withWatch([makePod({ name: 'a', nodeName: NODE })], async ({ api, watch, events, log }) => {
    api.addPod(makePod({ name: 'b', nodeName: NODE }));
    await waitFor('b', () => watch.get('default', 'b') !== undefined);
    const seen = api.resourceVersion; // 102
    assert.equal(api.dropConnections(), 1);
    // Added while no watch is open: the next watch replays it from `seen`.
    api.addPod(makePod({ name: 'c', nodeName: NODE }));
    await waitFor('c', () => watch.get('default', 'c') !== undefined);
    api.addPod(makePod({ name: 'd', nodeName: NODE }));
    await waitFor('d', () => watch.get('default', 'd') !== undefined);

    assert.deepEqual(events, ['added default/a', 'added default/b', 'added default/c', 'added default/d']);
    assert.deepEqual(
      watchRequests(api).map((r) => r.query.resourceVersion),
      ['101', seen],
    );
    assert.equal(api.requests.filter((r) => !r.watch).length, 1, 'no relist');
    const c = watch.counters();
    assert.equal(c.lists, 1);
    assert.equal(c.relists, 0);
    assert.equal(c.watchRestarts, 1);
    assert.equal(c.errors, 1);
    assert.match(c.lastError ?? '', /^watch: /);
    assert.equal(c.failureStreak, 0);
    assert.equal(log.lines.filter((l) => l.level === 'warn').length, 1);
    assert.equal(log.lines.filter((l) => l.msg === 'Kubernetes API reachable again').length, 1);
  });
});

for (const as of ['event', 'http'] as const) {
  test(`410 Gone (${as === 'event' ? 'ERROR event in the stream' : 'HTTP 410'}) leads to a relist; the cache is exactly the server's state`, async () => {
    const pods = ['a', 'b', 'c'].map((name) => makePod({ name, nodeName: NODE, labels: { app: name } }));
    await withWatch([...pods, makePod({ name: 'x', nodeName: 'node-b' })], async ({ api, watch, events }) => {
      const firstWatchRv = watchRequests(api)[0].query.resourceVersion;
      // All of this happens before the event loop turns, so the client can only see it after
      // reconnecting, with a version the server has compacted away.
      api.dropConnections();
      api.deletePod('default', 'b');
      api.updatePod('default', 'a', (p) => (p.metadata.labels = { app: 'a', moved: 'yes' }));
      api.addPod(makePod({ name: 'd', nodeName: NODE }));
      api.addPod(makePod({ name: 'y', nodeName: 'node-b' }));
      api.expire({ as });

      await waitFor('relist', () => watch.counters().relists === 1 && watch.get('default', 'd') !== undefined);
      await waitFor('watching again', () => api.openWatches === 1);

      assert.deepEqual(keys(watch.list()), api.podKeys(NODE));
      assert.deepEqual(keys(watch.list()), ['default/a', 'default/c', 'default/d']);
      for (const p of watch.list()) {
        const server = api.getPod(p.namespace, p.name);
        assert.equal(p.uid, server?.metadata.uid);
        assert.equal(p.resourceVersion, server?.metadata.resourceVersion);
        assert.deepEqual(p.labels, server?.metadata.labels);
      }
      assert.equal(watch.getByUid(pods[1].metadata.uid), undefined);
      assert.deepEqual(events.slice(3), ['deleted default/b', 'updated default/a', 'added default/d']);

      const trail = api.requests.map((r) => `${r.watch ? 'WATCH' : 'LIST'} ${r.query.resourceVersion ?? '-'} ${r.status}`);
      assert.deepEqual(trail, [
        'LIST - 200',
        `WATCH ${firstWatchRv} 200`,
        `WATCH ${firstWatchRv} ${as === 'http' ? 410 : 200}`,
        'LIST - 200',
        `WATCH ${api.resourceVersion} 200`,
      ]);
      const c = watch.counters();
      assert.equal(c.lists, 2);
      assert.equal(c.relists, 1);
      assert.equal(c.watchRestarts, 2);
      assert.equal(c.errors, 1); // the dropped connection; a 410 is not an error

      // And the new watch delivers.
      api.deletePod('default', 'c');
      await waitFor('c deleted', () => watch.get('default', 'c') === undefined);
    });
  });
}

test('an unreachable API server is a warning and a counted retry, never a throw; it recovers when the server appears', async () => {
  const port = await freePort();
  const log = captureLogger();
  const watch = new PodWatch({ nodeName: NODE, server: `http://127.0.0.1:${port}`, logger: log, backoff: FAST });
  let api: FakeKubeApi | undefined;
  try {
    watch.start();
    await waitFor('three failed attempts', () => watch.counters().errors >= 3);
    const c = watch.counters();
    assert.equal(c.lists, 0);
    assert.equal(watch.isReady, false);
    assert.match(c.lastError ?? '', /^list: .*ECONNREFUSED/);
    assert.equal(c.failureStreak, c.errors);
    const warns = log.lines.filter((l) => l.level === 'warn');
    assert.equal(warns.length, 1, 'one warning per failure streak');
    assert.equal(warns[0].obj.phase, 'list');
    assert.match(String(warns[0].obj.err), /ECONNREFUSED/);
    assert.ok(!('stack' in warns[0].obj));

    api = await FakeKubeApi.start({ port });
    api.addPod(makePod({ name: 'late', nodeName: NODE }));
    assert.equal(await watch.ready, true);
    assert.deepEqual(keys(watch.list()), ['default/late']);
    assert.equal(watch.counters().failureStreak, 0);
    assert.equal(log.lines.filter((l) => l.msg === 'Kubernetes API reachable again').length, 1);
  } finally {
    await watch.stop();
    await api?.close();
  }
});

test('failing LISTs and a refused watch are retried with backoff', async () => {
  const api = await FakeKubeApi.start();
  const log = captureLogger();
  const watch = new PodWatch({ nodeName: NODE, server: api.url, logger: log, backoff: FAST });
  try {
    api.addPod(makePod({ name: 'a', nodeName: NODE }));
    api.failNext(2, 503);
    watch.start();
    assert.equal(await watch.ready, true);
    await waitFor('the watch open', () => api.openWatches === 1);
    assert.deepEqual(
      api.requests.map((r) => `${r.watch ? 'WATCH' : 'LIST'} ${r.status}`),
      ['LIST 503', 'LIST 503', 'LIST 200', 'WATCH 200'],
    );
    assert.equal(watch.counters().errors, 2);
    assert.equal(watch.counters().lastError, 'list: HTTP 503: injected failure');

    api.failNext(2, 403, { watchOnly: true });
    api.dropConnections();
    await waitFor('watching again', () => api.openWatches === 1);
    api.addPod(makePod({ name: 'b', nodeName: NODE }));
    await waitFor('b', () => watch.get('default', 'b') !== undefined);
    assert.deepEqual(
      api.requests.slice(4).map((r) => `${r.watch ? 'WATCH' : 'LIST'} ${r.status}`),
      ['WATCH 403', 'WATCH 403', 'WATCH 200'],
    );
    const c = watch.counters();
    assert.equal(c.errors, 5); // 2 LISTs, the drop, 2 refused watches
    assert.equal(c.lastError, 'watch: HTTP 403: Forbidden');
    assert.equal(c.watchRestarts, 3);
    assert.equal(c.lists, 1);
    assert.equal(log.lines.filter((l) => l.level === 'warn').length, 2, 'one per streak');
  } finally {
    await watch.stop();
    await api.close();
  }
});

test('stop() closes the watch connection and a LIST or watch the server never answers', async () => {
  // An open watch: after stop() the server sees no connection left from the client.
  await withWatch([makePod({ name: 'a', nodeName: NODE })], async ({ api, watch }) => {
    assert.equal(api.openWatches, 1);
    await watch.stop();
    await waitFor('connections closed', () => api.openConnections === 0);
    assert.equal(api.openWatches, 0);
    assert.equal(watch.isReady, true);
  });

  for (const mode of ['all', 'watch'] as const) {
    const api = await FakeKubeApi.start();
    const watch = new PodWatch({ nodeName: NODE, server: api.url, backoff: FAST });
    try {
      api.hang(mode);
      watch.start();
      await waitFor(`a ${mode === 'all' ? 'LIST' : 'watch'} held`, () => api.heldRequests === 1);
      await watch.stop();
      await waitFor('held request closed by the client', () => api.heldRequests === 0 && api.openConnections === 0);
      assert.equal(await watch.ready, mode === 'watch');
      assert.equal(watch.counters().errors, 0, 'stopping is not an error');
    } finally {
      await watch.stop();
      await api.close();
    }
  }
});

test('a process that stops its PodWatch and server exits by itself (no dangling timers or sockets)', () => {
  const script = `
    const { PodWatch } = require(${JSON.stringify(join(__dirname, '../../daemon/k8s/pod-watch.ts'))});
    const { FakeKubeApi, makePod } = require(${JSON.stringify(join(__dirname, '../helpers/fake-kube-api.ts'))});
    (async () => {
      const api = await FakeKubeApi.start();
      api.addPod(makePod({ name: 'a', nodeName: 'n' }));
      const watch = new PodWatch({ nodeName: 'n', server: api.url, backoff: { baseMs: 20, maxMs: 200 } });
      watch.start();
      await watch.ready;
      api.dropConnections();
      api.addPod(makePod({ name: 'b', nodeName: 'n' }));
      while (!watch.get('default', 'b')) await new Promise((r) => setTimeout(r, 5));
      await watch.stop();
      await api.close();
      console.log('stopped', watch.size);
    })();
  `;
  const child = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(child.error, undefined, 'the child must exit on its own');
  assert.equal(child.stderr, '');
  assert.equal(child.status, 0);
  assert.equal(child.stdout, 'stopped 2\n');
});

test('fromEnvironment: disabled with a reason without NODE_NAME, KUBECONFIG or a service account', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ihr-k8s-'));
  const hostBefore = process.env.KUBERNETES_SERVICE_HOST;
  try {
    const log = captureLogger();
    const none = PodWatch.fromEnvironment({ env: {}, logger: log });
    assert.equal(none.enabled, false);
    assert.equal(none.watch, null);
    assert.match(none.enabled ? '' : none.reason, /NODE_NAME/);

    const noConfig = PodWatch.fromEnvironment({ env: { NODE_NAME: NODE }, logger: log });
    assert.deepEqual(noConfig, {
      enabled: false,
      watch: null,
      reason: 'no in-cluster service account (KUBERNETES_SERVICE_HOST unset) and no KUBECONFIG',
    });

    const missing = PodWatch.fromEnvironment({ env: { NODE_NAME: NODE, KUBECONFIG: join(dir, 'nope') }, logger: log });
    assert.match(missing.enabled ? '' : missing.reason, /^KUBECONFIG .*nope: ENOENT/);

    const env = { NODE_NAME: NODE, KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };
    const noToken = PodWatch.fromEnvironment({ env, inClusterPathPrefix: dir, logger: log });
    assert.match(noToken.enabled ? '' : noToken.reason, /no service account token/);
    assert.equal(log.lines.filter((l) => l.level === 'warn' && l.msg === 'Kubernetes pod watch disabled').length, 4);

    const sa = join(dir, 'var/run/secrets/kubernetes.io/serviceaccount');
    mkdirSync(sa, { recursive: true });
    writeFileSync(join(sa, 'token'), 'token');
    writeFileSync(join(sa, 'ca.crt'), '');
    const inCluster = PodWatch.fromEnvironment({ env, inClusterPathPrefix: dir });
    assert.equal(inCluster.enabled, true);
    if (inCluster.enabled) {
      assert.equal(inCluster.source, 'in-cluster');
      assert.equal(inCluster.server, 'https://10.96.0.1:443');
      assert.equal(inCluster.watch.nodeName, NODE);
    }
    assert.equal(process.env.KUBERNETES_SERVICE_HOST, hostBefore, 'the process environment is left as it was');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('fromEnvironment with KUBECONFIG watches the server it names', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ihr-k8s-'));
  const api = await FakeKubeApi.start();
  let watch: PodWatch | null = null;
  try {
    api.addPod(makePod({ name: 'a', nodeName: NODE }));
    const file = join(dir, 'config');
    writeFileSync(
      file,
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters: [{ name: fake, cluster: { server: "' + api.url + '", insecure-skip-tls-verify: true } }]',
        'users: [{ name: nobody, user: {} }]',
        'contexts: [{ name: fake, context: { cluster: fake, user: nobody } }]',
        'current-context: fake',
      ].join('\n'),
    );
    // A pino logger is what the daemon passes; it must fit PodWatchLogger.
    const setup = PodWatch.fromEnvironment({ env: { NODE_NAME: NODE, KUBECONFIG: file }, backoff: FAST, logger: pino({ level: 'silent' }) });
    assert.equal(setup.enabled, true);
    if (!setup.enabled) return;
    assert.equal(setup.source, 'kubeconfig');
    assert.equal(setup.server, api.url);
    watch = setup.watch;
    watch.start();
    assert.equal(await watch.ready, true);
    assert.deepEqual(keys(watch.list()), ['default/a']);
    assert.equal(api.requests[0].query.fieldSelector, `spec.nodeName=${NODE}`);
  } finally {
    await watch?.stop();
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
