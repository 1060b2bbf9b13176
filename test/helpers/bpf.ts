// BPF helpers for tests: a bpffs directory of the test's own, removed on scope close, and the
// paths of the test objects built from test/bpf/.
import { existsSync, readdirSync, statSync, unlinkSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBpffs, detachPinnedLink } from '../../bpf/index';
import type { Scope } from './scope';

/** A fresh pin root under /sys/fs/bpf for this test; everything in it is detached and removed on close. */
export function testPinRoot(scope: Scope): string {
  const root = join('/sys/fs/bpf', scope.name('pins', 64));
  ensureBpffs(root);
  scope.defer(`remove pins ${root}`, () => removePinTree(root));
  return root;
}

/** Removes a pin tree: link pins are detached first, then every pin and directory goes. */
export function removePinTree(root: string): void {
  if (!existsSync(root)) return;
  for (const name of readdirSync(root)) {
    const p = join(root, name);
    if (statSync(p).isDirectory()) {
      removePinTree(p);
      continue;
    }
    try {
      detachPinnedLink(p); // only links detach; other objects just lose their pin
    } catch {
      unlinkSync(p);
    }
    if (existsSync(p)) unlinkSync(p);
  }
  rmdirSync(root);
}

export function testObject(file: string): string {
  const p = join(__dirname, '..', '..', 'build', 'test-bpf', file);
  if (!existsSync(p)) throw new Error(`${p} is missing: run "node build.mjs" first`);
  return p;
}

