package responder

import (
	"math/rand/v2"
	"net/netip"

	"github.com/packetscope/packetscope/internal/attackgen"
	"github.com/packetscope/packetscope/rule"
)

// Synthetic traffic for tests. ordinaryTraffic is what a busy server sees on
// a normal day: mostly established TCP in both roles, new connections (with
// the SYN shapes of Linux, Windows and macOS stacks, including to the port a
// flood targets), DNS, NTP and QUIC over UDP, pings, the odd ICMP error, some
// IPv6. Header shapes follow real stacks (SYN 60/52/64 bytes with options,
// windows 64240/65535/29200, TTLs 64/128 minus path hops).

var victim4 = netip.MustParseAddr("10.10.10.10")
var victim6 = netip.MustParseAddr("2001:db8:10::10")

// randAddr4 is not attackgen.PublicAddr4, which also skips 100/8 and 127/8:
// testdata/ordinary.pcap was written from this sequence (TestOrdinaryPcap).
func randAddr4(r *rand.Rand) netip.Addr {
	for {
		a := netip.AddrFrom4([4]byte{byte(1 + r.IntN(222)), byte(r.IntN(256)), byte(r.IntN(256)), byte(1 + r.IntN(254))})
		if a.IsGlobalUnicast() && !a.IsPrivate() {
			return a
		}
	}
}

var (
	randAddr6 = attackgen.PublicAddr6
	pathTTL   = attackgen.PathTTL
	ephemeral = attackgen.Ephemeral
)

func tcpPkt(src, dst netip.Addr, sport, dport uint16, flags uint8, win uint16, length uint16, ttl uint8) rule.Packet {
	fam := uint8(4)
	if src.Is6() {
		fam = 6
	}
	return rule.Packet{Family: fam, Src: src, Dst: dst, Protocol: rule.ProtoTCP, TTL: ttl, Length: length,
		HasL4: true, SrcPort: sport, DstPort: dport, TCPFlags: flags, TCPWindow: win}
}

