//go:build ignore
// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The XDP guard: parses every packet exactly as guard.ParseFrame does,
 * counts it, classifies it against the rules with bit-vector classification
 * (a lookup per header field some candidate names yields the rules the field
 * allows; the sets are ANDed and the first set bit wins), applies the winner. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "guard.h"

char __license[] SEC("license") = "Dual BSD/GPL";

#define NO_SLOT 0xffffffff
#define IPPROTO_ICMPV6 58
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86dd
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88a8
#define MAX_OFF 16384 /* larger than any XDP frame; keeps offsets bounded for the verifier */

/* Whether packet-path tracing wants the guard's pass times (xdp_pass). Off,
 * the guard pays one load and a branch; on, a clock read per packet. Set
 * from Go while the agent traces; not pinned, a new program starts off. */
volatile __u32 trace_xdp = 0;

/* Maps that hold rules and counters are pinned by name (LIBBPF_PIN_BY_NAME)
 * under the agent's --bpf.pin-path: they outlive the agent so that rules stay
 * in force across restarts and a new agent adopts them. Scratch maps (runtime
 * configuration, the sampling tick, the samples ring, the pass record) belong
 * to one loaded program and are not pinned. */

/* Runtime configuration (one entry). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct guard_config);
} guard_config SEC(".maps");

/* Rules allowed by (family, fragment kind, has_l4, protocol). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, GUARD_META_ENTRIES);
	__type(key, __u32);
	__type(value, struct guard_bitmap);
} fp_meta SEC(".maps");

/* Rules allowed by the TCP flags byte (0 when not TCP). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct guard_bitmap);
} fp_tcp_flags SEC(".maps");

/* Rules allowed by the ICMP type (0 when not ICMP). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct guard_bitmap);
} fp_icmp_type SEC(".maps");

/* Rules allowed by the TTL / hop limit. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct guard_bitmap);
} fp_ttl SEC(".maps");

/* 16-bit fields: rules that name the value; the rules that leave the field
 * open are in fp_wild, so adding an open rule writes one entry, not 65536. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct guard_bitmap);
} fp_sport SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct guard_bitmap);
} fp_dport SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct guard_bitmap);
} fp_length SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct guard_bitmap);
} fp_window SEC(".maps");

/* Rules that leave a 16-bit field open, per fp_meta class: index
 * field (WILD_SPORT..WILD_WINDOW) * GUARD_META_ENTRIES + class. Per class,
 * so an open IPv6 or TCP rule does not make every IPv4 UDP packet's field
 * look like a candidate. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, 4 * GUARD_META_ENTRIES);
	__type(key, __u32);
	__type(value, struct guard_bitmap);
} fp_wild_class SEC(".maps");

/* The rules naming each field read per candidate word (one entry). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct guard_names);
} fp_names SEC(".maps");

/* Rules that leave an address field open, indexed by enum guard_wild
 * (WILD_SRC4..WILD_DST6); WILD_ACTIVE is the set of rules in force. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, WILD_COUNT);
	__type(key, __u32);
	__type(value, struct guard_bitmap);
} fp_wild SEC(".maps");

/* Address fields: one entry per (prefix length, prefix) named by a rule;
 * its bitmap already holds the open rules and the rules of every shorter
 * prefix containing it, so the longest hit is the answer. Open-addressing
 * tables in arrays rather than hash maps: an inlined array load instead of a
 * helper call and jhash, ~3 ns instead of ~18 on the drop path. The agent
 * places each entry within GUARD_OA_PROBES slots of pf_hash's home slot. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, GUARD_OA_SLOTS);
	__type(key, __u32);
	__type(value, struct guard_addr4_entry);
} fp_src4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, GUARD_OA_SLOTS);
	__type(key, __u32);
	__type(value, struct guard_addr6_entry);
} fp_src6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, GUARD_OA_SLOTS);
	__type(key, __u32);
	__type(value, struct guard_addr4_entry);
} fp_dst4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, GUARD_OA_SLOTS);
	__type(key, __u32);
	__type(value, struct guard_addr6_entry);
} fp_dst6 SEC(".maps");

/* Source-CIDR-only rules: (prefix length, prefix) -> winning slot, the lowest
 * slot among the CIDR rules whose prefix contains this one. Two stores: the
 * hash maps hold every entry and are the truth; the open-addressing arrays
 * (cidr_oa4/6, laid out like fp_src4) hold the entries that found a slot
 * within GUARD_OA_PROBES of their home, and a packet whose prefilter bit is
 * set reads them first: an inlined array load instead of a helper call and
 * a jhash of the key (6 ns of a 27 ns IPv4 drop, 10 of a 41 ns IPv6 one).
 * An entry that found no slot (a crowded neighbourhood, or prefixes chosen
 * to collide) is only slower: the hash map still answers for it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, GUARD_CIDR_OA_SLOTS);
	__type(key, __u32);
	__type(value, struct guard_cidr4_entry);
} cidr_oa4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, GUARD_CIDR_OA_SLOTS);
	__type(key, __u32);
	__type(value, struct guard_cidr6_entry);
} cidr_oa6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, GUARD_CIDR_RULES);
	__type(key, struct guard_key4);
	__type(value, __u32);
} cidr_src4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, GUARD_CIDR_RULES);
	__type(key, struct guard_key6);
	__type(value, __u32);
} cidr_src6 SEC(".maps");

/* Prefilter in front of the CIDR tables (the agent marks the fingerprint
 * address entries too, which the kernel does not read): one bit per (table,
 * prefix length, prefix) in use, at pf_hash's position. A clear bit means
 * both CIDR tables would miss, for one load. The agent sets a bit before
 * inserting the entry and clears it after deleting the last entry hashing
 * to it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, GUARD_PREFILTER_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} addr_prefilter SEC(".maps");

/* Verdict parameters by slot. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, GUARD_SLOTS);
	__type(key, __u32);
	__type(value, struct guard_rule_meta);
} rule_meta SEC(".maps");

/* Token buckets of rate_limit rules by slot. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, GUARD_SLOTS);
	__type(key, __u32);
	__type(value, struct guard_bucket);
} rule_buckets SEC(".maps");

/* The last frame passed per CPU (see struct guard_xdp_pass). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct guard_xdp_pass);
} xdp_pass SEC(".maps");

/* Hit counters by slot. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, GUARD_SLOTS);
	__type(key, __u32);
	__type(value, struct guard_rule_stats);
} rule_stats SEC(".maps");

/* Counters by ingress ifindex modulo GUARD_IFACE_SLOTS: an array lookup
 * costs nothing, a hash lookup a third of the budget. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, GUARD_IFACE_SLOTS);
	__type(key, __u32);
	__type(value, struct guard_iface_stats);
} iface_stats SEC(".maps");

/* Per-CPU scratch: the 1-in-N sampling counter. */
struct guard_cpu {
	__u64 sample_tick;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct guard_cpu);
} cpu_scratch SEC(".maps");

