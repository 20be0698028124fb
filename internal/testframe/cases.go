package testframe

import (
	"net/netip"

	"github.com/packetscope/packetscope/rule"
)

// Addresses of the case frames.
var (
	V4A = netip.MustParseAddr("10.202.1.1")
	V4B = netip.MustParseAddr("10.202.1.2")
	V6A = netip.MustParseAddr("fd00:202::1")
	V6B = netip.MustParseAddr("fd00:202::2")
)

// Case is a frame and the Packet the parser must return for it.
type Case struct {
	Name  string
	Frame Frame
	Want  rule.Packet
}

// ParseCases are frames with the Packet rule.ParseFrame must return; the XDP
// tests reuse them to check the kernel parser agrees.
var ParseCases = []Case{
	{"ipv4 tcp syn", Frame{Src: V4A, Dst: V4B, Proto: rule.ProtoTCP, TTL: 64, L4: TCP(1234, 80, rule.FlagSYN, 1024)},
		rule.Packet{Family: 4, Src: V4A, Dst: V4B, Protocol: rule.ProtoTCP, TTL: 64, Length: 40, HasL4: true, SrcPort: 1234, DstPort: 80, TCPFlags: rule.FlagSYN, TCPWindow: 1024}},
	{"ipv4 udp", Frame{Src: V4A, Dst: V4B, Proto: rule.ProtoUDP, TTL: 3, L4: UDP(53, 40000, 10)},
		rule.Packet{Family: 4, Src: V4A, Dst: V4B, Protocol: rule.ProtoUDP, TTL: 3, Length: 38, HasL4: true, SrcPort: 53, DstPort: 40000}},
	{"ipv4 icmp echo", Frame{Src: V4A, Dst: V4B, Proto: rule.ProtoICMP, TTL: 255, L4: ICMP(8)},
		rule.Packet{Family: 4, Src: V4A, Dst: V4B, Protocol: rule.ProtoICMP, TTL: 255, Length: 28, HasL4: true, ICMPType: 8}},
	{"ipv4 options", Frame{Src: V4A, Dst: V4B, Proto: rule.ProtoTCP, TTL: 9, IPv4Opts: 40, L4: TCP(1, 2, rule.FlagACK, 7)},
		rule.Packet{Family: 4, Src: V4A, Dst: V4B, Protocol: rule.ProtoTCP, TTL: 9, Length: 80, HasL4: true, SrcPort: 1, DstPort: 2, TCPFlags: rule.FlagACK, TCPWindow: 7}},
	{"ipv4 length as written", Frame{Src: V4A, Dst: V4B, Proto: rule.ProtoUDP, TTL: 1, L4: UDP(1, 2, 0), LenDelta: 1000},
		rule.Packet{Family: 4, Src: V4A, Dst: V4B, Protocol: rule.ProtoUDP, TTL: 1, Length: 1028, HasL4: true, SrcPort: 1, DstPort: 2}},
	{"ipv4 first fragment", Frame{Src: V4A, Dst: V4B, Proto: rule.ProtoUDP, TTL: 1, MoreFrags: true, L4: UDP(5, 6, 0)},
		rule.Packet{Family: 4, Src: V4A, Dst: V4B, Protocol: rule.ProtoUDP, TTL: 1, Length: 28, Fragment: rule.FragFirst, HasL4: true, SrcPort: 5, DstPort: 6}},
	{"ipv4 later fragment", Frame{Src: V4A, Dst: V4B, Proto: rule.ProtoUDP, TTL: 1, FragOff: 185, L4: UDP(5, 6, 0)},
		rule.Packet{Family: 4, Src: V4A, Dst: V4B, Protocol: rule.ProtoUDP, TTL: 1, Length: 28, Fragment: rule.FragLater}},
	{"ipv4 last fragment", Frame{Src: V4A, Dst: V4B, Proto: rule.ProtoTCP, TTL: 1, FragOff: 1, MoreFrags: true, L4: TCP(5, 6, 2, 0)},
		rule.Packet{Family: 4, Src: V4A, Dst: V4B, Protocol: rule.ProtoTCP, TTL: 1, Length: 40, Fragment: rule.FragLater}},
	{"ipv4 tcp header truncated", Frame{Src: V4A, Dst: V4B, Proto: rule.ProtoTCP, TTL: 1, L4: TCP(5, 6, 2, 0), Truncate: 14 + 20 + 19},
		rule.Packet{Family: 4, Src: V4A, Dst: V4B, Protocol: rule.ProtoTCP, TTL: 1, Length: 40}},
	{"ipv4 udp header exactly present", Frame{Src: V4A, Dst: V4B, Proto: rule.ProtoUDP, TTL: 1, L4: UDP(5, 6, 4), Truncate: 14 + 20 + 8},
		rule.Packet{Family: 4, Src: V4A, Dst: V4B, Protocol: rule.ProtoUDP, TTL: 1, Length: 32, HasL4: true, SrcPort: 5, DstPort: 6}},
	{"ipv4 options truncated", Frame{Src: V4A, Dst: V4B, Proto: rule.ProtoTCP, TTL: 1, IPv4Opts: 8, Truncate: 14 + 24},
		rule.Packet{}},
	{"ipv4 header truncated", Frame{Src: V4A, Dst: V4B, Proto: rule.ProtoTCP, TTL: 1, Truncate: 14 + 19}, rule.Packet{}},
	{"ipv4 bad ihl", Frame{Src: V4A, Dst: V4B, Proto: rule.ProtoTCP, TTL: 1, IPv4Opts: -4, L4: make([]byte, 20)}, rule.Packet{}},
	{"ipv4 bad version", Frame{Src: V4A, Dst: V4B, Proto: rule.ProtoTCP, TTL: 1, Version: 6, L4: TCP(1, 2, 3, 4)}, rule.Packet{}},
	{"ipv4 other protocol", Frame{Src: V4A, Dst: V4B, Proto: 47, TTL: 1, L4: make([]byte, 20)},
		rule.Packet{Family: 4, Src: V4A, Dst: V4B, Protocol: 47, TTL: 1, Length: 40}},
	{"vlan", Frame{Tags: []uint16{VLAN}, Src: V4A, Dst: V4B, Proto: rule.ProtoUDP, TTL: 2, L4: UDP(7, 8, 0)},
		rule.Packet{Family: 4, Src: V4A, Dst: V4B, Protocol: rule.ProtoUDP, TTL: 2, Length: 28, HasL4: true, SrcPort: 7, DstPort: 8}},
	{"qinq", Frame{Tags: []uint16{QinQ, VLAN}, Src: V6A, Dst: V6B, Proto: rule.ProtoUDP, TTL: 2, L4: UDP(7, 8, 0)},
		rule.Packet{Family: 6, Src: V6A, Dst: V6B, Protocol: rule.ProtoUDP, TTL: 2, Length: 48, HasL4: true, SrcPort: 7, DstPort: 8}},
	{"three tags", Frame{Tags: []uint16{QinQ, VLAN, VLAN}, Src: V4A, Dst: V4B, Proto: rule.ProtoUDP, L4: UDP(7, 8, 0)}, rule.Packet{}},
	{"vlan tag truncated", Frame{Tags: []uint16{VLAN}, Src: V4A, Dst: V4B, Truncate: 16}, rule.Packet{}},
	{"arp", Frame{EtherType: 0x0806}, rule.Packet{}},
	{"runt", Frame{Src: V4A, Dst: V4B, Truncate: 13}, rule.Packet{}},
	{"ipv6 tcp", Frame{Src: V6A, Dst: V6B, Proto: rule.ProtoTCP, TTL: 64, L4: TCP(443, 5555, rule.FlagSYN|rule.FlagACK, 65535)},
		rule.Packet{Family: 6, Src: V6A, Dst: V6B, Protocol: rule.ProtoTCP, TTL: 64, Length: 60, HasL4: true, SrcPort: 443, DstPort: 5555, TCPFlags: rule.FlagSYN | rule.FlagACK, TCPWindow: 65535}},
	{"ipv6 icmpv6", Frame{Src: V6A, Dst: V6B, Proto: rule.ProtoICMPv6, TTL: 255, L4: ICMP(128)},
		rule.Packet{Family: 6, Src: V6A, Dst: V6B, Protocol: rule.ProtoICMPv6, TTL: 255, Length: 48, HasL4: true, ICMPType: 128}},
	{"ipv6 ext headers", Frame{Src: V6A, Dst: V6B, Proto: rule.ProtoUDP, TTL: 1, IPv6Ext: []uint8{nextHopByHop, nextRouting, nextDestOpts, nextAH}, ExtLen: 1, L4: UDP(9, 10, 0)},
		rule.Packet{Family: 6, Src: V6A, Dst: V6B, Protocol: rule.ProtoUDP, TTL: 1, Length: 40 + 16*3 + 12 + 8, HasL4: true, SrcPort: 9, DstPort: 10}},
	{"ipv6 six ext headers", Frame{Src: V6A, Dst: V6B, Proto: rule.ProtoUDP, TTL: 1, IPv6Ext: []uint8{0, 60, 60, 60, 60, 60}, L4: UDP(9, 10, 0)},
		rule.Packet{Family: 6, Src: V6A, Dst: V6B, Protocol: rule.ProtoUDP, TTL: 1, Length: 40 + 48 + 8, HasL4: true, SrcPort: 9, DstPort: 10}},
	{"ipv6 seven ext headers", Frame{Src: V6A, Dst: V6B, Proto: rule.ProtoUDP, TTL: 1, IPv6Ext: []uint8{0, 60, 60, 60, 60, 60, 43}, L4: UDP(9, 10, 0)},
		rule.Packet{Family: 6, Src: V6A, Dst: V6B, Protocol: 43, TTL: 1, Length: 40 + 56 + 8}},
	{"ipv6 ext header truncated", Frame{Src: V6A, Dst: V6B, Proto: rule.ProtoUDP, TTL: 1, IPv6Ext: []uint8{0, 60}, ExtLen: 2, L4: UDP(9, 10, 0), Truncate: 14 + 40 + 24 + 10},
		rule.Packet{Family: 6, Src: V6A, Dst: V6B, Protocol: 60, TTL: 1, Length: 40 + 48 + 8}},
	{"ipv6 ext header length byte missing", Frame{Src: V6A, Dst: V6B, Proto: rule.ProtoUDP, TTL: 1, IPv6Ext: []uint8{0}, L4: UDP(9, 10, 0), Truncate: 14 + 41},
		rule.Packet{Family: 6, Src: V6A, Dst: V6B, Protocol: 0, TTL: 1, Length: 40 + 8 + 8}},
	{"ipv6 first fragment", Frame{Src: V6A, Dst: V6B, Proto: rule.ProtoTCP, TTL: 1, IPv6Ext: []uint8{nextFragment}, MoreFrags: true, L4: TCP(1, 2, rule.FlagSYN, 0)},
		rule.Packet{Family: 6, Src: V6A, Dst: V6B, Protocol: rule.ProtoTCP, TTL: 1, Length: 68, Fragment: rule.FragFirst, HasL4: true, SrcPort: 1, DstPort: 2, TCPFlags: rule.FlagSYN}},
	{"ipv6 atomic fragment", Frame{Src: V6A, Dst: V6B, Proto: rule.ProtoUDP, TTL: 1, IPv6Ext: []uint8{nextFragment}, L4: UDP(1, 2, 0)},
		rule.Packet{Family: 6, Src: V6A, Dst: V6B, Protocol: rule.ProtoUDP, TTL: 1, Length: 56, Fragment: rule.FragFirst, HasL4: true, SrcPort: 1, DstPort: 2}},
	{"ipv6 later fragment", Frame{Src: V6A, Dst: V6B, Proto: rule.ProtoUDP, TTL: 1, IPv6Ext: []uint8{nextHopByHop, nextFragment}, FragOff: 100, L4: UDP(1, 2, 0)},
		rule.Packet{Family: 6, Src: V6A, Dst: V6B, Protocol: rule.ProtoUDP, TTL: 1, Length: 40 + 8 + 8 + 8, Fragment: rule.FragLater}},
	{"ipv6 fragment header truncated", Frame{Src: V6A, Dst: V6B, Proto: rule.ProtoUDP, TTL: 1, IPv6Ext: []uint8{nextFragment}, FragOff: 100, Truncate: 14 + 40 + 7},
		rule.Packet{Family: 6, Src: V6A, Dst: V6B, Protocol: nextFragment, TTL: 1, Length: 48}},
	{"ipv6 header truncated", Frame{Src: V6A, Dst: V6B, Proto: rule.ProtoUDP, Truncate: 14 + 39}, rule.Packet{}},
	{"ipv6 bad version", Frame{Src: V6A, Dst: V6B, Proto: rule.ProtoUDP, Version: 4, L4: UDP(1, 2, 0)}, rule.Packet{}},
	{"ipv6 no next header", Frame{Src: V6A, Dst: V6B, Proto: 59, TTL: 1},
		rule.Packet{Family: 6, Src: V6A, Dst: V6B, Protocol: 59, TTL: 1, Length: 40}},
}
