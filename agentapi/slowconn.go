package agentapi

import (
	"cmp"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/packetscope/packetscope/rule"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netns"
)

// Slow connections (slowloris and its kin): a client opens many
// connections to a service and keeps each one open by sending a request a
// few bytes at a time, never finishing it, until the service has no
// connection slot left. No packet of it is abnormal and there is no flood:
// what gives it away is the connections themselves. The agent lists the
// observed namespace's TCP sockets with their tcp_info (sock_diag) and
// calls an inbound established connection (its local port is one the node
// listens on) slow when it has been open for SlowConnConfig.MinAge (since
// its first listing, or since its last data when that is older), the
// node has sent nothing back on it (the request is still incomplete: a
// served request gets an answer) and its client has sent at most MaxBytes.
// A connection whose request the service has read (nothing left in its
// receive queue) and not answered is slow from MinAgeRead: the service is
// waiting for the client, which is what a slowloris's held slots look like
// a second in. One still in the accept queue, its request unread, waits
// for the service (an overloaded one, say): it keeps the longer MinAge.
// An idle keep-alive connection has been answered, so it is not slow; a
// browser's preconnected socket is, but one browser holds a handful, not
// dozens: the alert (alerts/) looks at the number one source holds.

// Slow-connection defaults.
const (
	DefaultSlowConnEvery      = time.Second
	DefaultSlowConnMinAge     = 3 * time.Second
	DefaultSlowConnMinAgeRead = time.Second
	DefaultSlowConnMaxBytes   = 8 << 10
	DefaultSlowConnIdle       = 30 * time.Second
	DefaultSlowConnTopK       = 10
)

// SlowConnConfig tunes a SlowConnTracker; zero fields take the defaults.
type SlowConnConfig struct {
	Every  time.Duration // how often the sockets are listed between scrapes (a scrape reads a listing at most scrapeMaxAge old)
	MinAge time.Duration // a connection younger than this is never slow...
	// MinAgeRead: ...unless the service has read its request (none of it
	// waits in the receive queue): then from this age.
	MinAgeRead time.Duration
	MaxBytes   uint64        // a connection whose client sent more than this is not slow
	Idle       time.Duration // an inbound connection with no data received for this long is idle
	TopK       int           // sources listed in a report
	Now        func() time.Time
}

// SlowConnReport is the agent's view of its inbound TCP connections: the
// evidence for a slow_connections alert (additive field of TrafficReport).
type SlowConnReport struct {
	At      time.Time `json:"at"`
	Inbound int       `json:"inbound"` // established connections to a port the node listens on
	Slow    int       `json:"slow"`    // of them: open a while, nothing answered, little received
	Idle    int       `json:"idle"`    // of them: nothing received for a while
	// HalfOpen are handshakes in progress on the node's listeners: SYNs
	// answered whose client has not completed (SYN_RECV request sockets,
	// the SYN queue's content; none kept while SYN cookies are sent).
	HalfOpen int `json:"half_open"`
	// SlowSources is how many sources hold slow connections (Sources lists the top ones).
	SlowSources int `json:"slow_sources"`
	// TopUnserved is the most slow connections a source holds that has no
	// connection being served: none answered, no large upload.
	TopUnserved int     `json:"top_unserved"`
	MinAgeS     float64 `json:"min_age_seconds"`
	MinAgeReadS float64 `json:"min_age_read_seconds"` // the age from which a read, unanswered request is slow
	MaxBytes    uint64  `json:"max_bytes"`
	// Sources are the sources holding the most slow connections, most first.
	Sources []SlowSource `json:"sources"`
}

// SlowSource is one client address and its inbound connections.
type SlowSource struct {
	Src    string `json:"src"`
	Slow   int    `json:"slow"`   // slow connections it holds
	Normal int    `json:"normal"` // its inbound established connections being served (answered, or a large upload)
	// DstPorts are the local ports of its slow connections, most held first.
	DstPorts []string `json:"dst_ports"`
	// Since is the earliest its slow connections can have opened: when the
	// first of them was first listed, less one listing interval. The
	// responder's baseline ends before it (the attack's own start is no
	// baseline).
	Since time.Time `json:"since"`
}

// Began is the earliest Since of the listed sources (zero: none listed).
func (r *SlowConnReport) Began() time.Time {
	var t time.Time
	if r == nil {
		return t
	}
	for _, s := range r.Sources {
		if t.IsZero() || s.Since.Before(t) {
			t = s.Since
		}
	}
	return t
}

