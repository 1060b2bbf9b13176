/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Packet parsing for the TC programs: Ethernet (with up to two VLAN tags), IPv4, IPv6 with its
 * extension headers, TCP/UDP/SCTP ports, ICMP/ICMPv6 type/code/id, and on the data interface the
 * packet inside VXLAN or Geneve. Reads only the linear part (direct packet access): headers of
 * packets at the TC hooks are linear; anything else is passed on untouched and counted.
 * The drop program (drops.h) reads headers from kernel memory instead, and shares with this
 * file what turns header fields into a tuple and a packet key (tuple_from_*, parse_l4).
 */
#ifndef INT_PARSE_H
#define INT_PARSE_H

#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "int_types.h"

#define VXLAN_PORT       4789
#define VXLAN_LINUX_PORT 8472
#define GENEVE_PORT      6081
#define ETH_P_TEB_BE     0x6558 /* Geneve protocol type: transparent Ethernet bridging */

#define MAX_IPV6_EXT_HEADERS 4
#define MAX_VLAN_TAGS 2

struct cursor {
	void *pos;
	void *end;
	void *start;
};

struct vlan_hdr_ {
	__be16 tci;
	__be16 proto;
};

struct geneve_hdr_ {
	__u8 ver_opt_len; /* version (2 bits) and option length in 4-byte words (6 bits) */
	__u8 flags;
	__be16 proto;
	__u8 vni[3];
	__u8 reserved;
};

/* What parsing found besides the tuple. */
struct parse_result {
	__u64 key;         /* the packet key (struct pkt_key, with the protocol mixed in) */
	__u16 inner_offset;
	__u8  tunnel;
};

static __always_inline int parse_eth(struct cursor *c, __be16 *proto)
{
	struct ethhdr *eth = c->pos;
	if ((void *)(eth + 1) > c->end)
		return -1;
	*proto = eth->h_proto;
	c->pos = eth + 1;
#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		if (*proto != bpf_htons(ETH_P_8021Q) && *proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_hdr_ *vh = c->pos;
		if ((void *)(vh + 1) > c->end)
			return -1;
		*proto = vh->proto;
		c->pos = vh + 1;
	}
	return 0;
}

/*
 * The packet key identifies one packet from the ingress hook to the egress hook (and to the
 * drop tracepoint). It is built from header fields that neither routing, NAT nor a tunnel
 * rewrite, because the skb itself does not survive everything: the kernel may clone it to
 * make headroom (IPv6 into a VXLAN device, for one). hi comes from L3, lo from L4.
 */
struct pkt_key {
	__u32 hi;
	__u32 lo;
};

static __always_inline __u32 key_ipv4(__u16 id, __u16 tot_len)
{
	return ((__u32)id << 16) | tot_len;
}

static __always_inline __u32 key_ipv6(__u16 payload_len, __u8 fl0, __u8 fl1, __u8 fl2)
{
	return ((__u32)payload_len << 16) ^ (((__u32)fl0 & 0x0f) << 16 | (__u32)fl1 << 8 | fl2);
}

/* w1, w2: the second and third 32-bit words of the L4 header (w2 = 0 if not captured). */
static __always_inline __u32 key_l4(__u8 proto, __u8 icmp_type, __u32 w1, __u32 w2)
{
	switch (proto) {
	case IPPROTO_TCP: /* sequence and acknowledgement numbers */
		return w1 ^ ((w2 << 16) | (w2 >> 16));
	case IPPROTO_UDP: /* length, and the first payload word */
		return (w1 & 0xffff) ^ w2;
	case IPPROTO_SCTP: /* verification tag */
		return w1;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		/* type, echo sequence (not the identifier: NAT rewrites it) or the rest of the
		 * header for other types (neighbour solicitation and advertisement differ there
		 * only), first payload word */
		if (icmp_type == 8 || icmp_type == 0 || icmp_type == 128 || icmp_type == 129)
			w1 &= 0xffff0000;
		return ((__u32)icmp_type << 24) ^ w1 ^ w2;
	}
	return 0;
}

