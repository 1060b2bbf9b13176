// The spool and its lock, in-process: the functions the daemon uses to drain it, and the bounds.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { LockTimeoutError, withLock } from '../../protocol/lockfile';
import { processAlive } from '../../protocol/process';
import { MAX_SPOOL_ENTRIES, readSpool, removeSpoolEntry, spoolFileName, writeSpoolRecord } from '../../protocol/spool';

const key = (containerId: string) => ({ network: 'ebpftest', containerId, ifname: 'eth0' });
const notice = (containerId: string, extra = {}) => ({ ...key(containerId), ...extra });

let dir: string;
beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'ihr-spool-')); });
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('spool records', () => {
  test('spool: a written record reads back with its key, op, notice and reasons', () => {
    const res = writeSpoolRecord(join(dir, 'spool'), 'add', notice('c1', { hostIfindex: 7 }), ['notify failed: x']);
    assert.deepEqual(res, { written: true, file: spoolFileName(key('c1')) });
    const [entry, ...rest] = readSpool(join(dir, 'spool'));
    assert.deepEqual(rest, []);
    assert.deepEqual(
      [entry.version, entry.op, entry.key, entry.notice, entry.reasons, entry.file],
      [1, 'add', key('c1'), notice('c1', { hostIfindex: 7 }), ['notify failed: x'], spoolFileName(key('c1'))],
    );
    assert.match(entry.id, /^[0-9a-f]{16}$/);
    assert.deepEqual(readdirSync(join(dir, 'spool')), [entry.file]);
  });

  test('spool: file names are per key, hex, and differ when any part of the key differs', () => {
    const names = [key('c1'), key('c2'), { ...key('c1'), ifname: 'net1' }, { ...key('c1'), network: 'other' }].map(spoolFileName);
    assert.equal(new Set(names).size, 4);
    for (const n of names) assert.match(n, /^[0-9a-f]{40}\.json$/);
    // the separator keeps ("a","bc") and ("ab","c") apart
    assert.notEqual(spoolFileName({ network: 'a', containerId: 'bc', ifname: 'x' }), spoolFileName({ network: 'ab', containerId: 'c', ifname: 'x' }));
  });

  test('spool: the newest record of a key replaces the older one', () => {
    writeSpoolRecord(dir, 'add', notice('c1'), ['a']);
    writeSpoolRecord(dir, 'del', notice('c1'), ['b']);
    assert.deepEqual(readSpool(dir).map((e) => [e.op, e.reasons]), [['del', ['b']]]);
  });

  test('spool: readSpool lists oldest first and skips corrupt, foreign and tmp files', () => {
    writeSpoolRecord(dir, 'add', notice('first'), []);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5); // writtenAt has millisecond resolution
    writeSpoolRecord(dir, 'add', notice('second'), []);
    writeFileSync(join(dir, 'deadbeef.json'), '{not json');
    writeFileSync(join(dir, 'cafe.json'), JSON.stringify({ version: 2, op: 'add', key: key('x') }));
    writeFileSync(join(dir, '.tmp-1-abc'), '{}');
    writeFileSync(join(dir, 'README'), 'x');
    assert.deepEqual(readSpool(dir).map((e) => e.key.containerId), ['first', 'second']);
  });

  test('spool: a record name that cannot be read (a directory) is an error, not a silently skipped record', () => {
    mkdirSync(join(dir, 'feed.json'));
    assert.throws(() => readSpool(dir), (err: NodeJS.ErrnoException) => err.code === 'EISDIR');
  });

  test('spool: readSpool of a missing directory is empty', () => {
    assert.deepEqual(readSpool(join(dir, 'nope')), []);
  });

  test('spool: removeSpoolEntry with the id read removes it; a replaced record is kept', () => {
    writeSpoolRecord(dir, 'add', notice('c1'), []);
    const [drained] = readSpool(dir);
    writeSpoolRecord(dir, 'del', notice('c1'), []); // the plugin wrote a DEL while the daemon worked
    assert.equal(removeSpoolEntry(dir, drained), false);
    const [current] = readSpool(dir);
    assert.equal(current.op, 'del');
    assert.equal(removeSpoolEntry(dir, current), true);
    assert.deepEqual(readSpool(dir), []);
    assert.equal(removeSpoolEntry(dir, current), false, 'already gone');
  });

  test('spool: removeSpoolEntry without an id removes whatever the key holds; missing dir is not an error', () => {
    writeSpoolRecord(dir, 'add', notice('c1'), []);
    assert.equal(removeSpoolEntry(dir, { key: key('c1') }), true);
    assert.equal(removeSpoolEntry(join(dir, 'nope'), { key: key('c1') }), false);
  });

  test('spool: removing a key the spool does not hold needs no lock (the happy path of every ADD/DEL)', () => {
    const empty = join(dir, 'empty');
    writeSpoolRecord(empty, 'add', notice('c1'), []);
    assert.equal(removeSpoolEntry(empty, { key: key('c1') }), true);
    writeSpoolRecord(dir, 'add', notice('c2'), []);
    for (const d of [dir, empty]) writeFileSync(join(d, '.lock'), `${process.pid} ${Date.now()} held`); // writers are busy
    const started = Date.now();
    assert.equal(removeSpoolEntry(empty, { key: key('c1') }), false, 'empty spool');
    assert.equal(removeSpoolEntry(dir, { key: key('c1') }), false, 'other keys only');
    assert.ok(Date.now() - started < 1000, 'did not wait for the held locks');
    assert.deepEqual(readSpool(dir).map((e) => e.key), [key('c2')]);
  });

  test(`spool: at most ${MAX_SPOOL_ENTRIES} records by default; a full spool still replaces existing keys`, () => {
    for (let i = 0; i < MAX_SPOOL_ENTRIES; i++) assert.equal(writeSpoolRecord(dir, 'add', notice(`c${i}`), []).written, true);
    assert.deepEqual(writeSpoolRecord(dir, 'add', notice('one-too-many'), []), {
      written: false, reason: `spool ${dir} is full (${MAX_SPOOL_ENTRIES} of ${MAX_SPOOL_ENTRIES} records)`,
    });
    assert.equal(writeSpoolRecord(dir, 'del', notice('c3'), []).written, true);
    assert.equal(readSpool(dir).length, MAX_SPOOL_ENTRIES);
  });

  test('spool: maxEntries is configurable', () => {
    writeSpoolRecord(dir, 'add', notice('a'), [], { maxEntries: 1 });
    assert.equal(writeSpoolRecord(dir, 'add', notice('b'), [], { maxEntries: 1 }).written, false);
  });

  test('spool: tmp files older than a minute (a plugin killed mid-write) are swept on the next write', () => {
    const old = join(dir, '.tmp-4242-0011223344556677');
    const fresh = join(dir, '.tmp-4243-8899aabbccddeeff');
    writeFileSync(old, '{');
    writeFileSync(fresh, '{');
    const past = new Date(Date.now() - 120_000);
    utimesSync(old, past, past);
    writeSpoolRecord(dir, 'add', notice('c1'), []);
    assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('.tmp-')), ['.tmp-4243-8899aabbccddeeff']);
  });
});

