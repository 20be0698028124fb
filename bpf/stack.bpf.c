//go:build ignore
// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)

// Stack observation: per-interface traffic, kernel drops by reason, sampled
// per-stage latency through the IP stack, and TCP state/RTT/retransmit/reset
// events, all for one network namespace.
//
// Tracepoints are global, so every program that sees other namespaces' traffic
// first compares the namespace inode with target_netns. Netfilter and TCX
// programs are attached per namespace (per device) and need no such check;
// the per-packet counters are TCX programs for that reason.
//
// Latency is sampled: one skb in sample_every starts a sample at the first
// boundary of its direction. A sample lives in a direct-mapped slot table keyed
// by the skb's address, with a bitmap of busy slots in front, so a boundary
// that sees an unsampled skb costs one cached load and a bit test, no hash
// lookup. The boundaries and stages are listed in exporter/doc.go.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "xdp_pass.h"

char __license[] SEC("license") = "Dual BSD/GPL";

#define NF_ACCEPT 1
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_ARP 0x0806
#define NET_HEADER_UNSET 0xffff
#define IPPROTO_ICMPV6 58 // a uapi #define, absent from BTF

// Namespace inode to observe; 0 observes every namespace. Set from Go.
volatile const __u32 target_netns = 0;
// Start a latency sample on one skb in sample_every (per CPU). Set from Go.
volatile const __u32 sample_every = 64;
// Whether the path programs (the stage boundaries) are attached. Every
// program dispatched per packet costs tens of nanoseconds before it runs a
// single instruction, so the boundaries are attached only in windows (see
// bpf.Stack.AttachPath); kfree_skb, always attached, ends samples only then.
// Set from Go.
volatile __u32 path_on = 0;

// Packet-path tracing (off unless trace_on). A packet is tracked when
// (identity hash & trace_track_mask) == 0; a tracked packet's record is
// emitted when it was dropped, slower than trace_slow_ns end to end, or
// (hash & trace_keep_mask) == 0. Untracked dropped packets are emitted too,
// with the drop point only. The hash depends only on packet headers, so two
// hosts decide alike for the same packet.
volatile const __u32 trace_on = 0;
volatile const __u32 trace_track_mask = 31;
volatile const __u32 trace_keep_mask = 4095;
volatile const __u64 trace_slow_ns = 1000000;
// Dropped or slow packets kept beyond the hash-kept ones, per CPU and
// second (~1.07 s windows): a drop flood must not flood user space. The
// excess is counted in lost_events[LOST_TRACE_RATE].
volatile const __u32 trace_tail_budget = 20;
// Whether the kernel has the kfuncs bpf_rdonly_cast and bpf_cast_to_kern_ctx
// (Linux 6.2): plain loads through a cast pointer, where older kernels need a
// helper call per read. Set from Go from the kernel's BTF; the verifier drops
// the branch not taken, so each kernel runs one variant at no cost.
volatile const __u32 have_kfuncs = 0;
// Whether the netfilter boundaries are attached (BPF netfilter links, Linux
// 6.4). Without them tx samples start at net:net_dev_queue, so the stages
// that do not touch the IP layer (rx backlog, tx qdisc and driver) are still
// observed. Set from Go.
volatile const __u32 have_netfilter = 1;
// Whether kfree_skb names the socket a received skb was dropped at (its
// rx_sk argument, Linux 6.11). Without it tcp_probe_rst notes the RSTs
// established connections receive. Set from Go (tests turn it off on a new
// kernel to run the older kernels' variant).
volatile const __u32 have_rx_sk = 1;
// Reaction records (see reaction_emit) per CPU and second (~1.07 s windows):
// a scan of every port must not flood the ring buffer or user space. The
// excess is counted in lost_events[LOST_REACTION_RATE] (exported apart from
// the losses: the counters count every reaction). Set from Go.
volatile const __u32 reaction_budget = 200;

enum direction {
	DIRECTION_RX = 0,
	DIRECTION_TX = 1,
};

enum protocol {
	PROTOCOL_OTHER = 0,
	PROTOCOL_TCP = 1,
	PROTOCOL_UDP = 2,
	PROTOCOL_ICMP = 3,
	PROTOCOL_ICMPV6 = 4,
	PROTOCOL_ARP = 5,
};

// Points where a sampled skb is timestamped, in path order per direction; a
// stage is the time between two consecutive boundaries.
enum stage_boundary {
	BOUNDARY_RX_ENTRY = 0,         // net:netif_rx, net:napi_gro_receive_entry, ... (the device hands the skb over)
	BOUNDARY_RX_NETIF_RECEIVE = 1, // net:netif_receive_skb
	BOUNDARY_RX_PRE_ROUTING = 2,   // netfilter PRE_ROUTING (first priority)
	BOUNDARY_RX_LOCAL_IN = 3,      // netfilter LOCAL_IN (last priority)
	BOUNDARY_RX_DELIVERED = 4,     // skb:skb_copy_datagram_iovec or skb:consume_skb (final)
	BOUNDARY_TX_LOCAL_OUT = 5,     // netfilter LOCAL_OUT (first priority)
	BOUNDARY_TX_POST_ROUTING = 6,  // netfilter POST_ROUTING (last priority)
	BOUNDARY_TX_QUEUE = 7,         // net:net_dev_queue
	BOUNDARY_TX_START_XMIT = 8,    // net:net_dev_start_xmit
	BOUNDARY_TX_XMIT = 9,          // net:net_dev_xmit (final)
};

// Histogram index of each stage (the stage ending at a boundary).
enum stage {
	STAGE_RX_BACKLOG = 0,  // entry -> netif_receive_skb
	STAGE_RX_CORE = 1,     // netif_receive_skb -> PRE_ROUTING
	STAGE_RX_IP = 2,       // PRE_ROUTING -> LOCAL_IN
	STAGE_RX_SOCKET = 3,   // LOCAL_IN -> skb_copy_datagram_iovec | consume_skb
	STAGE_TX_IP = 4,       // LOCAL_OUT -> POST_ROUTING
	STAGE_TX_NEIGH = 5,    // POST_ROUTING -> net_dev_queue
	STAGE_TX_QDISC = 6,    // net_dev_queue -> net_dev_start_xmit
	STAGE_TX_DRIVER = 7,   // net_dev_start_xmit -> net_dev_xmit
	STAGE_COUNT = 8,
};

// Indexes into tcp_events.
enum tcp_event {
	TCP_EVENT_RETRANSMIT = 0,
	TCP_EVENT_RESET_TX = 1,
	TCP_EVENT_RESET_RX = 2,
	TCP_EVENT_PASSIVE_OPEN = 3,
	TCP_EVENT_COUNT = 4,
};

// The XDP guard's TCP flag classes (guard.h, enum guard_flag_class), so
// that what the stack rejects compares with what the guard counted.
enum tcp_flag_class {
	TCP_CLASS_SYN = 0,    // SYN without ACK
	TCP_CLASS_SYNACK = 1,
	TCP_CLASS_ACK = 2,    // ACK without SYN, RST, FIN
	TCP_CLASS_RST = 3,
	TCP_CLASS_FIN = 4,
	TCP_CLASS_OTHER = 5,  // none of the above (no flags, PSH alone)
	TCP_CLASS_COUNT = 6,
};

enum udp_connected_counter {
	UDP_CONNECTED_PACKETS = 0,
	UDP_CONNECTED_BYTES = 1,
	UDP_CONNECTED_COUNT = 2,
};

// One UDP datagram in this many is looked up (a power of two).
#define UDP_CONNECTED_SAMPLE 16

// Indexes into lost_events.
enum lost_cause {
	LOST_MAP_FULL = 0,
	LOST_TRACE_RINGBUF = 1, // the trace ring buffer was full
	LOST_TRACE_RATE = 2,    // a dropped/slow packet over trace_tail_budget
	LOST_REACTION_RINGBUF = 3, // the reaction ring buffer was full
	LOST_REACTION_RATE = 4,    // a reaction over reaction_budget
	LOST_COUNT = 5,
};

// Trace points: the boundaries (enum stage_boundary) plus the socket enqueue and
// the XDP guard.
enum trace_point {
	TRACE_POINT_QUEUED = 10, // sock:sk_data_ready after LOCAL_IN on the same CPU
	TRACE_POINT_XDP = 11,    // the XDP guard started on the frame (xdp_pass)
	TRACE_POINTS = 12,
};

enum trace_end {
	TRACE_END_DONE = 1,   // delivered (copied/consumed) or transmitted
	TRACE_END_DROP = 2,   // skb:kfree_skb
	TRACE_END_QUEUED = 3, // queued to a socket (UDP/ICMP: no later tracepoint)
};

// Protocols of the closed-port maps (closed_ports, closed_probes).
enum probe_protocol {
	PROBE_TCP = 0, // a TCP SYN (without ACK) to a port no socket listens on
	PROBE_UDP = 1, // a UDP datagram to a port no socket is bound to
	PROBE_PROTOCOLS = 2,
};

