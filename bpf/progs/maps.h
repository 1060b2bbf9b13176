/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The maps every program writes: the event channel to user space and the counters. Maps that
 * belong to one concern live with it (int_meta in meta.h, int_flows in flow_filter.h,
 * int_drop_scratch in drops.h).
 */
#ifndef INT_MAPS_H
#define INT_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "int_types.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} int_events SEC(".maps");

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

#endif /* INT_MAPS_H */
