/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The flow filter: state direct-mapped by a hash of (post-NAT tuple, ingress port, egress port)
 * and shared by all CPUs. Each slot holds its flow's key: two flows on one slot take turns and
 * report more often, never less. Concurrent writers can only cause an extra report.
 */
#ifndef INT_FLOW_FILTER_H
#define INT_FLOW_FILTER_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "int_types.h"
#include "config.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << INT_FLOW_SLOTS_LOG2);
	__type(key, __u32);
	__type(value, struct int_flow_slot);
} int_flows SEC(".maps");

/* Independent multiplies, one per word pair, rather than a chain through every word: the
 * index costs one multiply's latency. The top bits of a product depend on all bits of its input. */
static __always_inline __u32 flow_index(const struct int_flow_key *fk)
{
	const __u64 *q = (const __u64 *)fk;
	__u64 h = (q[0] ^ q[1]) * 0x9e3779b97f4a7c15ULL + (q[2] ^ q[3]) * 0xc2b2ae3d27d4eb4fULL +
		  q[4] * 0x165667b19e3779f9ULL + q[5] * 0x27d4eb2f165667c5ULL;
	return (__u32)(h >> (64 - INT_FLOW_SLOTS_LOG2));
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

#endif /* INT_FLOW_FILTER_H */