// TopSource is the number of slow connections the busiest source holds.
func (r *SlowConnReport) TopSource() int {
	if r == nil || len(r.Sources) == 0 {
		return 0
	}
	return r.Sources[0].Slow
}

// tcpConn is one socket as sock_diag reports it, reduced to what the
// classification needs.
type tcpConn struct {
	cookie        uint64
	ifindex       uint32 // the socket's bound device, 0 for none
	state         uint8
	local, remote netip.AddrPort
	bytesReceived uint64
	bytesSent     uint64
	unread        uint32 // bytes received the service has not read (idiag_rqueue)
	lastDataRecv  time.Duration
}

// TCP states of include/net/tcp_states.h.
const (
	tcpEstablished = 1
	tcpSynRecv     = 3
	tcpListen      = 10
)

// SlowConnTracker lists TCP sockets every Every and keeps the latest
// report. It remembers when it first saw each connection: tcp_info has no
// connection age.
type SlowConnTracker struct {
	logger *slog.Logger
	cfg    SlowConnConfig
	list   func() ([]tcpConn, error)

	destroy func([]tcpConn) (closed int, err error)
	// acceptQueue lists the accept queues of the namespace's listeners,
	// afresh at each scrape (acceptqueue.go).
	acceptQueue func() (acceptQueues, error)

	mu        sync.Mutex
	firstSeen map[uint64]time.Time
	slowConns []tcpConn // the slow connections of the last listing
	last      SlowConnReport
	lastErr   error
	listed    time.Time
	errors    uint64
	closed    uint64
	aqErr     error // the last accept-queue listing's error, logged once
}

// NewSlowConnTracker returns a tracker over the TCP sockets of the network
// namespace ns (netns.None(): the caller's). ns must stay open while it is used.
func NewSlowConnTracker(logger *slog.Logger, ns netns.NsHandle, cfg SlowConnConfig) *SlowConnTracker {
	t := newSlowConnTracker(logger, cfg, sockDiagLister(ns))
	t.destroy = sockDestroyer(ns)
	t.acceptQueue = listenQueueLister(ns)
	return t
}

