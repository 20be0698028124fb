package responder

import (
	"strings"
	"testing"
	"time"

	"github.com/packetscope/packetscope/rule"
)

// isTopUp: a decision the responder started itself as a top-up.
func isTopUp(d Decision) bool {
	if d.Kind != "alert" {
		return false
	}
	for _, n := range d.Notes {
		if strings.HasPrefix(n, "top-up:") {
			return true
		}
	}
	return false
}

func ruleIDs(rules []rule.Rule) map[string]bool {
	ids := map[string]bool{}
	for _, r := range rules {
		ids[r.ID] = true
	}
	return ids
}

// startPartlyCovered posts a SYN flood alert whose window holds 3000 SYNs
// among 900 ordinary packets, and waits for its first decision: applied, the
// SYN rule covering ~77 % of the window, under topUpBelow.
func startPartlyCovered(t *testing.T, seed uint64, recheck time.Duration) (*fakeAgent, *testResponder) {
	t.Helper()
	agent := newFakeAgent(t, ordinaryTraffic(seed, 4000), mix(seed+1, hpingSYNFlood(seed+2, 3000, true), ordinaryTraffic(seed+3, 900)))
	tr := startResponder(t, Config{AgentURL: agent.srv.URL, Recheck: recheck}, true)
	if code, text := tr.post(t, webhookToken, payload(t, "alertmanager-firing.json", nil)); code != 200 {
		t.Fatalf("post: %d %s", code, text)
	}
	first := tr.waitDecision(t, isKind("alert"))
	if first.Outcome != OutcomeApplied || first.Coverage >= topUpBelow || len(agent.store.List()) == 0 {
		t.Fatalf("first decision %s, coverage %.3f, %d rules: want applied, under %.2f", first.Outcome, first.Coverage, len(agent.store.List()), topUpBelow)
	}
	return agent, tr
}

// TestTopUpAddsWhatTheFirstRulesMissed: a flood of two kinds whose second
// kind reaches the window only after the first decision. That decision's
// rules cover part of the window, so the responder looks again by itself,
// adds a rule for the second kind and keeps the first rules as they are
// (same ids, not pushed again).
func TestTopUpAddsWhatTheFirstRulesMissed(t *testing.T) {
	agent, tr := startPartlyCovered(t, 71, 300*time.Millisecond)
	before := agent.store.List()
	// The second kind arrives before the top-up (600 ms) looks.
	now := time.Now()
	fill(agent.window, hpingICMPFlood(75, 3000, true), now.Add(-2*time.Second), now)

	d := tr.waitDecision(t, isTopUp)
	if d.Outcome != OutcomeApplied {
		t.Fatalf("top-up %s err=%q notes %q: want applied", d.Outcome, d.Error, d.Notes)
	}
	after := agent.store.List()
	ids := ruleIDs(after)
	for _, r := range before {
		if !ids[r.ID] {
			t.Errorf("the top-up removed or replaced rule %s (%+v)", r.ID, r.Match)
		}
	}
	if len(agent.store.Adds()) != len(after) {
		t.Errorf("%d rules pushed for %d in force: the top-up pushed a rule again", len(agent.store.Adds()), len(after))
	}
	rp := ReplayRules(after, hpingICMPFlood(76, 1000, true), nil)
	if rp.Coverage < 0.99 {
		t.Errorf("after the top-up the rules cover %.3f of the ICMP flood; rules %+v", rp.Coverage, after)
	}
	// The alert's state holds every rule: a repeat extends them all.
	tr.mu.Lock()
	s := tr.alerts["7c2b1a9e4f3d5e60"]
	n := len(s.rules)
	tr.mu.Unlock()
	if n != len(after) {
		t.Errorf("the alert tracks %d rules, %d in force", n, len(after))
	}
}

// TestTopUpOnce: when the top-up finds nothing new, the rules stay as they
// are, the outcome says so, and no other top-up follows.
func TestTopUpOnce(t *testing.T) {
	agent, tr := startPartlyCovered(t, 81, 50*time.Millisecond)
	before := agent.store.List()
	d := tr.waitDecision(t, isTopUp)
	if d.Outcome != OutcomeRepeat {
		t.Errorf("top-up on a window with nothing new: %s, notes %q; want %s", d.Outcome, d.Notes, OutcomeRepeat)
	}
	time.Sleep(500 * time.Millisecond) // five times the top-up's delay
	n := 0
	for _, d := range tr.Decisions(100) {
		if isTopUp(d) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d top-ups, want 1", n)
	}
	if got := ruleIDs(agent.store.List()); len(got) != len(before) || len(agent.store.Adds()) != len(before) {
		t.Errorf("rules %v after the top-up, %d pushes; before %d rules", got, len(agent.store.Adds()), len(before))
	}
	tr.mu.Lock()
	rules := len(tr.alerts["7c2b1a9e4f3d5e60"].rules)
	tr.mu.Unlock()
	if rules != len(before) {
		t.Errorf("the alert tracks %d rules after a top-up that added nothing, want %d", rules, len(before))
	}
}
