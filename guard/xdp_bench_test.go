package guard

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/packetscope/packetscope/internal/testframe"
	"github.com/packetscope/packetscope/rule"
)

// Benchmarks: ns per packet through BPF_PROG_TEST_RUN on 64-byte frames,
// pass and drop paths, IPv4 and IPv6, for the guard with 0, 64 and 1,000
// fingerprint rules plus 100,000 source-CIDR rules, and for xdp-filter
// (Debian's xdp-tools) on the same frames. scripts/bench-guard.sh runs them.

var (
	benchVictim4 = netip.MustParseAddr("10.202.0.1")
	benchVictim6 = netip.MustParseAddr("fd00:202::1")
	benchSrc4    = netip.MustParseAddr("10.202.9.9")
	benchSrc6    = netip.MustParseAddr("fd00:202:9::9")
)

// benchFrame is a 64-byte Ethernet frame carrying UDP from sport to dport.
func benchFrame(src, dst netip.Addr, sport, dport uint16) []byte {
	f := testframe.Frame{Src: src, Dst: dst, Proto: rule.ProtoUDP, TTL: 64}
	payload := 64 - 14 - 20 - 8
	if src.Is6() {
		payload = 64 - 14 - 40 - 8
	}
	f.L4 = testframe.UDP(sport, dport, payload)
	b := f.Build()
	if len(b) != 64 {
		panic(fmt.Sprintf("bench frame is %d bytes", len(b)))
	}
	return b
}

type benchPath struct {
	name  string
	frame []byte
	want  uint32
}

// The drop frames come from 4444 to 53: only the last-added fingerprint rule
// (the highest slot, the worst case for the classifier) matches them.
var benchPaths = []benchPath{
	{"ipv4/pass", benchFrame(benchSrc4, benchVictim4, 4444, 9), xdpPass},
	{"ipv4/drop", benchFrame(benchSrc4, benchVictim4, 4444, 53), xdpDrop},
	{"ipv6/pass", benchFrame(benchSrc6, benchVictim6, 4444, 9), xdpPass},
	{"ipv6/drop", benchFrame(benchSrc6, benchVictim6, 4444, 53), xdpDrop},
}

// cidrDropPaths are frames from sources of the first CIDR rules (a /32 and a
// /128), to a port no fingerprint rule names: dropped by a CIDR rule.
func cidrDropPaths() []benchPath {
	rules := benchCIDRs(10)
	src4 := netip.MustParsePrefix(rules[0].Match.Src).Addr()
	src6 := netip.MustParsePrefix(rules[9].Match.Src).Addr()
	return []benchPath{
		{"ipv4/cidr-drop", benchFrame(src4, benchVictim4, 4444, 9), xdpDrop},
		{"ipv6/cidr-drop", benchFrame(src6, benchVictim6, 4444, 9), xdpDrop},
	}
}

// benchFingerprints returns n fingerprint rules of the kinds floods get:
// ports, flags, TTL and length around the protected addresses, then the two
// rules the drop frames hit.
func benchFingerprints(n int) []rule.Rule {
	var out []rule.Rule
	for i := range max(n-2, 0) {
		var m rule.Match
		switch i % 4 {
		case 0:
			m = rule.Match{Protocol: "udp", Dst: benchVictim4.String(), DstPorts: []string{fmt.Sprint(1000 + i)}, Length: "28-1500"}
		case 1:
			m = rule.Match{Protocol: "tcp", TCPFlags: "syn,!ack", DstPorts: []string{fmt.Sprint(1000 + i)}, TTL: "100-255"}
		case 2:
			m = rule.Match{Protocol: "udp", Dst: benchVictim6.String(), SrcPorts: []string{fmt.Sprint(20000 + i)}}
		case 3:
			m = rule.Match{Protocol: "udp", Src: "10.202.128.0/17", DstPorts: []string{fmt.Sprint(1000 + i)}, TTL: "0-63"}
		}
		out = append(out, rule.Rule{Action: rule.ActionDrop, TTLSeconds: 3600, Match: m})
	}
	if n >= 2 {
		out = append(out,
			rule.Rule{Action: rule.ActionDrop, TTLSeconds: 3600, Match: rule.Match{Protocol: "udp", Dst: benchVictim4.String(), SrcPorts: []string{"4444"}, DstPorts: []string{"53"}}},
			rule.Rule{Action: rule.ActionDrop, TTLSeconds: 3600, Match: rule.Match{Protocol: "udp", Dst: benchVictim6.String(), SrcPorts: []string{"4444"}, DstPorts: []string{"53"}}})
	}
	return out
}

// benchCIDRs returns n source-only rules that never cover the bench frames'
// sources: 80% IPv4 /32, 10% IPv4 /24, 10% IPv6 /128 and /64.
func benchCIDRs(n int) []rule.Rule {
	out := make([]rule.Rule, 0, n)
	for i := range n {
		var p string
		x := uint32(i)*2654435761 | 1
		switch {
		case i%10 < 8:
			p = fmt.Sprintf("100.%d.%d.%d/32", 64+x>>24%64, x>>16&0xff, x&0xff)
		case i%10 == 8:
			p = fmt.Sprintf("100.%d.%d.0/24", 64+x>>24%64, x>>16&0xff)
		case i%20 == 9:
			p = fmt.Sprintf("2001:db8:%x:%x::1/128", x>>16, x&0xffff)
		default:
			p = fmt.Sprintf("2001:db8:%x:%x::/64", x>>16, x&0xffff)
		}
		out = append(out, rule.Rule{Action: rule.ActionDrop, TTLSeconds: 3600, Match: rule.Match{Src: p}})
	}
	return out
}

