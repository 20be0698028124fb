package responder

import (
	"encoding/json"
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

// TestGuardrailsKeepPathMTU: a drop of ICMP destination unreachable (v4
// type 3: "fragmentation needed" is one of its codes) or packet too big (v6
// type 2) from many hosts would break path MTU discovery for every
// connection through a smaller link: it goes in as a rate_limit. Other ICMP
// types, and one attacking host's ICMP, are dropped as proposed.
func TestGuardrailsKeepPathMTU(t *testing.T) {
	errs := make([]rule.Packet, 500)
	for i := range errs {
		errs[i] = rule.Packet{Family: 4, Src: netip.AddrFrom4([4]byte{byte(20 + i%100), byte(i), 1, 1}), Dst: victim4,
			Protocol: rule.ProtoICMP, TTL: 50, Length: 56, HasL4: true, ICMPType: 3}
		if i%2 == 0 { // one host sends half of them
			errs[i].Src = netip.MustParseAddr("20.0.0.1")
		}
	}
	in := CheckInput{Attack: errs, Baseline: ordinaryTraffic(3, 2000), Mode: ModeEnforce, RuleTTL: 600e9, Origin: "builtin"}
	three, eight := 3, 8
	for _, tc := range []struct {
		match rule.Match
		want  rule.Action
	}{
		{rule.Match{Protocol: "icmp", ICMPType: &three, Length: "56-72"}, rule.ActionRateLimit},
		{rule.Match{Protocol: "icmp", Length: "56"}, rule.ActionRateLimit},
		{rule.Match{Protocol: "icmp", ICMPType: &eight, Length: "56"}, rule.ActionDrop},
		{rule.Match{Src: errs[0].Src.String() + "/32", Protocol: "icmp"}, rule.ActionDrop},
	} {
		js, _ := json.Marshal(tc.match)
		v := DefaultGuardrails.Check(in, []rule.Rule{{Action: rule.ActionDrop, Match: tc.match}})[0]
		if tc.want == rule.ActionDrop && tc.match.ICMPType != nil && *tc.match.ICMPType == 8 {
			// coverage 0: refused, and never rate-limited for path MTU.
			if v.Rule.Action != rule.ActionDrop {
				t.Errorf("%s: action %s, want drop", js, v.Rule.Action)
			}
			continue
		}
		if !v.Accepted || v.Rule.Action != tc.want || tc.want == rule.ActionRateLimit && v.Rule.RatePPS != pathMTURatePPS {
			t.Errorf("%s: accepted %v, %s at %d pps, want %s (reason %q)", js, v.Accepted, v.Rule.Action, v.Rule.RatePPS, tc.want, v.Reason)
		}
	}
}

// TestGuardrailsCountConnectionsNotPackets: a rule that drops every new
// connection to a busy service is a sliver of its packets (bulk transfers
// and ACKs outnumber the SYNs by thousands), so on packets alone it passed
// the collateral limit. It is judged on the baseline's SYNs; a flood's own
// fingerprint, which no client's SYN carries, still passes.
func TestGuardrailsCountConnectionsNotPackets(t *testing.T) {
	client := netip.MustParseAddr("203.0.113.20")
	bulk := netip.MustParseAddr("203.0.113.30")
	var baseline []rule.Packet
	for i := range 20000 {
		baseline = append(baseline, tcpPkt(bulk, victim4, 45000, 5201, rule.FlagACK|rule.FlagPSH, 64000, 1500, 64))
		if i%100 == 0 { // a client's new connection to the web service, then its request
			baseline = append(baseline, tcpPkt(client, victim4, uint16(30000+i/100), 80, rule.FlagSYN, 64240, 60, 64),
				tcpPkt(client, victim4, uint16(30000+i/100), 80, rule.FlagACK|rule.FlagPSH, 502, 120, 64))
		}
	}
	attack := mix(44, hpingSYNFlood(45, 3000, true), baseline[:3000])
	every, syn := rule.Match{Protocol: "tcp", DstPorts: []string{"80"}, TCPFlags: "syn,!ack"}, rule.Match{Protocol: "tcp", DstPorts: []string{"80"}, TCPFlags: "syn,!ack", TCPWindow: "512", Length: "40"}
	for _, tc := range []struct {
		name       string
		match      rule.Match
		wantReason string // "" = accepted
	}{
		{"every SYN to the service", every, "of the baseline's new connections is above 0.0100: it matches 200 of its 200 TCP SYNs"},
		{"the flood's fingerprint", syn, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := CheckInput{Attack: attack, Baseline: baseline, Protected: []netip.Prefix{nodeAddr}, Mode: "enforce", RuleTTL: 10 * time.Minute, Origin: "llm"}
			v := DefaultGuardrails.Check(in, []rule.Rule{{Action: rule.ActionDrop, Match: tc.match, TTLSeconds: 600}})[0]
			if v.Collateral > DefaultGuardrails.MaxCollateral {
				t.Fatalf("packet collateral %.4f: the case needs a rule under the packet limit", v.Collateral)
			}
			if tc.wantReason == "" {
				if !v.Accepted || v.Rule.Action != rule.ActionDrop {
					t.Errorf("accepted %v as %s, reason %q: want the fingerprint dropped", v.Accepted, v.Rule.Action, v.Reason)
				}
				return
			}
			if v.Accepted || !strings.Contains(v.Reason, tc.wantReason) {
				t.Errorf("accepted %v, reason %q; want rejected for %q", v.Accepted, v.Reason, tc.wantReason)
			}
		})
	}
}
