package responder

import (
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/rule"
)

const (
	slowAttacker = "10.220.0.2"
	slowMixed    = "10.220.0.3" // a proxy: one slow client behind it, and ordinary ones
	slowClient   = "10.221.0.2"
)

// slowlorisPackets are what the guard samples of n slow connections from
// src to port 80: the handshake's SYN and ACK, then a header line now and
// then (PSH|ACK with a few bytes): to served.go, established connections.
func slowlorisPackets(src string, n, lines int) []rule.Packet {
	var out []rule.Packet
	for c := range n {
		p := rule.Packet{Family: 4, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr("10.10.10.10"),
			Protocol: rule.ProtoTCP, TTL: 64, HasL4: true, SrcPort: uint16(40000 + c), DstPort: 80}
		syn, ack := p, p
		syn.TCPFlags, syn.Length, syn.TCPWindow = rule.FlagSYN, 60, 64240
		ack.TCPFlags, ack.Length, ack.TCPWindow = rule.FlagACK, 52, 502
		out = append(out, syn, ack)
		for i := range lines {
			l := p
			l.TCPFlags, l.Length, l.TCPWindow = rule.FlagACK|rule.FlagPSH, uint16(52+20+i%5), 502
			out = append(out, l)
		}
	}
	return out
}

func slowReport() *agentapi.SlowConnReport {
	return &agentapi.SlowConnReport{Inbound: 400, Slow: 330, SlowSources: 5, Sources: []agentapi.SlowSource{
		{Src: slowAttacker, Slow: 280, DstPorts: []string{"80"}},
		{Src: slowMixed, Slow: 40, Normal: 6, DstPorts: []string{"80", "8080"}},
		{Src: "10.10.10.1", Slow: 5, DstPorts: []string{"80"}}, // the gateway: protected, and too few anyway
		{Src: "192.0.2.7", Slow: 3, Normal: 2, DstPorts: []string{"80"}},
		{Src: "192.0.2.8", Slow: 2, DstPorts: []string{"443"}},
	}}
}

func TestMineSlow(t *testing.T) {
	cands := MineSlow(MinerConfig{}, slowReport(), []netip.Prefix{nodeAddr, nodeGateway})
	if len(cands) != 2 {
		t.Fatalf("%d candidates, want 2 (the attacker and the proxy): %+v", len(cands), cands)
	}
	a, p := cands[0].Rule, cands[1].Rule
	if a.Action != rule.ActionDrop || a.Match.Src != slowAttacker+"/32" || a.Match.Protocol != "tcp" ||
		strings.Join(a.Match.DstPorts, ",") != "80" || a.Match.TCPFlags != "" {
		t.Errorf("attacker's rule %+v, want drop of %s/32 tcp to port 80", a, slowAttacker)
	}
	if p.Action != rule.ActionRateLimit || p.RatePPS != slowSharedSYNRate || p.Match.TCPFlags != "syn,!ack" || p.Match.Src != slowMixed+"/32" {
		t.Errorf("proxy's rule %+v, want a rate_limit of its SYNs", p)
	}
	if c := MineSlow(MinerConfig{}, nil, nil); c != nil {
		t.Errorf("no report: %+v", c)
	}
}

