#!/usr/bin/env node
// Runs every test file with node's test runner (TypeScript through tsx), one file at a time:
// the end-to-end tests share the machine's network stack and bpffs.
//   node scripts/run-tests.mjs [unit|e2e|runtime ...] [--pattern REGEX]
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const pi = args.indexOf('--pattern');
const pattern = pi >= 0 ? args.splice(pi, 2)[1] : undefined;
const groups = args.length ? args : ['unit', 'e2e', 'runtime'];

if (process.getuid && process.getuid() !== 0) {
  console.error('tests: run as root (they load eBPF programs and create network namespaces)');
  process.exit(1);
}

const files = [];
for (const g of groups) {
  const dir = join(root, 'test', g);
  if (!existsSync(dir)) continue;
  for (const f of readdirSync(dir).sort()) if (f.endsWith('.test.ts')) files.push(join('test', g, f));
}
if (files.length === 0) {
  console.error(`tests: no test files in ${groups.join(', ')}`);
  process.exit(1);
}
// The BPF objects the tests load are built here, not by the product build.
const built = spawnSync(process.execPath, [join(root, 'test', 'bpf', 'build.mjs')], { cwd: root, stdio: 'inherit' });
if (built.status !== 0) {
  console.error('tests: building the test BPF objects (test/bpf/build.mjs) failed');
  process.exit(1);
}
const nodeArgs = ['--import', 'tsx', '--test', '--test-concurrency=1'];
if (pattern) nodeArgs.push('--test-name-pattern', pattern);
const r = spawnSync(process.execPath, [...nodeArgs, ...files], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
