package responder

import (
	"context"
	"fmt"
	"time"

	"github.com/packetscope/packetscope/rule"
)

// Never hurt the served, after the fact too. A rule is judged on the
// windows before it goes in; a connection that starts later (or that the
// windows' samples missed) may still be one it cuts. Every sweep looks at
// the traffic since shortly before each drop rule went in: where the rule
// matches packets of connections the node serves (served.go: a handshake,
// or ACKs whose headers move) after it was installed, it is withdrawn and
// the withdrawal recorded. Rate limits are left alone: they are installed
// knowing they overlap served traffic (served.go, the baseline rate), and
// monitor rules drop nothing. So are rules for one source address: the
// evidence named that host (a scanner, a slow client holding connections,
// a flooding host) and its connections are cut on purpose; a host the
// decision saw served is refused then. Fingerprint and prefix rules are the
// ones that can hit anyone's connections.

// servedLookback is how far before a rule went in the check looks, so the
// connections it then cut show the handshake or moving headers that make
// them served.
const servedLookback = 30 * time.Second

// cutsServed returns the rules among active whose hits since they went in
// include packets of served connections, each with the reason.
func (r *Responder) cutsServed(ctx context.Context, agent Agent, active []rule.Rule) (map[string]string, error) {
	var drops []rule.Rule
	from := r.cfg.Now()
	for _, a := range active {
		if a.Action == rule.ActionDrop && !oneSource(a.Match) {
			drops = append(drops, a)
			if a.CreatedAt.Before(from) {
				from = a.CreatedAt
			}
		}
	}
	if len(drops) == 0 {
		return nil, nil
	}
	rep, err := agent.Traffic(ctx, from.Add(-servedLookback), r.cfg.Now(), r.cfg.MaxSamples)
	if err != nil {
		return nil, err
	}
	served := newServedFlows(rep.UDPPeers, packetsOf(rep.Samples))
	if len(served.flows) == 0 && len(served.udp) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, d := range drops {
		m, err := d.Match.Compile()
		if err != nil {
			continue
		}
		hit, total := 0, 0
		for i := range rep.Samples {
			s := &rep.Samples[i]
			if s.Time.Before(d.CreatedAt) || !served.isServed(&s.Packet) {
				continue
			}
			total++
			if m.Matches(&s.Packet) {
				hit++
			}
		}
		if reason := served.refusal(hit); reason != "" {
			out[d.ID] = fmt.Sprintf("since it went in, it %s (%d of them after it went in)", reason, total)
		}
	}
	return out, nil
}

// withdrawServed deletes the alert's rules that cut served connections and
// records the withdrawal; it returns the rules still held.
func (r *Responder) withdrawServed(ctx context.Context, agent Agent, it sweepItem, active []rule.Rule, kept []AppliedRule) []AppliedRule {
	own := map[string]bool{}
	for _, ar := range kept {
		own[ar.ID] = true
	}
	var mine []rule.Rule
	for _, a := range active {
		if own[a.ID] {
			mine = append(mine, a)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cut, err := r.cutsServed(cctx, agent, mine)
	if err != nil || len(cut) == 0 {
		return kept
	}
	r.pushMu.Lock()
	defer r.pushMu.Unlock()
	var still, gone []AppliedRule
	var notes []string
	for _, ar := range kept {
		reason, ok := cut[ar.ID]
		if !ok {
			still = append(still, ar)
			continue
		}
		if err := agent.DeleteRule(cctx, ar.ID); err != nil {
			// Kept, and tried again at the next sweep.
			r.logger.Warn("withdraw a rule that cuts served connections", "rule", ar.ID, "err", agentFailure("delete rule", err))
			still = append(still, ar)
			continue
		}
		gone = append(gone, ar)
		notes = append(notes, ar.ID+": "+reason)
	}
	if len(gone) == 0 {
		return still
	}
	r.record(Decision{Kind: "withdrawn", Outcome: OutcomeWithdrawn, Alert: it.alert, Agent: it.agent, Analyst: it.analyst,
		Applied: gone, Notes: notes, ReceivedAt: r.cfg.Now()})
	return still
}

// oneSource reports whether m names a single source address.
func oneSource(m rule.Match) bool {
	c, err := m.Compile()
	return err == nil && c.Src.IsValid() && c.Src.IsSingleIP()
}
