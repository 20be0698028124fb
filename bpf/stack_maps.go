package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// TrafficCount is one traffic map entry summed over CPUs.
type TrafficCount struct {
	Ifindex   uint32
	Direction uint8
	Protocol  uint8
	Packets   uint64
	Bytes     uint64
}

// DropCount is one drops map entry summed over CPUs. Reason is a value of
// the running kernel's enum skb_drop_reason.
type DropCount struct {
	Reason   uint32
	Protocol uint8
	Drops    uint64
}

// Histogram is a log2-bucketed histogram of nanoseconds (see HistBuckets).
type Histogram struct {
	Buckets [HistBuckets]uint64 // per bucket, not cumulative
	SumNs   uint64
}

// TCPEvents are TCP event totals since load.
type TCPEvents struct {
	Retransmits uint64
	ResetsTX    uint64
	ResetsRX    uint64
	// PassiveOpens are handshakes clients completed with a listener.
	PassiveOpens uint64
}

// Traffic reads the packets and bytes per interface, direction and
// protocol: the direct-mapped cells plus the hash of interfaces that found
// their cell taken. The caller serializes it with AttachDevice and
// DetachDevice.
func (s *Stack) Traffic() ([]TrafficCount, error) {
	type key struct {
		ifindex             uint32
		direction, protocol uint8
	}
	sums := map[key]*TrafficCount{}
	add := func(k key, packets, bytes uint64) {
		c := sums[k]
		if c == nil {
			c = &TrafficCount{Ifindex: k.ifindex, Direction: k.direction, Protocol: k.protocol}
			sums[k] = c
		}
		c.Packets += packets
		c.Bytes += bytes
	}

	cells, ncpu, err := readPerCPUArray[stackTrafficCell](s.objs.TrafficCells)
	if err != nil {
		return nil, fmt.Errorf("read traffic cells: %w", err)
	}
	for i := range len(cells) / ncpu {
		for _, c := range cells[i*ncpu : (i+1)*ncpu] {
			if c.Ifindex != 0 {
				add(key{c.Ifindex, uint8(i / protocolSlots % 2), uint8(i % protocolSlots)}, c.Packets, c.Bytes)
			}
		}
	}

	var (
		k    stackTrafficKey
		vals []stackTrafficValue
	)
	it := s.objs.Traffic.Iterate()
	for it.Next(&k, &vals) {
		for _, v := range vals {
			add(key{k.Ifindex, k.Direction, k.Protocol}, v.Packets, v.Bytes)
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read traffic map: %w", err)
	}
	// The transport protocols' counts exist on every counted device from
	// the start, zero until a packet comes: a rate over a series born with
	// a flood has no value until its second scrape, which would hold the
	// alerts built on it back one interval.
	for ifindex := range s.devLinks {
		for _, dir := range []uint8{DirectionRX, DirectionTX} {
			for _, proto := range []uint8{ProtocolTCP, ProtocolUDP, ProtocolICMP, ProtocolICMPv6} {
				add(key{uint32(ifindex), dir, proto}, 0, 0)
			}
		}
	}
	out := make([]TrafficCount, 0, len(sums))
	for _, c := range sums {
		out = append(out, *c)
	}
	return out, nil
}

// Drops reads the dropped skbs per drop reason and protocol: the
// direct-mapped cells plus the hash of larger reason values.
func (s *Stack) Drops() ([]DropCount, error) {
	var out []DropCount
	cells, ncpu, err := readPerCPUArray[uint64](s.objs.DropCells)
	if err != nil {
		return nil, fmt.Errorf("read drop cells: %w", err)
	}
	for i := range len(cells) / ncpu {
		var n uint64
		for _, v := range cells[i*ncpu : (i+1)*ncpu] {
			n += v
		}
		if n > 0 {
			out = append(out, DropCount{Reason: uint32(i / protocolSlots), Protocol: uint8(i % protocolSlots), Drops: n})
		}
	}

	var (
		key  stackDropKey
		vals []uint64
	)
	it := s.objs.Drops.Iterate()
	for it.Next(&key, &vals) {
		c := DropCount{Reason: key.Reason, Protocol: key.Protocol}
		for _, v := range vals {
			c.Drops += v
		}
		out = append(out, c)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read drops map: %w", err)
	}
	return out, nil
}

// protocolSlots is PROTOCOL_SLOTS: the cells of one interface and
// direction, or of one drop reason.
const protocolSlots = 8

// readPerCPUArray reads a whole per-CPU array in one batch: the values of
// entry i are out[i*ncpu : (i+1)*ncpu].
func readPerCPUArray[T any](m *ebpf.Map) (out []T, ncpu int, err error) {
	ncpu, err = ebpf.PossibleCPU()
	if err != nil {
		return nil, 0, err
	}
	n := int(m.MaxEntries())
	keys := make([]uint32, n)
	out = make([]T, n*ncpu)
	var cursor ebpf.MapBatchCursor
	got, err := m.BatchLookup(&cursor, keys, out, nil)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil, 0, err
	}
	if got != n {
		return nil, 0, fmt.Errorf("batch lookup returned %d of %d entries", got, n)
	}
	return out, ncpu, nil
}

