package exporter

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/packetscope/packetscope/bpf"
	"github.com/packetscope/packetscope/internal/testnet"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

func TestCollectAndLint(t *testing.T) {
	tb := newTestbed(t)
	tb.b.MustRun("ping", "-c", "3", "-i", "0.01", addrA)
	problems, err := testutil.CollectAndLint(tb.exp)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// TestFeatureEnabled: one packetscope_feature_enabled sample per kernel
// feature the stack reports, 1 exactly where the kernel has it (the probes
// themselves are checked against kernel versions in bpf).
func TestFeatureEnabled(t *testing.T) {
	requireKernel(t)
	exp := newExporter(t, testnet.NewNS(t, "ps-exp").Path())
	want := "# HELP packetscope_feature_enabled " + `Whether the running kernel gives the agent this feature (1) or not (0); the log at start says what is missing without it and which Linux version brings it.
# TYPE packetscope_feature_enabled gauge
`
	features := exp.stack.Features()
	if len(features) == 0 {
		t.Fatal("the stack reports no features")
	}
	sort.Slice(features, func(i, j int) bool { return features[i].Name < features[j].Name })
	for _, f := range features {
		v := 0
		if f.Enabled {
			v = 1
		}
		want += fmt.Sprintf("packetscope_feature_enabled{feature=%q} %d\n", f.Name, v)
	}
	if err := testutil.CollectAndCompare(exp, strings.NewReader(want), "packetscope_feature_enabled"); err != nil {
		t.Error(err)
	}
}

// TestCollectAndCompare checks the families whose values a fresh, idle
// namespace fixes exactly, including a listener that existed before the
// exporter started (seeded from /proc) and one opened after (followed).
func TestCollectAndCompare(t *testing.T) {
	requireKernel(t)
	ns := testnet.NewNS(t, "ps-exp")
	first := listenTCP(t, ns, "127.0.0.1:7001")
	exp := newExporter(t, ns.Path())

	const head = `
# HELP packetscope_tcp_connections TCP sockets per state.
# TYPE packetscope_tcp_connections gauge
`
	want := func(listen int) string {
		return head + `packetscope_tcp_connections{state="close_wait"} 0
packetscope_tcp_connections{state="closing"} 0
packetscope_tcp_connections{state="established"} 0
packetscope_tcp_connections{state="fin_wait1"} 0
packetscope_tcp_connections{state="fin_wait2"} 0
packetscope_tcp_connections{state="last_ack"} 0
packetscope_tcp_connections{state="listen"} ` + strconv.Itoa(listen) + `
packetscope_tcp_connections{state="syn_recv"} 0
packetscope_tcp_connections{state="syn_sent"} 0
# HELP packetscope_tcp_retransmits_total TCP segments retransmitted.
# TYPE packetscope_tcp_retransmits_total counter
packetscope_tcp_retransmits_total 0
# HELP packetscope_tcp_resets_total TCP resets sent (tx) and received (rx).
# TYPE packetscope_tcp_resets_total counter
packetscope_tcp_resets_total{direction="rx"} 0
packetscope_tcp_resets_total{direction="tx"} 0
# HELP packetscope_ebpf_events_lost_total Kernel events not recorded: a full counter map (map_full), a program that could not run because another was running on the CPU (recursion), while tracing, a full packet trace ring buffer (trace_ringbuf) or dropped/slow packets over the per-CPU trace budget (trace_rate), and the stack's reactions (closed-port probes, listen overflows) kept from the traffic window by a full ring buffer (reaction_ringbuf).
# TYPE packetscope_ebpf_events_lost_total counter
packetscope_ebpf_events_lost_total{cause="map_full"} 0
packetscope_ebpf_events_lost_total{cause="reaction_ringbuf"} 0
# HELP packetscope_closed_port_probes_total Probes of closed ports: TCP SYNs (without ACK) and UDP datagrams the kernel dropped because no socket wanted them (drop reason NO_SOCKET; the node answered with a RST or an ICMP port unreachable).
# TYPE packetscope_closed_port_probes_total counter
packetscope_closed_port_probes_total{protocol="tcp"} 0
packetscope_closed_port_probes_total{protocol="udp"} 0
# HELP packetscope_closed_ports_probed Distinct closed ports probed in the last 10 s (exact: one bit per port in the kernel), over all sources.
# TYPE packetscope_closed_ports_probed gauge
packetscope_closed_ports_probed{protocol="tcp"} 0
packetscope_closed_ports_probed{protocol="udp"} 0
`
	}
	names := []string{"packetscope_tcp_connections", "packetscope_tcp_retransmits_total",
		"packetscope_tcp_resets_total", "packetscope_ebpf_events_lost_total",
		"packetscope_closed_port_probes_total", "packetscope_closed_ports_probed"}
	// recursion misses depend on what else runs on the machine: leave them out.
	compare := func(listen int) {
		t.Helper()
		if err := testutil.CollectAndCompare(filterCollector{exp, `cause="recursion"`}, strings.NewReader(want(listen)), names...); err != nil {
			t.Error(err)
		}
	}
	compare(1)
	second := listenTCP(t, ns, "127.0.0.1:7002")
	compare(2)
	first.Close()
	second.Close()
	compare(0)
}

// filterCollector drops the metrics whose text form contains skip.
type filterCollector struct {
	prometheus.Collector
	skip string
}

func (f filterCollector) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric)
	go func() {
		f.Collector.Collect(all)
		close(all)
	}()
	for m := range all {
		if !strings.Contains(m.Desc().String(), "events_lost") || !strings.Contains(metricText(m), f.skip) {
			ch <- m
		}
	}
}

