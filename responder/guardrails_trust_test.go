package responder

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/packetscope/packetscope/rule"
)

// resolverTraffic is a DNS resolver's answers to the node: udp from port 53.
func resolverTraffic(src netip.Addr, n int) []rule.Packet {
	out := make([]rule.Packet, n)
	for i := range out {
		out[i] = rule.Packet{Family: 4, Src: src, Dst: victim4, Protocol: rule.ProtoUDP, TTL: 60, Length: 120,
			HasL4: true, SrcPort: 53, DstPort: uint16(40000 + i)}
	}
	return out
}

// TestGuardrailsDistrust: what an analyst (a model, say) may propose that
// the guardrails must not let through as it is.
func TestGuardrailsDistrust(t *testing.T) {
	resolver := netip.MustParseAddr("198.51.100.53")
	baseline := append(ordinaryTraffic(41, 3000), resolverTraffic(resolver, 15)...) // 0.5 % of the baseline
	// The flood spoofs the resolver among random sources.
	attack := append(hpingICMPFlood(42, 2000, true), resolverTraffic(resolver, 1500)...)
	icmp8 := 8
	for _, tc := range []struct {
		name       string
		rule       rule.Rule
		baseline   []rule.Packet
		ttl        time.Duration
		wantReason string // "" = accepted
		wantAction rule.Action
		wantTTL    int64
	}{
		{name: "whole-domain ranges are no narrowing",
			rule:     rule.Rule{Action: rule.ActionDrop, Match: rule.Match{TTL: "0-255", Length: "0-65535"}, TTLSeconds: 600},
			baseline: baseline, wantReason: "no narrowing field"},
		{name: "all ports is no narrowing",
			rule:     rule.Rule{Action: rule.ActionDrop, Match: rule.Match{DstPorts: []string{"0-30000", "30001-65535"}, TTL: "0-255"}, TTLSeconds: 600},
			baseline: baseline, wantReason: "no narrowing field"},
		{name: "a baseline talker the flood spoofs",
			rule:     rule.Rule{Action: rule.ActionDrop, Match: rule.Match{Src: resolver.String() + "/32", Protocol: "udp", SrcPorts: []string{"53"}}, TTLSeconds: 600},
			baseline: baseline, wantReason: "sends 0.0050 of the baseline"},
		{name: "a model's day-long TTL is cut to the rule TTL",
			rule:     rule.Rule{Action: rule.ActionDrop, Match: rule.Match{Protocol: "icmp", ICMPType: &icmp8, Length: "28"}, TTLSeconds: 86400},
			baseline: baseline, ttl: 10 * time.Minute, wantAction: rule.ActionDrop, wantTTL: 600},
		{name: "no baseline: monitor only",
			rule:     rule.Rule{Action: rule.ActionDrop, Match: rule.Match{Protocol: "icmp", ICMPType: &icmp8, Length: "28"}, TTLSeconds: 600},
			baseline: nil, wantAction: rule.ActionMonitor, wantTTL: 600},
		{name: "a baseline too small to measure: monitor only",
			rule:     rule.Rule{Action: rule.ActionDrop, Match: rule.Match{Protocol: "icmp", ICMPType: &icmp8, Length: "28"}, TTLSeconds: 600},
			baseline: ordinaryTraffic(43, 40), wantAction: rule.ActionMonitor, wantTTL: 600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := DefaultGuardrails
			ttl := tc.ttl
			if ttl == 0 {
				ttl = 10 * time.Minute
			}
			vs := g.Check(CheckInput{Attack: attack, Baseline: tc.baseline, Protected: []netip.Prefix{nodeAddr}, Mode: "enforce", RuleTTL: ttl, Origin: "llm"}, []rule.Rule{tc.rule})
			v := vs[0]
			if tc.wantReason != "" {
				if v.Accepted || !strings.Contains(v.Reason, tc.wantReason) {
					t.Fatalf("accepted %v, reason %q; want rejected for %q", v.Accepted, v.Reason, tc.wantReason)
				}
				return
			}
			if !v.Accepted {
				t.Fatalf("rejected: %s", v.Reason)
			}
			if v.Rule.Action != tc.wantAction || v.Rule.TTLSeconds != tc.wantTTL {
				t.Errorf("installed as %s for %d s, want %s for %d s (notes %v)", v.Rule.Action, v.Rule.TTLSeconds, tc.wantAction, tc.wantTTL, v.Notes)
			}
			if (tc.wantAction == rule.ActionMonitor) != v.Unmeasured {
				t.Errorf("unmeasured %v", v.Unmeasured)
			}
		})
	}
}

// TestUnmeasuredPromoted: a decision without a baseline installs monitor
// rules; a repeat after the re-analysis interval, once the agent has a
// baseline, replaces them with enforcing ones.
func TestUnmeasuredPromoted(t *testing.T) {
	agent := newFakeAgent(t, nil, hpingICMPFlood(44, 3000, true))
	tr := startResponder(t, Config{AgentURL: agent.srv.URL, Reanalyze: 50 * time.Millisecond}, true)
	body := payload(t, "alertmanager-firing.json", nil)
	if code, text := tr.post(t, webhookToken, body); code != 200 {
		t.Fatalf("post: %d %s", code, text)
	}
	d := tr.waitDecision(t, isKind("alert"))
	if d.Outcome != OutcomeMonitor {
		t.Fatalf("outcome %s, want monitor without a baseline", d.Outcome)
	}
	for _, r := range agent.store.List() {
		if r.Action != rule.ActionMonitor {
			t.Fatalf("rule %s enforces (%s) with no baseline", r.ID, r.Action)
		}
	}
	// The baseline appears (the responder's own snapshots, or a longer
	// window): the fake agent's window gets ordinary traffic back in time.
	now := time.Now()
	fill(agent.window, ordinaryTraffic(45, 3000), now.Add(-6*time.Minute), now.Add(-95*time.Second))
	time.Sleep(100 * time.Millisecond)
	if code, text := tr.post(t, webhookToken, body); code != 200 {
		t.Fatalf("repeat: %d %s", code, text)
	}
	d2 := tr.waitDecision(t, func(d Decision) bool { return d.Kind == "alert" && d.Outcome == OutcomeApplied })
	if len(d2.Applied) == 0 {
		t.Fatal("promotion applied no rule")
	}
	for _, r := range agent.store.List() {
		if r.Action == rule.ActionMonitor {
			t.Errorf("monitor rule %s left beside the promoted ones", r.ID)
		}
	}
}
