// int-host-reporter CNI plugin entry: read stdin, run the verb, print, exit.
// Bundled by build.mjs into the plugin's build dir (plugin.cjs); also runs as `node --import tsx plugin/main.ts`.
import { readSync, writeSync } from 'node:fs';
import { runPlugin } from './contract';
import type { DatapathOptions, PluginDatapath } from './datapath';
import { CniError, ERR_IO, errorJson } from './errors';
import { LATEST_VERSION } from './result';

async function openDatapath(options: DatapathOptions): Promise<PluginDatapath> {
  // Loaded lazily: VERSION, STATUS and config errors never pay for the native addon.
  const { createBpfDatapath } = await import('./datapath-bpf');
  return createBpfDatapath(options);
}

// stdin and stdout are read and written with plain fd syscalls: the process.stdin/stdout streams
// would cost a few ms of start-up (stream and socket machinery) on every pod. A non-blocking fd
// (EAGAIN) falls back to the streams.
function readStdin(): Promise<string> | string {
  const chunks: Buffer[] = [];
  const buf = Buffer.allocUnsafe(64 * 1024);
  for (;;) {
    let n: number;
    try {
      n = readSync(0, buf, 0, buf.length, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return readStdinStream(chunks);
      throw err;
    }
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  return Buffer.concat(chunks).toString('utf8');
}

function readStdinStream(chunks: Buffer[]): Promise<string> {
  return new Promise((resolve, reject) => {
    process.stdin.on('data', (chunk: Buffer) => chunks.push(chunk));
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    process.stdin.on('error', reject);
  });
}

/** Writes all of text to stdout, then exits with code. */
function writeAndExit(text: string, code: number): void {
  const data = Buffer.from(text, 'utf8');
  let off = 0;
  try {
    while (off < data.length) off += writeSync(1, data, off, data.length - off);
  } catch (err) {
    // Nobody reads our answer any more (EPIPE...): the exit code is all that is left to give.
    if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') process.exit(code);
    // Exit as soon as stdout is flushed: a lingering handle must not hold up the runtime.
    process.stdout.write(data.subarray(off), () => process.exit(code));
    return;
  }
  process.exit(code);
}

async function main(): Promise<void> {
  let stdout: string;
  let exitCode: number;
  try {
    ({ stdout, exitCode } = await runPlugin({ env: process.env, stdin: await readStdin() }, { openDatapath }));
  } catch (err) {
    const ioError = new CniError(ERR_IO, 'error reading from stdin', err instanceof Error ? err.message : String(err));
    stdout = JSON.stringify(errorJson(ioError, LATEST_VERSION)) + '\n';
    exitCode = 1;
  }
  writeAndExit(stdout, exitCode);
}

// The installer's self-test (plugin/preflight.ts): an argv flag, no CNI verb. Imported lazily so
// the per-pod verbs do not pay for it.
if (process.argv[2] === '--preflight') void import('./preflight').then((p) => p.main());
else void main();
