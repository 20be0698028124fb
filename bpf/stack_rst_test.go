package bpf

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/packetscope/packetscope/internal/rstinject"
	"github.com/packetscope/packetscope/internal/testnet"
)

// TestRSTVerdictsWithAndWithoutRxSk: crafted RSTs into a connection of the
// observed namespace are counted by verdict alike whether kfree_skb names
// the receiving socket (rx_sk, 6.11) or not (tcp_probe_rst notes them, as on
// 6.1): in the window but not exact are challenged, outside it out of
// window, and a stray RST at the listener counts in neither; over IPv4 and
// IPv6.
func TestRSTVerdictsWithAndWithoutRxSk(t *testing.T) {
	testnet.RequireRoot(t)
	for _, v := range []struct {
		name string
		off  []string
	}{{"rx_sk", nil}, {"tcp_probe", []string{FeatureDropReasonSocket}}} {
		t.Run(v.name, func(t *testing.T) {
			if v.off == nil && !featureOn(mustFeatures(t), FeatureDropReasonSocket) {
				t.Fatalf("this kernel (%s) has no kfree_skb rx_sk: the variant cannot run here", KernelRelease())
			}
			a := testnet.NewNS(t, "ps-rst")
			b := testnet.NewNS(t, "ps-rst")
			testnet.Link(t, a, "eth0", "10.231.0.1/24,fd00:231::1/64", b, "eth0", "10.231.0.2/24,fd00:231::2/64")
			for _, victim := range []string{"10.231.0.1", "fd00:231::1"} {
				t.Run(victim, func(t *testing.T) {
					// A stack per address family: the counters start at 0.
					s := loadStackIn(t, a.Path(), v.off...)
					if got := s.objs.TcpProbeRst != nil; got != (v.off != nil) {
						t.Fatalf("tcp_probe_rst loaded: %v, want %v", got, v.off != nil)
					}
					countRejectedRSTs(t, s, a, b, netip.AddrPortFrom(netip.MustParseAddr(victim), 7100).String())
				})
			}
		})
	}
}

func mustFeatures(t *testing.T) []Feature {
	t.Helper()
	f, err := KernelFeatures()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func countRejectedRSTs(t *testing.T, s *Stack, victim, client *testnet.NS, addr string) {
	var l net.Listener
	if err := victim.Do(func() (err error) { l, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			accepted <- c
		}
	}()
	var c net.Conn
	if err := client.Do(func() (err error) { c, err = net.DialTimeout("tcp", addr, 5*time.Second); return err }); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	server := <-accepted
	defer server.Close()
	target, err := rstinject.TargetOf(c.(*net.TCPConn))
	if err != nil {
		t.Fatal(err)
	}
	seq := target.RcvNxt
	var inj *rstinject.Injector
	if err := client.Do(func() (err error) { inj, err = rstinject.Open(); return err }); err != nil {
		t.Fatal(err)
	}
	defer inj.Close()
	shape := rstinject.Shape{TTL: 64}
	stray := rstinject.Target{Src: netip.AddrPortFrom(target.Src.Addr(), 1), Dst: target.Dst}
	for k := range uint32(10) {
		for _, send := range []struct {
			to  rstinject.Target
			seq uint32
		}{{target, seq + 1 + k*100}, {target, seq + 1<<31 + k*1000}, {stray, 12345 + k}} {
			if err := inj.Send(send.to, send.seq, shape); err != nil {
				t.Fatal(err)
			}
		}
	}
	var got string
	for deadline := time.Now().Add(5 * time.Second); ; {
		v, err := s.RSTVerdicts()
		if err != nil {
			t.Fatal(err)
		}
		got = fmt.Sprintf("accepted %d, challenged %d, out of window %d", v[RSTAccepted], v[RSTChallenged], v[RSTOutOfWindow])
		if v[RSTChallenged] == 10 && v[RSTOutOfWindow] == 10 && v[RSTAccepted] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 in-window, 10 out-of-window RSTs and 10 stray ones at the listener: %s; want 0, 10, 10", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The connection survived them.
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	_ = server.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := server.Read(make([]byte, 1)); err != nil {
		t.Fatalf("the connection did not survive the rejected RSTs: %v", err)
	}
	t.Log(got)
}

// BenchmarkTCPProbeRSTPerSegment: what tcp_probe_rst, loaded on kernels
// before 6.11, costs every segment an established connection receives
// (bpf_stats run time per run, a bulk transfer between two namespaces).
// The program runs beside the kernel's TCP, so BPF_PROG_TEST_RUN cannot run
// it; the kernel's own accounting adds a clock read per run (~20 ns), so
// the figure is an upper bound.
func BenchmarkTCPProbeRSTPerSegment(b *testing.B) {
	testnet.RequireRoot(b)
	a := testnet.NewNS(b, "ps-rstb")
	c := testnet.NewNS(b, "ps-rstb")
	testnet.Link(b, a, "eth0", "10.232.0.1/24", c, "eth0", "10.232.0.2/24")
	s := loadStackIn(b, a.Path(), FeatureDropReasonSocket)
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatal(err)
	}
	defer stats.Close()
	var l net.Listener
	if err := a.Do(func() (err error) { l, err = net.Listen("tcp", "10.232.0.1:7200"); return err }); err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	done := make(chan int64, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			done <- 0
			return
		}
		defer conn.Close()
		n, _ := io.Copy(io.Discard, conn)
		done <- n
	}()
	var conn net.Conn
	if err := c.Do(func() (err error) { conn, err = net.Dial("tcp", "10.232.0.1:7200"); return err }); err != nil {
		b.Fatal(err)
	}
	before, err := s.objs.TcpProbeRst.Stats()
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1448) // about one segment per write
	b.ResetTimer()
	for range b.N {
		if _, err := conn.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	conn.Close()
	<-done
	b.StopTimer()
	after, err := s.objs.TcpProbeRst.Stats()
	if err != nil {
		b.Fatal(err)
	}
	runs := after.RunCount - before.RunCount
	if runs == 0 {
		b.Fatal("tcp_probe_rst never ran during the transfer")
	}
	b.ReportMetric(float64(after.Runtime-before.Runtime)/float64(runs), "ns/segment")
	b.ReportMetric(float64(runs)/float64(b.N), "segments/write")
}
