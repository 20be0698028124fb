package guard

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/packetscope/packetscope/bpf"
	"github.com/packetscope/packetscope/rule"
)

// Label values of the guard's counters, by kernel index (guard.h).
var (
	verdictNames  = []string{"pass", "drop", "rate_limited", "monitor"}
	protocolNames = []string{"tcp", "udp", "icmp", "icmpv6", "other_ip", "non_ip", "fragment"}
	tcpFlagNames_ = []string{"syn", "synack", "ack", "rst", "fin", "other"}
)

var (
	descXDPPackets = prometheus.NewDesc("packetscope_xdp_packets_total",
		"Packets the XDP guard saw, by interface and what it did: pass, drop, rate_limited (dropped over a rate_limit rule's rate), monitor (would drop, passed).",
		[]string{"interface", "action"}, nil)
	descXDPProtocol = prometheus.NewDesc("packetscope_xdp_protocol_packets_total",
		"Packets the XDP guard saw, by interface and protocol (fragment = later fragments, non_ip = not IPv4/IPv6).",
		[]string{"interface", "protocol"}, nil)
	descXDPFlags = prometheus.NewDesc("packetscope_xdp_tcp_flags_packets_total",
		"TCP packets the XDP guard saw, by interface and flags: syn (without ack), synack, ack (alone), rst, fin, other.",
		[]string{"interface", "flags"}, nil)
	descSamplesLost = prometheus.NewDesc("packetscope_xdp_samples_lost_total",
		"Sampled headers the kernel could not queue because the ring buffer was full.",
		[]string{"interface"}, nil)
	descSamplesTaken = prometheus.NewDesc("packetscope_guard_samples_total",
		"Sampled headers the agent read from the ring buffer.", nil, nil)
	descSamplesDropped = prometheus.NewDesc("packetscope_guard_samples_dropped_total",
		"Sampled headers the agent dropped because the traffic window did not take them in time.", nil, nil)
	descRules = prometheus.NewDesc("packetscope_guard_rules",
		"Rules in the guard's table, by origin and action.", []string{"origin", "action"}, nil)
	descRulePackets = prometheus.NewDesc("packetscope_guard_rule_packets_total",
		"Packets that matched a rule (first match), by rule id.", []string{"rule"}, nil)
	descAdoptRejected = prometheus.NewDesc("packetscope_guard_adopt_rejected_total",
		"Pinned rule definitions the agent removed instead of adopting when it started, by reason: unreadable, invalid, expiry (impossible creation or expiry time), slot, duplicate_id, orphan_chunks (left past a definition by a crash).",
		[]string{"reason"}, nil)
	descRuleBytes = prometheus.NewDesc("packetscope_guard_rule_bytes_total",
		"Bytes of the frames that matched a rule (first match), by rule id.", []string{"rule"}, nil)
	// The exporter reports its collectors' scrape health in the same two
	// families with a variable "collector" label; these descs are the same
	// (name, help, label), and the guard's series carry collector="guard".
	// The registry refuses a second collector describing the same desc, and
	// one describing the family with a constant label instead (different
	// label dimensions), so the guard's collector describes nothing: it is
	// an unchecked collector (see Describe), checked at each Gather instead.
	descScrapeDuration = prometheus.NewDesc("packetscope_scrape_collector_duration_seconds",
		"Time a collector took to read its maps during this scrape.", []string{"collector"}, nil)
	descScrapeSuccess = prometheus.NewDesc("packetscope_scrape_collector_success",
		"Whether a collector succeeded during this scrape (1) or not (0).", []string{"collector"}, nil)
)

// Collector returns the guard's Prometheus collector: it reads the kernel
// counters once per scrape.
func (g *Guard) Collector() prometheus.Collector { return guardCollector{g} }

type guardCollector struct{ g *Guard }

// Describe sends nothing: the guard shares the scrape-health families with
// the exporter (see descScrapeDuration), so it registers as an unchecked
// collector. Gather still checks every family's help, type and labels.
func (c guardCollector) Describe(chan<- *prometheus.Desc) {}

func (c guardCollector) Collect(ch chan<- prometheus.Metric) {
	g := c.g
	start := time.Now()
	success := 1.0
	stats, err := g.ifaceStats()
	if err != nil {
		success = 0
		g.logger.Warn("collector failed", "collector", "guard", "err", err)
	}
	defer func() {
		ch <- prometheus.MustNewConstMetric(descScrapeDuration, prometheus.GaugeValue, time.Since(start).Seconds(), "guard")
		ch <- prometheus.MustNewConstMetric(descScrapeSuccess, prometheus.GaugeValue, success, "guard")
	}()
	for ifindex, name := range g.ifaces {
		s := stats[ifaceSlot(ifindex)] // zero when nothing was seen yet: series exist from the first scrape
		for i, v := range s.Actions {
			ch <- prometheus.MustNewConstMetric(descXDPPackets, prometheus.CounterValue, float64(v), name, verdictNames[i])
		}
		for i, v := range s.Protocols {
			ch <- prometheus.MustNewConstMetric(descXDPProtocol, prometheus.CounterValue, float64(v), name, protocolNames[i])
		}
		for i, v := range s.TcpFlags {
			ch <- prometheus.MustNewConstMetric(descXDPFlags, prometheus.CounterValue, float64(v), name, tcpFlagNames_[i])
		}
		ch <- prometheus.MustNewConstMetric(descSamplesLost, prometheus.CounterValue, float64(s.SamplesLost), name)
	}
	if g.sampler != nil {
		ch <- prometheus.MustNewConstMetric(descSamplesTaken, prometheus.CounterValue, float64(g.sampler.taken.Load()))
		ch <- prometheus.MustNewConstMetric(descSamplesDropped, prometheus.CounterValue, float64(g.sampler.dropped.Load()))
	}
	for reason, n := range g.table.AdoptRejected() {
		ch <- prometheus.MustNewConstMetric(descAdoptRejected, prometheus.CounterValue, float64(n), reason)
	}
	rules := g.table.List()
	type oa struct{ origin, action string }
	counts := map[oa]int{}
	for _, o := range []string{"manual", "builtin", "llm"} {
		for _, a := range []rule.Action{rule.ActionDrop, rule.ActionRateLimit, rule.ActionMonitor} {
			counts[oa{o, string(a)}] = 0
		}
	}
	for _, r := range rules {
		counts[oa{r.Origin, string(r.Action)}]++
		ch <- prometheus.MustNewConstMetric(descRulePackets, prometheus.CounterValue, float64(r.Packets), r.ID)
		ch <- prometheus.MustNewConstMetric(descRuleBytes, prometheus.CounterValue, float64(r.Bytes), r.ID)
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(descRules, prometheus.GaugeValue, float64(n), k.origin, k.action)
	}
}

// IfaceStats are the kernel's counters for one interface, summed over CPUs.
type IfaceStats = bpf.GuardIfaceStats

// ifaceStats sums the per-CPU interface counters, by counter slot.
func (g *Guard) ifaceStats() (map[uint32]IfaceStats, error) {
	return readIfaceStats(g.objs.Maps().IfaceStats)
}

// InterfaceStats returns the kernel counters of one guarded interface.
func (g *Guard) InterfaceStats(name string) IfaceStats {
	stats, _ := g.ifaceStats() // what could be read; the collector reports failures
	for ifindex, n := range g.ifaces {
		if n == name {
			return stats[ifaceSlot(ifindex)]
		}
	}
	return IfaceStats{}
}
