// The spool: what the daemon must still learn because the plugin could not tell it (or could not
// attach/detach). One JSON file per attachment key, replaced atomically (tmp + rename), so the
// newest fact about a key wins: a DEL record replaces a pending ADD repair and vice versa.
// The plugin writes; the daemon drains with readSpool + removeSpoolEntry.
import type * as Crypto from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { errnoCode } from './errno';
import { withLock } from './lockfile';
import type { AttachmentKey, AttachmentNotice } from './notice';

/** Bound on pending records (Cilium's deletion queue uses the same number). */
export const MAX_SPOOL_ENTRIES = 256;
export const SPOOL_RECORD_VERSION = 1;

/** add: the daemon must (re)attach or learn the attachment. del: it must clean it up. */
export type SpoolOp = 'add' | 'del';

export interface SpoolRecord {
  version: typeof SPOOL_RECORD_VERSION;
  /** unique per write: removeSpoolEntry removes a record only if it was not replaced meanwhile */
  id: string;
  op: SpoolOp;
  key: AttachmentKey;
  notice: AttachmentNotice;
  /** what failed, for logs and metrics */
  reasons: string[];
  /** ISO 8601 */
  writtenAt: string;
}

export interface SpoolEntry extends SpoolRecord {
  /** file name inside the spool dir */
  file: string;
}

export type SpoolWriteResult = { written: true; file: string } | { written: false; reason: string };

const LOCK_FILE = '.lock';
const TMP_PREFIX = '.tmp-';
const RECORD_SUFFIX = '.json';
const TMP_MAX_AGE_MS = 60_000;

// node:crypto costs the plugin a few ms to load; only spool writes and removals of a present
// record need it, so it is loaded on first use (a plain require: the bundle and tsx are CJS).
let cryptoModule: typeof Crypto | undefined;
function crypto(): typeof Crypto {
  return (cryptoModule ??= require('node:crypto') as typeof Crypto);
}

/** Deterministic file name of a key; hashed so any network name / container id is a safe name. */
export function spoolFileName(key: AttachmentKey): string {
  const digest = crypto().createHash('sha256').update(`${key.network}\0${key.containerId}\0${key.ifname}`).digest('hex');
  return digest.slice(0, 40) + RECORD_SUFFIX;
}

export interface SpoolWriteOptions {
  maxEntries?: number;
}

/** Writes (or replaces) the record of notice's key. A new key is refused when the spool is full. */
export function writeSpoolRecord(
  dir: string, op: SpoolOp, notice: AttachmentNotice, reasons: string[], options: SpoolWriteOptions = {},
): SpoolWriteResult {
  const key: AttachmentKey = { network: notice.network, containerId: notice.containerId, ifname: notice.ifname };
  const file = spoolFileName(key);
  const record: SpoolRecord = {
    version: SPOOL_RECORD_VERSION, id: crypto().randomBytes(8).toString('hex'), op, key, notice, reasons,
    writtenAt: new Date().toISOString(),
  };
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return withLock(join(dir, LOCK_FILE), () => {
    const names = readdirSync(dir);
    removeOldTmpFiles(dir, names);
    const pending = names.filter(isRecordName);
    const max = options.maxEntries ?? MAX_SPOOL_ENTRIES;
    if (!pending.includes(file) && pending.length >= max) {
      return { written: false, reason: `spool ${dir} is full (${pending.length} of ${max} records)` };
    }
    const tmp = join(dir, `${TMP_PREFIX}${process.pid}-${record.id}`);
    writeFileSync(tmp, JSON.stringify(record) + '\n', { mode: 0o600 });
    renameSync(tmp, join(dir, file));
    return { written: true, file };
  });
}

/** Pending records, oldest first. Files that vanish or do not parse are skipped. */
export function readSpool(dir: string): SpoolEntry[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return [];
    throw err;
  }
  const entries: SpoolEntry[] = [];
  for (const file of names) {
    if (!isRecordName(file)) continue;
    const record = readRecord(join(dir, file));
    if (record) entries.push({ ...record, file });
  }
  return entries.sort((a, b) => a.writtenAt.localeCompare(b.writtenAt) || a.file.localeCompare(b.file));
}

/**
 * Removes a drained record. With an id (as read by readSpool) it is removed only if it was not
 * replaced since, so a DEL written while the daemon handled the old ADD is not lost.
 * Returns whether a file was removed.
 */
export function removeSpoolEntry(dir: string, entry: { key: AttachmentKey; id?: string }): boolean {
  // Fast path, without the lock: a record that is not in the spool now has nothing to remove
  // (records appear by atomic rename, so this read is as good as one taken under the lock).
  // The plugin calls this after every successful ADD/DEL, where the spool is mostly empty.
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false; // no spool yet
    throw err;
  }
  if (!names.some(isRecordName)) return false;
  const file = spoolFileName(entry.key);
  if (!names.includes(file)) return false;
  const path = join(dir, file);
  return withLock(join(dir, LOCK_FILE), () => {
    if (entry.id !== undefined) {
      const current = readRecord(path);
      if (!current || current.id !== entry.id) return false;
    }
    try {
      unlinkSync(path);
      return true;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return false;
      throw err;
    }
  });
}

function isRecordName(name: string): boolean {
  return name.endsWith(RECORD_SUFFIX) && !name.startsWith('.');
}

/** The record in a file; undefined when it vanished (drained or replaced) or is not a record of ours. */
function readRecord(path: string): SpoolRecord | undefined {
  let value: SpoolRecord;
  try {
    value = JSON.parse(readFileSync(path, 'utf8')) as SpoolRecord;
  } catch (err) {
    if (err instanceof SyntaxError || errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
  if (value?.version !== SPOOL_RECORD_VERSION || (value.op !== 'add' && value.op !== 'del') || !value.key) return undefined;
  return value;
}

// A plugin killed between write and rename leaves a tmp file; sweep old ones under the lock.
function removeOldTmpFiles(dir: string, names: string[]): void {
  const now = Date.now();
  for (const name of names) {
    if (!name.startsWith(TMP_PREFIX)) continue;
    try {
      if (now - statSync(join(dir, name)).mtimeMs > TMP_MAX_AGE_MS) unlinkSync(join(dir, name));
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err; // else: its owner renamed it meanwhile
    }
  }
}