func newSlowConnTracker(logger *slog.Logger, cfg SlowConnConfig, list func() ([]tcpConn, error)) *SlowConnTracker {
	if cfg.Every <= 0 {
		cfg.Every = DefaultSlowConnEvery
	}
	if cfg.MinAge <= 0 {
		cfg.MinAge = DefaultSlowConnMinAge
	}
	if cfg.MinAgeRead <= 0 {
		cfg.MinAgeRead = min(DefaultSlowConnMinAgeRead, cfg.MinAge)
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultSlowConnMaxBytes
	}
	if cfg.Idle <= 0 {
		cfg.Idle = DefaultSlowConnIdle
	}
	if cfg.TopK <= 0 {
		cfg.TopK = DefaultSlowConnTopK
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &SlowConnTracker{logger: logger, cfg: cfg, list: list, firstSeen: map[uint64]time.Time{}}
}

// Run refreshes the report every Every until done is closed, so connection
// ages are known whether or not anyone scrapes.
func (t *SlowConnTracker) Run(done <-chan struct{}) {
	tick := time.NewTicker(t.cfg.Every)
	defer tick.Stop()
	for {
		t.Report()
		select {
		case <-tick.C:
		case <-done:
			return
		}
	}
}

// scrapeMaxAge is the oldest listing a scrape reports: the alert sees the
// sockets as they are, not as they were up to Every ago (a slowloris's
// count climbs by the hundred a second).
const scrapeMaxAge = 250 * time.Millisecond

// Report returns the latest report, listing the sockets first when the
// last listing is older than Every.
func (t *SlowConnTracker) Report() *SlowConnReport {
	return t.reportWithin(t.cfg.Every - t.cfg.Every/10)
}

// reportWithin returns the latest report, listing the sockets first when
// the last listing is maxAge old or older.
func (t *SlowConnTracker) reportWithin(maxAge time.Duration) *SlowConnReport {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.cfg.Now()
	if t.listed.IsZero() || now.Sub(t.listed) >= maxAge {
		conns, err := t.list()
		t.listed = now
		if err != nil {
			if t.lastErr == nil {
				t.logger.Warn("list tcp sockets for slow-connection detection failed", "err", err)
			}
			t.lastErr = err
			t.errors++
		} else {
			t.lastErr = nil
			t.last = t.classify(now, conns)
		}
	}
	r := t.last
	r.Sources = slices.Clone(r.Sources)
	return &r
}

// classify counts inbound connections and their slow ones per source.
// Called with t.mu held.
func (t *SlowConnTracker) classify(now time.Time, conns []tcpConn) SlowConnReport {
	listening := listeningPorts(conns)
	type srcAgg struct {
		slow, normal int
		ports        map[uint16]int
		since        time.Time // the first listing of its oldest slow connection
	}
	bySrc := map[netip.Addr]*srcAgg{}
	t.slowConns = t.slowConns[:0]
	seen := make(map[uint64]time.Time, len(conns))
	rep := SlowConnReport{At: now, MinAgeS: t.cfg.MinAge.Seconds(), MinAgeReadS: t.cfg.MinAgeRead.Seconds(), MaxBytes: t.cfg.MaxBytes}
	for _, c := range conns {
		if c.state == tcpSynRecv && listening[c.local.Port()] {
			rep.HalfOpen++
			continue
		}
		if c.state != tcpEstablished || !listening[c.local.Port()] {
			continue
		}
		first, ok := t.firstSeen[c.cookie]
		if !ok {
			// tcp_info has no connection age, but its last data came
			// after the connection opened (the kernel starts that clock
			// at the handshake): a connection first listed with its
			// request begun 2 s ago is at least 2 s old, not new.
			first = now.Add(-c.lastDataRecv)
		}
		seen[c.cookie] = first
		rep.Inbound++
		if c.lastDataRecv >= t.cfg.Idle {
			rep.Idle++
		}
		src := c.remote.Addr().Unmap()
		a := bySrc[src]
		if a == nil {
			a = &srcAgg{ports: map[uint16]int{}}
			bySrc[src] = a
		}
		if now.Sub(first) >= t.slowAge(c) && t.incomplete(c) {
			rep.Slow++
			t.slowConns = append(t.slowConns, c)
			a.slow++
			a.ports[c.local.Port()]++
			if a.since.IsZero() || first.Before(a.since) {
				a.since = first
			}
		} else if !t.incomplete(c) {
			// Answered (or a large upload): a client being served. A young
			// incomplete connection is neither: it may be a request in
			// flight or the attack's next one, not proof of a client.
			a.normal++
		}
	}
	t.firstSeen = seen // connections gone are forgotten
	type srcRow struct {
		addr netip.Addr
		agg  *srcAgg
	}
	var rows []srcRow
	for addr, a := range bySrc {
		if a.slow > 0 {
			rows = append(rows, srcRow{addr, a})
		}
	}
	slices.SortFunc(rows, func(x, y srcRow) int {
		return cmp.Or(cmp.Compare(y.agg.slow, x.agg.slow), x.addr.Compare(y.addr))
	})
	rep.SlowSources = len(rows)
	for _, r := range rows {
		if r.agg.normal == 0 {
			rep.TopUnserved = max(rep.TopUnserved, r.agg.slow)
		}
	}
	rep.Sources = []SlowSource{}
	for _, r := range rows[:min(len(rows), t.cfg.TopK)] {
		s := SlowSource{Src: r.addr.String(), Slow: r.agg.slow, Normal: r.agg.normal, Since: r.agg.since.Add(-t.cfg.Every)}
		ports := make([]uint16, 0, len(r.agg.ports))
		for p := range r.agg.ports {
			ports = append(ports, p)
		}
		slices.SortFunc(ports, func(x, y uint16) int {
			return cmp.Or(cmp.Compare(r.agg.ports[y], r.agg.ports[x]), cmp.Compare(x, y))
		})
		for _, p := range ports {
			s.DstPorts = append(s.DstPorts, strconv.Itoa(int(p)))
		}
		rep.Sources = append(rep.Sources, s)
	}
	return rep
}

// CloseHeldBy closes the slow connections a new drop rule cuts off (for
// NewAPI's OnRuleAdded): a rule that drops one source's TCP packets at XDP
// stops its slowloris from sending, but the connections it holds stay open,
// and keep the service's slots, until the service's own header timeout
// ends them. Only a drop rule (or a rate limit of new connections,
// tcp_flags "syn,!ack") whose source is one address is considered, and only
// inbound connections with an incomplete request (nothing answered, little
// received) that the rule matches are closed (sock_diag SOCK_DESTROY: the
// service sees the connection aborted and frees its slot). For a drop rule
// the sockets are listed afresh and a connection's age does not matter: the
// rule cuts all of them off, and a slowloris's youngest connections (not
// slow yet) hold slots as well; an alert that fires seconds into the attack
// would otherwise leave them to the service's timeout. A rate limit keeps
// the source's new connections, so only the last listing's slow ones go.
// It returns how many it closed.
func (t *SlowConnTracker) CloseHeldBy(r rule.Rule) int {
	if t.destroy == nil {
		return 0
	}
	match := r.Match
	switch {
	case r.Action == rule.ActionDrop:
	case r.Action == rule.ActionRateLimit && match.TCPFlags == "syn,!ack":
		// The responder's answer to a slow source that also has ordinary
		// connections: its new connections are limited, its slow ones
		// closed, its ordinary ones kept.
		match.TCPFlags = ""
	default:
		return 0
	}
	m, err := match.Compile()
	if err != nil || !m.Src.IsValid() || !m.Src.IsSingleIP() {
		return 0
	}
	conns := t.heldConns(r.Action == rule.ActionDrop)
	var cut []tcpConn
	for _, c := range conns {
		p := rule.Packet{Family: 4, Src: c.remote.Addr(), Dst: c.local.Addr(), Protocol: rule.ProtoTCP, HasL4: true,
			SrcPort: c.remote.Port(), DstPort: c.local.Port(), TCPFlags: rule.FlagACK}
		if p.Src.Is6() {
			p.Family = 6
		}
		if m.Matches(&p) {
			cut = append(cut, c)
		}
	}
	if len(cut) == 0 {
		return 0
	}
	closed, lastErr := t.destroy(cut)
	failed := len(cut) - closed
	if closed+failed > 0 {
		t.logger.Info("closed the slow connections a drop rule cuts off", "rule_id", r.ID, "src", m.Src, "closed", closed, "failed", failed, "err", lastErr)
	}
	t.mu.Lock()
	t.closed += uint64(closed)
	t.mu.Unlock()
	return closed
}

// listeningPorts returns the local ports the listing's listeners hold: an
// established connection on one of them is inbound.
func listeningPorts(conns []tcpConn) map[uint16]bool {
	listening := map[uint16]bool{}
	for _, c := range conns {
		if c.state == tcpListen {
			listening[c.local.Port()] = true
		}
	}
	return listening
}

// incomplete reports whether a connection holds an incomplete request: the
// node has answered nothing and the client sent at most MaxBytes. A slow
// connection is an incomplete one open for MinAge.
func (t *SlowConnTracker) incomplete(c tcpConn) bool {
	return c.bytesSent == 0 && c.bytesReceived <= t.cfg.MaxBytes
}

// slowAge is the age from which an incomplete connection is slow: MinAge,
// or MinAgeRead once the service has read what the client sent.
func (t *SlowConnTracker) slowAge(c tcpConn) time.Duration {
	if c.unread == 0 && c.bytesReceived > 0 {
		return t.cfg.MinAgeRead
	}
	return t.cfg.MinAge
}

// heldConns returns the connections CloseHeldBy may close: with anyAge, the
// inbound connections of a fresh listing that hold an incomplete request,
// however young; else the last listing's slow connections.
func (t *SlowConnTracker) heldConns(anyAge bool) []tcpConn {
	if anyAge {
		conns, err := t.list()
		if err == nil {
			listening := listeningPorts(conns)
			var held []tcpConn
			for _, c := range conns {
				if c.state == tcpEstablished && listening[c.local.Port()] && t.incomplete(c) {
					held = append(held, c)
				}
			}
			return held
		}
		t.logger.Warn("list tcp sockets to close a blocked source's connections failed: closing the last listing's slow ones", "err", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.slowConns)
}

// slowConnCollector exposes the tracker's counts: no addresses or ports as
// labels (those are in /api/v1/traffic's slow_connections).
type slowConnCollector struct {
	t                                  *SlowConnTracker
	inbound, slow, idle, halfOpen, top *prometheus.Desc
	topUnserved                        *prometheus.Desc
	sources, ok                        *prometheus.Desc
	closed, acceptQueue, acceptFull    *prometheus.Desc
}

// Collector returns a Prometheus collector for the tracker's report.
func (t *SlowConnTracker) Collector() prometheus.Collector {
	fq := func(name string) string { return prometheus.BuildFQName("packetscope", "tcp", name) }
	return &slowConnCollector{
		t:       t,
		inbound: prometheus.NewDesc(fq("inbound_connections"), "Established TCP connections to a port the node listens on.", nil, nil),
		slow: prometheus.NewDesc(fq("slow_connections"),
			"Inbound TCP connections open for a while on which the node has answered nothing and the client sent little (an incomplete request: slowloris).", nil, nil),
		idle: prometheus.NewDesc(fq("idle_connections"), "Inbound TCP connections that received no data for a while (idle keep-alive included).", nil, nil),
		halfOpen: prometheus.NewDesc(fq("half_open_connections"),
			"Inbound TCP handshakes in progress: SYNs the node answered whose client has not completed the handshake (SYN_RECV request sockets; none are kept while SYN cookies are sent).", nil, nil),
		top: prometheus.NewDesc(fq("slow_connections_top_source"), "Slow inbound TCP connections held by the single source holding the most.", nil, nil),
		topUnserved: prometheus.NewDesc(fq("slow_connections_top_unserved_source"),
			"Slow inbound TCP connections held by the single source holding the most among those the node serves on none of their connections (none answered, no large upload).", nil, nil),
		sources: prometheus.NewDesc(fq("slow_connection_sources"),
			"Sources holding slow inbound TCP connections.", nil, nil),
		closed: prometheus.NewDesc(fq("slow_connections_closed_total"),
			"Inbound TCP connections with an incomplete request (slow ones, and younger ones under a drop rule) the agent closed because a rule cut their source off.", nil, nil),
		ok: prometheus.NewDesc(fq("slow_connections_scrape_success"), "Whether the last listing of TCP sockets (sock_diag) succeeded.", nil, nil),
		acceptQueue: prometheus.NewDesc(fq("accept_queue_longest"),
			"Connections waiting to be accepted (handshake completed, not yet taken by the application) on the listener with the most, read at the scrape: the smaller of two reads 50 ms apart when any wait, so a burst the application drains at once does not count.", nil, nil),
		acceptFull: prometheus.NewDesc(fq("accept_queues_full"),
			"Listeners whose accept queue is full (as many connections waiting as their backlog allows) at the scrape, at both of its reads.", nil, nil),
	}
}

func (c *slowConnCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.inbound
	ch <- c.slow
	ch <- c.idle
	ch <- c.halfOpen
	ch <- c.top
	ch <- c.topUnserved
	ch <- c.sources
	ch <- c.ok
	ch <- c.closed
	ch <- c.acceptQueue
	ch <- c.acceptFull
}

func (c *slowConnCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.t.reportWithin(scrapeMaxAge)
	c.t.mu.Lock()
	ok := 1.0
	if c.t.lastErr != nil {
		ok = 0
	}
	closed := c.t.closed
	c.t.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.inbound, prometheus.GaugeValue, float64(r.Inbound))
	ch <- prometheus.MustNewConstMetric(c.slow, prometheus.GaugeValue, float64(r.Slow))
	ch <- prometheus.MustNewConstMetric(c.idle, prometheus.GaugeValue, float64(r.Idle))
	ch <- prometheus.MustNewConstMetric(c.halfOpen, prometheus.GaugeValue, float64(r.HalfOpen))
	ch <- prometheus.MustNewConstMetric(c.top, prometheus.GaugeValue, float64(r.TopSource()))
	ch <- prometheus.MustNewConstMetric(c.topUnserved, prometheus.GaugeValue, float64(r.TopUnserved))
	ch <- prometheus.MustNewConstMetric(c.sources, prometheus.GaugeValue, float64(r.SlowSources))
	ch <- prometheus.MustNewConstMetric(c.ok, prometheus.GaugeValue, ok)
	ch <- prometheus.MustNewConstMetric(c.closed, prometheus.CounterValue, float64(closed))
	if q, ok := c.t.acceptQueues(); ok {
		ch <- prometheus.MustNewConstMetric(c.acceptQueue, prometheus.GaugeValue, float64(q.Longest))
		ch <- prometheus.MustNewConstMetric(c.acceptFull, prometheus.GaugeValue, float64(q.Full))
	}
}

// acceptQueues lists the listeners' accept queues; on an error the gauges
// are left out of the scrape (an alert on them sees no data, not zero).
func (t *SlowConnTracker) acceptQueues() (acceptQueues, bool) {
	if t.acceptQueue == nil {
		return acceptQueues{}, false
	}
	q, err := t.acceptQueue()
	if err == nil && (q.Longest >= acceptQueueRecheckAt || q.Full > 0) {
		// A burst of clients connecting at once is drained within
		// microseconds per connection; what is still there a moment later
		// waits for the application.
		time.Sleep(acceptQueueSettle)
		var again acceptQueues
		again, err = t.acceptQueue()
		q = q.settled(again)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		if t.aqErr == nil {
			t.logger.Warn("list tcp listeners' accept queues failed", "err", err)
		}
		t.aqErr = err
		return acceptQueues{}, false
	}
	t.aqErr = nil
	return q, true
}
