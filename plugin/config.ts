// The request: CNI_* environment and the stdin network configuration, validated by hand (the
// plugin runs once per pod, so no schema compiler at start-up) with errors that name the field.
import { DEFAULT_BPFFS_ROOT } from '../bpf/pins';
import { DEFAULT_SOCKET_PATH, DEFAULT_SPOOL_DIR } from '../protocol/endpoints';
import {
  CniError, ERR_DECODING, ERR_INCOMPATIBLE_VERSION, ERR_INVALID_CONFIG, ERR_INVALID_ENV, ERR_UNSUPPORTED_FIELD,
} from './errors';
import { NOTIFY_BUDGET_MS } from './notify';
import { type CniVersion, isObject, isSupportedVersion, type JsonObject, SUPPORTED_VERSIONS } from './result';

export const COMMANDS = ['ADD', 'DEL', 'CHECK', 'VERSION', 'STATUS', 'GC'] as const;
export type Command = (typeof COMMANDS)[number];


export interface CniEnv {
  command: Command;
  containerId: string;
  netns: string;
  ifname: string;
  args: string;
  path: string;
}

export type FailurePolicy = 'open' | 'closed';

export interface PluginConfig {
  cniVersion: CniVersion;
  name: string;
  type: string;
  /** open (default): telemetry problems never fail ADD. closed: they fail ADD with code 11. */
  failurePolicy: FailurePolicy;
  socketPath: string;
  spoolDir: string;
  bpffsRoot: string;
  /** CHECK also asks the daemon whether it knows the attachment. */
  checkDaemon: boolean;
  /** The whole budget of one call to the daemon (connect, send, answer), ms. */
  notifyTimeoutMs: number;
  /** Log file (JSON lines); stderr when absent. */
  logFile?: string;
  prevResult?: unknown;
  /** The whole stdin object, for GC's attachment lists. */
  raw: JsonObject;
}

// Which variables each verb needs (spec "Parameters", plus CNI_PATH as skel requires it).
const REQUIRED_ENV: Record<Command, string[]> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_PATH'],
  GC: ['CNI_PATH'],
  STATUS: ['CNI_PATH'],
  VERSION: [],
};

/** Container ids and network names: the pattern libcni validates with. */
const ID_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const MAX_IFNAME_LENGTH = 15;

export function commandFromEnv(env: NodeJS.ProcessEnv): Command {
  const command = env.CNI_COMMAND ?? '';
  if (command === '') throw new CniError(ERR_INVALID_ENV, 'required env variables [CNI_COMMAND] missing');
  if (!(COMMANDS as readonly string[]).includes(command)) {
    throw new CniError(ERR_INVALID_ENV, `unknown CNI_COMMAND: ${command}`,
      `CNI_COMMAND must be one of ${COMMANDS.join(', ')}`);
  }
  return command as Command;
}

export function parseEnv(env: NodeJS.ProcessEnv): CniEnv {
  const command = commandFromEnv(env);
  const missing = REQUIRED_ENV[command].filter((name) => !env[name]);
  if (missing.length > 0) {
    throw new CniError(ERR_INVALID_ENV, `required env variables [${missing.join(',')}] missing`,
      `CNI_COMMAND=${command} needs ${['CNI_COMMAND', ...REQUIRED_ENV[command]].join(', ')}`);
  }
  const parsed: CniEnv = {
    command,
    containerId: env.CNI_CONTAINERID ?? '',
    netns: env.CNI_NETNS ?? '',
    ifname: env.CNI_IFNAME ?? '',
    args: env.CNI_ARGS ?? '',
    path: env.CNI_PATH ?? '',
  };
  if (command === 'ADD' || command === 'CHECK' || command === 'DEL') {
    validateContainerId(parsed.containerId);
    validateIfname(parsed.ifname);
  }
  return parsed;
}

// Emptiness is already caught as a missing variable; this is the character check.
function validateContainerId(id: string): void {
  if (!ID_PATTERN.test(id)) {
    throw new CniError(ERR_INVALID_ENV, 'invalid characters in CNI_CONTAINERID', id);
  }
}

function validateIfname(ifname: string): void {
  if (ifname === '') throw new CniError(ERR_INVALID_ENV, 'CNI_IFNAME is empty');
  if (ifname.length > MAX_IFNAME_LENGTH) {
    throw new CniError(ERR_INVALID_ENV, 'CNI_IFNAME is too long',
      `interface name "${ifname}" has ${ifname.length} characters, at most ${MAX_IFNAME_LENGTH} are allowed`);
  }
  if (ifname === '.' || ifname === '..') throw new CniError(ERR_INVALID_ENV, 'CNI_IFNAME is . or ..', ifname);
  if (/[/:\s]/.test(ifname)) {
    throw new CniError(ERR_INVALID_ENV, 'CNI_IFNAME contains / or : or whitespace', JSON.stringify(ifname));
  }
}

/** stdin as JSON: code 6 when it is not JSON, 7 when it is not an object. */
export function parseStdin(stdin: string): JsonObject {
  let value: unknown;
  try {
    value = JSON.parse(stdin);
  } catch (err) {
    throw new CniError(ERR_DECODING, 'error decoding network config from stdin', (err as Error).message);
  }
  if (!isObject(value)) throw new CniError(ERR_INVALID_CONFIG, 'network config must be a JSON object');
  return value;
}

