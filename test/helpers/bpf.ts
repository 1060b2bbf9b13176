// BPF helpers for tests: a bpffs directory of the test's own, removed on scope close, and the
// paths of the test objects built from test/bpf/.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBpffs } from '../../bpf/index';
import { removePinTree } from '../../bpf/attachments';
import type { Scope } from './scope';

/** A fresh pin root under /sys/fs/bpf for this test; everything in it is detached and removed on close. */
export function testPinRoot(scope: Scope): string {
  const root = join('/sys/fs/bpf', scope.name('pins', 64));
  ensureBpffs(root);
  scope.defer(`remove pins ${root}`, () => removePinTree(root));
  return root;
}

/** Removes a pin tree: link pins are detached first, then every pin and directory goes. */
export { removePinTree };

// test/bpf's objects are built by the test step, once per process
let testObjectsBuilt = false;

export function testObject(file: string): string {
  if (!testObjectsBuilt) {
    execFileSync(process.execPath, [join(__dirname, '..', 'bpf', 'build.mjs')], { stdio: ['ignore', 'ignore', 'inherit'] });
    testObjectsBuilt = true;
  }
  const p = join(__dirname, '..', '..', 'build', 'test-bpf', file);
  if (!existsSync(p)) throw new Error(`${p} is missing: test/bpf/build.mjs did not build it`);
  return p;
}

