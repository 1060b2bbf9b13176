import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ConfigError, HelpRequested, parseConfig, usage, type Config } from '../../daemon/config';

/** parseConfig over an in-memory set of files. */
function parse(argv: string[], env: Record<string, string> = {}, files: Record<string, string> = {}): Config {
  return parseConfig(argv, env, (path) => {
    if (path in files) return files[path];
    throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
  });
}

function errorOf(argv: string[], env: Record<string, string> = {}, files: Record<string, string> = {}): string {
  try {
    parse(argv, env, files);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err.message;
  }
  assert.fail('expected a ConfigError');
}

const DEFAULTS = {
  logLevel: 'info',
  socketPath: '/run/int-host-reporter/daemon.sock',
  bpffsPath: '/sys/fs/bpf/int-host-reporter',
  reportIntervalMs: 1000,
  reconcileIntervalMs: 30000,
  latencyQuantumNs: 65536,
  sampleBytes: 128,
  nodeName: hostname(),
  dropDetection: 'auto',
};

describe("the reference's flags and deployment environment", () => {
  test('its DaemonSet arguments, unchanged', () => {
    // args of deployment/kubernetes/inthostreporter.yaml after $(VAR) expansion
    const config = parse([
      '--cni', 'cilium', '--data-interface', 'enp0s8', '--collector', '192.168.33.50:30001',
      '--switch-id', '192.168.99.20', '-f', '/etc/watchlist/watchlist.yaml',
    ]);
    assert.deepEqual(config, {
      ...DEFAULTS,
      cni: 'cilium',
      dataInterface: 'enp0s8',
      collectors: [{ host: '192.168.33.50', port: 30001 }],
      switchId: 3232260884,
      watchlistConf: '/etc/watchlist/watchlist.yaml',
    });
  });

  test("Go's flag syntax: one dash, =value, --watchlist-conf", () => {
    const config = parse(['-collector=10.0.0.1:1', '-switch-id', '42', '--watchlist-conf=/w.yaml', '-log-level', 'trace', '-c=calico-ebpf']);
    assert.deepEqual(config, {
      ...DEFAULTS,
      collectors: [{ host: '10.0.0.1', port: 1 }],
      switchId: 42,
      watchlistConf: '/w.yaml',
      logLevel: 'trace',
      cni: 'calico-ebpf',
    });
  });

  test('switch ids: decimal u32 and dotted IPv4 read big-endian', () => {
    const id = (v: string) => parse(['--collector', 'c', '--switch-id', v]).switchId;
    assert.equal(id('0'), 0);
    assert.equal(id('4294967295'), 4294967295);
    assert.equal(id('192.168.99.20'), 3232260884);
    assert.equal(id('10.0.0.1'), 167772161);
    assert.equal(id('255.255.255.255'), 4294967295);
    assert.equal(id('::ffff:192.168.99.20'), 3232260884);
  });

  test('the environment the reference deployments set: COLLECTOR, DATA_INTERFACE, NODE_IP, CNI', () => {
    const config = parse([], { COLLECTOR: '192.168.33.50:30001', DATA_INTERFACE: 'enp0s8', NODE_IP: '192.168.99.20', CNI: 'cilium', NODE_NAME: 'node-1' });
    assert.deepEqual(config, {
      ...DEFAULTS,
      collectors: [{ host: '192.168.33.50', port: 30001 }],
      dataInterface: 'enp0s8',
      switchId: 3232260884,
      cni: 'cilium',
      nodeName: 'node-1',
    });
  });

  test('log levels: info, debug, trace, and pino\'s others', () => {
    for (const level of ['info', 'debug', 'trace', 'warn', 'error', 'fatal', 'silent']) {
      assert.equal(parse(['--collector', 'c', '--log-level', level]).logLevel, level);
    }
    assert.equal(parse(['--collector', 'c', '--log-level', 'DEBUG']).logLevel, 'debug');
  });
});

