package rule

import (
	"net/netip"
	"time"
)

// FragKind is how a packet is fragmented, as the guard parsed it.
type FragKind uint8

const (
	FragNone  FragKind = iota
	FragFirst          // offset 0, more to come: carries the L4 header
	FragLater          // offset > 0: no L4 header
)

func (k FragKind) String() string {
	switch k {
	case FragFirst:
		return "first"
	case FragLater:
		return "later"
	}
	return "none"
}

// Packet is the header of one packet as the XDP guard parses it, and one
// sampled header in the traffic window. The kernel parser and ParseFrame fill
// it the same way:
//
//   - Ethernet with up to two 802.1Q/802.1ad tags, then IPv4 or IPv6; anything
//     else, or an IP header that does not fit in the frame (IPv4: version 4,
//     IHL >= 5, IHL*4 bytes present; IPv6: version 6, 40 bytes present), is
//     not IP: Family 0, and no rule matches it.
//   - Protocol is IPv4's protocol field, or for IPv6 the next header after
//     skipping up to MaxIPv6ExtHeaders extension headers (hop-by-hop, routing,
//     fragment, destination options, AH). A chain that is longer or truncated
//     leaves Protocol at the last next-header read and HasL4 false. An
//     extension header counts only when all of it is in the frame. A
//     fragment header with offset > 0 ends the walk (what follows is data):
//     Protocol is its next header.
//   - TTL is IPv4's TTL or IPv6's hop limit; Length is IPv4's total length or
//     IPv6's payload length + 40, both as written in the header.
//   - HasL4 is true when the packet is not a later fragment and the L4 header
//     (TCP: 20 bytes, UDP: 8, ICMP/ICMPv6: 4) is within the frame. Ports,
//     TCP flags and window, and the ICMP type are meaningful only then.
type Packet struct {
	Family    uint8      `json:"family"`
	Src       netip.Addr `json:"src"`
	Dst       netip.Addr `json:"dst"`
	Protocol  uint8      `json:"protocol"`
	TTL       uint8      `json:"ttl"`
	Length    uint16     `json:"length"`
	Fragment  FragKind   `json:"fragment"`
	HasL4     bool       `json:"has_l4"`
	SrcPort   uint16     `json:"src_port,omitempty"`
	DstPort   uint16     `json:"dst_port,omitempty"`
	TCPFlags  uint8      `json:"tcp_flags,omitempty"`
	TCPWindow uint16     `json:"tcp_window,omitempty"`
	ICMPType  uint8      `json:"icmp_type,omitempty"`
}

// MaxIPv6ExtHeaders bounds the extension-header walk, in the kernel and here.
const MaxIPv6ExtHeaders = 6

// HasPorts reports whether the packet carries TCP or UDP ports.
func (p *Packet) HasPorts() bool {
	return p.HasL4 && (p.Protocol == ProtoTCP || p.Protocol == ProtoUDP)
}

// IsICMP reports whether the packet carries an ICMP (v4) or ICMPv6 header.
func (p *Packet) IsICMP() bool {
	return p.HasL4 && (p.Family == 4 && p.Protocol == ProtoICMP || p.Family == 6 && p.Protocol == ProtoICMPv6)
}

// Matches is the reference semantics of one rule against one packet. The XDP
// program must agree with it on every packet (see the differential test).
func (m *Matcher) Matches(p *Packet) bool {
	if p.Family == 0 {
		return false
	}
	if m.Family != 0 && m.Family != p.Family {
		return false
	}
	if m.Src.IsValid() && !m.Src.Contains(p.Src) {
		return false
	}
	if m.Dst.IsValid() && !m.Dst.Contains(p.Dst) {
		return false
	}
	if m.Protocol >= 0 && int(p.Protocol) != m.Protocol {
		return false
	}
	if m.NeedsPorts {
		if !p.HasPorts() || !inPorts(m.SrcPorts, p.SrcPort) || !inPorts(m.DstPorts, p.DstPort) {
			return false
		}
	}
	if m.NeedsTCP {
		if !p.HasL4 || p.Protocol != ProtoTCP {
			return false
		}
		if p.TCPFlags&m.FlagsSet != m.FlagsSet || p.TCPFlags&m.FlagsUnset != 0 {
			return false
		}
		if !m.TCPWindow.Contains(uint32(p.TCPWindow)) {
			return false
		}
	}
	if m.NeedsICMPType && (!p.IsICMP() || int(p.ICMPType) != m.ICMPType) {
		return false
	}
	if !m.TTL.Contains(uint32(p.TTL)) || !m.Length.Contains(uint32(p.Length)) {
		return false
	}
	switch m.Fragment {
	case FragmentAny:
		return p.Fragment != FragNone
	case FragmentNone:
		return p.Fragment == FragNone
	case FragmentFirst:
		return p.Fragment == FragFirst
	case FragmentLater:
		return p.Fragment == FragLater
	}
	return true
}

// Contains reports whether v is in the range (an unset range holds everything).
func (r Range) Contains(v uint32) bool { return !r.Set || v >= r.Lo && v <= r.Hi }

// inPorts reports whether port is in any of the ranges; no ranges means any port.
func inPorts(ranges []PortRange, port uint16) bool {
	if ranges == nil {
		return true
	}
	for _, r := range ranges {
		if port >= r.Lo && port <= r.Hi {
			return true
		}
	}
	return false
}

// Classify applies first-match semantics: the matching rule with the lowest
// priority number (slot) wins, and only it is counted. The kernel allocates
// slots lowest-free-first, so priority is the rule's slot. matchers[i] must be
// the compiled form of the rule with priority slots[i].
func Classify(matchers []*Matcher, slots []int, p *Packet) int {
	best := -1
	for i, m := range matchers {
		if (best < 0 || slots[i] < slots[best]) && m.Matches(p) {
			best = i
		}
	}
	return best
}

// Sample is one sampled packet header as the XDP guard's sampler hands it to
// the agent: when it was seen, on which interface, and its parsed header.
type Sample struct {
	Time      time.Time `json:"time"`
	Interface string    `json:"interface"`
	Packet    Packet    `json:"packet"`
	// Reaction is set on the stack's reactions (agentapi.TrafficReport's
	// Reactions): the kernel drop reason the packet met, e.g. NO_SOCKET (a
	// closed port: the node sent a RST or an ICMP port unreachable) or
	// TCP_LISTEN_OVERFLOW.
	Reaction string `json:"reaction,omitempty"`
}

// AllowsMeta reports whether m can match a packet with these header facts:
// the part of Matches that depends only on family, fragment, L4 and protocol.
func (m *Matcher) AllowsMeta(family uint8, frag FragKind, hasL4 bool, proto uint8) bool {
	if m.Family != 0 && m.Family != family {
		return false
	}
	if m.Protocol >= 0 && int(proto) != m.Protocol {
		return false
	}
	if m.NeedsPorts && !(hasL4 && (proto == ProtoTCP || proto == ProtoUDP)) {
		return false
	}
	if m.NeedsTCP && !(hasL4 && proto == ProtoTCP) {
		return false
	}
	if m.NeedsICMPType && !(hasL4 && (family == 4 && proto == ProtoICMP || family == 6 && proto == ProtoICMPv6)) {
		return false
	}
	switch m.Fragment {
	case FragmentAny:
		return frag != FragNone
	case FragmentNone:
		return frag == FragNone
	case FragmentFirst:
		return frag == FragFirst
	case FragmentLater:
		return frag == FragLater
	}
	return true
}
