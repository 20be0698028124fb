package responder

import (
	"fmt"
	"math"
	"net/netip"

	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/rule"
)

// Never hurt the served. The traffic windows hold only what the node
// receives (the guard sits at ingress), so an established connection is
// recognized from its own packets: a TCP 4-tuple that shows a handshake and
// then ACKs, or ACKs whose headers move (data lengths, PSH, window updates).
// A spoofed flood never repeats a 4-tuple with moving headers, a reflector
// retransmits the same SYN-ACK, and a tool sending from a fixed 4-tuple
// sends the same header every time. The packets of served flows are no
// flood evidence for the miner, and a rule that matches them is refused:
// cutting an established connection is the harm a defense must not do.

// flowKey is one direction of a TCP connection as the node receives it.
type flowKey struct {
	src, dst     netip.Addr
	sport, dport uint16
}

type flowSeen struct {
	est       int    // packets of the established state: ACK, no SYN or RST
	handshake bool   // a SYN or SYN-ACK on the same 4-tuple
	first     uint64 // the first established packet's header shape
	moved     bool   // a later one differed from it
}

// servedFlows are the established connections seen in the windows, and
// the UDP answers the node asked for.
type servedFlows struct {
	flows map[flowKey]bool
	udp   map[udpPeerKey]bool
	pkts  []rule.Packet // their packets, all windows
}

// udpPeerKey is what a packet from a connected UDP socket's peer carries:
// the peer's address and port, and the socket's local port.
type udpPeerKey struct {
	src          netip.Addr
	sport, dport uint16
}

// servedMaxShare is the share of the served flows' packets a rule may match
// (a spoofed packet may land on a served 4-tuple by chance, and a rule then
// matches it; more than that is the served traffic itself).
const servedMaxShare = 0.001

func isEstablished(p *rule.Packet) bool {
	return p.HasL4 && p.Protocol == rule.ProtoTCP && p.TCPFlags&rule.FlagACK != 0 && p.TCPFlags&(rule.FlagSYN|rule.FlagRST) == 0
}

func flowOf(p *rule.Packet) flowKey {
	return flowKey{src: p.Src, dst: p.Dst, sport: p.SrcPort, dport: p.DstPort}
}

// newServedFlows finds the served connections in the windows; peers are the
// node's connected UDP sockets' (agentapi.UDPPeer), whose packets are
// served whatever their volume: a QUIC download is heavy UDP the node asked for.
func newServedFlows(peers []agentapi.UDPPeer, windows ...[]rule.Packet) *servedFlows {
	seen := map[flowKey]*flowSeen{}
	for _, w := range windows {
		for i := range w {
			p := &w[i]
			if !p.HasL4 || p.Protocol != rule.ProtoTCP {
				continue
			}
			k := flowOf(p)
			f := seen[k]
			if f == nil {
				f = &flowSeen{}
				seen[k] = f
			}
			if p.TCPFlags&rule.FlagSYN != 0 {
				f.handshake = true
			}
			if !isEstablished(p) {
				continue
			}
			shape := uint64(p.Length)<<32 | uint64(p.TCPWindow)<<8 | uint64(p.TCPFlags)
			if f.est == 0 {
				f.first = shape
			} else if shape != f.first {
				f.moved = true
			}
			f.est++
		}
	}
	s := &servedFlows{flows: map[flowKey]bool{}, udp: map[udpPeerKey]bool{}}
	for _, p := range peers {
		s.udp[udpPeerKey{src: p.Remote.Addr().Unmap(), sport: p.Remote.Port(), dport: p.LocalPort}] = true
	}
	for k, f := range seen {
		if f.est >= 2 && f.moved || f.handshake && f.est >= 1 {
			s.flows[k] = true
		}
	}
	for _, w := range windows {
		for i := range w {
			if s.isServed(&w[i]) {
				s.pkts = append(s.pkts, w[i])
			}
		}
	}
	return s
}

func (s *servedFlows) isServed(p *rule.Packet) bool {
	if p.HasL4 && p.Protocol == rule.ProtoUDP {
		return s.udp[udpPeerKey{src: p.Src, sport: p.SrcPort, dport: p.DstPort}]
	}
	return isEstablished(p) && s.flows[flowOf(p)]
}

// without returns pkts less the established packets of served flows.
func (s *servedFlows) without(pkts []rule.Packet) []rule.Packet {
	if len(s.flows) == 0 && len(s.udp) == 0 {
		return pkts
	}
	out := make([]rule.Packet, 0, len(pkts))
	for i := range pkts {
		if !s.isServed(&pkts[i]) {
			out = append(out, pkts[i])
		}
	}
	return out
}

// matched returns how many of the served flows' packets m matches.
func (s *servedFlows) matched(m *rule.Matcher) int {
	return countMatched([]*rule.Matcher{m}, s.pkts)
}

