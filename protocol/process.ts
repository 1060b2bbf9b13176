// Whether a process exists, for judging who left a lock or a temp file behind.
import { errnoCode } from './errno';

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but is not ours to signal; ESRCH: no such process
    const code = errnoCode(err);
    if (code === 'EPERM') return true;
    if (code === 'ESRCH') return false;
    throw err;
  }
}
