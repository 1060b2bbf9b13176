// The product's import graph: no cycle anywhere, and each top-level folder imports only what the
// folder map allows (plugin/ and daemon/ meet only in protocol/; bpf/ is the bottom layer).
// Every import counts: static, `export ... from`, `import()`, `require()`, and type-only imports
// too (a type-only import still ties the two modules' designs together).
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, test } from 'node:test';
import ts from 'typescript';

const ROOT = join(__dirname, '..', '..');

/** The product's top-level folders and the folders each may import from (itself included). */
const ALLOWED: Record<string, readonly string[]> = {
  /** what the native modules' TypeScript faces share (loading, typed errors): the bottom layer */
  native: ['native'],
  bpf: ['bpf', 'netlink', 'native'],
  netlink: ['netlink', 'native'],
  protocol: ['protocol'],
  plugin: ['plugin', 'protocol', 'bpf', 'netlink', 'native'],
  daemon: ['daemon', 'protocol', 'bpf', 'netlink', 'native', 'install'],
  install: ['install', 'protocol', 'plugin', 'bpf', 'netlink', 'native'],
};
const FOLDERS = Object.keys(ALLOWED);

/** protocol/ is loaded by the plugin on every pod: node builtins only, and ajv for the daemon's validator. */
const PROTOCOL_PACKAGES = ['ajv'];

/** file (repo-relative) -> what it imports: resolved repo-relative files, or bare package names. */
interface ImportGraph {
  files: Map<string, { files: string[]; packages: string[]; unresolved: string[] }>;
}

const folderOf = (file: string): string => file.split('/')[0];

function productFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith('.ts')) out.push(relative(ROOT, path));
    }
  };
  for (const folder of FOLDERS) if (existsSync(join(ROOT, folder))) walk(join(ROOT, folder));
  return out.sort();
}

function resolveRelative(fromFile: string, spec: string): string | undefined {
  const base = resolve(ROOT, dirname(fromFile), spec);
  for (const candidate of [base, `${base}.ts`, join(base, 'index.ts')]) {
    if (existsSync(candidate) && statSync(candidate).isFile()) return relative(ROOT, candidate);
  }
  return undefined;
}

function readGraph(): ImportGraph {
  const files: ImportGraph['files'] = new Map();
  for (const file of productFiles()) {
    const source = readFileSync(join(ROOT, file), 'utf8');
    const entry = { files: [] as string[], packages: [] as string[], unresolved: [] as string[] };
    // The compiler's own scanner: import/export-from (type-only too), import() and require().
    for (const { fileName: spec } of ts.preProcessFile(source, true, true).importedFiles) {
      if (spec.startsWith('.')) {
        const target = resolveRelative(file, spec);
        if (target === undefined) entry.unresolved.push(spec);
        else entry.files.push(target);
      } else {
        entry.packages.push(spec);
      }
    }
    files.set(file, entry);
  }
  return { files };
}

/** Every problem of the graph, one line each, in a stable order. */
function checkGraph(graph: ImportGraph): string[] {
  const problems: string[] = [];
  for (const [file, imports] of graph.files) {
    const from = folderOf(file);
    for (const spec of imports.unresolved) problems.push(`${file}: cannot resolve import '${spec}'`);
    for (const target of imports.files) {
      const to = folderOf(target);
      if (!(ALLOWED[from] ?? []).includes(to)) {
        problems.push(`${file}: forbidden import of ${target} (${from}/ may import only ${ALLOWED[from].map((f) => `${f}/`).join(', ')})`);
      }
    }
    if (from === 'protocol') {
      for (const name of imports.packages) {
        if (!name.startsWith('node:') && !PROTOCOL_PACKAGES.includes(name)) {
          problems.push(`${file}: forbidden package '${name}' (protocol/ may use only node: builtins and ${PROTOCOL_PACKAGES.join(', ')})`);
        }
      }
    }
  }
  for (const cycle of cycles(graph)) problems.push(`import cycle: ${cycle.join(' -> ')}`);
  return problems;
}

/**
 * One cycle per strongly connected component (Tarjan), written from the component's first file
 * by name along a shortest path back to it, so a message names the same cycle on every run.
 */
function cycles(graph: ImportGraph): string[][] {
  const edges = (file: string): string[] => [...new Set(graph.files.get(file)?.files ?? [])].filter((f) => graph.files.has(f)).sort();
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const visit = (file: string): void => {
    index.set(file, index.size);
    low.set(file, index.get(file)!);
    stack.push(file);
    onStack.add(file);
    for (const next of edges(file)) {
      if (!index.has(next)) {
        visit(next);
        low.set(file, Math.min(low.get(file)!, low.get(next)!));
      } else if (onStack.has(next)) {
        low.set(file, Math.min(low.get(file)!, index.get(next)!));
      }
    }
    if (low.get(file) === index.get(file)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== file);
      if (component.length > 1 || edges(file).includes(file)) components.push(component.sort());
    }
  };
  for (const file of [...graph.files.keys()].sort()) if (!index.has(file)) visit(file);

  return components.sort((a, b) => a[0].localeCompare(b[0])).map((component) => {
    const start = component[0];
    const inside = new Set(component);
    // breadth-first from start until an edge leads back to it, inside the component
    const parent = new Map<string, string>();
    const queue = [start];
    for (;;) {
      const file = queue.shift()!;
      for (const next of edges(file).filter((f) => inside.has(f))) {
        if (next === start) {
          const path = [file];
          while (path[0] !== start) path.unshift(parent.get(path[0])!);
          return [...path, start];
        }
        if (!parent.has(next)) {
          parent.set(next, file);
          queue.push(next);
        }
      }
    }
  });
}

