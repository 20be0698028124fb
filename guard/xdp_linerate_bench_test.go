package guard

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/packetscope/packetscope/internal/testnet"
)

// BenchmarkXDPLineRate floods a veth with trafgen (netsniff-ng: PACKET_MMAP,
// no qdisc, one sender per CPU, so the TX ring is not the limit an hping3 is)
// from an attacker namespace into a victim namespace whose veth end runs,
// one after the other in the same run, a bare XDP_DROP, xdp-filter and the
// guard with 1,000 fingerprint + 100,000 CIDR rules. 64-byte UDP frames with
// random sources. It reports, per program:
//
//   - dropped_pps: packets the program dropped per second of wall time (it
//     shares this machine's cores with the senders and everything else);
//   - ns/pkt: the program's own run time per packet in the driver's NAPI
//     poll (bpf_stats), with real cache behaviour over random sources;
//   - Mpps/core: 1e3 / ns/pkt, the rate one core running nothing but the
//     program would sustain: the guard's own ceiling.
//
// No namespace has a route but its /24 and the frames never reach a stack.
// Runs once whatever b.N is (-benchtime 1x).
func BenchmarkXDPLineRate(b *testing.B) {
	testnet.RequireRoot(b)
	if _, err := exec.LookPath("trafgen"); err != nil {
		b.Fatal("trafgen not found: apt-get install -y netsniff-ng")
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatalf("enable bpf_stats: %v", err)
	}
	defer stats.Close()

	victim, attacker := testnet.NewNS(b, "ps-lr-v"), testnet.NewNS(b, "ps-lr-a")
	linkMultiQueue(b, victim, "vlr", "10.203.0.1/24", attacker, "alr", "10.203.0.2/24", 2)
	vmac := testnet.MAC(b, victim, "vlr")
	amac := testnet.MAC(b, attacker, "alr")
	var ifindex int
	if err := victim.Do(func() error {
		ifi, err := net.InterfaceByName("vlr")
		if err == nil {
			ifindex = ifi.Index
		}
		return err
	}); err != nil {
		b.Fatal(err)
	}

	fp := benchFrame(benchSrc4, benchVictim4, 4444, 53) // the last fingerprint rule
	cidr := cidrDropPaths()[0].frame                    // dropped by a /32 rule...
	cidr24 := netipFrom(benchCIDRs(9)[8].Match.Src)     // ...and by a /24 one
	progs := []struct {
		name  string
		prog  func() *ebpf.Program
		frame []byte
		rnd   int // random trailing bytes of the source address
	}{
		{"bare-drop", func() *ebpf.Program { return bareDrop(b) }, fp, 4},
		{"xdp-filter/fp-drop", func() *ebpf.Program { return loadXDPFilter(b, 1) }, fp, 4},
		{"guard/fp-drop", nil, fp, 4},
		{"guard/cidr24-drop", nil, withSrc4(cidr, cidr24), 1},
	}
	// PS_GUARD_VARIANT=obj adds a guard built from a variant of guard.bpf.c
	// on the same rules (TestXDPVariants): before/after in one run.
	if obj := os.Getenv("PS_GUARD_VARIANT"); obj != "" {
		progs = append(progs, progs[2], progs[3])
		progs[4].name, progs[5].name = "variant/fp-drop", "variant/cidr24-drop"
	}
	var g *Guard
	var variant *ebpf.Program
	for _, p := range progs {
		var prog *ebpf.Program
		if p.prog != nil {
			prog = p.prog()
		} else {
			if g == nil {
				g = openBenchGuard(b, 1000, 100_000)
			}
			prog = g.Program()
			if strings.HasPrefix(p.name, "variant/") {
				if variant == nil {
					variant = loadVariant(b, g, os.Getenv("PS_GUARD_VARIANT"))
				}
				prog = variant
			}
		}
		b.Run(p.name, func(b *testing.B) {
			var l link.Link
			if err := victim.Do(func() (err error) {
				l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode})
				return err
			}); err != nil {
				b.Fatalf("attach %s to vlr (native): %v", p.name, err)
			}
			defer l.Close()
			cfg := testnet.TrafgenConfig(b, vmac, amac, p.frame, p.rnd)
			stop := testnet.StartTrafgen(b, attacker, "alr", cfg)
			defer stop()
			time.Sleep(time.Second)
			s0, err := prog.Stats()
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			time.Sleep(3 * time.Second)
			s1, err := prog.Stats()
			if err != nil {
				b.Fatal(err)
			}
			secs := time.Since(start).Seconds()
			runs := s1.RunCount - s0.RunCount
			if runs == 0 {
				b.Fatalf("%s ran on no packet: is trafgen sending? (%s)", p.name, cfg)
			}
			ns := float64(s1.Runtime-s0.Runtime) / float64(runs)
			b.ReportMetric(float64(runs)/secs, "dropped_pps")
			b.ReportMetric(ns, "ns/pkt")
			b.ReportMetric(1e3/ns, "Mpps/core")
		})
	}
}

// linkMultiQueue joins a and b with a veth pair of queues queues each way.
func linkMultiQueue(tb testing.TB, a *testnet.NS, aIf, aAddr string, b *testnet.NS, bIf, bAddr string, queues int) {
	tb.Helper()
	q := strconv.Itoa(queues)
	tmp := fmt.Sprintf("vq%d", os.Getpid()%100000)
	testnet.MustRun(tb, "ip", "link", "add", tmp, "numtxqueues", q, "numrxqueues", q, "type", "veth", "peer", "name", tmp+"p", "numtxqueues", q, "numrxqueues", q)
	testnet.MustRun(tb, "ip", "link", "set", tmp, "netns", a.Name, "name", aIf)
	testnet.MustRun(tb, "ip", "link", "set", tmp+"p", "netns", b.Name, "name", bIf)
	a.MustRun("ip", "addr", "add", aAddr, "dev", aIf)
	b.MustRun("ip", "addr", "add", bAddr, "dev", bIf)
	a.MustRun("ip", "link", "set", aIf, "up")
	b.MustRun("ip", "link", "set", bIf, "up")
}

func netipFrom(prefix string) netip.Addr { return netip.MustParsePrefix(prefix).Addr() }

// withSrc4 returns a copy of an IPv4 frame from src.
func withSrc4(frame []byte, src netip.Addr) []byte {
	f := append([]byte(nil), frame...)
	a := src.As4()
	copy(f[26:30], a[:])
	return f
}

func bareDrop(tb testing.TB) *ebpf.Program {
	tb.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, xdpDrop), asm.Return()}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}
