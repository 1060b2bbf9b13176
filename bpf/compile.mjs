// Compiles BPF C files (*.bpf.c) to objects with the datapath's headers (bpf/progs) on the include
// path. Used by build.mjs for the product object and by test/bpf/build.mjs for the test objects.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, statSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const progsDir = join(root, 'bpf', 'progs');
const defaultLibbpfInclude = join(root, 'build', 'libbpf', 'include');

/**
 * Compiles every *.bpf.c of srcDir whose object in outDir is older than it, the datapath's sources
 * in bpf/progs, or a file of `dependsOn` (e.g. libbpf.a, standing for its headers). Returns the
 * objects it (re)built.
 */
export function compileBpfDir(srcDir, outDir, { dependsOn = [], libbpfInclude = defaultLibbpfInclude } = {}) {
  if (!existsSync(libbpfInclude)) throw new Error(`${libbpfInclude} is missing: run "node build.mjs libbpf" first`);
  mkdirSync(outDir, { recursive: true });
  const headers = readdirSync(progsDir).filter((f) => f.endsWith('.h')).map((f) => join(progsDir, f));
  // -target bpf has no multiarch include path of its own: <asm/types.h> lives there.
  const multiarch = execFileSync('gcc', ['-print-multiarch'], { encoding: 'utf8' }).trim();
  const built = [];
  for (const f of readdirSync(srcDir).filter((f) => f.endsWith('.bpf.c'))) {
    const target = join(outDir, f.replace(/\.c$/, '.o'));
    const newestSource = Math.max(...[join(srcDir, f), join(progsDir, 'datapath.bpf.c'), ...headers, ...dependsOn].map((p) => statSync(p).mtimeMs));
    if (existsSync(target) && statSync(target).mtimeMs >= newestSource) continue;
    console.log(`build: ${f}`);
    const tmp = `${target}.tmp-${process.pid}`;
    execFileSync('clang', ['-target', 'bpf', '-O2', '-g', '-Wall', '-Werror',
      '-I', libbpfInclude, '-I', progsDir, '-idirafter', `/usr/include/${multiarch}`,
      '-c', join(srcDir, f), '-o', tmp], { stdio: ['ignore', 'inherit', 'inherit'] });
    renameSync(tmp, target); // a process loading the old object never reads half of the new one
    built.push(target);
  }
  return built;
}
