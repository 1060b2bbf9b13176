// The CNI contract of int-host-reporter, verb by verb (spec 0.3.0-1.1.0). It reads like the
// spec: parse the request, then cmdAdd / cmdDel / cmdCheck / cmdStatus / cmdGc.
//
// Decisions (see also the README):
// - failurePolicy "open" (default): ADD always prints prevResult and exits 0; a failed attach or
//   notify is written to the spool for the daemon to repair. "closed": the same failures make
//   ADD fail with code 11 (try again later), so the runtime retries the sandbox.
// - DEL never fails once the request itself is valid: whatever could not be done (detach,
//   telling the daemon) is spooled for the daemon.
// - STATUS: with failurePolicy open the plugin can always serve ADD, so it exits 0 without
//   probing; with closed it answers code 50 when nothing accepts connections on the daemon socket.
// - CHECK reports what it finds whatever the policy: it is diagnostic, not on the pod's path.
import type { AttachmentNotice } from '../protocol/notice';
import {
  commandFromEnv, type CniEnv, parseConfig, parseEnv, parseStdin, type PluginConfig, podIdentity,
} from './config';
import type { AttachmentKey, DatapathOptions, HostVeth, PluginDatapath } from './datapath';
import { keyText, sameKey } from './datapath';
import {
  CniError, describeError, ERR_DAEMON_UNAWARE, ERR_HOST_VETH, ERR_INCOMPATIBLE_VERSION, ERR_INTERNAL,
  ERR_INVALID_CONFIG, ERR_NOT_ATTACHED, ERR_NOT_AVAILABLE, ERR_TRY_AGAIN_LATER, errorJson,
} from './errors';
import { createLogger, type Logger } from './log';
import { notifyDaemon, probeSocket, queryAttachment } from './notify';
import {
  type CniVersion, hostInterfaceNames, isObject, isSupportedVersion, type JsonObject, LATEST_VERSION, podIps,
  resultAsVersion, SUPPORTED_VERSIONS, validatePrevResult, versionAtLeast,
} from './result';
import { readSpool, removeSpoolEntry, writeSpoolRecord, type SpoolOp } from '../protocol/spool';

export interface PluginRequest {
  env: NodeJS.ProcessEnv;
  stdin: string;
}

export interface PluginOutcome {
  /** exactly what goes to stdout (a result, an error JSON, or nothing) */
  stdout: string;
  exitCode: number;
}

export interface PluginDeps {
  /** Builds the datapath; called at most once per run, and only by verbs that need it. */
  openDatapath(options: DatapathOptions): Promise<PluginDatapath>;
}

interface Call {
  env: CniEnv;
  conf: PluginConfig;
  log: Logger;
  datapath(): Promise<PluginDatapath>;
}

export async function runPlugin(request: PluginRequest, deps: PluginDeps): Promise<PluginOutcome> {
  let errorVersion: CniVersion = LATEST_VERSION;
  try {
    if (commandFromEnv(request.env) === 'VERSION') return cmdVersion(request.stdin);
    const env = parseEnv(request.env);
    const raw = parseStdin(request.stdin);
    if (isSupportedVersion(raw.cniVersion)) errorVersion = raw.cniVersion;
    const conf = parseConfig(raw);
    const log = createLogger({ command: env.command, network: conf.name, containerId: env.containerId || undefined, ifname: env.ifname || undefined }, conf.logFile);
    let opened: Promise<PluginDatapath> | undefined;
    const call: Call = { env, conf, log, datapath: () => (opened ??= deps.openDatapath({ bpffsRoot: conf.bpffsRoot })) };
    switch (env.command) {
      case 'ADD': return await cmdAdd(call);
      case 'DEL': return await cmdDel(call);
      case 'CHECK': return await cmdCheck(call);
      case 'STATUS': return await cmdStatus(call);
      case 'GC': return await cmdGc(call);
    }
    throw new CniError(ERR_INTERNAL, `unhandled CNI_COMMAND ${env.command}`);
  } catch (err) {
    const cniError = err instanceof CniError ? err : new CniError(ERR_INTERNAL, 'int-host-reporter internal error', describeError(err));
    return { stdout: JSON.stringify(errorJson(cniError, errorVersion)) + '\n', exitCode: 1 };
  }
}

