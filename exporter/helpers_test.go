package exporter

import (
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/packetscope/packetscope/bpf"
	"github.com/packetscope/packetscope/internal/testnet"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Test hosts: "a" is the namespace the exporter observes, "b" its peer.
const (
	addrA  = "10.201.1.1"
	addrB  = "10.201.1.2"
	addr6A = "fd00:201:1::1"
	addr6B = "fd00:201:1::2"
)

type testbed struct {
	a, b *testnet.NS
	exp  *Exporter
	reg  *prometheus.Registry
}

// newTestbed links two fresh namespaces over a veth pair and starts an
// exporter observing the first, sampling every skb's latency with the stage
// boundaries always attached.
func newTestbed(t *testing.T) *testbed {
	t.Helper()
	requireKernel(t)
	a := testnet.NewNS(t, "ps-exp")
	b := testnet.NewNS(t, "ps-exp")
	testnet.Link(t, a, "eth0", addrA+"/24,"+addr6A+"/64", b, "eth0", addrB+"/24,"+addr6B+"/64")
	tb := &testbed{a: a, b: b}
	tb.exp = newExporter(t, a.Path())
	tb.reg = prometheus.NewPedanticRegistry()
	tb.reg.MustRegister(tb.exp)
	return tb
}

func requireKernel(t testing.TB) {
	t.Helper()
	testnet.RequireRoot(t)
	if err := bpf.EnsureFilesystems(); err != nil {
		t.Fatal(err)
	}
}

func newExporter(t *testing.T, netnsPath string) *Exporter {
	t.Helper()
	exp, err := New(nil, Config{Netns: openTestNetns(t, netnsPath), LatencySampleEvery: 1, StageWindow: time.Second, StagePeriod: time.Second})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := exp.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return exp
}

// value sums the series of a family whose labels include want; for a
// histogram it sums the observation counts.
func value(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabels(m, want) {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	got := make(map[string]string)
	for _, l := range m.GetLabel() {
		got[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// waitFor polls until cond holds, for effects the kernel applies in softirq
// context shortly after a send returns. It bounds a wait, not a speed.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s", what, detail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// atLeast waits until the metric has grown by at least delta from before.
func (tb *testbed) atLeast(t *testing.T, name string, labels map[string]string, before, delta float64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s%v", name, labels), func() (bool, string) {
		v := value(t, tb.reg, name, labels)
		return v-before >= delta, fmt.Sprintf("grew by %v, want at least %v", v-before, delta)
	})
}

// listenUDP opens a UDP socket inside ns.
func listenUDP(t *testing.T, ns *testnet.NS, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := ns.Do(func() error {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return err
		}
		c = pc.(*net.UDPConn)
		return nil
	})
	if err != nil {
		t.Fatalf("listen udp %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dial opens a connection from inside ns.
func dial(t *testing.T, ns *testnet.NS, network, addr string) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		c, err = net.DialTimeout(network, addr, 3*time.Second)
		return err
	})
	if c != nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func mustDial(t *testing.T, ns *testnet.NS, network, addr string) net.Conn {
	t.Helper()
	c, err := dial(t, ns, network, addr)
	if err != nil {
		t.Fatalf("dial %s %s from %s: %v", network, addr, ns.Name, err)
	}
	return c
}

func listenTCP(t *testing.T, ns *testnet.NS, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	err := ns.Do(func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen tcp %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func inCI() bool { return os.Getenv("CI") != "" }

func labels(kv ...string) map[string]string {
	m := make(map[string]string)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// stageList is the stages every TCP and UDP packet is timed through. The rx
// socket stage is asserted for TCP only: UDP frees most read skbs without a
// tracepoint, so it is observed for UDP only now and then.
func stageList(dir string) []string {
	if dir == "rx" {
		return []string{"backlog", "core", "ip"}
	}
	return []string{"ip", "neigh", "qdisc", "driver"}
}

func latencyCounts(t *testing.T, tb *testbed, dir string) map[string]float64 {
	out := make(map[string]float64)
	for _, st := range append(stageList(dir), "socket") {
		out[st] = value(t, tb.reg, "packetscope_stack_latency_seconds", labels("direction", dir, "stage", st))
	}
	return out
}

func (tb *testbed) latencyGrew(t *testing.T, dir string, before map[string]float64) {
	t.Helper()
	for _, st := range stageList(dir) {
		tb.atLeast(t, "packetscope_stack_latency_seconds", labels("direction", dir, "stage", st), before[st], 1)
	}
}

// openTestNetns opens the namespace at path for an Exporter under test and
// closes it when the test ends (after the Exporter's own cleanup).
func openTestNetns(tb testing.TB, path string) *bpf.Netns {
	tb.Helper()
	ns, err := bpf.OpenNetns(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ns.Close() })
	return ns
}