// TestGuardrailsSlowExemption: a rule on a source holding slow connections
// cuts established connections, which the guardrails refuse, except under a
// slow_connections alert for a source the agent reports; never-block,
// breadth and the rule cap still apply, and a source with ordinary
// connections too is only rate-limited, whatever the analyst asked.
func TestGuardrailsSlowExemption(t *testing.T) {
	baseline := append(ordinaryTraffic(3, 2000), servedACKs(1, 10, 30)...)
	attack := mix(1, append(slowlorisPackets(slowAttacker, 280, 2), slowlorisPackets(slowMixed, 40, 2)...), servedACKs(2, 10, 10))
	rep := slowReport()
	base := CheckInput{Attack: attack, Baseline: baseline, Mode: ModeEnforce, RuleTTL: 600e9, Origin: "llm", SampleEvery: 16, BaselineSeconds: 60,
		Protected: []netip.Prefix{nodeAddr, nodeGateway}}
	slowIn := base
	slowIn.SlowSources, slowIn.SlowTotal = slowEvidence(AttackSlowConnections, rep), rep.Slow
	drop := func(src string, m rule.Match) rule.Rule {
		m.Src = src
		return rule.Rule{Action: rule.ActionDrop, Match: m}
	}
	tcp80 := rule.Match{Protocol: "tcp", DstPorts: []string{"80"}}

	if v := DefaultGuardrails.Check(base, []rule.Rule{drop(slowAttacker+"/32", tcp80)})[0]; v.Accepted || !strings.Contains(v.Reason, "established") {
		t.Errorf("without slow-connection evidence: accepted %v, reason %q; want refused as cutting established connections", v.Accepted, v.Reason)
	}
	if slowEvidence("syn_flood", rep) != nil {
		t.Errorf("slow evidence used for a syn_flood alert")
	}

	cases := []struct {
		name    string
		in      CheckInput
		r       rule.Rule
		accept  bool
		action  rule.Action
		flags   string
		because string
	}{
		{"attacker", slowIn, drop(slowAttacker+"/32", tcp80), true, rule.ActionDrop, "", ""},
		{"attacker, any port", slowIn, drop(slowAttacker+"/32", rule.Match{Protocol: "tcp"}), true, rule.ActionDrop, "", ""},
		{"proxy asked to be dropped", slowIn, drop(slowMixed+"/32", tcp80), true, rule.ActionRateLimit, "syn,!ack", ""},
		{"not about tcp", slowIn, drop(slowAttacker+"/32", rule.Match{}), false, "", "", "established"},
		{"a /24 around the attacker", slowIn, drop("10.220.0.0/24", tcp80), false, "", "", "established"},
		{"a served client not reported slow", slowIn, drop(slowClient+"/32", rule.Match{Protocol: "tcp", DstPorts: []string{"5222"}}), false, "", "", "established"},
		{"the protected gateway", slowIn, drop("10.10.10.1/32", tcp80), false, "", "", "protected"},
		{"breadth", slowIn, drop("10.0.0.0/8", tcp80), false, "", "", "broader"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := DefaultGuardrails.Check(c.in, []rule.Rule{c.r})[0]
			if v.Accepted != c.accept || c.accept && (v.Rule.Action != c.action || v.Rule.Match.TCPFlags != c.flags) ||
				!c.accept && !strings.Contains(v.Reason, c.because) {
				t.Errorf("accepted %v action %s flags %q reason %q notes %q; want accepted %v action %s flags %q reason ~%q",
					v.Accepted, v.Rule.Action, v.Rule.Match.TCPFlags, v.Reason, v.Notes, c.accept, c.action, c.flags, c.because)
			}
		})
	}

	// A source that held no ordinary connection at the listing but was a
	// client before the attack (its requests in the baseline): rate-limited.
	regular := slowIn
	regular.Baseline = append(slices.Clone(baseline), slowlorisPackets(slowAttacker, 30, 2)...)
	if v := DefaultGuardrails.Check(regular, []rule.Rule{drop(slowAttacker+"/32", tcp80)})[0]; !v.Accepted || v.Rule.Action != rule.ActionRateLimit || v.Rule.Match.TCPFlags != "syn,!ack" {
		t.Errorf("a slow source that was a client in the baseline: accepted %v, action %s, flags %q, reason %q; want a SYN rate_limit", v.Accepted, v.Rule.Action, v.Rule.Match.TCPFlags, v.Reason)
	}

	never := DefaultGuardrails
	never.NeverBlock = []netip.Prefix{netip.MustParsePrefix(slowAttacker + "/32")}
	if v := never.Check(slowIn, []rule.Rule{drop(slowAttacker+"/32", tcp80)})[0]; v.Accepted || !strings.Contains(v.Reason, "protected") {
		t.Errorf("never-block source: accepted %v, reason %q", v.Accepted, v.Reason)
	}
	capped := slowIn
	capped.ActiveRules = DefaultGuardrails.MaxRules
	if v := DefaultGuardrails.Check(capped, []rule.Rule{drop(slowAttacker+"/32", tcp80)})[0]; v.Accepted || !strings.Contains(v.Reason, "rule cap") {
		t.Errorf("rule cap: accepted %v, reason %q", v.Accepted, v.Reason)
	}
	long := drop(slowAttacker+"/32", tcp80)
	long.TTLSeconds = 86400
	if v := DefaultGuardrails.Check(slowIn, []rule.Rule{long})[0]; !v.Accepted || v.Rule.TTLSeconds != 600 {
		t.Errorf("ttl: accepted %v, ttl %d, want 600", v.Accepted, v.Rule.TTLSeconds)
	}
}

