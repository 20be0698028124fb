package responder

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/rule"
)

// Slow connections (alert label attack="slow_connections", alerts/runbook.md
// #packetscopeslowconnections). A slowloris client is no flood: its packets
// are few and ordinary, and it is no spoofer: it completed every handshake.
// The evidence is the agent's list of the sources holding slow connections
// (TrafficReport.SlowConnections), and the answer is per-source rules for
// the few sources holding most of them.
//
// Those sources have established connections, which the guardrails never
// let a rule cut (served.go) and whose packets they count as baseline
// collateral. Here cutting them is the point: the exemption (slowSource) is
// narrow — only under this alert, only for a rule whose source is one
// address the agent reports as holding slow connections, only for TCP —
// and the rest of the guardrails (schema, never-block and protected
// addresses, breadth, TTL, rule cap) still apply. A source that also holds
// ordinary, answered connections (a proxy or NAT with one slow client
// behind it) gets its new connections rate-limited rather than all its
// packets dropped.

// AttackSlowConnections is the `attack` label of PacketScopeSlowConnections.
const AttackSlowConnections = "slow_connections"

// Slow-connection rule tuning.
const (
	// slowMinConns: a source holding fewer slow connections gets no rule
	// (a browser's preconnected sockets are a handful).
	slowMinConns = 10
	// slowMinShare: ...nor one holding less than this share of them.
	slowMinShare = 0.05
	// slowSharedSYNRate is the rate (SYNs/s) a slow source that also has
	// ordinary connections may open new ones at: its users keep connecting,
	// it cannot refill the service's slots at a slowloris tool's 100/s.
	slowSharedSYNRate = 10
	// slowMaxPorts: a rule names at most this many held ports (more: any port).
	slowMaxPorts = 4
)

// slowSources picks the sources a slow_connections alert's rules are for:
// not protected, holding at least slowMinConns and slowMinShare of the slow
// connections, most first, at most maxSources.
func slowSources(rep *agentapi.SlowConnReport, protected []netip.Prefix, maxSources int) []agentapi.SlowSource {
	if rep == nil || rep.Slow == 0 {
		return nil
	}
	var out []agentapi.SlowSource
	for _, s := range rep.Sources {
		a, err := netip.ParseAddr(s.Src)
		if err != nil || isProtected(a.Unmap(), protected) {
			continue
		}
		if s.Slow < slowMinConns || float64(s.Slow) < slowMinShare*float64(rep.Slow) {
			continue
		}
		out = append(out, s)
		if len(out) == maxSources {
			break
		}
	}
	return out
}

// unservedSources are the sources of a report holding at least
// slowMinConns slow connections and none the node answered (Normal 0): a
// slowloris, not a client, for every alert's guardrails (served.go's
// forget). A client whose short requests the node answers has answered
// connections, or none open at all, not ten held incomplete.
func unservedSources(rep *agentapi.SlowConnReport) map[netip.Addr]bool {
	if rep == nil {
		return nil
	}
	var out map[netip.Addr]bool
	for _, s := range rep.Sources {
		a, err := netip.ParseAddr(s.Src)
		if err != nil || s.Slow < slowMinConns || s.Normal > 0 {
			continue
		}
		if out == nil {
			out = map[netip.Addr]bool{}
		}
		out[a.Unmap()] = true
	}
	return out
}

// slowEvidence indexes the sources of a report by address, for the
// guardrails; nil unless the alert is a slow_connections alert.
func slowEvidence(label string, rep *agentapi.SlowConnReport) map[netip.Addr]agentapi.SlowSource {
	if label != AttackSlowConnections || rep == nil {
		return nil
	}
	m := map[netip.Addr]agentapi.SlowSource{}
	for _, s := range rep.Sources {
		if a, err := netip.ParseAddr(s.Src); err == nil && s.Slow > 0 {
			m[a.Unmap()] = s
		}
	}
	return m
}

// MineSlow is the builtin analyst's answer to a slow_connections alert: one
// rule per source slowSources picks, on TCP to the ports it holds.
func MineSlow(cfg MinerConfig, rep *agentapi.SlowConnReport, protected []netip.Prefix) []Candidate {
	cfg = cfg.withDefaults()
	var out []Candidate
	for _, s := range slowSources(rep, protected, cfg.MaxSources) {
		a := netip.MustParseAddr(s.Src).Unmap()
		m := rule.Match{Src: netip.PrefixFrom(a, a.BitLen()).String(), Protocol: "tcp"}
		if len(s.DstPorts) <= slowMaxPorts {
			m.DstPorts = slices.Clone(s.DstPorts)
		}
		r := rule.Rule{Action: rule.ActionDrop, Match: m,
			Reason: fmt.Sprintf("source %s holds %d of the node's %d slow connections (incomplete requests held open)", a, s.Slow, rep.Slow)}
		if s.Normal > 0 {
			r.Action, r.RatePPS, r.Match.TCPFlags = rule.ActionRateLimit, slowSharedSYNRate, "syn,!ack"
			r.Reason += fmt.Sprintf("; it also has %d ordinary connections: its new connections are rate-limited", s.Normal)
		}
		out = append(out, Candidate{Rule: r, Coverage: float64(s.Slow) / float64(rep.Slow)})
	}
	return out
}

