/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Drops: the kfree_skb tracepoint fires when the kernel frees a packet as dropped, with the
 * reason. When that packet was seen at an ingress hook (its packet key is in int_meta), we emit
 * a drop event with the ingress metadata, the kernel's reason, and the packet's first bytes.
 * Runs for every dropped skb on the node, so it reads only what it needs. The program itself is
 * here, as the drop concern's entry point; datapath.bpf.c includes it so that it shares the maps of
 * the TC programs (one object: int_meta is per CPU, and a drop happens on the CPU that had the packet).
 */
#ifndef INT_DROPS_H
#define INT_DROPS_H

#include <stdbool.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "int_types.h"
#include "config.h"
#include "maps.h"
#include "meta.h"
#include "parse.h"

/* Just the fields we read; CO-RE relocates them to the running kernel's layout. */
struct net_device {
	int ifindex;
} __attribute__((preserve_access_index));

struct sk_buff {
	unsigned int len;
	__u16 mac_header;
	__u16 network_header;
	unsigned char *head;
	unsigned char *data;
	struct net_device *dev;
	__be16 protocol;
} __attribute__((preserve_access_index));

/* The event plus its sample is larger than the BPF stack: build it in a per-CPU slot. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct int_drop_record);
} int_drop_scratch SEC(".maps");

/* Reads the packet's L3/L4 headers from kernel memory into t and computes its packet key. */
static __always_inline int drop_parse(unsigned char *nh, __be16 l3proto, struct int_tuple *t, __u64 *key)
{
	struct pkt_key k = {};
	unsigned char *l4;
	__u8 first[12] = {};

	if (l3proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_probe_read_kernel(&ip, sizeof(ip), nh) < 0 || ip.ihl < 5)
			return -1;
		tuple_from_ipv4(&ip, t, &k);
		if (ip.frag_off & bpf_htons(0x1fff)) {
			*key = key_final(&k, t->proto);
			return 0;
		}
		l4 = nh + ip.ihl * 4;
	} else if (l3proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), nh) < 0)
			return -1;
		tuple_from_ipv6(&ip6, t, &k);
		t->proto = ip6.nexthdr; /* extension headers are not walked here */
		l4 = nh + sizeof(ip6);
	} else {
		return -1;
	}

	__u8 p = t->proto;
	if (!l4_unknown(p) && bpf_probe_read_kernel(first, sizeof(first), l4) == 0) {
		struct cursor c = { .pos = first, .end = first + sizeof(first), .start = first };
		parse_l4(&c, t, &k);
	}
	*key = key_final(&k, p);
	return 0;
}

SEC("tp_btf/kfree_skb")
int int_kfree_skb(unsigned long long *ctx)
{
	struct sk_buff *skb = (struct sk_buff *)ctx[0];
	__u32 reason = (__u32)ctx[2];
	__u32 zero = 0;

	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh_off = BPF_CORE_READ(skb, network_header);
	__u16 mac_off = BPF_CORE_READ(skb, mac_header);
	__be16 l3proto = BPF_CORE_READ(skb, protocol);

	struct int_drop_record *rec = bpf_map_lookup_elem(&int_drop_scratch, &zero);
	if (!rec)
		return 0;
	struct int_event *ev = &rec->ev;
	__builtin_memset(ev, 0, sizeof(*ev));
	__u64 key;
	if (drop_parse(head + nh_off, l3proto, &ev->post_nat, &key) < 0)
		return 0;
	struct int_meta scratch;
	const struct int_meta *mp = meta_take(key, &scratch);
	if (!mp)
		return 0; /* not a packet we saw at ingress (on this CPU) */
	__u64 now = bpf_ktime_get_ns();
	if (now - mp->ig_ts > max_hop_ns)
		return 0;

	ev->type = INT_EVENT_DROP;
	ev->flags = INT_F_INGRESS;
	ev->drop_reason = reason;
	ev->ig_ifindex = mp->ig_ifindex;
	/* Dropped before reaching an egress port: report none, not the device it came in on. */
	__u32 dev = BPF_CORE_READ(skb, dev, ifindex);
	ev->eg_ifindex = dev == mp->ig_ifindex ? 0 : dev;
	ev->drop_location = ctx[1];
	ev->pkt_len = BPF_CORE_READ(skb, len);
	ev->ig_ts = mp->ig_ts;
	ev->eg_ts = now;
	ev->pre_nat = mp->tuple;

	/* The sample starts at the Ethernet header when the skb still has one; otherwise an
	 * all-zero Ethernet header with the right EtherType stands in front of the IP header. */
	__u32 cap = sample_bytes < INT_SAMPLE_MAX ? sample_bytes : INT_SAMPLE_MAX;
	if (cap < INT_SAMPLE_MIN)
		cap = INT_SAMPLE_MIN;
	bool has_mac = mac_off != (__u16)~0 && mac_off + 14 == nh_off;
	if (has_mac) {
		if (bpf_probe_read_kernel(rec->sample, cap, head + mac_off) < 0)
			return 0;
	} else {
		__builtin_memset(rec->sample, 0, 14);
		*(__be16 *)(rec->sample + 12) = l3proto;
		if (bpf_probe_read_kernel(rec->sample + 14, cap - 14, head + nh_off) < 0)
			return 0;
	}
	/* Never more than the packet itself: from its (possibly stand-in) Ethernet header to the
	 * end of the data. */
	unsigned char *data = BPF_CORE_READ(skb, data);
	long from_l2 = (long)(data - (head + nh_off)) + 14 + ev->pkt_len;
	__u32 n = cap;
	if (from_l2 > 0 && from_l2 < n)
		n = from_l2;
	if (n > INT_SAMPLE_MAX)
		n = INT_SAMPLE_MAX;
	ev->sample_len = n;
	long err = bpf_perf_event_output(ctx, &int_events, BPF_F_CURRENT_CPU, rec, sizeof(struct int_event) + n);
	count(err ? INT_CNT_EVENTS_LOST : INT_CNT_DROPS);
	return 0;
}

#endif /* INT_DROPS_H */
