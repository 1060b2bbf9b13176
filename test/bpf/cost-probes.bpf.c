// SPDX-License-Identifier: GPL-2.0-only
/*
 * Reference points for the per-packet cost benchmark (test/bench/datapath.ts). Attached to the
 * same hooks under the same load as ours, they split what the kernel's run-time statistics
 * report into what any program pays there and what our programs add:
 *   probe_empty       returns at once: the statistics' own clock reads and the hook dispatch;
 *   probe_clock       reads the clock once, as each of our hooks must for the hop latency;
 *   probe_parse_clock also parses the packet as ours do: the least a hook doing our job costs.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "int_types.h"
#include "parse.h"

char LICENSE[] SEC("license") = "GPL";

/* Somewhere to put results so that the compiler keeps the work. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} probe_sink SEC(".maps");

static __always_inline void sink(__u64 x)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&probe_sink, &k);
	if (v)
		*v += x;
}

SEC("tc")
int probe_empty(struct __sk_buff *skb)
{
	return TC_ACT_UNSPEC;
}

SEC("tc")
int probe_clock(struct __sk_buff *skb)
{
	sink(bpf_ktime_get_ns());
	return TC_ACT_UNSPEC;
}

SEC("tc")
int probe_parse_clock(struct __sk_buff *skb)
{
	struct int_tuple t = {};
	struct parse_result r = {};

	if (parse_packet(skb, &t, &r, false) < 0)
		return TC_ACT_UNSPEC;
	sink(r.key ^ t.sport ^ bpf_ktime_get_ns());
	return TC_ACT_UNSPEC;
}
