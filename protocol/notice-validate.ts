// Validation of an attachment notice body, for the daemon (the one part of the protocol that
// loads ajv; the plugin never imports it).
import Ajv from 'ajv';
import { NOTICE_SCHEMA, type AttachmentNotice } from './notice';

const validateNotice = new Ajv({ allErrors: true, strict: true }).compile<AttachmentNotice>(NOTICE_SCHEMA);

/** A notice body that is not JSON or does not match the schema; the message names the field. */
export class NoticeError extends Error {}

export function parseNotice(body: string): AttachmentNotice {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (e) {
    throw new NoticeError(`body is not JSON: ${(e as Error).message}`);
  }
  if (!validateNotice(value)) {
    const err = validateNotice.errors![0];
    const params = err.params as { missingProperty?: string; additionalProperty?: string };
    const field = err.instancePath ? err.instancePath.slice(1) : params.missingProperty ?? params.additionalProperty ?? '(body)';
    throw new NoticeError(`invalid attachment notice: ${field}: ${err.message}`);
  }
  return value;
}
