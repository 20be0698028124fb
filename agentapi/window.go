package agentapi

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/packetscope/packetscope/rule"
)

// TrafficReport is what GET /api/v1/traffic returns: the evidence an analyst
// (or a person) needs to write a fingerprint rule for recent traffic.
type TrafficReport struct {
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	SampleEvery uint32    `json:"sample_every"` // 1-in-N sampling rate in force
	Totals      Totals    `json:"totals"`
	// Top holds, per match field (TopFields), the most frequent values among
	// the sampled packets in [From, To], highest count first. Values are
	// written in the rule JSON's syntax so they can be pasted into a rule.
	Top map[string][]ValueCount `json:"top"`
	// Samples are the newest sampled headers in [From, To], oldest first.
	Samples []rule.Sample `json:"samples"`
	// Reactions are the stack's answers to packets in [From, To], oldest
	// first: received packets the kernel dropped because nobody asked for
	// them (reaction NO_SOCKET: a closed port, answered by a RST or an ICMP
	// port unreachable; TCP_LISTEN_OVERFLOW: a full accept queue). Sampled
	// apart from Samples (every such drop, up to a per-CPU budget per
	// second), so they count in neither Totals nor Top.
	Reactions []rule.Sample `json:"reactions,omitempty"`
	// Protected are the node's own addresses and default gateways (CIDRs):
	// a rule must never block them.
	Protected []string `json:"protected"`
	// SlowConnections are the node's inbound TCP connections now (not over
	// [From, To]: a connection's state is current), with the sources holding
	// the most slow ones; absent when the agent does not track them.
	SlowConnections *SlowConnReport `json:"slow_connections,omitempty"`
	// UDPPeers are the peers of the node's connected UDP sockets now: what
	// they send is an answer the node asked for (UDPPeer); absent when the
	// agent does not list them.
	UDPPeers []UDPPeer `json:"udp_peers,omitempty"`
}

// Totals counts the sampled packets in a report's window and estimates the
// real traffic from the sampling rate.
type Totals struct {
	SampledPackets   uint64 `json:"sampled_packets"`
	SampledBytes     uint64 `json:"sampled_bytes"` // sum of IP lengths
	EstimatedPackets uint64 `json:"estimated_packets"`
	EstimatedBytes   uint64 `json:"estimated_bytes"`
}

// ValueCount is one value of a match field and how many sampled packets had it.
type ValueCount struct {
	Value string `json:"value"`
	Count uint64 `json:"count"`
}

// TopFields are the keys of TrafficReport.Top: the rule's match fields, plus
// src_prefix (sources aggregated to /24 for IPv4 and /48 for IPv6, which is
// how a spread-out source shows up).
var TopFields = []string{
	"src", "src_prefix", "dst", "protocol", "src_port", "dst_port",
	"tcp_flags", "ttl", "length", "tcp_window", "icmp_type", "fragment",
}

// Window defaults and limits.
const (
	DefaultWindowMaxSamples = 200_000
	DefaultWindowMaxAge     = 10 * time.Minute
	DefaultTopK             = 10
	// DefaultWindowMaxReactions bounds the reactions kept (rule.Sample with
	// Reaction set): the kernel emits at most a few hundred per CPU and
	// second, so this holds minutes of a full-speed scan.
	DefaultWindowMaxReactions = 50_000
	MaxTopK                   = 100
)

// WindowConfig bounds a TrafficWindow.
type WindowConfig struct {
	MaxSamples  int           // ring capacity; the oldest sample is overwritten beyond it
	MaxAge      time.Duration // samples older than this are dropped
	TopK        int           // values kept per field in a report
	SampleEvery uint32        // the sampler's 1-in-N rate, reported and used for estimates
	// Protected returns the node's never-block CIDRs for each report (for
	// example from NodeAddresses). Nil means none are known.
	Protected func() []netip.Prefix
	// SlowConnections returns the current slow-connection report for each
	// traffic report (a SlowConnTracker's Report); nil: not tracked.
	SlowConnections func() *SlowConnReport
	// UDPPeers lists the connected UDP sockets' peers for each traffic
	// report (UDPPeersOf); nil: not listed. An error leaves the list out.
	UDPPeers func() ([]UDPPeer, error)
	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
}

// WindowStats describes what the window holds and has thrown away.
type WindowStats struct {
	Samples      int    // held now
	Added        uint64 // ever added
	EvictedCount uint64 // overwritten because the ring was full
	EvictedAge   uint64 // dropped because they were older than MaxAge
}