/* Sampled headers for the traffic window. 1 MiB: ~16k records. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} samples SEC(".maps");

/* Rule definitions (the rule JSON, in 248-byte chunks keyed by slot and
 * chunk index), so the whole rule table lives in bpffs and a restarted agent
 * adopts it. Only the agent reads it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 2 * GUARD_SLOTS);
	__type(key, struct guard_def_key);
	__type(value, struct guard_def_chunk);
} rule_defs SEC(".maps");

/* Types only Go reads: referenced here so they reach BTF for bpf2go. */
struct guard_sample *unused_sample __attribute__((unused));
enum guard_verdict unused_verdict __attribute__((unused));
enum guard_wild unused_wild __attribute__((unused));
enum guard_limits unused_limits __attribute__((unused));
enum guard_oa_flags unused_oa_flags __attribute__((unused));

struct pkt {
	__u8 family, protocol, ttl, frag, has_l4, tcp_flags, icmp_type;
	__u16 length, sport, dport, window;
	__u32 src[4], dst[4]; /* network byte order; 8-aligned, for the IPv6 parse's word stores */
} __attribute__((aligned(8)));


static __always_inline void *ptr_at(void *data, void *data_end, __u32 off, __u32 len)
{
	if (off > MAX_OFF)
		return NULL;
	void *p = data + off;
	if (p + len > data_end)
		return NULL;
	return p;
}

/* be16_at reads a big-endian 16-bit field: one load and a swap instead of
 * two byte loads, a shift and an OR. */
static __always_inline __u16 be16_at(const __u8 *b)
{
	return bpf_ntohs(*(const __u16 *)b);
}

/* parse_l4 fills the L4 fields when the protocol's header is in the frame. */
static __always_inline void parse_l4(void *data, void *data_end, __u32 off, struct pkt *p)
{
	__u8 *b;
	switch (p->protocol) {
	case IPPROTO_TCP:
		b = ptr_at(data, data_end, off, 20);
		if (!b)
			return;
		p->sport = be16_at(b + 0);
		p->dport = be16_at(b + 2);
		p->tcp_flags = b[13];
		p->window = be16_at(b + 14);
		break;
	case IPPROTO_UDP:
		b = ptr_at(data, data_end, off, 8);
		if (!b)
			return;
		p->sport = be16_at(b + 0);
		p->dport = be16_at(b + 2);
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		b = ptr_at(data, data_end, off, 4);
		if (!b)
			return;
		p->icmp_type = b[0];
		break;
	default:
		return;
	}
	p->has_l4 = 1;
}

static __always_inline int is_ext(__u8 n)
{
	return n == 0 || n == 43 || n == 44 || n == 51 || n == 60;
}

/* parse mirrors guard.ParseFrame; see guard/packet.go for the rules. */
static __always_inline int guard_parse(struct xdp_md *ctx, struct pkt *p)
{
	if (!p)
		return 0;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *b = ptr_at(data, data_end, 0, 14);
	if (!b)
		return 0;
	__u32 off = 14;
	__u16 et = be16_at(b + 12);
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (et != ETH_P_8021Q && et != ETH_P_8021AD)
			break;
		b = ptr_at(data, data_end, off, 4);
		if (!b)
			return 0;
		et = be16_at(b + 2);
		off += 4;
	}
	if (et == ETH_P_IP) {
		b = ptr_at(data, data_end, off, 20);
		if (!b)
			return 0;
		__u32 ihl = (b[0] & 0x0f) * 4;
		if ((b[0] >> 4) != 4 || ihl < 20 || off + ihl > (__u32)(data_end - data))
			return 0;
		p->family = 4;
		p->length = be16_at(b + 2);
		__u16 ff = be16_at(b + 6);
		if (ff & 0x1fff)
			p->frag = 2;
		else if (ff & 0x2000)
			p->frag = 1;
		p->ttl = b[8];
		p->protocol = b[9];
		p->src[0] = *(__u32 *)(b + 12);
		p->dst[0] = *(__u32 *)(b + 16);
		if (p->frag != 2)
			parse_l4(data, data_end, off + ihl, p);
		return 0;
	}
	if (et != ETH_P_IPV6)
		return 0;
	b = ptr_at(data, data_end, off, 40);
	if (!b || (b[0] >> 4) != 6)
		return 0;
	p->family = 6;
	p->length = be16_at(b + 4) + 40;
	p->ttl = b[7];
	/* Word loads: a memcpy from a byte pointer compiles to 64 byte moves. */
	const __u64 *addrs = (const __u64 *)(b + 8);
	__u64 *src = (__u64 *)p->src, *dst = (__u64 *)p->dst;
	src[0] = addrs[0];
	src[1] = addrs[1];
	dst[0] = addrs[2];
	dst[1] = addrs[3];
	__u8 next = b[6];
	off += 40;
