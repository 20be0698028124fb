package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf/ringbuf"
)

// Closed-port probe protocols, indexes of ClosedProbes and ClosedPorts.
const (
	ProbeTCP       = 0 // a TCP SYN (without ACK) to a port nobody listens on
	ProbeUDP       = 1 // a UDP datagram to a port nobody is bound to
	ProbeProtocols = 2

	lostReactionRingbuf = 3
	lostReactionRate    = 4
)

// DefaultReactionBudget is how many reaction records each CPU emits per
// second at most (stack.bpf.c's reaction_budget).
const DefaultReactionBudget = 200

// Reaction is a received packet the stack dropped for a reason that is its
// answer to traffic nobody asked for (NO_SOCKET: a closed port, answered by
// a RST or an ICMP port unreachable; TCP_LISTEN_OVERFLOW: a full accept
// queue), with the packet's headers.
type Reaction struct {
	Ifindex  uint32
	Reason   uint32 // the running kernel's enum skb_drop_reason
	Family   uint8  // 4 or 6
	Protocol uint8  // IP protocol number: TCP or UDP
	Src, Dst netip.Addr
	SrcPort  uint16
	DstPort  uint16
	Length   uint16 // IP packet length
	Window   uint16 // TCP
	TCPFlags uint8
	TTL      uint8
}

// ReactionReader reads reaction records from the kernel.
type ReactionReader struct {
	rd *ringbuf.Reader
}

// ReactionReader opens the reactions ring buffer.
func (s *Stack) ReactionReader() (*ReactionReader, error) {
	rd, err := ringbuf.NewReader(s.objs.Reactions)
	if err != nil {
		return nil, fmt.Errorf("open reactions ring buffer: %w", err)
	}
	return &ReactionReader{rd: rd}, nil
}

// ErrReactionsClosed is returned by Read after Close.
var ErrReactionsClosed = ringbuf.ErrClosed

// Read blocks for the next reaction (the kernel submits without waking the
// reader until the buffer fills up: Read polls, like TraceReader).
func (r *ReactionReader) Read() (Reaction, error) {
	rec, err := readPolled(r.rd)
	if err != nil {
		return Reaction{}, err
	}
	var raw stackReactionRecord
	if _, err := binary.Decode(rec.RawSample, binary.NativeEndian, &raw); err != nil {
		return Reaction{}, fmt.Errorf("decode reaction record: %w", err)
	}
	out := Reaction{Ifindex: raw.Ifindex, Reason: raw.Reason, Family: raw.Family, Protocol: raw.Protocol,
		SrcPort: raw.Sport, DstPort: raw.Dport, Length: raw.Length, Window: raw.Window, TCPFlags: raw.TcpFlags, TTL: raw.Ttl}
	if raw.Family == 4 {
		out.Src = netip.AddrFrom4([4]byte(raw.Saddr[:4]))
		out.Dst = netip.AddrFrom4([4]byte(raw.Daddr[:4]))
	} else {
		out.Src = netip.AddrFrom16(raw.Saddr)
		out.Dst = netip.AddrFrom16(raw.Daddr)
	}
	return out, nil
}

// Close unblocks Read.
func (r *ReactionReader) Close() error {
	if err := r.rd.Close(); err != nil && !errors.Is(err, ringbuf.ErrClosed) {
		return fmt.Errorf("close reactions ring buffer: %w", err)
	}
	return nil
}

// LostReactions reads how many reactions found the ring buffer full
// (ringbuf) and how many were over the per-CPU budget (rate).
func (s *Stack) LostReactions() (ringbuf, rate uint64, err error) {
	if ringbuf, err = sumU64(s.objs.LostEvents, lostReactionRingbuf); err != nil {
		return 0, 0, fmt.Errorf("read lost_events: %w", err)
	}
	if rate, err = sumU64(s.objs.LostEvents, lostReactionRate); err != nil {
		return 0, 0, fmt.Errorf("read lost_events: %w", err)
	}
	return ringbuf, rate, nil
}

// ClosedProbes reads the closed-port probes counted since load, per probe
// protocol (ProbeTCP, ProbeUDP).
func (s *Stack) ClosedProbes() ([ProbeProtocols]uint64, error) {
	var out [ProbeProtocols]uint64
	for p := range uint32(ProbeProtocols) {
		v, err := sumU64(s.objs.ClosedProbes, p)
		if err != nil {
			return out, fmt.Errorf("read closed_probes: %w", err)
		}
		out[p] = v
	}
	return out, nil
}

// PortSet is a set of ports, one bit each.
type PortSet [65536 / 64]uint64

// Add adds o's ports to p.
func (p *PortSet) Add(o *PortSet) {
	for i := range p {
		p[i] |= o[i]
	}
}

// Len counts the ports in p.
func (p *PortSet) Len() int {
	n := 0
	for _, w := range p {
		for ; w != 0; w &= w - 1 {
			n++
		}
	}
	return n
}

// TakeClosedPorts returns the closed ports probed since the last call, per
// probe protocol, and clears them in the kernel. A probe between the read
// and the clear of a word is lost: the kernel sets bits with atomic ORs, but
// read-then-clear is two system calls.
func (s *Stack) TakeClosedPorts() ([ProbeProtocols]PortSet, error) {
	var out [ProbeProtocols]PortSet
	var zero PortSet
	for p := range uint32(ProbeProtocols) {
		if err := s.objs.ClosedPorts.Lookup(p, &out[p]); err != nil {
			return out, fmt.Errorf("read closed_ports: %w", err)
		}
		if out[p] == zero {
			continue
		}
		if err := s.objs.ClosedPorts.Put(p, &zero); err != nil {
			return out, fmt.Errorf("clear closed_ports: %w", err)
		}
	}
	return out, nil
}

// Verdicts on received RSTs aimed at connections, indexes of RSTVerdicts
// (stack.bpf.c's enum rst_verdict).
const (
	RSTAccepted    = 0 // exactly in sequence: the connection was reset
	RSTChallenged  = 1 // in the receive window but not exact: a challenge ACK answered it, dropped (RFC 5961 3.2)
	RSTOutOfWindow = 2 // outside the receive window: dropped
	RSTVerdictsLen = 3
)

// RSTVerdicts reads the received RSTs counted since load, per verdict.
func (s *Stack) RSTVerdicts() ([RSTVerdictsLen]uint64, error) {
	var out [RSTVerdictsLen]uint64
	for v := range uint32(RSTVerdictsLen) {
		n, err := sumU64(s.objs.RstVerdicts, v)
		if err != nil {
			return out, fmt.Errorf("read rst_verdicts: %w", err)
		}
		out[v] = n
	}
	return out, nil
}
