// A cross-process lock from a file created with O_EXCL (Node has no flock). The file holds
// "<pid> <ms since epoch>" so a lock left by a crashed plugin can be recognised and broken.
import { linkSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { processAlive } from './process';
import { errnoCode } from './errno';

export interface LockOptions {
  /** how long to wait for the lock before giving up */
  timeoutMs?: number;
  /** a lock older than this is stale even if its pid is alive (pid reuse) */
  staleMs?: number;
}

const DEFAULT_TIMEOUT_MS = 3000;
const DEFAULT_STALE_MS = 5000;

export class LockTimeoutError extends Error {}

/** Runs fn while holding the lock file. Sections are short (a few fs calls), so we wait synchronously. */
export function withLock<T>(lockPath: string, fn: () => T, options: LockOptions = {}): T {
  const token = acquire(lockPath, options.timeoutMs ?? DEFAULT_TIMEOUT_MS, options.staleMs ?? DEFAULT_STALE_MS);
  try {
    return fn();
  } finally {
    release(lockPath, token);
  }
}

function acquire(lockPath: string, timeoutMs: number, staleMs: number): string {
  const token = `${process.pid} ${Date.now()} ${Math.random().toString(36).slice(2)}`;
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(lockPath, token, { flag: 'wx', mode: 0o600 });
      return token;
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw err;
    }
    // checked before anything else, so even a lock we cannot break never loops forever
    if (Date.now() >= deadline) throw new LockTimeoutError(`timed out after ${timeoutMs} ms waiting for ${lockPath}`);
    const holder = readHolder(lockPath);
    if (holder !== undefined && isStale(lockPath, holder, staleMs)) breakStaleLock(lockPath, holder);
    else sleep(Math.min(2 + attempt, 25) + Math.random() * 5);
  }
}

function release(lockPath: string, token: string): void {
  // Only remove the lock if it is still ours (it may have been broken as stale meanwhile).
  if (readHolder(lockPath) === token) {
    try {
      unlinkSync(lockPath);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err; // else: broken as stale meanwhile
    }
  }
}

function readHolder(lockPath: string): string | undefined {
  try {
    return readFileSync(lockPath, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined; // released meanwhile
    throw err;
  }
}

function isStale(lockPath: string, holder: string, staleMs: number): boolean {
  const [pidText, sinceText] = holder.split(' ');
  const pid = Number(pidText);
  const since = Number(sinceText);
  if (!Number.isInteger(pid) || pid <= 0 || !Number.isFinite(since)) {
    // empty or garbled: a holder may still be writing its token, so judge by the file's age
    try {
      return Date.now() - statSync(lockPath).mtimeMs > staleMs;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return false; // released meanwhile: just try again
      throw err;
    }
  }
  if (Date.now() - since > staleMs) return true;
  return !processAlive(pid);
}

// Move the lock aside (atomic) and make sure what we moved is the stale one we judged; if a
// competitor broke it first and took a fresh lock, put theirs back.
function breakStaleLock(lockPath: string, staleHolder: string): void {
  const aside = `${lockPath}.stale-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    renameSync(lockPath, aside);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return; // someone else moved it
    throw err;
  }
  if (readHolder(aside) !== staleHolder) {
    try {
      linkSync(aside, lockPath);
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw err; // else: a newer lock exists, leave it
    }
  }
  unlinkSync(aside); // ours alone: a unique name
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
function sleep(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}
