package responder

import "github.com/packetscope/packetscope/rule"

// Replay is what one rule (or a set) would have done to the recent traffic:
// how much of the attack window it matches and how much of the baseline.
type Replay struct {
	AttackMatched   int     `json:"attack_matched"`
	AttackTotal     int     `json:"attack_total"`
	BaselineMatched int     `json:"baseline_matched"`
	BaselineTotal   int     `json:"baseline_total"`
	Coverage        float64 `json:"coverage"`   // AttackMatched / AttackTotal
	Collateral      float64 `json:"collateral"` // BaselineMatched / BaselineTotal
}

// replayMatchers runs the reference matcher (the kernel's semantics) over both
// windows; a packet counts once even if several matchers match it.
func replayMatchers(ms []*rule.Matcher, attack, baseline []rule.Packet) Replay {
	r := Replay{AttackTotal: len(attack), BaselineTotal: len(baseline)}
	r.AttackMatched = countMatched(ms, attack)
	r.BaselineMatched = countMatched(ms, baseline)
	r.Coverage = ratio(r.AttackMatched, r.AttackTotal)
	r.Collateral = ratio(r.BaselineMatched, r.BaselineTotal)
	return r
}

func countMatched(ms []*rule.Matcher, pkts []rule.Packet) int {
	n := 0
	for i := range pkts {
		for _, m := range ms {
			if m.Matches(&pkts[i]) {
				n++
				break
			}
		}
	}
	return n
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// ReplayRules compiles rules and replays them as a set. Rules that do not
// compile are skipped (the guardrails reject them separately).
func ReplayRules(rules []rule.Rule, attack, baseline []rule.Packet) Replay {
	var ms []*rule.Matcher
	for _, r := range rules {
		if m, err := r.Match.Compile(); err == nil {
			ms = append(ms, m)
		}
	}
	return replayMatchers(ms, attack, baseline)
}

// minOpenerBaseline is the fewest connection openers an opener share is
// taken over: with fewer in the baseline, one sampled SYN the rule matches
// would already weigh a whole percent or more.
const minOpenerBaseline = 100

// openerCollateral is the share of the baseline's connection openers (TCP
// SYN without ACK) m matches, and how many it matched of how many. A rule
// that drops SYNs drops whole connections: measured on packets, a busy
// service's SYNs are a sliver of its baseline (bulk transfers and ACKs
// outnumber them by thousands), so "every SYN to port 443" would pass as
// a fraction of a percent while refusing every new client.
func openerCollateral(m *rule.Matcher, baseline []rule.Packet) (share float64, matched, total int) {
	for i := range baseline {
		p := &baseline[i]
		if p.Protocol != rule.ProtoTCP || !p.HasL4 || p.TCPFlags&(rule.FlagSYN|rule.FlagACK) != rule.FlagSYN {
			continue
		}
		total++
		if m.Matches(p) {
			matched++
		}
	}
	return ratio(matched, max(total, minOpenerBaseline)), matched, total
}

// openerShare is openerCollateral's share alone.
func openerShare(m *rule.Matcher, baseline []rule.Packet) float64 {
	share, _, _ := openerCollateral(m, baseline)
	return share
}