static __always_inline __u64 key_final(const struct pkt_key *k, __u8 proto)
{
	return (((__u64)k->hi << 32) | k->lo) ^ ((__u64)proto << 56);
}

/* Protocols whose L4 header we do not read: the tuple has their addresses only. */
static __always_inline int l4_unknown(__u8 p)
{
	return p != IPPROTO_TCP && p != IPPROTO_UDP && p != IPPROTO_SCTP && p != IPPROTO_ICMP &&
	       p != IPPROTO_ICMPV6;
}

/*
 * Ports / ICMP fields of t and the L4 half of the packet key, from the L4 header at c->pos. One
 * bounds check and one copy for every protocol keeps the verifier's state count low. The TC
 * programs pass a cursor over the packet, the drop program one over a copy of the header's first
 * 12 bytes.
 */
static __always_inline int parse_l4(struct cursor *c, struct int_tuple *t, struct pkt_key *k)
{
	__u8 *h = c->pos;
	__u8 p = t->proto;

	if (l4_unknown(p))
		return 0; /* another protocol: addresses only */
	if ((void *)(h + 8) > c->end)
		return -1;
	__u32 w0 = *(__u32 *)h, w1 = *(__u32 *)(h + 4), w2 = 0;
	if ((void *)(h + 12) <= c->end)
		w2 = *(__u32 *)(h + 8);

	if (p == IPPROTO_ICMP || p == IPPROTO_ICMPV6) {
		__u8 type = h[0];
		t->icmp_type = type;
		t->icmp_code = h[1];
		/* echo request/reply carry an identifier that conntrack treats as the port */
		if (type == 8 || type == 0 || type == 128 || type == 129)
			t->sport = (__u16)w1; /* identifier (network order, first two bytes) */
	} else {
		t->sport = (__u16)w0;
		t->dport = (__u16)(w0 >> 16);
	}
	k->lo = key_l4(p, t->icmp_type, w1, w2);
	return 0;
}

/* The IPv4 header's part of the tuple and the packet key's L3 half. */
static __always_inline void tuple_from_ipv4(const struct iphdr *ip, struct int_tuple *t, struct pkt_key *k)
{
	t->ip_version = 4;
	t->proto = ip->protocol;
	__builtin_memcpy(t->saddr, &ip->saddr, 4);
	__builtin_memcpy(t->daddr, &ip->daddr, 4);
	k->hi = key_ipv4(ip->id, ip->tot_len);
}

/* The IPv6 header's part of the tuple (not the protocol: extension headers may follow) and the
 * packet key's L3 half. */
static __always_inline void tuple_from_ipv6(const struct ipv6hdr *ip6, struct int_tuple *t, struct pkt_key *k)
{
	t->ip_version = 6;
	__builtin_memcpy(t->saddr, &ip6->saddr, 16);
	__builtin_memcpy(t->daddr, &ip6->daddr, 16);
	k->hi = key_ipv6(ip6->payload_len, ip6->flow_lbl[0], ip6->flow_lbl[1], ip6->flow_lbl[2]);
}

static __always_inline int parse_ipv4(struct cursor *c, struct int_tuple *t, struct pkt_key *k)
{
	struct iphdr *ip = c->pos;
	if ((void *)(ip + 1) > c->end)
		return -1;
	if (ip->ihl < 5)
		return -1;
	tuple_from_ipv4(ip, t, k);
	/* Later fragments carry no L4 header. */
	if (ip->frag_off & bpf_htons(0x1fff))
		return 0;
	c->pos = (void *)ip + ip->ihl * 4;
	return parse_l4(c, t, k);
}

static __always_inline int is_ipv6_ext(__u8 next)
{
	return next == 0 || next == 43 || next == 44 || next == 51 || next == 60;
}

