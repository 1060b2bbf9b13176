import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import ipaddr from 'ipaddr.js';
import { IPPROTO, TupleLayout } from '../../bpf/events';
import {
  ANY_PROTOCOL,
  Watchlist,
  WatchlistError,
  WatchlistFile,
  WatchlistMatch,
  WatchlistStore,
  parseWatchlistDocument,
  parseWatchlistText,
  prefilterEntries,
  type WatchlistOrigin,
} from '../../daemon/watchlist';

const FIXTURE = join(__dirname, '..', 'fixtures', 'reference-watchlist.yaml');

interface TupleSpec {
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  proto: number;
  icmpType?: number;
}

/** Writes a struct int_tuple at `off` the way the datapath does. */
function writeTuple(buf: Buffer, off: number, t: TupleSpec): void {
  const src = ipaddr.parse(t.src);
  buf.fill(0, off, off + TupleLayout.size);
  Buffer.from(src.toByteArray()).copy(buf, off + TupleLayout.saddr);
  Buffer.from(ipaddr.parse(t.dst).toByteArray()).copy(buf, off + TupleLayout.daddr);
  buf.writeUInt16BE(t.sport ?? 0, off + TupleLayout.sport);
  buf.writeUInt16BE(t.dport ?? 0, off + TupleLayout.dport);
  buf[off + TupleLayout.proto] = t.proto;
  buf[off + TupleLayout.ipVersion] = src.kind() === 'ipv6' ? 6 : 4;
  buf[off + TupleLayout.icmpType] = t.icmpType ?? 0;
}

/** A tuple at an odd offset inside a bigger buffer, as in a batch of events. */
function tupleAt(t: TupleSpec, off = 13): [Buffer, number] {
  const buf = Buffer.alloc(off + TupleLayout.size + 7, 0xee);
  writeTuple(buf, off, t);
  return [buf, off];
}

function rulesOf(text: string): Watchlist {
  return new Watchlist(parseWatchlistText(text, 'test.yaml'));
}

function errorOf(fn: () => unknown): WatchlistError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof WatchlistError, `expected a WatchlistError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a WatchlistError');
}

function findRule(w: Watchlist, t: TupleSpec): number {
  const [buf, off] = tupleAt(t);
  return w.findRule(buf, off);
}

describe('the reference watchlist file', () => {
  const watchlist = new Watchlist(parseWatchlistText(readFileSync(FIXTURE, 'utf8'), FIXTURE));

  test('loads with exactly its five rules', () => {
    assert.deepEqual(watchlist.toDocument(), {
      rules: [
        { protocol: 'UDP', 'src-addr': '192.168.99.50/32', 'dst-addr': '192.168.99.20/32' },
        { protocol: 'TCP', 'src-addr': '192.168.99.50/32', 'dst-addr': '192.168.99.20/32' },
        { protocol: 'TCP', 'src-addr': '192.168.99.20/32', 'dst-addr': '192.168.99.50/32' },
        { protocol: 'TCP', 'src-addr': '10.68.235.0/24', 'dst-addr': '10.68.235.0/24' },
        { protocol: 'TCP', 'src-addr': '192.168.33.50/32', 'dst-addr': '192.168.33.11/32' },
      ],
    });
    assert.equal(watchlist.size, 5);
    assert.deepEqual(
      watchlist.rules.map((r) => [r.protocol, r.srcPort.length, r.dstPort.length]),
      [[17, 0, 0], [6, 0, 0], [6, 0, 0], [6, 0, 0], [6, 0, 0]],
    );
  });

  test('matches on protocol and both prefixes, not on ports', () => {
    assert.equal(findRule(watchlist, { src: '192.168.99.50', dst: '192.168.99.20', proto: IPPROTO.UDP, sport: 1, dport: 2 }), 0);
    assert.equal(findRule(watchlist, { src: '192.168.99.50', dst: '192.168.99.20', proto: IPPROTO.TCP, sport: 5, dport: 80 }), 1);
    assert.equal(findRule(watchlist, { src: '192.168.99.20', dst: '192.168.99.50', proto: IPPROTO.UDP }), -1);
    assert.equal(findRule(watchlist, { src: '10.68.235.10', dst: '10.68.235.20', proto: IPPROTO.TCP, sport: 43512, dport: 80 }), 3);
    assert.equal(findRule(watchlist, { src: '10.68.235.10', dst: '10.68.236.20', proto: IPPROTO.TCP }), -1);
    assert.equal(findRule(watchlist, { src: '10.68.235.10', dst: '10.68.235.20', proto: IPPROTO.ICMP }), -1);
    assert.equal(findRule(watchlist, { src: '192.168.33.50', dst: '192.168.33.11', proto: IPPROTO.TCP }), 4);
    assert.equal(findRule(watchlist, { src: '::ffff:192.168.33.50', dst: '::ffff:192.168.33.11', proto: IPPROTO.TCP }), -1);
  });
});

describe('extended rules', () => {
  const watchlist = rulesOf(`
