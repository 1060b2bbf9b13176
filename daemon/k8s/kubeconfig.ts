// Where the pod watch gets its API server from. In a DaemonSet that is the service account
// (in-cluster); on a developer machine KUBECONFIG. With neither, the daemon runs without
// Kubernetes: unlike KubeConfig.loadFromDefault() we never fall back to http://localhost:8080.
import { existsSync } from 'node:fs';
import { delimiter } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';

export const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

export type KubeConfigSource = 'kubeconfig' | 'in-cluster' | 'explicit';

export type LoadedKubeConfig =
  | { ok: true; kubeConfig: KubeConfig; source: KubeConfigSource; server: string }
  | { ok: false; reason: string };

export interface LoadKubeConfigOptions {
  env?: NodeJS.ProcessEnv;
  /** prefix for the service-account files (tests); the client appends the standard path */
  inClusterPathPrefix?: string;
}

/** A kubeconfig for one server without credentials (tests, `kubectl proxy`). */
export function kubeConfigForServer(server: string): KubeConfig {
  const url = new URL(server);
  const kc = new KubeConfig();
  // The client refuses plain http unless skipTLSVerify is set; there is no TLS to verify then.
  kc.loadFromClusterAndUser(
    { name: 'explicit', server: url.origin, skipTLSVerify: url.protocol === 'http:' },
    { name: 'anonymous' },
  );
  return kc;
}

/** KUBECONFIG first (an explicit choice of whoever started us), then the service account. */
export function loadKubeConfig(opts: LoadKubeConfigOptions = {}): LoadedKubeConfig {
  const env = opts.env ?? process.env;
  const files = (env.KUBECONFIG ?? '').split(delimiter).filter((f) => f !== '');
  if (files.length > 0) {
    try {
      const kc = new KubeConfig();
      kc.loadFromFile(files[0]);
      for (const file of files.slice(1)) {
        const more = new KubeConfig();
        more.loadFromFile(file);
        kc.mergeConfig(more);
      }
      return withServer(kc, 'kubeconfig', `KUBECONFIG (${files.join(delimiter)})`);
    } catch (err) {
      return { ok: false, reason: `KUBECONFIG ${files.join(delimiter)}: ${(err as Error).message}` };
    }
  }
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  const prefix = opts.inClusterPathPrefix ?? '';
  if (host && port) {
    if (!existsSync(`${prefix}${SERVICE_ACCOUNT_TOKEN}`)) {
      return { ok: false, reason: `KUBERNETES_SERVICE_HOST is set but there is no service account token at ${prefix}${SERVICE_ACCOUNT_TOKEN}` };
    }
    // loadFromCluster reads process.env itself; hand it the environment we were given.
    const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
    try {
      process.env.KUBERNETES_SERVICE_HOST = host;
      process.env.KUBERNETES_SERVICE_PORT = port;
      const kc = new KubeConfig();
      kc.loadFromCluster(prefix);
      return withServer(kc, 'in-cluster', 'in-cluster config');
    } finally {
      restoreEnv('KUBERNETES_SERVICE_HOST', saved.host);
      restoreEnv('KUBERNETES_SERVICE_PORT', saved.port);
    }
  }
  return { ok: false, reason: 'no in-cluster service account (KUBERNETES_SERVICE_HOST unset) and no KUBECONFIG' };
}

function withServer(kc: KubeConfig, source: KubeConfigSource, what: string): LoadedKubeConfig {
  const server = kc.getCurrentCluster()?.server;
  if (!server) return { ok: false, reason: `${what} has no current cluster with a server` };
  return { ok: true, kubeConfig: kc, source, server };
}

function restoreEnv(name: string, value: string | undefined): void {
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
}