describe('the import graph', () => {
  const graph = readGraph();

  test('the scan sees the product: files in every folder that exists, and the imports that tie them', () => {
    const folders = new Set([...graph.files.keys()].map(folderOf));
    for (const folder of ['bpf', 'protocol', 'plugin', 'daemon', 'install']) assert.ok(folders.has(folder), `no .ts file found in ${folder}/`);
    assert.ok(graph.files.get('plugin/notify.ts')?.files.includes('protocol/endpoints.ts'), 'plugin/notify.ts -> protocol/endpoints.ts not seen');
    assert.ok(graph.files.get('daemon/agent/agent.ts')?.files.includes('bpf/pins.ts'), 'daemon/agent/agent.ts -> bpf/pins.ts not seen');
  });

  test('no cycle, no import across the folder rules, protocol/ light', () => {
    assert.deepEqual(checkGraph(graph), []);
  });
});

describe('the import-graph check itself', () => {
  test('the folder rules: exactly these folder pairs are forbidden', () => {
    const forbidden = FOLDERS.flatMap((from) => FOLDERS.filter((to) => !ALLOWED[from].includes(to)).map((to) => `${from}->${to}`));
    assert.deepEqual(forbidden, [
      'native->bpf', 'native->netlink', 'native->protocol', 'native->plugin', 'native->daemon', 'native->install',
      'bpf->protocol', 'bpf->plugin', 'bpf->daemon', 'bpf->install',
      'netlink->bpf', 'netlink->protocol', 'netlink->plugin', 'netlink->daemon', 'netlink->install',
      'protocol->native', 'protocol->bpf', 'protocol->netlink', 'protocol->plugin', 'protocol->daemon', 'protocol->install',
      'plugin->daemon', 'plugin->install',
      'daemon->plugin',
      'install->daemon',
    ]);
  });

  test('a synthetic graph: each kind of problem, with its exact message', () => {
    const node = (files: string[], packages: string[] = [], unresolved: string[] = []) => ({ files, packages, unresolved });
    const graph: ImportGraph = {
      files: new Map([
        // a three-file cycle inside daemon/, entered from main.ts (which is not part of it)
        ['daemon/main.ts', node(['daemon/b.ts'])],
        ['daemon/b.ts', node(['daemon/c.ts'])],
        ['daemon/c.ts', node(['daemon/d.ts'])],
        ['daemon/d.ts', node(['daemon/b.ts', 'protocol/p.ts'])],
        // plugin <-> daemon both ways, which is also a cycle across folders; and test code
        ['plugin/x.ts', node(['daemon/y.ts', 'protocol/p.ts', 'test/helpers/fake.ts'])],
        ['daemon/y.ts', node(['plugin/x.ts'])],
        ['protocol/p.ts', node([], ['node:fs', 'ajv', 'yaml'], ['./gone'])],
        ['bpf/q.ts', node(['protocol/p.ts'])],
        ['install/i.ts', node(['plugin/x.ts', 'daemon/d.ts'])],
        ['daemon/self.ts', node(['daemon/self.ts'])],
      ]),
    };
    assert.deepEqual(checkGraph(graph), [
      'plugin/x.ts: forbidden import of daemon/y.ts (plugin/ may import only plugin/, protocol/, bpf/, netlink/, native/)',
      'plugin/x.ts: forbidden import of test/helpers/fake.ts (plugin/ may import only plugin/, protocol/, bpf/, netlink/, native/)',
      'daemon/y.ts: forbidden import of plugin/x.ts (daemon/ may import only daemon/, protocol/, bpf/, netlink/, native/, install/)',
      "protocol/p.ts: cannot resolve import './gone'",
      "protocol/p.ts: forbidden package 'yaml' (protocol/ may use only node: builtins and ajv)",
      'bpf/q.ts: forbidden import of protocol/p.ts (bpf/ may import only bpf/, netlink/, native/)',
      'install/i.ts: forbidden import of daemon/d.ts (install/ may import only install/, protocol/, plugin/, bpf/, netlink/, native/)',
      'import cycle: daemon/b.ts -> daemon/c.ts -> daemon/d.ts -> daemon/b.ts',
      'import cycle: daemon/self.ts -> daemon/self.ts',
      'import cycle: daemon/y.ts -> plugin/x.ts -> daemon/y.ts',
    ]);
  });
});
