package responder

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/rule"
)

// Reset injection. A RST cuts a connection only with the connection's
// 4-tuple and a sequence number the receiver accepts, so an injected RST
// claims to come from the connection's peer: its source address is the
// served client's, spoofed, or the attacker's own where it is on the path.
// The stack rejects the guesses that miss (reactions TCP_RESET: in the
// window, challenged; the sequence checks' reasons: out of it), and those
// reactions are the evidence: who the RSTs claim to be, which ports they
// aim at, and the crafting tool's TTL, window and length. The rules match
// only RSTs (never an established flow's packets), narrowed to that shape.

// AttackResetInjection is the `attack` label of PacketScopeResetInjection.
const AttackResetInjection = "reset_injection"

// resetRatePPS is the rate a source's RSTs are limited to when the source
// is also a client the node serves: its own resets (a few per second when
// it closes connections abortively) pass, a blind injection's thousands do
// not.
const resetRatePPS = 10

// isRejectedRST reports whether a reaction is a RST the stack rejected on
// one of its connections (the agent emits nothing else for these reasons
// but is not trusted to).
func isRejectedRST(s *rule.Sample) bool {
	switch s.Reaction {
	case "TCP_RESET", "TCP_OLD_SEQUENCE", "TCP_INVALID_SEQUENCE", "TCP_INVALID_END_SEQUENCE":
	default:
		return false
	}
	p := &s.Packet
	return p.HasL4 && p.Protocol == rule.ProtoTCP && p.TCPFlags&rule.FlagRST != 0 && p.Src.IsValid()
}

// RSTSource is a source address the rejected RSTs claim.
type RSTSource struct {
	Addr     netip.Addr     `json:"src"`
	RSTs     int            `json:"rejected_rsts"`
	Verdicts map[string]int `json:"by_reason"`
	Ports    []uint16       `json:"dst_ports"` // the node's ports they aimed at, at most 8
}

// RSTSources ranks the sources of the rejected RSTs among reactions: most
// RSTs first.
func RSTSources(reactions []rule.Sample) []RSTSource {
	by := map[netip.Addr]*RSTSource{}
	for i := range reactions {
		s := &reactions[i]
		if !isRejectedRST(s) {
			continue
		}
		src := s.Packet.Src.Unmap()
		g := by[src]
		if g == nil {
			g = &RSTSource{Addr: src, Verdicts: map[string]int{}}
			by[src] = g
		}
		g.RSTs++
		g.Verdicts[s.Reaction]++
		if !slices.Contains(g.Ports, s.Packet.DstPort) && len(g.Ports) < 8 {
			g.Ports = append(g.Ports, s.Packet.DstPort)
		}
	}
	out := make([]RSTSource, 0, len(by))
	for _, g := range by {
		slices.Sort(g.Ports)
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b RSTSource) int { return cmp.Or(cmp.Compare(b.RSTs, a.RSTs), a.Addr.Compare(b.Addr)) })
	return out
}

// rstShape is the span of the crafted RSTs' header fields.
type rstShape struct {
	ttl, window, length [2]int
	ports               map[uint16]bool
}

func shapeOf(rsts []*rule.Sample) rstShape {
	sh := rstShape{ttl: [2]int{256, -1}, window: [2]int{65536, -1}, length: [2]int{65536, -1}, ports: map[uint16]bool{}}
	widen := func(r *[2]int, v int) { r[0], r[1] = min(r[0], v), max(r[1], v) }
	for _, s := range rsts {
		widen(&sh.ttl, int(s.Packet.TTL))
		widen(&sh.window, int(s.Packet.TCPWindow))
		widen(&sh.length, int(s.Packet.Length))
		sh.ports[s.Packet.DstPort] = true
	}
	return sh
}

// match is the RSTs' fingerprint: TCP RSTs of that TTL, window and length,
// to the ports attacked (when they are few enough to list).
func (sh rstShape) match() rule.Match {
	m := rule.Match{Protocol: "tcp", TCPFlags: "rst",
		TTL:       rangeString(sh.ttl[0], sh.ttl[1]),
		TCPWindow: rangeString(sh.window[0], sh.window[1]),
		Length:    rangeString(sh.length[0], sh.length[1])}
	if len(sh.ports) <= 8 {
		ps := make([]int, 0, len(sh.ports))
		for p := range sh.ports {
			ps = append(ps, int(p))
		}
		slices.Sort(ps)
		for _, p := range ps {
			m.DstPorts = append(m.DstPorts, strconv.Itoa(p))
		}
	}
	return m
}

