// Result conversion, pod IPs and CNI_ARGS parsing, in-process (the process-level echo is in cni-contract).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { podIdentity } from '../../plugin/config';
import { hostInterfaceNames, podIps, resultAsVersion } from '../../plugin/result';

const v1 = {
  cniVersion: '1.1.0',
  interfaces: [{ name: 'veth1', mac: 'aa', mtu: 9000 }, { name: 'eth0', sandbox: '/proc/1/ns/net', pciID: 'p', socketPath: '/s' }, { name: 'net1', sandbox: '/proc/1/ns/net' }],
  ips: [{ address: '10.0.0.2/24', interface: 1 }, { address: '10.1.0.2/24', interface: 2 }, { address: '2001:db8::2/64', interface: 1 }, { address: '10.2.0.2/32' }, { address: '10.3.0.2/32', interface: 0 }],
  dns: {},
};

describe('result conversion', () => {
  test('result: same-family versions only change cniVersion and keep key order', () => {
    const out = resultAsVersion(v1, '1.0.0');
    assert.equal(JSON.stringify(out), JSON.stringify({ ...v1, cniVersion: '1.0.0' }));
  });

  test('result: a missing cniVersion is added first, in the config version', () => {
    const { cniVersion: _drop, ...noVersion } = v1;
    assert.deepEqual(Object.keys(resultAsVersion(noVersion, '1.1.0')), ['cniVersion', 'interfaces', 'ips', 'dns']);
  });

  test('result: 1.x -> 0.3.0 adds ips[].version by address family and drops 1.1 interface fields', () => {
    const out = resultAsVersion(v1, '0.3.0');
    assert.deepEqual(out, {
      cniVersion: '0.3.0',
      interfaces: [{ name: 'veth1', mac: 'aa' }, { name: 'eth0', sandbox: '/proc/1/ns/net' }, { name: 'net1', sandbox: '/proc/1/ns/net' }],
      ips: [
        { version: '4', address: '10.0.0.2/24', interface: 1 }, { version: '4', address: '10.1.0.2/24', interface: 2 },
        { version: '6', address: '2001:db8::2/64', interface: 1 }, { version: '4', address: '10.2.0.2/32' }, { version: '4', address: '10.3.0.2/32', interface: 0 },
      ],
      dns: {},
    });
    assert.equal(v1.ips[0].address, '10.0.0.2/24', 'input untouched');
    assert.equal('version' in v1.ips[0], false, 'input untouched');
  });

  test('result: 0.4.0 -> 1.0.0 drops ips[].version only', () => {
    const old = { cniVersion: '0.4.0', ips: [{ version: '6', address: '2001:db8::2/64', gateway: '2001:db8::1' }], routes: [{ dst: '::/0' }] };
    assert.deepEqual(resultAsVersion(old, '1.0.0'), { cniVersion: '1.0.0', ips: [{ address: '2001:db8::2/64', gateway: '2001:db8::1' }], routes: [{ dst: '::/0' }] });
  });
});

describe('pod identity and addresses', () => {
  test('ips: those pointing at a sandboxed CNI_IFNAME, plus those without an index', () => {
    assert.deepEqual(podIps(v1, 'eth0'), ['10.0.0.2', '2001:db8::2', '10.2.0.2']);
    assert.deepEqual(podIps(v1, 'net1'), ['10.1.0.2', '10.2.0.2']);
    assert.deepEqual(podIps({}, 'eth0'), []);
  });

  test('host interfaces: the ones without a sandbox', () => {
    assert.deepEqual(hostInterfaceNames(v1), ['veth1']);
  });

  test('CNI_ARGS: K8S_POD_* from CRI, podman and ctr shapes; unknown and malformed pairs ignored', () => {
    assert.deepEqual(podIdentity('IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u'),
      { podNamespace: 'ns', podName: 'p', podUid: 'u' });
    assert.deepEqual(podIdentity('IgnoreUnknown=1;K8S_POD_NAME=web'), { podName: 'web' });
    assert.deepEqual(podIdentity(''), {});
    assert.deepEqual(podIdentity('garbage;=x;K8S_POD_NAME=a=b;FOO=bar'), { podName: 'a=b' });
  });
});
