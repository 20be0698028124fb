/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Types the XDP guard shares with Go (bpf2go -type). */
#pragma once

/* Sizes fixed at compile time. An enum, not macros, so that they reach BTF:
 * Go reads them from the generated bindings instead of keeping copies. */
enum guard_limits {
	GUARD_FP_RULES = 1024,     /* fingerprint rules: width of the rule bitmaps */
	GUARD_CIDR_RULES = 131072, /* source-CIDR-only rules, slots after the fingerprint ones */
	GUARD_FP_PLENS = 8,        /* distinct prefix lengths per fingerprint address field */
	GUARD_CIDR_PLENS = 16,     /* distinct prefix lengths per family for CIDR rules */
	GUARD_IFACE_SLOTS = 4096,  /* iface_stats entries: ifindex modulo this */
	GUARD_PREFILTER_SHIFT = 18, /* 2^18 u64 words: 2^24 bits, 2 MiB */
	GUARD_DEF_CHUNK = 248,     /* bytes of a rule definition per rule_defs entry */
	GUARD_OA_SHIFT = 13,       /* fingerprint address tables: 2^13 slots for at most 1024 entries */
	GUARD_OA_PROBES = 8,       /* an entry sits within this many slots of its home */
	GUARD_CIDR_OA_SHIFT = 18,  /* CIDR tables: 2^18 slots per family, at most half full */
};

/* Flags of an open-addressing table slot (guard_addr4_entry.flags). */
enum guard_oa_flags {
	OA_USED = 1,  /* slot holds or held an entry: probing goes on past it */
	OA_VALID = 2, /* slot holds a live entry */
};

#define GUARD_FP_WORDS (GUARD_FP_RULES / 64)
#define GUARD_SLOTS (GUARD_FP_RULES + GUARD_CIDR_RULES)
#define GUARD_META_ENTRIES (2 * 3 * 2 * 256) /* family x fragment kind x has_l4 x protocol */
#define GUARD_MAX_IPV6_EXT 6
#define GUARD_PREFILTER_WORDS (1 << GUARD_PREFILTER_SHIFT)

/* Tables of the address prefilter (pf_hash). */
enum guard_pf_table {
	PF_FP_SRC4 = 0,
	PF_FP_DST4,
	PF_CIDR4,
	PF_FP_SRC6,
	PF_FP_DST6,
	PF_CIDR6,
};

/* Fields of fp_wild_class (0-3) and indexes of fp_wild (4-8): bitmaps of
 * rules that do not constrain a field. */
enum guard_wild {
	WILD_SPORT = 0,
	WILD_DPORT,
	WILD_LENGTH,
	WILD_WINDOW,
	WILD_SRC4,
	WILD_SRC6,
	WILD_DST4,
	WILD_DST6,
	WILD_ACTIVE,  /* rules in force: an update sets field bits first, this bit last */
	WILD_HAS_SRC, /* unused: rules naming a source prefix, now in fp_names */
	WILD_HAS_DST, /* unused: rules naming a destination prefix, now in fp_names */
	WILD_COUNT,
};

/* Verdict a packet got; indexes guard_iface_stats.actions. */
enum guard_verdict {
	VERDICT_PASS = 0,    /* no rule, or a rate_limit rule under its rate */
	VERDICT_DROP,        /* drop rule */
	VERDICT_RATE_LIMITED, /* rate_limit rule over its rate: dropped */
	VERDICT_MONITOR,     /* monitor rule: would drop, passed */
	VERDICT_COUNT,
};

enum guard_action {
	ACTION_DROP = 1,
	ACTION_RATE_LIMIT = 2,
	ACTION_MONITOR = 3,
};

/* Protocol classes counted per interface. */
enum guard_proto_class {
	PCLASS_TCP = 0,
	PCLASS_UDP,
	PCLASS_ICMP,
	PCLASS_ICMPV6,
	PCLASS_OTHER_IP,
	PCLASS_NON_IP,
	PCLASS_FRAGMENT, /* later fragments, any protocol */
	PCLASS_COUNT,
};

/* TCP flag combinations counted per interface. */
enum guard_flag_class {
	FCLASS_SYN = 0, /* SYN without ACK */
	FCLASS_SYNACK,
	FCLASS_ACK, /* ACK without SYN, RST, FIN */
	FCLASS_RST,
	FCLASS_FIN,
	FCLASS_OTHER, /* none of the above (e.g. no flags, XMAS) */
	FCLASS_COUNT,
};

/* A set of rules: bit i of words is fingerprint slot i. sum has bit w set
 * when words[w] != 0, so a classification ANDs one word per field first. */
struct guard_bitmap {
	__u64 sum;
	__u64 words[GUARD_FP_WORDS];
};

/* The rules that name each field read per candidate word (bit i of a word
 * array is fingerprint slot i): a classification reads a field's bitmap
 * only when a candidate names it, since every rule leaving a field open is
 * in all of that field's sets. A bit may be set for a rule that leaves the
 * field open (a wasted read), never clear for one that names it. */
