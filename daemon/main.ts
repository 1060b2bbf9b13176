// int-host-reporter: the node daemon, the built-in collector and the operator CLI in one file.
//   int-host-reporter [daemon] [flags]       run the node agent (the reference's flags work)
//   int-host-reporter collect --listen A:P   print the INT reports that arrive
//   int-host-reporter status|pods|pod|topology|watchlist ...   ask the running daemon
//   int-host-reporter uninstall              remove everything of ours from this node
//   int-host-reporter manifests [...]        print the Kubernetes objects that deploy it
//   int-host-reporter mount-bpffs [DIR]      mount bpffs on DIR if none is there (the DaemonSet's init container)
// Each command loads only what it needs: the agent's modules (the Kubernetes client above all) cost
// a short-lived command, such as the init container's mount-bpffs, time and memory.
// The daemon is composed here: the agent, and the local API over it (api/ and agent/ do not import
// each other).
import type { Agent } from './agent/agent';

const CLI_COMMANDS = new Set(['status', 'pods', 'pod', 'topology', 'watchlist']);

async function runDaemon(argv: string[]): Promise<number> {
  const { ConfigError, HelpRequested, parseConfig } = await import('./config');
  let config;
  try {
    config = parseConfig(argv);
  } catch (e) {
    if (e instanceof HelpRequested) {
      process.stdout.write(e.message + '\n');
      return 0;
    }
    if (e instanceof ConfigError) {
      process.stderr.write(`int-host-reporter: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  let agent: Agent;
  let closeApi: () => Promise<void>;
  try {
    const [{ Agent }, { apiRoutes }, { serveApi }] = await Promise.all([
      import('./agent/agent'), import('./api/routes'), import('./api/server'),
    ]);
    agent = await Agent.start(config);
    try {
      closeApi = await serveApi(config, apiRoutes(agent));
    } catch (e) {
      await agent.stop();
      throw e;
    }
  } catch (e) {
    process.stderr.write(`int-host-reporter: cannot start: ${(e as Error).message}\n`);
    return 1;
  }
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  await closeApi();
  await agent.stop();
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const cmd = argv[0];
  if (cmd === 'collect') return (await import('./collector/collector')).runCollectCommand(argv.slice(1));
  if (cmd === 'uninstall') return (await import('./agent/uninstall')).uninstall(argv.slice(1));
  if (cmd === 'manifests') return (await import('./cli/manifests')).runManifests(argv.slice(1));
  if (cmd === 'mount-bpffs') {
    const dir = argv[1] ?? '/sys/fs/bpf';
    (await import('../bpf/index')).ensureBpffs(dir); // mounts only where no bpffs is
    process.stdout.write(`bpffs on ${dir}\n`);
    return 0;
  }
  if (cmd === 'version' || cmd === '--version') {
    process.stdout.write('int-host-reporter 0.1.0\n');
    return 0;
  }
  const runCli = async (a: string[]) => (await import('./cli/commands')).runCli(a);
  if (cmd !== undefined && CLI_COMMANDS.has(cmd)) return runCli(argv);
  if (cmd === 'daemon') return runDaemon(argv.slice(1));
  if (cmd === undefined || cmd.startsWith('-')) return runDaemon(argv);
  return runCli(argv); // prints the unknown command and the usage
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (e) => {
    process.stderr.write(`int-host-reporter: ${(e as Error).stack ?? e}\n`);
    process.exitCode = 1;
  },
);
