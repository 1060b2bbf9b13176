// Daemon configuration: flags > environment > config file > defaults.
export { ConfigError, HelpRequested } from './errors';
export { FIELDS, type Config, type LogLevel } from './fields';
export { parseConfig, type ReadFile } from './parse';
export { configFileSchema, configSchema } from './schema';
export { usage } from './usage';
export { DEFAULT_COLLECTOR_PORT, type Endpoint } from './values';