describe('spool lock', () => {
  test('lock: a lock held by a live, recent process makes others wait and time out', () => {
    const lock = join(dir, '.lock');
    writeFileSync(lock, `${process.pid} ${Date.now()} held`);
    assert.throws(() => withLock(lock, () => 1, { timeoutMs: 100 }), LockTimeoutError);
    assert.equal(readdirSync(dir).includes('.lock'), true, 'a live lock is not broken');
  });

  test('processAlive: this process is, an exited child is not', () => {
    const child = spawnSync('true');
    assert.equal(child.status, 0);
    assert.deepEqual([processAlive(process.pid), processAlive(child.pid!)], [true, false]);
  });

  test('lock: a lock of a dead process is broken at once', () => {
    const lock = join(dir, '.lock');
    writeFileSync(lock, `999999999 ${Date.now()} dead`);
    assert.equal(withLock(lock, () => 'ran', { timeoutMs: 100 }), 'ran');
    assert.deepEqual(readdirSync(dir), []);
  });

  test('lock: a lock older than staleMs is broken even if its pid is alive (pid reuse)', () => {
    const lock = join(dir, '.lock');
    writeFileSync(lock, `${process.pid} ${Date.now() - 10_000} old`);
    assert.equal(withLock(lock, () => 'ran', { timeoutMs: 100, staleMs: 5_000 }), 'ran');
  });

  test('lock: an empty lock file is judged by its age', () => {
    const lock = join(dir, '.lock');
    writeFileSync(lock, '');
    assert.throws(() => withLock(lock, () => 1, { timeoutMs: 50, staleMs: 5_000 }), LockTimeoutError);
    const past = new Date(Date.now() - 10_000);
    utimesSync(lock, past, past);
    assert.equal(withLock(lock, () => 'ran', { timeoutMs: 50, staleMs: 5_000 }), 'ran');
  });

  test('lock: released after the section, also when it throws', () => {
    const lock = join(dir, '.lock');
    assert.throws(() => withLock(lock, () => { throw new Error('boom'); }), /boom/);
    assert.deepEqual(readdirSync(dir), []);
  });
});
