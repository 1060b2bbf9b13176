// Parsers from text (a flag, an environment variable, a file string) to typed values. Each
// returns undefined or throws a plain message; the caller adds where the value came from.
import ipaddr from 'ipaddr.js';

export const DEFAULT_COLLECTOR_PORT = 32766;

export interface Endpoint {
  /** IPv4/IPv6 literal or host name; undefined only for a listen address meaning "all" */
  host?: string;
  port: number;
}

export class ValueError extends Error {}

export function parseDecimal(text: string): number {
  if (!/^\d+$/.test(text.trim())) throw new ValueError('is not a whole number');
  return Number(text.trim());
}

/**
 * The switch id as the reference reads it: a decimal u32, or a dotted IPv4 address turned into a
 * u32 in network (big-endian) order, so 192.168.99.20 becomes 3232260884.
 */
export function parseSwitchId(text: string): number {
  const t = text.trim();
  if (/^\d+$/.test(t)) return Number(t); // range checked by the schema
  const v4 = ipv4Bytes(t);
  if (v4) return ((v4[0] << 24) | (v4[1] << 16) | (v4[2] << 8) | v4[3]) >>> 0;
  throw new ValueError('is not a switch id; use a decimal number (0-4294967295) or an IPv4 address');
}

function ipv4Bytes(t: string): number[] | undefined {
  if (ipaddr.IPv4.isValidFourPartDecimal(t)) return ipaddr.IPv4.parse(t).toByteArray();
  // Go's net.ParseIP(..).To4() also takes an IPv4-mapped IPv6 address.
  if (t.includes(':') && !t.includes('%') && ipaddr.IPv6.isValid(t)) {
    const v6 = ipaddr.IPv6.parse(t);
    if (v6.isIPv4MappedAddress()) return v6.toIPv4Address().toByteArray();
  }
  return undefined;
}

function isHostName(host: string): boolean {
  return host.length <= 253 && host.split('.').every((label) => /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(label));
}

function checkHost(host: string): string {
  if (host.includes(':')) {
    if (host.includes('%') || !ipaddr.IPv6.isValid(host)) throw new ValueError('has an invalid IPv6 address');
    return host;
  }
  if (/^[\d.]+$/.test(host)) {
    if (!ipaddr.IPv4.isValidFourPartDecimal(host)) throw new ValueError('has an invalid IPv4 address');
    return host;
  }
  if (!isHostName(host)) throw new ValueError('has an invalid host name');
  return host;
}

/**
 * "host:port", "[v6]:port", or a bare host/IPv6 address with `defaultPort`. With `hostOptional`,
 * ":port" means every local address (for listen addresses).
 */
export function parseEndpoint(text: string, defaultPort?: number, hostOptional = false): Endpoint {
  const t = text.trim();
  let host: string;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(t);
  if (bracketed) {
    host = bracketed[1];
    portText = bracketed[2];
    if (!host.includes(':')) throw new ValueError('has brackets around something that is not an IPv6 address');
  } else if ((t.match(/:/g) ?? []).length > 1) {
    host = t; // a bare IPv6 address; a port needs brackets
  } else {
    const colon = t.indexOf(':');
    host = colon < 0 ? t : t.slice(0, colon);
    portText = colon < 0 ? undefined : t.slice(colon + 1);
  }
  let port: number;
  if (portText === undefined) {
    if (defaultPort === undefined) throw new ValueError('has no port; write it as ADDR:PORT');
    port = defaultPort;
  } else {
    if (!/^\d{1,5}$/.test(portText)) throw new ValueError('has an invalid port');
    port = Number(portText);
    if (port < 1 || port > 65535) throw new ValueError('has a port out of range (1-65535)');
  }
  if (host === '') {
    if (!hostOptional) throw new ValueError('has no host');
    return { port };
  }
  return { host: checkHost(host), port };
}

/** One or more collectors, comma-separated; a collector without a port gets 32766. */
export function parseCollectors(text: string): Endpoint[] {
  const parts = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (parts.length === 0) throw new ValueError('names no collector');
  return parts.map((p) => {
    try {
      return parseEndpoint(p, DEFAULT_COLLECTOR_PORT);
    } catch (err) {
      if (parts.length === 1) throw err;
      throw new ValueError(`contains ${JSON.stringify(p)}, which ${(err as Error).message}`);
    }
  });
}
