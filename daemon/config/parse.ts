// parseConfig: flags > environment > config file > defaults, each value checked where it enters
// and the merged result checked against the schema, with errors naming the value's source.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { ErrorObject } from 'ajv';
import { LineCounter, parseDocument } from 'yaml';
import { ConfigError, HelpRequested } from './errors';
import { CONFIG_FLAG, FIELDS, type Config, type ConfigKey, type Field } from './fields';
import { LOG_LEVELS, validateConfig, validateConfigFile } from './schema';
import { usage } from './usage';
import { ValueError } from './values';

export type ReadFile = (path: string) => string;
type Env = Readonly<Record<string, string | undefined>>;

/** Where a value came from, and the value as given there (for messages). */
interface Origin {
  label: string;
  given: unknown;
}

/**
 * Builds the configuration from command-line arguments (without node and the script), the
 * environment and the optional --config file. Throws ConfigError for a bad value, HelpRequested
 * for -h/--help.
 */
export function parseConfig(argv: readonly string[], env: Env = process.env, readFile: ReadFile = (p) => readFileSync(p, 'utf8')): Config {
  const flags = parseFlags(argv);
  const configPath = flags.get(CONFIG_FLAG.flag)?.at(-1) ?? firstEnv(env, CONFIG_FLAG.env)?.value;
  const file = configPath !== undefined ? readConfigFile(configPath, readFile) : new Map<string, unknown>();

  const config: Record<string, unknown> = {};
  const origins = new Map<ConfigKey, Origin>();
  if (configPath !== undefined) config.configFile = configPath;

  for (const field of FIELDS) {
    const found = pick(field, flags, env, file, configPath);
    if (!found) continue;
    const value = convert(field, found);
    if (value === undefined) continue;
    config[field.key] = field.key === 'watchlistConf' && found.fromFile ? resolve(dirname(configPath!), value as string) : value;
    origins.set(field.key, found);
  }

  check(config, origins);
  return config as unknown as Config;
}

interface Found extends Origin {
  /** text from a flag or variable; a file value may be of any JSON type */
  values: unknown[];
  fromFile: boolean;
}

function pick(field: Field, flags: Map<string, string[]>, env: Env, file: Map<string, unknown>, configPath?: string): Found | undefined {
  const given = flags.get(field.flag)?.filter((v) => v !== '');
  if (given && given.length > 0) {
    const values = field.repeatable ? given : [given[given.length - 1]];
    return { label: `--${field.flag}`, given: values.length === 1 ? values[0] : values, values, fromFile: false };
  }
  const fromEnv = firstEnv(env, field.env);
  if (fromEnv) return { label: `env ${fromEnv.name}`, given: fromEnv.value, values: [fromEnv.value], fromFile: false };
  if (file.has(field.flag)) {
    const value = file.get(field.flag);
    const values = field.repeatable && Array.isArray(value) ? value : [value];
    return { label: `${configPath} (${field.flag})`, given: value, values, fromFile: true };
  }
  const fallback = field.fallbackEnv && firstEnv(env, field.fallbackEnv);
  if (fallback) return { label: `env ${fallback.name}`, given: fallback.value, values: [fallback.value], fromFile: false };
  if (field.default) {
    const value = field.default();
    return { label: 'default', given: value, values: [value], fromFile: false };
  }
  return undefined;
}

function convert(field: Field, found: Found): unknown {
  const parts = found.values.map((v) => {
    try {
      if (typeof v === 'string') return field.fromText(v);
      return field.fromFile ? field.fromFile(v) : v;
    } catch (err) {
      if (err instanceof ValueError) throw new ConfigError(`${found.label}: ${JSON.stringify(v)} ${err.message}`);
      throw err;
    }
  });
  return field.repeatable ? parts.flat() : parts[0];
}

function firstEnv(env: Env, names: readonly string[]): { name: string; value: string } | undefined {
  for (const name of names) {
    const value = env[name];
    if (value !== undefined && value !== '') return { name, value }; // Kubernetes passes unset values as ""
  }
  return undefined;
}

/** Go's flag syntax (what the reference's deployments use) plus GNU's: -name, --name, =value or next argument. */
function parseFlags(argv: readonly string[]): Map<string, string[]> {
  const names = new Map<string, string>([[CONFIG_FLAG.flag, CONFIG_FLAG.flag]]);
  for (const f of FIELDS) {
    names.set(f.flag, f.flag);
    if (f.short) names.set(f.short, f.flag);
  }
  const out = new Map<string, string[]>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      if (i + 1 < argv.length) throw new ConfigError(`unexpected argument ${JSON.stringify(argv[i + 1])}; see --help`);
      break;
    }
    const m = /^--?([^=]+)(?:=(.*))?$/s.exec(arg);
    if (!m) throw new ConfigError(`unexpected argument ${JSON.stringify(arg)}; see --help`);
    const [, name, inline] = m;
    if (name === 'h' || name === 'help') throw new HelpRequested(usage());
    const flag = names.get(name);
    if (flag === undefined) throw new ConfigError(`unknown flag ${arg.replace(/=.*$/s, '')}; see --help`);
    let value = inline;
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new ConfigError(`${arg} needs a value`);
      value = argv[++i];
    }
    out.set(flag, [...(out.get(flag) ?? []), value]);
  }
  return out;
}