// Enums only Go reads (bpf2go -type): referenced here so they reach BTF, and
// bpf/stack.go takes its constants from the generated ones.
enum direction unused_direction __attribute__((unused));
enum protocol unused_protocol __attribute__((unused));
enum stage_boundary unused_boundary __attribute__((unused));
enum stage unused_stage __attribute__((unused));
enum tcp_event unused_tcp_event __attribute__((unused));
enum lost_cause unused_lost_cause __attribute__((unused));
enum trace_point unused_trace_point __attribute__((unused));
enum trace_end unused_trace_end __attribute__((unused));
enum probe_protocol unused_probe_protocol __attribute__((unused));

// A packet's identity: what both ends see of it.
struct trace_flow {
	__u64 hash;      // of addresses, ports, protocol, IPv4 ID and TCP seq / UDP len+csum+8 payload bytes / ICMP id+seq
	__u8 saddr[16];  // IPv4 in the first 4 bytes
	__u8 daddr[16];
	__u16 sport;     // host order; 0 for ICMP
	__u16 dport;
	__u8 family;     // 4, 6, or 0 when the headers could not be read
	__u8 protocol;   // enum protocol
	__u8 pad[2];
};

// One packet's path, emitted to trace_events.
struct trace_record {
	struct trace_flow flow;
	__u64 ts[TRACE_POINTS]; // bpf_ktime_get_ns() per point passed; 0 = not passed
	__u64 start_ts;
	__u64 end_ts;           // last point, or the drop
	__u32 ifindex;
	__u32 drop_reason;      // enum skb_drop_reason when end == TRACE_END_DROP
	__u8 direction;
	__u8 end;               // enum trace_end
	__u8 pad[6];
};

// log2 nanosecond buckets: bucket i counts values v with 2^(i-1) < v <= 2^i
// (bucket 0 holds v <= 1); the last bucket also holds everything larger.
#define HIST_BUCKETS 32
#define SAMPLE_SLOTS 4096 // power of two

struct traffic_key {
	__u32 ifindex;
	__u8 direction; // enum direction
	__u8 protocol;  // enum protocol
	__u16 pad;
};

struct traffic_value {
	__u64 packets; // wire packets: GSO/GRO aggregates count their segments
	__u64 bytes;   // skb length plus the device's link-layer header
};

// A reaction of the stack to a received packet: the kernel dropped it for a
// reason that means "nobody here asked for this" (NO_SOCKET: a SYN or UDP
// datagram to a closed port, which the node answers with a RST or an ICMP
// port unreachable; TCP_LISTEN_OVERFLOW: a handshake's ACK a full accept
// queue refused; TCP_RESET and the sequence checks' reasons: a RST aimed at a
// connection, in its window but not exact or outside it). Emitted to the
// reactions ring buffer with the packet's headers, so the agent's traffic
// window holds the stack's answers beside the arriving headers the XDP
// guard samples.
struct reaction_record {
	__u32 ifindex;
	__u32 reason;  // enum skb_drop_reason value of the running kernel
	__u8 saddr[16]; // IPv4 in the first 4 bytes
	__u8 daddr[16];
	__u16 sport;   // host order
	__u16 dport;
	__u16 length;  // IP packet length
	__u16 window;  // TCP window
	__u8 family;   // 4 or 6
	__u8 protocol; // IP protocol number
	__u8 tcp_flags;
	__u8 ttl;      // TTL or hop limit
};

struct reaction_record *unused_reaction __attribute__((unused)); // for bpf2go -type

struct drop_key {
	__u32 reason;  // enum skb_drop_reason value of the running kernel
	__u8 protocol; // enum protocol
	__u8 pad[3];
};

// An in-flight latency sample.
struct latency_sample {
	__u64 skb;      // skb_id() of the sampled skb; 0 = free slot
	__u64 ts;       // bpf_ktime_get_ns() at the last boundary
	__u32 boundary; // enum stage_boundary last passed
	__u32 traced;   // the slot's traces entry follows this skb
};

// Packets and bytes per interface, direction and protocol, for interfaces
// whose cell in traffic_cells another interface holds (see count_traffic).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct traffic_key);
	__type(value, struct traffic_value);
} traffic SEC(".maps");

// Packets and bytes per interface, direction and protocol, direct-mapped
// by ifindex: an inlined array lookup instead of a hash per packet. A cell
// belongs to the first interface counted in it on its CPU.
#define TRAFFIC_IF_SLOTS 256 // power of two
#define PROTOCOL_SLOTS 8     // enum protocol fits

struct traffic_cell {
	__u64 packets;
	__u64 bytes;
	__u32 ifindex; // 0: free
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TRAFFIC_IF_SLOTS * 2 * PROTOCOL_SLOTS);
	__type(key, __u32); // ((ifindex % TRAFFIC_IF_SLOTS) * 2 + direction) * PROTOCOL_SLOTS + protocol
	__type(value, struct traffic_cell);
} traffic_cells SEC(".maps");

// Dropped skbs per drop reason and protocol, for reasons past DROP_REASON_SLOTS
// (subsystem-specific reasons carry high bits).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 2048);
	__type(key, struct drop_key);
	__type(value, __u64); // drops
} drops SEC(".maps");

// Dropped skbs per drop reason (below DROP_REASON_SLOTS) and protocol.
#define DROP_REASON_SLOTS 256

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_REASON_SLOTS * PROTOCOL_SLOTS);
	__type(key, __u32);   // reason * PROTOCOL_SLOTS + protocol
	__type(value, __u64); // drops
} drop_cells SEC(".maps");

// In-flight latency samples, direct-mapped by skb address. Shared across
// CPUs because an skb's stages may run on different CPUs (the copy to user
// runs on the reader's CPU).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SAMPLE_SLOTS);
	__type(key, __u32); // slot: hash of the skb address
	__type(value, struct latency_sample);
} samples SEC(".maps");

// One bit per samples slot, set while the slot holds a sample. It is 512
// bytes, so it stays in cache: an unsampled skb at a boundary costs a load
// from here instead of a miss in the 96 KiB slot table.
struct slot_bitmap {
	__u64 words[SAMPLE_SLOTS / 64];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32); // always 0
	__type(value, struct slot_bitmap);
} sample_slots_used SEC(".maps");

// Per-CPU countdown deciding which skb starts a sample.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);   // always 0
	__type(value, __u32); // skbs seen since the last sample
} sample_tick SEC(".maps");

// Stage latency histogram counts.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAGE_COUNT * HIST_BUCKETS);
	__type(key, __u32);   // stage * HIST_BUCKETS + bucket
	__type(value, __u64); // observations
} latency_buckets SEC(".maps");

// Stage latency sums.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAGE_COUNT);
	__type(key, __u32);   // enum stage
	__type(value, __u64); // nanoseconds
} latency_sums SEC(".maps");

// The path of each traced skb, in the slot of its latency sample.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SAMPLE_SLOTS);
	__type(key, __u32); // slot
	__type(value, struct trace_record);
} traces SEC(".maps");

// Finished paths for user space.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 19);
} trace_events SEC(".maps");

// The traced skb that last passed LOCAL_IN on this CPU: the socket enqueue
// that follows in the same softirq has only the socket.
struct rx_current {
	__u64 skb;
	__u32 slot;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32); // always 0
	__type(value, struct rx_current);
} trace_rx_current SEC(".maps");

// The last frame the XDP guard passed on each CPU: the guard's map
// (struct guard_xdp_pass in xdp_pass.h), shared when the agent runs both; an
// empty map of the stack's own otherwise.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32); // always 0
	__type(value, struct guard_xdp_pass);
} xdp_pass SEC(".maps");

// Per-CPU use of trace_tail_budget.
struct tail_budget {
	__u64 window; // bpf_ktime_get_ns() >> 30
	__u32 used;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32); // always 0
	__type(value, struct tail_budget);
} trace_tail_used SEC(".maps");

// Smoothed RTT histogram counts, one observation per tcp:tcp_probe.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HIST_BUCKETS);
	__type(key, __u32);   // bucket
	__type(value, __u64); // observations
} rtt_buckets SEC(".maps");

// Smoothed RTT sum.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);   // always 0
	__type(value, __u64); // nanoseconds
} rtt_sum SEC(".maps");

// Net change of TCP sockets per state since load (summed over CPUs; a CPU's
// share may be negative). Added to a snapshot of the sockets taken at start.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);   // TCP state (TCP_ESTABLISHED = 1 ...)
	__type(value, __s64); // entries minus exits
} tcp_state_delta SEC(".maps");

// TCP retransmits and resets.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TCP_EVENT_COUNT);
	__type(key, __u32);   // enum tcp_event
	__type(value, __u64); // events
} tcp_events SEC(".maps");

// Incoming TCP segments of no connection, per flag class: those the stack
// answered with a reset (a closed port, a listener receiving an ACK, a
// SYN-ACK nobody asked for) and those it dropped for nonsense flags
// (TCP_FLAGS). The flood alerts weigh a flag class's rate at the guard
// against this: a flood's segments belong nowhere, an ordinary burst's
// (closing FINs, a bulk transfer's ACKs) belong to their connections.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TCP_CLASS_COUNT);
	__type(key, __u32);   // enum tcp_flag_class
	__type(value, __u64); // segments
} tcp_rejected SEC(".maps");

