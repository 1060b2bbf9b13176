// Kernel drop reasons (enum skb_drop_reason) -> INT drop reason codes.
//
// No Telemetry Report version defines drop codes; collectors (DeepInsight) follow Intel's
// switch.p4-16 numbering, which fabric-tna and the reference reporter use too (reference §7.2).
// A switch reports a non-tunnelled packet's IP errors with the "OUTER_" codes, so 25/26/29/30/31
// mean plain IP version / TTL / routing miss / IHL / checksum here as well. Anything the table
// does not name goes out as 0 (UNKNOWN).
//
// The map is keyed by NAME, not value: the values of enum skb_drop_reason change between kernel
// versions, so the daemon reads name/value pairs from the running kernel's BTF
// (kernel-drop-reasons.ts) and builds a value table with buildDropCodeTable. Names that only
// some kernels have (e.g. TCP_FILTER, renamed SOCKET_FILTER in 5.18) are listed as well.
// The kernel has no reason for an expired TTL/hop limit, so code 26 is never produced.

/** Codes of switch.p4-16 switch_drop_reason_t used here. */
export const IntDropCode = {
  UNKNOWN: 0,
  SRC_MAC_MULTICAST: 15,
  OUTER_SAME_MAC_CHECK: 17,
  DST_MAC_MCAST_DST_IP_UCAST: 18,
  OUTER_IP_VERSION_INVALID: 25,
  OUTER_IP_TTL_ZERO: 26,
  OUTER_IP_SRC_LOOPBACK: 28,
  OUTER_IP_MISS: 29,
  OUTER_IP_IHL_INVALID: 30,
  OUTER_IP_INVALID_CHECKSUM: 31,
  OUTER_IP_DST_LOOPBACK: 32,
  L3_PORT_RMAC_MISS: 54,
  INGRESS_STP_STATE_BLOCKING: 57,
  IN_L3_EGRESS_LINK_DOWN: 60,
  MTU_CHECK_FAIL: 70,
  TRAFFIC_MANAGER: 71,
  WRED: 73,
  ACL_DROP: 80,
  URPF_CHECK_FAIL: 82,
  NEXTHOP: 93,
  L3_IPV6_DISABLE: 100,
  DMAC_RESERVED: 106,
} as const;

const C = IntDropCode;