// slowSource returns the agent's evidence for m when m is a rule the
// slow-connection exemption covers: the alert is a slow_connections alert
// (in.SlowSources is set only then), m's source is a single address the
// agent reports holding slow connections, and m is about TCP.
func (in CheckInput) slowSource(m *rule.Matcher) (agentapi.SlowSource, bool) {
	if len(in.SlowSources) == 0 || !m.Src.IsValid() || !m.Src.IsSingleIP() || m.Protocol != rule.ProtoTCP {
		return agentapi.SlowSource{}, false
	}
	s, ok := in.SlowSources[m.Src.Addr().Unmap()]
	return s, ok && s.Slow > 0
}

// slowAccept adjusts an accepted rule for a slow source that is also a
// legitimate client — it has ordinary connections now, or the baseline
// replay finds the rule matching more of the traffic before the attack than
// the collateral limit (inBaseline: short requests leave no connection
// for the agent to see) — whatever the analyst asked: its new connections
// are rate-limited instead of all its packets dropped.
func slowAccept(v *Validation, s agentapi.SlowSource, inBaseline bool) {
	if s.Normal == 0 && !inBaseline || v.Rule.Action == rule.ActionMonitor {
		return
	}
	if v.Rule.Action == rule.ActionRateLimit && v.Rule.RatePPS <= slowSharedSYNRate && v.Rule.Match.TCPFlags == "syn,!ack" {
		return
	}
	why := fmt.Sprintf("also has %d ordinary connections", s.Normal)
	if s.Normal == 0 {
		why = fmt.Sprintf("sent %.1f%% of the baseline before the attack", 100*v.Collateral)
	}
	v.Notes = append(v.Notes, fmt.Sprintf("source %s %s: %s installed as rate_limit of its new connections (SYN) at %d/s",
		s.Src, why, v.Rule.Action, slowSharedSYNRate))
	v.Rule.Action, v.Rule.RatePPS, v.Rule.Match.TCPFlags = rule.ActionRateLimit, slowSharedSYNRate, "syn,!ack"
}

// slowCoverage is the share of the node's slow connections s holds: the
// coverage of a rule against it (its packets are too few to measure one).
func slowCoverage(s agentapi.SlowSource, in CheckInput) float64 {
	total := 0
	for _, o := range in.SlowSources {
		total += o.Slow
	}
	if in.SlowTotal > total {
		total = in.SlowTotal
	}
	if total == 0 {
		return 0
	}
	return float64(s.Slow) / float64(total)
}

func slowTotal(rep *agentapi.SlowConnReport) int {
	if rep == nil {
		return 0
	}
	return rep.Slow
}

// slowPrompt describes the class to the LLM analyst.
const slowPrompt = `Slow connections (alert label attack="slow_connections", slowloris): a few sources hold many TCP connections to a
service open with requests they never finish, until the service has no connection slot left. Its packets are few and
ordinary, so packet fingerprints do not help; the evidence is slow_connections: per source, "slow" = connections open a
while on which the node answered nothing and the client sent little, "normal" = its other connections, dst_ports = the
ports it holds. These sources completed handshakes: they are real, not spoofed. Write one rule per source holding most
slow connections: src = that address as /32 (IPv6 /128), protocol "tcp", dst_ports = its held ports; action "drop", or,
when the source also has normal connections, action "rate_limit" with rate_pps 10 and tcp_flags "syn,!ack" (limit its
new connections, keep its ordinary ones). Never write a rule for a source that is not listed with slow connections.`

// sanitizeSlowReport copies a report the agent sent, keeping only what
// parses: addresses as addresses, ports as numbers (the agent is trusted,
// but what reaches a prompt or the audit trail is checked anyway).
func sanitizeSlowReport(rep *agentapi.SlowConnReport) *agentapi.SlowConnReport {
	if rep == nil {
		return nil
	}
	out := *rep
	out.Sources = nil
	for _, s := range rep.Sources[:min(len(rep.Sources), agentapi.DefaultSlowConnTopK)] {
		a, err := netip.ParseAddr(s.Src)
		if err != nil {
			continue
		}
		c := agentapi.SlowSource{Src: a.Unmap().String(), Slow: s.Slow, Normal: s.Normal}
		for _, p := range s.DstPorts[:min(len(s.DstPorts), 16)] {
			if n, err := strconv.ParseUint(p, 10, 16); err == nil {
				c.DstPorts = append(c.DstPorts, strconv.FormatUint(n, 10))
			}
		}
		out.Sources = append(out.Sources, c)
	}
	return &out
}

// slowForPrompt is the slow-connection evidence the LLM and the audit trail
// get: under a slow_connections alert, or when the node has slow
// connections at all (nil otherwise: a flood's evidence stays as it was).
func slowForPrompt(ev *Evidence) *agentapi.SlowConnReport {
	if ev.SlowConnections == nil || ev.Alert.Labels["attack"] != AttackSlowConnections && ev.SlowConnections.Slow == 0 {
		return nil
	}
	return sanitizeSlowReport(ev.SlowConnections)
}
