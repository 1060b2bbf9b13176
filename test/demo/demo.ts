// `npm run demo`: a demo node on this machine, end to end, then everything removed again.
//
//   1. the built-in INT collector as a real child process (its JSON lines are echoed, prefixed)
//   2. the daemon (watchlist = the demo pod subnet and the remote's subnet; data interface = the
//      node side of a veth pair to a "remote host" namespace)
//   3. three pods created by podman (CNI backend) through a conflist chaining our plugin after
//      bridge + host-local: the plugin attaches our programs with no other step
//   4. traffic: ping, TCP (busybox httpd + wget), UDP between the pods, and pods <-> remote
//   5. the daemon's CLI listing the attached pods
//   6. cleanup (also on Ctrl-C or failure): pods deleted through podman (CNI DEL), daemon and
//      collector stopped, bridge, namespaces, pins and temp dirs removed.
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { createNode, allocateSubnet, withScope, type Scope } from '../helpers/netns';
import { DaemonProcess, DAEMON_BUNDLE, watchlistFile } from '../helpers/daemon';
import { udpFlow } from '../helpers/traffic';
import {
  busyboxRootfs, chainConflist, daemonEndpoints, endpointOf, pluginDir, PodmanSession, requireRuntimeTools, type Container,
} from '../helpers/runtime';

const started = Date.now();
const say = (msg: string) => process.stdout.write(`\n==> ${msg}\n`);
const note = (msg: string) => process.stdout.write(`    ${msg}\n`);
function collectorLine(line: string): void {
  process.stdout.write(`    [collector] ${line}\n`);
}