#pragma unroll
	for (int i = 0; i < GUARD_MAX_IPV6_EXT; i++) {
		__u32 hlen = 8;
		if (!is_ext(next))
			goto l4;
		b = ptr_at(data, data_end, off, 2);
		if (!b)
			goto truncated;
		if (next == 51)
			hlen = ((__u32)b[1] + 2) * 4;
		else if (next != 44)
			hlen = ((__u32)b[1] + 1) * 8;
		/* An extension header counts only when all of it is in the frame. */
		if (off + hlen > (__u32)(data_end - data))
			goto truncated;
		if (next == 44) {
			b = ptr_at(data, data_end, off, 8);
			if (!b)
				goto truncated;
			if ((be16_at(b + 2) & 0xfff8) != 0) {
				/* A later fragment's payload is data, not headers. */
				p->frag = 2;
				p->protocol = b[0];
				return 0;
			}
			p->frag = 1;
		}
		next = b[0];
		off += hlen;
	}
	if (is_ext(next)) {
		p->protocol = next;
		return 0;
	}
l4:
	p->protocol = next;
	parse_l4(data, data_end, off, p);
	return 0;
truncated:
	p->protocol = next;
	return 0;
}

/* Masks by prefix length, constant tables instead of shifts and branches:
 * mask4[l] keeps the first l bits of an IPv4 address in network byte order;
 * mask6[l] the first l bits of an IPv6 one, as the two little-endian 64-bit
 * words it is loaded as (struct pkt's src/dst, the tables' addr). */
#define M32(b) ((b) <= 0 ? 0u : (b) >= 32 ? 0xffffffffu : __builtin_bswap32(0xffffffffu << ((32 - (b)) & 31)))
#define M64(b) ((__u64)M32((b) - 32) << 32 | M32(b))
#define M6(b) { M64(b), M64((b) - 64) }
#define M4x8(b) M32(b), M32(b + 1), M32(b + 2), M32(b + 3), M32(b + 4), M32(b + 5), M32(b + 6), M32(b + 7)
#define M6x8(b) M6(b), M6(b + 1), M6(b + 2), M6(b + 3), M6(b + 4), M6(b + 5), M6(b + 6), M6(b + 7)
static const __u32 mask4[33] = { M4x8(0), M4x8(8), M4x8(16), M4x8(24), M32(32) };
static const __u64 mask6[129][2] = {
	M6x8(0), M6x8(8), M6x8(16), M6x8(24), M6x8(32), M6x8(40), M6x8(48), M6x8(56),
	M6x8(64), M6x8(72), M6x8(80), M6x8(88), M6x8(96), M6x8(104), M6x8(112), M6x8(120), M6(128),
};

/* The index's bound, explicit: clang knows none (the length comes from the
 * configuration), the verifier needs one. */
static __always_inline __u32 plen4(__u32 plen)
{
	asm volatile("" : "+r"(plen));
	return plen > 32 ? 32 : plen;
}

static __always_inline __u32 plen6(__u32 plen)
{
	asm volatile("" : "+r"(plen));
	return plen > 128 ? 128 : plen;
}

/* An IPv6 address masked to a prefix length, as two little-endian words. */
struct addr6 {
	__u64 lo, hi;
};

static __always_inline struct addr6 masked6(const __u32 *addr, __u32 plen)
{
	const __u64 *a = (const __u64 *)addr, *m = mask6[plen6(plen)];
	return (struct addr6){ a[0] & m[0], a[1] & m[1] };
}

static __always_inline struct guard_bitmap *wild_at(__u32 i)
{
	return bpf_map_lookup_elem(&fp_wild, &i);
}

#define PF_K1 0x9E3779B97F4A7C15ULL
#define PF_K2 0xC2B2AE3D27D4EB4FULL

/* pf_hash4/6 place a (table, prefix length, masked address) in the
 * prefilter; guard/table_prefilter.go computes the same. */
static __always_inline __u64 pf_hash4(__u32 tid, __u32 plen, __u32 addr)
{
	__u64 x = ((__u64)(tid << 8 | plen) << 32) | addr;
	return x * PF_K1;
}

static __always_inline __u64 pf_hash6(__u32 tid, __u32 plen, struct addr6 a)
{
	__u64 x = a.lo * PF_K1;
	x ^= a.hi;
	x *= PF_K2;
	x ^= (__u64)(tid << 8 | plen) << 32;
	return x * PF_K1;
}

static __always_inline int pf_maybe(__u64 h)
{
	__u32 idx = h >> (64 - GUARD_PREFILTER_SHIFT);
	__u64 *w = bpf_map_lookup_elem(&addr_prefilter, &idx);
	return w && ((*w >> ((h >> 32) & 63)) & 1);
}

/* The address words of a table entry, which sit 8-aligned (guard.h). */
_Static_assert(__builtin_offsetof(struct guard_addr6_entry, addr) % 8 == 0, "addr6 entry's address unaligned");
_Static_assert(__builtin_offsetof(struct guard_cidr6_entry, addr) % 8 == 0, "cidr6 entry's address unaligned");
_Static_assert(__builtin_offsetof(struct pkt, src) % 8 == 0 && __builtin_offsetof(struct pkt, dst) % 8 == 0,
	       "packet's addresses unaligned");
static __always_inline int addr6_is(const __u32 *addr, struct addr6 a)
{
	const __u64 *e = (const __u64 *)addr;
	return e[0] == a.lo && e[1] == a.hi;
}

/* lookup_addr4/6 walk the prefix lengths in use, longest first. They do not
 * consult the prefilter: a hit would pay a load more for it, and a miss ends
 * at an empty home slot as cheaply (the tables are at most 1/8 full). */
/* sel is the prefilter table id | the fp_wild index << 8. */
static __always_inline struct guard_bitmap *lookup_addr4(void *map, __u32 sel, __u32 addr, const __u8 *plens, __u8 n)
{
	__u32 tid = sel & 0xff;
	for (int i = 0; i < GUARD_FP_PLENS; i++) {
		if (i >= n)
			break;
		__u32 plen = plen4(plens[i]), a = addr & mask4[plen];
		__u32 home = pf_hash4(tid, plen, a) >> (64 - GUARD_OA_SHIFT);
		for (int j = 0; j < GUARD_OA_PROBES; j++) {
			__u32 idx = (home + j) & (GUARD_OA_SLOTS - 1);
			struct guard_addr4_entry *e = bpf_map_lookup_elem(map, &idx);
			if (!e || !(e->flags & OA_USED))
				break;
			if ((e->flags & OA_VALID) && e->plen == plen && e->addr == a)
				return &e->bitmap;
		}
	}
	return wild_at(sel >> 8);
}