// TestResponderSlowConnections: a slow_connections alert through the
// webhook, the real agent API and client: the agent's slow-connection
// report reaches the analyst and the audit trail, and the attacker's
// source is dropped while the proxy is rate-limited.
func TestResponderSlowConnections(t *testing.T) {
	for _, analyst := range []AnalystName{AnalystBuiltin, AnalystLLM} {
		t.Run(string(analyst), func(t *testing.T) {
			w := agentapi.NewTrafficWindow(agentapi.WindowConfig{
				MaxSamples: 200_000, MaxAge: 10 * time.Minute, SampleEvery: 1,
				Protected:       func() []netip.Prefix { return []netip.Prefix{nodeAddr, nodeGateway} },
				SlowConnections: slowReport,
			})
			now := time.Now()
			fill(w, append(ordinaryTraffic(81, 2000), servedACKs(1, 10, 30)...), now.Add(-6*time.Minute), now.Add(-95*time.Second))
			fill(w, mix(1, append(slowlorisPackets(slowAttacker, 280, 2), slowlorisPackets(slowMixed, 40, 2)...), ordinaryTraffic(82, 500)),
				now.Add(-29*time.Second), now.Add(-100*time.Millisecond))
			st := newMemStore()
			srv := httptest.NewServer(agentapi.NewAPI(slog.New(slog.DiscardHandler), st, w, agentToken))
			t.Cleanup(srv.Close)
			cfg := Config{AgentURL: srv.URL, Analyst: analyst}
			var llm *fakeLLM
			if analyst == AnalystLLM {
				llm = newFakeLLM(t, toolAnswer(rulesArgs("slowloris", map[string]any{"src": slowAttacker + "/32", "protocol": "tcp", "dst_ports": []string{"80"}},
					map[string]any{"src": slowMixed + "/32", "protocol": "tcp", "dst_ports": []string{"80"}})))
				cfg.LLM = LLMConfig{BaseURL: llm.srv.URL + "/v1", Model: "m", APIKey: llmKey, Timeout: 5 * time.Second}
			}
			tr := startResponder(t, cfg, true)
			body := payload(t, "alertmanager-firing.json", func(m map[string]any) {
				for _, a := range m["alerts"].([]any) {
					l := a.(map[string]any)["labels"].(map[string]any)
					l["alertname"], l["attack"] = "PacketScopeSlowConnections", AttackSlowConnections
				}
			})
			if code, text := tr.post(t, webhookToken, body); code != 200 {
				t.Fatalf("post: %d %s", code, text)
			}
			d := tr.waitDecision(t, isKind("alert"))
			if d.Outcome != OutcomeApplied || d.Analyst != string(analyst) {
				t.Fatalf("decision %s by %s: %+v", d.Outcome, d.Analyst, d.Validations)
			}
			if d.Evidence == nil || d.Evidence.SlowConnections == nil || d.Evidence.SlowConnections.TopSource() != 280 {
				t.Errorf("the audit trail lacks the slow-connection evidence: %+v", d.Evidence)
			}
			got := map[string]rule.Rule{}
			for _, r := range st.List() {
				got[r.Match.Src] = r
			}
			if r, ok := got[slowAttacker+"/32"]; !ok || r.Action != rule.ActionDrop {
				t.Errorf("attacker: %+v, want a drop rule; rules %+v", r, st.List())
			}
			if r, ok := got[slowMixed+"/32"]; !ok || r.Action != rule.ActionRateLimit || r.Match.TCPFlags != "syn,!ack" {
				t.Errorf("proxy: %+v, want a rate_limit of its SYNs; rules %+v", r, st.List())
			}
			if len(got) != 2 {
				t.Errorf("%d rules, want 2: %+v", len(got), st.List())
			}
			if llm != nil {
				llm.mu.Lock()
				p := strings.Join(llm.bodies, "\n")
				llm.mu.Unlock()
				if !strings.Contains(p, `\"slow\":280`) || !strings.Contains(p, slowAttacker) || !strings.Contains(p, "slowloris") {
					t.Errorf("the LLM's prompt lacks the slow-connection evidence or its description:\n%s", p)
				}
			}
		})
	}
}
