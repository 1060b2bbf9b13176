// Running commands for the test harness: in the root namespace or inside a named
// network namespace (`ip netns exec`), always with argument arrays, never a shell.
import { readFileSync } from 'node:fs';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';

export interface RunOptions {
  /** Kill the command after this long (default 30 s). */
  timeoutMs?: number;
  /** Data written to the command's stdin. */
  input?: string;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

export class CommandError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly code: number | string | null,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    super(`command failed (${code}): ${argv.join(' ')}${stderr.trim() ? `\n${stderr.trim()}` : ''}`);
    this.name = 'CommandError';
  }
}

/** argv prefixed so that it runs inside `netns` (null = the root namespace, i.e. as is). */
export function inNetns(netns: string | null, argv: readonly string[]): string[] {
  return netns === null ? [...argv] : ['ip', 'netns', 'exec', netns, ...argv];
}

/** Run a command to completion; rejects with CommandError on a non-zero exit. */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [file, ...args] = argv;
  if (!file) return Promise.reject(new Error('run: empty argv'));
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err) {
          const e = err as NodeJS.ErrnoException & { code?: number | string | null; killed?: boolean };
          const code = e.killed ? 'timeout' : (e.code ?? null);
          reject(new CommandError(argv, code, stdout, stderr));
        } else {
          resolve({ stdout, stderr });
        }
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Run inside a namespace (null = root). */
export function runIn(netns: string | null, argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
  return run(inNetns(netns, argv), opts);
}

/** Synchronous variant, used by cleanup (which must also work from an 'exit' handler). */
export function runSync(argv: readonly string[], timeoutMs = 15_000): RunResult {
  const [file, ...args] = argv;
  if (!file) throw new Error('runSync: empty argv');
  try {
    const stdout = execFileSync(file, args, { timeout: timeoutMs, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { stdout, stderr: '' };
  } catch (err) {
    const e = err as { status?: number | null; stdout?: string; stderr?: string };
    throw new CommandError(argv, e.status ?? null, String(e.stdout ?? ''), String(e.stderr ?? ''));
  }
}

/** `ip [-n ns] -j <args>` parsed as JSON. */
export async function ipJson<T = unknown>(netns: string | null, args: readonly string[]): Promise<T[]> {
  const argv = netns === null ? ['ip', '-j', ...args] : ['ip', '-n', netns, '-j', ...args];
  const { stdout } = await run(argv);
  const text = stdout.trim();
  return text ? (JSON.parse(text) as T[]) : [];
}

/** `ip [-n ns] <args>` */
export function ip(netns: string | null, args: readonly string[]): Promise<RunResult> {
  return run(netns === null ? ['ip', ...args] : ['ip', '-n', netns, ...args]);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Blocking sleep for synchronous cleanup paths. */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** True while `pid` exists and is not a zombie (an exited child nobody reaped yet counts as gone). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** SIGTERM one pid, wait up to graceMs, then SIGKILL it. Synchronous. */
export function killPidSync(pid: number, graceMs = 2000): void {
  if (!pidAlive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!pidAlive(pid)) return;
    sleepSync(20);
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
  const hard = Date.now() + 2000;
  while (Date.now() < hard && pidAlive(pid)) sleepSync(20);
}

export { spawn, type ChildProcess };