func openBenchGuard(b *testing.B, fingerprints, cidrs int) *Guard {
	b.Helper()
	g := openTestGuard(b, Config{NoSampling: true, MaxRules: FPSlots + CIDRSlots})
	for _, r := range append(benchCIDRs(cidrs), benchFingerprints(fingerprints)...) {
		if _, err := g.Rules().Add(r); err != nil {
			b.Fatalf("add %+v: %v", r.Match, err)
		}
	}
	return g
}

func benchProg(b *testing.B, prog *ebpf.Program, p benchPath) {
	ret, per, err := prog.Benchmark(p.frame, b.N, b.ResetTimer)
	if err != nil {
		b.Fatalf("prog benchmark: %v", err)
	}
	if ret != p.want {
		b.Fatalf("verdict %d, want %d", ret, p.want)
	}
	b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
}

func BenchmarkXDP(b *testing.B) {
	configs := []struct {
		name               string
		fingerprints, cidr int
	}{
		{"guard/empty", 0, 0},
		{"guard/fp=64", 64, 0},
		{"guard/fp=64+cidr=1000", 64, 1000},
		{"guard/fp=1000", 1000, 0},
		{"guard/fp=0+cidr=100000", 0, 100_000},
		{"guard/fp=64+cidr=100000", 64, 100_000},
		{"guard/fp=1000+cidr=100000", 1000, 100_000},
		{"guard/fp=64+trace-xdp", 64, 0}, // the agent traces packet paths: a clock read per passed packet
	}
	for _, c := range configs {
		b.Run(c.name, func(b *testing.B) {
			g := openBenchGuard(b, c.fingerprints, c.cidr)
			if strings.HasSuffix(c.name, "trace-xdp") {
				if err := g.TraceXDP(true); err != nil {
					b.Fatal(err)
				}
			}
			if n := g.Rules().Len(); n != c.fingerprints+c.cidr {
				b.Fatalf("%d rules in the table, want %d", n, c.fingerprints+c.cidr)
			}
			for _, p := range benchPaths {
				want := p.want
				if c.fingerprints == 0 {
					want = xdpPass // nothing to match the drop frames
				}
				b.Run(p.name, func(b *testing.B) { benchProg(b, g.Program(), benchPath{p.name, p.frame, want}) })
			}
			if c.cidr > 0 {
				for _, p := range cidrDropPaths() {
					b.Run(p.name, func(b *testing.B) { benchProg(b, g.Program(), p) })
				}
			}
		})
	}
	b.Run("xdp-filter/1addr+1port", func(b *testing.B) {
		prog := loadXDPFilter(b, 1)
		for _, p := range append(benchPaths, cidrDropPaths()...) {
			b.Run(p.name, func(b *testing.B) { benchProg(b, prog, p) })
		}
	})
	b.Run("xdp-filter/10000addr+1port", func(b *testing.B) {
		prog := loadXDPFilter(b, 10_000)
		for _, p := range append(benchPaths, cidrDropPaths()...) {
			b.Run(p.name, func(b *testing.B) { benchProg(b, prog, p) })
		}
	})
}

// xdp-filter's map flags (xdp-tools xdp-filter/common_kern_user.h).
const (
	xfSrc = 1 << 0
	xfDst = 1 << 1
	xfTCP = 1 << 2
	xfUDP = 1 << 3
)

// loadXDPFilter loads xdp-filter's default-allow program (all features) from xdp-tools and
// configures it through its maps as `xdp-filter port 53 -m dst -p udp` plus
// addrs IPv4 source addresses and one IPv6 one: the sources of the CIDR drop
// frames (so that they take xdp-filter's address drop path) and addrs-1 more
// that never match. The fingerprint drop frames are caught by the port rule
// (xdp-filter has no conjunctions).
func loadXDPFilter(b testing.TB, addrs int) *ebpf.Program {
	b.Helper()
	spec, err := ebpf.LoadCollectionSpec("/usr/lib/x86_64-linux-gnu/bpf/xdpfilt_alw_all.o")
	if err != nil {
		b.Fatalf("load xdp-filter from xdp-tools (apt-get install xdp-tools): %v", err)
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		b.Fatalf("load xdp-filter: %v", err)
	}
	b.Cleanup(coll.Close)
	ncpu := ebpf.MustPossibleCPU()
	val := func(v uint64) []uint64 {
		out := make([]uint64, ncpu)
		for i := range out {
			out[i] = v
		}
		return out
	}
	// xdp-filter keys ports in network byte order.
	if err := coll.Maps["filter_ports"].Update(uint32(53<<8), val(xfDst|xfUDP), ebpf.UpdateAny); err != nil {
		b.Fatal(err)
	}
	cidr := cidrDropPaths()
	src := func(f []byte) []byte { // the IP source address of a bench frame
		if f[12] == 0x86 {
			return f[14+8 : 14+24]
		}
		return f[14+12 : 14+16]
	}
	if err := coll.Maps["filter_ipv6"].Update(src(cidr[1].frame), val(xfSrc), ebpf.UpdateAny); err != nil {
		b.Fatal(err)
	}
	for i := range addrs {
		a := src(cidr[0].frame)
		if i > 0 {
			a = binary.BigEndian.AppendUint32(nil, 0x64000000+uint32(i)) // 100.0.x.y: no bench frame's source
		}
		if err := coll.Maps["filter_ipv4"].Update(a, val(xfSrc), ebpf.UpdateAny); err != nil {
			b.Fatal(err)
		}
	}
	return coll.Programs["xdpfilt_alw_all"]
}