/** The config's cniVersion, or code 1 naming what we got and what we support. */
export function configVersion(raw: JsonObject): CniVersion {
  const version = raw.cniVersion;
  if (isSupportedVersion(version)) return version;
  const shown = version === undefined ? 'missing (taken as 0.2.0)' : JSON.stringify(version);
  throw new CniError(ERR_INCOMPATIBLE_VERSION, 'incompatible CNI versions',
    `config is ${shown}, plugin supports [${SUPPORTED_VERSIONS.join(' ')}]`);
}

/** Validates the network configuration in the order skel does: name, version, then the rest. */
export function parseConfig(raw: JsonObject): PluginConfig {
  if (raw.name === undefined || raw.name === '') throw new CniError(ERR_INVALID_CONFIG, 'missing network name', 'field "name"');
  if (typeof raw.name !== 'string') throw new CniError(ERR_INVALID_CONFIG, 'field "name" must be a string', JSON.stringify(raw.name));
  if (!ID_PATTERN.test(raw.name)) throw new CniError(ERR_INVALID_CONFIG, 'invalid characters in network name', raw.name);
  const cniVersion = configVersion(raw);
  if (raw.type === undefined || raw.type === '') throw new CniError(ERR_INVALID_CONFIG, 'missing plugin type', 'field "type"');
  if (typeof raw.type !== 'string') throw new CniError(ERR_INVALID_CONFIG, 'field "type" must be a string', JSON.stringify(raw.type));

  return {
    cniVersion,
    name: raw.name,
    type: raw.type,
    failurePolicy: failurePolicy(raw.failurePolicy),
    socketPath: absolutePath(raw, 'socketPath') ?? DEFAULT_SOCKET_PATH,
    spoolDir: absolutePath(raw, 'spoolDir') ?? DEFAULT_SPOOL_DIR,
    bpffsRoot: absolutePath(raw, 'bpffsRoot') ?? DEFAULT_BPFFS_ROOT,
    checkDaemon: optionalBoolean(raw, 'checkDaemon') ?? false,
    notifyTimeoutMs: notifyTimeoutMs(raw.notifyTimeoutMs),
    logFile: absolutePath(raw, 'logFile'),
    prevResult: raw.prevResult,
    raw,
  };
}

// Our options: a wrong type is an invalid config (7); a well-typed value we do not implement
// is an unsupported field (2), whose message must carry the key and the value.
function failurePolicy(value: unknown): FailurePolicy {
  if (value === undefined) return 'open';
  if (typeof value !== 'string') {
    throw new CniError(ERR_INVALID_CONFIG, 'field "failurePolicy" must be a string', `got ${JSON.stringify(value)}`);
  }
  if (value !== 'open' && value !== 'closed') {
    throw new CniError(ERR_UNSUPPORTED_FIELD, `unsupported value for field "failurePolicy": ${JSON.stringify(value)}`,
      'failurePolicy must be "open" or "closed"');
  }
  return value;
}

/** How long a call to the daemon may take: short by default (a pod waits for it), bounded both ways. */
function notifyTimeoutMs(value: unknown): number {
  if (value === undefined) return NOTIFY_BUDGET_MS;
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new CniError(ERR_INVALID_CONFIG, 'field "notifyTimeoutMs" must be an integer', `got ${JSON.stringify(value)}`);
  }
  if (value < 100 || value > 30_000) {
    throw new CniError(ERR_UNSUPPORTED_FIELD, `unsupported value for field "notifyTimeoutMs": ${value}`, 'notifyTimeoutMs must be between 100 and 30000');
  }
  return value;
}

function absolutePath(raw: JsonObject, key: string): string | undefined {
  const value = raw[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value === '') {
    throw new CniError(ERR_INVALID_CONFIG, `field "${key}" must be a non-empty string`, `got ${JSON.stringify(value)}`);
  }
  if (!value.startsWith('/')) {
    throw new CniError(ERR_INVALID_CONFIG, `field "${key}" must be an absolute path`, `got ${JSON.stringify(value)}`);
  }
  return value;
}

function optionalBoolean(raw: JsonObject, key: string): boolean | undefined {
  const value = raw[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') {
    throw new CniError(ERR_INVALID_CONFIG, `field "${key}" must be a boolean`, `got ${JSON.stringify(value)}`);
  }
  return value;
}

/** Pod identity from CNI_ARGS ("K=V;K=V"). We only read keys, so unknown ones never fail the call. */
export interface PodIdentity {
  podNamespace?: string;
  podName?: string;
  podUid?: string;
}

export function podIdentity(cniArgs: string): PodIdentity {
  const pairs = new Map<string, string>();
  for (const part of cniArgs.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue; // malformed pairs are ignored: the args are informational for us
    pairs.set(part.slice(0, eq), part.slice(eq + 1));
  }
  const identity: PodIdentity = {};
  if (pairs.get('K8S_POD_NAMESPACE')) identity.podNamespace = pairs.get('K8S_POD_NAMESPACE');
  if (pairs.get('K8S_POD_NAME')) identity.podName = pairs.get('K8S_POD_NAME');
  if (pairs.get('K8S_POD_UID')) identity.podUid = pairs.get('K8S_POD_UID');
  return identity;
}
