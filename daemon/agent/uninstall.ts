// `int-host-reporter uninstall`: removes everything of ours from the node (attachments, the
// drop tracepoint, pinned programs and maps, state, spool). Touches nothing that is not ours.
import { existsSync, readdirSync, rmSync, statSync, unlinkSync, rmdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as bpf from '../../bpf/index';
import { detachPod, listPodAttachments } from '../../bpf/attachments';
import { DEFAULT_BPFFS_ROOT, PinLayout } from '../../bpf/pins';
import { DEFAULT_SOCKET_PATH } from '../api/protocol';

function flag(argv: string[], name: string, env: string, def: string): string {
  const i = argv.indexOf(`--${name}`);
  if (i >= 0 && argv[i + 1]) return argv[i + 1];
  const inline = argv.find((a) => a.startsWith(`--${name}=`));
  if (inline) return inline.slice(name.length + 3);
  return process.env[env] || def;
}

/** Removes a pin tree bottom-up: links are detached first, other pins just unpinned. */
function removeTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      removeTree(p);
      continue;
    }
    try {
      bpf.detachPinnedLink(p);
    } catch {
      /* not a link */
    }
    if (existsSync(p)) unlinkSync(p);
  }
  rmdirSync(dir);
}

export async function uninstall(argv: string[]): Promise<number> {
  const layout = new PinLayout(flag(argv, 'bpffs', 'INT_HOST_REPORTER_BPFFS', DEFAULT_BPFFS_ROOT));
  const runDir = dirname(flag(argv, 'socket', 'INT_HOST_REPORTER_SOCKET', DEFAULT_SOCKET_PATH));
  let removed = 0;
  for (const key of listPodAttachments(layout)) {
    detachPod(layout, key); // also removes tc filters (and a clsact we created)
    removed++;
  }
  const nodeDir = join(layout.links, 'node');
  for (const name of existsSync(nodeDir) ? readdirSync(nodeDir) : []) {
    const p = join(nodeDir, name);
    if (statSync(p).isDirectory()) {
      for (const d of ['ingress', 'egress']) bpf.detachPinnedLink(join(p, d));
      for (const m of readdirSync(p)) {
        if (!m.startsWith('tc-ifindex-')) continue;
        const ifindex = Number(m.slice('tc-ifindex-'.length));
        for (const direction of ['ingress', 'egress'] as const) {
          bpf.detach({ ifindex, direction, mode: 'tc', progId: 0, clsactMarker: join(layout.root, 'tc', `clsact-${ifindex}`) });
        }
      }
    }
  }
  removeTree(layout.root);
  for (const d of ['state', 'spool']) rmSync(join(runDir, d), { recursive: true, force: true });
  process.stdout.write(`int-host-reporter: removed ${removed} pod attachments and everything under ${layout.root}\n`);
  return 0;
}
