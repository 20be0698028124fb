package exporter

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/packetscope/packetscope/bpf"
	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "packetscope"

var (
	packetsDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "packets_total"),
		"Packets seen by the network stack, per interface, direction and protocol (GSO/GRO aggregates count their segments).",
		[]string{"interface", "direction", "protocol"}, nil)
	bytesDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "bytes_total"),
		"Bytes seen by the network stack, per interface, direction and protocol.",
		[]string{"interface", "direction", "protocol"}, nil)
	dropsDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "drops_total"),
		"Packets the kernel dropped (skb:kfree_skb), by the kernel's drop reason name and protocol.",
		[]string{"reason", "protocol"}, nil)
	latencyDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "stack", "latency_seconds"),
		"Time sampled packets spend in each stage of the network stack (see the stage list in the README).",
		[]string{"direction", "stage"}, nil)
	tcpConnsDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "tcp", "connections"),
		"TCP sockets per state.",
		[]string{"state"}, nil)
	rttDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "tcp", "rtt_seconds"),
		"Smoothed TCP round-trip time, observed at every received segment (tcp:tcp_probe).",
		nil, nil)
	retransDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "tcp", "retransmits_total"),
		"TCP segments retransmitted.",
		nil, nil)
	resetsDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "tcp", "resets_total"),
		"TCP resets sent (tx) and received (rx).",
		[]string{"direction"}, nil)
	udpConnectedPacketsDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "udp", "connected_packets_total"),
		"UDP datagrams received for connected sockets: answers from the peer a socket of the node connected to (a QUIC or other UDP download), which the UDP flood alerts do not count.",
		nil, nil)
	udpConnectedBytesDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "udp", "connected_bytes_total"),
		"Bytes of the UDP datagrams received for connected sockets.",
		nil, nil)
	rejectedDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "tcp", "rejected_packets_total"),
		"Incoming TCP segments of no connection, by the XDP guard's flag classes: answered with a reset (tcp:tcp_send_reset with the offending segment) or dropped for nonsense flags (TCP_FLAGS). The TCP and ACK flood alerts weigh them against the guard's counts.",
		[]string{"flags"}, nil)
	passiveOpensDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "tcp", "passive_opens_total"),
		"TCP handshakes clients completed with this node's listeners (SYN_RECV to ESTABLISHED, SYN cookies included): the SYNs that were no flood.",
		nil, nil)
	lostDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "ebpf", "events_lost_total"),
		"Kernel events not recorded: a full counter map (map_full), a program that could not run because another was running on the CPU (recursion), while tracing, a full packet trace ring buffer (trace_ringbuf) or dropped/slow packets over the per-CPU trace budget (trace_rate), and the stack's reactions (closed-port probes, listen overflows) kept from the traffic window by a full ring buffer (reaction_ringbuf).",
		[]string{"cause"}, nil)
	progRunSecondsDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "ebpf", "program_run_seconds_total"),
		"Time spent running each eBPF program; counts only while kernel.bpf_stats_enabled=1.",
		[]string{"program"}, nil)
	progRunsDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "ebpf", "program_runs_total"),
		"Runs of each eBPF program; counts only while kernel.bpf_stats_enabled=1.",
		[]string{"program"}, nil)
	scrapeDurationDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "scrape", "collector_duration_seconds"),
		"Time a collector took to read its maps during this scrape.",
		[]string{"collector"}, nil)
	featureDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "feature_enabled"),
		"Whether the running kernel gives the agent this feature (1) or not (0); the log at start says what is missing without it and which Linux version brings it.",
		[]string{"feature"}, nil)
	scrapeSuccessDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "scrape", "collector_success"),
		"Whether a collector succeeded during this scrape (1) or not (0).",
		[]string{"collector"}, nil)
)

var directionLabels = map[uint8]string{bpf.DirectionRX: "rx", bpf.DirectionTX: "tx"}

var protocolLabels = map[uint8]string{
	bpf.ProtocolOther:  "other",
	bpf.ProtocolTCP:    "tcp",
	bpf.ProtocolUDP:    "udp",
	bpf.ProtocolICMP:   "icmp",
	bpf.ProtocolICMPv6: "icmpv6",
	bpf.ProtocolARP:    "arp",
}

// stageLabels gives each kernel stage index its direction and stage labels.
var stageLabels = [bpf.StageCount][2]string{
	bpf.StageRXBacklog: {"rx", "backlog"},
	bpf.StageRXCore:    {"rx", "core"},
	bpf.StageRXIP:      {"rx", "ip"},
	bpf.StageRXSocket:  {"rx", "socket"},
	bpf.StageTXIP:      {"tx", "ip"},
	bpf.StageTXNeigh:   {"tx", "neigh"},
	bpf.StageTXQdisc:   {"tx", "qdisc"},
	bpf.StageTXDriver:  {"tx", "driver"},
}

