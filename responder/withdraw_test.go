package responder

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/packetscope/packetscope/rule"
)

// TestWithdrawRuleThatCutsServed: a rule that passed the guardrails on the
// windows before it (a spoofed SYN flood's window size, 512, which no
// ordinary client in the baseline used) later cuts a connection the node
// serves — a client whose stack advertises the same window. The sweep sees
// the served connection's packets hit after the rule went in, deletes the
// rule and records the withdrawal; while only the flood hits it, the rule
// stays.
func TestWithdrawRuleThatCutsServed(t *testing.T) {
	llm := newFakeLLM(t, toolAnswer(rulesArgs("syn flood", map[string]any{"protocol": "tcp", "dst_ports": []string{"80"}, "tcp_window": "512"})))
	agent := newFakeAgent(t, ordinaryTraffic(81, 2000), hpingSYNFlood(9, 2000, true))
	tr := startResponder(t, Config{AgentURL: agent.srv.URL, Analyst: "llm",
		LLM: LLMConfig{BaseURL: llm.srv.URL + "/v1", Model: "m", APIKey: llmKey, Timeout: 5 * time.Second}}, true)
	if code, text := tr.post(t, webhookToken, payload(t, "alertmanager-firing.json", nil)); code != 200 {
		t.Fatalf("post: %d %s", code, text)
	}
	d := tr.waitDecision(t, isKind("alert"))
	if d.Outcome != OutcomeApplied || len(d.Applied) != 1 {
		t.Fatalf("decision %s with %d rules: %+v", d.Outcome, len(d.Applied), d.Validations)
	}

	// Samples after the rule went in (the window reports up to now).
	since := func() time.Time { time.Sleep(300 * time.Millisecond); return time.Now().Add(-250 * time.Millisecond) }

	// More of the flood: the rule stays.
	fill(agent.window, hpingSYNFlood(10, 500, true), since(), time.Now())
	tr.sweep(context.Background())
	if n := len(agent.store.List()); n != 1 {
		t.Fatalf("%d rules after a sweep with only the flood hitting, want 1", n)
	}

	// A client whose SYN and segments carry window 512 connects and sends.
	client := netip.MustParseAddr("203.0.113.9")
	conn := []rule.Packet{tcpPkt(client, victim4, 40000, 80, rule.FlagSYN, 512, 60, 57)}
	for i := range 40 {
		conn = append(conn, tcpPkt(client, victim4, 40000, 80, rule.FlagACK|rule.FlagPSH*uint8(i%2), 512, uint16(52+i*10), 57))
	}
	fill(agent.window, conn, since(), time.Now())
	tr.sweep(context.Background())
	w := tr.waitDecision(t, isKind("withdrawn"))
	if w.Outcome != OutcomeWithdrawn || len(w.Applied) != 1 || w.Applied[0].ID != d.Applied[0].ID || len(w.Notes) != 1 {
		t.Errorf("withdrawal record %+v", w)
	}
	if rules := agent.store.List(); len(rules) != 0 {
		t.Errorf("agent still holds %+v", rules)
	}
}

// TestWithdrawLeavesSourceRules: a rule for one source cuts that host's
// connections on purpose (a slow client's, say): the check leaves it even
// when its hits are packets of a connection with a handshake, and flags the
// same rule without the source.
func TestWithdrawLeavesSourceRules(t *testing.T) {
	client := netip.MustParseAddr("203.0.113.9")
	agent := newFakeAgent(t, nil, nil)
	tr := startResponder(t, Config{AgentURL: agent.srv.URL}, false)
	add := func(m rule.Match) rule.Rule {
		r, err := agent.store.Add(rule.Rule{Action: rule.ActionDrop, TTLSeconds: 600, Match: m})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	source := add(rule.Match{Src: client.String() + "/32", Protocol: "tcp"})
	shape := add(rule.Match{Protocol: "tcp", DstPorts: []string{"80"}, TCPWindow: "512"})
	time.Sleep(300 * time.Millisecond)
	conn := []rule.Packet{tcpPkt(client, victim4, 40000, 80, rule.FlagSYN, 512, 60, 57)}
	for i := range 40 {
		conn = append(conn, tcpPkt(client, victim4, 40000, 80, rule.FlagACK, 512, uint16(52+i*10), 57))
	}
	fill(agent.window, conn, time.Now().Add(-250*time.Millisecond), time.Now())
	cut, err := tr.cutsServed(context.Background(), tr.agentFor(agent.srv.URL), []rule.Rule{source, shape})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cut[source.ID]; ok {
		t.Errorf("the one-source rule would be withdrawn: %q", cut[source.ID])
	}
	if _, ok := cut[shape.ID]; !ok {
		t.Errorf("the shape rule cutting the same connection is not flagged: %v", cut)
	}
}