/** Kernel drop reason name (without SKB_DROP_REASON_) -> INT drop code. */
export const KERNEL_DROP_REASON_TO_INT: Readonly<Record<string, number>> = Object.freeze({
  // Policy: netfilter, BPF, tc, socket filters, LSM and xfrm policy all act like an ACL.
  NETFILTER_DROP: C.ACL_DROP,
  BPF_CGROUP_EGRESS: C.ACL_DROP,
  XDP: C.ACL_DROP,
  TC_INGRESS: C.ACL_DROP,
  TC_EGRESS: C.ACL_DROP,
  // tc classification errors drop the packet in the classifier, where an ACL would
  TC_CHAIN_NOTFOUND: C.ACL_DROP,
  TC_RECLASSIFY_LOOP: C.ACL_DROP,
  TC_COOKIE_ERROR: C.ACL_DROP,
  SOCKET_FILTER: C.ACL_DROP,
  TCP_FILTER: C.ACL_DROP,
  SECURITY_HOOK: C.ACL_DROP,
  XFRM_POLICY: C.ACL_DROP,
  TAP_FILTER: C.ACL_DROP,
  TAP_TXFILTER: C.ACL_DROP,

  // Routing
  IP_INNOROUTES: C.OUTER_IP_MISS,
  IP_OUTNOROUTES: C.OUTER_IP_MISS,
  IP_INADDRERRORS: C.OUTER_IP_MISS,
  IP_INVALID_DEST: C.OUTER_IP_MISS,
  IP_RPFILTER: C.URPF_CHECK_FAIL,
  IP_INVALID_SOURCE: C.URPF_CHECK_FAIL,
  IP_LOCAL_SOURCE: C.URPF_CHECK_FAIL,
  IP_LOCALNET: C.OUTER_IP_DST_LOOPBACK,
  IPV6DISABLED: C.L3_IPV6_DISABLE,
  NEIGH_CREATEFAIL: C.NEXTHOP,
  NEIGH_FAILED: C.NEXTHOP,
  NEIGH_QUEUEFULL: C.NEXTHOP,
  NEIGH_DEAD: C.NEXTHOP,
  NEIGH_HH_FILLFAIL: C.NEXTHOP,
  DEV_READY: C.IN_L3_EGRESS_LINK_DOWN,

  // Malformed headers
  IP_INHDR: C.OUTER_IP_VERSION_INVALID,
  IPV6_BAD_EXTHDR: C.OUTER_IP_VERSION_INVALID,
  PKT_TOO_SMALL: C.OUTER_IP_IHL_INVALID,
  HDR_TRUNC: C.OUTER_IP_IHL_INVALID,
  // No L4 checksum code exists; the IP checksum code is the nearest a collector understands.
  IP_CSUM: C.OUTER_IP_INVALID_CHECKSUM,
  TCP_CSUM: C.OUTER_IP_INVALID_CHECKSUM,
  UDP_CSUM: C.OUTER_IP_INVALID_CHECKSUM,
  ICMP_CSUM: C.OUTER_IP_INVALID_CHECKSUM,
  SKB_CSUM: C.OUTER_IP_INVALID_CHECKSUM,
  PKT_TOO_BIG: C.MTU_CHECK_FAIL,

  // L2
  OTHERHOST: C.L3_PORT_RMAC_MISS,
  UNICAST_IN_L2_MULTICAST: C.DST_MAC_MCAST_DST_IP_UCAST,
  MAC_INVALID_SOURCE: C.SRC_MAC_MULTICAST,
  LOCAL_MAC: C.OUTER_SAME_MAC_CHECK,
  BRIDGE_INGRESS_STP_STATE: C.INGRESS_STP_STATE_BLOCKING,
  MAC_IEEE_MAC_CONTROL: C.DMAC_RESERVED,

  // Queues and buffers: the host's "traffic manager"
  QDISC_DROP: C.TRAFFIC_MANAGER,
  QDISC_OVERLIMIT: C.TRAFFIC_MANAGER,
  FQ_BAND_LIMIT: C.TRAFFIC_MANAGER,
  FQ_HORIZON_LIMIT: C.TRAFFIC_MANAGER,
  FQ_FLOW_LIMIT: C.TRAFFIC_MANAGER,
  CAKE_FLOOD: C.TRAFFIC_MANAGER,
  FULL_RING: C.TRAFFIC_MANAGER,
  CPU_BACKLOG: C.TRAFFIC_MANAGER,
  NOMEM: C.TRAFFIC_MANAGER,
  SOCKET_RCVBUFF: C.TRAFFIC_MANAGER,
  SOCKET_BACKLOG: C.TRAFFIC_MANAGER,
  PROTO_MEM: C.TRAFFIC_MANAGER,
  // Active queue management drops early, as WRED does
  QDISC_CONGESTED: C.WRED,
  DUALPI2_STEP_DROP: C.WRED,
});

/** The INT code for a kernel drop reason name (with or without the SKB_DROP_REASON_ prefix). */
export function intDropCodeForName(name: string): number {
  const bare = name.startsWith('SKB_DROP_REASON_') ? name.slice('SKB_DROP_REASON_'.length) : name;
  return Object.hasOwn(KERNEL_DROP_REASON_TO_INT, bare) ? KERNEL_DROP_REASON_TO_INT[bare] : C.UNKNOWN;
}

export interface KernelEnumValue {
  name: string;
  value: number;
}

/**
 * Builds the lookup the encoder uses: index = kernel enum value, entry = INT code (0 unknown).
 * Values of other drop-reason subsystems (upper 16 bits set) or beyond `maxValue` are left out,
 * so they read as unknown; this keeps the table small and dense.
 */
export function buildDropCodeTable(reasons: readonly KernelEnumValue[], maxValue = 0xffff): Uint8Array {
  let size = 0;
  for (const r of reasons) if (isTableValue(r.value, maxValue)) size = Math.max(size, r.value + 1);
  const table = new Uint8Array(size);
  for (const r of reasons) if (isTableValue(r.value, maxValue)) table[r.value] = intDropCodeForName(r.name);
  return table;
}

function isTableValue(value: number, maxValue: number): boolean {
  return Number.isInteger(value) && value >= 0 && value <= maxValue;
}

/** Looks a kernel value up in a table from buildDropCodeTable (0 when absent). */
export function intDropCode(table: Uint8Array, kernelValue: number): number {
  return kernelValue >= 0 && kernelValue < table.length ? table[kernelValue] : 0;
}