struct guard_names {
	__u64 ttl[GUARD_FP_WORDS];
	__u64 length[GUARD_FP_WORDS];
	__u64 tcp_flags[GUARD_FP_WORDS];
	__u64 window[GUARD_FP_WORDS];
	__u64 icmp_type[GUARD_FP_WORDS];
	__u64 src[GUARD_FP_WORDS];
	__u64 dst[GUARD_FP_WORDS];
};

/* Key of the per-prefix-length address hash maps (IPv4). */
struct guard_key4 {
	__u32 plen;
	__u32 addr; /* network byte order, masked to plen */
};

/* Key of the per-prefix-length address hash maps (IPv6). */
struct guard_key6 {
	__u32 plen;
	__u32 addr[4]; /* network byte order, masked to plen */
};

/* Runtime configuration, written by the agent (single-entry array). */
struct guard_config {
	__u32 sample_every; /* 1-in-N packets go to the ring buffer; 0 = off */
	__u8 src4_plens_n, src6_plens_n, dst4_plens_n, dst6_plens_n;
	__u8 cidr4_plens_n, cidr6_plens_n;
	__u8 _pad[2];
	/* Prefix lengths in use, longest first: the first hit is the longest match. */
	__u8 src4_plens[GUARD_FP_PLENS];
	__u8 src6_plens[GUARD_FP_PLENS];
	__u8 dst4_plens[GUARD_FP_PLENS];
	__u8 dst6_plens[GUARD_FP_PLENS];
	__u8 cidr4_plens[GUARD_CIDR_PLENS];
	__u8 cidr6_plens[GUARD_CIDR_PLENS];
};

/* One rule's verdict parameters, by slot. */
struct guard_rule_meta {
	__u64 expires_ns; /* CLOCK_MONOTONIC (coarse); the rule never matches at or after it; 0 = empty slot */
	__u32 action;     /* enum guard_action */
	__u32 rate_pps;
};

/* Token bucket of a rate_limit rule, by slot. */
struct guard_bucket {
	struct bpf_spin_lock lock;
	__u32 _pad;
	__u64 tokens; /* in 1e-9 packets */
	__u64 last_ns;
};

/* Per-rule hit counters (per CPU), by slot. */
struct guard_rule_stats {
	__u64 packets;
	__u64 bytes;
};

/* Per-interface counters (per CPU), keyed by ifindex. */
struct guard_iface_stats {
	__u64 actions[VERDICT_COUNT];
	__u64 protocols[PCLASS_COUNT];
	__u64 tcp_flags[FCLASS_COUNT];
	__u64 samples_lost; /* ring buffer full */
};

#include "xdp_pass.h" /* struct guard_xdp_pass */

/* A sampled packet header (ring buffer record). */
struct guard_sample {
	__u64 time_ns; /* CLOCK_MONOTONIC (coarse, tick resolution) */
	__u32 ifindex;
	__u32 slot; /* matching rule's slot, or 0xffffffff */
	__u8 family, protocol, ttl, fragment;
	__u8 has_l4, tcp_flags, icmp_type, verdict;
	__u16 length, sport, dport, window;
	__u8 src[16];
	__u8 dst[16];
};


/* Key of a rule definition chunk. */
struct guard_def_key {
	__u32 slot;
	__u32 chunk;
};

/* Part of a rule's JSON; the last chunk is zero-padded. */
struct guard_def_chunk {
	__u8 data[GUARD_DEF_CHUNK];
};

#define GUARD_OA_SLOTS (1 << GUARD_OA_SHIFT)
#define GUARD_CIDR_OA_SLOTS (1 << GUARD_CIDR_OA_SHIFT)

/* A slot of an IPv4 fingerprint address table. */
struct guard_addr4_entry {
	__u32 flags; /* OA_USED | OA_VALID */
	__u32 plen;
	__u32 addr; /* network byte order, masked to plen */
	__u32 _pad;
	struct guard_bitmap bitmap;
};

/* A slot of an IPv4 source-CIDR table (cidr_oa4). flags and plen share a
 * word, so a tombstone write changes the flags and nothing a reader uses. */
struct guard_cidr4_entry {
	__u16 flags; /* OA_USED | OA_VALID */
	__u16 plen;
	__u32 addr; /* network byte order, masked to plen */
	__u32 slot; /* the winning rule's slot */
};

/* A slot of an IPv6 source-CIDR table (cidr_oa6). addr sits at offset 8,
 * 8-aligned in the array's value: the kernel reads it as two 64-bit words. */
struct guard_cidr6_entry {
	__u16 flags;
	__u16 plen;
	__u32 slot;
	__u32 addr[4];
};

/* A slot of an IPv6 fingerprint address table; addr 8-aligned, as above. */
struct guard_addr6_entry {
	__u32 flags;
	__u32 plen;
	__u32 addr[4];
	struct guard_bitmap bitmap;
};