// Histogram bucket ranges exposed, as log2 bucket indexes (upper bound 2^i ns).
const (
	latencyFirstBucket = 8  // 256 ns
	latencyLastBucket  = 30 // ~1.07 s
	rttFirstBucket     = 10 // ~1 µs
	rttLastBucket      = 30
)

// collector is one part of a scrape, timed and reported on its own.
type collector struct {
	name    string
	collect func(e *Exporter, ch chan<- prometheus.Metric) error
}

var collectors = []collector{
	{"traffic", (*Exporter).collectTraffic},
	{"drops", (*Exporter).collectDrops},
	{"latency", (*Exporter).collectLatency},
	{"tcp", (*Exporter).collectTCP},
	{"programs", (*Exporter).collectPrograms},
	{"scan", (*Exporter).collectScan},
}

// Describe implements prometheus.Collector.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		packetsDesc, bytesDesc, dropsDesc, latencyDesc, tcpConnsDesc, rttDesc, retransDesc, resetsDesc, rejectedDesc, passiveOpensDesc, udpConnectedPacketsDesc, udpConnectedBytesDesc,
		lostDesc, progRunSecondsDesc, progRunsDesc, scrapeDurationDesc, scrapeSuccessDesc, featureDesc,
		closedProbesDesc, closedPortsDesc, listenQueueDesc, reactionsSkippedDesc, rstVerdictDesc,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: it reads every map once.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stack != nil {
		for _, f := range e.stack.Features() {
			v := 0.0
			if f.Enabled {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(featureDesc, prometheus.GaugeValue, v, f.Name)
		}
	}
	for _, c := range collectors {
		start := time.Now()
		success := 1.0
		if e.stack == nil {
			success = 0
		} else if err := c.collect(e, ch); err != nil {
			success = 0
			e.logger.Warn("collector failed", "collector", c.name, "err", err)
		}
		ch <- prometheus.MustNewConstMetric(scrapeDurationDesc, prometheus.GaugeValue, time.Since(start).Seconds(), c.name)
		ch <- prometheus.MustNewConstMetric(scrapeSuccessDesc, prometheus.GaugeValue, success, c.name)
	}
}

// ifname names an interface of the observed namespace, refreshing the
// cache when an index is new; a deleted interface keeps a bounded name.
func (e *Exporter) ifname(idx uint32, refreshed *bool) string {
	if name, ok := e.ifnames[idx]; ok {
		return name
	}
	if !*refreshed {
		*refreshed = true
		if names, err := interfaceNames(e.nl); err == nil {
			e.ifnames = names
		} else {
			e.logger.Warn("refresh interface names", "err", err)
		}
		if name, ok := e.ifnames[idx]; ok {
			return name
		}
	}
	return "ifindex_" + strconv.FormatUint(uint64(idx), 10)
}

func (e *Exporter) collectTraffic(ch chan<- prometheus.Metric) error {
	counts, err := e.stack.Traffic()
	if err != nil {
		return err
	}
	refreshed := false
	for _, c := range counts {
		labels := []string{e.ifname(c.Ifindex, &refreshed), directionLabels[c.Direction], protocolLabels[c.Protocol]}
		ch <- prometheus.MustNewConstMetric(packetsDesc, prometheus.CounterValue, float64(c.Packets), labels...)
		ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.CounterValue, float64(c.Bytes), labels...)
	}
	udp, err := e.stack.UDPConnected()
	if err != nil {
		return err
	}
	ch <- prometheus.MustNewConstMetric(udpConnectedPacketsDesc, prometheus.CounterValue, float64(udp.Packets))
	ch <- prometheus.MustNewConstMetric(udpConnectedBytesDesc, prometheus.CounterValue, float64(udp.Bytes))
	return nil
}

func (e *Exporter) collectDrops(ch chan<- prometheus.Metric) error {
	counts, err := e.stack.Drops()
	if err != nil {
		return err
	}
	seen := map[[2]string]bool{}
	for _, c := range counts {
		labels := [2]string{dropReasonName(e.reasons, c.Reason), protocolLabels[c.Protocol]}
		seen[labels] = true
		ch <- prometheus.MustNewConstMetric(dropsDesc, prometheus.CounterValue, float64(c.Drops), labels[0], labels[1])
	}
	// The series the flood alerts weigh as evidence exist from the first
	// scrape, at 0: a series born with the flood's first drops has one
	// sample at the next scrape, and irate needs two, which cost the UDP
	// flood alert's one-interval level a scrape interval.
	for _, labels := range alwaysExportedDrops {
		if !seen[labels] {
			ch <- prometheus.MustNewConstMetric(dropsDesc, prometheus.CounterValue, 0, labels[0], labels[1])
		}
	}
	return nil
}

// alwaysExportedDrops are the (reason, protocol) drop series the alerts use.
var alwaysExportedDrops = [][2]string{{"NO_SOCKET", "tcp"}, {"NO_SOCKET", "udp"}}

