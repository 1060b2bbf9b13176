// Naming the place of a reasonless drop through kallsyms.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DropLocations } from '../../daemon/report/drop-locations';
import { IntDropCode } from '../../daemon/report/drop-reasons';

test('an address inside ip_error is a routing miss; elsewhere unknown', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ihr-ksyms-'));
  try {
    const f = join(dir, 'kallsyms');
    writeFileSync(f, [
      'ffffffff81a00000 T ip_rcv',
      'ffffffff81a00400 t ip_error',
      'ffffffff81a00600 T ip_forward',
      'ffffffff81b00000 t ip6_pkt_prohibit\t[ipv6]',
      'ffffffff81c00000 D some_data',
    ].join('\n'));
    const d = new DropLocations(f);
    assert.equal(d.codeFor(0xffffffff81a00400n), IntDropCode.OUTER_IP_MISS, 'the first byte of ip_error');
    assert.equal(d.codeFor(0xffffffff81a005ffn), IntDropCode.OUTER_IP_MISS, 'the last byte before ip_forward');
    assert.equal(d.codeFor(0xffffffff81a00600n), 0, 'ip_forward has no meaning of its own');
    assert.equal(d.codeFor(0xffffffff81a003ffn), 0, 'ip_rcv');
    assert.equal(d.codeFor(0xffffffff81b00010n), IntDropCode.ACL_DROP, 'a module symbol');
    assert.equal(d.codeFor(0x1000n), 0, 'below every symbol');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the running kernel names ip_error', () => {
  const line = readFileSync('/proc/kallsyms', 'utf8').split('\n').find((l) => / t ip_error$/.test(l));
  assert.ok(line, '/proc/kallsyms lists ip_error (run as root)');
  const addr = BigInt(`0x${line.split(' ')[0]}`);
  assert.notEqual(addr, 0n, 'kernel addresses are visible to root');
  assert.equal(new DropLocations().codeFor(addr + 16n), IntDropCode.OUTER_IP_MISS);
});
