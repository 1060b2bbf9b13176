// CNI error codes (spec 1.1.0 "Error" section) and the error type every verb throws.
// The dispatcher turns a CniError into the JSON the runtime parses from stdout.

export const ERR_INCOMPATIBLE_VERSION = 1;
export const ERR_UNSUPPORTED_FIELD = 2;
export const ERR_UNKNOWN_CONTAINER = 3;
export const ERR_INVALID_ENV = 4;
export const ERR_IO = 5;
export const ERR_DECODING = 6;
export const ERR_INVALID_CONFIG = 7;
export const ERR_TRY_AGAIN_LATER = 11;
export const ERR_NOT_AVAILABLE = 50;
export const ERR_INTERNAL = 999;

// Codes 100+ are free for plugins; we use them for CHECK findings so a runtime (or a human
// reading its log) can tell "not attached" from "daemon does not know" without parsing text.
export const ERR_HOST_VETH = 100;
export const ERR_NOT_ATTACHED = 101;
export const ERR_DAEMON_UNAWARE = 102;

export class CniError extends Error {
  constructor(readonly code: number, msg: string, readonly details = '') {
    super(msg);
    this.name = 'CniError';
  }
}

export interface CniErrorJson {
  cniVersion: string;
  code: number;
  msg: string;
  details: string;
}

export function errorJson(err: CniError, cniVersion: string): CniErrorJson {
  return { cniVersion, code: err.code, msg: err.message, details: err.details };
}

/** Message of anything thrown, for logs and notices (never a stack trace). */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