// constHistogram turns a log2 nanosecond histogram into cumulative buckets
// in seconds from 2^first to 2^last ns; smaller values fall in the first.
func constHistogram(h bpf.Histogram, first, last int) (count uint64, sum float64, buckets map[float64]uint64) {
	buckets = make(map[float64]uint64, last-first+1)
	var cum uint64
	for i, n := range h.Buckets {
		cum += n
		if i >= first && i <= last {
			buckets[math.Ldexp(1, i)/1e9] = cum
		}
	}
	return cum, float64(h.SumNs) / 1e9, buckets
}

func (e *Exporter) collectLatency(ch chan<- prometheus.Metric) error {
	hists, err := e.stack.Latency()
	if err != nil {
		return err
	}
	for st, h := range hists {
		count, sum, buckets := constHistogram(h, latencyFirstBucket, latencyLastBucket)
		m := prometheus.MustNewConstHistogram(latencyDesc, count, sum, buckets, stageLabels[st][0], stageLabels[st][1])
		if e.tracer != nil {
			m = withExemplars(m, e.tracer.exemplars(st))
		}
		ch <- m
	}
	return nil
}

func (e *Exporter) collectTCP(ch chan<- prometheus.Metric) error {
	delta, err := e.stack.TCPStateDelta()
	if err != nil {
		return err
	}
	for st, label := range tcpStateLabels {
		n := max(e.tcpBase[st]+delta[st], 0)
		ch <- prometheus.MustNewConstMetric(tcpConnsDesc, prometheus.GaugeValue, float64(n), label)
	}
	rtt, err := e.stack.RTT()
	if err != nil {
		return err
	}
	count, sum, buckets := constHistogram(rtt, rttFirstBucket, rttLastBucket)
	ch <- prometheus.MustNewConstHistogram(rttDesc, count, sum, buckets)
	ev, err := e.stack.TCPEvents()
	if err != nil {
		return err
	}
	ch <- prometheus.MustNewConstMetric(retransDesc, prometheus.CounterValue, float64(ev.Retransmits))
	ch <- prometheus.MustNewConstMetric(resetsDesc, prometheus.CounterValue, float64(ev.ResetsTX), "tx")
	ch <- prometheus.MustNewConstMetric(resetsDesc, prometheus.CounterValue, float64(ev.ResetsRX), "rx")
	ch <- prometheus.MustNewConstMetric(passiveOpensDesc, prometheus.CounterValue, float64(ev.PassiveOpens))
	rejected, err := e.stack.TCPRejected()
	if err != nil {
		return err
	}
	for i, n := range rejected {
		ch <- prometheus.MustNewConstMetric(rejectedDesc, prometheus.CounterValue, float64(n), bpf.TCPFlagClasses[i])
	}
	return nil
}

func (e *Exporter) collectPrograms(ch chan<- prometheus.Metric) error {
	lost, err := e.stack.LostMapFull()
	if err != nil {
		return err
	}
	var recursion uint64
	for name, p := range e.stack.Programs() {
		st, err := p.Stats()
		if err != nil {
			return fmt.Errorf("read stats of program %s: %w", name, err)
		}
		recursion += st.RecursionMisses
		ch <- prometheus.MustNewConstMetric(progRunSecondsDesc, prometheus.CounterValue, st.Runtime.Seconds(), name)
		ch <- prometheus.MustNewConstMetric(progRunsDesc, prometheus.CounterValue, float64(st.RunCount), name)
	}
	ch <- prometheus.MustNewConstMetric(lostDesc, prometheus.CounterValue, float64(lost), "map_full")
	ch <- prometheus.MustNewConstMetric(lostDesc, prometheus.CounterValue, float64(recursion), "recursion")
	if e.tracer != nil {
		full, rate, err := e.stack.LostTraces()
		if err != nil {
			return err
		}
		ch <- prometheus.MustNewConstMetric(lostDesc, prometheus.CounterValue, float64(full), "trace_ringbuf")
		ch <- prometheus.MustNewConstMetric(lostDesc, prometheus.CounterValue, float64(rate), "trace_rate")
	}
	return nil
}

// withExemplars attaches each bucket's last traced packet (exemplar label
// trace_id) to a latency histogram.
func withExemplars(m prometheus.Metric, ex []exemplar) prometheus.Metric {
	if len(ex) == 0 {
		return m
	}
	pe := make([]prometheus.Exemplar, 0, len(ex))
	for _, x := range ex {
		pe = append(pe, prometheus.Exemplar{Value: x.seconds, Labels: prometheus.Labels{"trace_id": x.traceID}, Timestamp: x.at})
	}
	mm, err := prometheus.NewMetricWithExemplars(m, pe...)
	if err != nil {
		return m
	}
	return mm
}
