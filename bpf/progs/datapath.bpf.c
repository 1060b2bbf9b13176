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

/*
 * Ingress metadata, found again at egress by packet key (parse.h). A forwarded packet goes from
 * the ingress hook through routing, NAT and filtering to the egress hook in one pass on one
 * CPU, so each CPU keeps a small direct-mapped table of the packets it has in flight: no lock,
 * no allocation, nothing to leak, and a new packet always gets a slot (it overwrites the oldest
 * use of that slot). A packet whose egress comes later on another CPU (say after neighbour
 * resolution) is not reported; the next packet of its flow is. META_LRU_HASH=1 builds the
 * alternative, a shared LRU hash with insert and delete, which the benchmark compares.
 */
#ifndef META_LRU_HASH
#define META_LRU_HASH 0
#endif
#define META_SLOTS 64

#if META_LRU_HASH
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct int_meta);
} int_meta SEC(".maps");
#else
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, META_SLOTS);
	__type(key, __u32);
	__type(value, struct int_meta);
} int_meta SEC(".maps");
#endif

/*
 * Flow filter state, direct-mapped by a hash of (post-NAT tuple, ingress port, egress port) and
 * shared by all CPUs. Each slot holds its flow's key: two flows on one slot take turns and
 * report more often, never less. Concurrent writers can only cause an extra report.
 */
#define FLOW_SLOTS_LOG2 16
#define FLOW_SLOTS (1 << FLOW_SLOTS_LOG2)
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FLOW_SLOTS);
	__type(key, __u32);
	__type(value, struct int_flow_slot);
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

#if !META_LRU_HASH
static __always_inline __u32 meta_index(__u64 key)
{
	__u32 h = (__u32)key ^ (__u32)(key >> 32);
	return (h ^ (h >> 16)) & (META_SLOTS - 1);
}
#endif

/* Records ingress metadata for the packet key. */
static __always_inline void meta_put(__u64 key, const struct int_meta *m)
{
#if META_LRU_HASH
	bpf_map_update_elem(&int_meta, &key, m, BPF_ANY);
#else
	__u32 idx = meta_index(key);
	struct int_meta *slot = bpf_map_lookup_elem(&int_meta, &idx);
	if (slot) {
		*slot = *m;
		slot->key = key;
	}
#endif
}

/*
 * Finds and consumes the ingress metadata of the packet key: NULL when there is none. The
 * per-CPU slot is read in place: nothing else on this CPU rewrites it while we use it (only a
 * drop on an interrupt could, and that only clears the key).
 */
static __always_inline const struct int_meta *meta_take(__u64 key, struct int_meta *scratch)
{
#if META_LRU_HASH
	struct int_meta *m = bpf_map_lookup_elem(&int_meta, &key);
	if (!m)
		return NULL;
	*scratch = *m; /* the entry is freed by the delete */
	bpf_map_delete_elem(&int_meta, &key);
	return scratch;
#else
	__u32 idx = meta_index(key);
	struct int_meta *slot = bpf_map_lookup_elem(&int_meta, &idx);
	if (!slot || slot->key != key)
		return NULL;
	slot->key = 0;
	return slot;
#endif
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

/* Independent multiplies, one per word pair, rather than a chain through every word: the
 * index costs one multiply's latency. The top bits of a product depend on all bits of its input. */
static __always_inline __u32 flow_index(const struct int_flow_key *fk)
{
	const __u64 *q = (const __u64 *)fk;
	__u64 h = (q[0] ^ q[1]) * 0x9e3779b97f4a7c15ULL + (q[2] ^ q[3]) * 0xc2b2ae3d27d4eb4fULL +
		  q[4] * 0x165667b19e3779f9ULL + q[5] * 0x27d4eb2f165667c5ULL;
	return (__u32)(h >> (64 - FLOW_SLOTS_LOG2));
}

/*
 * First packet of a flow, then one per interval, or when hop latency leaves the bucket of the
 * last report. The slot keeps that bucket as its lower bound, so a packet costs a subtraction
 * and a compare; the division happens only when reporting.
 */
static __always_inline int flow_filter_allows(const struct int_flow_key *fk, __u64 now, __u64 latency)
{
	__u32 idx = flow_index(fk);
	struct int_flow_slot *st = bpf_map_lookup_elem(&int_flows, &idx);
	if (!st)
		return 1;
	const __u64 *a = (const __u64 *)fk, *b = (const __u64 *)&st->key;
	__u64 diff = 0;
#pragma unroll
	for (int i = 0; i < sizeof(struct int_flow_key) / 8; i++)
		diff |= a[i] ^ b[i];
	/* Below the bound, the unsigned difference wraps to a large value: another bucket too. */
	int same_bucket = !latency_quantum_ns || latency - st->bucket_lo_ns < latency_quantum_ns;
	if (!diff && now - st->last_report_ts < report_interval_ns && same_bucket)
		return 0;
	st->key = *fk;
	st->last_report_ts = now;
	st->bucket_lo_ns = latency_quantum_ns ? latency - latency % latency_quantum_ns : 0;
	return 1;
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

/* The kfree_skb tracepoint program (drops) uses the maps and helpers above. */
#include "drops.h"
