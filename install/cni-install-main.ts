// int-host-reporter-cni-install: puts the chained plugin into the node's CNI config and keeps it
// there (see cni-installer.ts for what exactly it does and does not touch).
//   init container:     int-host-reporter-cni-install --wait
//   beside the daemon:  int-host-reporter-cni-install --watch
//   removal:            int-host-reporter-cni-install --uninstall
import { parseArgs } from 'node:util';
import pino from 'pino';
import {
  DEFAULT_CNI_BIN_DIR, DEFAULT_CNI_CONF_DIR, DEFAULT_PLUGIN_SOURCE, EXIT_NO_PRIMARY, InstallError, type InstallerOptions,
  type JsonObject, buildEntry, installBinaries, reconcile, uninstall, waitForPrimary, watch,
} from './cni-installer';

const USAGE = `Usage: int-host-reporter-cni-install [options]

Copies the int-host-reporter CNI plugin into the CNI bin dir and adds {"type":"int-host-reporter"}
as the last plugin of the network config the runtime uses (the first valid .conf/.conflist/.json of
the config dir by name, as libcni picks it). A single-plugin .conf is left as it is: a list named
<stem>-int-host-reporter.conflist, which sorts before it, carries it and our entry.

  --cni-conf-dir DIR        CNI config dir. (default ${DEFAULT_CNI_CONF_DIR})
  --cni-bin-dir DIR         CNI plugin dir. (default ${DEFAULT_CNI_BIN_DIR})
  --plugin-source DIR       Where the bundled plugin, int_host_reporter.node and datapath.bpf.o are.
                            (default ${DEFAULT_PLUGIN_SOURCE})
  --plugin-config JSON      Extra fields of our entry, e.g. '{"socketPath":"/run/int-host-reporter/daemon.sock"}'.
  --wait                    Wait for the primary CNI to write its config (else: exit 4 when there is none).
  --watch                   Keep watching the config dir and put our entry back whenever it goes missing.
  --recheck-interval-ms MS  Periodic re-check while watching. (default 5000)
  --uninstall               Remove our entry (and only it) from every list, our shadow lists and our plugin files.
  --keep-binaries           With --uninstall: leave the plugin files in the bin dir.
  --uninstall-on-exit       With --watch: uninstall on SIGTERM/SIGINT (default: leave everything in place,
                            so a restart or an upgrade does not take the plugin away from new pods).
  --log-level LEVEL         fatal, error, warn, info, debug, trace or silent. (default info)
  -h, --help                Show this text.

Exit status: 0 done, 1 failure, 2 bad usage, 3 the primary config cannot chain (cniVersion < 0.3.0),
4 no primary config (without --wait/--watch).
`;

export async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        'cni-conf-dir': { type: 'string', default: DEFAULT_CNI_CONF_DIR },
        'cni-bin-dir': { type: 'string', default: DEFAULT_CNI_BIN_DIR },
        'plugin-source': { type: 'string', default: DEFAULT_PLUGIN_SOURCE },
        'plugin-config': { type: 'string' },
        wait: { type: 'boolean', default: false },
        watch: { type: 'boolean', default: false },
        'recheck-interval-ms': { type: 'string', default: '5000' },
        uninstall: { type: 'boolean', default: false },
        'keep-binaries': { type: 'boolean', default: false },
        'uninstall-on-exit': { type: 'boolean', default: false },
        'log-level': { type: 'string', default: 'info' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    process.stderr.write(`int-host-reporter-cni-install: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
  const level = values['log-level'];
  if (!levels.includes(level)) return usageError(`--log-level must be one of ${levels.join(', ')}, got "${level}"`);
  const recheckMs = Number(values['recheck-interval-ms']);
  if (!Number.isInteger(recheckMs) || recheckMs < 100) return usageError(`--recheck-interval-ms must be an integer >= 100, got "${values['recheck-interval-ms']}"`);
  if (values.uninstall && (values.wait || values.watch)) return usageError('--uninstall does not go with --wait or --watch');
  if (values['uninstall-on-exit'] && !values.watch) return usageError('--uninstall-on-exit needs --watch');

  let pluginConfig: JsonObject | undefined;
  if (values['plugin-config'] !== undefined) {
    try {
      pluginConfig = JSON.parse(values['plugin-config']) as JsonObject;
      buildEntry(pluginConfig);
    } catch (err) {
      return usageError(err instanceof InstallError ? err.message : `--plugin-config is not JSON: ${(err as Error).message}`);
    }
  }

  const log = pino({ level, base: { component: 'int-host-reporter-cni-install' } });
  const opts: InstallerOptions = {
    confDir: values['cni-conf-dir'],
    binDir: values['cni-bin-dir'],
    pluginSource: values['plugin-source'],
    pluginConfig,
    log,
  };

  const stop = new AbortController();
  const onSignal = (sig: string) => {
    log.info({ signal: sig }, 'stopping');
    stop.abort();
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));

  try {
    if (values.uninstall) {
      uninstall({ ...opts, keepBinaries: values['keep-binaries'] });
      return 0;
    }
    if (values.watch) {
      installBinaries(opts);
      await watch({ ...opts, recheckMs }, stop.signal);
      if (values['uninstall-on-exit']) uninstall(opts);
      return 0;
    }
    installBinaries(opts);
    if (values.wait) {
      const primary = await waitForPrimary({ ...opts, recheckMs }, stop.signal);
      if (!primary) return 1; // stopped while waiting
    }
    const result = reconcile(opts);
    if (!result) {
      log.error({ dir: opts.confDir }, 'no valid CNI config to chain into (the primary CNI has not written one; use --wait)');
      return EXIT_NO_PRIMARY;
    }
    return 0;
  } catch (err) {
    if (err instanceof InstallError) {
      log.error({ err: err.message }, 'install failed');
      return err.code;
    }
    throw err;
  }
}

function usageError(msg: string): number {
  process.stderr.write(`int-host-reporter-cni-install: ${msg}\n`);
  return 2;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      process.stderr.write(`int-host-reporter-cni-install: ${(err as Error).stack ?? err}\n`);
      process.exitCode = 1;
    },
  );
}
