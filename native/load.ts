// What the TypeScript faces of the three native modules share: finding a built file and
// turning the modules' errors (which carry op, errno and code) into typed errors.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

/** An error of a native operation: names the operation and the errno ('ENODEV', ...). */
export class NativeError extends Error {
  constructor(
    message: string,
    readonly op: string,
    readonly errno: number,
    readonly code: string,
    /** the tail of libbpf's and the verifier's log, when the kernel refused a program */
    readonly log?: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** Is `e` an error of a native operation that failed with one of these errno codes? */
export function isErrno(e: unknown, ...codes: string[]): e is NativeError {
  return e instanceof NativeError && codes.includes(e.code);
}

/** Runs a native call, turning the errors the module throws into `Kind`. */
export function nativeCall<T>(Kind: new (message: string, op: string, errno: number, code: string, log?: string) => NativeError, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof NativeError) throw e; // typed already (a call of another module's face)
    const err = e as Error & { op?: unknown; errno?: unknown; code?: unknown; log?: unknown };
    if (err && typeof err.op === 'string' && typeof err.errno === 'number') {
      throw new Kind(err.message, err.op, err.errno, typeof err.code === 'string' ? err.code : 'EUNKNOWN', typeof err.log === 'string' ? err.log : undefined);
    }
    throw e;
  }
}

/** A built file: beside the bundle (dist/, the plugin's build dir), or in build/ when running from source. */
export function findBuilt(file: string, buildSubdir: string): string {
  const candidates = [join(__dirname, file), join(__dirname, '..', 'build', buildSubdir, file)];
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`${file} not found (looked in ${candidates.join(', ')}); run "node build.mjs" first`);
  return found;
}

/** A native module (.node) and the path it was loaded from. */
export interface LoadedModule<T> {
  module: T;
  path: string;
}

/** Loads a native module built by build.mjs (build/native/ from source). */
export function loadModule<T>(file: string): LoadedModule<T> {
  const path = findBuilt(file, 'native');
  return { module: createRequire(__filename)(path) as T, path };
}