// UDP datagrams received for connected sockets: answers from the peer a
// socket of the node connected to (a QUIC or other UDP download), which the
// UDP flood alerts do not count as flood. Counted at tc ingress.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, UDP_CONNECTED_COUNT);
	__type(key, __u32);   // enum udp_connected_counter
	__type(value, __u64); // datagrams or bytes
} udp_connected SEC(".maps");

// UDP datagrams a CPU has seen at tc ingress, for count_udp_connected's
// sampling.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);   // always 0
	__type(value, __u64); // datagrams
} udp_connected_tick SEC(".maps");

// Events the programs could not record.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LOST_COUNT);
	__type(key, __u32);   // enum lost_cause
	__type(value, __u64); // events
} lost_events SEC(".maps");

// The reactions (struct reaction_record), read by the agent into its
// traffic window. Bounded per CPU by reaction_budget.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 18);
} reactions SEC(".maps");

struct reaction_tokens {
	__u64 window; // bpf_ktime_get_ns() >> 30 of the current window
	__u32 used;   // records emitted in it
	__u32 pad;
};

// Per-CPU reaction budget state.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32); // always 0
	__type(value, struct reaction_tokens);
} reaction_budget_used SEC(".maps");

// Closed ports probed since the agent last read (and cleared) the map: one
// bit per port. A port is 16 bits, so an exact set costs 8 KiB per protocol
// and one OR per probe; a sketch (HyperLogLog) would estimate what this
// counts exactly in less memory but no less work. The agent reads and clears
// it every second and reports the distinct ports of a sliding window
// (packetscope_closed_ports_probed): distinct ports, not packets, tell a scan
// from a client retrying one closed port.
struct port_bitmap {
	__u64 words[65536 / 64];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PROBE_PROTOCOLS);
	__type(key, __u32); // enum probe_protocol
	__type(value, struct port_bitmap);
} closed_ports SEC(".maps");

// Probes of closed ports (packets, not distinct ports).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PROBE_PROTOCOLS);
	__type(key, __u32);   // enum probe_protocol
	__type(value, __u64); // probes
} closed_probes SEC(".maps");

// Verdicts on received RSTs aimed at connections (indexes of rst_verdicts).
enum rst_verdict {
	RST_ACCEPTED = 0,      // exactly in sequence: the connection was reset (tcp_receive_reset)
	RST_CHALLENGED = 1,    // in the window but not exact: a challenge ACK, dropped (RFC 5961 3.2)
	RST_OUT_OF_WINDOW = 2, // outside the receive window: dropped
	RST_VERDICTS = 3,
};

// RSTs by verdict (packets). A blind reset injection sweeps the sequence
// space: its RSTs are mostly out of window, some challenged; a peer
// resetting its own connection sends one exact RST.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RST_VERDICTS);
	__type(key, __u32);   // enum rst_verdict
	__type(value, __u64); // RSTs
} rst_verdicts SEC(".maps");

// bpf_rdonly_cast turns an address into a read-only pointer of a kernel
// type: loads through it are plain loads the kernel guards with an exception
// table entry, much cheaper than a bpf_probe_read_kernel call per packet.
// Weak: on kernels before 6.2 the loader poisons the (dead) calls instead of
// failing, and have_kfuncs selects bpf_probe_read_kernel.
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

static __always_inline bool netns_match(const struct net *net)
{
	if (!target_netns)
		return true;
	if (!net)
		return false;
	return net->ns.inum == target_netns;
}

static __always_inline bool dev_in_scope(const struct net_device *dev)
{
	if (!target_netns)
		return true;
	if (!dev)
		return false;
	return netns_match(dev->nd_net.net);
}

static __always_inline bool sk_in_scope(const struct sock *sk)
{
	if (!target_netns)
		return true;
	if (!sk)
		return false;
	return netns_match(sk->__sk_common.skc_net.net);
}

static __always_inline void count_lost(__u32 cause)
{
	__u64 *v = bpf_map_lookup_elem(&lost_events, &cause);
	if (v)
		*v += 1;
}

// protocol_of names an IP protocol number.
static __always_inline __u8 protocol_of(__u8 l4)
{
	switch (l4) {
	case IPPROTO_TCP:
		return PROTOCOL_TCP;
	case IPPROTO_UDP:
		return PROTOCOL_UDP;
	case IPPROTO_ICMP:
		return PROTOCOL_ICMP;
	case IPPROTO_ICMPV6:
		return PROTOCOL_ICMPV6;
	}
	return PROTOCOL_OTHER;
}

// classify names the L4 protocol of the packet whose L3 header is at l3.
static __always_inline __u8 classify(__u16 eth_proto_be, const unsigned char *l3)
{
	__u16 eth_proto = bpf_ntohs(eth_proto_be);
	__u8 l4;

	if (eth_proto == ETH_P_ARP)
		return PROTOCOL_ARP;
	if (!l3)
		return PROTOCOL_OTHER;
	if (eth_proto == ETH_P_IP) {
		if (have_kfuncs) {
			const struct iphdr *ip = bpf_rdonly_cast(l3, bpf_core_type_id_kernel(struct iphdr));
			l4 = ip->protocol;
		} else if (bpf_probe_read_kernel(&l4, sizeof(l4), l3 + offsetof(struct iphdr, protocol))) {
			return PROTOCOL_OTHER;
		}
	} else if (eth_proto == ETH_P_IPV6) {
		if (have_kfuncs) {
			const struct ipv6hdr *ip6 = bpf_rdonly_cast(l3, bpf_core_type_id_kernel(struct ipv6hdr));
			l4 = ip6->nexthdr;
		} else if (bpf_probe_read_kernel(&l4, sizeof(l4), l3 + offsetof(struct ipv6hdr, nexthdr))) {
			return PROTOCOL_OTHER;
		}
	} else {
		return PROTOCOL_OTHER;
	}
	return protocol_of(l4);
}

// network_header returns the skb's L3 header, or NULL when it is not set.
static __always_inline const unsigned char *network_header(const struct sk_buff *skb)
{
	__u64 off = skb->network_header;
	if (off == NET_HEADER_UNSET)
		return NULL;
	return skb->head + off;
}

// wire_packets counts a GSO/GRO aggregate as the segments it stands for.
// Only an aggregate can be longer than the device's MTU plus link header, so
// other skbs skip reading the shared info.
static __always_inline __u64 wire_packets(const struct sk_buff *skb, const struct net_device *dev, __u32 len)
{
	if (len <= dev->mtu + dev->hard_header_len)
		return 1;
	__u64 end = skb->end;
	__u16 segs;
	if (have_kfuncs) {
		const struct skb_shared_info *shinfo =
			bpf_rdonly_cast(skb->head + end, bpf_core_type_id_kernel(struct skb_shared_info));
		segs = shinfo->gso_segs;
	} else {
		const struct skb_shared_info *shinfo = (const void *)(skb->head + end);
		if (bpf_core_read(&segs, sizeof(segs), &shinfo->gso_segs))
			return 1;
	}
	return segs ? segs : 1;
}

static __always_inline void count_traffic(__u32 ifindex, __u8 direction, __u8 protocol,
					  __u64 packets, __u64 bytes)
{
	__u32 cell = ((ifindex & (TRAFFIC_IF_SLOTS - 1)) * 2 + (direction & 1)) * PROTOCOL_SLOTS +
		     (protocol & (PROTOCOL_SLOTS - 1));
	struct traffic_cell *c = bpf_map_lookup_elem(&traffic_cells, &cell);
	if (c) {
		if (c->ifindex == 0)
			c->ifindex = ifindex; // per-CPU: no other writer
		if (c->ifindex == ifindex) {
			c->packets += packets;
			c->bytes += bytes;
			return;
		}
	}
	struct traffic_key key = {
		.ifindex = ifindex,
		.direction = direction,
		.protocol = protocol,
	};
	struct traffic_value *v = bpf_map_lookup_elem(&traffic, &key);
	if (v) {
		v->packets += packets;
		v->bytes += bytes;
		return;
	}
	struct traffic_value init = { .packets = packets, .bytes = bytes };
	if (bpf_map_update_elem(&traffic, &key, &init, BPF_NOEXIST) && bpf_map_update_elem(&traffic, &key, &init, BPF_ANY))
		count_lost(LOST_MAP_FULL);
}

// log2_bucket returns ceil(log2(v)) clamped to the histogram, without loops
// or ctz (clang-16's BPF backend cannot lower __builtin_ctzll).
static __always_inline __u32 log2_bucket(__u64 v)
{
	__u32 r = 0;
	__u64 x;

	if (v <= 1)
		return 0;
	x = v - 1; // so exact powers of two land in their own bucket (le = 2^i)
	if (x >> 32) { x >>= 32; r += 32; }
	if (x >> 16) { x >>= 16; r += 16; }
	if (x >> 8) { x >>= 8; r += 8; }
	if (x >> 4) { x >>= 4; r += 4; }
	if (x >> 2) { x >>= 2; r += 2; }
	if (x >> 1) { r += 1; }
	r += 1;
	if (r >= HIST_BUCKETS)
		r = HIST_BUCKETS - 1;
	return r;
}