rules:
  - name: web
    protocol: tcp
    src-addr: ["10.1.0.0/16", "fd00:1::/64"]
    dst-addr: ["0.0.0.0/0", "::/0"]
    dst-port: [80, "8000-8080"]
  - name: dns-from-high-ports
    protocol: UDP
    src-addr: 10.0.0.0/8
    dst-addr: 10.0.0.53/32
    src-port: "1024-65535"
    dst-port: "53"
  - protocol: ICMP
    src-addr: 192.168.0.0/16
    dst-addr: 192.168.0.0/16
  - protocol: ICMPv6
    src-addr: "fe80::/10"
    dst-addr: "ff02::/16"
  - protocol: SCTP
    src-addr: 172.16.0.1/32
    dst-addr: 172.16.0.2/32
  - protocol: any
    src-addr: "2001:db8:abcd:12::/63"
    dst-addr: "2001:db8::/32"
  - protocol: 47
    src-addr: 203.0.113.0/24
    dst-addr: 198.51.100.7/32
`);

  test('TCP rule with an IPv4 and an IPv6 source prefix and destination port ranges', () => {
    const web = (src: string, dst: string, dport: number, proto: number = IPPROTO.TCP) => findRule(watchlist, { src, dst, sport: 40000, dport, proto });
    assert.equal(web('10.1.2.3', '8.8.8.8', 80), 0);
    assert.equal(web('10.1.2.3', '8.8.8.8', 8000), 0);
    assert.equal(web('10.1.2.3', '8.8.8.8', 8080), 0);
    assert.equal(web('10.1.2.3', '8.8.8.8', 8081), -1);
    assert.equal(web('10.1.2.3', '8.8.8.8', 79), -1);
    assert.equal(web('10.2.2.3', '8.8.8.8', 80), -1);
    assert.equal(web('10.1.2.3', '8.8.8.8', 80, IPPROTO.UDP), -1);
    assert.equal(web('fd00:1::42', '2001:db8::1', 8042), 0);
    assert.equal(web('fd00:1:0:1::42', '2001:db8::1', 8042), -1);
  });

  test('source and destination port ranges together', () => {
    const dns = (sport: number, dport: number) => findRule(watchlist, { src: '10.9.9.9', dst: '10.0.0.53', sport, dport, proto: IPPROTO.UDP });
    assert.equal(dns(1024, 53), 1);
    assert.equal(dns(65535, 53), 1);
    assert.equal(dns(1023, 53), -1);
    assert.equal(dns(5353, 54), -1);
  });

  test('ICMP, ICMPv6, SCTP, any protocol and a protocol number', () => {
    assert.equal(findRule(watchlist, { src: '192.168.1.1', dst: '192.168.2.2', proto: IPPROTO.ICMP, icmpType: 8, sport: 77 }), 2);
    assert.equal(findRule(watchlist, { src: 'fe80::1', dst: 'ff02::2', proto: IPPROTO.ICMPV6, icmpType: 133 }), 3);
    assert.equal(findRule(watchlist, { src: 'fe80::1', dst: 'ff02::2', proto: IPPROTO.ICMP }), -1);
    assert.equal(findRule(watchlist, { src: '172.16.0.1', dst: '172.16.0.2', proto: IPPROTO.SCTP, sport: 36412, dport: 36412 }), 4);
    assert.equal(findRule(watchlist, { src: '172.16.0.1', dst: '172.16.0.2', proto: IPPROTO.TCP }), -1);
    for (const proto of [IPPROTO.TCP, IPPROTO.UDP, IPPROTO.ICMPV6, 0, 255]) {
      assert.equal(findRule(watchlist, { src: '2001:db8:abcd:13::9', dst: '2001:db8:ffff::1', proto }), 5);
    }
    assert.equal(findRule(watchlist, { src: '2001:db8:abcd:14::9', dst: '2001:db8:ffff::1', proto: IPPROTO.TCP }), -1);
    assert.equal(findRule(watchlist, { src: '2001:db8:abcd:13::9', dst: '2001:db9::1', proto: IPPROTO.TCP }), -1);
    assert.equal(findRule(watchlist, { src: '203.0.113.200', dst: '198.51.100.7', proto: 47 }), 6);
    assert.equal(findRule(watchlist, { src: '203.0.113.200', dst: '198.51.100.8', proto: 47 }), -1);
  });

  test('the first matching rule wins', () => {
    const w = rulesOf('rules:\n  - {protocol: TCP, src-addr: 10.0.0.0/8, dst-addr: 10.0.0.0/8}\n  - {src-addr: 10.0.0.0/8, dst-addr: 10.0.0.0/8}\n');
    assert.equal(findRule(w, { src: '10.1.1.1', dst: '10.2.2.2', proto: IPPROTO.TCP }), 0);
    assert.equal(findRule(w, { src: '10.1.1.1', dst: '10.2.2.2', proto: IPPROTO.UDP }), 1);
    assert.equal(w.rules[1].protocol, ANY_PROTOCOL);
  });

  test('host bits are cleared, as Go\'s ParseCIDR does', () => {
    const w = rulesOf('rules:\n  - {protocol: TCP, src-addr: 10.68.235.77/24, dst-addr: 10.68.235.77/31}\n  - {protocol: TCP, src-addr: "::/0", dst-addr: "fd00:0:0:0:1:2:3:4/80"}\n');
    assert.deepEqual(w.toDocument().rules, [
      { protocol: 'TCP', 'src-addr': '10.68.235.0/24', 'dst-addr': '10.68.235.76/31' },
      { protocol: 'TCP', 'src-addr': '::/0', 'dst-addr': 'fd00::1:0:0:0/80' },
    ]);
  });

  test('prefix lengths /0, /1, /31, /32 and /127, /128 compare the right bits', () => {
    const w = rulesOf(`rules:
  - {protocol: UDP, src-addr: 128.0.0.0/1, dst-addr: 10.0.0.0/31}
  - {protocol: TCP, src-addr: 0.0.0.0/0, dst-addr: 255.255.255.255/32}
  - {protocol: UDP, src-addr: "::/0", dst-addr: "fd00::/127"}
  - {protocol: TCP, src-addr: "::/0", dst-addr: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"}
`);
    assert.equal(findRule(w, { src: '200.1.1.1', dst: '10.0.0.1', proto: IPPROTO.UDP }), 0);
    assert.equal(findRule(w, { src: '127.1.1.1', dst: '10.0.0.1', proto: IPPROTO.UDP }), -1);
    assert.equal(findRule(w, { src: '200.1.1.1', dst: '10.0.0.2', proto: IPPROTO.UDP }), -1);
    assert.equal(findRule(w, { src: '1.2.3.4', dst: '255.255.255.255', proto: IPPROTO.TCP }), 1);
    assert.equal(findRule(w, { src: '1.2.3.4', dst: '255.255.255.254', proto: IPPROTO.TCP }), -1);
    assert.equal(findRule(w, { src: '::1', dst: 'fd00::1', proto: IPPROTO.UDP }), 2);
    assert.equal(findRule(w, { src: '::1', dst: 'fd00::2', proto: IPPROTO.UDP }), -1);
    assert.equal(findRule(w, { src: '::1', dst: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', proto: IPPROTO.TCP }), 3);
    assert.equal(findRule(w, { src: '::1', dst: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe', proto: IPPROTO.TCP }), -1);
  });

  test('a tuple that is neither IPv4 nor IPv6 matches nothing', () => {
    const w = rulesOf('rules:\n  - {src-addr: 0.0.0.0/0, dst-addr: 0.0.0.0/0}\n');
    const [buf, off] = tupleAt({ src: '1.1.1.1', dst: '2.2.2.2', proto: IPPROTO.TCP });
    assert.equal(w.matchTuple(buf, off), true);
    buf[off + TupleLayout.ipVersion] = 0;
    assert.equal(w.matchTuple(buf, off), false);
  });

  test('the written-back document parses to the same rules', () => {
    const again = new Watchlist(parseWatchlistDocument(JSON.parse(JSON.stringify(watchlist))));
    assert.deepEqual(again.rules, watchlist.rules);
  });
});

describe('post-NAT then pre-NAT, as the reference', () => {
  // A client reaches Service 10.96.0.10:80, DNAT'd to pod 10.244.1.5:8080.
  const watchlist = rulesOf(`rules:
  - {protocol: TCP, src-addr: 10.244.0.0/16, dst-addr: 10.96.0.0/12, dst-port: 80}
  - {protocol: UDP, src-addr: 10.244.0.0/16, dst-addr: 10.244.0.0/16}
`);
  const event = Buffer.alloc(3 + 2 * TupleLayout.size);
  const preNatOff = 3;
  const postNatOff = 3 + TupleLayout.size;
  const set = (proto: number) => {
    writeTuple(event, preNatOff, { src: '10.244.2.9', dst: '10.96.0.10', sport: 40000, dport: 80, proto });
    writeTuple(event, postNatOff, { src: '10.244.2.9', dst: '10.244.1.5', sport: 40000, dport: 8080, proto });
  };

  test('only the pre-NAT tuple matches: preNat', () => {
    set(IPPROTO.TCP);
    assert.equal(watchlist.match(event, postNatOff, preNatOff), WatchlistMatch.preNat);
    assert.equal(WatchlistMatch.preNat, 2);
  });

  test('without a pre-NAT tuple: none', () => {
    set(IPPROTO.TCP);
    assert.equal(watchlist.match(event, postNatOff), WatchlistMatch.none);
    assert.equal(watchlist.match(event, postNatOff, -1), 0);
  });

  test('the post-NAT tuple matches: postNat, whatever the pre-NAT one', () => {
    set(IPPROTO.UDP);
    assert.equal(watchlist.match(event, postNatOff, preNatOff), WatchlistMatch.postNat);
    assert.equal(WatchlistMatch.postNat, 1);
  });

  test('neither matches: none', () => {
    set(IPPROTO.SCTP);
    assert.equal(watchlist.match(event, postNatOff, preNatOff), WatchlistMatch.none);
    assert.equal(WatchlistMatch.none, 0);
  });
});

describe('an empty watchlist matches nothing, as in the reference', () => {
  for (const text of ['', '# nothing\n', 'rules:\n', 'rules: []\n', '{}']) {
    test(JSON.stringify(text), () => {
      const w = rulesOf(text);
      assert.equal(w.size, 0);
      const [buf, off] = tupleAt({ src: '10.0.0.1', dst: '10.0.0.2', proto: IPPROTO.TCP, sport: 1, dport: 2 });
      assert.equal(w.matchTuple(buf, off), false);
      assert.equal(w.match(buf, off, off), WatchlistMatch.none);
    });
  }
  test('Watchlist.empty', () => {
    const [buf, off] = tupleAt({ src: 'fd00::1', dst: 'fd00::2', proto: IPPROTO.UDP });
    assert.equal(Watchlist.empty.match(buf, off, off), WatchlistMatch.none);
  });
});

describe('refused watchlists name the rule and the field', () => {
  const messageOf = (text: string) => errorOf(() => parseWatchlistText(text, 'w.yaml')).message;

  test('a prefix length out of range', () => {
    const text = `rules:
  - {protocol: TCP, src-addr: 10.0.0.0/8, dst-addr: 10.0.0.0/8}
  - {protocol: TCP, src-addr: 10.0.0.0/8, dst-addr: 10.0.0.0/8}
  - protocol: TCP
    src-addr: 10.0.0.0/8
    dst-addr: "10.0.0.0/33"
`;
    const err = errorOf(() => parseWatchlistText(text, 'w.yaml'));
    assert.equal(err.message, 'w.yaml:6: rule 2 (dst-addr): "10.0.0.0/33" is not a CIDR');
    assert.deepEqual(err.issues, [{ rule: 2, ruleName: undefined, field: 'dst-addr', line: 6, message: '"10.0.0.0/33" is not a CIDR' }]);
  });

  test('every problem of every rule, with names and list items', () => {
    assert.equal(
      messageOf(`rules:
  - name: web
    protocol: HTTP
    src-addr: [10.0.0.0/8, 010.1.1.1/32]
    dst-addr: 10.0.0.1
  - protocol: ICMP
    src-addr: "fd00::/8"
    dst-addr: "::/0"
    dst-port: 80
  - protocol: UDP
    src-addr: 10.0.0.0/8
    dst-addr: "fd00::/8"
    src-port: "9000-8000"
    dst-port: [53, "x"]
  - src-addr: "fe80::1%eth0/64"
    dst-addr: 1.2.3.4/32
    dst-port: 80
`),
      [
        'w.yaml:3: rule 0 "web" (protocol): "HTTP" is not a protocol; use TCP, UDP, SCTP, ICMP, ICMPv6, any, or a number 0-255',
        'w.yaml:4: rule 0 "web" (src-addr): "010.1.1.1/32" is not a CIDR',
        'w.yaml:5: rule 0 "web" (dst-addr): "10.0.0.1" is not a CIDR (add /32 or /128 for one address)',
        'w.yaml:6: rule 1 (protocol): ICMP is IPv4-only but the rule\'s addresses are IPv6; the rule can never match',
        'w.yaml:9: rule 1 (dst-port): ports need protocol TCP, UDP or SCTP, not ICMP',
        'w.yaml:12: rule 2 (dst-addr): no address family in common with src-addr (IPv4 against IPv6); the rule can never match',
        'w.yaml:13: rule 2 (src-port): "9000-8000" is a reversed range; write the lower port first',
        'w.yaml:14: rule 2 (dst-port): "x" is not a port (0-65535) or a range like "8000-8080"',
        'w.yaml:15: rule 3 (src-addr): "fe80::1%eth0/64" is not a CIDR',
        'w.yaml:17: rule 3 (dst-port): ports need protocol TCP, UDP or SCTP, not any',
      ].join('\n'),
    );
  });

  test('shape errors: missing and unknown fields, wrong types, empty lists', () => {
    assert.equal(
      messageOf(`rules:
  - protocol: TCP
    src-addr: 10.0.0.0/8
  - protocol: TCP
    src_addr: 10.0.0.0/8
    src-addr: 10.0.0.0/8
    dst-addr: []
  - "TCP 10.0.0.0/8"
  - protocol: [TCP]
    src-addr: {a: 1}
    dst-addr: 10.0.0.0/8
  - protocol: TCP
    src-addr: 10.0.0.0/9
    dst-addr: 10.0.0.0/33
`),
      [
        'w.yaml:2: rule 0 (dst-addr): missing; use "0.0.0.0/0" or "::/0" (or both, as a list) to match any address',
        'w.yaml:5: rule 1 (src_addr): unknown field; a rule has name, protocol, src-addr, dst-addr, src-port, dst-port',
        'w.yaml:7: rule 1 (dst-addr): must not be an empty list',
        'w.yaml:8: rule 2: must be a mapping with fields name, protocol, src-addr, dst-addr, src-port, dst-port',
        'w.yaml:9: rule 3 (protocol): must be a string or an integer',
        'w.yaml:10: rule 3 (src-addr): must be a string or a list',
        'w.yaml:14: rule 4 (dst-addr): "10.0.0.0/33" is not a CIDR',
      ].join('\n'),
    );
  });

  test('document-level errors', () => {
    assert.equal(messageOf('rules: [\n'), 'w.yaml:2: not valid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]');
    assert.equal(messageOf('- protocol: TCP\n'), 'w.yaml:1: the document must be a mapping with a "rules" list');
    assert.equal(messageOf('rules: {}\n'), 'w.yaml:1: (rules): must be a list');
    assert.equal(messageOf('rules: []\nversion: 2\n'), 'w.yaml:2: (version): unknown field; the document has only "rules"');
    assert.equal(messageOf('rules: []\nrules: []\n'), 'w.yaml:2: not valid YAML: Map keys must be unique');
  });

  test('a parsed JSON body gets the same checks, without lines', () => {
    const err = errorOf(() => parseWatchlistDocument({ rules: [{ name: 'x', protocol: 'tcp', 'src-addr': '10.0.0.0/8', 'dst-addr': '10.0.0.0/8', 'dst-port': 70000 }] }, 'request body'));
    assert.equal(err.message, 'request body: rule 0 "x" (dst-port): 70000 is not a port (0-65535) or a range like "8000-8080"');
  });
});

describe('prefilterEntries', () => {
  test('one entry per (protocol, prefix), broader entries absorbing narrower ones', () => {
    const w = rulesOf(`rules:
  - {protocol: TCP, src-addr: 10.68.235.0/24, dst-addr: 10.68.235.0/24}
  - {protocol: TCP, src-addr: 10.68.0.0/16, dst-addr: 10.68.235.7/32}
  - {protocol: UDP, src-addr: 10.68.235.0/24, dst-addr: "10.68.235.0/24"}
  - {src-addr: "fd00::/8", dst-addr: ["fd00:1::/32", "fd00::/8"]}
  - {protocol: ICMPv6, src-addr: "fd00:2::/32", dst-addr: "fd00::/8"}
`);
    const entries = prefilterEntries(w.rules);
    const show = (list: typeof entries.src) => list.map((e) => `${e.protocol} ${e.prefix}`);
    assert.deepEqual(show(entries.src), ['6 10.68.0.0/16', '17 10.68.235.0/24', '-1 fd00::/8']);
    assert.deepEqual(show(entries.dst), ['6 10.68.235.0/24', '17 10.68.235.0/24', '-1 fd00::/8']);
    assert.deepEqual(entries.src[0].bytes, [10, 68, 0, 0]);
    assert.equal(entries.src[2].family, 6);
    assert.equal(entries.src[2].length, 8);
  });
});

describe('WatchlistStore.replace (PUT /v1/watchlist)', () => {
  test('takes YAML or JSON text or a parsed body; a bad one leaves the rules in force', () => {
    const changes: [number, WatchlistOrigin][] = [];
    const errors: string[] = [];
    const store = new WatchlistStore({ onChange: (w, o) => changes.push([w.size, o]), onError: (e) => errors.push(e.message) });
    assert.equal(store.current.size, 0);
    assert.equal(store.origin, 'initial');

    store.replace('{"rules": [{"protocol": "TCP", "src-addr": "10.0.0.0/8", "dst-addr": "10.0.0.0/8"}]}');
    store.replace({ rules: [{ 'src-addr': '10.0.0.0/8', 'dst-addr': '10.0.0.0/8' }, { 'src-addr': '::/0', 'dst-addr': '::/0' }] });
    const before = store.current;
    assert.throws(() => store.replace({ rules: [{ 'src-addr': '10.0.0.0/8', 'dst-addr': '10.0.0.0/64' }] }), WatchlistError);
    assert.throws(() => store.replace('rules:\n  - {src-addr: x, dst-addr: 10.0.0.0/8}\n'), WatchlistError);

    assert.equal(store.current, before);
    assert.equal(store.origin, 'api');
    assert.deepEqual(changes, [[1, 'api'], [2, 'api']]);
    assert.deepEqual(errors, [
      'request body: rule 0 (dst-addr): "10.0.0.0/64" is not a CIDR',
      'request body:2: rule 0 (src-addr): "x" is not a CIDR',
    ]);
  });
});

describe('WatchlistFile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'int-watchlist-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Replaces the file the way editors and ConfigMaps do: write aside, rename over. */
  const writeAtomically = (path: string, text: string) => {
    writeFileSync(`${path}.tmp`, text);
    renameSync(`${path}.tmp`, path);
  };

  /** Resolves with the next change or refusal the file reports. */
  function nextEvent(events: { queue: string[]; wake?: () => void }): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no watchlist event within 5 s')), 5000);
      const check = () => {
        const e = events.queue.shift();
        if (e === undefined) return void (events.wake = check);
        clearTimeout(timer);
        events.wake = undefined;
        resolve(e);
      };
      check();
    });
  }

  test('good, then bad (old rules stay, error names rule and field), then good again', async () => {
    const path = join(dir, 'watchlist.yaml');
    writeFileSync(path, readFileSync(FIXTURE, 'utf8'));
    const events: { queue: string[]; wake?: () => void } = { queue: [] };
    const push = (e: string) => { events.queue.push(e); events.wake?.(); };
    const file = new WatchlistFile(path, {
      debounceMs: 30,
      onChange: (w, origin) => push(`change ${origin} ${w.size}`),
      onError: (e) => push(`error ${e.message}`),
    });
    try {
      assert.equal(file.load().size, 5);
      assert.equal(await nextEvent(events), 'change file 5');
      file.watch();
      const loaded = file.current;
      const [buf, off] = tupleAt({ src: '10.68.235.10', dst: '10.68.235.20', proto: IPPROTO.TCP, sport: 43512, dport: 80 });

      writeAtomically(path, 'rules:\n  - protocol: TCP\n    src-addr: 10.68.235.0/24\n    dst-addr: 10.68.235.0/33\n');
      assert.equal(await nextEvent(events), `error ${path}:4: rule 0 (dst-addr): "10.68.235.0/33" is not a CIDR`);
      assert.equal(file.current, loaded);
      assert.equal(file.current.findRule(buf, off), 3);

      writeAtomically(path, 'rules:\n  - {protocol: UDP, src-addr: "fd00::/8", dst-addr: "fd00::/8"}\n  - {protocol: TCP, src-addr: 10.68.235.10/32, dst-addr: 10.68.235.20/32, dst-port: 80}\n');
      assert.equal(await nextEvent(events), 'change file 2');
      assert.equal(file.current.findRule(buf, off), 1);

      // An in-place write (no rename) is seen too.
      writeFileSync(path, 'rules: []\n');
      assert.equal(await nextEvent(events), 'change file 0');
      assert.equal(file.current.findRule(buf, off), -1);
      assert.deepEqual(events.queue, []);
    } finally {
      file.close();
    }
  });

  test('a deleted file keeps the rules in force and is reported; an unchanged rewrite is ignored', async () => {
    const path = join(dir, 'deleted.yaml');
    const text = 'rules:\n  - {protocol: TCP, src-addr: 10.0.0.0/8, dst-addr: 10.0.0.0/8}\n';
    writeFileSync(path, text);
    const seen: string[] = [];
    const file = new WatchlistFile(path, { debounceMs: 20, onChange: (w) => seen.push(`change ${w.size}`), onError: (e) => seen.push(e.message) });
    try {
      file.load();
      assert.equal(file.reload(), false); // same content: nothing to do
      writeFileSync(path, text);
      unlinkSync(path);
      assert.equal(file.reload(), false);
      assert.equal(file.current.size, 1);
      assert.deepEqual(seen, ['change 1', `${path}: cannot read the watchlist: no such file`]);
    } finally {
      file.close();
    }
  });

  test('load() refuses a missing or bad file at start-up', () => {
    const missing = new WatchlistFile(join(dir, 'missing.yaml'));
    assert.throws(() => missing.load(), { name: 'WatchlistError', message: `${join(dir, 'missing.yaml')}: cannot read the watchlist: no such file` });
    const path = join(dir, 'bad.yaml');
    writeFileSync(path, 'rules:\n  - {protocol: TCP, src-addr: 10.0.0.0/8}\n');
    assert.throws(() => new WatchlistFile(path).load(), {
      message: `${path}:2: rule 0 (dst-addr): missing; use "0.0.0.0/0" or "::/0" (or both, as a list) to match any address`,
    });
  });
});
