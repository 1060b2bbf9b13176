// SPDX-License-Identifier: GPL-2.0-only
/*
 * The benchmark's alternative in-flight table (test/bench/datapath.ts): the product datapath with
 * a shared LRU hash, insert at ingress and lookup + delete at egress, in place of meta.h's per-CPU
 * direct-mapped slots. It defines meta.h's names (int_meta, meta_put, meta_take) and its include
 * guard, then builds the product's entry file unchanged.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "int_types.h"

#define INT_META_H /* this file stands in for meta.h */

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct int_meta);
} int_meta SEC(".maps");

static __always_inline void meta_put(__u64 key, const struct int_meta *m)
{
	bpf_map_update_elem(&int_meta, &key, m, BPF_ANY);
}

static __always_inline const struct int_meta *meta_take(__u64 key, struct int_meta *scratch)
{
	struct int_meta *m = bpf_map_lookup_elem(&int_meta, &key);
	if (!m)
		return NULL;
	*scratch = *m; /* the entry is freed by the delete */
	bpf_map_delete_elem(&int_meta, &key);
	return scratch;
}

#include "datapath.bpf.c"