// MineResets proposes rules against the rejected RSTs of the reactions.
// When at most MaxSources sources claim SourceShare of them and none of
// those is a client the node serves (or a talker in the baseline), the
// sources are real (an attacker on the path, or one resetting connections
// it holds itself): a drop rule per source. Otherwise the sources are spoofed, and one fingerprint without a
// source covers them: a drop, or a rate_limit at resetRatePPS when they
// claim served clients, whose own resets may share the shape and must
// pass (a per-source rule for a client's address is what the guardrails'
// source-share check refuses, rightly: the address is not the attacker's).
// Every rule is the RSTs' shape (rstShape.match); rules matching served
// flows or too much of the baseline are not proposed.
func MineResets(cfg MinerConfig, attack, baseline []rule.Packet, reactions []rule.Sample, protected []netip.Prefix, peers ...agentapi.UDPPeer) []Candidate {
	cfg = cfg.withDefaults()
	attack, baseline = ipOnly(attack), ipOnly(baseline)
	var rsts []*rule.Sample
	for i := range reactions {
		if isRejectedRST(&reactions[i]) {
			rsts = append(rsts, &reactions[i])
		}
	}
	if len(rsts) == 0 {
		return nil
	}
	served := newServedFlows(peers, attack, baseline)
	clients := map[netip.Addr]bool{}
	for _, p := range served.pkts {
		clients[p.Src.Unmap()] = true
	}
	// A rejected RST hit one of the node's connections, so the address it
	// claims is a peer's. The sampled windows do not always show that peer
	// served (a long-lived connection's handshake is long gone, its ACKs
	// look alike); one that talks in the baseline is a real talker all the
	// same, which a per-source rule must not name (the guardrails' source
	// share refuses it, and the decision would get no rule at all).
	talk := map[netip.Addr]int{}
	for i := range baseline {
		talk[baseline[i].Src.Unmap()]++
	}
	for a, n := range talk {
		if float64(n) > DefaultGuardrails.MaxSourceShare*float64(len(baseline)) {
			clients[a] = true
		}
	}
	srcs := RSTSources(reactions)
	claimsClient := false
	for _, s := range srcs {
		claimsClient = claimsClient || clients[s.Addr]
	}
	top, carried := 0, 0
	for top < len(srcs) && top < min(cfg.MaxSources, cfg.MaxRules) && float64(carried) < cfg.SourceShare*float64(len(rsts)) {
		carried += srcs[top].RSTs
		top++
	}
	var out []Candidate
	keep := func(m rule.Match, action rule.Action, rate uint32, reason string) {
		if !served.allows(m) {
			return
		}
		c := candidateFor(m, reason, attack, baseline)
		c.Rule.Action, c.Rule.RatePPS = action, rate
		if c.Collateral <= cfg.MaxCollateral {
			out = append(out, c)
		}
	}
	if !claimsClient && float64(carried) >= cfg.SourceShare*float64(len(rsts)) {
		for _, s := range srcs[:top] {
			if isProtected(s.Addr, protected) {
				continue
			}
			var own []*rule.Sample
			for _, r := range rsts {
				if r.Packet.Src.Unmap() == s.Addr {
					own = append(own, r)
				}
			}
			m := shapeOf(own).match()
			m.Src = netip.PrefixFrom(s.Addr, s.Addr.BitLen()).String()
			keep(m, rule.ActionDrop, 0, fmt.Sprintf("%d RSTs from %s were rejected on the node's connections (%s)", s.RSTs, s.Addr, verdictSummary(s.Verdicts)))
		}
		return out
	}
	reason := fmt.Sprintf("%d RSTs claiming %d source(s) were rejected on the node's connections: spoofed, matched by their shape", len(rsts), len(srcs))
	if claimsClient {
		keep(shapeOf(rsts).match(), rule.ActionRateLimit, resetRatePPS,
			reason+"; they claim served clients, whose own resets pass at "+strconv.Itoa(resetRatePPS)+"/s")
		return out
	}
	keep(shapeOf(rsts).match(), rule.ActionDrop, 0, reason)
	return out
}

func verdictSummary(v map[string]int) string {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	s := ""
	for i, k := range keys {
		if i > 0 {
			s += ", "
		}
		s += strconv.Itoa(v[k]) + " " + k
	}
	return s
}