async function startCollector(scope: Scope): Promise<{ address: string; reports: () => number }> {
  const proc = scope.spawn(null, [process.execPath, DAEMON_BUNDLE, 'collect', '--listen', '127.0.0.1:0']);
  let echoed = 0;
  // Echo every line as it arrives.
  const timer = setInterval(() => {
    while (echoed < proc.lines.length) collectorLine(proc.lines[echoed++]!);
  }, 50);
  scope.defer('stop echoing the collector', () => {
    clearInterval(timer);
    while (echoed < proc.lines.length) collectorLine(proc.lines[echoed++]!);
  });
  // It announces its address on stderr: {"kind":"listening","address":...,"port":...}
  let err = '';
  const first = await new Promise<{ address: string; port: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the collector did not start: ${err}`)), 10_000);
    proc.child.stderr!.on('data', (d: string) => {
      err += d;
      const line = err.split('\n').find((l) => l.includes('"listening"'));
      if (line) {
        clearTimeout(timer);
        resolve(JSON.parse(line) as { address: string; port: number });
      }
    });
  });
  return {
    address: `${first.address}:${first.port}`,
    reports: () => proc.lines.filter((l) => l.startsWith('{"kind":"flow"') || l.includes('"kind":"flow"')).length,
  };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the demo needs root: it creates network namespaces and loads eBPF programs');
  requireRuntimeTools('podman');
  await withScope(async (scope) => {
    say('A demo node: a remote host behind a data interface, and a pod subnet');
    const node = await createNode(scope, { forwarding: 'global' });
    const remote = await node.addRemote({ label: 'remote' });
    const subnet = await allocateSubnet();
    note(`remote host: netns ${remote.netns}, ${remote.ipv4}; node data interface ${remote.dataIfname} (ifindex ${remote.dataIfindex})`);
    note(`pod subnet: ${subnet.v4Cidr}`);

    say('Starting the built-in INT collector (int-host-reporter collect), a real child process');
    const collector = await startCollector(scope);
    note(`listening on ${collector.address}`);

    say('Starting the daemon (its socket and bpffs pins in temp dirs)');
    const wl = watchlistFile(scope, `rules:\n  - src-addr: ${subnet.v4Cidr}\n    dst-addr: 0.0.0.0/0\n  - src-addr: ${remote.v4Cidr}\n    dst-addr: ${subnet.v4Cidr}\n`);
    const daemon = await DaemonProcess.start(scope, { collector: collector.address, dataInterface: remote.dataIfname, watchlist: wl, switchId: 0x0a000001 });
    note(`daemon pid ${daemon.proc.pid}, socket ${daemon.socket}`);

    say('Creating three pods with podman: bridge + host-local, then {"type": "int-host-reporter"}');
    const pd = pluginDir(scope);
    const pm = PodmanSession.create(scope, { pluginDir: pd.dir, rootfs: busyboxRootfs(scope) });
    const chain = chainConflist(scope, { subnet, daemon: daemonEndpoints(daemon) });
    pm.addNetwork(chain);
    note(`conflist "${chain.network}": ${JSON.stringify((chain.conflist.plugins as Array<{ type: string }>).map((p) => p.type))}`);
    const pods: Container[] = [];
    for (const n of ['web', 'client', 'batch']) {
      const c = await pm.run(`${scope.prefix}-${n}`, chain.network);
      pods.push(c);
      note(`pod ${c.name}: ${c.ipv4}, host veth ${c.hostIfname} (ifindex ${c.hostIfindex})`);
    }
    // Removing the pods through podman before the rest is torn down makes the runtime call our DEL.
    scope.defer('podman stop/rm of the demo pods', () => {
      for (const c of pods) spawnSync('podman', ['--root', `${pm.dir}/root`, '--runroot', `${pm.dir}/runroot`, '--storage-driver', 'vfs', 'rm', '-f', '-t', '0', c.name], { env: pm.env, stdio: 'ignore' });
    });
    const [web, client, batch] = pods as [Container, Container, Container];
    note(`our plugin was called: ${pd.calls().map((c) => c.command).join(', ')}`);

    say(`Traffic: ${client.name} pings ${web.name}`);
    note((await pm.exec(client.name, ['ping', '-c', '2', '-W', '2', web.ipv4])).stdout.trim().split('\n').slice(-2).join(' / '));
    await sleep(300);

    say(`Traffic: TCP, ${client.name} fetches a page from busybox httpd in ${web.name}`);
    await pm.podman(['exec', '-d', web.name, 'httpd', '-f', '-p', '8080', '-h', '/etc']);
    let page = '';
    for (let i = 0; i < 30 && !page; i++) {
      page = await pm.exec(client.name, ['wget', '-q', '-O', '-', `http://${web.ipv4}:8080/passwd`]).then((r) => r.stdout, () => '');
      if (!page) await sleep(100);
    }
    note(`wget got ${page.length} bytes`);
    await sleep(300);

    say(`Traffic: UDP, ${batch.name} -> ${web.name}`);
    const udp = await udpFlow(scope, { from: endpointOf(batch), to: endpointOf(web), family: 4, count: 3 });
    note(`${udp.sent.packets} datagrams ${udp.src}:${udp.sport} -> ${udp.dst}:${udp.dport}, ${udp.received.packets} received`);
    await sleep(300);

    say(`Traffic: ${client.name} <-> the remote host through the data interface`);
    note((await pm.exec(client.name, ['ping', '-c', '2', '-W', '2', remote.ipv4])).stdout.trim().split('\n').slice(-1)[0] ?? '');
    const back = await udpFlow(scope, { from: remote, to: endpointOf(batch), family: 4, count: 2 });
    note(`remote -> ${batch.name}: ${back.received.packets} UDP datagrams received`);
    await sleep(1200);

    say('The daemon\'s CLI: int-host-reporter pods');
    const cli = spawnSync(process.execPath, [DAEMON_BUNDLE, 'pods', '--socket', daemon.socket], { encoding: 'utf8' });
    process.stdout.write(cli.stdout.split('\n').map((l) => (l ? `    ${l}` : l)).join('\n'));
    if (cli.status !== 0) throw new Error(`int-host-reporter pods failed: ${cli.stderr}`);

    say(`The collector decoded ${collector.reports()} flow reports so far`);
    say('Cleaning up: pods deleted through podman (CNI DEL), then daemon, collector, bridge, namespaces, pins');
    for (const c of pods) await pm.remove(c.name);
    pods.length = 0;
    const left = (await daemon.api<{ attachments: unknown[] }>('GET', '/v1/attachments')).json.attachments.length;
    note(`our plugin was called: ${pd.calls().map((c) => c.command).join(', ')}; attachments the daemon still knows: ${left}`);
  });
  say(`Done in ${((Date.now() - started) / 1000).toFixed(1)} s; nothing of the demo is left on this machine.`);
}

main().catch((err: unknown) => {
  process.stderr.write(`\ndemo failed: ${err instanceof Error ? err.message : String(err)}\n(everything it created has been removed)\n`);
  process.exitCode = 1;
});