static __always_inline struct guard_bitmap *lookup_addr6(void *map, __u32 sel, const __u32 *addr, const __u8 *plens,
						       __u8 n)
{
	__u32 tid = sel & 0xff;
	for (int i = 0; i < GUARD_FP_PLENS; i++) {
		if (i >= n)
			break;
		__u32 plen = plen6(plens[i]);
		struct addr6 a = masked6(addr, plen);
		__u32 home = pf_hash6(tid, plen, a) >> (64 - GUARD_OA_SHIFT);
		for (int j = 0; j < GUARD_OA_PROBES; j++) {
			__u32 idx = (home + j) & (GUARD_OA_SLOTS - 1);
			struct guard_addr6_entry *e = bpf_map_lookup_elem(map, &idx);
			if (!e || !(e->flags & OA_USED))
				break;
			if ((e->flags & OA_VALID) && e->plen == plen && addr6_is(e->addr, a))
				return &e->bitmap;
		}
	}
	return wild_at(sel >> 8);
}

/* cidr_oa4/6_find probe the open-addressing CIDR table from h's home slot;
 * they return the entry's slot, or NO_SLOT when it is not there (the hash
 * map may still hold it). A slot's rule changes only while the slot is not
 * valid, so a valid entry's slot is whole. */
static __always_inline __u32 cidr_oa4_find(__u64 h, __u32 plen, __u32 addr)
{
	__u32 home = h >> (64 - GUARD_CIDR_OA_SHIFT);
	for (int j = 0; j < GUARD_OA_PROBES; j++) {
		__u32 idx = (home + j) & (GUARD_CIDR_OA_SLOTS - 1);
		struct guard_cidr4_entry *e = bpf_map_lookup_elem(&cidr_oa4, &idx);
		if (!e || !(e->flags & OA_USED))
			break;
		if ((e->flags & OA_VALID) && e->plen == plen && e->addr == addr)
			return e->slot;
	}
	return NO_SLOT;
}

static __always_inline __u32 cidr_oa6_find(__u64 h, __u32 plen, struct addr6 a)
{
	__u32 home = h >> (64 - GUARD_CIDR_OA_SHIFT);
	for (int j = 0; j < GUARD_OA_PROBES; j++) {
		__u32 idx = (home + j) & (GUARD_CIDR_OA_SLOTS - 1);
		struct guard_cidr6_entry *e = bpf_map_lookup_elem(&cidr_oa6, &idx);
		if (!e || !(e->flags & OA_USED))
			break;
		if ((e->flags & OA_VALID) && e->plen == plen && addr6_is(e->addr, a))
			return e->slot;
	}
	return NO_SLOT;
}

/* lookup_cidr returns the slot of the longest source-CIDR entry containing
 * the packet's source, or NO_SLOT: per prefix length in use, longest first,
 * the prefilter, then the array, then the hash map. */
static __always_inline __u32 lookup_cidr(struct pkt *p, struct guard_config *cfg)
{
	__u32 *slot, s;
	if (p->family == 4) {
		struct guard_key4 k;
		for (int i = 0; i < GUARD_CIDR_PLENS; i++) {
			if (i >= cfg->cidr4_plens_n)
				break;
			k.plen = plen4(cfg->cidr4_plens[i]);
			k.addr = p->src[0] & mask4[k.plen];
			__u64 h = pf_hash4(PF_CIDR4, k.plen, k.addr);
			if (!pf_maybe(h))
				continue;
			s = cidr_oa4_find(h, k.plen, k.addr);
			if (s != NO_SLOT)
				return s;
			slot = bpf_map_lookup_elem(&cidr_src4, &k);
			if (slot)
				return *slot;
		}
		return NO_SLOT;
	}
	struct guard_key6 k;
	for (int i = 0; i < GUARD_CIDR_PLENS; i++) {
		if (i >= cfg->cidr6_plens_n)
			break;
		__u32 plen = plen6(cfg->cidr6_plens[i]);
		struct addr6 a = masked6(p->src, plen);
		__u64 h = pf_hash6(PF_CIDR6, plen, a);
		if (!pf_maybe(h))
			continue;
		s = cidr_oa6_find(h, plen, a);
		if (s != NO_SLOT)
			return s;
		k.plen = plen;
		k.addr[0] = a.lo;
		k.addr[1] = a.lo >> 32;
		k.addr[2] = a.hi;
		k.addr[3] = a.hi >> 32;
		slot = bpf_map_lookup_elem(&cidr_src6, &k);
		if (slot)
			return *slot;
	}
	return NO_SLOT;
}

/* first_word's table: low16[x] is the index of x's lowest set bit (0 for
 * 0). FIRST_BITS(k+1) lists it for x in [1, 2^(k+1)): FIRST_BITS(k) for
 * [1, 2^k), k for 2^k, FIRST_BITS(k) again for 2^k + [1, 2^k). */
#define FIRST_BITS1 0
#define FIRST_BITS2 FIRST_BITS1, 1, FIRST_BITS1
#define FIRST_BITS3 FIRST_BITS2, 2, FIRST_BITS2
#define FIRST_BITS4 FIRST_BITS3, 3, FIRST_BITS3
#define FIRST_BITS5 FIRST_BITS4, 4, FIRST_BITS4
#define FIRST_BITS6 FIRST_BITS5, 5, FIRST_BITS5
#define FIRST_BITS7 FIRST_BITS6, 6, FIRST_BITS6
#define FIRST_BITS8 FIRST_BITS7, 7, FIRST_BITS7
#define FIRST_BITS9 FIRST_BITS8, 8, FIRST_BITS8
#define FIRST_BITS10 FIRST_BITS9, 9, FIRST_BITS9
#define FIRST_BITS11 FIRST_BITS10, 10, FIRST_BITS10
#define FIRST_BITS12 FIRST_BITS11, 11, FIRST_BITS11
#define FIRST_BITS13 FIRST_BITS12, 12, FIRST_BITS12
#define FIRST_BITS14 FIRST_BITS13, 13, FIRST_BITS13
#define FIRST_BITS15 FIRST_BITS14, 14, FIRST_BITS14
#define FIRST_BITS16 FIRST_BITS15, 15, FIRST_BITS15
static const __u8 low16[1 << 16] = { 0, FIRST_BITS16 };
_Static_assert(GUARD_FP_WORDS <= 16, "a sum's words must fit low16's index");