describe('our settings', () => {
  test('every flag', () => {
    const config = parse([
      '--collector', 'a.example:9000', '--collector=[fd00::1]:9001,10.0.0.9', '--socket', '/tmp/d.sock', '--bpffs', '/sys/fs/bpf/x',
      '--report-interval-ms', '250', '--reconcile-interval-ms', '5000', '--latency-quantum-ns', '1024', '--sample-bytes', '256', '--node-name', 'n1', '--metrics-listen', '127.0.0.1:9100',
      '--drop-detection', 'aging',
    ]);
    assert.deepEqual(config, {
      collectors: [{ host: 'a.example', port: 9000 }, { host: 'fd00::1', port: 9001 }, { host: '10.0.0.9', port: 32766 }],
      logLevel: 'info',
      socketPath: '/tmp/d.sock',
      bpffsPath: '/sys/fs/bpf/x',
      reportIntervalMs: 250,
      reconcileIntervalMs: 5000,
      latencyQuantumNs: 1024,
      sampleBytes: 256,
      nodeName: 'n1',
      metricsListen: { host: '127.0.0.1', port: 9100 },
      dropDetection: 'aging',
    });
  });

  test('metrics listen forms', () => {
    const listen = (v: string) => parse(['--collector', 'c', '--metrics-listen', v]).metricsListen;
    assert.deepEqual(listen(':9100'), { port: 9100 });
    assert.deepEqual(listen('[::1]:9100'), { host: '::1', port: 9100 });
    assert.equal(listen('off'), undefined);
  });

  test('health listen: loopback unless an address is named; the installer status path must be absolute', () => {
    const listen = (v: string) => parse(['--collector', 'c', '--health-listen', v]).healthListen;
    assert.deepEqual(listen(':9880'), { host: '127.0.0.1', port: 9880 });
    assert.deepEqual(listen('[::1]:9880'), { host: '::1', port: 9880 });
    assert.deepEqual(listen('0.0.0.0:9880'), { host: '0.0.0.0', port: 9880 });
    assert.equal(listen('off'), undefined);
    assert.equal(parse(['--collector', 'c']).healthListen, undefined, 'off by default');
    assert.equal(errorOf(['--collector', 'c', '--health-listen', '9880']), '--health-listen: "9880" has no port; write it as ADDR:PORT');
    assert.deepEqual(parse(['--collector', 'c'], { INT_HOST_REPORTER_CNI_INSTALLER_STATUS: '/run/s.json' }).cniInstallerStatus, '/run/s.json');
    assert.equal(errorOf(['--collector', 'c', '--cni-installer-status', 's.json']), '--cni-installer-status: "s.json" must be an absolute path');
  });

  test('bare IPv6 collector gets the default port', () => {
    assert.deepEqual(parse(['--collector', 'fd00::5']).collectors, [{ host: 'fd00::5', port: 32766 }]);
  });
});

describe('precedence: flags > environment > file > defaults', () => {
  const file = [
    'collector: [file-a:1, file-b:2]',
    'sample-bytes: 96',
    'report-interval-ms: 500',
    'log-level: debug',
    'switch-id: 7',
    'watchlist-conf: watchlist.yaml',
    'metrics-listen: "0.0.0.0:9200"',
  ].join('\n');
  const files = { '/etc/ihr/config.yaml': file };

  test('the file over the defaults; a relative watchlist path is the file\'s neighbour', () => {
    assert.deepEqual(parse(['--config', '/etc/ihr/config.yaml'], {}, files), {
      ...DEFAULTS,
      configFile: '/etc/ihr/config.yaml',
      collectors: [{ host: 'file-a', port: 1 }, { host: 'file-b', port: 2 }],
      sampleBytes: 96,
      reportIntervalMs: 500,
      logLevel: 'debug',
      switchId: 7,
      watchlistConf: '/etc/ihr/watchlist.yaml',
      metricsListen: { host: '0.0.0.0', port: 9200 },
    });
  });

  test('the environment over the file, NODE_IP only under it, flags over everything', () => {
    const env = { INT_HOST_REPORTER_CONFIG: '/etc/ihr/config.yaml', COLLECTOR: 'env:3', INT_HOST_REPORTER_SAMPLE_BYTES: '200', NODE_IP: '10.0.0.1' };
    const fromEnv = parse([], env, files);
    assert.deepEqual([fromEnv.collectors, fromEnv.sampleBytes, fromEnv.switchId, fromEnv.reportIntervalMs], [[{ host: 'env', port: 3 }], 200, 7, 500]);

    const fromFlags = parse(['--collector', 'flag:4', '--sample-bytes', '64', '--switch-id', '9'], env, files);
    assert.deepEqual([fromFlags.collectors, fromFlags.sampleBytes, fromFlags.switchId], [[{ host: 'flag', port: 4 }], 64, 9]);
  });

  test('our prefixed variable over the reference\'s, empty ones ignored', () => {
    const config = parse(['--data-interface', ''], { INT_HOST_REPORTER_COLLECTOR: 'ours:1', COLLECTOR: 'theirs:2', DATA_INTERFACE: '', INT_HOST_REPORTER_DATA_INTERFACE: 'eth1' });
    assert.deepEqual([config.collectors, config.dataInterface], [[{ host: 'ours', port: 1 }], 'eth1']);
  });

  test('a JSON config file', () => {
    const config = parse(['--config', '/c.json'], {}, { '/c.json': '{"collector": "j:5", "sample-bytes": 70}' });
    assert.deepEqual([config.collectors, config.sampleBytes], [[{ host: 'j', port: 5 }], 70]);
  });
});