static __always_inline void observe_stage(__u32 stage, __u64 ns)
{
	__u32 key = stage * HIST_BUCKETS + log2_bucket(ns);
	__u64 *c = bpf_map_lookup_elem(&latency_buckets, &key);
	if (c)
		*c += 1;
	__u64 *s = bpf_map_lookup_elem(&latency_sums, &stage);
	if (s)
		*s += ns;
}

// skb_id identifies an skb along its path by the low 32 bits of its address.
// The verifier forbids arithmetic on the pointer, but a privileged program
// may copy its low half into a 32-bit register, which yields a plain scalar
// (hence -mcpu=v3). Two live skbs 4 GiB apart could share an id; a sample
// also has to pass its boundaries in order, so that costs at most a sample.
static __always_inline __u64 skb_id(const struct sk_buff *skb)
{
	__u32 low;
	asm volatile("%0 = %1" : "=w"(low) : "w"((__u32)(unsigned long)skb));
	return (__u64)low + 1; // never 0, which marks a free slot
}

static __always_inline __u32 slot_of(__u64 id)
{
	// Fibonacci hashing; skbs are cache-line aligned, so drop the low bits.
	return (__u32)(((id >> 6) * 0x9E3779B97F4A7C15ULL) >> 52) & (SAMPLE_SLOTS - 1);
}

static __always_inline bool take_sample(void)
{
	__u32 zero = 0;
	__u32 *tick = bpf_map_lookup_elem(&sample_tick, &zero);
	if (!tick)
		return false;
	*tick += 1;
	if (*tick < sample_every)
		return false;
	*tick = 0;
	return true;
}

static __always_inline struct slot_bitmap *slots_used(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&sample_slots_used, &zero);
}

static __always_inline bool slot_busy(struct slot_bitmap *bm, __u32 slot)
{
	return bm->words[(slot >> 6) & (SAMPLE_SLOTS / 64 - 1)] & (1ULL << (slot & 63));
}

static __always_inline void slot_release(struct slot_bitmap *bm, struct latency_sample *s, __u32 slot)
{
	s->skb = 0;
	__sync_fetch_and_and(&bm->words[(slot >> 6) & (SAMPLE_SLOTS / 64 - 1)], ~(1ULL << (slot & 63)));
}

// A sample whose skb vanished without a tracepoint (UDP frees most read
// skbs silently) would keep its slot busy; a slot older than this is freed
// when another skb hashing to it passes by.
#define SAMPLE_STALE_NS 2000000000ULL

static __always_inline void expire_stale(struct slot_bitmap *bm, struct latency_sample *s, __u32 slot)
{
	if (bpf_ktime_get_ns() - s->ts > SAMPLE_STALE_NS)
		slot_release(bm, s, slot);
}