/* first_word returns the index of the lowest word whose bit is set in a
 * sum != 0: one load, where first_bit's multiply and load would put ~1.5 ns
 * more on the drop path's longest chain (sum, word, rule, counters). */
static __always_inline __u32 first_word(__u64 sum)
{
	return low16[sum & 0xffff] & (GUARD_FP_WORDS - 1);
}

/* De Bruijn table for first_bit. */
static const __u8 debruijn64[64] = {
	0, 1, 56, 2, 57, 49, 28, 3, 61, 58, 42, 50, 38, 29, 17, 4,
	62, 47, 59, 36, 45, 43, 51, 22, 53, 39, 33, 30, 24, 18, 12, 5,
	63, 55, 48, 27, 60, 41, 37, 16, 46, 35, 44, 21, 52, 32, 23, 11,
	54, 26, 40, 15, 34, 20, 31, 10, 25, 14, 19, 9, 13, 8, 7, 6,
};

/* first_bit returns the index of the lowest set bit of v != 0: a de Bruijn
 * multiply, because clang-16's BPF backend crashes on __builtin_ctzll and a
 * branchy search multiplies the verifier's states. */
static __always_inline __u32 first_bit(__u64 v)
{
	__u64 i = ((v & -v) * 0x03f79d71b4ca8b09ULL) >> 58;
	return debruijn64[i & 63];
}

/* The clock cache of coarse_now: bpf_ktime_get_coarse_ns() as read at the
 * jiffy clock_jiffies. Globals, read with a load each and no lookup, shared
 * by the CPUs: written once a tick. */
__u64 clock_jiffies = 0, clock_now = 0;

/* coarse_now is bpf_ktime_get_coarse_ns() without the helper call on most
 * packets: the coarse clock moves only at a tick, when jiffies do, and
 * bpf_jiffies64() is inlined to one load. So the value read at a jiffy is
 * kept and reused until the next one (the helper call was a fifth of a
 * drop). A CPU that reads the new jiffy with the old value (another CPU is
 * between its two stores), or that reads in the sub-microsecond window of a
 * tick between the jiffies increment and the timekeeper update, uses a value
 * one tick old: the same order of error the coarse clock already has. */
static __always_inline __u64 coarse_now(void)
{
	__u64 j = bpf_jiffies64(), now = clock_now;
	if (clock_jiffies != j || !now) {
		now = bpf_ktime_get_coarse_ns();
		clock_now = now;
		clock_jiffies = j;
	}
	return now;
}

/* live returns the rule's metadata when the slot holds a rule in force at now. */
static __always_inline struct guard_rule_meta *live(__u32 slot, __u64 now)
{
	struct guard_rule_meta *m = bpf_map_lookup_elem(&rule_meta, &slot);
	if (!m || m->expires_ns == 0 || now >= m->expires_ns)
		return NULL;
	return m;
}

/* A classification's result: the slot, and the rule's action above it. */
#define RES_SLOT(r) ((r) & 0x0fffffff)
#define RES_ACTION(r) ((r) >> 28)


/* How many expired rules a packet may skip in one classification. Expired
 * rules are deleted by the agent within a second; until then, a packet whose
 * first matching rules (more than this many, or all in its 64-slot word) have
 * expired is matched by no fingerprint rule. It never matches an expired one. */
#define MAX_EXPIRED_SKIPS 4

/* What a packet's L4 header lets rules name, which decides the fields a
 * classification reads. The rule compiler (rule.Matcher.AllowsMeta) puts a
 * rule naming TCP flags or a window only in the meta classes of TCP packets
 * with their header, one naming ports only in those of TCP and UDP, one
 * naming an ICMP type only in those of ICMP: so for any other packet every
 * candidate leaves those fields open, and reading them would AND in a set
 * that holds every candidate. Each kind gets its own copy of the classifier,
 * with the fields it cannot constrain compiled out: an ICMP packet reads no
 * port bitmaps, a UDP one checks no TCP field's names. */
enum fp_kind {
	FP_TCP,   /* every field but the ICMP type */
	FP_UDP,   /* no TCP flags, window or ICMP type */
	FP_OTHER, /* ICMP and every other protocol, and headers cut short: no ports, TCP flags or window */
};

#define ADDR_DST 0x100 /* guard_addr_word: the destination, not the source */

/* guard_addr_word returns word sel & 15 of the bitmap of the packet's source
 * address (or destination, with ADDR_DST): its longest prefix's entry, or
 * the field's open set; 0 when a map is missing. A global function: its
 * probe loops are verified once, not once per state of the word loop that
 * calls it. */
__noinline __u64 guard_addr_word(struct pkt *p, struct guard_config *cfg, __u32 sel)
{
	if (!p || !cfg)
		return 0;
	__u32 w = sel & (GUARD_FP_WORDS - 1);
	struct guard_bitmap *b;
	if (sel & ADDR_DST)
		b = p->family == 4
			? lookup_addr4(&fp_dst4, PF_FP_DST4 | WILD_DST4 << 8, p->dst[0], cfg->dst4_plens, cfg->dst4_plens_n)
			: lookup_addr6(&fp_dst6, PF_FP_DST6 | WILD_DST6 << 8, p->dst, cfg->dst6_plens, cfg->dst6_plens_n);
	else
		b = p->family == 4
			? lookup_addr4(&fp_src4, PF_FP_SRC4 | WILD_SRC4 << 8, p->src[0], cfg->src4_plens, cfg->src4_plens_n)
			: lookup_addr6(&fp_src6, PF_FP_SRC6 | WILD_SRC6 << 8, p->src, cfg->src6_plens, cfg->src6_plens_n);
	return b ? b->words[w] : 0;
}