// TrafficWindow keeps the most recent sampled packet headers in bounded
// memory: at most MaxSamples of them, none older than MaxAge. Add is O(1) and
// allocation-free once the ring has grown, so a flood's sampler can feed it
// directly; the per-field counts are computed only when a report is asked for.
type TrafficWindow struct {
	mu    sync.Mutex
	cfg   WindowConfig
	ring  chunkedRing // grows up to cfg.MaxSamples, then wraps
	head  int         // index of the oldest sample
	n     int         // samples held
	every uint32
	stats WindowStats
	names names // the samples' interface names and reactions
	// epoch is the window's time zero: a sample keeps its time as the
	// nanoseconds since (t.Sub, so by the monotonic clock when both times
	// carry its reading, as the sampler's and the clock's do: a step of the
	// wall clock neither ages the window at once nor keeps it forever).
	epoch time.Time

	reactions     []packedSample // a ring of at most DefaultWindowMaxReactions
	reactionsHead int            // index of the oldest once full
}

// NewTrafficWindow returns an empty window; zero config fields take defaults.
func NewTrafficWindow(cfg WindowConfig) *TrafficWindow {
	if cfg.MaxSamples <= 0 {
		cfg.MaxSamples = DefaultWindowMaxSamples
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultWindowMaxAge
	}
	if cfg.TopK <= 0 {
		cfg.TopK = DefaultTopK
	}
	cfg.TopK = min(cfg.TopK, MaxTopK)
	if cfg.SampleEvery == 0 {
		cfg.SampleEvery = 1
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	// The ring grows on demand (to at most MaxSamples) rather than being
	// allocated up front, so a large bound costs nothing on a quiet node.
	return &TrafficWindow{cfg: cfg, every: cfg.SampleEvery, epoch: cfg.Now()}
}

// since is t as nanoseconds from the window's epoch (saturating: Sub does).
func (w *TrafficWindow) since(t time.Time) int64 { return int64(t.Sub(w.epoch)) }

// SetSampleEvery records the sampler's current 1-in-N rate.
func (w *TrafficWindow) SetSampleEvery(n uint32) {
	w.mu.Lock()
	w.every = max(n, 1)
	w.mu.Unlock()
}

// Add appends one sample, evicting the oldest if the window is full or old.
func (w *TrafficWindow) Add(s rule.Sample) {
	w.mu.Lock()
	w.evictOld(w.cfg.Now().Add(-w.cfg.MaxAge))
	w.add(s)
	w.mu.Unlock()
}

// AddBatch appends samples in order under one lock: the cheap path for a
// reader that drains many samples at a time.
func (w *TrafficWindow) AddBatch(ss []rule.Sample) {
	if len(ss) == 0 {
		return
	}
	w.mu.Lock()
	w.evictOld(w.cfg.Now().Add(-w.cfg.MaxAge))
	for i := range ss {
		w.add(ss[i])
	}
	w.mu.Unlock()
}

func (w *TrafficWindow) add(smp rule.Sample) {
	s := w.names.pack(&smp, w.since(smp.Time))
	w.stats.Added++
	if w.n < w.cfg.MaxSamples {
		// Not full: the ring is contiguous from head (head is 0 until it wraps,
		// or it has wrapped and then shrunk by age eviction).
		idx := (w.head + w.n) % w.cfg.MaxSamples
		if idx == w.ring.len && w.ring.len == w.ring.capacity() && w.head >= w.ring.len/2 {
			// Age eviction has freed the front half of a ring that has not
			// wrapped yet: slide the live samples down instead of growing, so
			// the ring stays within a small factor of what it holds.
			for i := range w.n {
				*w.ring.at(i) = *w.ring.at(w.head + i)
			}
			w.ring.truncate(w.n)
			w.head, idx = 0, w.n
		}
		if idx == w.ring.len {
			w.ring.push(s, w.cfg.MaxSamples) // never past MaxSamples: idx wraps there
		} else {
			*w.ring.at(idx) = s
		}
		w.n++
		return
	}
	*w.ring.at(w.head) = s
	w.head = (w.head + 1) % w.cfg.MaxSamples
	w.stats.EvictedCount++
}

// evictOld drops samples from the oldest end while they are older than
// cutoff. Samples arrive nearly in time order (per-CPU ring buffers may
// interleave by microseconds), so stopping at the first young one is enough;
// Report filters by time anyway.
func (w *TrafficWindow) evictOld(cutoff time.Time) {
	c := w.since(cutoff)
	for w.n > 0 && w.ring.at(w.head).at < c {
		w.head = (w.head + 1) % w.cfg.MaxSamples
		w.n--
		w.stats.EvictedAge++
	}
	if w.n == 0 {
		w.head = 0
		w.ring.truncate(0) // idle after a flood: give the memory back
	}
}

// AddReaction keeps one of the stack's reactions (s.Reaction set) apart
// from the sampled arriving headers; the oldest goes once
// DefaultWindowMaxReactions are held, and any older than MaxAge at a report.
func (w *TrafficWindow) AddReaction(s rule.Sample) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ps := w.names.pack(&s, w.since(s.Time))
	if len(w.reactions) < DefaultWindowMaxReactions {
		w.reactions = append(w.reactions, ps)
		return
	}
	w.reactions[w.reactionsHead] = ps
	w.reactionsHead = (w.reactionsHead + 1) % len(w.reactions)
}

