package exporter

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/packetscope/packetscope/bpf"
	"github.com/prometheus/client_golang/prometheus"
)

// ClosedPortWindow is the window of packetscope_closed_ports_probed: the
// distinct closed ports probed in the last ClosedPortWindow, read from the
// kernel's port bitmaps every closedPortTick. A scan probes hundreds of
// ports in it; a client retrying one closed port, or a closed connection's
// late datagrams, probe a handful.
const (
	ClosedPortWindow = 10 * time.Second
	closedPortTick   = time.Second
)

var (
	closedProbesDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "closed_port_probes_total"),
		"Probes of closed ports: TCP SYNs (without ACK) and UDP datagrams the kernel dropped because no socket wanted them (drop reason NO_SOCKET; the node answered with a RST or an ICMP port unreachable).",
		[]string{"protocol"}, nil)
	closedPortsDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "closed_ports_probed"),
		"Distinct closed ports probed in the last 10 s (exact: one bit per port in the kernel), over all sources.",
		[]string{"protocol"}, nil)
	reactionsSkippedDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "reaction_samples_skipped_total"),
		"The stack's reactions (closed-port probes, listen overflows) not sampled into the traffic window because the per-CPU budget of the second was spent: by design, the counters above count every one.",
		nil, nil)
	rstVerdictDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "tcp", "rst_verdicts_total"),
		"RSTs received on connections, by the stack's verdict: accepted (exactly in sequence: the connection was reset; not counted in SYN-SENT, where a RST refuses the connection), challenged (in the receive window but not exact: dropped and answered with a challenge ACK, RFC 5961) and out_of_window (dropped by the sequence check). Spoofed RSTs guessing a connection's sequence numbers are mostly out_of_window and challenged.",
		[]string{"verdict"}, nil)
	listenQueueDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "tcp", "listen_queue_events_total"),
		"Listening sockets' queue events (the kernel's TcpExt counters of the observed namespace): accept-queue overflows (listen_overflow), SYNs and ACKs a listener dropped (listen_drop), SYNs met by a full SYN queue answered with a cookie (syn_queue_full_cookie) or dropped (syn_queue_full_drop), SYN cookies sent, received valid, and failed (syncookie_sent, syncookie_recv, syncookie_failed).",
		[]string{"event"}, nil)
)

var probeLabels = [bpf.ProbeProtocols]string{bpf.ProbeTCP: "tcp", bpf.ProbeUDP: "udp"}

var rstVerdictLabels = [bpf.RSTVerdictsLen]string{bpf.RSTAccepted: "accepted", bpf.RSTChallenged: "challenged", bpf.RSTOutOfWindow: "out_of_window"}

// listenQueueCounters maps /proc/net/netstat's TcpExt fields to the event
// label of packetscope_tcp_listen_queue_events_total. The kernel has no
// tracepoint for a full SYN queue: the SYN is consumed (not dropped) whether
// a cookie answers it or not, and a cookie SYN-ACK looks like any other, so
// the kernel's own counters are the signal (node_exporter reads the same).
var listenQueueCounters = map[string]string{
	"ListenOverflows":      "listen_overflow",
	"ListenDrops":          "listen_drop",
	"TCPReqQFullDoCookies": "syn_queue_full_cookie",
	"TCPReqQFullDrop":      "syn_queue_full_drop",
	"SyncookiesSent":       "syncookie_sent",
	"SyncookiesRecv":       "syncookie_recv",
	"SyncookiesFailed":     "syncookie_failed",
}

// closedPorts keeps the kernel's closed-port bitmaps of the last
// ClosedPortWindow, one set per tick.
type closedPorts struct {
	mu   sync.Mutex
	sets [][bpf.ProbeProtocols]bpf.PortSet // newest last
	at   []time.Time
}

// take moves the kernel's bitmaps into the window.
func (c *closedPorts) take(s *bpf.Stack, now time.Time) error {
	set, err := s.TakeClosedPorts()
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sets = append(c.sets, set)
	c.at = append(c.at, now)
	for len(c.at) > 0 && now.Sub(c.at[0]) >= ClosedPortWindow {
		c.sets, c.at = c.sets[1:], c.at[1:]
	}
	return nil
}

// distinct counts the distinct ports per protocol in the window.
func (c *closedPorts) distinct() [bpf.ProbeProtocols]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out [bpf.ProbeProtocols]int
	for p := range out {
		var u bpf.PortSet
		for i := range c.sets {
			u.Add(&c.sets[i][p])
		}
		out[p] = u.Len()
	}
	return out
}

