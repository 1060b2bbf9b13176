/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Load-time settings: set by the loader before load (libbpf rewrites .rodata), so the verifier
 * sees them as constants. User space passes them by these names (bpf/generated/layout.ts lists them).
 */
#ifndef INT_CONFIG_H
#define INT_CONFIG_H

#include <linux/types.h>
#include "int_types.h"

const volatile __u64 report_interval_ns = 1000000000ULL; /* flow filter: at most one event per interval */
const volatile __u64 latency_quantum_ns = 65536;          /* ... unless hop latency moves to another bucket */
const volatile __u32 sample_bytes = 128;                  /* packet bytes copied into each event */
const volatile __u64 max_hop_ns = INT_MAX_HOP_MS * 1000000ULL; /* older ingress metadata is another packet's */

#endif /* INT_CONFIG_H */
