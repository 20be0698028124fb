package guard

import (
	"net/netip"
	"testing"
)

var (
	v4a = netip.MustParseAddr("10.202.1.1")
	v4b = netip.MustParseAddr("10.202.1.2")
	v6a = netip.MustParseAddr("fd00:202::1")
	v6b = netip.MustParseAddr("fd00:202::2")
)

// parseCases are frames with the Packet ParseFrame must return; the XDP tests
// reuse them to check the kernel parser agrees.
var parseCases = []struct {
	name string
	f    frame
	want Packet
}{
	{"ipv4 tcp syn", frame{src: v4a, dst: v4b, proto: ProtoTCP, ttl: 64, l4: tcpHdr(1234, 80, FlagSYN, 1024)},
		Packet{Family: 4, Src: v4a, Dst: v4b, Protocol: ProtoTCP, TTL: 64, Length: 40, HasL4: true, SrcPort: 1234, DstPort: 80, TCPFlags: FlagSYN, TCPWindow: 1024}},
	{"ipv4 udp", frame{src: v4a, dst: v4b, proto: ProtoUDP, ttl: 3, l4: udpHdr(53, 40000, 10)},
		Packet{Family: 4, Src: v4a, Dst: v4b, Protocol: ProtoUDP, TTL: 3, Length: 38, HasL4: true, SrcPort: 53, DstPort: 40000}},
	{"ipv4 icmp echo", frame{src: v4a, dst: v4b, proto: ProtoICMP, ttl: 255, l4: icmpHdr(8)},
		Packet{Family: 4, Src: v4a, Dst: v4b, Protocol: ProtoICMP, TTL: 255, Length: 28, HasL4: true, ICMPType: 8}},
	{"ipv4 options", frame{src: v4a, dst: v4b, proto: ProtoTCP, ttl: 9, ipv4Opts: 40, l4: tcpHdr(1, 2, FlagACK, 7)},
		Packet{Family: 4, Src: v4a, Dst: v4b, Protocol: ProtoTCP, TTL: 9, Length: 80, HasL4: true, SrcPort: 1, DstPort: 2, TCPFlags: FlagACK, TCPWindow: 7}},
	{"ipv4 length as written", frame{src: v4a, dst: v4b, proto: ProtoUDP, ttl: 1, l4: udpHdr(1, 2, 0), lenDelta: 1000},
		Packet{Family: 4, Src: v4a, Dst: v4b, Protocol: ProtoUDP, TTL: 1, Length: 1028, HasL4: true, SrcPort: 1, DstPort: 2}},
	{"ipv4 first fragment", frame{src: v4a, dst: v4b, proto: ProtoUDP, ttl: 1, moreFrags: true, l4: udpHdr(5, 6, 0)},
		Packet{Family: 4, Src: v4a, Dst: v4b, Protocol: ProtoUDP, TTL: 1, Length: 28, Fragment: FragFirst, HasL4: true, SrcPort: 5, DstPort: 6}},
	{"ipv4 later fragment", frame{src: v4a, dst: v4b, proto: ProtoUDP, ttl: 1, fragOff: 185, l4: udpHdr(5, 6, 0)},
		Packet{Family: 4, Src: v4a, Dst: v4b, Protocol: ProtoUDP, TTL: 1, Length: 28, Fragment: FragLater}},
	{"ipv4 last fragment", frame{src: v4a, dst: v4b, proto: ProtoTCP, ttl: 1, fragOff: 1, moreFrags: true, l4: tcpHdr(5, 6, 2, 0)},
		Packet{Family: 4, Src: v4a, Dst: v4b, Protocol: ProtoTCP, TTL: 1, Length: 40, Fragment: FragLater}},
	{"ipv4 tcp header truncated", frame{src: v4a, dst: v4b, proto: ProtoTCP, ttl: 1, l4: tcpHdr(5, 6, 2, 0), truncate: 14 + 20 + 19},
		Packet{Family: 4, Src: v4a, Dst: v4b, Protocol: ProtoTCP, TTL: 1, Length: 40}},
	{"ipv4 udp header exactly present", frame{src: v4a, dst: v4b, proto: ProtoUDP, ttl: 1, l4: udpHdr(5, 6, 4), truncate: 14 + 20 + 8},
		Packet{Family: 4, Src: v4a, Dst: v4b, Protocol: ProtoUDP, TTL: 1, Length: 32, HasL4: true, SrcPort: 5, DstPort: 6}},
	{"ipv4 options truncated", frame{src: v4a, dst: v4b, proto: ProtoTCP, ttl: 1, ipv4Opts: 8, truncate: 14 + 24},
		Packet{}},
	{"ipv4 header truncated", frame{src: v4a, dst: v4b, proto: ProtoTCP, ttl: 1, truncate: 14 + 19}, Packet{}},
	{"ipv4 bad ihl", frame{src: v4a, dst: v4b, proto: ProtoTCP, ttl: 1, ipv4Opts: -4, l4: make([]byte, 20)}, Packet{}},
	{"ipv4 bad version", frame{src: v4a, dst: v4b, proto: ProtoTCP, ttl: 1, version: 6, l4: tcpHdr(1, 2, 3, 4)}, Packet{}},
	{"ipv4 other protocol", frame{src: v4a, dst: v4b, proto: 47, ttl: 1, l4: make([]byte, 20)},
		Packet{Family: 4, Src: v4a, Dst: v4b, Protocol: 47, TTL: 1, Length: 40}},
	{"vlan", frame{tags: []uint16{etherTypeVLAN}, src: v4a, dst: v4b, proto: ProtoUDP, ttl: 2, l4: udpHdr(7, 8, 0)},
		Packet{Family: 4, Src: v4a, Dst: v4b, Protocol: ProtoUDP, TTL: 2, Length: 28, HasL4: true, SrcPort: 7, DstPort: 8}},
	{"qinq", frame{tags: []uint16{etherTypeQinQ, etherTypeVLAN}, src: v6a, dst: v6b, proto: ProtoUDP, ttl: 2, l4: udpHdr(7, 8, 0)},
		Packet{Family: 6, Src: v6a, Dst: v6b, Protocol: ProtoUDP, TTL: 2, Length: 48, HasL4: true, SrcPort: 7, DstPort: 8}},
	{"three tags", frame{tags: []uint16{etherTypeQinQ, etherTypeVLAN, etherTypeVLAN}, src: v4a, dst: v4b, proto: ProtoUDP, l4: udpHdr(7, 8, 0)}, Packet{}},
	{"vlan tag truncated", frame{tags: []uint16{etherTypeVLAN}, src: v4a, dst: v4b, truncate: 16}, Packet{}},
	{"arp", frame{etherType: 0x0806}, Packet{}},
	{"runt", frame{src: v4a, dst: v4b, truncate: 13}, Packet{}},
	{"ipv6 tcp", frame{src: v6a, dst: v6b, proto: ProtoTCP, ttl: 64, l4: tcpHdr(443, 5555, FlagSYN|FlagACK, 65535)},
		Packet{Family: 6, Src: v6a, Dst: v6b, Protocol: ProtoTCP, TTL: 64, Length: 60, HasL4: true, SrcPort: 443, DstPort: 5555, TCPFlags: FlagSYN | FlagACK, TCPWindow: 65535}},
	{"ipv6 icmpv6", frame{src: v6a, dst: v6b, proto: ProtoICMPv6, ttl: 255, l4: icmpHdr(128)},
		Packet{Family: 6, Src: v6a, Dst: v6b, Protocol: ProtoICMPv6, TTL: 255, Length: 48, HasL4: true, ICMPType: 128}},
	{"ipv6 ext headers", frame{src: v6a, dst: v6b, proto: ProtoUDP, ttl: 1, ipv6Ext: []uint8{nextHopByHop, nextRouting, nextDestOpts, nextAH}, extLen: 1, l4: udpHdr(9, 10, 0)},
		Packet{Family: 6, Src: v6a, Dst: v6b, Protocol: ProtoUDP, TTL: 1, Length: 40 + 16*3 + 12 + 8, HasL4: true, SrcPort: 9, DstPort: 10}},
	{"ipv6 six ext headers", frame{src: v6a, dst: v6b, proto: ProtoUDP, ttl: 1, ipv6Ext: []uint8{0, 60, 60, 60, 60, 60}, l4: udpHdr(9, 10, 0)},
		Packet{Family: 6, Src: v6a, Dst: v6b, Protocol: ProtoUDP, TTL: 1, Length: 40 + 48 + 8, HasL4: true, SrcPort: 9, DstPort: 10}},
	{"ipv6 seven ext headers", frame{src: v6a, dst: v6b, proto: ProtoUDP, ttl: 1, ipv6Ext: []uint8{0, 60, 60, 60, 60, 60, 43}, l4: udpHdr(9, 10, 0)},
		Packet{Family: 6, Src: v6a, Dst: v6b, Protocol: 43, TTL: 1, Length: 40 + 56 + 8}},
	{"ipv6 ext header truncated", frame{src: v6a, dst: v6b, proto: ProtoUDP, ttl: 1, ipv6Ext: []uint8{0, 60}, extLen: 2, l4: udpHdr(9, 10, 0), truncate: 14 + 40 + 24 + 10},
		Packet{Family: 6, Src: v6a, Dst: v6b, Protocol: 60, TTL: 1, Length: 40 + 48 + 8}},
	{"ipv6 ext header length byte missing", frame{src: v6a, dst: v6b, proto: ProtoUDP, ttl: 1, ipv6Ext: []uint8{0}, l4: udpHdr(9, 10, 0), truncate: 14 + 41},
		Packet{Family: 6, Src: v6a, Dst: v6b, Protocol: 0, TTL: 1, Length: 40 + 8 + 8}},
	{"ipv6 first fragment", frame{src: v6a, dst: v6b, proto: ProtoTCP, ttl: 1, ipv6Ext: []uint8{nextFragment}, moreFrags: true, l4: tcpHdr(1, 2, FlagSYN, 0)},
		Packet{Family: 6, Src: v6a, Dst: v6b, Protocol: ProtoTCP, TTL: 1, Length: 68, Fragment: FragFirst, HasL4: true, SrcPort: 1, DstPort: 2, TCPFlags: FlagSYN}},
	{"ipv6 atomic fragment", frame{src: v6a, dst: v6b, proto: ProtoUDP, ttl: 1, ipv6Ext: []uint8{nextFragment}, l4: udpHdr(1, 2, 0)},
		Packet{Family: 6, Src: v6a, Dst: v6b, Protocol: ProtoUDP, TTL: 1, Length: 56, Fragment: FragFirst, HasL4: true, SrcPort: 1, DstPort: 2}},
	{"ipv6 later fragment", frame{src: v6a, dst: v6b, proto: ProtoUDP, ttl: 1, ipv6Ext: []uint8{nextHopByHop, nextFragment}, fragOff: 100, l4: udpHdr(1, 2, 0)},
		Packet{Family: 6, Src: v6a, Dst: v6b, Protocol: ProtoUDP, TTL: 1, Length: 40 + 8 + 8 + 8, Fragment: FragLater}},
	{"ipv6 fragment header truncated", frame{src: v6a, dst: v6b, proto: ProtoUDP, ttl: 1, ipv6Ext: []uint8{nextFragment}, fragOff: 100, truncate: 14 + 40 + 7},
		Packet{Family: 6, Src: v6a, Dst: v6b, Protocol: nextFragment, TTL: 1, Length: 48}},
	{"ipv6 header truncated", frame{src: v6a, dst: v6b, proto: ProtoUDP, truncate: 14 + 39}, Packet{}},
	{"ipv6 bad version", frame{src: v6a, dst: v6b, proto: ProtoUDP, version: 4, l4: udpHdr(1, 2, 0)}, Packet{}},
	{"ipv6 no next header", frame{src: v6a, dst: v6b, proto: 59, ttl: 1},
		Packet{Family: 6, Src: v6a, Dst: v6b, Protocol: 59, TTL: 1, Length: 40}},
}

func TestParseFrame(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			got := ParseFrame(tc.f.build())
			if got != tc.want {
				t.Errorf("ParseFrame:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestParseFrameNeverPanics feeds every prefix of every case frame.
func TestParseFrameNeverPanics(t *testing.T) {
	for _, tc := range parseCases {
		b := tc.f.build()
		for n := 0; n <= len(b); n++ {
			p := ParseFrame(b[:n])
			if p.Family == 0 && (p.Src.IsValid() || p.HasL4) {
				t.Fatalf("%s cut to %d: Family 0 with fields set: %+v", tc.name, n, p)
			}
		}
	}
}