describe('bad values name their source and the value', () => {
  const cases: [string[], Record<string, string>, string][] = [
    [[], {}, 'no INT collector given: use --collector HOST:PORT (or env COLLECTOR, or "collector" in the config file)'],
    [['--collector', 'a:x'], {}, '--collector: "a:x" has an invalid port'],
    [['--collector', 'a:1,b:99999'], {}, '--collector: "a:1,b:99999" contains "b:99999", which has a port out of range (1-65535)'],
    [['--collector', 'a:70000'], {}, '--collector: "a:70000" has a port out of range (1-65535)'],
    [['--collector', 'a:0'], {}, '--collector: "a:0" has a port out of range (1-65535)'],
    [['--collector', 'bad_host:1'], {}, '--collector: "bad_host:1" has an invalid host name'],
    [['--collector', 'a:1,b:x'], {}, '--collector: "a:1,b:x" contains "b:x", which has an invalid port'],
    [[], { COLLECTOR: '300.1.1.1:5' }, 'env COLLECTOR: "300.1.1.1:5" has an invalid IPv4 address'],
    [['--collector', 'c', '--switch-id', 'node-1'], {}, '--switch-id: "node-1" is not a switch id; use a decimal number (0-4294967295) or an IPv4 address'],
    [['--collector', 'c', '--switch-id', '4294967296'], {}, '--switch-id: "4294967296" must be at most 4294967295'],
    [['--collector', 'c'], { NODE_IP: 'fd00::1' }, 'env NODE_IP: "fd00::1" is not a switch id; use a decimal number (0-4294967295) or an IPv4 address'],
    [['--collector', 'c', '--sample-bytes', '1000'], {}, '--sample-bytes: "1000" must be at most 256'],
    [['--collector', 'c'], { INT_HOST_REPORTER_SAMPLE_BYTES: '32' }, 'env INT_HOST_REPORTER_SAMPLE_BYTES: "32" must be at least 64'],
    [['--collector', 'c', '--sample-bytes', '12x'], {}, '--sample-bytes: "12x" is not a whole number'],
    [['--collector', 'c', '--report-interval-ms', '-5'], {}, '--report-interval-ms: "-5" is not a whole number'],
    [['--collector', 'c', '--reconcile-interval-ms', '50'], {}, '--reconcile-interval-ms: "50" must be at least 100'],
    [['--collector', 'c'], { INT_HOST_REPORTER_RECONCILE_INTERVAL_MS: '3600001' }, 'env INT_HOST_REPORTER_RECONCILE_INTERVAL_MS: "3600001" must be at most 3600000'],
    [['--collector', 'c', '--latency-quantum-ns', '1000'], {}, '--latency-quantum-ns: "1000" must be a power of two (e.g. 65536)'],
    [['--collector', 'c', '--log-level', 'verbose'], {}, '--log-level: "verbose" is not a log level; use fatal, error, warn, info, debug, trace, silent'],
    [['--collector', 'c', '--data-interface', 'a-very-long-interface'], {}, '--data-interface: "a-very-long-interface" is not an interface name (1-15 characters, no "/", ":" or white space)'],
    [['--collector', 'c', '--socket', 'relative.sock'], {}, '--socket: "relative.sock" must be an absolute path'],
    [['--collector', 'c', '--socket', `/${'s'.repeat(107)}`], {}, `--socket: "/${'s'.repeat(107)}" is too long for a unix socket path (at most 107 bytes)`],
    [['--collector', 'c', '--metrics-listen', '9100'], {}, '--metrics-listen: "9100" has no port; write it as ADDR:PORT'],
    [['--collector', 'c', '--colector', 'x'], {}, 'unknown flag --colector; see --help'],
    [['--collector', 'c', 'extra'], {}, 'unexpected argument "extra"; see --help'],
    [['--collector'], {}, '--collector needs a value'],
    [['--config', '/missing.yaml'], {}, '--config /missing.yaml: cannot read: no such file'],
  ];
  for (const [argv, env, message] of cases) {
    test(message, () => assert.equal(errorOf(argv, env), message));
  }

  test('config file problems', () => {
    const withFile = (text: string) => errorOf(['--config', '/c.yaml'], {}, { '/c.yaml': text });
    assert.equal(withFile('collector: x:1\nsample_bytes: 64\n'),
      '/c.yaml (sample_bytes): unknown setting; known: collector, switch-id, data-interface, watchlist-conf, log-level, socket, bpffs, report-interval-ms, reconcile-interval-ms, latency-quantum-ns, sample-bytes, node-name, metrics-listen, health-listen, cni-installer-status, drop-detection, cni');
    assert.equal(withFile('collector: x:1\nsample-bytes: "64"\n'), '/c.yaml (sample-bytes): "64" must be an integer');
    assert.equal(withFile('collector: x:1\nsample-bytes: 512\n'), '/c.yaml (sample-bytes): 512 must be at most 256');
    assert.equal(withFile('collector: [x:1, "y:z"]\n'), '/c.yaml (collector): "y:z" has an invalid port');
    assert.equal(withFile('collector: x:1\nswitch-id: 1.2.3\n'), '/c.yaml (switch-id): "1.2.3" is not a switch id; use a decimal number (0-4294967295) or an IPv4 address');
    assert.equal(withFile('collector: [x:1\n'), '/c.yaml:2: not valid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]');
    assert.equal(withFile('- x\n'), '/c.yaml: must be a mapping of settings');
  });
});

