// The pure parts of the pod watch: PodInfo extraction, the two-index cache, the backoff.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { V1Pod } from '@kubernetes/client-node';
import { Backoff } from '../../daemon/k8s/backoff';
import { kubeConfigForServer } from '../../daemon/k8s/kubeconfig';
import { PodCache } from '../../daemon/k8s/pod-cache';
import { toPodInfo, type PodInfo } from '../../daemon/k8s/pod-info';

const rawPod = {
  metadata: {
    namespace: 'ns',
    name: 'p',
    uid: 'u1',
    resourceVersion: '7',
    labels: { app: 'x', bad: 3 },
    ownerReferences: [
      { apiVersion: 'v1', kind: 'Node', name: 'n1', uid: 'o1' },
      { apiVersion: 'apps/v1', kind: 'DaemonSet', name: 'ds', uid: 'o2', controller: true },
      { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'second', uid: 'o3', controller: true },
    ],
    deletionTimestamp: '2025-06-01T10:00:00Z',
  },
  spec: { nodeName: 'n1', hostNetwork: true },
  status: { phase: 'Running', podIP: '10.0.0.1' },
};

test('toPodInfo reads raw watch JSON and typed V1Pod objects alike', () => {
  const expected: PodInfo = {
    namespace: 'ns',
    name: 'p',
    uid: 'u1',
    labels: { app: 'x' },
    owner: { kind: 'DaemonSet', name: 'ds' },
    podIPs: ['10.0.0.1'],
    hostNetwork: true,
    phase: 'Running',
    nodeName: 'n1',
    deletion: { at: '2025-06-01T10:00:00.000Z', gracePeriodSeconds: null },
    resourceVersion: '7',
  };
  assert.deepEqual(toPodInfo(rawPod), expected);
  const typed = new V1Pod();
  typed.metadata = { ...rawPod.metadata, labels: { app: 'x' }, deletionTimestamp: new Date('2025-06-01T10:00:00Z') };
  typed.spec = { nodeName: 'n1', hostNetwork: true, containers: [] };
  typed.status = { phase: 'Running', podIP: '10.0.0.1' };
  assert.deepEqual(toPodInfo(typed), expected);
  assert.ok(Object.isFrozen(toPodInfo(rawPod)));
});

test('toPodInfo: podIPs win over podIP; missing identity gives null', () => {
  const info = toPodInfo({ ...rawPod, status: { podIP: '10.0.0.1', podIPs: [{ ip: '10.0.0.1' }, { ip: 'fd00::1' }] } });
  assert.deepEqual(info?.podIPs, ['10.0.0.1', 'fd00::1']);
  assert.equal(info?.phase, '');
  assert.equal(toPodInfo({ metadata: { namespace: 'ns', name: 'p' } }), null);
  assert.equal(toPodInfo(null), null);
  assert.equal(toPodInfo('pod'), null);
  const bare = toPodInfo({ metadata: { namespace: 'ns', name: 'p', uid: 'u' } });
  assert.deepEqual(bare, {
    namespace: 'ns', name: 'p', uid: 'u', labels: {}, owner: null, podIPs: [], hostNetwork: false,
    phase: '', nodeName: '', deletion: null, resourceVersion: '',
  });
});

test('PodCache: add, same-version no-op, update, re-created pod (new uid), replace', () => {
  const pod = (name: string, uid: string, rv: string) => toPodInfo({ metadata: { namespace: 'ns', name, uid, resourceVersion: rv } }) as PodInfo;
  const cache = new PodCache();
  const ev = (events: ReturnType<PodCache['upsert']>) => events.map((e) => `${e.type} ${e.pod.name} ${e.pod.uid}`);
  assert.deepEqual(ev(cache.upsert(pod('a', 'u1', '1'))), ['added a u1']);
  assert.deepEqual(ev(cache.upsert(pod('a', 'u1', '1'))), []);
  assert.deepEqual(ev(cache.upsert(pod('a', 'u1', '2'))), ['updated a u1']);
  assert.deepEqual(ev(cache.upsert(pod('a', 'u2', '3'))), ['deleted a u1', 'added a u2']);
  assert.equal(cache.getByUid('u1'), undefined);
  assert.equal(cache.getByUid('u2')?.name, 'a');
  assert.deepEqual(ev(cache.upsert(pod('b', 'u3', '4'))), ['added b u3']);
  assert.deepEqual(ev(cache.replace([pod('b', 'u3', '5'), pod('c', 'u4', '6')])), ['deleted a u2', 'updated b u3', 'added c u4']);
  assert.deepEqual(cache.list().map((p) => p.name).sort(), ['b', 'c']);
  assert.deepEqual(ev(cache.remove('ns', 'b')), ['deleted b u3']);
  assert.deepEqual(ev(cache.remove('ns', 'b')), []);
  assert.equal(cache.size, 1);
});

test('Backoff doubles up to the maximum, with jitter in [d/2, d], and resets', () => {
  const low = new Backoff({ baseMs: 50, maxMs: 400, random: () => 0 });
  assert.deepEqual([1, 2, 3, 4, 5].map(() => low.next()), [25, 50, 100, 200, 200]);
  const high = new Backoff({ baseMs: 50, maxMs: 400, random: () => 0.999999 });
  assert.deepEqual([1, 2, 3, 4, 5].map(() => high.next()), [50, 100, 200, 400, 400]);
  assert.equal(high.failures, 5);
  high.reset();
  assert.equal(high.next(), 50);
  assert.throws(() => new Backoff({ baseMs: 0, maxMs: 1 }), /baseMs/);
  assert.throws(() => new Backoff({ baseMs: 10, maxMs: 5 }), /baseMs/);
});

test('kubeConfigForServer: no credentials; plain http allowed only by skipping TLS verification', () => {
  const http = kubeConfigForServer('http://127.0.0.1:8001/ignored-path');
  assert.deepEqual(http.getCurrentCluster(), { name: 'explicit', server: 'http://127.0.0.1:8001', skipTLSVerify: true });
  assert.deepEqual(http.getCurrentUser(), { name: 'anonymous' });
  assert.equal(kubeConfigForServer('https://10.0.0.1:6443').getCurrentCluster()?.skipTLSVerify, false);
});
