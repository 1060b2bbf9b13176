// `npm run bench`: runs the benchmarks (all, or those named as arguments: datapath pipeline
// plugin), prints one table per measurement and a summary of the issues' goals, and writes the
// tables to docs/benchmarks.md. Each benchmark has its own time budget and cleans up everything
// it created (namespaces, veths, pins, processes) also when it fails or runs out of time.
//   node --import tsx test/bench/run.ts [datapath] [pipeline] [plugin] [--quick] [--no-write]
import { writeFileSync, mkdirSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { Scope } from '../helpers/scope';
import { benchDatapath, DATAPATH_DEFAULTS } from './datapath';
import { benchPipeline, PIPELINE_DEFAULTS } from './pipeline';
import { benchPlugin, PLUGIN_DEFAULTS } from './plugin';
import { goalsTable, markdownTable, renderTable, type BenchResult, type GoalRow, type Table } from './report';

interface Bench {
  name: string;
  budgetMs: number;
  run(scope: Scope, quick: boolean, log: (s: string) => void): Promise<BenchResult>;
}

const BENCHES: Bench[] = [
  {
    name: 'datapath',
    budgetMs: 600_000,
    run: (s, quick, log) => benchDatapath(s, quick ? { ...DATAPATH_DEFAULTS, rounds: 1, tcpSeconds: 2, udpSeconds: 2, costTrials: 1 } : DATAPATH_DEFAULTS, log),
  },
  {
    name: 'pipeline',
    budgetMs: 180_000,
    run: (s, quick, log) => benchPipeline(s, quick ? { ...PIPELINE_DEFAULTS, trials: 1, floodSeconds: 2, syntheticSeconds: 1 } : PIPELINE_DEFAULTS, log),
  },
  {
    name: 'plugin',
    budgetMs: 120_000,
    run: (s, quick, log) => benchPlugin(s, quick ? { ...PLUGIN_DEFAULTS, n: 5 } : PLUGIN_DEFAULTS, log),
  },
];

function log(s: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
}

/** Runs one benchmark in its own scope, bounded by its budget; the scope is closed in any case. */
async function runBounded(b: Bench, quick: boolean): Promise<BenchResult> {
  const scope = new Scope();
  let timer: NodeJS.Timeout | undefined;
  const work = b.run(scope, quick, log);
  work.catch(() => undefined); // if the budget wins, the abandoned run's late failure is expected
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${b.name}: over its ${b.budgetMs / 1000} s budget`)), b.budgetMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    const failures = scope.close();
    for (const f of failures) log(`${b.name}: cleanup of ${f.label} failed: ${String((f.error as Error)?.message ?? f.error)}`);
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const write = !args.includes('--no-write') && !quick;
  const names = args.filter((a) => !a.startsWith('--'));
  const unknown = names.filter((n) => !BENCHES.some((b) => b.name === n));
  if (unknown.length) {
    console.error(`unknown benchmark(s): ${unknown.join(', ')}; choose from ${BENCHES.map((b) => b.name).join(', ')}`);
    process.exit(2);
  }
  if (process.getuid && process.getuid() !== 0) {
    console.error('benchmarks: run as root (they load eBPF programs and create network namespaces)');
    process.exit(1);
  }
  const selected = names.length ? BENCHES.filter((b) => names.includes(b.name)) : BENCHES;
  const machine = `${cpus().length} vCPU (${cpus()[0]?.model ?? '?'}), kernel ${release()}, node ${process.version}`;
  console.log(`int-host-reporter benchmarks — ${machine}\n`);

  const tables: Table[] = [];
  const goals: GoalRow[] = [];
  let failed = false;
  const started = Date.now();
  for (const b of selected) {
    log(`${b.name}: start`);
    const t0 = Date.now();
    try {
      const r = await runBounded(b, quick);
      for (const t of r.tables) console.log(`${renderTable(t)}\n`);
      tables.push(...r.tables);
      goals.push(...r.goals);
    } catch (e) {
      failed = true;
      const msg = (e as Error).stack ?? String(e);
      console.log(`${b.name}: FAILED — ${msg}\n`);
      goals.push({ benchmark: b.name, goal: '(benchmark failed)', measured: (e as Error).message.split('\n')[0], met: false });
    }
    log(`${b.name}: done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
  const summary = goalsTable(goals);
  console.log(renderTable(summary));
  console.log(`\ntotal ${((Date.now() - started) / 1000).toFixed(0)} s`);

  if (write) {
    const dir = join(__dirname, '..', '..', 'docs');
    mkdirSync(dir, { recursive: true });
    const md = [
      '# Benchmarks',
      '',
      `Written by \`npm run bench\` (test/bench/run.ts${names.length ? ` ${names.join(' ')}` : ''}) on ${new Date().toISOString().slice(0, 10)}.`,
      `Machine: ${machine}. Numbers on a small VM are noisy: each is the median of repeated trials.`,
      '',
      markdownTable(summary),
      '',
      '## Details',
      '',
      ...tables.flatMap((t) => [markdownTable(t), '']),
    ].join('\n');
    writeFileSync(join(dir, 'benchmarks.md'), md);
    log(`wrote docs/benchmarks.md`);
  }
  process.exitCode = failed ? 1 : 0;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
