// SPDX-License-Identifier: GPL-2.0-only
/*
 * The datapath: TC programs for the ingress and egress hooks of pod veths and of the node's data
 * interface. Ingress records when and where each packet entered and its 5-tuple as it arrived
 * (pre-NAT); egress finds that record again for the same packet, computes the hop latency, and
 * emits an event when the flow filter lets it through. Every program passes every packet on
 * unchanged (TC_ACT_UNSPEC, which is also TCX_NEXT) and never drops one.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "int_types.h"
#include "parse.h"

char LICENSE[] SEC("license") = "GPL";

/* Only here so that the object's BTF describes the event and the counters for user space (the
 * layout test reads them from the compiled object). */
struct int_event *int_event_btf __attribute__((unused));
enum int_counter int_counter_btf __attribute__((unused));

/* Set by the loader before load (libbpf rewrites .rodata); the verifier sees them as constants. */
const volatile __u64 report_interval_ns = 1000000000ULL; /* flow filter: at most one event per interval */
const volatile __u64 latency_quantum_ns = 65536;          /* ... unless hop latency moves to another bucket */
const volatile __u32 sample_bytes = 128;                  /* packet bytes copied into each event */
const volatile __u64 max_hop_ns = 2000000000ULL;          /* older ingress metadata is another packet's */

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} int_events SEC(".maps");

/* Ingress metadata by packet key (parse.h). LRU: packets that never reach an egress hook
 * (delivered locally, dropped) age out instead of filling the map, and new packets are always
 * tracked. The benchmark builds the alternatives with these switches to compare their cost. */
#ifndef META_MAP_TYPE
#define META_MAP_TYPE BPF_MAP_TYPE_LRU_HASH
#endif
#ifndef META_MAP_FLAGS
#define META_MAP_FLAGS 0
#endif
#ifndef META_DELETE_AT_EGRESS
#define META_DELETE_AT_EGRESS 1
#endif
struct {
	__uint(type, META_MAP_TYPE);
	__uint(map_flags, META_MAP_FLAGS);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct int_meta);
} int_meta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct int_flow_key);
	__type(value, struct int_flow_state);
} int_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, INT_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} int_counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&int_counters, &idx);
	if (v)
		*v += 1; /* per-CPU slot: no atomics needed */
}

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
	bpf_map_update_elem(&int_meta, &r.key, &m, BPF_ANY);
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

/* First packet of a flow, then one per interval, or when hop latency changes bucket. */
static __always_inline int flow_filter_allows(struct int_flow_key *fk, __u64 now, __u64 latency)
{
	__u32 bucket = latency_quantum_ns ? (__u32)(latency / latency_quantum_ns) : 0;
	struct int_flow_state *st = bpf_map_lookup_elem(&int_flows, fk);
	if (st && now - st->last_report_ts < report_interval_ns && st->latency_bucket == bucket)
		return 0;
	struct int_flow_state ns = { .last_report_ts = now, .latency_bucket = bucket };
	bpf_map_update_elem(&int_flows, fk, &ns, BPF_ANY);
	return 1;
}

static __always_inline int on_egress(struct __sk_buff *skb, const bool data_iface)
{
	struct int_event ev = {};
	struct parse_result r = {};

	count(INT_CNT_EGRESS_PKTS);
	if (parse_packet(skb, &ev.post_nat, &r, data_iface) < 0) {
		count(INT_CNT_NOT_IP);
		return TC_ACT_UNSPEC;
	}

	struct int_meta *mp = bpf_map_lookup_elem(&int_meta, &r.key);
	if (!mp) {
		count(INT_CNT_META_MISS);
		return TC_ACT_UNSPEC;
	}
	struct int_meta m = *mp;
	if (META_DELETE_AT_EGRESS)
		bpf_map_delete_elem(&int_meta, &r.key);
	__u64 now = bpf_ktime_get_ns();
	if (now - m.ig_ts > max_hop_ns) {
		count(INT_CNT_META_STALE);
		return TC_ACT_UNSPEC;
	}

	struct int_flow_key fk = {
		.tuple = ev.post_nat,
		.ig_ifindex = m.ig_ifindex,
		.eg_ifindex = skb->ifindex,
	};
	if (!flow_filter_allows(&fk, now, now - m.ig_ts)) {
		count(INT_CNT_FILTERED);
		return TC_ACT_UNSPEC;
	}

	ev.type = INT_EVENT_TRACE;
	ev.flags = INT_F_INGRESS | (r.tunnel ? INT_F_TUNNEL : 0);
	ev.ig_ifindex = m.ig_ifindex;
	ev.eg_ifindex = skb->ifindex;
	ev.pkt_len = skb->len;
	ev.inner_offset = r.inner_offset;
	ev.ig_ts = m.ig_ts;
	ev.eg_ts = now;
	ev.pre_nat = m.tuple;
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

/* The kfree_skb tracepoint program (drops) uses the maps and helpers above. */
#include "drops.h"