// sumU64 reads a per-CPU array slot and sums it over CPUs.
func sumU64(m *ebpf.Map, key uint32) (uint64, error) {
	var vals []uint64
	if err := m.Lookup(key, &vals); err != nil {
		return 0, err
	}
	var sum uint64
	for _, v := range vals {
		sum += v
	}
	return sum, nil
}

// Latency reads the stage latency histograms, indexed by stage.
func (s *Stack) Latency() ([StageCount]Histogram, error) {
	var out [StageCount]Histogram
	for st := range uint32(StageCount) {
		for b := range uint32(HistBuckets) {
			v, err := sumU64(s.objs.LatencyBuckets, st*HistBuckets+b)
			if err != nil {
				return out, fmt.Errorf("read latency_buckets: %w", err)
			}
			out[st].Buckets[b] = v
		}
		sum, err := sumU64(s.objs.LatencySums, st)
		if err != nil {
			return out, fmt.Errorf("read latency_sums: %w", err)
		}
		out[st].SumNs = sum
	}
	return out, nil
}

// RTT reads the smoothed-RTT histogram.
func (s *Stack) RTT() (Histogram, error) {
	var h Histogram
	for b := range uint32(HistBuckets) {
		v, err := sumU64(s.objs.RttBuckets, b)
		if err != nil {
			return h, fmt.Errorf("read rtt_buckets: %w", err)
		}
		h.Buckets[b] = v
	}
	sum, err := sumU64(s.objs.RttSum, 0)
	if err != nil {
		return h, fmt.Errorf("read rtt_sum: %w", err)
	}
	h.SumNs = sum
	return h, nil
}

// TCPStateDelta reads the net number of TCP sockets that entered each state
// (indexed by the kernel's TCP state number) since load.
func (s *Stack) TCPStateDelta() ([16]int64, error) {
	var out [16]int64
	for st := range uint32(16) {
		var vals []int64
		if err := s.objs.TcpStateDelta.Lookup(st, &vals); err != nil {
			return out, fmt.Errorf("read tcp_state_delta: %w", err)
		}
		for _, v := range vals {
			out[st] += v
		}
	}
	return out, nil
}

// TCPEvents reads the retransmit, reset and passive-open totals.
func (s *Stack) TCPEvents() (TCPEvents, error) {
	var e TCPEvents
	var errs [4]error
	e.Retransmits, errs[0] = sumU64(s.objs.TcpEvents, tcpEventRetransmit)
	e.ResetsTX, errs[1] = sumU64(s.objs.TcpEvents, tcpEventResetTX)
	e.ResetsRX, errs[2] = sumU64(s.objs.TcpEvents, tcpEventResetRX)
	e.PassiveOpens, errs[3] = sumU64(s.objs.TcpEvents, tcpEventPassiveOpen)
	if err := errors.Join(errs[:]...); err != nil {
		return e, fmt.Errorf("read tcp_events: %w", err)
	}
	return e, nil
}

// TCPFlagClasses name the TCP flag classes of tcp_rejected, in the order
// of enum tcp_flag_class: the XDP guard's classes and labels.
var TCPFlagClasses = [...]string{"syn", "synack", "ack", "rst", "fin", "other"}

// TCPRejected reads the incoming TCP segments of no connection per flag
// class (indexed as TCPFlagClasses): answered with a reset or dropped for
// nonsense flags, since load.
func (s *Stack) TCPRejected() ([len(TCPFlagClasses)]uint64, error) {
	var out [len(TCPFlagClasses)]uint64
	var errs []error
	for i := range out {
		v, err := sumU64(s.objs.TcpRejected, uint32(i))
		out[i] = v
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return out, fmt.Errorf("read tcp_rejected: %w", err)
	}
	return out, nil
}

// UDPConnected are the UDP datagrams and bytes received for connected
// sockets (answers from the peer a socket of the node connected to) since
// load, estimated from a sample (count_udp_connected in stack.bpf.c).
type UDPConnected struct {
	Packets, Bytes uint64
}

// UDPConnected reads the connected sockets' UDP totals.
func (s *Stack) UDPConnected() (UDPConnected, error) {
	var u UDPConnected
	var errs [2]error
	u.Packets, errs[0] = sumU64(s.objs.UdpConnected, udpConnectedPackets)
	u.Bytes, errs[1] = sumU64(s.objs.UdpConnected, udpConnectedBytes)
	if err := errors.Join(errs[:]...); err != nil {
		return u, fmt.Errorf("read udp_connected: %w", err)
	}
	return u, nil
}

// LostMapFull reads how many events found a counter map full.
func (s *Stack) LostMapFull() (uint64, error) {
	v, err := sumU64(s.objs.LostEvents, lostMapFull)
	if err != nil {
		return 0, fmt.Errorf("read lost_events: %w", err)
	}
	return v, nil
}
