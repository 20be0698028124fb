// Package exporter observes one network namespace's kernel network stack
// with the eBPF programs of bpf/stack.bpf.c and exposes what they count as
// Prometheus metrics. An Exporter is a prometheus.Collector that reads the
// kernel maps once per scrape.
//
// # Scope
//
// Tracepoints are global; every program compares the network namespace of
// the device or socket it sees with the observed one (Config.Netns, by
// default the agent's own) and ignores the rest. The IP-layer boundaries
// are BPF netfilter hooks attached in the observed namespace only, the
// traffic counters TCX programs on its devices.
// Interface names are resolved in that namespace.
//
// # Stack latency stages
//
// packetscope_stack_latency_seconds{direction,stage} times one skb in
// Config.LatencySampleEvery (per CPU, default 64) between consecutive
// boundaries. A stage is observed only when the skb passes both of its
// boundaries in order; an skb that leaves the path (dropped, forwarded,
// reallocated) ends its sample without an observation.
//
// The stages are sampled in windows: the boundaries are attached for
// Config.StageWindow (1 s) at the start of every Config.StagePeriod (20 s,
// on the wall clock, so agents on several hosts sample the same seconds).
// Every attached program costs every packet a dispatch, sampled or not:
// about 35 ns on the 2-core VM of the benchmarks, where a 64-byte UDP packet
// costs ~1.7 us end to end, so the boundaries attached all the time cost
// ~20 % of the small-packet rate. The RTT probe (tcp:tcp_probe, per
// segment) is attached in the same windows. The counters stay attached:
// traffic on the TCX hooks of the observed namespace's devices, drops and
// TCP events on per-event tracepoints. A window as long as the period keeps
// every boundary attached.
//
//	direction stage    from (boundary)                        to (boundary)
//	rx        backlog  net:netif_rx, net:napi_gro_receive_entry, net:netif_receive_skb
//	                   net:napi_gro_frags_entry,
//	                   net:netif_receive_skb_entry,
//	                   net:netif_receive_skb_list_entry
//	                   (the device hands the skb to the stack)
//	rx        core     net:netif_receive_skb                   netfilter PRE_ROUTING, first priority
//	rx        ip       netfilter PRE_ROUTING, first priority   netfilter LOCAL_IN, last priority
//	rx        socket   netfilter LOCAL_IN, last priority       skb:skb_copy_datagram_iovec or
//	                                                           skb:consume_skb, whichever comes first
//	tx        ip       netfilter LOCAL_OUT, first priority     netfilter POST_ROUTING, last priority
//	tx        neigh    netfilter POST_ROUTING, last priority   net:net_dev_queue
//	tx        qdisc    net:net_dev_queue                       net:net_dev_start_xmit
//	tx        driver   net:net_dev_start_xmit                  net:net_dev_xmit
//
// backlog covers GRO, RPS and the per-CPU backlog queue; core the receive
// handlers, taps and tc ingress; ip the IP receive path with conntrack,
// routing and the netfilter chains; socket the transport, the socket receive
// queue and the wait for the reader. On transmit, ip is the IP output path
// with its netfilter chains, neigh the neighbour (ARP/NDP) output, qdisc the
// queueing discipline, and driver the device's transmit function (for a veth
// that includes handing the skb to its peer). Every TCP and UDP packet
// passes all four tx stages and the rx stages backlog, core and ip. The rx
// socket stage is always observed for TCP, whose reads copy through
// skb_copy_datagram_iter; UDP copies linear skbs without a tracepoint and
// frees most of them without one too, so UDP contributes to it only when
// the skb is freed through consume_skb (e.g. on another CPU).
//
// # Packet-path traces
//
// Off unless the standard OpenTelemetry environment configures a trace
// exporter (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
// or OTEL_TRACES_EXPORTER=otlp|console; OTEL_EXPORTER_OTLP_PROTOCOL picks
// grpc or http/protobuf; see go.opentelemetry.io/contrib/exporters/autoexport)
// or Config.TraceSpanProcessor is set. Off, the kernel's tracing branches are
// dead code (a load-time constant) and no reader runs.
//
// On, the first boundary of each direction (rx entry, tx LOCAL_OUT) hashes
// the packet's identity: addresses, protocol, ports, the IPv4 ID and the TCP
// sequence (UDP: length, checksum and the first 8 payload bytes; ICMP: id
// and sequence). Identical datagrams of one UDP flow over IPv6 (no IP ID)
// therefore share a trace. Only the packet's bytes count, so the sender's
// agent and the receiver's compute the same hash for the same packet with no
// coordination. One packet in TraceTrackEvery (by hash, default 32) is
// followed inside a stage window: every boundary it passes is timestamped
// in a slot next to its latency sample, plus the socket enqueue (sock:
// sk_data_ready right after LOCAL_IN on the same CPU). When its path ends
// (transmitted, copied or consumed, queued for UDP/ICMP, whose reads have no
// tracepoint, or dropped) the kernel decides (tail sampling): drops and paths
// slower than TraceSlow (1 ms; a received packet until LOCAL_IN,
// not counting the wait for the reader) are kept within a per-CPU budget
// (TraceTailBudget per ~second, default 20), and one packet in
// TraceKeepEvery (by hash, default 4096, or 1/OTEL_TRACES_SAMPLER_ARG with
// OTEL_TRACES_SAMPLER=traceidratio) always. Kept paths go to a 512 KiB ring
// buffer; dropped packets that were not followed are kept too (within the
// same budget), with their drop point only. Records the ring buffer has no room for count as
// packetscope_ebpf_events_lost_total{cause="trace_ringbuf"}, tail records
// over the budget as {cause="trace_rate"}.
//
// Each record becomes one trace: trace ID from the identity hash (both
// hosts' spans of a packet share it), span IDs from the hash, host name,
// namespace, direction and stage. The root span "packet rx"/"packet tx"
// carries network.transport, network.type, source.address/port,
// destination.address/port, network.interface.name, network.io.direction
// and packetscope.direction; one child per stage between consecutive
// boundaries passed ("rx xdp" when the agent's XDP guard passed the frame:
// from the guard's start to the device's hand-over; "rx backlog", "rx core", "rx ip", "rx socket enqueue",
// "rx socket" or "rx socket read"; "tx ip", "tx neigh", "tx qdisc",
// "tx driver"), timed by the kernel (bpf_ktime_get_ns plus the
// CLOCK_MONOTONIC to wall-clock offset, refreshed every second). A drop
// adds a last child "drop" and sets the root's status to Error with the
// drop reason, also in attribute packetscope.drop_reason. Traced packets'
// stage latencies are exemplars (label trace_id) of the
// packetscope_stack_latency_seconds bucket they fell in. TCP segments
// without data (pure ACKs) are freed with no tracepoint and are not traced.
//
// # Other metrics
//
//   - packetscope_packets_total, packetscope_bytes_total{interface,direction,protocol}:
//     rx at TCX ingress (after generic XDP and taps, before netfilter), tx at
//     TCX egress (before the qdisc) of every device of the namespace; GSO/GRO
//     aggregates count as their segments; bytes include the link-layer header.
//     protocol is tcp, udp, icmp, icmpv6, arp or other.
//   - packetscope_drops_total{reason,protocol}: skb:kfree_skb; reason is the
//     running kernel's enum skb_drop_reason name without its
//     SKB_DROP_REASON_ prefix (NO_SOCKET, NETFILTER_DROP, SOCKET_RCVBUFF, ...),
//     read from the kernel's BTF at start.
//   - packetscope_tcp_connections{state}: sockets per state, counted from
//     /proc/net/tcp{,6} of the namespace at start and then followed through
//     sock:inet_sock_set_state. TIME_WAIT, CLOSE and NEW_SYN_RECV are not
//     reported: time-wait and request sockets never pass that tracepoint.
//   - packetscope_tcp_rtt_seconds: smoothed RTT at each tcp:tcp_probe
//     (every segment received on an established socket), in the stage
//     windows.
//   - packetscope_tcp_retransmits_total (tcp:tcp_retransmit_skb),
//     packetscope_tcp_resets_total{direction} (tcp:tcp_send_reset = tx,
//     tcp:tcp_receive_reset = rx), packetscope_tcp_passive_opens_total
//     (inet_sock_set_state SYN_RECV -> ESTABLISHED: handshakes clients
//     completed, which the SYN-flood alert subtracts from the SYN rate).
//   - packetscope_tcp_rejected_packets_total{flags}: incoming TCP segments
//     of no connection by the guard's flag classes, answered with a reset
//     (tcp:tcp_send_reset with the offending segment) or dropped as
//     TCP_FLAGS (skb:kfree_skb).
//   - packetscope_udp_connected_packets_total, _bytes_total: UDP received
//     for connected sockets (a socket lookup for one UDP datagram in 16 per
//     CPU at tc ingress, a hit counting 16): answers the node asked for,
//     which the UDP alerts leave out.
//   - packetscope_ebpf_events_lost_total{cause}: map_full (a counter map had
//     no room for a new key), recursion (programs the kernel skipped), and
//     the reactions' reaction_ringbuf (see below).
//
// # The stack's reactions
//
// kfree_skb also looks at what the stack refuses. A SYN without ACK or a
// UDP datagram dropped with NO_SOCKET is a probe of a closed port (the node
// answers it with a RST or an ICMP port unreachable): it counts in
// packetscope_closed_port_probes_total{protocol} and sets the port's bit in
// a per-protocol 64 Kibit bitmap, which the exporter reads and clears every
// second; packetscope_closed_ports_probed{protocol} is the number of
// distinct ports of the last ClosedPortWindow (10 s). Exact, because a port
// has 16 bits: a sketch would save memory, not work. Other TCP segments to
// closed ports (a closed connection's stragglers, an ACK flood) are not
// probes. Probes and TCP_LISTEN_OVERFLOW drops are also emitted with their
// headers to a ring buffer (Exporter.Reactions), at most
// bpf.DefaultReactionBudget per CPU and second: a scan of every port
// costs user space a few hundred records a second, the rest count as
// packetscope_reaction_samples_skipped_total (not a loss: the counters
// count every probe). The agent keeps
// them in its traffic window as reactions.
//
// RSTs aimed at connections: tcp_validate_incoming drops a RST outside the
// receive window with the sequence checks' reasons (TCP_OLD_SEQUENCE,
// TCP_INVALID_SEQUENCE, TCP_INVALID_END_SEQUENCE) and one in the window but
// not exactly at rcv_nxt with TCP_RESET after a challenge ACK (RFC 5961);
// an exact one resets the connection (tcp:tcp_receive_reset, not in
// SYN-SENT). packetscope_tcp_rst_verdicts_total{verdict} counts the three
// (out_of_window, challenged, accepted); the two dropped kinds are
// reactions too, with their headers (the reset injection's evidence). Only
// the RSTs among those reasons' drops count (they also drop other
// segments), and not those a listener drops with TCP_RESET: they match no
// connection (kfree_skb's rx_sk, Linux 6.11, tells). Before 6.11 the
// rejected RSTs, dropped without a device or an owning socket, are placed in
// the observed namespace by a note tcp:tcp_probe takes of each RST an
// established connection receives (bpf's tcp_probe_rst); a listener's RSTs
// pass no tcp_probe and stay uncounted there too (the kernel smoke test
// checks both kernels, bpf's TestRSTVerdictsWithAndWithoutRxSk both ways).
//
// A full SYN queue has no tracepoint (the SYN is consumed, cookie or not),
// so packetscope_tcp_listen_queue_events_total{event} reads the observed
// namespace's TcpExt counters (/proc/net/netstat) at each scrape: accept
// queue overflows, listen drops, SYNs met by a full SYN queue (answered with
// a cookie, or dropped) and SYN cookies sent, validated and failed.
//   - packetscope_ebpf_program_run_seconds_total,
//     packetscope_ebpf_program_runs_total{program}: from the programs' info;
//     they move only while sysctl kernel.bpf_stats_enabled=1.
//   - packetscope_scrape_collector_duration_seconds,
//     packetscope_scrape_collector_success{collector}: per part of a scrape
//     (traffic, drops, latency, tcp, programs, scan).
//   - packetscope_feature_enabled{feature}: 1 or 0 per kernel feature the
//     stack programs use where the kernel has it (bpf.Feature: tcx,
//     netfilter_stages, drop_reason_socket, kfunc_reads,
//     socket_queue_trace), read from the kernel's BTF at start; New logs one
//     line per missing feature, naming the Linux version that brings it.
//     Without TCX (before 6.6) the traffic counters are tc clsact filters
//     with the same semantics; without BPF netfilter links (before 6.4) the
//     stages that start or end at the IP layer are not observed.
package exporter
