// JSON Schemas (draft-07, no custom keywords: standalone-friendly) for the config file and for
// the merged configuration. The file schema checks shapes and names; the config schema holds the
// limits, so a value out of range is caught whichever source it came from.
import Ajv from 'ajv';
import { SAMPLE_BYTES_MAX, SAMPLE_BYTES_MIN } from '../../bpf/events';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const endpoint = {
  type: 'object',
  additionalProperties: false,
  required: ['port'],
  properties: {
    host: { type: 'string', minLength: 1 },
    port: { type: 'integer', minimum: 1, maximum: 65535 },
  },
} as const;

/** The merged configuration (the typed Config, before defaults are reported). */
export const configSchema = {
  $id: 'int-host-reporter/config',
  type: 'object',
  additionalProperties: false,
  required: ['collectors', 'logLevel', 'socketPath', 'bpffsPath', 'reportIntervalMs', 'reconcileIntervalMs', 'latencyQuantumNs', 'sampleBytes', 'nodeName', 'dropDetection'],
  properties: {
    configFile: { type: 'string' },
    collectors: { type: 'array', minItems: 1, items: { ...endpoint, required: ['host', 'port'] } },
    switchId: { type: 'integer', minimum: 0, maximum: 4294967295 },
    // Linux's rules (dev_valid_name): 1-15 bytes, no '/', ':' or white space, not "." or "..".
    dataInterface: { type: 'string', pattern: '^(?!\\.\\.?$)[^\\s/:]{1,15}$' },
    watchlistConf: { type: 'string', minLength: 1 },
    logLevel: { enum: LOG_LEVELS },
    // sun_path holds 108 bytes with the terminating NUL.
    socketPath: { type: 'string', pattern: '^/', maxLength: 107 },
    bpffsPath: { type: 'string', pattern: '^/' },
    reportIntervalMs: { type: 'integer', minimum: 0, maximum: 3600000 },
    // below 100 ms the passes (a readdir and a link query per attachment) would load the node
    reconcileIntervalMs: { type: 'integer', minimum: 100, maximum: 3600000 },
    latencyQuantumNs: { type: 'integer', minimum: 1, maximum: 2147483648 },
    // enough for Ethernet + IPv6 + a TCP header with options; at most what one perf record carries well
    sampleBytes: { type: 'integer', minimum: SAMPLE_BYTES_MIN, maximum: SAMPLE_BYTES_MAX },
    dropDetection: { enum: ['auto', 'tracepoint', 'aging', 'off'] },
    nodeName: { type: 'string', minLength: 1, maxLength: 253 },
    metricsListen: endpoint,
    healthListen: endpoint,
    cniInstallerStatus: { type: 'string', pattern: '^/' },
    cni: { type: 'string' },
  },
} as const;

/** The config file: YAML or JSON, keys spelled like the long flags. */
export const configFileSchema = {
  $id: 'int-host-reporter/config-file',
  type: 'object',
  additionalProperties: false,
  properties: {
    collector: { type: ['string', 'array'], items: { type: 'string' }, minItems: 1 },
    'switch-id': { type: ['integer', 'string'] },
    'data-interface': { type: 'string' },
    'watchlist-conf': { type: 'string' },
    'log-level': { type: 'string' },
    socket: { type: 'string' },
    bpffs: { type: 'string' },
    'report-interval-ms': { type: 'integer' },
    'reconcile-interval-ms': { type: 'integer' },
    'latency-quantum-ns': { type: 'integer' },
    'sample-bytes': { type: 'integer' },
    'node-name': { type: 'string' },
    'metrics-listen': { type: 'string' },
    'health-listen': { type: 'string' },
    'cni-installer-status': { type: 'string' },
    cni: { type: 'string' },
  },
} as const;

const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
export const validateConfig = ajv.compile(configSchema);
export const validateConfigFile = ajv.compile(configFileSchema);
