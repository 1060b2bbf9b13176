// The daemon with a Kubernetes API (a real local HTTP server speaking list and watch, found
// through KUBECONFIG): pods appear with labels and owner, the watch recovers from a dropped
// connection and from 410 Gone, a pod deleted in the API is forgotten, and an unreachable API
// server is a warning while everything else works.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withScope, createNode } from '../helpers/netns';
import { DaemonProcess, ReportSink, cniAdd } from '../helpers/daemon';
import { FakeKubeApi, eventually, kubeconfigFor, makePod } from '../helpers/fake-kube-api';

const NODE = 'test-node'; // the harness starts the daemon with --node-name test-node



function metric(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

interface AttachmentJson { podName?: string; labels: Record<string, string> | null; owner: { kind: string; name: string } | null; state: string }

test('pods from the API: labels and owner, recovery after a dropped watch and 410 Gone, deleted pods forgotten', async () => {
  await withScope(async (scope) => {
    const api = await FakeKubeApi.start();
    scope.defer('close fake API server', () => void api.close());
    const node = await createNode(scope);
    const a = await node.addPod();
    api.addPod(makePod({
      name: 'pod-a', nodeName: NODE, uid: 'uid-pod-a', labels: { app: 'web' }, owner: { kind: 'ReplicaSet', name: 'web-5d9c' },
      podIPs: [a.ipv4, a.ipv6],
    }));
    api.addPod(makePod({ name: 'pod-c', nodeName: NODE, uid: 'uid-pod-c', labels: { app: 'batch' }, owner: { kind: 'Job', name: 'once' } }));
    api.addPod(makePod({ name: 'elsewhere', nodeName: 'other-node', uid: 'uid-elsewhere' }));

    const sink = await ReportSink.start(scope);
    const daemon = await DaemonProcess.start(scope, { collector: sink.address, env: { KUBECONFIG: kubeconfigFor(scope, api.url) } });
    await eventually('the pod watch is ready', async () => {
      const r = await daemon.api<{ checks: { name: string; ok: boolean }[] }>('GET', '/readyz');
      return r.json.checks.find((c) => c.name === 'kubernetes')?.ok === true ? true : undefined;
    });
    assert.equal(api.requests[0].query.fieldSelector, `spec.nodeName=${NODE}`, 'only this node\'s pods are listed');

    const add = cniAdd(daemon, a, `cid-a-${scope.prefix}`, 'pod-a');
    assert.equal(add.code, 0, `CNI ADD: ${add.stdout}${add.stderr}`);
    const att = await daemon.api<{ attachments: AttachmentJson[] }>('GET', '/v1/attachments');
    assert.equal(att.json.attachments.length, 1);
    assert.deepEqual(
      { labels: att.json.attachments[0].labels, owner: att.json.attachments[0].owner, state: att.json.attachments[0].state },
      { labels: { app: 'web' }, owner: { kind: 'ReplicaSet', name: 'web-5d9c' }, state: 'ok' },
    );
    const podA = await daemon.api<Record<string, unknown>>('GET', '/v1/pods/default/pod-a');
    assert.deepEqual(
      { ...podA.json, attachments: (podA.json.attachments as unknown[]).length },
      {
        namespace: 'default', name: 'pod-a', uid: 'uid-pod-a', labels: { app: 'web' }, owner: { kind: 'ReplicaSet', name: 'web-5d9c' },
        podIPs: [a.ipv4, a.ipv6], phase: 'Running', attachments: 1,
      },
    );
    // Known from the API alone (no attachment on this node, e.g. a hostNetwork pod).
    assert.deepEqual(await daemon.api('GET', '/v1/pods/default/pod-c'), {
      status: 200,
      json: {
        namespace: 'default', name: 'pod-c', uid: 'uid-pod-c', labels: { app: 'batch' }, owner: { kind: 'Job', name: 'once' },
        podIPs: [], phase: 'Running', attachments: [],
      },
    });
    assert.deepEqual(await daemon.api('GET', '/v1/pods/default/elsewhere'), {
      status: 404,
      json: { error: `pod default/elsewhere is not known on this node: no attachment of it and the Kubernetes API lists no such pod on node ${NODE}` },
    });

    // A dropped connection: the change made meanwhile arrives through the re-opened watch.
    assert.equal(api.dropConnections(), 1, 'the daemon had one watch open');
    api.addPod(makePod({ name: 'pod-d', nodeName: NODE, uid: 'uid-pod-d', labels: { app: 'late' } }));
    const podD = await eventually('pod-d seen after the dropped watch', async () => {
      const r = await daemon.api<{ labels: unknown }>('GET', '/v1/pods/default/pod-d');
      return r.status === 200 ? r.json : undefined;
    });
    assert.deepEqual(podD.labels, { app: 'late' });

    // 410 Gone: the history the daemon would resume from is compacted; it lists again.
    const listsBefore = api.requests.filter((r) => !r.watch).length;
    api.dropConnections();
    api.updatePod('default', 'pod-a', (p) => {
      p.metadata.labels = { app: 'web', tier: 'front' };
    });
    api.expire();
    await eventually('the label change seen after 410 Gone', async () => {
      const r = await daemon.api<{ attachments: AttachmentJson[] }>('GET', '/v1/attachments');
      return r.json.attachments[0].labels?.tier === 'front' ? true : undefined;
    });
    assert.equal(api.requests.filter((r) => !r.watch).length, listsBefore + 1, 'exactly one new LIST');
    const metrics = await metricsText(daemon);
    assert.equal(metric(metrics, 'int_kube_relists_total'), 1);
    assert.equal(metric(metrics, 'int_kube_lists_total'), 2);
    assert.equal(metric(metrics, 'int_kube_ready'), 1);

    // Deleted in the API: its metadata is forgotten at once; the attachment lives while its veth does.
    api.deletePod('default', 'pod-a');
    api.deletePod('default', 'pod-c');
    const after = await eventually('pod-a forgotten', async () => {
      const r = await daemon.api<{ attachments: AttachmentJson[] }>('GET', '/v1/attachments');
      return r.json.attachments[0].labels === null ? r.json.attachments[0] : undefined;
    });
    assert.deepEqual({ labels: after.labels, owner: after.owner, state: after.state, podName: after.podName },
      { labels: null, owner: null, state: 'ok', podName: 'pod-a' });
    const stillA = await daemon.api<{ labels: unknown; phase: unknown; attachments: unknown[] }>('GET', '/v1/pods/default/pod-a');
    assert.deepEqual({ status: stillA.status, labels: stillA.json.labels, phase: stillA.json.phase, n: stillA.json.attachments.length },
      { status: 200, labels: null, phase: null, n: 1 });
    assert.equal((await daemon.api('GET', '/v1/pods/default/pod-c')).status, 404, 'a pod known only from the API is gone with it');
  });
});

async function metricsText(daemon: DaemonProcess): Promise<string> {
  const { callApi } = await import('../../daemon/cli/client');
  return (await callApi(daemon.socket, 'GET', '/metrics')).body;
}

test('an unreachable API server is one warning; attachments work without Kubernetes', async () => {
  await withScope(async (scope) => {
    // A port that nothing listens on: the server of a stopped fake API.
    const gone = await FakeKubeApi.start();
    const url = gone.url;
    await gone.close();
    const node = await createNode(scope);
    const a = await node.addPod();
    const sink = await ReportSink.start(scope);
    const daemon = await DaemonProcess.start(scope, { collector: sink.address, env: { KUBECONFIG: kubeconfigFor(scope, url) } });

    const add = cniAdd(daemon, a, `cid-a-${scope.prefix}`, 'pod-a');
    assert.equal(add.code, 0, `CNI ADD: ${add.stdout}${add.stderr}`);
    const att = await daemon.api<{ attachments: AttachmentJson[] }>('GET', '/v1/attachments');
    assert.deepEqual(att.json.attachments.map((r) => [r.podName, r.state, r.labels]), [['pod-a', 'ok', null]]);
    const ready = await daemon.api<{ checks: { name: string; ok: boolean; message: string }[] }>('GET', '/readyz');
    assert.equal(ready.status, 503, 'not ready while the pod list has not been answered');
    assert.match(ready.json.checks.find((c) => c.name === 'kubernetes')!.message,
      /^waiting for the first list of pods of node test-node from http:\/\/127\.0\.0\.1:\d+(; last error: .+)?$/);

    const errors = await eventually('two failed API requests counted', async () => {
      const n = metric(await metricsText(daemon), 'int_kube_errors_total');
      return n !== undefined && n >= 2 ? n : undefined;
    });
    assert.ok(errors >= 2, 'the watch keeps retrying');
    const warnings = daemon.proc.lines.map((l) => JSON.parse(l) as { level: number; msg: string })
      .filter((l) => l.level === 40 && l.msg.startsWith('Kubernetes API request failed'));
    assert.equal(warnings.length, 1, 'one warning for the whole failure streak, not one per retry');
    assert.equal(daemon.proc.lines.some((l) => (JSON.parse(l) as { level: number }).level >= 50), false, 'nothing logged as an error');
  });
});
