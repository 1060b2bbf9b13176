// SPDX-License-Identifier: GPL-2.0-only
/* A program the verifier must reject (packet read without a bounds check), to prove that a
 * failed load reports the verifier's reason. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tc")
int unverifiable(struct __sk_buff *skb)
{
	unsigned char *data = (unsigned char *)(long)skb->data;
	return data[20] == 6 ? TC_ACT_OK : TC_ACT_UNSPEC;
}
