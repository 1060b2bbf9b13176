/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The in-flight table: ingress metadata, found again at egress (or at a drop) by packet key
 * (parse.h). A forwarded packet goes from the ingress hook through routing, NAT and filtering to
 * the egress hook in one pass on one CPU, so each CPU keeps a small direct-mapped table of the
 * packets it has in flight: no lock, no allocation, nothing to leak, and a new packet always gets
 * a slot (it overwrites the oldest use of that slot). A packet whose egress comes later on another
 * CPU (say after neighbour resolution) is not reported; the next packet of its flow is.
 * The benchmark's alternative (a shared LRU hash) is test/bpf/datapath-lru.bpf.c: it provides
 * this header's three names itself.
 */
#ifndef INT_META_H
#define INT_META_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "int_types.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, INT_META_SLOTS);
	__type(key, __u32);
	__type(value, struct int_meta);
} int_meta SEC(".maps");

static __always_inline __u32 meta_index(__u64 key)
{
	__u32 h = (__u32)key ^ (__u32)(key >> 32);
	return (h ^ (h >> 16)) & (INT_META_SLOTS - 1);
}

/* Records ingress metadata for the packet key. */
static __always_inline void meta_put(__u64 key, const struct int_meta *m)
{
	__u32 idx = meta_index(key);
	struct int_meta *slot = bpf_map_lookup_elem(&int_meta, &idx);
	if (slot) {
		*slot = *m;
		slot->key = key;
	}
}

/*
 * Finds and consumes the ingress metadata of the packet key: NULL when there is none. The
 * per-CPU slot is read in place: nothing else on this CPU rewrites it while we use it (only a
 * drop on an interrupt could, and that only clears the key). scratch is for implementations
 * that must copy the entry out.
 */
static __always_inline const struct int_meta *meta_take(__u64 key, struct int_meta *scratch)
{
	__u32 idx = meta_index(key);
	struct int_meta *slot = bpf_map_lookup_elem(&int_meta, &idx);
	if (!slot || slot->key != key)
		return NULL;
	slot->key = 0;
	return slot;
}

#endif /* INT_META_H */
