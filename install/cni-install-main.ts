// int-host-reporter-cni-install: puts the chained plugin into the node's CNI config and keeps it
// there (see cni-installer.ts for what exactly it does and does not touch).
//   init container:     int-host-reporter-cni-install --wait
//   beside the daemon:  int-host-reporter-cni-install --watch
//   removal:            int-host-reporter-cni-install --uninstall
import { parseArgs } from 'node:util';
import pino from 'pino';
import {
  DEFAULT_CNI_BIN_DIR, DEFAULT_CNI_CONF_DIR, DEFAULT_OLD_BUILD_GRACE_MS, DEFAULT_PLUGIN_SOURCE, DEFAULT_PREFLIGHT_TIMEOUT_MS, DEFAULT_STATUS_FILE,
  InstallError, type InstallerOptions, type JsonObject, type PluginState, StatusFile, buildEntry, installPass, reportPass, uninstall,
  waitForPrimary, watch,
} from './cni-installer';

const USAGE = `Usage: int-host-reporter-cni-install [options]

Installs the int-host-reporter CNI plugin (the launcher int-host-reporter and its builds in
int-host-reporter.d/) into the CNI bin dir, runs it as the runtime will (CNI_COMMAND=VERSION, then
--preflight, with an empty environment), and only when that passed adds {"type":"int-host-reporter"}
as the last plugin of the network config the runtime uses (the first valid .conf/.conflist/.json of
the config dir by name, as libcni picks it). A single-plugin .conf is left as it is: a list named
<stem>-int-host-reporter.conflist, which sorts before it, carries it and our entry. A plugin that
fails its preflight is never chained: the config is not touched, the status file says why, and
--wait/--watch try again on every re-check.

  --cni-conf-dir DIR        CNI config dir. (default ${DEFAULT_CNI_CONF_DIR})
  --cni-bin-dir DIR         CNI plugin dir. (default ${DEFAULT_CNI_BIN_DIR})
  --plugin-source DIR       Where the plugin's layout is: the launcher and int-host-reporter.d/ (dist/cni of
                            the build). (default ${DEFAULT_PLUGIN_SOURCE})
  --plugin-config JSON      Extra fields of our entry, e.g. '{"socketPath":"/run/int-host-reporter/daemon.sock"}'.
  --wait                    Wait until the plugin passed its preflight and the primary CNI wrote its config
                            (else: exit 5 or 4).
  --watch                   Keep watching the config dir and put our entry back whenever it goes missing.
  --recheck-interval-ms MS  Periodic re-check while waiting or watching. (default 5000)
  --preflight-timeout-ms MS How long each preflight run of the plugin may take. (default ${DEFAULT_PREFLIGHT_TIMEOUT_MS})
  --status-file FILE        Where to write how it stands, as JSON (state chained, waiting-for-primary,
                            preflight-failed, error or uninstalled); the daemon's /readyz reads it.
                            (default ${DEFAULT_STATUS_FILE})
  --uninstall               Remove our entry (and only it) from every list and our shadow lists, then our
                            plugin files.
  --keep-binaries           With --uninstall: leave the plugin files in the bin dir.
  --uninstall-on-exit       With --watch: uninstall on SIGTERM/SIGINT (default: leave everything in place,
                            so a restart or an upgrade does not take the plugin away from new pods).
  --log-level LEVEL         fatal, error, warn, info, debug, trace or silent. (default info)
  -h, --help                Show this text.

Exit status: 0 done, 1 failure, 2 bad usage, 3 the primary config cannot chain (cniVersion < 0.3.0),
4 no primary config (without --wait/--watch), 5 the installed plugin failed its preflight (without
--wait/--watch; the config was not touched).
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
        'preflight-timeout-ms': { type: 'string', default: String(DEFAULT_PREFLIGHT_TIMEOUT_MS) },
        'status-file': { type: 'string', default: DEFAULT_STATUS_FILE },
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
  const preflightTimeoutMs = Number(values['preflight-timeout-ms']);
  if (!Number.isInteger(preflightTimeoutMs) || preflightTimeoutMs < 100) {
    return usageError(`--preflight-timeout-ms must be an integer >= 100, got "${values['preflight-timeout-ms']}"`);
  }
  if (values['status-file'] === '') return usageError('--status-file must name a file');
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
    preflightTimeoutMs,
    log,
  };
  const status = new StatusFile(values['status-file'], log);

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
      status.set('uninstalled', values['keep-binaries'] ? 'our entries and shadow lists removed; plugin files kept' : 'our entries, shadow lists and plugin files removed', null, null);
      return 0;
    }
    if (values.watch) {
      await watch({ ...opts, recheckMs, status }, stop.signal);
      if (values['uninstall-on-exit']) {
        uninstall(opts);
        status.set('uninstalled', 'removed on exit (--uninstall-on-exit)', null, null);
      }
      return 0;
    }
    const state: PluginState = {};
    for (;;) {
      let pass = installPass(opts, state);
      reportPass(pass, status, log);
      if (pass.pendingRemoval.length) {
        // an upgrade: the replaced build goes once no exec can still be resolving it
        log.info({ builds: pass.pendingRemoval }, 'keeping the replaced plugin build for its grace period');
        if (!(await sleep(DEFAULT_OLD_BUILD_GRACE_MS, stop.signal))) return 1;
        pass = installPass(opts, state);
        reportPass(pass, status, log);
      }
      if (pass.state === 'chained' || !values.wait || pass.state === 'error') return pass.code;
      if (pass.state === 'waiting-for-primary') {
        if (!(await waitForPrimary({ ...opts, recheckMs }, stop.signal))) return 1; // stopped while waiting
      } else if (!(await sleep(recheckMs, stop.signal))) {
        return 1;
      }
    }
  } catch (err) {
    if (err instanceof InstallError) {
      log.error({ err: err.message }, 'install failed');
      status.set('error', err.message, null, null);
      return err.code;
    }
    throw err;
  }
}

/** Resolves true after ms, false as soon as the signal aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(false);
    const done = (v: boolean) => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      resolve(v);
    };
    const onAbort = () => done(false);
    const timer = setTimeout(() => done(true), ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
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
