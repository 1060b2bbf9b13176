// `int-host-reporter manifests`: prints the deployment (install/manifests.ts renders it), the way
// `linkerd install` and `cilium install` do, so the YAML matches the binary that printed it; with
// --uninstall, the cleanup DaemonSet that removes it from the nodes.
import { CLEANUP_NAME, DEFAULT_MANIFEST_OPTIONS, renderManifests, renderUninstall, type ManifestOptions } from '../../install/manifests';
import { parseCollectors } from '../config/values';

export const MANIFESTS_USAGE = `Usage: int-host-reporter manifests [options]

Prints the Kubernetes objects that deploy int-host-reporter (namespace, service account, RBAC,
ConfigMap, DaemonSet) as one YAML stream:  int-host-reporter manifests | kubectl apply -f -

  --namespace NS         namespace of the objects (default ${DEFAULT_MANIFEST_OPTIONS.namespace}; created when not kube-system)
  --image IMG            container image (default ${DEFAULT_MANIFEST_OPTIONS.image})
  --collector HOST:PORT  the INT collector, into the ConfigMap (default ${DEFAULT_MANIFEST_OPTIONS.collector})
  --cni-bin-dir DIR      the nodes' CNI plugin dir (default ${DEFAULT_MANIFEST_OPTIONS.cniBinDir})
  --cni-conf-dir DIR     the nodes' CNI config dir (default ${DEFAULT_MANIFEST_OPTIONS.cniConfDir})
  --privileged           run the daemon privileged instead of with capabilities (kernels before 5.8)
  --uninstall            print instead the DaemonSet ${CLEANUP_NAME}, which removes everything of ours
                         from every node (give the options of the install): after
                         kubectl -n NS delete daemonset int-host-reporter, apply it, wait for
                         kubectl -n NS rollout status daemonset ${CLEANUP_NAME}, then delete it
`;

class UsageError extends Error {}

const VALUE_FLAGS: Record<string, keyof ManifestOptions> = {
  namespace: 'namespace', image: 'image', collector: 'collector', 'cni-bin-dir': 'cniBinDir', 'cni-conf-dir': 'cniConfDir',
};

/** The options, each checked here so a typo fails now rather than at `kubectl apply` or on the node. */
export function parseManifestArgs(argv: string[]): { options: ManifestOptions; uninstall: boolean } {
  const o: ManifestOptions = { ...DEFAULT_MANIFEST_OPTIONS };
  let uninstall = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--privileged') {
      o.privileged = true;
      continue;
    }
    if (a === '--uninstall') {
      uninstall = true;
      continue;
    }
    const m = /^--([a-z-]+)(?:=(.*))?$/s.exec(a);
    const key = m ? VALUE_FLAGS[m[1]] : undefined;
    if (!m || !key) throw new UsageError(`unknown option ${a}`);
    const v = m[2] ?? argv[++i];
    if (v === undefined || v === '') throw new UsageError(`--${m[1]} needs a value`);
    (o as unknown as Record<string, string>)[key] = v;
  }
  // A DNS-1123 label, as Kubernetes requires of a namespace name.
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(o.namespace)) throw new UsageError(`--namespace ${JSON.stringify(o.namespace)} is not a valid namespace name`);
  if (/\s/.test(o.image)) throw new UsageError(`--image ${JSON.stringify(o.image)} contains white space`);
  try {
    parseCollectors(o.collector);
  } catch (e) {
    throw new UsageError(`--collector ${JSON.stringify(o.collector)} ${(e as Error).message}`);
  }
  for (const [flag, dir] of [['cni-bin-dir', o.cniBinDir], ['cni-conf-dir', o.cniConfDir]]) {
    if (!dir.startsWith('/')) throw new UsageError(`--${flag} ${JSON.stringify(dir)} must be an absolute path`);
  }
  return { options: o, uninstall };
}

export function runManifests(argv: string[], out: NodeJS.WritableStream = process.stdout): number {
  if (argv.includes('-h') || argv.includes('--help')) {
    out.write(MANIFESTS_USAGE);
    return 0;
  }
  try {
    const { options, uninstall } = parseManifestArgs(argv);
    out.write(uninstall ? renderUninstall(options) : renderManifests(options));
    return 0;
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`int-host-reporter manifests: ${e.message}\n\n${MANIFESTS_USAGE}`);
    return 2;
  }
}