static __always_inline int parse_ipv6(struct cursor *c, struct int_tuple *t, struct pkt_key *k,
				      const bool walk_ext)
{
	struct ipv6hdr *ip6 = c->pos;
	if ((void *)(ip6 + 1) > c->end)
		return -1;
	tuple_from_ipv6(ip6, t, k);
	__u8 next = ip6->nexthdr;
	c->pos = ip6 + 1;
	if (walk_ext) {
#pragma unroll
		for (int i = 0; i < MAX_IPV6_EXT_HEADERS; i++) {
			if (!is_ipv6_ext(next))
				break;
			__u8 *h = c->pos;
			if ((void *)(h + 8) > c->end)
				return -1;
			__u32 len;
			if (next == 44) { /* fragment: fixed 8 bytes; later fragments carry no L4 header */
				if (*(__u16 *)(h + 2) & bpf_htons(0xfff8)) {
					t->proto = h[0];
					return 0;
				}
				len = 8;
			} else if (next == 51) { /* AH: length in 4-byte units, minus 2 */
				len = ((__u32)h[1] + 2) * 4;
			} else {
				len = ((__u32)h[1] + 1) * 8;
			}
			next = h[0];
			c->pos = h + len;
		}
	}
	t->proto = next;
	if (is_ipv6_ext(next))
		return 0; /* more extension headers than we walk: addresses only */
	return parse_l4(c, t, k);
}

static __always_inline int parse_l3(struct cursor *c, __be16 proto, struct int_tuple *t, struct pkt_key *k,
				    const bool walk_ext)
{
	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(c, t, k);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(c, t, k, walk_ext);
	return -1;
}

/*
 * Parses the packet into t. With tunnels set (data interface), a VXLAN or Geneve packet is
 * described by its inner headers, and r->inner_offset says where the inner Ethernet header is.
 * Returns 0 when t describes an IP packet, -1 otherwise.
 */
static __always_inline int parse_packet(struct __sk_buff *skb, struct int_tuple *t,
					 struct parse_result *r, const bool tunnels)
{
	struct cursor c = {
		.pos = (void *)(long)skb->data,
		.end = (void *)(long)skb->data_end,
		.start = (void *)(long)skb->data,
	};
	__be16 proto;
	struct pkt_key k = {};

	if (parse_eth(&c, &proto) < 0)
		return -1;
	if (parse_l3(&c, proto, t, &k, true) < 0)
		return -1;
	r->key = key_final(&k, t->proto);
	if (!tunnels || t->proto != IPPROTO_UDP)
		return 0;

	__u16 dport = bpf_ntohs(t->dport);
	void *inner;
	if (dport == VXLAN_PORT || dport == VXLAN_LINUX_PORT) {
		inner = c.pos + 8 /* UDP */ + 8 /* VXLAN */;
	} else if (dport == GENEVE_PORT) {
		struct geneve_hdr_ *g = c.pos + 8;
		if ((void *)(g + 1) > c.end)
			return 0;
		if (g->proto != bpf_htons(ETH_P_TEB_BE))
			return 0;
		inner = (void *)(g + 1) + (g->ver_opt_len & 0x3f) * 4;
	} else {
		return 0;
	}

	/* Parse the inner packet into a scratch tuple: a truncated or non-IP inner packet leaves
	 * the outer description in place. Inner IPv6 extension headers are not walked (rare inside
	 * overlays, and walking them twice multiplies the verifier's work). */
	struct cursor ic = { .pos = inner, .end = c.end, .start = c.start };
	struct int_tuple it = {};
	struct pkt_key ik = {};
	if (parse_eth(&ic, &proto) < 0)
		return 0;
	if (parse_l3(&ic, proto, &it, &ik, false) < 0)
		return 0;
	*t = it;
	r->key = key_final(&ik, it.proto);
	r->tunnel = 1;
	r->inner_offset = inner - c.start;
	return 0;
}

#endif /* INT_PARSE_H */
