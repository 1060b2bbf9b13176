// SPDX-License-Identifier: GPL-2.0-only
/*
 * The datapath: TC programs for the ingress and egress hooks of pod veths and of the node's data
 * interface. Ingress records when and where each packet entered and its 5-tuple as it arrived
 * (pre-NAT); egress finds that record again for the same packet, computes the hop latency, and
 * emits an event when the flow filter lets it through. Every program passes every packet on
 * unchanged (TC_ACT_UNSPEC, which is also TCX_NEXT) and never drops one.
 *
 * This file is the object's entry: the TC programs. Each concern has its header: int_types.h (the
 * types user space shares), config.h (load-time settings), maps.h (the maps every program writes),
 * meta.h (the in-flight table), flow_filter.h, parse.h (headers to tuple and packet key), and
 * drops.h (the kfree_skb program, in the same object because it shares the per-CPU in-flight table).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "int_types.h"
#include "config.h"
#include "maps.h"
#include "meta.h"
#include "flow_filter.h"
#include "parse.h"

char LICENSE[] SEC("license") = "GPL";

/* Only here so that the object's BTF describes every type and enum user space reads
 * (bpf/gen-layout.mjs writes bpf/generated/layout.ts from it). Nothing uses it. */
struct int_btf_anchor {
	struct int_event *event;
	struct int_meta *meta;
	struct int_flow_slot *flow_slot;
	struct int_drop_record *drop_record;
	enum int_counter counter;
	enum int_event_type event_type;
	enum int_event_flag event_flag;
	enum int_bound bound;
} *int_btf_anchor __attribute__((unused));

static __always_inline int on_ingress(struct __sk_buff *skb, const bool data_iface)
{
	struct int_meta m = {};
	struct parse_result r = {};

	count(INT_CNT_INGRESS_PKTS);
	if (parse_packet(skb, &m.tuple, &r, data_iface) < 0) {
		count(INT_CNT_NOT_IP);
		return TC_ACT_UNSPEC;
	}
	m.ig_ts = bpf_ktime_get_ns();
	m.ig_ifindex = skb->ifindex;
	meta_put(r.key, &m);
	return TC_ACT_UNSPEC;
}

/* Both tuples sit at 8-byte aligned offsets of struct int_event (40 and 80). */
static __always_inline int tuple_differs(const struct int_tuple *a, const struct int_tuple *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;
	__u64 diff = 0;
#pragma unroll
	for (int i = 0; i < sizeof(struct int_tuple) / 8; i++)
		diff |= x[i] ^ y[i];
	return diff != 0;
}

static __always_inline int on_egress(struct __sk_buff *skb, const bool data_iface)
{
	/* Most packets stop at the flow filter: build the event only for the ones that pass. */
	struct int_flow_key fk = {};
	struct parse_result r = {};

	count(INT_CNT_EGRESS_PKTS);
	if (parse_packet(skb, &fk.tuple, &r, data_iface) < 0) {
		count(INT_CNT_NOT_IP);
		return TC_ACT_UNSPEC;
	}

	struct int_meta scratch;
	const struct int_meta *m = meta_take(r.key, &scratch);
	if (!m) {
		count(INT_CNT_META_MISS);
		return TC_ACT_UNSPEC;
	}
	__u64 now = bpf_ktime_get_ns();
	__u64 ig_ts = m->ig_ts;
	if (now - ig_ts > max_hop_ns) {
		count(INT_CNT_META_STALE);
		return TC_ACT_UNSPEC;
	}

	fk.ig_ifindex = m->ig_ifindex;
	fk.eg_ifindex = skb->ifindex;
	if (!flow_filter_allows(&fk, now, now - ig_ts)) {
		count(INT_CNT_FILTERED);
		return TC_ACT_UNSPEC;
	}

	struct int_event ev = {
		.type = INT_EVENT_TRACE,
		.flags = INT_F_INGRESS | (r.tunnel ? INT_F_TUNNEL : 0),
		.ig_ifindex = fk.ig_ifindex,
		.eg_ifindex = fk.eg_ifindex,
		.pkt_len = skb->len,
		.inner_offset = r.inner_offset,
		.ig_ts = ig_ts,
		.eg_ts = now,
		.pre_nat = m->tuple,
		.post_nat = fk.tuple,
	};
	if (tuple_differs(&ev.pre_nat, &ev.post_nat))
		ev.flags |= INT_F_NAT;

	__u64 cap = skb->len < sample_bytes ? skb->len : sample_bytes;
	ev.sample_len = cap;
	long err = bpf_perf_event_output(skb, &int_events, BPF_F_CURRENT_CPU | (cap << 32), &ev, sizeof(ev));
	count(err ? INT_CNT_EVENTS_LOST : INT_CNT_EVENTS);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int int_ingress(struct __sk_buff *skb)
{
	return on_ingress(skb, false);
}

SEC("tc")
int int_egress(struct __sk_buff *skb)
{
	return on_egress(skb, false);
}

SEC("tc")
int int_ingress_nic(struct __sk_buff *skb)
{
	return on_ingress(skb, true);
}

SEC("tc")
int int_egress_nic(struct __sk_buff *skb)
{
	return on_egress(skb, true);
}

#include "drops.h"
