// The DaemonSet run the way a node runs it, with podman standing in for the kubelet:
//
//   renderManifests   `int-host-reporter manifests <options>` (the product's renderer), parsed
//   podFromDaemonSet  the DaemonSet's pod template as a Pod: kind Pod, metadata and spec copied
//   resolveDownwardApi the env fieldRefs podman 4.3 cannot resolve (spec.nodeName, status.hostIP,
//                     ...) set to the values a kubelet would give them; everything else as it is
//   seccompAnnotations each securityContext.seccompProfile (which podman 4.3 ignores) also as the
//                     seccomp annotation podman reads, with the same meaning
//   KubePlay          `podman kube play` / `podman kube down` with a podman of its own: containers,
//                     pods, volumes, the pause image and images built by the test live in a temp
//                     dir (overlay graph root); images already in the machine's store are read
//                     from there (additionalimagestores, read-only), never written.
//
// What podman 4.3.1 does with such a pod (measured on this machine, see daemonset.test.ts):
//   hostNetwork, initContainers (run to completion before the containers, then removed), several
//   containers, capabilities add/drop, privileged, hostPath DirectoryOrCreate/Directory, configMap
//   volumes and configMapKeyRef env (from --configmap files), resourceFieldRef: as Kubernetes.
//   mountPropagation: Bidirectional -> rshared, HostToContainer -> rslave (propagates only from a
//   shared host mount, e.g. /run/netns). hostPID: ignored. livenessProbe httpGet: turned into a
//   `curl` health check run by systemd timers (none here: never run); readinessProbe and
//   startupProbe: ignored. emptyDir: a volume on disk (medium Memory ignored), removed by kube
//   down; configMap volumes are not. terminationGracePeriodSeconds: ignored (stop timeout 10 s).
//   `kube down` kills the containers without SIGTERM first (see down()).
//   fieldRef: only metadata.name/uid/labels/annotations. securityContext.seccompProfile: ignored
//   (its default profile then allows bpf(2) only with CAP_SYS_ADMIN); the annotations
//   seccomp.security.alpha.kubernetes.io/pod and container.seccomp.security.alpha.kubernetes.io/<name>
//   are honoured. Init containers: run in order, each removed once it exited 0 (its logs with it;
//   podman's events keep its exit code). An image without ENV PATH runs with no
//   PATH at all. Init containers restart under restartPolicy Always (see adaptRestartPolicy). The
//   pod needs catatonit (podman builds its pause image from it).
import { mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { request } from 'node:http';
import { join } from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import { requireTool } from './traffic';
import { sleepSync } from './exec';
import {
  removeCgroupParents, runEnv, runEnvSync, snapshotCgroupParents, tempDir, writePodmanConfig, type EnvRunResult,
} from './runtime';
import type { Scope } from './scope';

const ROOT = join(__dirname, '..', '..');
const DAEMON_BUNDLE = join(ROOT, 'dist', 'int-host-reporter.cjs');

export type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; [k: string]: unknown }; [k: string]: unknown };
type Json = Record<string, unknown>;

// ---------------------------------------------------------------------------------------------
// Manifests