/* addr4_word/addr6_word answer guard_addr_word without the call (~2 ns of
 * a 33 ns IPv4 fingerprint drop) when the home slot of the longest prefix
 * length in use decides: it holds the entry, or it is empty and that length
 * is the only one. Otherwise they make the call. No loop: a probe loop here
 * would be verified once per state of the word loop. */
static __always_inline __u64 addr4_word(struct pkt *p, struct guard_config *cfg, __u32 sel)
{
	const int dst = sel & ADDR_DST;
	void *map = dst ? (void *)&fp_dst4 : (void *)&fp_src4;
	__u8 n = dst ? cfg->dst4_plens_n : cfg->src4_plens_n;
	__u32 w = sel & (GUARD_FP_WORDS - 1);
	if (n == 0)
		goto call;
	__u32 plen = plen4(dst ? cfg->dst4_plens[0] : cfg->src4_plens[0]);
	__u32 a = (dst ? p->dst[0] : p->src[0]) & mask4[plen];
	__u32 idx = pf_hash4(dst ? PF_FP_DST4 : PF_FP_SRC4, plen, a) >> (64 - GUARD_OA_SHIFT);
	struct guard_addr4_entry *e = bpf_map_lookup_elem(map, &idx);
	if (!e)
		return 0;
	if ((e->flags & OA_VALID) && e->plen == plen && e->addr == a)
		return e->bitmap.words[w];
	if (n == 1 && !(e->flags & OA_USED)) {
		struct guard_bitmap *b = wild_at(dst ? WILD_DST4 : WILD_SRC4);
		return b ? b->words[w] : 0;
	}
call:
	return guard_addr_word(p, cfg, sel);
}

static __always_inline __u64 addr6_word(struct pkt *p, struct guard_config *cfg, __u32 sel)
{
	const int dst = sel & ADDR_DST;
	void *map = dst ? (void *)&fp_dst6 : (void *)&fp_src6;
	__u8 n = dst ? cfg->dst6_plens_n : cfg->src6_plens_n;
	__u32 w = sel & (GUARD_FP_WORDS - 1);
	if (n == 0)
		goto call;
	__u32 plen = plen6(dst ? cfg->dst6_plens[0] : cfg->src6_plens[0]);
	struct addr6 a = masked6(dst ? p->dst : p->src, plen);
	__u32 idx = pf_hash6(dst ? PF_FP_DST6 : PF_FP_SRC6, plen, a) >> (64 - GUARD_OA_SHIFT);
	struct guard_addr6_entry *e = bpf_map_lookup_elem(map, &idx);
	if (!e)
		return 0;
	if ((e->flags & OA_VALID) && e->plen == plen && addr6_is(e->addr, a))
		return e->bitmap.words[w];
	if (n == 1 && !(e->flags & OA_USED)) {
		struct guard_bitmap *b = wild_at(dst ? WILD_DST6 : WILD_SRC6);
		return b ? b->words[w] : 0;
	}
call:
	return guard_addr_word(p, cfg, sel);
}

/* classify_fp returns the first live fingerprint rule matching p, as
 * slot | action << 28, or NO_SLOT. kind is a constant: see enum fp_kind.
 *
 * First the fields every rule of the kind is matched on (meta class, ports)
 * narrow the candidates a word of 64 rules per bit of the sums at a time:
 * most packets no rule matches leave here, after a lookup or four. Then,
 * word by word from the lowest, the other fields: each read only when a
 * candidate left in the word names it (fp_names), and the first word with
 * a candidate left holds the winner. */
static __always_inline __u32 classify_fp(struct pkt *p, struct guard_config *cfg, const enum fp_kind kind)
{
	const int ports = kind != FP_OTHER, tcp = kind == FP_TCP, icmp_field = kind == FP_OTHER;
	__u32 zero = 0;
	if (!p || !cfg)
		return NO_SLOT;
	__u32 meta_k = ((((__u32)(p->family == 6) * 3 + p->frag) * 2 + p->has_l4) << 8) | p->protocol;
	struct guard_bitmap *meta = bpf_map_lookup_elem(&fp_meta, &meta_k);
	if (!meta)
		return NO_SLOT;
	__u64 sum = meta->sum;
	if (!sum)
		return NO_SLOT;
	struct guard_bitmap *active = wild_at(WILD_ACTIVE);
	if (!active)
		return NO_SLOT;
	sum &= active->sum;
	if (!sum)
		return NO_SLOT;
	__u32 k;
	struct guard_bitmap *dport = meta, *wdport = meta, *sport = meta, *wsport = meta;
	if (ports) {
		k = p->dport;
		dport = bpf_map_lookup_elem(&fp_dport, &k);
		k = WILD_DPORT * GUARD_META_ENTRIES + meta_k;
		wdport = bpf_map_lookup_elem(&fp_wild_class, &k);
		if (!dport || !wdport)
			return NO_SLOT;
		sum &= dport->sum | wdport->sum;
		if (!sum)
			return NO_SLOT;
		k = p->sport;
		sport = bpf_map_lookup_elem(&fp_sport, &k);
		k = WILD_SPORT * GUARD_META_ENTRIES + meta_k;
		wsport = bpf_map_lookup_elem(&fp_wild_class, &k);
		if (!sport || !wsport)
			return NO_SLOT;
		sum &= sport->sum | wsport->sum;
		if (!sum)
			return NO_SLOT;
	}
	struct guard_names *names = bpf_map_lookup_elem(&fp_names, &zero);
	if (!names)
		return NO_SLOT;

	/* Each field's bitmap pointer lives only inside its block, so the
	 * verifier's states agree after it whichever way the branch went. */
	__u64 v = 0;
	__u32 w = 0;
	for (int i = 0; i < GUARD_FP_WORDS; i++) {
		if (!sum)
			break;
		w = first_word(sum);
		sum &= sum - 1;
		v = meta->words[w] & active->words[w];
		if (ports)
			v &= (dport->words[w] | wdport->words[w]) & (sport->words[w] | wsport->words[w]);
		if (!v)
			continue;
		if (v & names->ttl[w]) {
			k = p->ttl;
			struct guard_bitmap *b = bpf_map_lookup_elem(&fp_ttl, &k);
			if (!b)
				return NO_SLOT;
			v &= b->words[w];
		}
		if (v & names->length[w]) {
			k = p->length;
			struct guard_bitmap *b = bpf_map_lookup_elem(&fp_length, &k);
			k = WILD_LENGTH * GUARD_META_ENTRIES + meta_k;
			struct guard_bitmap *wb = bpf_map_lookup_elem(&fp_wild_class, &k);
			if (!b || !wb)
				return NO_SLOT;
			v &= b->words[w] | wb->words[w];
		}
		if (tcp && (v & names->tcp_flags[w])) {
			k = p->tcp_flags;
			struct guard_bitmap *b = bpf_map_lookup_elem(&fp_tcp_flags, &k);
			if (!b)
				return NO_SLOT;
			v &= b->words[w];
		}
		if (tcp && (v & names->window[w])) {
			k = p->window;
			struct guard_bitmap *b = bpf_map_lookup_elem(&fp_window, &k);
			k = WILD_WINDOW * GUARD_META_ENTRIES + meta_k;
			struct guard_bitmap *wb = bpf_map_lookup_elem(&fp_wild_class, &k);
			if (!b || !wb)
				return NO_SLOT;
			v &= b->words[w] | wb->words[w];
		}
		if (icmp_field && (v & names->icmp_type[w])) {
			k = p->icmp_type;
			struct guard_bitmap *b = bpf_map_lookup_elem(&fp_icmp_type, &k);
			if (!b)
				return NO_SLOT;
			v &= b->words[w];
		}
		/* Address fields last: they cost a probe per prefix length. */
		if (v & names->src[w])
			v &= p->family == 4 ? addr4_word(p, cfg, w) : addr6_word(p, cfg, w);
		if (v & names->dst[w])
			v &= p->family == 4 ? addr4_word(p, cfg, w | ADDR_DST) : addr6_word(p, cfg, w | ADDR_DST);
		if (v)
			break;
	}
	if (!v)
		return NO_SLOT;
	/* The coarse clock (tick resolution, no hardware clock read: a precise
	 * read costs as much as the whole classification in a VM), and only
	 * once a rule matched. */
	__u64 now = coarse_now();
	for (int i = 0; i < MAX_EXPIRED_SKIPS + 1; i++) {
		if (!v)
			break;
		__u32 slot = w * 64 + first_bit(v);
		struct guard_rule_meta *m = live(slot, now);
		if (m)
			return slot | (m->action & 0xf) << 28;
		v &= v - 1;
	}
	return NO_SLOT;
}