// runClosedPorts reads the closed-port bitmaps every closedPortTick.
func (e *Exporter) runClosedPorts(ctx context.Context) {
	t := time.NewTicker(closedPortTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			e.mu.Lock()
			var err error
			if e.stack != nil {
				err = e.closed.take(e.stack, now)
			}
			e.mu.Unlock()
			if err != nil {
				e.logger.Warn("read closed ports", "err", err)
			}
		}
	}
}

func (e *Exporter) collectScan(ch chan<- prometheus.Metric) error {
	probes, err := e.stack.ClosedProbes()
	if err != nil {
		return err
	}
	// The bitmaps set since the last tick go into the window now, so the
	// scrape sees a scan's ports at once, not up to a tick later: the port
	// scan alert's second.
	if err := e.closed.take(e.stack, time.Now()); err != nil {
		return err
	}
	distinct := e.closed.distinct()
	for p, label := range probeLabels {
		ch <- prometheus.MustNewConstMetric(closedProbesDesc, prometheus.CounterValue, float64(probes[p]), label)
		ch <- prometheus.MustNewConstMetric(closedPortsDesc, prometheus.GaugeValue, float64(distinct[p]), label)
	}
	rsts, err := e.stack.RSTVerdicts()
	if err != nil {
		return err
	}
	for v, label := range rstVerdictLabels {
		ch <- prometheus.MustNewConstMetric(rstVerdictDesc, prometheus.CounterValue, float64(rsts[v]), label)
	}
	full, rate, err := e.stack.LostReactions()
	if err != nil {
		return err
	}
	ch <- prometheus.MustNewConstMetric(lostDesc, prometheus.CounterValue, float64(full), "reaction_ringbuf")
	ch <- prometheus.MustNewConstMetric(reactionsSkippedDesc, prometheus.CounterValue, float64(rate))
	var netstat []byte
	if err := e.ns.Do(func() (err error) {
		netstat, err = os.ReadFile("/proc/thread-self/net/netstat")
		return err
	}); err != nil {
		return fmt.Errorf("read /proc/net/netstat: %w", err)
	}
	ev, err := parseTcpExt(netstat)
	if err != nil {
		return fmt.Errorf("parse /proc/net/netstat: %w", err)
	}
	for field, label := range listenQueueCounters {
		ch <- prometheus.MustNewConstMetric(listenQueueDesc, prometheus.CounterValue, float64(ev[field]), label)
	}
	return nil
}

// parseTcpExt reads the TcpExt counters of /proc/net/netstat: a line of
// names and a line of values, both prefixed "TcpExt:".
func parseTcpExt(data []byte) (map[string]uint64, error) {
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "TcpExt:" {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		if len(f)-1 != len(names) {
			return nil, fmt.Errorf("TcpExt: %d names, %d values", len(names), len(f)-1)
		}
		out := make(map[string]uint64, len(names))
		for i, n := range names {
			v, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("TcpExt %s: %w", n, err)
			}
			out[n] = v
		}
		return out, nil
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, errors.New("no TcpExt counters")
}

// Reaction is a packet the stack answered by dropping it (see
// bpf.Reaction), with its interface's name and the drop reason's.
type Reaction struct {
	bpf.Reaction
	Interface  string
	ReasonName string // e.g. NO_SOCKET, TCP_LISTEN_OVERFLOW, TCP_RESET
	Time       time.Time
}

// Reactions calls fn with each reaction the kernel reports until ctx ends.
// The kernel emits at most bpf.DefaultReactionBudget per CPU and second.
// A record's time is when the agent read it (at most ~100 ms late).
func (e *Exporter) Reactions(ctx context.Context, fn func(Reaction)) error {
	e.mu.Lock()
	if e.stack == nil {
		e.mu.Unlock()
		return errors.New("exporter closed")
	}
	rd, err := e.stack.ReactionReader()
	e.mu.Unlock()
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { rd.Close() })
	defer stop()
	defer rd.Close()
	for {
		r, err := rd.Read()
		if err != nil {
			if errors.Is(err, bpf.ErrReactionsClosed) {
				return nil
			}
			return err
		}
		fn(Reaction{Reaction: r, Interface: e.traceIfname(r.Ifindex), ReasonName: dropReasonName(e.reasons, r.Reason), Time: time.Now()})
	}
}
