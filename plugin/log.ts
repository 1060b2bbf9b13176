// Plugin logging: JSON lines to a log file when configured, else to stderr. Never stdout, which
// belongs to the CNI result. Kept tiny on purpose (pino would cost start-up time on every pod).
import { appendFileSync } from 'node:fs';

export type Level = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  log(level: Level, msg: string, fields?: Record<string, unknown>): void;
}

export function createLogger(context: Record<string, unknown>, logFile?: string): Logger {
  return {
    log(level, msg, fields = {}) {
      const line = JSON.stringify({ time: new Date().toISOString(), level, plugin: 'int-host-reporter', ...context, msg, ...fields }) + '\n';
      try {
        if (logFile) appendFileSync(logFile, line);
        else process.stderr.write(line);
      } catch {
        // a broken log destination must not break a pod's networking
      }
    },
  };
}
