// The local socket protocol shared by the daemon (server) and the CNI plugin and CLI (clients):
// HTTP/1.1 with JSON bodies over a unix socket.

export const DEFAULT_SOCKET_PATH = '/run/int-host-reporter/daemon.sock';
export const DEFAULT_SPOOL_DIR = '/run/int-host-reporter/spool';

/** What the plugin tells the daemon after ADD (POST /v1/cni/add) and DEL (POST /v1/cni/del). */
export interface AttachmentNotice {
  network: string;
  containerId: string;
  ifname: string;
  netns?: string;
  hostIfname?: string;
  hostIfindex?: number;
  podNamespace?: string;
  podName?: string;
  podUid?: string;
  ips?: string[];
  /** how the programs are attached; absent when the attach failed */
  mode?: 'tcx' | 'tc';
  programIds?: number[];
  /** ISO 8601 */
  attachedAt?: string;
  /** why the attach failed, when it did (the daemon repairs it) */
  error?: string;
}
