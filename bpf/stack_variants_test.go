package bpf

import (
	"encoding/binary"
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

// loadStackWithout loads the stack programs in the test's namespace as a
// kernel without the given features would.
func loadStackWithout(tb testing.TB, off ...string) *Stack {
	tb.Helper()
	return loadStackIn(tb, "", off...)
}

// loadStackIn loads the stack programs observing the namespace at netnsPath
// ("" for the test's own) as a kernel without the given features would.
func loadStackIn(tb testing.TB, netnsPath string, off ...string) *Stack {
	tb.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			tb.Fatal("loading the stack programs needs root")
		}
		tb.Skip("loading the stack programs needs root")
	}
	if err := EnsureFilesystems(); err != nil {
		tb.Fatal(err)
	}
	featuresOffForTest = map[string]bool{}
	for _, f := range off {
		featuresOffForTest[f] = true
	}
	defer func() { featuresOffForTest = nil }()
	ns, err := OpenNetns(netnsPath)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ns.Close() })
	s, err := LoadStack(StackConfig{Netns: ns, SampleEvery: 1})
	if err != nil {
		tb.Fatalf("load stack without %v: %v", off, err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// frame builds an Ethernet frame of ethertype carrying an IP header whose
// protocol byte is l4 (IPv4 or IPv6), padded to size.
func frame(ethertype uint16, l4 byte, size int) []byte {
	f := make([]byte, size)
	for i := range 12 {
		f[i] = 0x02
	}
	binary.BigEndian.PutUint16(f[12:], ethertype)
	switch ethertype {
	case 0x0800:
		f[14] = 0x45
		binary.BigEndian.PutUint16(f[16:], uint16(size-14))
		f[22] = 64
		f[23] = l4
		copy(f[26:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
	case 0x86dd:
		f[14] = 0x60
		binary.BigEndian.PutUint16(f[18:], uint16(size-54))
		f[20] = l4
		f[21] = 64
	}
	return f
}

// TestTrafficCounterVariantsAgree runs the traffic counter on crafted
// frames with the kfunc reads (6.2+) and without them (6.1): both must
// classify and count every frame alike.
func TestTrafficCounterVariantsAgree(t *testing.T) {
	frames := []struct {
		name  string
		frame []byte
		want  uint8
	}{
		{"ipv4 udp", frame(0x0800, 17, 64), ProtocolUDP},
		{"ipv4 tcp", frame(0x0800, 6, 80), ProtocolTCP},
		{"ipv4 icmp", frame(0x0800, 1, 98), ProtocolICMP},
		{"ipv6 udp", frame(0x86dd, 17, 90), ProtocolUDP},
		{"ipv6 icmpv6", frame(0x86dd, 58, 90), ProtocolICMPv6},
		{"ipv4 gre", frame(0x0800, 47, 64), ProtocolOther},
		{"arp", frame(0x0806, 0, 60), ProtocolARP},
	}
	variants := map[string]*Stack{
		"kfuncs":    loadStackWithout(t),
		"no kfuncs": loadStackWithout(t, FeatureKfuncReads),
	}
	for name, s := range variants {
		for _, f := range frames {
			for _, p := range []*ebpf.Program{s.objs.TcxIngress, s.objs.TcxEgress} {
				ret, err := p.Run(&ebpf.RunOptions{Data: f.frame})
				if err != nil {
					t.Fatalf("%s: run %s on %s: %v", name, p, f.name, err)
				}
				if int32(ret) != -1 { // TCX_NEXT = TC_ACT_UNSPEC: never a verdict
					t.Errorf("%s: %s returned %d on %s, want -1", name, p, int32(ret), f.name)
				}
			}
		}
		counts, err := s.Traffic()
		if err != nil {
			t.Fatal(err)
		}
		got := map[[2]uint8]TrafficCount{}
		for _, c := range counts {
			got[[2]uint8{c.Direction, c.Protocol}] = c
		}
		for _, dir := range []uint8{DirectionRX, DirectionTX} {
			want := map[uint8][2]uint64{}
			for _, f := range frames {
				w := want[f.want]
				want[f.want] = [2]uint64{w[0] + 1, w[1] + uint64(len(f.frame))}
			}
			for proto, w := range want {
				c := got[[2]uint8{dir, proto}]
				if c.Packets != w[0] || c.Bytes != w[1] {
					t.Errorf("%s: direction %d protocol %d: %d packets %d bytes, want %d, %d", name, dir, proto, c.Packets, c.Bytes, w[0], w[1])
				}
			}
		}
	}
}

// TestLoadWithoutOptionalFeatures loads the stack as each older kernel
// would and opens a stage window: what a feature leaves out is neither
// loaded nor attached, the rest works.
func TestLoadWithoutOptionalFeatures(t *testing.T) {
	s := loadStackWithout(t, FeatureTCX, FeatureNetfilterStages, FeatureKfuncReads, FeatureSocketQueueTrace)
	if s.objs.NfBoundary != nil || s.objs.SkDataReady != nil {
		t.Errorf("programs of missing features were loaded: nf_boundary %v, sk_data_ready %v", s.objs.NfBoundary, s.objs.SkDataReady)
	}
	if _, ok := s.Programs()["nf_boundary"]; ok {
		t.Error("Programs lists nf_boundary although it was left out")
	}
	if err := s.AttachPath(); err != nil {
		t.Fatalf("open a stage window without netfilter: %v", err)
	}
	if err := s.DetachPath(); err != nil {
		t.Fatal(err)
	}
}

func benchmarkTrafficCounter(b *testing.B, off ...string) {
	s := loadStackWithout(b, off...)
	f := frame(0x0800, 17, 64)
	// The kernel loops b.N times and reports the mean per run.
	_, per, err := s.objs.TcxIngress.Benchmark(f, b.N, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(per.Nanoseconds()), "ns/frame")
}

// BenchmarkTrafficCounterKfuncs and ...ProbeRead: the traffic counter per
// 64-byte frame through BPF_PROG_TEST_RUN, as 6.2+ and 6.1 run it.
func BenchmarkTrafficCounterKfuncs(b *testing.B) { benchmarkTrafficCounter(b) }
func BenchmarkTrafficCounterProbeRead(b *testing.B) {
	benchmarkTrafficCounter(b, FeatureKfuncReads)
}
