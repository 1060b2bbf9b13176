/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one definition of everything the kernel programs and user space share: the event record,
 * the per-packet metadata, the flow-filter state, the counter indices, flags and bounds. The build
 * writes bpf/generated/layout.ts from the compiled object's BTF (bpf/gen-layout.mjs); user space
 * reads every offset, enum and bound from there.
 * Every struct is laid out by hand without holes, so natural alignment is the packed layout.
 */
#ifndef INT_TYPES_H
#define INT_TYPES_H

#include <linux/types.h>

/* Enums rather than #defines so that the object's BTF carries them: bpf/gen-layout.mjs turns
 * every enum here into TypeScript constants. */
enum int_event_type {
	INT_EVENT_TRACE = 1, /* a packet crossed the node: ingress hook, then egress hook */
	INT_EVENT_DROP  = 2, /* a packet seen at ingress was freed by the kernel as a drop */
};

/* int_event.flags */
enum int_event_flag {
	INT_F_TUNNEL  = 0x01, /* tuples are of the packet inside VXLAN/Geneve; inner_offset is set */
	INT_F_INGRESS = 0x02, /* ingress metadata was found: ig_* and pre_nat are valid */
	INT_F_NAT     = 0x04, /* pre_nat differs from post_nat */
};

/* Bounds the kernel programs and user space agree on. */
enum int_bound {
	INT_SAMPLE_MIN      = 64,   /* sample_bytes: a drop event copies at least this much */
	INT_SAMPLE_MAX      = 256,  /* sample_bytes: at most this much (the drop record's buffer) */
	INT_MAX_HOP_MS      = 2000, /* default max_hop_ns, and the age at which user space calls an
				     * unmatched ingress record a drop (daemon/agent/aging.ts) */
	INT_META_SLOTS      = 64,   /* in-flight table: slots per CPU (a power of two) */
	INT_FLOW_SLOTS_LOG2 = 16,   /* flow filter: log2 of its slots */
};

/* A 5-tuple, IPv4 or IPv6. Addresses and ports are in network byte order, as on the wire.
 * IPv4 addresses sit in the first 4 bytes, the other 12 are zero. For ICMP/ICMPv6, sport is the
 * echo identifier (0 for other types) and dport is 0; icmp_type and icmp_code are set. */
struct int_tuple {
	__u8  saddr[16];
	__u8  daddr[16];
	__u16 sport;
	__u16 dport;
	__u8  proto;      /* IPPROTO_TCP, _UDP, _SCTP, _ICMP, _ICMPV6, or another L4 number */
	__u8  ip_version; /* 4 or 6 */
	__u8  icmp_type;
	__u8  icmp_code;
}; /* 40 bytes */

/* What the egress hook (or the kfree_skb tracepoint) sends to user space. The first
 * sample_len bytes of the packet follow it in the same perf record, starting at the outermost
 * Ethernet header as the packet was at egress (for drops: as it was when freed). */
struct int_event {
	__u8  type;          /* enum int_event_type */
	__u8  flags;         /* enum int_event_flag */
	__u16 sample_len;    /* packet bytes that follow this struct */
	__u32 drop_reason;   /* kernel enum skb_drop_reason (0 for traces); names come from kernel BTF */
	__u32 ig_ifindex;
	__u32 eg_ifindex;    /* drops: the device the skb was on when freed, 0 if none or the ingress one */
	__u32 pkt_len;       /* skb->len at egress (or at the drop) */
	__u16 inner_offset;  /* with INT_F_TUNNEL: offset of the inner Ethernet header in the sample */
	__u16 pad;
	__u64 ig_ts;         /* bpf_ktime_get_ns() at the ingress hook */
	__u64 eg_ts;         /* bpf_ktime_get_ns() at the egress hook (or at the drop) */
	struct int_tuple pre_nat;  /* as the packet arrived at ingress (inner headers on a tunnel) */
	struct int_tuple post_nat; /* as the packet left at egress */
	__u64 drop_location;       /* drops: kernel address that freed the skb (user space names it:
				    * many drops carry no reason but their place, e.g. ip_error) */
}; /* 128 bytes */

/* Per-packet metadata the ingress hook leaves for the egress hook, found by the packet key:
 * header fields that neither routing, NAT nor tunnels rewrite (see parse.h). An entry older
 * than max_hop_ns is taken for another packet's and not reported. */
struct int_meta {
	__u64 key;         /* the packet key (0: free slot) */
	__u64 ig_ts;
	__u32 ig_ifindex;
	__u32 pad;
	struct int_tuple tuple;
}; /* 64 bytes */

/* Flow filter: one slot per (post-NAT tuple, ingress port, egress port). */
struct int_flow_key {
	struct int_tuple tuple;
	__u32 ig_ifindex;
	__u32 eg_ifindex;
}; /* 48 bytes */

struct int_flow_slot {
	struct int_flow_key key;
	__u64 last_report_ts;
	__u64 bucket_lo_ns; /* hop latency bucket of the last report: its lower bound in ns */
}; /* 64 bytes */

/* Indices of the per-CPU counter array (map int_counters). */
enum int_counter {
	INT_CNT_INGRESS_PKTS = 0,  /* packets seen by an ingress hook */
	INT_CNT_EGRESS_PKTS,       /* packets seen by an egress hook */
	INT_CNT_NOT_IP,            /* packets passed without parsing: not IPv4/IPv6, or truncated */
	INT_CNT_EVENTS,            /* events written to the perf buffer */
	INT_CNT_EVENTS_LOST,       /* events the perf buffer refused (full) */
	INT_CNT_META_MISS,         /* egress packets with no ingress metadata (locally generated, ...) */
	INT_CNT_META_STALE,        /* ingress metadata found but too old to be this packet's */
	INT_CNT_FILTERED,          /* egress packets the flow filter suppressed */
	INT_CNT_DROPS,             /* drop events for packets seen at ingress */
	INT_CNT_MAX,
};

/* A drop event as the drop program writes it: the event, then up to INT_SAMPLE_MAX packet bytes. */
struct int_drop_record {
	struct int_event ev;
	__u8 sample[INT_SAMPLE_MAX];
};

#endif /* INT_TYPES_H */