static __always_inline __u64 mix64(__u64 x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

// parse_flow reads the packet's identity from its L3 header at l3. It
// returns false when the headers cannot be read (f->hash is then 0).
static __always_inline bool parse_flow(__u16 eth_proto_be, const unsigned char *l3, struct trace_flow *f)
{
	__u16 eth_proto = bpf_ntohs(eth_proto_be);
	// One read for the common case: an IPv6 header or an IPv4 one without
	// options, then 8 bytes of TCP/UDP/ICMP header and 8 of payload. Bytes
	// past a short packet's end are read (the skb head always has room
	// after the data) but not used.
	__u64 buf[7] = {};
	__u64 a[4] = {};
	struct {
		__u32 w[2];    // ports or type/code, then TCP seq, UDP length+checksum, ICMP id+sequence
		__u64 payload; // the first 8 payload bytes
	} l4h = {};
	__u32 ip_id = 0, l4off = 0;
	__u8 l4;

	if (!l3 || bpf_probe_read_kernel(buf, sizeof(buf), l3))
		return false;
	if (eth_proto == ETH_P_IP) {
		const struct iphdr *ip = (const void *)buf;
		f->family = 4;
		__builtin_memcpy(f->saddr, &ip->saddr, 4);
		__builtin_memcpy(f->daddr, &ip->daddr, 4);
		a[0] = ip->saddr;
		a[2] = ip->daddr;
		l4 = ip->protocol;
		ip_id = ip->id;
		if (!(ip->frag_off & bpf_htons(0x1fff))) { // a later fragment has no L4 header
			l4off = (ip->ihl & 0xf) * 4;
			if (l4off == sizeof(struct iphdr))
				__builtin_memcpy(&l4h, (const unsigned char *)buf + sizeof(struct iphdr), sizeof(l4h));
			else if (bpf_probe_read_kernel(&l4h, sizeof(l4h), l3 + (l4off & 0x3f)))
				__builtin_memset(&l4h, 0, sizeof(l4h));
		}
	} else if (eth_proto == ETH_P_IPV6) {
		const struct ipv6hdr *ip6 = (const void *)buf;
		f->family = 6;
		__builtin_memcpy(f->saddr, &ip6->saddr, 16);
		__builtin_memcpy(f->daddr, &ip6->daddr, 16);
		__builtin_memcpy(a, &ip6->saddr, 32);
		l4 = ip6->nexthdr;
		l4off = sizeof(struct ipv6hdr);
		__builtin_memcpy(&l4h, (const unsigned char *)buf + sizeof(struct ipv6hdr), sizeof(l4h));
	} else {
		return false;
	}
	switch (l4) {
	case IPPROTO_TCP: f->protocol = PROTOCOL_TCP; break;
	case IPPROTO_UDP: f->protocol = PROTOCOL_UDP; break;
	case IPPROTO_ICMP: f->protocol = PROTOCOL_ICMP; break;
	case IPPROTO_ICMPV6: f->protocol = PROTOCOL_ICMPV6; break;
	default: f->protocol = PROTOCOL_OTHER; l4off = 0;
	}
	if (!l4off)
		__builtin_memset(&l4h, 0, sizeof(l4h));
	if (f->protocol == PROTOCOL_TCP || f->protocol == PROTOCOL_UDP) {
		f->sport = bpf_ntohs((__u16)l4h.w[0]);
		f->dport = bpf_ntohs((__u16)(l4h.w[0] >> 16));
	}
	// UDP has no per-packet header field (IPv6 not even the IP ID), so
	// the first 8 payload bytes count too (DNS ids, RTP and QUIC packet
	// numbers...), when the datagram has them. Identical datagrams of one
	// flow still share a trace. Other protocols ignore the payload bytes.
	__u64 payload = 0;
	if (f->protocol == PROTOCOL_UDP && bpf_ntohs((__u16)l4h.w[1]) >= 16)
		payload = l4h.payload;
	__u64 h = mix64(((__u64)l4h.w[0] << 32 | l4h.w[1]) ^ ((__u64)ip_id << 8 | l4) ^ mix64(payload));
	h = mix64(h ^ a[0]);
	h = mix64(h ^ a[1]);
	h = mix64(h ^ a[2]);
	h = mix64(h ^ a[3]);
	f->hash = h | 1; // never 0, which means "unknown"
	return true;
}

// ringbuf_wakeup picks a submit's wake-up: none until the buffer is half
// full, since a wake-up is an interrupt (microseconds in a VM) per record;
// the reader polls every 100 ms (bpf.TraceReader).
static __always_inline __u64 ringbuf_wakeup(void)
{
	if (bpf_ringbuf_query(&trace_events, BPF_RB_AVAIL_DATA) >= (1 << 18))
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

// tail_budget_take spends one of this CPU's dropped/slow records.
static __always_inline bool tail_budget_take(__u64 now)
{
	__u32 zero = 0;
	struct tail_budget *b = bpf_map_lookup_elem(&trace_tail_used, &zero);
	if (!b)
		return false;
	if (b->window != now >> 30) {
		b->window = now >> 30;
		b->used = 0;
	}
	if (b->used >= trace_tail_budget) {
		count_lost(LOST_TRACE_RATE);
		return false;
	}
	b->used++;
	return true;
}

// trace_keep is the tail-sampling decision for a finished path: kept by
// its identity hash, or dropped/slow within the budget.
static __always_inline bool trace_keep(__u64 hash, bool tail, __u64 now)
{
	if (!(hash & trace_keep_mask))
		return true;
	return tail && tail_budget_take(now);
}

// trace_emit sends a finished path to user space when it is kept.
static __always_inline void trace_emit(struct trace_record *tr, __u8 end, __u32 reason, __u64 now)
{
	tr->end = end;
	tr->drop_reason = reason;
	tr->end_ts = now;
	// A received packet is slow by its time to reach the socket: the wait
	// for the reader is the application's, not the stack's.
	__u64 until = now;
	if (end != TRACE_END_DROP && tr->direction == DIRECTION_RX && tr->ts[BOUNDARY_RX_LOCAL_IN])
		until = tr->ts[BOUNDARY_RX_LOCAL_IN];
	if (!trace_keep(tr->flow.hash, end == TRACE_END_DROP || until - tr->start_ts >= trace_slow_ns, now))
		return;
	if (bpf_ringbuf_output(&trace_events, tr, sizeof(*tr), ringbuf_wakeup()))
		count_lost(LOST_TRACE_RINGBUF);
}

// trace_xdp_pass starts a received packet's path at the XDP guard when the
// guard passed this very frame last on this CPU: the driver builds the skb
// around the frame's buffer and hands it over right after, so the skb's
// link-layer header is where the guard saw the frame begin.
static __always_inline void trace_xdp_pass(const struct sk_buff *skb, struct trace_record *tr, __u64 now)
{
	__u32 zero = 0;
	struct guard_xdp_pass *xp = bpf_map_lookup_elem(&xdp_pass, &zero);
	if (!xp || !xp->data)
		return;
	__u32 head;
	asm volatile("%0 = %1" : "=w"(head) : "w"((__u32)(unsigned long)skb->head)); // as skb_id
	__u32 mac = head + skb->mac_header;
	if (xp->data != (__u64)mac + 1 || xp->ts > now || now - xp->ts > 1000000)
		return;
	tr->ts[TRACE_POINT_XDP] = xp->ts;
	tr->start_ts = xp->ts;
	xp->data = 0; // one skb per frame
}

// trace_begin decides from the packet's identity whether to track it and
// starts its record in the slot's traces entry.
static __always_inline bool trace_begin(const struct sk_buff *skb, const unsigned char *l3, __u32 slot,
					__u32 boundary, struct trace_flow *f)
{
	if (!parse_flow(skb->protocol, l3, f) || (f->hash & trace_track_mask))
		return false;
	struct trace_record *tr = bpf_map_lookup_elem(&traces, &slot);
	if (!tr)
		return false;
	__u64 now = bpf_ktime_get_ns();
	__builtin_memset(tr, 0, sizeof(*tr));
	tr->flow = *f;
	tr->start_ts = now;
	tr->ts[boundary % TRACE_POINTS] = now;
	tr->direction = boundary >= BOUNDARY_TX_LOCAL_OUT ? DIRECTION_TX : DIRECTION_RX;
	const struct net_device *dev = skb->dev;
	if (dev)
		tr->ifindex = dev->ifindex;
	if (boundary == BOUNDARY_RX_ENTRY)
		trace_xdp_pass(skb, tr, now);
	return true;
}

// sample_start begins a sample at a direction's first boundary, or frees a
// stale slot left by a freed skb whose address is being reused. l3 is the
// packet's L3 header, read only when tracing is on.
static __always_inline void sample_start(const struct sk_buff *skb, __u32 boundary, const unsigned char *l3)
{
	struct slot_bitmap *bm = slots_used();
	if (!bm)
		return;
	__u64 id = skb_id(skb);
	__u32 slot = slot_of(id);
	bool sample = take_sample();
	bool traced = false;
	if (trace_on) {
		struct trace_flow f = {};
		traced = trace_begin(skb, l3, slot, boundary, &f);
		sample = sample || traced;
	}
	if (!sample && !slot_busy(bm, slot))
		return;
	struct latency_sample *s = bpf_map_lookup_elem(&samples, &slot);
	if (!s)
		return;
	if (sample) {
		s->ts = bpf_ktime_get_ns();
		s->boundary = boundary;
		s->skb = id;
		s->traced = traced;
		__sync_fetch_and_or(&bm->words[(slot >> 6) & (SAMPLE_SLOTS / 64 - 1)], 1ULL << (slot & 63));
	} else if (s->skb == id) {
		slot_release(bm, s, slot);
	} else {
		expire_stale(bm, s, slot);
	}
}

// sample_pass records the stage that ends at boundary when the skb is
// sampled and comes straight from the previous boundary. A traced skb also
// records boundaries it reaches after skipping some (no stage observed).
// It returns whether the skb is traced and its path goes on.
static __always_inline bool sample_pass(const struct sk_buff *skb, __u32 boundary, __u32 stage, bool final)
{
	struct slot_bitmap *bm = slots_used();
	if (!bm)
		return false;
	__u64 id = skb_id(skb);
	__u32 slot = slot_of(id);
	if (!slot_busy(bm, slot))
		return false;
	struct latency_sample *s = bpf_map_lookup_elem(&samples, &slot);
	if (!s)
		return false;
	if (s->skb != id) {
		expire_stale(bm, s, slot);
		return false;
	}
	bool same_dir = (s->boundary >= BOUNDARY_TX_LOCAL_OUT) == (boundary >= BOUNDARY_TX_LOCAL_OUT);
	bool traced = trace_on && s->traced;
	// A traced skb may skip boundaries on its way (no stage observed).
	bool skipped = traced && same_dir && boundary > s->boundary + 1;
	if (!skipped && s->boundary + 1 != boundary) {
		// Out of order in the same direction: the skb left the path this
		// sample was following (or its address was reused), so the sample
		// ends without an observation. The other direction's boundaries
		// leave it alone: a veth hands the skb to its peer (where an rx
		// sample starts) before the sender's net_dev_xmit fires.
		if (same_dir)
			slot_release(bm, s, slot);
		return false;
	}
	__u64 now = bpf_ktime_get_ns();
	if (!skipped && now > s->ts)
		observe_stage(stage, now - s->ts);
	if (traced) {
		struct trace_record *tr = bpf_map_lookup_elem(&traces, &slot);
		if (tr) {
			tr->ts[boundary % TRACE_POINTS] = now;
			if (final)
				trace_emit(tr, TRACE_END_DONE, 0, now);
		}
	}
	if (final) {
		slot_release(bm, s, slot);
		return false;
	}
	s->ts = now;
	s->boundary = boundary;
	return traced;
}

// sample_drop frees the slot of an skb the kernel is freeing; a traced
// skb's path is emitted with the drop reason. It returns whether it was.
static __always_inline bool sample_drop(const struct sk_buff *skb, __u32 reason)
{
	struct slot_bitmap *bm = slots_used();
	if (!bm)
		return false;
	__u64 id = skb_id(skb);
	__u32 slot = slot_of(id);
	if (!slot_busy(bm, slot))
		return false;
	struct latency_sample *s = bpf_map_lookup_elem(&samples, &slot);
	if (!s || s->skb != id)
		return false;
	bool traced = trace_on && s->traced;
	if (traced) {
		struct trace_record *tr = bpf_map_lookup_elem(&traces, &slot);
		if (tr)
			trace_emit(tr, TRACE_END_DROP, reason, bpf_ktime_get_ns());
	}
	slot_release(bm, s, slot);
	return traced;
}

// trace_untracked_drop emits a dropped packet that was not tracked: its
// identity and the drop point only.
static __always_inline void trace_untracked_drop(const struct sk_buff *skb, __u32 reason, const struct sock *rx_sk)
{
	// The budget first: in a drop flood, most drops then cost no parse.
	// (A hash-kept drop over the budget is lost with the rest.)
	__u64 now = bpf_ktime_get_ns();
	if (!tail_budget_take(now))
		return;
	struct trace_flow f = {};
	parse_flow(skb->protocol, network_header(skb), &f);
	struct trace_record *tr = bpf_ringbuf_reserve(&trace_events, sizeof(*tr), 0);
	if (!tr) {
		count_lost(LOST_TRACE_RINGBUF);
		return;
	}
	__builtin_memset(tr, 0, sizeof(*tr));
	tr->flow = f;
	tr->start_ts = now;
	tr->end_ts = now;
	tr->end = TRACE_END_DROP;
	tr->drop_reason = reason;
	// A locally sent skb is owned by its socket; a received one is not
	// (or is being handed to rx_sk).
	tr->direction = (skb->sk && !rx_sk) ? DIRECTION_TX : DIRECTION_RX;
	const struct net_device *dev = skb->dev;
	if (dev)
		tr->ifindex = dev->ifindex;
	bpf_ringbuf_submit(tr, ringbuf_wakeup());
}

// rx_entry starts a sample where a device hands an skb to the stack: the
// backlog stage then covers GRO, RPS and the per-CPU backlog queue.
static __always_inline void rx_entry(const struct sk_buff *skb)
{
	// The device has pulled the link-layer header: data is L3.
	if (dev_in_scope(skb->dev))
		sample_start(skb, BOUNDARY_RX_ENTRY, skb->data);
}

SEC("tp_btf/netif_rx") // netif_rx and __netif_rx: veth, loopback, tunnels
int BPF_PROG(netif_rx, struct sk_buff *skb)
{
	rx_entry(skb);
	return 0;
}

SEC("tp_btf/napi_gro_receive_entry")
int BPF_PROG(napi_gro_receive_entry, const struct sk_buff *skb)
{
	rx_entry(skb);
	return 0;
}

SEC("tp_btf/napi_gro_frags_entry")
int BPF_PROG(napi_gro_frags_entry, const struct sk_buff *skb)
{
	rx_entry(skb);
	return 0;
}

SEC("tp_btf/netif_receive_skb_entry")
int BPF_PROG(netif_receive_skb_entry, const struct sk_buff *skb)
{
	rx_entry(skb);
	return 0;
}

SEC("tp_btf/netif_receive_skb_list_entry")
int BPF_PROG(netif_receive_skb_list_entry, const struct sk_buff *skb)
{
	rx_entry(skb);
	return 0;
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(netif_receive_skb, struct sk_buff *skb)
{
	sample_pass(skb, BOUNDARY_RX_NETIF_RECEIVE, STAGE_RX_BACKLOG, false);
	return 0;
}

SEC("tp_btf/net_dev_queue")
int BPF_PROG(net_dev_queue, struct sk_buff *skb)
{
	if (have_netfilter)
		sample_pass(skb, BOUNDARY_TX_QUEUE, STAGE_TX_NEIGH, false);
	else if (dev_in_scope(skb->dev))
		sample_start(skb, BOUNDARY_TX_QUEUE, network_header(skb));
	return 0;
}

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(net_dev_start_xmit, const struct sk_buff *skb, const struct net_device *dev)
{
	sample_pass(skb, BOUNDARY_TX_START_XMIT, STAGE_TX_QDISC, false);
	return 0;
}

// bpf_cast_to_kern_ctx gives a tc program the kernel's sk_buff behind its
// __sk_buff. Weak, as bpf_rdonly_cast (Linux 6.2).
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym __weak;

// count_skb counts a packet a device of the observed namespace receives or
// sends, and returns its protocol class. The link-layer header is in the
// skb at both tc hooks.
static __always_inline __u8 count_skb(struct __sk_buff *ctx, __u8 direction)
{
	if (have_kfuncs) {
		struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
		const struct net_device *dev = skb->dev;
		if (!dev)
			return PROTOCOL_OTHER;
		__u32 len = skb->len;
		__u8 protocol = classify(skb->protocol, network_header(skb));
		count_traffic(dev->ifindex, direction, protocol, wire_packets(skb, dev, len), len);
		return protocol;
	}
	// Before 6.2: the same figures through the __sk_buff context and a
	// load relative to the network header (which the kfunc path reads
	// from the kernel's sk_buff directly).
	__u16 eth_proto = bpf_ntohs(ctx->protocol);
	__u8 protocol = PROTOCOL_OTHER, l4;
	if (eth_proto == ETH_P_ARP)
		protocol = PROTOCOL_ARP;
	else if (eth_proto == ETH_P_IP &&
		 !bpf_skb_load_bytes_relative(ctx, offsetof(struct iphdr, protocol), &l4, 1, BPF_HDR_START_NET))
		protocol = protocol_of(l4);
	else if (eth_proto == ETH_P_IPV6 &&
		 !bpf_skb_load_bytes_relative(ctx, offsetof(struct ipv6hdr, nexthdr), &l4, 1, BPF_HDR_START_NET))
		protocol = protocol_of(l4);
	__u32 segs = ctx->gso_segs;
	count_traffic(ctx->ifindex, direction, protocol, segs ? segs : 1, ctx->len);
	return protocol;
}

// count_udp_connected estimates the received UDP datagrams whose socket is
// connected to their sender. A socket lookup costs more than the rest of
// the traffic counter (~170 ns against ~50 per frame), so only every
// UDP_CONNECTED_SAMPLE-th UDP datagram of a CPU is looked up, and a hit
// counts for that many: an unbiased estimate (an 8,000 datagrams/s download
// is ~500 lookups/s) at ~10 ns per datagram. TCP and the rest do not pay.
// Later fragments carry no ports and are not counted (an answer fragmented
// on the way is rare; a flood's is not).
static __always_inline void count_udp_connected(struct __sk_buff *ctx)
{
	__u32 zero = 0;
	__u64 *tick = bpf_map_lookup_elem(&udp_connected_tick, &zero); // UDP only
	if (!tick || (++*tick & (UDP_CONNECTED_SAMPLE - 1)))
		return;
	struct bpf_sock_tuple t = {};
	__u32 tuple_len;
	__u16 ports[2];
	__u16 eth_proto = bpf_ntohs(ctx->protocol);
	if (eth_proto == ETH_P_IP) {
		struct iphdr ip;
		if (bpf_skb_load_bytes_relative(ctx, 0, &ip, sizeof(ip), BPF_HDR_START_NET) ||
		    ip.protocol != IPPROTO_UDP || (ip.frag_off & bpf_htons(0x1fff)))
			return;
		if (bpf_skb_load_bytes_relative(ctx, ip.ihl * 4, ports, sizeof(ports), BPF_HDR_START_NET))
			return;
		t.ipv4.saddr = ip.saddr;
		t.ipv4.daddr = ip.daddr;
		t.ipv4.sport = ports[0];
		t.ipv4.dport = ports[1];
		tuple_len = sizeof(t.ipv4);
	} else if (eth_proto == ETH_P_IPV6) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes_relative(ctx, 0, &ip6, sizeof(ip6), BPF_HDR_START_NET) ||
		    ip6.nexthdr != IPPROTO_UDP)
			return;
		if (bpf_skb_load_bytes_relative(ctx, sizeof(ip6), ports, sizeof(ports), BPF_HDR_START_NET))
			return;
		__builtin_memcpy(t.ipv6.saddr, &ip6.saddr, sizeof(t.ipv6.saddr));
		__builtin_memcpy(t.ipv6.daddr, &ip6.daddr, sizeof(t.ipv6.daddr));
		t.ipv6.sport = ports[0];
		t.ipv6.dport = ports[1];
		tuple_len = sizeof(t.ipv6);
	} else {
		return;
	}
	struct bpf_sock *sk = bpf_sk_lookup_udp(ctx, &t, tuple_len, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return;
	// connect(2) on a UDP socket sets TCP_ESTABLISHED.
	bool connected = sk->state == BPF_TCP_ESTABLISHED;
	bpf_sk_release(sk);
	if (!connected)
		return;
	__u32 key = UDP_CONNECTED_PACKETS;
	__u64 *v = bpf_map_lookup_elem(&udp_connected, &key);
	if (v)
		*v += (__u64)(ctx->gso_segs ? ctx->gso_segs : 1) * UDP_CONNECTED_SAMPLE;
	key = UDP_CONNECTED_BYTES;
	v = bpf_map_lookup_elem(&udp_connected, &key);
	if (v)
		*v += (__u64)ctx->len * UDP_CONNECTED_SAMPLE;
}

// The traffic counters run on the ingress and egress hooks of the observed
// namespace's devices (attached per device from Go: TCX from Linux 6.6, a
// tc clsact BPF filter before), so other namespaces' packets do not pay for
// them: rx after generic XDP and the taps, before netfilter; tx before the
// queueing discipline. They never change a verdict: TCX_NEXT is
// TC_ACT_UNSPEC, "go on" to both hooks, hence one "tc" section for both.
SEC("tc")
int tcx_ingress(struct __sk_buff *ctx)
{
	if (count_skb(ctx, DIRECTION_RX) == PROTOCOL_UDP)
		count_udp_connected(ctx);
	return TCX_NEXT;
}

SEC("tc")
int tcx_egress(struct __sk_buff *ctx)
{
	count_skb(ctx, DIRECTION_TX);
	return TCX_NEXT;
}

SEC("tp_btf/net_dev_xmit")
int BPF_PROG(net_dev_xmit, struct sk_buff *skb, int rc, struct net_device *dev, unsigned int len)
{
	// The skb may already belong to the receiver: only its address is used.
	sample_pass(skb, BOUNDARY_TX_XMIT, STAGE_TX_DRIVER, true);
	return 0;
}

// The socket stage ends when the transport is done with the skb: TCP
// copies it to the reader through skb_copy_datagram_iter (and may free it
// without a tracepoint), UDP copies linear skbs without one and then frees
// them through consume_skb. Whichever comes first ends the sample.
SEC("tp_btf/skb_copy_datagram_iovec")
int BPF_PROG(skb_copy_datagram_iovec, const struct sk_buff *skb, int len)
{
	sample_pass(skb, BOUNDARY_RX_DELIVERED, STAGE_RX_SOCKET, true);
	return 0;
}

// Linux 6.3 added a location argument, which is not read.
SEC("tp_btf/consume_skb")
int BPF_PROG(consume_skb, struct sk_buff *skb)
{
	sample_pass(skb, BOUNDARY_RX_DELIVERED, STAGE_RX_SOCKET, true);
	return 0;
}

#define TCP_FLAG_RST 0x04
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10

// The last RST an established connection of the observed namespace
// received on this CPU, as tcp:tcp_probe saw it on its way to the
// connection's checks (see tcp_probe_rst): on kernels without kfree_skb's
// rx_sk argument, it places a dropped RST in the namespace.
struct rst_seen {
	__u64 skb; // the skb's address
	__u64 at;  // bpf_ktime_get_ns
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rst_seen);
} last_rst SEC(".maps");

// A RST's checks follow tcp_probe on the same CPU, in the same softirq,
// microseconds later (a challenge ACK is sent in between; 100 us missed one
// RST in ten under emulation): a note older than this belongs to another skb
// that was freed and whose address came back.
#define RST_SEEN_MAX_NS 10000000

// rx_sk_arg returns kfree_skb's fourth argument, the socket a received skb
// was dropped at (Linux 6.11, which added it to the tracepoint's arguments
// and to its record together), or NULL on a kernel without it (or with
// have_rx_sk off). The check is a CO-RE relocation, so an older kernel's
// verifier never sees the read of a fourth argument that it would reject.
static __always_inline const struct sock *rx_sk_arg(unsigned long long *ctx)
{
	if (have_rx_sk && bpf_core_field_exists(struct trace_event_raw_kfree_skb, rx_sk))
		return (const struct sock *)ctx[3];
	return NULL;
}

// rst_noted says whether tcp_probe_rst saw this skb reach an established
// connection of the observed namespace just now (kernels without rx_sk),
// and forgets it.
static __always_inline bool rst_noted(const struct sk_buff *skb)
{
	__u32 zero = 0;
	struct rst_seen *seen = bpf_map_lookup_elem(&last_rst, &zero);
	if (!seen || seen->skb != (__u64)skb)
		return false;
	seen->skb = 0;
	return bpf_ktime_get_ns() - seen->at < RST_SEEN_MAX_NS;
}

// tcp_probe_rst: loaded only on kernels without kfree_skb's rx_sk (before
// 6.11; LoadStack leaves it out otherwise). tcp:tcp_probe fires for every
// segment an ESTABLISHED connection receives, before its sequence checks;
// a RST among them is noted, so that when the checks drop it (TCP_RESET,
// the sequence reasons) kfree_skb can place the drop in the namespace and
// count its verdict although TCP cleared the skb's device. Other segments
// cost a load and a branch. A RST the connection accepts is never freed as
// a drop: its note goes stale.
SEC("tp_btf/tcp_probe")
int BPF_PROG(tcp_probe_rst, struct sock *sk, const struct sk_buff *skb)
{
	// TCP_SKB_CB(skb)->tcp_flags, filled in by tcp_v4_rcv/tcp_v6_rcv: its
	// low byte holds RST (the field grew from 8 to 16 bits in 6.x).
	if (!(skb->cb[bpf_core_field_offset(struct tcp_skb_cb, tcp_flags)] & TCP_FLAG_RST))
		return 0;
	if (!sk_in_scope(sk))
		return 0;
	__u32 zero = 0;
	struct rst_seen *seen = bpf_map_lookup_elem(&last_rst, &zero);
	if (seen) {
		seen->skb = (__u64)skb;
		seen->at = bpf_ktime_get_ns();
	}
	return 0;
}

// reaction_wakeup: like ringbuf_wakeup, for the reactions (the reader polls).
static __always_inline __u64 reaction_wakeup(void)
{
	if (bpf_ringbuf_query(&reactions, BPF_RB_AVAIL_DATA) >= (1 << 16))
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

// reaction_take spends one record of this CPU's reaction budget.
static __always_inline bool reaction_take(void)
{
	__u32 zero = 0;
	struct reaction_tokens *t = bpf_map_lookup_elem(&reaction_budget_used, &zero);
	if (!t)
		return false;
	__u64 w = bpf_ktime_get_ns() >> 30;
	if (t->window != w) {
		t->window = w;
		t->used = 0;
	}
	if (t->used >= reaction_budget) {
		count_lost(LOST_REACTION_RATE);
		return false;
	}
	t->used++;
	return true;
}

// reaction_parse reads the headers of a dropped packet whose L3 header is
// at l3: IPv4 (with options) or IPv6 without extension headers, then the
// first 16 bytes of TCP or UDP. It returns false for anything else.
static __always_inline bool reaction_parse(__u16 eth_proto_be, const unsigned char *l3, struct reaction_record *r)
{
	__u16 eth_proto = bpf_ntohs(eth_proto_be);
	__u8 buf[40];
	__u8 l4h[16] = {};
	__u32 l4off;

	if (!l3 || bpf_probe_read_kernel(buf, sizeof(buf), l3))
		return false;
	if (eth_proto == ETH_P_IP) {
		const struct iphdr *ip = (const void *)buf;
		if (ip->frag_off & bpf_htons(0x1fff))
			return false; // a later fragment: no ports
		r->family = 4;
		__builtin_memcpy(r->saddr, &ip->saddr, 4);
		__builtin_memcpy(r->daddr, &ip->daddr, 4);
		r->protocol = ip->protocol;
		r->ttl = ip->ttl;
		r->length = bpf_ntohs(ip->tot_len);
		l4off = (ip->ihl & 0xf) * 4;
	} else if (eth_proto == ETH_P_IPV6) {
		const struct ipv6hdr *ip6 = (const void *)buf;
		r->family = 6;
		__builtin_memcpy(r->saddr, &ip6->saddr, 16);
		__builtin_memcpy(r->daddr, &ip6->daddr, 16);
		r->protocol = ip6->nexthdr;
		r->ttl = ip6->hop_limit;
		r->length = bpf_ntohs(ip6->payload_len) + sizeof(struct ipv6hdr);
		l4off = sizeof(struct ipv6hdr);
	} else {
		return false;
	}
	if (r->protocol != IPPROTO_TCP && r->protocol != IPPROTO_UDP)
		return false;
	if (bpf_probe_read_kernel(l4h, sizeof(l4h), l3 + (l4off & 0x3f)))
		return false;
	r->sport = (__u16)l4h[0] << 8 | l4h[1];
	r->dport = (__u16)l4h[2] << 8 | l4h[3];
	if (r->protocol == IPPROTO_TCP) {
		r->tcp_flags = l4h[13];
		r->window = (__u16)l4h[14] << 8 | l4h[15];
	}
	return true;
}

// tcp_flag_class classifies TCP flags as the guard's flag_class table does:
// RST first, then FIN, then SYN (with or without ACK), then ACK.
static __always_inline __u32 tcp_flag_class(__u8 flags)
{
	if (flags & 0x04)
		return TCP_CLASS_RST;
	if (flags & 0x01)
		return TCP_CLASS_FIN;
	if (flags & 0x02)
		return (flags & 0x10) ? TCP_CLASS_SYNACK : TCP_CLASS_SYN;
	if (flags & 0x10)
		return TCP_CLASS_ACK;
	return TCP_CLASS_OTHER;
}

// count_rejected counts an incoming TCP segment the stack rejected, by its
// flag class.
static __always_inline void count_rejected(const struct sk_buff *skb)
{
	struct reaction_record r = {};
	if (!reaction_parse(skb->protocol, network_header(skb), &r) || r.protocol != IPPROTO_TCP)
		return;
	__u32 key = tcp_flag_class(r.tcp_flags);
	__u64 *v = bpf_map_lookup_elem(&tcp_rejected, &key);
	if (v)
		*v += 1;
}

static __always_inline __u32 reason_tcp_flags(void)
{
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_DROP_REASON_TCP_FLAGS))
		return bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_TCP_FLAGS);
	return 0;
}

