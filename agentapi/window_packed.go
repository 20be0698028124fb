package agentapi

import (
	"net/netip"
	"time"

	"github.com/packetscope/packetscope/rule"
)

// packedSample is a rule.Sample as the traffic window keeps it: 64 bytes
// instead of 128, and no pointers, so the garbage collector never scans the
// ring. Under a flood the window holds its full 200,000 samples: 12.8 MB
// here, where rule.Samples took 25.6 MB, scanned at every collection (a
// flood benchmark's process, the guard and a window of rule.Samples, took
// 89 MiB).
type packedSample struct {
	at                                                  int64 // Time, as nanoseconds since the window's epoch
	src, dst                                            [16]byte
	length, srcPort, dstPort, tcpWindow                 uint16
	family, protocol, ttl, tcpFlags, icmpType, fragment uint8
	flags                                               uint8  // packed* bits
	name, reaction                                      uint16 // Interface and Reaction, as indexes into the window's names
}

// Bits of packedSample.flags.
const (
	packedHasL4 = 1 << iota
	packedSrcValid
	packedSrcIs4
	packedDstValid
	packedDstIs4
)

// names interns the few strings samples carry (interface names, drop
// reasons) for the packed ring; index 0 is "". Beyond maxNames distinct
// strings a new one is kept as "": a netns has nowhere near that many
// interfaces, and a report without the name beats unbounded memory.
type names struct {
	list  []string
	index map[string]uint16
	// The last name interned: a flood's samples come from one interface,
	// and intern runs per sample, so most calls end here without a hash.
	last      string
	lastIndex uint16
}

const maxNames = 1 << 16

func (n *names) intern(s string) uint16 {
	if s == "" {
		return 0
	}
	if s == n.last {
		return n.lastIndex
	}
	i, ok := n.index[s]
	if !ok {
		i = n.add(s)
	}
	if i != 0 {
		n.last, n.lastIndex = s, i
	}
	return i
}

// add keeps a new name; 0 ("") once maxNames are kept.
func (n *names) add(s string) uint16 {
	if len(n.list) == 0 {
		n.list, n.index = []string{""}, map[string]uint16{}
	}
	if len(n.list) == maxNames {
		return 0
	}
	i := uint16(len(n.list))
	n.list = append(n.list, s)
	n.index[s] = i
	return i
}

func (n *names) name(i uint16) string {
	if int(i) < len(n.list) {
		return n.list[i]
	}
	return ""
}

// pack packs s, whose time is at nanoseconds from the window's epoch.
func (n *names) pack(s *rule.Sample, at int64) packedSample {
	p := &s.Packet
	ps := packedSample{
		at:     at,
		length: p.Length, srcPort: p.SrcPort, dstPort: p.DstPort, tcpWindow: p.TCPWindow,
		family: p.Family, protocol: p.Protocol, ttl: p.TTL, tcpFlags: p.TCPFlags, icmpType: p.ICMPType,
		fragment: uint8(p.Fragment),
		name:     n.intern(s.Interface), reaction: n.intern(s.Reaction),
	}
	if p.HasL4 {
		ps.flags |= packedHasL4
	}
	ps.flags |= packAddr(&ps.src, p.Src, packedSrcValid, packedSrcIs4)
	ps.flags |= packAddr(&ps.dst, p.Dst, packedDstValid, packedDstIs4)
	return ps
}

func packAddr(to *[16]byte, a netip.Addr, valid, is4 uint8) uint8 {
	if !a.IsValid() {
		return 0
	}
	*to = a.As16()
	if a.Is4() {
		return valid | is4
	}
	return valid
}

func unpackAddr(b *[16]byte, flags, valid, is4 uint8) netip.Addr {
	switch {
	case flags&valid == 0:
		return netip.Addr{}
	case flags&is4 != 0:
		return netip.AddrFrom4([4]byte(b[12:]))
	}
	return netip.AddrFrom16(*b)
}

// packet is the sample's header fields, as rule.Packet.
func (ps *packedSample) packet() rule.Packet {
	return rule.Packet{
		Family: ps.family, Protocol: ps.protocol, TTL: ps.ttl, Length: ps.length,
		Src:      unpackAddr(&ps.src, ps.flags, packedSrcValid, packedSrcIs4),
		Dst:      unpackAddr(&ps.dst, ps.flags, packedDstValid, packedDstIs4),
		Fragment: rule.FragKind(ps.fragment), HasL4: ps.flags&packedHasL4 != 0,
		SrcPort: ps.srcPort, DstPort: ps.dstPort, TCPFlags: ps.tcpFlags, TCPWindow: ps.tcpWindow, ICMPType: ps.icmpType,
	}
}

func (n *names) unpack(ps *packedSample, epoch time.Time) rule.Sample {
	return rule.Sample{Time: epoch.Add(time.Duration(ps.at)), Interface: n.name(ps.name), Reaction: n.name(ps.reaction), Packet: ps.packet()}
}

// chunkLen is how many samples a chunk of the ring holds: 256 KiB.
const chunkLen = 1 << 12

// chunkedRing is the window's storage: a sequence of samples in fixed-size
// chunks, so that growing adds a chunk and never copies. Doubling a slice
// kept the old array (together as large as the new one) alive while it
// copied, and resident for a minute after: the agent's memory peaked 10 MiB
// above its steady state each time a flood filled the window.
type chunkedRing struct {
	chunks [][]packedSample
	len    int
}

func (r *chunkedRing) at(i int) *packedSample { return &r.chunks[i/chunkLen][i%chunkLen] }

// capacity is the samples the allocated chunks hold.
func (r *chunkedRing) capacity() int {
	if len(r.chunks) == 0 {
		return 0
	}
	return (len(r.chunks)-1)*chunkLen + len(r.chunks[len(r.chunks)-1])
}

// push appends s, adding a chunk when the last is full: chunkLen samples,
// or what is left to bound, so the ring never holds more than bound.
func (r *chunkedRing) push(s packedSample, bound int) {
	if c := r.capacity(); r.len == c {
		r.chunks = append(r.chunks, make([]packedSample, max(min(chunkLen, bound-c), 1)))
	}
	*r.at(r.len) = s
	r.len++
}

// truncate keeps the first n samples and frees the chunks past them, but
// always the first.
func (r *chunkedRing) truncate(n int) {
	r.len = n
	keep := max((n+chunkLen-1)/chunkLen, 1)
	if keep < len(r.chunks) {
		clear(r.chunks[keep:])
		r.chunks = r.chunks[:keep]
	}
}
