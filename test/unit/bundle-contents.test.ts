// Nothing that exists only for tests ships: the built bundles (plugin, daemon/CLI, CNI installer)
// are searched for the identifiers of test-only code (the former fake datapath and its
// environment switch, test-only settings) and for any module of the test tree.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { distLayout } from '../helpers/plugin-layout';

const DIST = join(__dirname, '..', '..', 'dist');

const BUNDLES = [
  ['the CNI plugin', () => join(distLayout().buildDir, 'plugin.cjs')],
  ['the daemon and CLI', () => join(DIST, 'int-host-reporter.cjs')],
  ['the CNI installer', () => join(DIST, 'int-host-reporter-cni-install.cjs')],
] as const;

/** Test-only names: each a literal (case-sensitive) that has no business in product code. */
const TEST_ONLY = [
  'FAKE', // the fake datapath's env var and constants (INT_HOST_REPORTER_PLUGIN_FAKE_DATAPATH, FAKE_DATAPATH_ENV)
  'datapath-fake',
  'createFakeDatapath',
  'FakeDatapathState',
  'INT_HOST_REPORTER_RECONCILE_MS',
  'test/helpers',
  'test/fixtures',
  'test/bpf',
  'test-bpf',
  'node:test',
];

for (const [what, path] of BUNDLES) {
  test(`bundle contents: ${what} holds no test-only code`, () => {
    const file = path();
    assert.ok(existsSync(file), `${file} is missing: run "node build.mjs bundle"`);
    const text = readFileSync(file, 'utf8');
    const found = TEST_ONLY.flatMap((needle) => {
      const at = text.indexOf(needle);
      return at < 0 ? [] : [`"${needle}" at offset ${at}: …${text.slice(Math.max(0, at - 40), at + needle.length + 40).replace(/\s+/g, ' ')}…`];
    });
    assert.deepEqual(found, [], `${file} contains test-only code:\n${found.join('\n')}`);
  });
}