function readConfigFile(path: string, readFile: ReadFile): Map<string, unknown> {
  let text: string;
  try {
    text = readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new ConfigError(`--${CONFIG_FLAG.flag} ${path}: cannot read: ${why}`);
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    throw new ConfigError(`${path}:${lineCounter.linePos(e.pos[0]).line}: not valid YAML: ${e.message.split('\n')[0]}`);
  }
  const data: unknown = doc.toJS() ?? {};
  if (!validateConfigFile(data)) {
    throw new ConfigError((validateConfigFile.errors ?? []).map((e) => fileErrorMessage(path, e, data)).join('\n'));
  }
  return new Map(Object.entries(data as Record<string, unknown>));
}

function fileErrorMessage(path: string, e: ErrorObject, data: unknown): string {
  const key = e.instancePath.split('/')[1];
  if (e.keyword === 'additionalProperties') {
    const known = [CONFIG_FLAG.flag, ...FIELDS.map((f) => f.flag)].filter((k) => k !== CONFIG_FLAG.flag);
    return `${path} (${String(e.params.additionalProperty)}): unknown setting; known: ${known.join(', ')}`;
  }
  if (key === undefined) return `${path}: must be a mapping of settings`;
  const value = (data as Record<string, unknown>)[key];
  if (e.keyword === 'type') {
    const types = ([] as string[]).concat(e.params.type as string | string[]);
    return `${path} (${key}): ${JSON.stringify(value)} must be ${types.map((t) => (t === 'array' ? 'a list' : t === 'integer' ? 'an integer' : `a ${t}`)).join(' or ')}`;
  }
  return `${path} (${key}): ${JSON.stringify(value)} ${e.message ?? 'is not valid'}`;
}

/** Limits, whatever the source; then what a schema cannot say. */
function check(config: Record<string, unknown>, origins: Map<ConfigKey, Origin>): void {
  if (!validateConfig(config)) {
    const messages = (validateConfig.errors ?? []).map((e) => limitMessage(e, origins));
    throw new ConfigError([...new Set(messages)].join('\n'));
  }
  const quantum = config.latencyQuantumNs as number;
  if (!Number.isInteger(Math.log2(quantum))) {
    // The kernel buckets latencies with a shift, not a division.
    const o = origins.get('latencyQuantumNs')!;
    throw new ConfigError(`${o.label}: ${JSON.stringify(o.given)} must be a power of two (e.g. 65536)`);
  }
}

const PATTERN_TEXT: Partial<Record<ConfigKey, string>> = {
  dataInterface: 'is not an interface name (1-15 characters, no "/", ":" or white space)',
  socketPath: 'must be an absolute path',
  bpffsPath: 'must be an absolute path',
  cniInstallerStatus: 'must be an absolute path',
};

function limitMessage(e: ErrorObject, origins: Map<ConfigKey, Origin>): string {
  if (e.keyword === 'required' && e.params.missingProperty === 'collectors') {
    return 'no INT collector given: use --collector HOST:PORT (or env COLLECTOR, or "collector" in the config file)';
  }
  const key = (e.instancePath.split('/')[1] ?? e.params.missingProperty) as ConfigKey;
  const o = origins.get(key) ?? { label: key, given: undefined };
  const subject = `${o.label}: ${JSON.stringify(o.given)}`;
  switch (e.keyword) {
    case 'minimum':
      return `${subject} must be at least ${e.params.limit}`;
    case 'maximum':
      return `${subject} must be at most ${e.params.limit}`;
    case 'pattern':
      return `${subject} ${PATTERN_TEXT[key] ?? 'is not valid'}`;
    case 'maxLength':
      return key === 'socketPath' ? `${subject} is too long for a unix socket path (at most 107 bytes)` : `${subject} is too long (at most ${e.params.limit})`;
    case 'enum':
      return key === 'logLevel' ? `${subject} is not a log level; use ${LOG_LEVELS.join(', ')}` : `${subject} must be one of ${(e.params.allowedValues as unknown[]).join(', ')}`;
    default:
      return `${subject} ${e.message ?? 'is not valid'}`;
  }
}