// reactionsIn returns the newest max reactions in [from, to], oldest first.
func (w *TrafficWindow) reactionsIn(from, to time.Time, max int) []rule.Sample {
	var out []rule.Sample
	n := len(w.reactions)
	lo, hi := w.since(from), w.since(to)
	for i := n - 1; i >= 0 && len(out) < max; i-- {
		s := &w.reactions[(w.reactionsHead+i)%n]
		if s.at < lo || s.at > hi {
			continue
		}
		out = append(out, w.names.unpack(s, w.epoch))
	}
	slices.Reverse(out)
	return out
}

// evictOldReactions drops reactions older than cutoff when the oldest is.
func (w *TrafficWindow) evictOldReactions(cutoff time.Time) {
	n, c := len(w.reactions), w.since(cutoff)
	if n == 0 || w.reactions[w.reactionsHead].at >= c {
		return
	}
	kept := make([]packedSample, 0, n)
	for i := range n {
		if s := w.reactions[(w.reactionsHead+i)%n]; s.at >= c {
			kept = append(kept, s)
		}
	}
	w.reactions, w.reactionsHead = kept, 0
}

// Stats returns counters about the window's contents.
func (w *TrafficWindow) Stats() WindowStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stats
	s.Samples = w.n
	return s
}

// Report summarizes the samples seen in [from, to]: totals, the top values of
// every match field, and the newest maxSamples headers (oldest first).
func (w *TrafficWindow) Report(from, to time.Time, maxSamples int) TrafficReport {
	var protected []string
	if w.cfg.Protected != nil {
		for _, p := range w.cfg.Protected() {
			protected = append(protected, p.String())
		}
	}
	w.mu.Lock()
	w.evictOld(w.cfg.Now().Add(-w.cfg.MaxAge))
	every := w.every
	var tot Totals
	lo, hi := w.since(from), w.since(to)
	in := 0
	for i := range w.n {
		if s := w.ring.at((w.head + i) % w.cfg.MaxSamples); s.at >= lo && s.at <= hi {
			in++
		}
	}
	c := newFieldCounts(in)
	// Walk newest to oldest so the newest matching samples are the ones kept.
	var samples []rule.Sample
	if maxSamples > 0 {
		samples = make([]rule.Sample, 0, min(maxSamples, in))
	}
	for i := w.n - 1; i >= 0; i-- {
		s := w.ring.at((w.head + i) % w.cfg.MaxSamples)
		if s.at < lo || s.at > hi {
			continue
		}
		tot.SampledPackets++
		tot.SampledBytes += uint64(s.length)
		p := s.packet()
		c.add(&p)
		if len(samples) < maxSamples {
			samples = append(samples, w.names.unpack(s, w.epoch))
		}
	}
	w.evictOldReactions(w.cfg.Now().Add(-w.cfg.MaxAge))
	reactions := w.reactionsIn(from, to, max(maxSamples, 0))
	w.mu.Unlock()

	slices.Reverse(samples)
	tot.EstimatedPackets = tot.SampledPackets * uint64(every)
	tot.EstimatedBytes = tot.SampledBytes * uint64(every)
	if samples == nil {
		samples = []rule.Sample{}
	}
	if protected == nil {
		protected = []string{}
	}
	rep := TrafficReport{
		From: from, To: to, SampleEvery: every, Totals: tot,
		Top: c.top(w.cfg.TopK), Samples: samples, Reactions: reactions, Protected: protected,
	}
	if w.cfg.SlowConnections != nil {
		rep.SlowConnections = w.cfg.SlowConnections()
	}
	if w.cfg.UDPPeers != nil {
		rep.UDPPeers, _ = w.cfg.UDPPeers()
	}
	return rep
}

// fieldCounts tallies each match field's values: addresses as keys to sort
// and count (addrKeys), header fields of at most 16 bits in dense arrays, so
// counting a sample allocates nothing; values become strings only for the
// top K.
type fieldCounts struct {
	src, dst addrKeys
	num      [numFields][]uint64 // indexed by the field's value
}

// Numeric fields, indexes into fieldCounts.num.
const (
	fProtocol = iota
	fSrcPort
	fDstPort
	fTCPFlags
	fTTL
	fLength
	fTCPWindow
	fICMPType
	fFragment
	numFields
)