// refusal says why a rule matching these served packets must not go in, or "".
func (s *servedFlows) refusal(n int) string {
	if n < 2 || float64(n) <= servedMaxShare*float64(len(s.pkts)) {
		return ""
	}
	return fmt.Sprintf("matches %d of the %d sampled packets of established connections the node serves", n, len(s.pkts))
}

// allows reports whether a match leaves the served flows alone (a source
// rule for a scanner must: no rate-limit exception there).
func (s *servedFlows) allows(m rule.Match) bool {
	c, err := m.Compile()
	return err == nil && s.refusal(s.matched(c)) == ""
}

// Overlap with service traffic. A flood can share its fingerprint with the
// served connections' own packets (an ACK flood on the port a service's
// clients send ACKs to): a drop would cut them, and no rule at all leaves the
// flood in. Where the rule's hits in the attack window are the flood (at
// least floodShareOfHits of them outside served flows), it goes in as a
// rate_limit at the rate the served flows matched in the baseline, times
// servedRateHeadroom: the service keeps its usual rate, the flood above it
// is dropped. The guard's bucket is one per rule, so under a flood much
// larger than that rate the served packets share it with the flood's: the
// service is slowed, not cut off. Where the rule's hits are the served
// traffic itself (a bulk upload grew, not a flood), it is refused as before.
const (
	floodShareOfHits   = 0.9
	servedRateHeadroom = 2.0
	minServedRatePPS   = 100 // never limit a served port below this
)

// hitsAreFlood reports whether m's hits in the attack window are mostly
// packets no served flow carries.
func (s *servedFlows) hitsAreFlood(m *rule.Matcher, attack []rule.Packet) bool {
	hits, servedHits := 0, 0
	for i := range attack {
		if m.Matches(&attack[i]) {
			hits++
			if s.isServed(&attack[i]) {
				servedHits++
			}
		}
	}
	return hits > 0 && float64(hits-servedHits) >= floodShareOfHits*float64(hits)
}

// servedVerdict judges m against the served flows of the windows: "" and 0
// when it leaves them alone; "" and a rate (packets/s) when it may go in
// only as a rate_limit at that rate; a reason when it must not go in.
func servedVerdict(m *rule.Matcher, in CheckInput) (reason string, ratePPS uint32) {
	s := in.servedFlows()
	r := s.refusal(s.matched(m))
	if r == "" {
		return "", 0
	}
	if !s.hitsAreFlood(m, in.Attack) {
		return r, 0
	}
	if in.SampleEvery == 0 || in.BaselineSeconds <= 0 {
		return r + " (no baseline rate to rate-limit at)", 0
	}
	baseHits := 0
	for i := range in.Baseline {
		if s.isServed(&in.Baseline[i]) && m.Matches(&in.Baseline[i]) {
			baseHits++
		}
	}
	rate := float64(baseHits) * float64(in.SampleEvery) / in.BaselineSeconds * servedRateHeadroom
	return "", uint32(min(max(rate, minServedRatePPS), math.MaxUint32))
}

// servedFlows are the served flows of the input's windows, less those of
// the sources the agent lists as served on none of their connections.
func (in CheckInput) servedFlows() *servedFlows {
	s := newServedFlows(in.UDPPeers, in.Attack, in.Baseline)
	s.forget(in.Unserved)
	return s
}

// forget drops the flows of srcs. A sample catching one connection's
// handshake and then an ACK is how a served flow looks; a slowloris's
// connections look so too (they complete handshakes and send a partial
// request), and of its hundreds one now and then is caught twice. Where
// the agent's own listing says the node has answered none of a source's
// connections, that source is no served client, whatever a sample shows.
func (s *servedFlows) forget(srcs map[netip.Addr]bool) {
	if len(srcs) == 0 {
		return
	}
	for k := range s.flows {
		if srcs[k.src.Unmap()] {
			delete(s.flows, k)
		}
	}
	pkts := s.pkts[:0]
	for i := range s.pkts {
		if s.isServed(&s.pkts[i]) {
			pkts = append(pkts, s.pkts[i])
		}
	}
	s.pkts = pkts
}

// ServedCollateral is what rules would do to the served flows of the
// windows: matched and total sampled packets of established connections.
// It is reported apart from the baseline collateral, which counts every
// packet alike.
func ServedCollateral(rules []rule.Rule, windows ...[]rule.Packet) (matched, total int) {
	s := newServedFlows(nil, windows...)
	var ms []*rule.Matcher
	for _, r := range rules {
		if m, err := r.Match.Compile(); err == nil {
			ms = append(ms, m)
		}
	}
	return countMatched(ms, s.pkts), len(s.pkts)
}