/* rate_ok takes one token from the slot's bucket; capacity is one second of rate. */
static __always_inline int rate_ok(__u32 slot, __u32 rate, __u64 now)
{
	struct guard_bucket *b = bpf_map_lookup_elem(&rule_buckets, &slot);
	if (!b)
		return 1;
	__u64 cap = (__u64)rate * 1000000000ULL;
	int ok = 0;
	bpf_spin_lock(&b->lock);
	__u64 elapsed = now - b->last_ns;
	if (b->last_ns == 0 || elapsed > 1000000000ULL)
		elapsed = 1000000000ULL;
	b->last_ns = now;
	__u64 t = b->tokens + elapsed * rate;
	if (t > cap)
		t = cap;
	if (t >= 1000000000ULL) {
		t -= 1000000000ULL;
		ok = 1;
	}
	b->tokens = t;
	bpf_spin_unlock(&b->lock);
	return ok;
}

/* Protocol class by (family == 6) << 8 | protocol, for an unfragmented or
 * first-fragment IP packet; TCP flag class by flags & 0x1f (FIN SYN RST PSH
 * ACK; PSH does not matter). Tables instead of branches: a flood of mixed
 * packets mispredicts none. */
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Winitializer-overrides"
static const __u8 proto_class[512] = {
	[0 ... 511] = PCLASS_OTHER_IP,
	[IPPROTO_TCP] = PCLASS_TCP,
	[IPPROTO_UDP] = PCLASS_UDP,
	[IPPROTO_ICMP] = PCLASS_ICMP,
	[256 + IPPROTO_TCP] = PCLASS_TCP,
	[256 + IPPROTO_UDP] = PCLASS_UDP,
	[256 + IPPROTO_ICMPV6] = PCLASS_ICMPV6,
};
#pragma clang diagnostic pop

static const __u8 flag_class[32] = {
	[0x00] = FCLASS_OTHER,
	[0x01] = FCLASS_FIN,
	[0x02] = FCLASS_SYN,
	[0x03] = FCLASS_FIN,
	[0x04] = FCLASS_RST,
	[0x05] = FCLASS_RST,
	[0x06] = FCLASS_RST,
	[0x07] = FCLASS_RST,
	[0x08] = FCLASS_OTHER,
	[0x09] = FCLASS_FIN,
	[0x0a] = FCLASS_SYN,
	[0x0b] = FCLASS_FIN,
	[0x0c] = FCLASS_RST,
	[0x0d] = FCLASS_RST,
	[0x0e] = FCLASS_RST,
	[0x0f] = FCLASS_RST,
	[0x10] = FCLASS_ACK,
	[0x11] = FCLASS_FIN,
	[0x12] = FCLASS_SYNACK,
	[0x13] = FCLASS_FIN,
	[0x14] = FCLASS_RST,
	[0x15] = FCLASS_RST,
	[0x16] = FCLASS_RST,
	[0x17] = FCLASS_RST,
	[0x18] = FCLASS_ACK,
	[0x19] = FCLASS_FIN,
	[0x1a] = FCLASS_SYNACK,
	[0x1b] = FCLASS_FIN,
	[0x1c] = FCLASS_RST,
	[0x1d] = FCLASS_RST,
	[0x1e] = FCLASS_RST,
	[0x1f] = FCLASS_RST,
};

