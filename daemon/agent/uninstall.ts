// `int-host-reporter uninstall`: removes everything of ours from the node (attachments, the
// drop tracepoint, pinned programs and maps, state, spool). Touches nothing that is not ours.
import { readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { detachNodeInterface, detachPod, listPodAttachments, removePinTree } from '../../bpf/attachments';
import { DEFAULT_BPFFS_ROOT, PinLayout } from '../../bpf/pins';
import { DEFAULT_SOCKET_PATH } from '../../protocol/endpoints';

function flag(argv: string[], name: string, env: string, def: string): string {
  const i = argv.indexOf(`--${name}`);
  if (i >= 0 && argv[i + 1]) return argv[i + 1];
  const inline = argv.find((a) => a.startsWith(`--${name}=`));
  if (inline) return inline.slice(name.length + 3);
  return process.env[env] || def;
}

/** Names of the node interfaces with pinned hooks (directories beside the drop link's pin). */
function pinnedNodeInterfaces(layout: PinLayout): string[] {
  try {
    return readdirSync(layout.nodeLinks, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

export async function uninstall(argv: string[]): Promise<number> {
  const layout = new PinLayout(flag(argv, 'bpffs', 'INT_HOST_REPORTER_BPFFS', DEFAULT_BPFFS_ROOT));
  const runDir = dirname(flag(argv, 'socket', 'INT_HOST_REPORTER_SOCKET', DEFAULT_SOCKET_PATH));
  let removed = 0;
  for (const key of listPodAttachments(layout)) {
    detachPod(layout, key); // also removes tc filters (and a clsact we created)
    removed++;
  }
  for (const ifname of pinnedNodeInterfaces(layout)) detachNodeInterface(layout, ifname);
  removePinTree(layout.root); // the drop link, programs and maps
  for (const d of ['state', 'spool']) rmSync(join(runDir, d), { recursive: true, force: true });
  process.stdout.write(`int-host-reporter: removed ${removed} pod attachments and everything under ${layout.root}\n`);
  return 0;
}
