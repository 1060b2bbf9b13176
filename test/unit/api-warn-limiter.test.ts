// The rate limit on repeated warnings (a repair failing on every reconcile pass): one warn line
// per key per interval, the skipped ones counted, reported on the next line and kept at debug.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WarnLimiter } from '../../daemon/agent/warn-limiter';

function recorder() {
  const lines: { level: 'warn' | 'debug'; obj: object; msg?: string }[] = [];
  return {
    lines,
    log: {
      warn: (obj: object, msg?: string) => lines.push({ level: 'warn', obj, msg }),
      debug: (obj: object, msg?: string) => lines.push({ level: 'debug', obj, msg }),
    },
  };
}

test('one warning per key per interval; the skipped ones are counted and reported with the next', () => {
  let now = 1_000_000;
  const r = recorder();
  const limiter = new WarnLimiter(r.log, 60_000, () => now);

  assert.equal(limiter.warn('repair a', { attachment: 'a' }, 'attachment could not be repaired'), true);
  for (let i = 0; i < 5; i++) {
    now += 10_000; // every reconcile pass, within the minute
    assert.equal(limiter.warn('repair a', { attachment: 'a' }, 'attachment could not be repaired'), false, `pass ${i} is suppressed`);
  }
  assert.equal(limiter.suppressed, 5);
  assert.deepEqual(r.lines.filter((l) => l.level === 'warn'), [{ level: 'warn', obj: { attachment: 'a' }, msg: 'attachment could not be repaired' }]);
  assert.equal(r.lines.filter((l) => l.level === 'debug').length, 5, 'suppressed warnings stay visible at debug level');

  now += 10_000; // 60 s after the first: the interval is over
  assert.equal(limiter.warn('repair a', { attachment: 'a' }, 'attachment could not be repaired'), true);
  assert.deepEqual(r.lines.at(-1), { level: 'warn', obj: { attachment: 'a', suppressedSinceLast: 5 }, msg: 'attachment could not be repaired' });
  assert.equal(limiter.suppressed, 5);
});

test('keys are limited independently; clear() lets the next warning of a key through at once', () => {
  let now = 0;
  const r = recorder();
  const limiter = new WarnLimiter(r.log, 60_000, () => now);
  assert.equal(limiter.warn('repair a', {}, 'x'), true);
  assert.equal(limiter.warn('repair b', {}, 'x'), true, 'another attachment has its own budget');
  now += 1;
  assert.equal(limiter.warn('repair a', {}, 'x'), false);
  limiter.clear('repair a'); // repaired: a new failure is news again
  assert.equal(limiter.warn('repair a', {}, 'x'), true);
  assert.deepEqual(r.lines.map((l) => l.level), ['warn', 'warn', 'debug', 'warn']);
  assert.deepEqual(r.lines.at(-1)?.obj, {}, 'no suppressed count after a clear');
  assert.equal(limiter.suppressed, 1);
});