// Drop reasons that are the stack's answer to a packet nobody asked for.
// Their values differ between kernels: CO-RE reads them from the running
// kernel's BTF (0 when the kernel lacks the reason, which is never a drop's).
static __always_inline __u32 reason_no_socket(void)
{
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_DROP_REASON_NO_SOCKET))
		return bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_NO_SOCKET);
	return 0;
}

static __always_inline __u32 reason_listen_overflow(void)
{
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_DROP_REASON_TCP_LISTEN_OVERFLOW))
		return bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_TCP_LISTEN_OVERFLOW);
	return 0;
}

// The reasons tcp_validate_incoming drops a RST with: TCP_RESET for one in
// the window but not exact (answered with a challenge ACK), the sequence
// checks' reasons for one outside it. 0 when the kernel lacks the reason.
static __always_inline __u32 reason_tcp_reset(void)
{
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_DROP_REASON_TCP_RESET))
		return bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_TCP_RESET);
	return 0;
}

static __always_inline bool reason_out_of_window(__u32 reason)
{
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_DROP_REASON_TCP_OLD_SEQUENCE) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_TCP_OLD_SEQUENCE))
		return true;
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_DROP_REASON_TCP_INVALID_SEQUENCE) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_TCP_INVALID_SEQUENCE))
		return true;
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_DROP_REASON_TCP_INVALID_END_SEQUENCE) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_TCP_INVALID_END_SEQUENCE))
		return true;
	return false;
}