/** Runs the product's renderer (`int-host-reporter manifests ...args`) and parses every object. */
export function renderManifests(args: readonly string[]): K8sObject[] {
  let text: string;
  try {
    text = execFileSync(process.execPath, [DAEMON_BUNDLE, 'manifests', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { status?: number; stderr?: string };
    throw new Error(`int-host-reporter manifests ${args.join(' ')} failed (${err.status}): ${err.stderr}`);
  }
  return parseManifests(text);
}

function parseManifests(text: string): K8sObject[] {
  return parseAllDocuments(text).map((d) => {
    if (d.errors.length) throw new Error(`manifest YAML: ${d.errors[0]!.message}`);
    return d.toJS() as K8sObject | null;
  }).filter((o): o is K8sObject => o !== null);
}

/** The one object of this kind (and name, when given); throws naming what is there. */
export function objectOf(objs: readonly K8sObject[], kind: string, name?: string): K8sObject {
  const hits = objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (hits.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${hits.length} among ${objs.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
  return hits[0]!;
}

/**
 * The DaemonSet's pod as the DaemonSet controller makes it: kind Pod, the template's metadata
 * (with a name: the controller generates one) and the template's spec, unchanged.
 */
export function podFromDaemonSet(ds: K8sObject, podName: string): K8sObject {
  const template = (ds.spec as { template: { metadata?: Json; spec: Json } }).template;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { ...structuredClone(template.metadata ?? {}), name: podName, namespace: ds.metadata.namespace },
    spec: structuredClone(template.spec),
  };
}

export interface NodeFacts {
  nodeName: string;
  hostIP: string;
}

type HttpProbe = { httpGet?: { host?: string; port: number | string; path: string } } & Json;

/** The parts of a container spec the helpers read or change. */
export interface PodContainer {
  name: string;
  env?: Array<{ name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } & Json }>;
  readinessProbe?: HttpProbe;
  livenessProbe?: HttpProbe;
}

export function containersOf(pod: K8sObject): { init: PodContainer[]; main: PodContainer[] } {
  const spec = pod.spec as { initContainers?: PodContainer[]; containers: PodContainer[] };
  return { init: spec.initContainers ?? [], main: spec.containers };
}

/** Field paths `podman kube play` 4.3 resolves itself. */
const PODMAN_FIELD_PATHS = /^metadata\.(name|uid|labels|annotations)\b/;

/**
 * Sets the env fieldRefs podman 4.3 refuses ("fieldPath ... is either not valid or not
 * supported") to the value the kubelet would inject. Returns `container/VAR=fieldPath` for each.
 */
export function resolveDownwardApi(pod: K8sObject, node: NodeFacts): string[] {
  const spec = pod.spec as Json & { serviceAccountName?: string };
  const values: Record<string, string | undefined> = {
    'spec.nodeName': node.nodeName,
    'status.hostIP': node.hostIP,
    // hostNetwork: the pod's address is the node's
    'status.podIP': spec.hostNetwork ? node.hostIP : undefined,
    'metadata.namespace': pod.metadata.namespace ?? 'default',
    'spec.serviceAccountName': spec.serviceAccountName ?? 'default',
  };
  const done: string[] = [];
  const { init, main } = containersOf(pod);
  for (const c of [...init, ...main]) {
    for (const e of c.env ?? []) {
      const path = e.valueFrom?.fieldRef?.fieldPath;
      if (path === undefined || PODMAN_FIELD_PATHS.test(path)) continue;
      const v = values[path];
      if (v === undefined) throw new Error(`${c.name}: env ${e.name} uses fieldRef ${path}, which neither podman nor this helper resolves`);
      delete e.valueFrom;
      e.value = v;
      done.push(`${c.name}/${e.name}=${path}`);
    }
  }
  return done;
}

/** The seccomp annotation values (the kubelet's former annotation API) of seccompProfile types. */
const SECCOMP_ANNOTATION_VALUES: Record<string, string> = { Unconfined: 'unconfined', RuntimeDefault: 'runtime/default' };

/**
 * podman 4.3 ignores securityContext.seccompProfile but reads the annotations the field replaced:
 * each profile, the pod's and every container's, is added as its annotation (the field stays).
 * Returns `pod=value` / `container=value` for each; a Localhost profile is refused (not translated).
 */
export function seccompAnnotations(pod: K8sObject): string[] {
  type WithProfile = { name?: string; securityContext?: { seccompProfile?: { type: string } } };
  const spec = pod.spec as WithProfile;
  const { init, main } = containersOf(pod);
  const done: string[] = [];
  const had = (pod.metadata as Json).annotations !== undefined;
  const annotations = ((pod.metadata as Json).annotations ??= {}) as Record<string, string>;
  for (const [key, who, sc] of [
    ['seccomp.security.alpha.kubernetes.io/pod', 'pod', spec.securityContext],
    ...[...init, ...main].map((c) => [`container.seccomp.security.alpha.kubernetes.io/${c.name}`, c.name, (c as WithProfile).securityContext] as const),
  ] as const) {
    const type = sc?.seccompProfile?.type;
    if (type === undefined) continue;
    const value = SECCOMP_ANNOTATION_VALUES[type];
    if (value === undefined) throw new Error(`${who}: seccompProfile type ${type} is not translated by this helper`);
    annotations[key] = value;
    done.push(`${who}=${value}`);
  }
  if (!had && done.length === 0) delete (pod.metadata as Json).annotations;
  return done;
}

/**
 * podman 4.3 applies the pod's restartPolicy to init containers as well: with Always (a DaemonSet
 * pod's only policy) an init container that exited 0 is started again, racing kube play's removal
 * of it ("cannot remove container ... as it is running"). The kubelet restarts init containers
 * only on failure, so the pod is played with OnFailure, which does that for the init containers
 * and differs for the others only when one exits 0. Returns what was changed.
 */
export function adaptRestartPolicy(pod: K8sObject): string[] {
  const spec = pod.spec as Json & { restartPolicy?: string; initContainers?: unknown[] };
  if (!spec.initContainers?.length || (spec.restartPolicy ?? 'Always') !== 'Always') return [];
  spec.restartPolicy = 'OnFailure';
  return ['restartPolicy=OnFailure'];
}

// ---------------------------------------------------------------------------------------------
// Health endpoints (the kubelet's httpGet probes, which podman does not run)

export interface HttpAnswer {
  status: number;
  body: string;
}

/** GET http://host:port/path; status 0 with the error text when nothing answers. */
export function httpGet(host: string, port: number, path: string, timeoutMs = 2000): Promise<HttpAnswer> {
  return new Promise((resolve) => {
    const req = request({ host, port, path, method: 'GET', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', (e) => resolve({ status: 0, body: String(e) }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ status: 0, body: String(e) }));
    req.end();
  });
}

/**
 * The probe's endpoint as the kubelet calls it. Without a host the kubelet would use the pod's IP
 * (the node's, under hostNetwork), which a loopback listener does not answer: the host must be named.
 */
export function probeTarget(probe: HttpProbe | undefined): { host: string; port: number; path: string } {
  const g = probe?.httpGet;
  if (!g) throw new Error(`not an httpGet probe: ${JSON.stringify(probe)}`);
  if (typeof g.port !== 'number') throw new Error(`probe port ${g.port} is not a number`);
  if (!g.host) throw new Error(`probe ${g.path} names no host: the kubelet would call the pod IP`);
  return { host: g.host, port: g.port, path: g.path };
}

// ---------------------------------------------------------------------------------------------
// podman kube play

/** Pids whose command line names a path under dir. */
function processesUsing(dir: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(dir)) out.push(Number(p));
    } catch {
      /* gone */
    }
  }
  return out;
}

export interface PlayedPod {
  name: string;
  /** the YAML files played (pod, then config maps) */
  files: string[];
  /** the pod's terminationGracePeriodSeconds (Kubernetes' default 30) */
  graceSeconds: number;
}

export class KubePlay {
  /** CONTAINERS_CONF and CONTAINERS_STORAGE_CONF only: --root/--runroot flags would drop additionalimagestores */
  readonly env: NodeJS.ProcessEnv;
  private seq = 0;
  /** ids of the pods played: podman leaves their cgroups (empty) in some hierarchies */
  private readonly podIds = new Set<string>();

  private constructor(readonly dir: string, sharedStore: string) {
    for (const d of ['root', 'runroot', 'tmp', 'net.d', 'yaml']) mkdirSync(join(dir, d));
    this.env = writePodmanConfig(dir, {
      // this machine's bounding set has no CAP_SYS_RESOURCE: runc cannot raise these limits
      containers: ['default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]'],
      // kube play writes a "podman-default-kube-network" config on first use: keep it here
      network: [`network_config_dir = ${JSON.stringify(join(dir, 'net.d'))}`],
      driver: 'overlay',
      storageOptions: [`additionalimagestores = [${JSON.stringify(sharedStore)}]`],
    });
  }

  /** A private podman for kube play; `sharedStore` (default: the machine's graph root) is read-only. */
  static create(scope: Scope, sharedStore?: string): KubePlay {
    requireTool('/usr/bin/podman', 'podman');
    requireTool('/usr/bin/conmon', 'conmon');
    requireTool('/usr/sbin/runc', 'runc');
    requireTool('/usr/bin/catatonit', 'catatonit'); // podman builds its pause image from it
    const store = sharedStore ?? execFileSync('podman', ['info', '--format', '{{.Store.GraphRoot}}'], { encoding: 'utf8' }).trim();
    const cgroups = snapshotCgroupParents('libpod_parent');
    scope.defer('kube play cgroup parents', () => removeCgroupParents(cgroups));
    const dir = tempDir(scope, 'kubeplay');
    const k = new KubePlay(dir, store);
    // Runs before the temp dir goes: every pod, container and volume of this podman.
    scope.defer(`kube play pods in ${dir}`, () => k.removeAllSync());
    return k;
  }

  podman(args: readonly string[], timeoutMs = 120_000): Promise<EnvRunResult> {
    return runEnv(['podman', ...args], this.env, timeoutMs);
  }

  private removeAllSync(): void {
    for (const args of [['pod', 'rm', '-f', '-t', '0', '--all'], ['rm', '-f', '-t', '0', '--all'], ['volume', 'rm', '-f', '--all']]) {
      try {
        runEnvSync(['podman', ...args], this.env, 120_000);
      } catch {
        /* keep cleaning */
      }
    }
    // conmon and the `podman container cleanup` it starts when a container exits outlive the rm
    // for a moment; they would recreate state under dir after it is removed.
    const deadline = Date.now() + 15_000;
    while (processesUsing(this.dir).length > 0 && Date.now() < deadline) sleepSync(100);
    // Measured: after `kube down` a pod's cgroup stays under libpod_parent in the name=systemd and
    // unified hierarchies (cgroupfs manager, cgroup v1). rmdir only: one still in use stays.
    for (const id of this.podIds) {
      for (const h of readdirSync('/sys/fs/cgroup')) {
        try {
          rmdirSync(join('/sys/fs/cgroup', h, 'libpod_parent', id));
        } catch {
          /* not there, or busy */
        }
      }
    }
  }

  private async recordPodId(name: string): Promise<void> {
    const r = await this.podman(['pod', 'inspect', '--format', '{{.ID}}', name]).catch(() => undefined);
    if (r?.stdout.trim()) this.podIds.add(r.stdout.trim());
  }

  /** Writes the objects as YAML files and runs `podman kube play --configmap ... pod.yaml`. */
  async play(pod: K8sObject, configMaps: readonly K8sObject[] = []): Promise<PlayedPod> {
    this.seq += 1;
    const podFile = join(this.dir, 'yaml', `${this.seq}-pod.yaml`);
    writeFileSync(podFile, stringify(pod));
    const files = [podFile];
    for (const cm of configMaps) {
      const f = join(this.dir, 'yaml', `${this.seq}-configmap-${cm.metadata.name}.yaml`);
      writeFileSync(f, stringify(cm));
      files.push(f);
    }
    const grace = (pod.spec as { terminationGracePeriodSeconds?: number }).terminationGracePeriodSeconds ?? 30;
    const played: PlayedPod = { name: pod.metadata.name, files, graceSeconds: grace };
    const args = ['kube', 'play', ...files.slice(1).flatMap((f) => ['--configmap', f]), podFile];
    try {
      await this.podman(args, 300_000);
      await this.recordPodId(played.name);
    } catch (e) {
      // a failed play can leave the pod created: take it down before failing
      await this.recordPodId(played.name);
      await this.down(played).catch(() => undefined);
      throw new Error(`podman kube play ${pod.metadata.name} failed: ${(e as Error).message}`);
    }
    return played;
  }

  /**
   * Deletes the pod as the kubelet does: SIGTERM, then up to terminationGracePeriodSeconds (`pod
   * stop -t`; `kube down` alone kills the containers at once), then `podman kube down`, and the
   * config map volumes (kube down leaves them).
   */
  async down(p: PlayedPod): Promise<void> {
    await this.podman(['pod', 'stop', '-t', String(p.graceSeconds), p.name], (p.graceSeconds + 30) * 1000);
    await this.podman(['kube', 'down', p.files[0]!], 120_000);
    for (const f of p.files.slice(1)) {
      const name = f.replace(/^.*-configmap-(.*)\.yaml$/, '$1');
      const vols = (await this.podman(['volume', 'ls', '--format', '{{.Name}}'])).stdout.split('\n');
      if (vols.includes(name)) await this.podman(['volume', 'rm', '-f', name]);
    }
  }

  /** podman's container name for a container of a played pod. */
  static containerName(pod: string, container: string): string {
    return `${pod}-${container}`;
  }

  async logs(pod: string, container: string): Promise<string> {
    try {
      const r = await this.podman(['logs', KubePlay.containerName(pod, container)]);
      return r.stdout + r.stderr;
    } catch (e) {
      return `(no logs: ${(e as Error).message})`;
    }
  }

  /** `podman build` into this podman's store (removed with it). */
  async build(tag: string, contextDir: string, containerfile: string, buildArgs: Record<string, string> = {}): Promise<void> {
    await this.podman(['build', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=4096:4096', '-t', tag, '-f', containerfile,
      ...Object.entries(buildArgs).flatMap(([k, v]) => ['--build-arg', `${k}=${v}`]), contextDir], 900_000);
  }

  /**
   * The container events of a played pod's containers in order (`podman events`): init containers
   * are removed once they exited 0, so their exit codes are read here. Names are the spec's.
   */
  async containerEvents(pod: string): Promise<Array<{ container: string; status: string; exitCode?: number }>> {
    const r = await this.podman(['events', '--stream=false', '--filter', 'type=container', '--format', 'json']);
    const prefix = `${pod}-`;
    return r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { Name: string; Status: string; ContainerExitCode?: number })
      .filter((e) => e.Name.startsWith(prefix))
      .map((e) => ({ container: e.Name.slice(prefix.length), status: e.Status, ...(e.Status === 'died' ? { exitCode: e.ContainerExitCode ?? 0 } : {}) }));
  }
}
