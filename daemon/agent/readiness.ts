// What /readyz answers: the node is ready only when every part a pod's telemetry depends on is in
// place. Each check is computed when asked (a probe every few seconds), from the kernel and the
// files themselves rather than from what the daemon remembers having done.
import { readFileSync } from 'node:fs';
import * as bpf from '../../bpf/index';

export interface ReadinessCheck {
  name: 'datapath' | 'data-interfaces' | 'cni-installer' | 'kubernetes';
  ok: boolean;
  message: string;
}

export interface Readiness {
  ready: boolean;
  checks: ReadinessCheck[];
}

/** The states the CNI installer writes (install/cni-installer.ts); only "chained" is ready. */
const INSTALLER_STATES = ['chained', 'waiting-for-primary', 'preflight-failed', 'error', 'uninstalled'];

export interface ReadinessSource {
  /** the event reader runs over the loaded object (undefined: not started yet) */
  readerRunning: boolean;
  bpffsRoot: string;
  dataInterfaces: { ifname: string; ifindex: number }[];
  /** program ids of this version's NIC programs */
  nicProgramIds: () => { ingress: number; egress: number };
  cniInstallerStatus?: string;
  kube: { ready: boolean; nodeName: string; server: string; lastError: string | null } | { disabled: string | null };
}

export function readiness(src: ReadinessSource): Readiness {
  const checks = [datapathCheck(src), interfacesCheck(src), installerCheck(src.cniInstallerStatus), kubeCheck(src.kube)];
  return { ready: checks.every((c) => c.ok), checks };
}

function datapathCheck(src: ReadinessSource): ReadinessCheck {
  if (!src.readerRunning) return { name: 'datapath', ok: false, message: 'the event reader is not running' };
  return { name: 'datapath', ok: true, message: `programs loaded and pinned in ${src.bpffsRoot}; event reader running` };
}

function interfacesCheck(src: ReadinessSource): ReadinessCheck {
  if (src.dataInterfaces.length === 0) {
    return { name: 'data-interfaces', ok: false, message: 'no data interface: no --data-interface given and no default route' };
  }
  let ids: { ingress: number; egress: number };
  try {
    ids = src.nicProgramIds();
  } catch (e) {
    return { name: 'data-interfaces', ok: false, message: `cannot read our programs: ${(e as Error).message}` };
  }
  const problems: string[] = [];
  for (const i of src.dataInterfaces) {
    for (const direction of ['ingress', 'egress'] as const) {
      try {
        // Asked of the kernel: an operator or another agent may have taken our program off.
        if (!bpf.query(i.ifindex, direction).some((h) => h.progId === ids[direction])) {
          problems.push(`${i.ifname} (ifindex ${i.ifindex}): our ${direction} program is not attached`);
        }
      } catch (e) {
        problems.push(`${i.ifname} (ifindex ${i.ifindex}): ${(e as Error).message}`);
      }
    }
  }
  const names = src.dataInterfaces.map((i) => `${i.ifname} (ifindex ${i.ifindex})`).join(', ');
  return problems.length === 0
    ? { name: 'data-interfaces', ok: true, message: `attached on ingress and egress: ${names}` }
    : { name: 'data-interfaces', ok: false, message: problems.join('; ') };
}

/** The installer's status file (the readiness contract): ready only while it says "chained". */
export function installerCheck(path: string | undefined): ReadinessCheck {
  const name = 'cni-installer';
  if (path === undefined) return { name, ok: true, message: 'not checked (no --cni-installer-status)' };
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return { name, ok: false, message: code === 'ENOENT' ? `no status from the CNI installer yet (${path} does not exist)` : `cannot read ${path}: ${(e as Error).message}` };
  }
  let status: { state?: unknown; message?: unknown; conflist?: unknown; pluginBuild?: unknown };
  try {
    status = JSON.parse(text) as typeof status;
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e;
    return { name, ok: false, message: `${path} is not JSON` };
  }
  if (typeof status !== 'object' || status === null || typeof status.state !== 'string' || !INSTALLER_STATES.includes(status.state)) {
    return { name, ok: false, message: `${path} has no known "state" (one of ${INSTALLER_STATES.join(', ')})` };
  }
  const said = typeof status.message === 'string' && status.message !== '' ? status.message : '(no message)';
  if (status.state !== 'chained') return { name, ok: false, message: `CNI installer: ${status.state}: ${said}` };
  const where = typeof status.conflist === 'string' ? ` into ${status.conflist}` : '';
  const build = typeof status.pluginBuild === 'string' ? ` (plugin build ${status.pluginBuild})` : '';
  return { name, ok: true, message: `chained${where}${build}` };
}

function kubeCheck(kube: ReadinessSource['kube']): ReadinessCheck {
  const name = 'kubernetes';
  if ('disabled' in kube) return { name, ok: true, message: `not checked: no pod watch (${kube.disabled ?? 'disabled'})` };
  if (kube.ready) return { name, ok: true, message: `pods of node ${kube.nodeName} listed from ${kube.server}` };
  const last = kube.lastError ? `; last error: ${kube.lastError}` : '';
  return { name, ok: false, message: `waiting for the first list of pods of node ${kube.nodeName} from ${kube.server}${last}` };
}