describe('help', () => {
  test('-h and --help throw HelpRequested carrying the usage text', () => {
    for (const flag of ['-h', '--help', '-help']) {
      assert.throws(() => parse([flag]), (err: unknown) => err instanceof HelpRequested && err.message === usage());
    }
  });

  test('the usage text lists every flag and its variables', () => {
    const text = usage();
    for (const needle of [
      '--collector HOST:PORT', '--switch-id ID|IPv4', '--data-interface IFNAME', '-f, --watchlist-conf FILE', '--log-level LEVEL',
      '--config FILE', '--socket PATH', '--bpffs PATH', '--report-interval-ms MS', '--reconcile-interval-ms MS', '--latency-quantum-ns NS', '--sample-bytes N',
      '--node-name NAME', '--metrics-listen ADDR:PORT', '-c, --cni NAME', 'env INT_HOST_REPORTER_COLLECTOR, COLLECTOR',
      'env INT_HOST_REPORTER_SWITCH_ID, NODE_IP', '(default 65536)',
    ]) {
      assert.ok(text.includes(needle), `usage lacks ${needle}`);
    }
  });
});

describe('with the real file system', () => {
  const dir = mkdtempSync(join(tmpdir(), 'int-config-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('the default reader loads --config from disk', () => {
    const path = join(dir, 'config.yaml');
    writeFileSync(path, 'collector: 10.1.1.1:32766\nwatchlist-conf: wl.yaml\n');
    const config = parseConfig(['--config', path], {});
    assert.deepEqual([config.collectors, config.watchlistConf, config.configFile], [[{ host: '10.1.1.1', port: 32766 }], join(dir, 'wl.yaml'), path]);
  });
});
