// CNI versions we speak and the Success result we echo back on ADD.
// A chained plugin that changes nothing must print prevResult unchanged, in the config's
// cniVersion (spec "ADD Success"); the only rewrite is the 0.x <-> 1.x shape change.
import { CniError, ERR_INCOMPATIBLE_VERSION, ERR_INVALID_CONFIG } from './errors';

/** 0.1.0/0.2.0 have no prevResult, so a chained plugin cannot serve them. */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const LATEST_VERSION: CniVersion = '1.1.0';

export function isSupportedVersion(v: unknown): v is CniVersion {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** Compares two supported versions by their place in the (ordered) supported list. */
export function versionAtLeast(v: CniVersion, min: CniVersion): boolean {
  return SUPPORTED_VERSIONS.indexOf(v) >= SUPPORTED_VERSIONS.indexOf(min);
}

/** 0.3.0-0.4.0 results carry ips[].version; 1.x results do not. */
function isLegacyResult(v: CniVersion): boolean {
  return !versionAtLeast(v, '1.0.0');
}

export type JsonObject = { [key: string]: unknown };

export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export interface ResultInterface {
  name?: string;
  sandbox?: string;
}
export interface ResultIp {
  address: string;
  interface?: number;
}

/** Checks the parts of prevResult we read; everything else passes through untouched. */
export function validatePrevResult(prev: unknown, field = 'prevResult'): JsonObject {
  if (!isObject(prev)) throw invalid(`${field} must be an object`);
  if (prev.cniVersion !== undefined && typeof prev.cniVersion !== 'string') {
    throw invalid(`${field}.cniVersion must be a string`);
  }
  if (prev.interfaces !== undefined) {
    if (!Array.isArray(prev.interfaces)) throw invalid(`${field}.interfaces must be an array`);
    prev.interfaces.forEach((iface, i) => {
      if (!isObject(iface)) throw invalid(`${field}.interfaces[${i}] must be an object`);
      if (typeof iface.name !== 'string') throw invalid(`${field}.interfaces[${i}].name must be a string`);
      if (iface.sandbox !== undefined && typeof iface.sandbox !== 'string') {
        throw invalid(`${field}.interfaces[${i}].sandbox must be a string`);
      }
    });
  }
  if (prev.ips !== undefined) {
    if (!Array.isArray(prev.ips)) throw invalid(`${field}.ips must be an array`);
    prev.ips.forEach((ip, i) => {
      if (!isObject(ip)) throw invalid(`${field}.ips[${i}] must be an object`);
      if (typeof ip.address !== 'string') throw invalid(`${field}.ips[${i}].address must be a string`);
      if (ip.interface !== undefined && !(Number.isInteger(ip.interface) && (ip.interface as number) >= 0)) {
        throw invalid(`${field}.ips[${i}].interface must be a non-negative integer`);
      }
    });
  }
  if (prev.ip4 !== undefined || prev.ip6 !== undefined) {
    // the 0.1/0.2 shape: no interfaces, cannot have come from a chain we can join
    throw new CniError(ERR_INCOMPATIBLE_VERSION, 'prevResult uses the pre-0.3.0 result format (ip4/ip6)',
      `plugin supports results of ${SUPPORTED_VERSIONS.join(', ')}`);
  }
  return prev;
}

function invalid(msg: string): CniError {
  return new CniError(ERR_INVALID_CONFIG, msg);
}

/**
 * prevResult in the config's version. Key order and unknown fields are kept; only cniVersion
 * changes, plus (across 0.x/1.x) ips[].version and the 1.1-only interface fields.
 */
export function resultAsVersion(prev: JsonObject, target: CniVersion): JsonObject {
  const source = prev.cniVersion === undefined ? target : prev.cniVersion;
  if (!isSupportedVersion(source)) {
    throw new CniError(ERR_INCOMPATIBLE_VERSION, `prevResult has unsupported cniVersion "${String(source)}"`,
      `plugin supports results of ${SUPPORTED_VERSIONS.join(', ')}`);
  }
  const out: JsonObject = {};
  if (prev.cniVersion === undefined) out.cniVersion = target;
  for (const [key, value] of Object.entries(prev)) {
    out[key] = key === 'cniVersion' ? target : value;
  }
  if (isLegacyResult(source) === isLegacyResult(target)) return out;

  if (Array.isArray(out.ips)) {
    out.ips = out.ips.map((ip) => (isObject(ip) ? (isLegacyResult(target) ? withIpVersion(ip) : withoutKeys(ip, ['version'])) : ip));
  }
  if (isLegacyResult(target) && Array.isArray(out.interfaces)) {
    // 0.x interfaces have only name, mac and sandbox
    out.interfaces = out.interfaces.map((iface) => (isObject(iface) ? withoutKeys(iface, ['mtu', 'socketPath', 'pciID']) : iface));
  }
  return out;
}

function withIpVersion(ip: JsonObject): JsonObject {
  if (ip.version !== undefined) return ip;
  const family = String(ip.address).includes(':') ? '6' : '4';
  return { version: family, ...ip };
}

function withoutKeys(obj: JsonObject, keys: string[]): JsonObject {
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(obj)) if (!keys.includes(key)) out[key] = value;
  return out;
}

/** Addresses (without prefix length) that belong to the container interface CNI_IFNAME. */
export function podIps(prev: JsonObject, ifname: string): string[] {
  const interfaces = Array.isArray(prev.interfaces) ? (prev.interfaces as ResultInterface[]) : [];
  const ips = Array.isArray(prev.ips) ? (prev.ips as ResultIp[]) : [];
  const out: string[] = [];
  for (const ip of ips) {
    if (ip.interface !== undefined) {
      // same rule as portmap: the index must name CNI_IFNAME inside a sandbox
      const iface = interfaces[ip.interface];
      if (!iface || iface.name !== ifname || !iface.sandbox) continue;
    }
    out.push(ip.address.split('/')[0]);
  }
  return out;
}

/** Names of interfaces prevResult places on the host (no sandbox): host veth, bridge, ifb, ... */
export function hostInterfaceNames(prev: JsonObject): string[] {
  const interfaces = Array.isArray(prev.interfaces) ? (prev.interfaces as ResultInterface[]) : [];
  return interfaces.filter((iface) => !iface.sandbox).map((iface) => iface.name ?? '');
}
