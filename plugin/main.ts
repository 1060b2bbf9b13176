// int-host-reporter CNI plugin entry: read stdin, run the verb, print, exit.
// Bundled by build.mjs into dist/cni/int-host-reporter; also runs as `node --import tsx plugin/main.ts`.
import { runPlugin } from './contract';
import type { DatapathOptions, PluginDatapath } from './datapath';
import { createFakeDatapath, FAKE_DATAPATH_ENV } from './datapath-fake';
import { CniError, ERR_IO, errorJson } from './errors';
import { LATEST_VERSION } from './result';

async function openDatapath(options: DatapathOptions): Promise<PluginDatapath> {
  const fakeState = process.env[FAKE_DATAPATH_ENV];
  if (fakeState) return createFakeDatapath(fakeState); // contract tests only
  // Loaded lazily: VERSION, STATUS and config errors never pay for the native addon.
  const { createBpfDatapath } = await import('./datapath-bpf');
  return createBpfDatapath(options);
}

function readStdin(): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    process.stdin.on('data', (chunk: Buffer) => chunks.push(chunk));
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    process.stdin.on('error', reject);
  });
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
  // Exit as soon as stdout is flushed: a lingering handle must not hold up the runtime.
  process.stdout.write(stdout, () => process.exit(exitCode));
}

void main();
