// Where the daemon's socket is and the CNI endpoints it serves: HTTP/1.1 with JSON bodies over a
// unix socket that only root can use. The plugin and the CLI are its clients.
import type { AttachmentKey } from './notice';

export const DEFAULT_SOCKET_PATH = '/run/int-host-reporter/daemon.sock';
/** Where the plugin leaves what it could not tell the daemon (see spool.ts). */
export const DEFAULT_SPOOL_DIR = '/run/int-host-reporter/spool';

/** POST an AttachmentNotice after a CNI ADD / DEL. */
export const CNI_ADD_PATH = '/v1/cni/add';
export const CNI_DEL_PATH = '/v1/cni/del';
/** CHECK: GET ?network=&containerId=&ifname= answers 200 (known) or 404 (unknown). */
export const CNI_ATTACHMENT_PATH = '/v1/cni/attachment';

/** The request target of the CHECK query for a key. */
export function attachmentQueryTarget(key: AttachmentKey): string {
  const query = new URLSearchParams({ network: key.network, containerId: key.containerId, ifname: key.ifname });
  return `${CNI_ATTACHMENT_PATH}?${query}`;
}

/** The key a CHECK query names (a missing parameter reads as ''). */
export function attachmentKeyOfQuery(query: URLSearchParams): AttachmentKey {
  return { network: query.get('network') ?? '', containerId: query.get('containerId') ?? '', ifname: query.get('ifname') ?? '' };
}