const success = (stdout = ''): PluginOutcome => ({ stdout, exitCode: 0 });

// ---- VERSION ------------------------------------------------------------------------------
// Answer in the version the runtime asked with; never validate the config (stdin has no name).
function cmdVersion(stdin: string): PluginOutcome {
  let asked: unknown;
  try {
    asked = (JSON.parse(stdin) as JsonObject | null)?.cniVersion;
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e;
    asked = undefined; // not JSON: answer in the latest version
  }
  const cniVersion = typeof asked === 'string' && asked !== '' ? asked : LATEST_VERSION;
  return success(JSON.stringify({ cniVersion, supportedVersions: SUPPORTED_VERSIONS }) + '\n');
}

// ---- ADD ----------------------------------------------------------------------------------
async function cmdAdd(call: Call): Promise<PluginOutcome> {
  const { env, conf, log } = call;
  if (conf.prevResult === undefined || conf.prevResult === null) {
    throw new CniError(ERR_INVALID_CONFIG, 'must be called as a chained plugin', 'prevResult is missing from the network config');
  }
  const prevResult = validatePrevResult(conf.prevResult);
  const result = resultAsVersion(prevResult, conf.cniVersion);

  const key = attachmentKey(call);
  const notice: AttachmentNotice = {
    network: key.network, containerId: key.containerId, ifname: key.ifname, netns: env.netns,
    ...podIdentity(env.args), ips: podIps(prevResult, env.ifname),
  };
  const failures: string[] = [];
  try {
    const datapath = await call.datapath();
    const veth = await datapath.findHostVeth(env.netns, env.ifname);
    notice.hostIfname = veth.ifname;
    notice.hostIfindex = veth.ifindex;
    const mismatch = hostVethMismatch(veth, prevResult);
    if (mismatch) throw new Error(mismatch);
    const attached = await datapath.attach(veth.ifindex, key);
    notice.mode = attached.mode;
    notice.programIds = attached.programIds;
    notice.attachedAt = new Date().toISOString();
  } catch (err) {
    notice.error = `attach failed: ${describeError(err)}`;
    failures.push(notice.error);
  }

  const told = await notifyDaemon(conf.socketPath, 'add', notice, conf.notifyTimeoutMs);
  if (!told.ok) failures.push(`notify failed: ${told.error}`);

  if (failures.length === 0) {
    forgetSpooled(call, key); // an older record for this key is obsolete now
    return success(JSON.stringify(result) + '\n');
  }
  if (conf.failurePolicy === 'closed') {
    log.log('error', 'telemetry setup failed; failurePolicy is closed', { failures });
    throw new CniError(ERR_TRY_AGAIN_LATER, 'int-host-reporter could not set up telemetry for the pod', failures.join('; '));
  }
  log.log('warn', 'telemetry setup incomplete; pod networking unaffected (failurePolicy open)', { failures });
  spool(call, 'add', notice, failures);
  return success(JSON.stringify(result) + '\n');
}

/**
 * Why the host peer found through the netns is not the pod's host veth, or undefined.
 * Like the bandwidth plugin we cross-check its name with prevResult's host-side interfaces,
 * when prevResult lists any (not every interface plugin reports its host veth).
 */
function hostVethMismatch(veth: HostVeth, prevResult: JsonObject): string | undefined {
  if (veth.kind !== 'veth') return `peer ${veth.ifname} (ifindex ${veth.ifindex}) is a ${veth.kind || 'non-veth'} link, not a veth`;
  const hostNames = hostInterfaceNames(prevResult);
  if (hostNames.length > 0 && !hostNames.includes(veth.ifname)) {
    return `host veth ${veth.ifname} (ifindex ${veth.ifindex}) is not among prevResult's host interfaces [${hostNames.join(', ')}]`;
  }
  return undefined;
}

// ---- DEL ----------------------------------------------------------------------------------
// prevResult and the netns are often gone here (0.3.x, repeated DEL, containerd after exit),
// so DEL works from the key alone and never fails.
async function cmdDel(call: Call): Promise<PluginOutcome> {
  try {
    const notice: AttachmentNotice = {
      network: call.conf.name, containerId: call.env.containerId, ifname: call.env.ifname,
      ...(call.env.netns ? { netns: call.env.netns } : {}), ...podIdentity(call.env.args),
    };
    await releaseAttachment(call, notice, Date.now() + call.conf.notifyTimeoutMs);
  } catch (err) {
    call.log.log('error', 'DEL cleanup failed; returning success anyway', { error: describeError(err) });
  }
  return success();
}