func ordinaryTraffic(seed uint64, n int) []rule.Packet {
	r := rand.New(rand.NewPCG(seed, 42))
	out := make([]rule.Packet, 0, n)
	services := []uint16{443, 443, 443, 80, 22, 25565, 8080}
	for len(out) < n {
		v6 := r.IntN(10) == 0
		dst := victim4
		src := randAddr4(r)
		if v6 {
			dst, src = victim6, randAddr6(r)
		}
		ttl := pathTTL(r)
		x := r.IntN(1000)
		switch {
		case x < 560: // established TCP to our services: ACKs and data
			flags := rule.FlagACK
			length := uint16(52)
			if r.IntN(3) == 0 {
				flags |= rule.FlagPSH
				length = uint16(60 + r.IntN(1440))
			}
			out = append(out, tcpPkt(src, dst, ephemeral(r), services[r.IntN(len(services))], flags, uint16(500+r.IntN(65000)), length, ttl))
		case x < 700: // replies to our own outgoing connections
			flags := rule.FlagACK | rule.FlagPSH
			out = append(out, tcpPkt(src, dst, []uint16{443, 80, 5432}[r.IntN(3)], ephemeral(r), flags, uint16(1000+r.IntN(64000)), uint16(52+r.IntN(1448)), ttl))
		case x < 740: // new connections
			shape := r.IntN(4)
			win, length, flags := uint16(64240), uint16(60), rule.FlagSYN
			switch shape {
			case 1:
				win, length = 65535, 52
			case 2:
				win, length = 65535, 64
			case 3:
				win, flags = 29200, rule.FlagSYN|rule.FlagECE|rule.FlagCWR
			}
			out = append(out, tcpPkt(src, dst, ephemeral(r), services[r.IntN(len(services))], flags, win, length, ttl))
		case x < 760: // SYN-ACKs for our outgoing connections
			out = append(out, tcpPkt(src, dst, 443, ephemeral(r), rule.FlagSYN|rule.FlagACK, 65160, 60, ttl))
		case x < 790: // FIN and RST
			f := []uint8{rule.FlagFIN | rule.FlagACK, rule.FlagRST, rule.FlagRST | rule.FlagACK}[r.IntN(3)]
			out = append(out, tcpPkt(src, dst, ephemeral(r), services[r.IntN(len(services))], f, uint16(r.IntN(65535)), 40+uint16(r.IntN(2))*12, ttl))
		case x < 900: // UDP: DNS answers, NTP, QUIC, syslog
			p := rule.Packet{Family: 4, Src: src, Dst: dst, Protocol: rule.ProtoUDP, TTL: ttl, HasL4: true}
			if v6 {
				p.Family = 6
			}
			switch r.IntN(4) {
			case 0:
				p.SrcPort, p.DstPort, p.Length = 53, ephemeral(r), uint16(60+r.IntN(450))
			case 1:
				p.SrcPort, p.DstPort, p.Length = 123, 123, 76
			case 2:
				p.SrcPort, p.DstPort, p.Length = ephemeral(r), 443, uint16(1200+r.IntN(150))
			case 3:
				p.SrcPort, p.DstPort, p.Length = ephemeral(r), 514, uint16(80+r.IntN(300))
			}
			out = append(out, p)
		case x < 990: // pings both ways
			if v6 {
				out = append(out, rule.Packet{Family: 6, Src: src, Dst: dst, Protocol: rule.ProtoICMPv6, TTL: ttl, Length: 104, HasL4: true, ICMPType: []uint8{128, 129}[r.IntN(2)]})
				continue
			}
			out = append(out, rule.Packet{Family: 4, Src: src, Dst: dst, Protocol: rule.ProtoICMP, TTL: ttl, Length: 84, HasL4: true, ICMPType: []uint8{0, 8}[r.IntN(2)]})
		case x < 995: // ICMP errors: unreachable, time exceeded (traceroutes)
			if v6 {
				src = randAddr4(r)
			}
			t := []uint8{3, 3, 11}[r.IntN(3)]
			out = append(out, rule.Packet{Family: 4, Src: src, Dst: victim4, Protocol: rule.ProtoICMP, TTL: ttl, Length: uint16(56 + r.IntN(40)), HasL4: true, ICMPType: t})
		default: // fragments of large UDP answers (EDNS)
			if v6 {
				src = randAddr4(r)
			}
			p := rule.Packet{Family: 4, Src: src, Dst: victim4, Protocol: rule.ProtoUDP, TTL: ttl, Length: 1500, Fragment: rule.FragFirst, HasL4: true, SrcPort: 53, DstPort: ephemeral(r)}
			out = append(out, p)
			out = append(out, rule.Packet{Family: 4, Src: src, Dst: victim4, Protocol: rule.ProtoUDP, TTL: ttl, Length: uint16(100 + r.IntN(1400)), Fragment: rule.FragLater})
		}
	}
	return out[:n]
}

// hpingICMPFlood is `hping3 --icmp --flood [--rand-source]`: echo requests
// with no payload (IP length 28), TTL 64.
func hpingICMPFlood(seed uint64, n int, spoofed bool) []rule.Packet {
	r := rand.New(rand.NewPCG(seed, 7))
	src := netip.MustParseAddr("198.51.100.66")
	out := make([]rule.Packet, n)
	for i := range out {
		if spoofed {
			src = randAddr4(r)
		}
		out[i] = rule.Packet{Family: 4, Src: src, Dst: victim4, Protocol: rule.ProtoICMP, TTL: 64, Length: 28, HasL4: true, ICMPType: 8}
	}
	return out
}

// hpingSYNFlood is `hping3 -S -p 80 --flood [--rand-source]`: SYN, window
// 512, no options (IP length 40), TTL 64, incrementing source ports.
func hpingSYNFlood(seed uint64, n int, spoofed bool) []rule.Packet {
	r := rand.New(rand.NewPCG(seed, 9))
	src := netip.MustParseAddr("198.51.100.77")
	out := make([]rule.Packet, n)
	base := 1000 + r.IntN(20000)
	for i := range out {
		if spoofed {
			src = randAddr4(r)
		}
		out[i] = tcpPkt(src, victim4, uint16(base+i), 80, rule.FlagSYN, 512, 40, 64)
	}
	return out
}

// mix interleaves an attack into ordinary traffic: what a window during a
// flood holds.
func mix(seed uint64, attack, ordinary []rule.Packet) []rule.Packet {
	out := append(append([]rule.Packet{}, attack...), ordinary...)
	r := rand.New(rand.NewPCG(seed, 3))
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}