static __always_inline void count_rst(__u32 verdict)
{
	__u64 *c = bpf_map_lookup_elem(&rst_verdicts, &verdict);
	if (c)
		*c += 1;
}

// reaction notes a received packet the stack dropped for one of the
// reactions' reasons: a closed port's probe sets the port's bit and counts,
// and within the budget the headers go to the reactions ring buffer. Only
// drops with these reasons pay for it, never the packets the stack keeps.
static __always_inline void reaction(const struct sk_buff *skb, __u32 reason, const struct sock *rx_sk)
{
	bool no_socket = reason == reason_no_socket();
	bool rst_reason = reason == reason_tcp_reset() || reason_out_of_window(reason);
	if (!reason || !(no_socket || rst_reason || reason == reason_listen_overflow()))
		return;
	struct reaction_record r = {};
	if (!reaction_parse(skb->protocol, network_header(skb), &r))
		return;
	if (rst_reason) {
		// These reasons drop any segment of a connection that fails the
		// checks; only the RSTs among them are resets someone aimed at it.
		if (r.protocol != IPPROTO_TCP || !(r.tcp_flags & TCP_FLAG_RST))
			return;
		// A listener drops a RST with TCP_RESET too: one that matches no
		// connection (a stray, or a RST flood's) is aimed at none. Kernels
		// before kfree_skb's rx_sk argument (6.11) count it.
		if (rx_sk && rx_sk->__sk_common.skc_state == TCP_LISTEN)
			return;
		count_rst(reason == reason_tcp_reset() ? RST_CHALLENGED : RST_OUT_OF_WINDOW);
	}
	if (no_socket) {
		// A probe is what opens a conversation: a SYN without ACK, or any UDP
		// datagram. Other TCP segments to closed ports are stray (a closed
		// connection's late segments) or an ACK/RST flood, not a scan.
		__u32 pp;
		if (r.protocol == IPPROTO_UDP)
			pp = PROBE_UDP;
		else if ((r.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)
			pp = PROBE_TCP;
		else
			return;
		__u64 *c = bpf_map_lookup_elem(&closed_probes, &pp);
		if (c)
			*c += 1;
		struct port_bitmap *bm = bpf_map_lookup_elem(&closed_ports, &pp);
		if (bm) {
			__u64 bit = 1ULL << (r.dport & 63);
			__u64 *w = &bm->words[(r.dport >> 6) & (65536 / 64 - 1)];
			if (!(*w & bit))
				__sync_fetch_and_or(w, bit);
		}
	}
	if (!reaction_take())
		return;
	const struct net_device *dev = skb->dev;
	r.ifindex = dev ? dev->ifindex : 0;
	r.reason = reason;
	if (bpf_ringbuf_output(&reactions, &r, sizeof(r), reaction_wakeup()))
		count_lost(LOST_REACTION_RINGBUF);
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(kfree_skb, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	const struct sock *rx_sk = rx_sk_arg(ctx);
	bool traced = path_on && sample_drop(skb, (__u32)reason);

	// The namespace: the device's when the skb still has one, else the
	// socket's (the owner, or the receiving socket the drop happened at,
	// which kernels before 6.11 name only for RSTs tcp_probe_rst noted).
	const struct net_device *dev = skb->dev;
	bool in_scope;
	if (dev)
		in_scope = dev_in_scope(dev);
	else if (skb->sk)
		in_scope = sk_in_scope(skb->sk);
	else if (!have_rx_sk && rst_noted(skb))
		in_scope = true; // a RST an established connection dropped (before 6.11)
	else
		in_scope = sk_in_scope(rx_sk);
	if (!in_scope)
		return 0;
	if (trace_on && !traced)
		trace_untracked_drop(skb, (__u32)reason, rx_sk);
	reaction(skb, (__u32)reason, rx_sk);

	__u8 protocol = classify(skb->protocol, network_header(skb));
	if (protocol == PROTOCOL_TCP && reason && (__u32)reason == reason_tcp_flags())
		count_rejected(skb);
	if ((__u32)reason < DROP_REASON_SLOTS) {
		__u32 cell = (__u32)reason * PROTOCOL_SLOTS + (protocol & (PROTOCOL_SLOTS - 1));
		__u64 *c = bpf_map_lookup_elem(&drop_cells, &cell);
		if (c) {
			*c += 1;
			return 0;
		}
	}
	struct drop_key key = {
		.reason = (__u32)reason,
		.protocol = protocol,
	};
	__u64 *v = bpf_map_lookup_elem(&drops, &key);
	if (v) {
		*v += 1;
		return 0;
	}
	__u64 one = 1;
	if (bpf_map_update_elem(&drops, &key, &one, BPF_NOEXIST) && bpf_map_update_elem(&drops, &key, &one, BPF_ANY))
		count_lost(LOST_MAP_FULL);
	return 0;
}

SEC("tp_btf/tcp_probe")
int BPF_PROG(tcp_probe, struct sock *sk, const struct sk_buff *skb)
{
	if (!sk_in_scope(sk))
		return 0;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;
	__u64 srtt_us = tp->srtt_us >> 3; // srtt_us holds 8 * smoothed RTT
	if (!srtt_us)
		return 0;
	__u64 ns = srtt_us * 1000;
	__u32 key = log2_bucket(ns);
	__u64 *c = bpf_map_lookup_elem(&rtt_buckets, &key);
	if (c)
		*c += 1;
	__u32 zero = 0;
	__u64 *s = bpf_map_lookup_elem(&rtt_sum, &zero);
	if (s)
		*s += ns;
	return 0;
}

static __always_inline void count_tcp_event(__u32 event)
{
	__u64 *v = bpf_map_lookup_elem(&tcp_events, &event);
	if (v)
		*v += 1;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(tcp_retransmit_skb, const struct sock *sk, const struct sk_buff *skb)
{
	if (sk_in_scope(sk))
		count_tcp_event(TCP_EVENT_RETRANSMIT);
	return 0;
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(tcp_send_reset, const struct sock *sk, const struct sk_buff *skb)
{
	// No socket when answering a segment nobody listens for: the namespace
	// is then the one the offending segment arrived in.
	bool in_scope;
	if (sk)
		in_scope = sk_in_scope(sk);
	else if (skb)
		in_scope = dev_in_scope(skb->dev);
	else
		in_scope = false;
	if (!in_scope)
		return 0;
	count_tcp_event(TCP_EVENT_RESET_TX);
	// With an skb, the reset answers that incoming segment; without, the
	// node aborts a connection of its own (an active reset).
	if (skb)
		count_rejected(skb);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(tcp_receive_reset, struct sock *sk)
{
	if (!sk_in_scope(sk))
		return 0;
	count_tcp_event(TCP_EVENT_RESET_RX);
	// A RST in SYN-SENT is a refused connection, not a reset of one.
	if (sk->__sk_common.skc_state != TCP_SYN_SENT)
		count_rst(RST_ACCEPTED);
	return 0;
}

static __always_inline void add_state(int state, __s64 d)
{
	__u32 key = (__u32)state;
	__s64 *v = bpf_map_lookup_elem(&tcp_state_delta, &key);
	if (v)
		*v += d;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(inet_sock_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	if (sk->sk_protocol != IPPROTO_TCP || !sk_in_scope(sk))
		return 0;
	// A passive open's child socket is cloned from the listener and reports
	// LISTEN -> SYN_RECV although the listener itself stays in LISTEN.
	if (!(oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV))
		add_state(oldstate, -1);
	add_state(newstate, 1);
	// A handshake a client completed (SYN cookies included): the SYN that
	// opened it was no flood (the SYN-flood alert counts SYNs that do not).
	if (oldstate == TCP_SYN_RECV && newstate == TCP_ESTABLISHED)
		count_tcp_event(TCP_EVENT_PASSIVE_OPEN);
	return 0;
}

// trace_mark_local_in remembers the traced skb that passed LOCAL_IN on this
// CPU for sk_data_ready.
static __always_inline void trace_mark_local_in(const struct sk_buff *skb)
{
	__u32 zero = 0;
	struct rx_current *cur = bpf_map_lookup_elem(&trace_rx_current, &zero);
	if (!cur)
		return;
	cur->skb = skb_id(skb);
	cur->slot = slot_of(cur->skb);
}

// The transport queued data to a socket, synchronously after LOCAL_IN on
// the same CPU: the traced skb remembered there reached its socket. UDP and
// ICMP skbs are read and freed without a tracepoint, so their paths end
// here; TCP's go on to the copy to the reader.
SEC("tp_btf/sk_data_ready")
int BPF_PROG(sk_data_ready, const struct sock *sk)
{
	if (!trace_on)
		return 0;
	__u32 zero = 0;
	struct rx_current *cur = bpf_map_lookup_elem(&trace_rx_current, &zero);
	if (!cur || !cur->skb)
		return 0;
	__u64 id = cur->skb;
	__u32 slot = cur->slot & (SAMPLE_SLOTS - 1);
	cur->skb = 0;
	struct latency_sample *s = bpf_map_lookup_elem(&samples, &slot);
	if (!s || s->skb != id || !s->traced || s->boundary != BOUNDARY_RX_LOCAL_IN)
		return 0;
	struct trace_record *tr = bpf_map_lookup_elem(&traces, &slot);
	if (!tr)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	tr->ts[TRACE_POINT_QUEUED] = now;
	if (tr->flow.protocol == PROTOCOL_TCP)
		return 0;
	trace_emit(tr, TRACE_END_QUEUED, 0, now);
	struct slot_bitmap *bm = slots_used();
	if (bm)
		slot_release(bm, s, slot);
	return 0;
}

// Attached in the observed namespace only, to PRE_ROUTING and LOCAL_OUT at the
// first priority and to LOCAL_IN and POST_ROUTING at the last, for IPv4 and
// IPv6: the IP layer's stage boundaries. It never changes a verdict.
SEC("netfilter")
int nf_boundary(struct bpf_nf_ctx *ctx)
{
	const struct sk_buff *skb = ctx->skb;

	switch (ctx->state->hook) {
	case NF_INET_PRE_ROUTING:
		sample_pass(skb, BOUNDARY_RX_PRE_ROUTING, STAGE_RX_CORE, false);
		break;
	case NF_INET_LOCAL_IN:
		if (sample_pass(skb, BOUNDARY_RX_LOCAL_IN, STAGE_RX_IP, false))
			trace_mark_local_in(skb);
		break;
	case NF_INET_LOCAL_OUT:
		sample_start(skb, BOUNDARY_TX_LOCAL_OUT, network_header(skb));
		break;
	case NF_INET_POST_ROUTING:
		sample_pass(skb, BOUNDARY_TX_POST_ROUTING, STAGE_TX_IP, false);
		break;
	}
	return NF_ACCEPT;
}