/** Detach and tell the daemon; whatever fails goes to the spool as a "del" record. */
async function releaseAttachment(call: Call, notice: AttachmentNotice, deadline: number): Promise<void> {
  const key: AttachmentKey = { network: notice.network, containerId: notice.containerId, ifname: notice.ifname };
  const failures: string[] = [];
  try {
    const datapath = await call.datapath();
    await datapath.detach(key);
  } catch (err) {
    notice.error = `detach failed: ${describeError(err)}`;
    failures.push(notice.error);
  }
  const budget = deadline - Date.now();
  const told = budget > 0
    ? await notifyDaemon(call.conf.socketPath, 'del', notice, budget)
    : { ok: false as const, error: 'notify budget spent' };
  if (!told.ok) failures.push(`notify failed: ${told.error}`);

  if (failures.length === 0) {
    forgetSpooled(call, key);
    return;
  }
  call.log.log('warn', 'attachment cleanup left to the daemon', { attachment: keyText(key), failures });
  spool(call, 'del', notice, failures);
}

// ---- CHECK --------------------------------------------------------------------------------
async function cmdCheck(call: Call): Promise<PluginOutcome> {
  const { env, conf } = call;
  requireVersion(conf.cniVersion, '0.4.0', 'CHECK');
  if (conf.prevResult === undefined || conf.prevResult === null) {
    throw new CniError(ERR_INVALID_CONFIG, 'must be called as a chained plugin', 'prevResult is missing from the network config');
  }
  const prevResult = validatePrevResult(conf.prevResult);
  const key = attachmentKey(call);

  let veth: HostVeth;
  const datapath = await openForCheck(call);
  try {
    veth = await datapath.findHostVeth(env.netns, env.ifname);
  } catch (err) {
    throw new CniError(ERR_HOST_VETH, 'cannot find the host veth of the pod interface', `${env.ifname} in ${env.netns}: ${describeError(err)}`);
  }
  const mismatch = hostVethMismatch(veth, prevResult);
  if (mismatch) throw new CniError(ERR_HOST_VETH, 'host veth does not match prevResult', mismatch);

  let attached: boolean;
  try {
    attached = await datapath.isAttached(veth.ifindex, key);
  } catch (err) {
    throw new CniError(ERR_NOT_ATTACHED, 'cannot tell whether int-host-reporter programs are attached', describeError(err));
  }
  if (!attached) {
    throw new CniError(ERR_NOT_ATTACHED, 'int-host-reporter programs are not attached to the host veth',
      `${veth.ifname} (ifindex ${veth.ifindex}) for ${keyText(key)}`);
  }

  if (conf.checkDaemon) {
    const known = await queryAttachment(conf.socketPath, key, conf.notifyTimeoutMs);
    if (!known.ok) throw new CniError(ERR_DAEMON_UNAWARE, 'cannot ask the int-host-reporter daemon about the attachment', known.error);
    if (!known.known) throw new CniError(ERR_DAEMON_UNAWARE, 'the int-host-reporter daemon does not know the attachment', keyText(key));
  }
  return success();
}

async function openForCheck(call: Call): Promise<PluginDatapath> {
  try {
    return await call.datapath();
  } catch (err) {
    throw new CniError(ERR_INTERNAL, 'cannot open the int-host-reporter datapath', describeError(err));
  }
}

// ---- STATUS -------------------------------------------------------------------------------
async function cmdStatus(call: Call): Promise<PluginOutcome> {
  const { conf } = call;
  requireVersion(conf.cniVersion, '1.1.0', 'STATUS');
  // Open: ADD succeeds (and spools) without the daemon, so we are ready by definition.
  if (conf.failurePolicy === 'open') return success();
  const probe = await probeSocket(conf.socketPath, conf.notifyTimeoutMs);
  if (!probe.ok) {
    throw new CniError(ERR_NOT_AVAILABLE, 'int-host-reporter daemon is not reachable',
      `${probe.error}; with failurePolicy "closed" ADD would fail`);
  }
  return success();
}