func metricText(m prometheus.Metric) string {
	var out strings.Builder
	var pb dto.Metric
	_ = m.Write(&pb)
	for _, l := range pb.GetLabel() {
		out.WriteString(l.GetName() + `="` + l.GetValue() + `"`)
	}
	return out.String()
}

// TestPromtoolCheckMetrics runs Prometheus's own linter on a live scrape.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install Debian's prometheus package (apt-get install -y prometheus)")
	}
	tb := newTestbed(t)
	tb.b.MustRun("ping", "-c", "3", "-i", "0.01", addrA)
	mfs, err := tb.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(buf.Bytes())
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestDropReasonsMatchKernel compares the names read from BTF with the
// kernel's own rendering of the kfree_skb tracepoint's reason field.
func TestDropReasonsMatchKernel(t *testing.T) {
	requireKernel(t)
	reasons, err := DropReasons()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"NOT_SPECIFIED", "NO_SOCKET", "NETFILTER_DROP", "SOCKET_RCVBUFF"} {
		found := false
		for _, n := range reasons {
			found = found || n == name
		}
		if !found {
			t.Errorf("drop reason %s missing", name)
		}
	}
	format := readTraceFormat(t, "skb/kfree_skb")
	pairs := regexp.MustCompile(`\{ (\d+), "([A-Z0-9_]+)" \}`).FindAllStringSubmatch(format, -1)
	if len(pairs) < 10 {
		t.Fatalf("kfree_skb format lists %d reasons, expected the symbolic table", len(pairs))
	}
	for _, p := range pairs {
		if p[2] == "MAX" { // a bound, not a reason
			continue
		}
		v, _ := strconv.ParseUint(p[1], 10, 32)
		if got := reasons[uint32(v)]; got != p[2] {
			t.Errorf("reason %d: BTF says %q, the tracepoint format says %q", v, got, p[2])
		}
	}
}

func readTraceFormat(t *testing.T, event string) string {
	t.Helper()
	for _, dir := range []string{bpf.TraceFSPath, "/sys/kernel/debug/tracing"} {
		data, err := os.ReadFile(dir + "/events/" + event + "/format")
		if err == nil {
			return string(data)
		}
	}
	t.Fatalf("cannot read the %s tracepoint format from tracefs", event)
	return ""
}

// TestCloseLeavesNothing checks that every program is gone after Close.
func TestCloseLeavesNothing(t *testing.T) {
	requireKernel(t)
	ns := testnet.NewNS(t, "ps-exp")
	exp, err := New(nil, Config{Netns: openTestNetns(t, ns.Path())})
	if err != nil {
		t.Fatal(err)
	}
	var ids []ebpf.ProgramID
	for name, p := range exp.stack.Programs() {
		info, err := p.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, ok := info.ID()
		if !ok {
			t.Fatalf("no id for program %s", name)
		}
		ids = append(ids, id)
	}
	if err := exp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := exp.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// The kernel frees detached programs after an RCU grace period.
	waitFor(t, "programs unloaded after Close", func() (bool, string) {
		for _, id := range ids {
			p, err := ebpf.NewProgramFromID(id)
			if err == nil {
				p.Close()
				return false, fmt.Sprintf("program %d still loaded", id)
			}
			if !errors.Is(err, os.ErrNotExist) {
				return false, fmt.Sprintf("program %d: %v", id, err)
			}
		}
		return true, ""
	})
	// A closed exporter reports failure instead of panicking.
	reg := prometheus.NewRegistry()
	reg.MustRegister(exp)
	if v := value(t, reg, "packetscope_scrape_collector_success", labels("collector", "traffic")); v != 0 {
		t.Errorf("success after Close = %v, want 0", v)
	}
}

func TestNewBadNetns(t *testing.T) {
	requireKernel(t)
	_, err := bpf.OpenNetns("/var/run/netns/ps-exp-does-not-exist")
	if err == nil || !strings.Contains(err.Error(), "ps-exp-does-not-exist") || !strings.Contains(err.Error(), "--netns") {
		t.Fatalf("OpenNetns with a missing namespace: %v, want an error naming it and the flag", err)
	}
	if _, err := New(nil, Config{}); err == nil {
		t.Fatal("New without a namespace: no error")
	}
}

func TestConstHistogram(t *testing.T) {
	var h bpf.Histogram
	h.Buckets[0] = 1  // <= 1 ns
	h.Buckets[8] = 2  // (128, 256] ns
	h.Buckets[10] = 3 // (512, 1024] ns
	h.Buckets[31] = 4 // > 2^30 ns
	h.SumNs = 5e9
	count, sum, buckets := constHistogram(h, 8, 30)
	if count != 10 || sum != 5 {
		t.Errorf("count, sum = %d, %v; want 10, 5", count, sum)
	}
	for le, want := range map[float64]uint64{256e-9: 3, 512e-9: 3, 1024e-9: 6, 1073741824e-9: 6} {
		if buckets[le] != want {
			t.Errorf("bucket le=%g: %d, want %d", le, buckets[le], want)
		}
	}
	if len(buckets) != 23 {
		t.Errorf("%d buckets, want 23", len(buckets))
	}
}

func TestCountTCPStates(t *testing.T) {
	const table = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1B59 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1B59 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1B59 0100007F:9C41 03 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:1B59 0100007F:9C42 06 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
`
	var got [16]int64
	if err := countTCPStates([]byte(table), &got); err != nil {
		t.Fatal(err)
	}
	var want [16]int64
	want[10], want[1], want[6] = 1, 1, 1 // SYN_RECV rows are request sockets: skipped
	if got != want {
		t.Errorf("got %v, want %v", got, want)
	}
}
