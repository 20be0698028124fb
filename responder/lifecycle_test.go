package responder

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is real time plus an offset a test moves forward.
type fakeClock struct{ offset atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *fakeClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// TestRepeatExtendsAndExpiry: a repeat past half the rules' TTL adds each
// again under a new id of the alert's and then deletes the old copy (no
// duplicates left, no analyst call); when the agent has
// dropped them and their time is up, the sweep records the expiry with the
// last hit counts.
func TestRepeatExtendsAndExpiry(t *testing.T) {
	clock := &fakeClock{}
	llm := newFakeLLM(t, toolAnswer(rulesArgs("icmp flood", map[string]any{"protocol": "icmp", "icmp_type": 8, "length": "28"})))
	agent := newFakeAgent(t, ordinaryTraffic(81, 2000), hpingICMPFlood(9, 2000, true))
	tr := startResponder(t, Config{AgentURL: agent.srv.URL, Analyst: "llm", Now: clock.Now,
		LLM: LLMConfig{BaseURL: llm.srv.URL + "/v1", Model: "m", APIKey: llmKey, Timeout: 5 * time.Second}}, true)
	body := payload(t, "alertmanager-firing.json", nil)
	if code, text := tr.post(t, webhookToken, body); code != 200 {
		t.Fatalf("post: %d %s", code, text)
	}
	d := tr.waitDecision(t, isKind("alert"))
	if d.Outcome != OutcomeApplied || len(d.Applied) != 1 {
		t.Fatalf("decision %s with %d rules", d.Outcome, len(d.Applied))
	}
	id := d.Applied[0].ID

	// A repeat within half the TTL changes nothing.
	tr.post(t, webhookToken, body)
	time.Sleep(100 * time.Millisecond)
	if n := len(agent.store.Adds()); n != 1 {
		t.Fatalf("%d adds after an early repeat, want 1", n)
	}
	// Past half the TTL, a repeat extends the rule: a new copy, then the old one goes.
	clock.Advance(6 * time.Minute)
	if code, text := tr.post(t, webhookToken, body); code != 200 {
		t.Fatalf("repeat: %d %s", code, text)
	}
	rd := tr.waitDecision(t, isKind("repeat"))
	if rd.Outcome != OutcomeRepeat || len(rd.Applied) != 1 || rd.Applied[0].ID == id ||
		!strings.HasPrefix(rd.Applied[0].ID, ruleIDPrefix("7c2b1a9e4f3d5e60")) || rd.Applied[0].Error != "" {
		t.Fatalf("repeat decision %+v", rd)
	}
	rules := agent.store.List()
	if len(rules) != 1 || rules[0].ID != rd.Applied[0].ID {
		t.Fatalf("agent holds %+v after the extension, want only %s", rules, rd.Applied[0].ID)
	}
	id = rd.Applied[0].ID
	if n := llm.calls.Load(); n != 1 {
		t.Errorf("LLM called %d times, want 1 (never for a repeat)", n)
	}

	// The agent expires the rule; once its time is up the sweep records it.
	if err := agent.store.Delete(id); err != nil {
		t.Fatal(err)
	}
	clock.Advance(11 * time.Minute)
	tr.sweep(context.Background())
	ed := tr.waitDecision(t, isKind("expired"))
	if ed.Outcome != OutcomeExpired || len(ed.Applied) != 1 || ed.Applied[0].ID != id || ed.Alert.Name != "PacketScopeSYNFlood" {
		t.Errorf("expiry record %+v", ed)
	}
}