var numFieldNames = [numFields]string{
	fProtocol: "protocol", fSrcPort: "src_port", fDstPort: "dst_port", fTCPFlags: "tcp_flags",
	fTTL: "ttl", fLength: "length", fTCPWindow: "tcp_window", fICMPType: "icmp_type", fFragment: "fragment",
}

// newFieldCounts returns counts for up to n packets.
func newFieldCounts(n int) *fieldCounts {
	c := &fieldCounts{src: newAddrKeys(n), dst: newAddrKeys(n)}
	for i := range c.num {
		switch i {
		case fSrcPort, fDstPort, fLength, fTCPWindow:
			c.num[i] = make([]uint64, 1<<16)
		default:
			c.num[i] = make([]uint64, 1<<8)
		}
	}
	return c
}

// add counts one packet. A field is counted only where a rule could match
// it: non-IP frames count nowhere, ports only with a TCP/UDP header, flags and
// window only with a TCP header, the ICMP type only with an ICMP header.
func (c *fieldCounts) add(p *rule.Packet) {
	if p.Family == 0 {
		return
	}
	c.src.add(p.Src)
	c.dst.add(p.Dst)
	c.num[fProtocol][p.Protocol]++
	c.num[fTTL][p.TTL]++
	c.num[fLength][p.Length]++
	c.num[fFragment][uint8(p.Fragment)]++
	if p.HasPorts() {
		c.num[fSrcPort][p.SrcPort]++
		c.num[fDstPort][p.DstPort]++
	}
	if p.HasL4 && p.Protocol == rule.ProtoTCP {
		c.num[fTCPFlags][p.TCPFlags]++
		c.num[fTCPWindow][p.TCPWindow]++
	}
	if p.IsICMP() {
		c.num[fICMPType][p.ICMPType]++
	}
}

func (c *fieldCounts) top(k int) map[string][]ValueCount {
	out := make(map[string][]ValueCount, len(TopFields))
	out["src"], out["src_prefix"] = c.src.top(k, true)
	out["dst"], _ = c.dst.top(k, false)
	for i, name := range numFieldNames {
		t := newTopK(k, cmp.Compare[uint32])
		for v, n := range c.num[i] {
			if n > 0 {
				t.offer(uint32(v), n)
			}
		}
		out[name] = t.values(formatterFor(i))
	}
	return out
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// formatterFor writes a numeric field's value in the rule JSON's syntax.
func formatterFor(field int) func(uint32) string {
	switch field {
	case fProtocol:
		return FormatProtocol
	case fTCPFlags:
		// The exact set seen: "syn" means SYN alone. A packet with no flag at
		// all is written as every flag unset, which is also a valid rule value.
		return func(v uint32) string {
			if v == 0 {
				return rule.FormatTCPFlags(0, 0xff)
			}
			return rule.FormatTCPFlags(uint8(v), 0)
		}
	case fFragment:
		return func(v uint32) string { return rule.FragKind(v).String() }
	}
	return func(v uint32) string { return strconv.FormatUint(uint64(v), 10) }
}

// FormatProtocol writes an IP protocol number as the rule JSON's protocol value.
func FormatProtocol(v uint32) string {
	switch v {
	case rule.ProtoTCP:
		return "tcp"
	case rule.ProtoUDP:
		return "udp"
	case rule.ProtoICMP:
		return "icmp"
	case rule.ProtoICMPv6:
		return "icmpv6"
	}
	return strconv.FormatUint(uint64(v), 10)
}

// topK keeps the k most frequent keys offered, highest count first and ties
// by key, so a report is deterministic. It is a sorted slice of at most k
// entries: with k small, that beats sorting every distinct value of a
// spoofed flood.
type topK[K any] struct {
	k       int
	compare func(a, b K) int
	best    []keyCount[K]
}

type keyCount[K any] struct {
	key K
	n   uint64
}

func newTopK[K any](k int, compare func(a, b K) int) *topK[K] {
	return &topK[K]{k: k, compare: compare, best: make([]keyCount[K], 0, k)}
}

func (t *topK[K]) better(a, b keyCount[K]) bool {
	return a.n > b.n || a.n == b.n && t.compare(a.key, b.key) < 0
}

func (t *topK[K]) offer(key K, n uint64) {
	e := keyCount[K]{key, n}
	if len(t.best) == t.k && !t.better(e, t.best[t.k-1]) {
		return
	}
	i := len(t.best)
	if i == t.k {
		i--
	} else {
		t.best = append(t.best, e)
	}
	for i > 0 && t.better(e, t.best[i-1]) {
		t.best[i] = t.best[i-1]
		i--
	}
	t.best[i] = e
}

func (t *topK[K]) values(format func(K) string) []ValueCount {
	out := make([]ValueCount, len(t.best))
	for i, e := range t.best {
		out[i] = ValueCount{Value: format(e.key), Count: e.n}
	}
	return out
}
