// Cleanup registry for tests. Everything a test creates (namespaces, links, processes,
// sysctl changes) is registered on a Scope together with the synchronous action that
// undoes it; Scope.close() runs those actions in reverse order. Open scopes are also
// closed from process 'exit', SIGINT and SIGTERM handlers as a last resort.
//
// Names: every name the harness gives out starts with a per-process prefix
// `ihr` + 4 random hex digits, followed by a short tag and a process-wide counter,
// so parallel runs and other sessions never collide, and leftovers are easy to spot.
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { inNetns, killPidSync, spawn, type ChildProcess } from './exec';

export const IFNAMSIZ_MAX = 15;

let prefix: string | undefined;
let counter = 0;

function existingNames(): string[] {
  const names: string[] = [];
  try {
    names.push(...readdirSync('/sys/class/net'));
  } catch {
    /* no sysfs */
  }
  try {
    names.push(...readdirSync('/run/netns'));
  } catch {
    /* no namespaces yet */
  }
  return names;
}

/** The per-process name prefix, e.g. `ihr3fa2`. Chosen once, unused by any existing link or netns. */
export function runPrefix(): string {
  if (prefix) return prefix;
  const taken = existingNames();
  for (let i = 0; i < 64; i++) {
    const candidate = `ihr${randomBytes(2).toString('hex')}`;
    if (!taken.some((n) => n.startsWith(candidate))) {
      prefix = candidate;
      return candidate;
    }
  }
  throw new Error('could not find a free harness name prefix');
}

/** A fresh unique name `<prefix><tag><n>`; throws if it would not fit an interface name. */
export function uniqueName(tag: string, maxLen = IFNAMSIZ_MAX): string {
  counter += 1;
  const name = `${runPrefix()}${tag}${counter}`;
  if (name.length > maxLen) throw new Error(`harness name ${name} is longer than ${maxLen} characters`);
  return name;
}

export interface CleanupStep {
  label: string;
  undo: () => void;
}

export interface CleanupFailure {
  label: string;
  error: unknown;
}

const openScopes = new Set<Scope>();
let handlersInstalled = false;

function closeAllSync(): void {
  for (const s of [...openScopes].reverse()) {
    try {
      s.close();
    } catch {
      /* last resort: keep going */
    }
  }
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', closeAllSync);
  for (const [sig, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.on(sig, () => {
      closeAllSync();
      process.exit(code);
    });
  }
}

export interface LineWaiter {
  (pred: (line: string) => boolean, timeoutMs: number, what: string): Promise<string>;
}

/** A child process started by the harness, killed by pid when its scope closes. */
export interface TrackedProcess {
  readonly pid: number;
  readonly argv: readonly string[];
  readonly child: ChildProcess;
  /** All stdout lines so far. */
  readonly lines: string[];
  /** Resolves with the first stdout line (past or future) matching pred. */
  waitForLine: LineWaiter;
  /** Resolves when the process exits (never rejects). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
  /** SIGTERM (then SIGKILL) this pid now. */
  kill(): void;
}

export class Scope {
  readonly prefix = runPrefix();
  private readonly steps: CleanupStep[] = [];
  private readonly procs: TrackedProcess[] = [];
  private closed = false;
  /** Failures of the last close(), for assertions. */
  failures: CleanupFailure[] = [];

  constructor() {
    installHandlers();
    openScopes.add(this);
  }

  /** A fresh unique name with this run's prefix. */
  name(tag: string, maxLen = IFNAMSIZ_MAX): string {
    return uniqueName(tag, maxLen);
  }

  /** Register an undo action; actions run in reverse order of registration. */
  defer(label: string, undo: () => void): void {
    if (this.closed) throw new Error(`scope already closed; cannot register ${label}`);
    this.steps.push({ label, undo });
  }

  /** Undo everything registered, newest first. Never throws; failures are returned. */
  close(): CleanupFailure[] {
    if (this.closed) return this.failures;
    this.closed = true;
    openScopes.delete(this);
    const failures: CleanupFailure[] = [];
    while (this.steps.length > 0) {
      const step = this.steps.pop()!;
      try {
        step.undo();
      } catch (error) {
        failures.push({ label: step.label, error });
      }
    }
    this.failures = failures;
    return failures;
  }

  /** Every process started on this scope (running or not). */
  get processes(): readonly TrackedProcess[] {
    return this.procs;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Start a long-running command inside `netns` (null = root). Its pid is registered and
   * it is killed (that pid only) when the scope closes.
   */
  spawn(netns: string | null, argv: readonly string[], opts: { env?: NodeJS.ProcessEnv } = {}): TrackedProcess {
    const full = inNetns(netns, argv);
    const child = spawn(full[0]!, full.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
    const pid = child.pid;
    if (pid === undefined) throw new Error(`could not start ${full.join(' ')}`);
    const lines: string[] = [];
    const listeners = new Set<(line: string) => void>();
    let stdout = '';
    let stderr = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => {
      stderr += d;
    });
    const rl = createInterface({ input: child.stdout! });
    rl.on('line', (line) => {
      stdout += `${line}\n`;
      lines.push(line);
      for (const l of listeners) l(line);
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>(
      (resolve) => {
        let code: number | null = null;
        let signal: NodeJS.Signals | null = null;
        let exitedFlag = false;
        let closedRl = false;
        const done = () => {
          if (exitedFlag && closedRl) resolve({ code, signal, stdout, stderr });
        };
        child.on('exit', (c, s) => {
          code = c;
          signal = s;
          exitedFlag = true;
          done();
        });
        child.on('error', (err) => {
          stderr += String(err);
          exitedFlag = true;
          closedRl = true;
          done();
        });
        rl.on('close', () => {
          closedRl = true;
          done();
        });
      },
    );
    let finished = false;
    void exited.then(() => {
      finished = true;
    });
    const waitForLine: LineWaiter = (pred, timeoutMs, what) =>
      new Promise<string>((resolve, reject) => {
        const hit = lines.find(pred);
        if (hit !== undefined) return resolve(hit);
        const timer = setTimeout(() => {
          listeners.delete(onLine);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what} from ${full.join(' ')}\nstderr: ${stderr}`));
        }, timeoutMs);
        const onLine = (line: string) => {
          if (!pred(line)) return;
          clearTimeout(timer);
          listeners.delete(onLine);
          resolve(line);
        };
        listeners.add(onLine);
        void exited.then((r) => {
          if (!listeners.has(onLine)) return;
          clearTimeout(timer);
          listeners.delete(onLine);
          reject(new Error(`${full.join(' ')} exited (${r.code ?? r.signal}) before ${what}\nstderr: ${r.stderr}`));
        });
      });
    const kill = () => {
      if (!finished) killPidSync(pid);
    };
    this.defer(`process ${pid} (${argv.join(' ')})`, kill);
    const tracked: TrackedProcess = { pid, argv: full, child, lines, waitForLine, exited, kill };
    this.procs.push(tracked);
    return tracked;
  }
}

/** Run fn with a fresh scope that is always closed afterwards, even when fn throws. */
export async function withScope<T>(fn: (scope: Scope) => Promise<T>): Promise<T> {
  const scope = new Scope();
  try {
    return await fn(scope);
  } finally {
    scope.close();
  }
}
