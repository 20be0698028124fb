package guard

import (
	"strings"
	"testing"

	"github.com/packetscope/packetscope/internal/testframe"
	"github.com/packetscope/packetscope/rule"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestOpenMissingInterface(t *testing.T) {
	_, err := Open(testLogger(t), Config{Interfaces: []string{"ps-grd-nope0"}, PinPath: testPinPath(t)})
	if err == nil || !strings.Contains(err.Error(), `"ps-grd-nope0" does not exist`) {
		t.Fatalf("Open with a missing interface: %v, want one clear sentence naming it", err)
	}
}

func TestCollector(t *testing.T) {
	g := openTestGuard(t, Config{NoSampling: true})
	mustAdd(t, g.Rules(), rule.Rule{ID: "syn-flood", Origin: "builtin", Match: rule.Match{TCPFlags: "syn,!ack"}})
	syn := testframe.Frame{Src: testframe.V4A, Dst: testframe.V4B, Proto: rule.ProtoTCP, TTL: 1, L4: testframe.TCP(1, 2, rule.FlagSYN, 0)}.Build()
	udp := testframe.Frame{Src: testframe.V4A, Dst: testframe.V4B, Proto: rule.ProtoUDP, TTL: 1, L4: testframe.UDP(1, 2, 0)}.Build()
	run(t, g.Program(), syn)
	run(t, g.Program(), syn)
	run(t, g.Program(), udp)
	// BPF_PROG_TEST_RUN runs on the namespace's loopback: name it as a guarded interface.
	stats, err := g.ifaceStats()
	if err != nil {
		t.Fatal(err)
	}
	for slot := range stats {
		g.ifaces[slot] = "lo"
	}
	if len(g.ifaces) != 1 {
		t.Fatalf("counters on %d interface slots, want 1", len(g.ifaces))
	}
	c := g.Collector()
	want := `
# HELP packetscope_guard_rule_packets_total Packets that matched a rule (first match), by rule id.
# TYPE packetscope_guard_rule_packets_total counter
packetscope_guard_rule_packets_total{rule="syn-flood"} 2
# HELP packetscope_xdp_packets_total Packets the XDP guard saw, by interface and what it did: pass, drop, rate_limited (dropped over a rate_limit rule's rate), monitor (would drop, passed).
# TYPE packetscope_xdp_packets_total counter
packetscope_xdp_packets_total{action="drop",interface="lo"} 2
packetscope_xdp_packets_total{action="monitor",interface="lo"} 0
packetscope_xdp_packets_total{action="pass",interface="lo"} 1
packetscope_xdp_packets_total{action="rate_limited",interface="lo"} 0
# HELP packetscope_xdp_tcp_flags_packets_total TCP packets the XDP guard saw, by interface and flags: syn (without ack), synack, ack (alone), rst, fin, other.
# TYPE packetscope_xdp_tcp_flags_packets_total counter
packetscope_xdp_tcp_flags_packets_total{flags="ack",interface="lo"} 0
packetscope_xdp_tcp_flags_packets_total{flags="fin",interface="lo"} 0
packetscope_xdp_tcp_flags_packets_total{flags="other",interface="lo"} 0
packetscope_xdp_tcp_flags_packets_total{flags="rst",interface="lo"} 0
packetscope_xdp_tcp_flags_packets_total{flags="syn",interface="lo"} 2
packetscope_xdp_tcp_flags_packets_total{flags="synack",interface="lo"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"packetscope_xdp_packets_total", "packetscope_xdp_tcp_flags_packets_total", "packetscope_guard_rule_packets_total"); err != nil {
		t.Error(err)
	}
	if err := testutil.CollectAndCompare(c, strings.NewReader(`
# HELP packetscope_scrape_collector_success Whether a collector succeeded during this scrape (1) or not (0).
# TYPE packetscope_scrape_collector_success gauge
packetscope_scrape_collector_success{collector="guard"} 1
`), "packetscope_scrape_collector_success"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(c, "packetscope_guard_rules"); n != 9 {
		t.Errorf("%d packetscope_guard_rules series, want 9 (origin x action, pre-created)", n)
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}
}

// scrapeHealthLike describes the scrape-health families the way the exporter
// does (a variable "collector" label): the guard's collector must register
// and gather beside it in one registry, as in the agent.
type scrapeHealthLike struct{}

func (scrapeHealthLike) Describe(ch chan<- *prometheus.Desc) {
	ch <- descScrapeDuration
	ch <- descScrapeSuccess
}
func (scrapeHealthLike) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descScrapeDuration, prometheus.GaugeValue, 0.001, "traffic")
	ch <- prometheus.MustNewConstMetric(descScrapeSuccess, prometheus.GaugeValue, 1, "traffic")
}

func TestCollectorBesideTheExportersScrapeHealth(t *testing.T) {
	g := openTestGuard(t, Config{NoSampling: true})
	for _, order := range [][]prometheus.Collector{{g.Collector(), scrapeHealthLike{}}, {scrapeHealthLike{}, g.Collector()}} {
		reg := prometheus.NewPedanticRegistry()
		for _, c := range order {
			if err := reg.Register(c); err != nil {
				t.Fatalf("register: %v", err)
			}
		}
		n, err := testutil.GatherAndCount(reg, "packetscope_scrape_collector_success")
		if err != nil || n != 2 {
			t.Fatalf("gather: %d series, %v; want 2 (guard and traffic)", n, err)
		}
	}
}