// ---- GC -----------------------------------------------------------------------------------
// Removes our attachments (and pending spool repairs) that the runtime no longer lists.
async function cmdGc(call: Call): Promise<PluginOutcome> {
  const { conf, log } = call;
  requireVersion(conf.cniVersion, '1.1.0', 'GC');
  const valid = validAttachments(conf.raw);
  if (valid === undefined) {
    log.log('warn', 'GC without "cni.dev/valid-attachments" or "cni.dev/attachments"; nothing removed');
    return success();
  }

  const held: AttachmentKey[] = [];
  try {
    held.push(...await (await call.datapath()).listAttachments(conf.name));
  } catch (err) {
    log.log('warn', 'cannot list attachments for GC; only spooled ones are considered', { error: describeError(err) });
  }
  try {
    held.push(...readSpool(conf.spoolDir).map((entry) => entry.key).filter((key) => key.network === conf.name));
  } catch (err) {
    log.log('warn', 'cannot read the spool for GC', { error: describeError(err) });
  }

  const stale: AttachmentKey[] = [];
  for (const key of held) {
    const isValid = valid.some((v) => v.containerID === key.containerId && v.ifname === key.ifname);
    if (!isValid && !stale.some((s) => sameKey(s, key))) stale.push(key);
  }
  const deadline = Date.now() + call.conf.notifyTimeoutMs; // one notify budget for the whole sweep
  for (const key of stale) {
    try {
      await releaseAttachment(call, { network: key.network, containerId: key.containerId, ifname: key.ifname }, deadline);
    } catch (err) {
      log.log('warn', 'GC could not release an attachment', { attachment: keyText(key), error: describeError(err) });
    }
  }
  if (stale.length > 0) log.log('info', 'GC released stale attachments', { released: stale.map(keyText) });
  return success();
}

interface GcAttachment {
  containerID: string;
  ifname: string;
}

const GC_KEYS = ['cni.dev/valid-attachments', 'cni.dev/attachments'] as const;

/** Union of both keys (libcni sends both; the 1.1.0 tag named the second). undefined: neither sent. */
function validAttachments(raw: JsonObject): GcAttachment[] | undefined {
  let found = false;
  const out: GcAttachment[] = [];
  for (const field of GC_KEYS) {
    const list = raw[field];
    if (list === undefined) continue;
    found = true;
    if (list === null) continue; // a Go nil slice: no valid attachments
    if (!Array.isArray(list)) throw new CniError(ERR_INVALID_CONFIG, `field "${field}" must be an array`, `got ${JSON.stringify(list)}`);
    list.forEach((item, i) => {
      if (!isObject(item) || typeof item.containerID !== 'string' || typeof item.ifname !== 'string') {
        throw new CniError(ERR_INVALID_CONFIG, `field "${field}"[${i}] must be {"containerID": string, "ifname": string}`, JSON.stringify(item));
      }
      out.push({ containerID: item.containerID, ifname: item.ifname });
    });
  }
  return found ? out : undefined;
}

// ---- helpers ------------------------------------------------------------------------------
function attachmentKey(call: Call): AttachmentKey {
  return { network: call.conf.name, containerId: call.env.containerId, ifname: call.env.ifname };
}

function requireVersion(version: CniVersion, min: CniVersion, verb: string): void {
  if (!versionAtLeast(version, min)) {
    throw new CniError(ERR_INCOMPATIBLE_VERSION, `config version does not allow ${verb}`,
      `config is "${version}", ${verb} needs cniVersion ${min} or later`);
  }
}

// Spool failures are logged, never raised: the spool is itself the fallback.
function spool(call: Call, op: SpoolOp, notice: AttachmentNotice, reasons: string[]): void {
  try {
    const written = writeSpoolRecord(call.conf.spoolDir, op, notice, reasons);
    if (!written.written) call.log.log('error', 'spool record dropped', { reason: written.reason });
  } catch (err) {
    call.log.log('error', 'cannot write the spool', { spoolDir: call.conf.spoolDir, error: describeError(err) });
  }
}

function forgetSpooled(call: Call, key: AttachmentKey): void {
  try {
    removeSpoolEntry(call.conf.spoolDir, { key });
  } catch (err) {
    call.log.log('warn', 'cannot remove an obsolete spool record', { error: describeError(err) });
  }
}
