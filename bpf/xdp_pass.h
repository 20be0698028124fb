/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The record the XDP guard (guard.bpf.c) writes and the stack programs
 * (stack.bpf.c) read, one per CPU: written once here so the two cannot drift.
 * The stack loads the guard's map in place of its own (MapReplacements), so
 * both must agree on its layout. */
#pragma once

/* The last packet the guard passed on a CPU, for the stack's packet-path
 * traces: the stack matches it with the skb the driver builds around the
 * same buffer right after, on the same CPU. */
struct guard_xdp_pass {
	__u64 data; /* low 32 bits of the frame's address (xdp_md->data) + 1; 0 = none */
	__u64 ts;   /* bpf_ktime_get_ns() when the guard started on the frame */
};