static __always_inline void count_iface(struct xdp_md *ctx, struct pkt *p, __u32 verdict)
{
	__u32 idx = ctx->ingress_ifindex & (GUARD_IFACE_SLOTS - 1);
	struct guard_iface_stats *s = bpf_map_lookup_elem(&iface_stats, &idx);
	if (!s)
		return;
	if (verdict < VERDICT_COUNT)
		s->actions[verdict]++;
	__u32 pc;
	if (p->family == 0)
		pc = PCLASS_NON_IP;
	else if (p->frag == 2)
		pc = PCLASS_FRAGMENT;
	else {
		/* The index's bound, explicit: clang knows it from the operands and
		 * drops the mask, and 6.1's verifier loses it through the OR
		 * ("math between map_value pointer and register with unbounded
		 * min value"). */
		__u32 i = (__u32)(p->family == 6) << 8 | p->protocol;
		asm volatile("" : "+r"(i));
		pc = proto_class[i & 511];
	}
	/* clang knows the tables' values and would drop the bound the verifier needs. */
	asm volatile("" : "+r"(pc));
	if (pc < PCLASS_COUNT)
		s->protocols[pc]++;
	if (p->has_l4 && p->protocol == IPPROTO_TCP) {
		__u32 fi = p->tcp_flags;
		asm volatile("" : "+r"(fi));
		__u32 fc = flag_class[fi & 0x1f];
		asm volatile("" : "+r"(fc));
		if (fc < FCLASS_COUNT)
			s->tcp_flags[fc]++;
	}
}

static __always_inline void sample(struct xdp_md *ctx, struct pkt *p, struct guard_config *cfg, __u32 slot,
				   __u32 verdict, __u64 now)
{
	__u32 zero = 0;
	struct guard_cpu *c = bpf_map_lookup_elem(&cpu_scratch, &zero);
	if (!c)
		return;
	if (++c->sample_tick < cfg->sample_every)
		return;
	c->sample_tick = 0;
	struct guard_sample *s = bpf_ringbuf_reserve(&samples, sizeof(*s), 0);
	if (!s) {
		__u32 idx = ctx->ingress_ifindex & (GUARD_IFACE_SLOTS - 1);
		struct guard_iface_stats *st = bpf_map_lookup_elem(&iface_stats, &idx);
		if (st)
			st->samples_lost++;
		return;
	}
	s->time_ns = now;
	s->ifindex = ctx->ingress_ifindex;
	s->slot = slot;
	s->family = p->family;
	s->protocol = p->protocol;
	s->ttl = p->ttl;
	s->fragment = p->frag;
	s->has_l4 = p->has_l4;
	s->tcp_flags = p->tcp_flags;
	s->icmp_type = p->icmp_type;
	s->verdict = verdict;
	s->length = p->length;
	s->sport = p->sport;
	s->dport = p->dport;
	s->window = p->window;
	__builtin_memcpy(s->src, p->src, 16);
	__builtin_memcpy(s->dst, p->dst, 16);
	bpf_ringbuf_submit(s, 0);
}

/* record_pass notes the frame's address and the guard's start time for the
 * stack's traces. The address is copied into a 32-bit register, which makes
 * it a plain number (hence -mcpu=v3); only a privileged loader may. */
static __always_inline void record_pass(struct xdp_md *ctx, __u64 start)
{
	__u32 zero = 0, low;
	struct guard_xdp_pass *xp = bpf_map_lookup_elem(&xdp_pass, &zero);
	if (!xp)
		return;
	asm volatile("%0 = %1" : "=w"(low) : "w"(ctx->data));
	xp->data = (__u64)low + 1;
	xp->ts = start;
}

SEC("xdp")
int guard_xdp(struct xdp_md *ctx)
{
	/* No packet pointer lives past the parse: one would carry the range
	 * each parse path checked, and the verifier would walk the inlined
	 * classifiers once per range (2.4x the instructions). Inlined, not
	 * called as global functions, the classifiers save ~1 ns a drop. */
	struct pkt p = {};
	__u32 verdict = VERDICT_PASS, slot = NO_SLOT, action = 0, zero = 0;
	__u64 now = 0, start = 0;

	if (trace_xdp)
		start = bpf_ktime_get_ns();
	struct guard_config *cfg = bpf_map_lookup_elem(&guard_config, &zero);
	if (!cfg)
		return XDP_PASS;
	guard_parse(ctx, &p);
	if (p.family == 0)
		goto out;
	__u32 res;
	if (p.has_l4 && p.protocol == IPPROTO_TCP)
		res = classify_fp(&p, cfg, FP_TCP);
	else if (p.has_l4 && p.protocol == IPPROTO_UDP)
		res = classify_fp(&p, cfg, FP_UDP);
	else
		res = classify_fp(&p, cfg, FP_OTHER);
	if (res != NO_SLOT) {
		slot = RES_SLOT(res);
		action = RES_ACTION(res);
	} else if (p.family == 4 ? cfg->cidr4_plens_n : cfg->cidr6_plens_n) {
		slot = lookup_cidr(&p, cfg);
		if (slot == NO_SLOT)
			goto out;
		now = coarse_now();
		struct guard_rule_meta *m = live(slot, now);
		if (!m) {
			slot = NO_SLOT;
			goto out;
		}
		action = m->action;
	} else {
		goto out;
	}
	struct guard_rule_stats *rs = bpf_map_lookup_elem(&rule_stats, &slot);
	if (rs) {
		rs->packets++;
		rs->bytes += ctx->data_end - ctx->data;
	}
	switch (action) {
	case ACTION_DROP:
		verdict = VERDICT_DROP;
		break;
	case ACTION_RATE_LIMIT: {
		struct guard_rule_meta *m = bpf_map_lookup_elem(&rule_meta, &slot);
		if (!m)
			break;
		now = coarse_now();
		verdict = rate_ok(slot, m->rate_pps, now) ? VERDICT_PASS : VERDICT_RATE_LIMITED;
		break;
	}
	case ACTION_MONITOR:
		verdict = VERDICT_MONITOR;
		break;
	}
out:
	count_iface(ctx, &p, verdict);
	if (cfg->sample_every) {
		if (!now)
			now = coarse_now();
		sample(ctx, &p, cfg, slot, verdict, now);
	}
	if (verdict == VERDICT_DROP || verdict == VERDICT_RATE_LIMITED)
		return XDP_DROP;
	if (start)
		record_pass(ctx, start);
	return XDP_PASS;
}
