// Errors from reading the daemon's configuration. Messages name where the bad value came from
// (a flag, an environment variable or a config file field) and quote the value.

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(message: string) {
    super(message);
  }
}

/** Thrown by parseConfig for -h/--help: print `message` (the usage text) and exit 0. */
export class HelpRequested extends Error {
  override readonly name = 'HelpRequested';
}
