// The attachment notice: what the plugin tells the daemon after ADD (POST /v1/cni/add) and DEL
// (POST /v1/cni/del), and what its spool records carry. The schema is the definition; the type is
// derived from it, and the daemon validates with it (notice-validate.ts, which alone loads ajv: the
// plugin imports this file for types only and stays free of it).
import type { FromSchema } from './schema-type';

export const NOTICE_SCHEMA = {
  type: 'object',
  required: ['network', 'containerId', 'ifname'],
  additionalProperties: false,
  properties: {
    network: { type: 'string', minLength: 1 },
    containerId: { type: 'string', minLength: 1 },
    ifname: { type: 'string', minLength: 1, maxLength: 15 },
    netns: { type: 'string' },
    hostIfname: { type: 'string' },
    hostIfindex: { type: 'integer', minimum: 1 },
    podNamespace: { type: 'string' },
    podName: { type: 'string' },
    podUid: { type: 'string' },
    ips: { type: 'array', items: { type: 'string' } },
    mode: { enum: ['tcx', 'tc'], description: 'how the programs are attached; absent when the attach failed' },
    programIds: { type: 'array', items: { type: 'integer' } },
    attachedAt: { type: 'string', description: 'ISO 8601' },
    error: { type: 'string', description: 'why the attach failed, when it did (the daemon repairs it)' },
  },
} as const;

export type AttachmentNotice = FromSchema<typeof NOTICE_SCHEMA>;

/** What identifies a CNI attachment (and names its pins and its spool record). */
export type AttachmentKey = Pick<AttachmentNotice, 'network' | 'containerId' | 'ifname'>;
