package responder

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/packetscope/packetscope/rule"
)

var (
	scanner4 = netip.MustParseAddr("198.51.100.7")
	client4  = netip.MustParseAddr("192.0.2.50")
)

// servedClient is a client's connections to port 80: handshakes then
// moving ACKs, n packets.
func servedClient(src netip.Addr, n int) []rule.Packet {
	var out []rule.Packet
	for c := 0; len(out) < n; c++ {
		sport := uint16(40000 + c)
		out = append(out, tcpPkt(src, victim4, sport, 80, rule.FlagSYN, 64240, 60, 64))
		for i := range 4 {
			out = append(out, tcpPkt(src, victim4, sport, 80, rule.FlagACK|uint8(i%2)*rule.FlagPSH, uint16(501+i), uint16(52+i*40), 64))
		}
	}
	return out[:n]
}

// probes are a scan's SYNs (or UDP datagrams) from src to ports, as arriving
// packets and as the kernel's NO_SOCKET reactions to them.
func probes(src netip.Addr, proto uint8, ports []uint16) (pkts []rule.Packet, reactions []rule.Sample) {
	for _, port := range ports {
		p := tcpPkt(src, victim4, 51234, port, rule.FlagSYN, 1024, 44, 46)
		if proto == rule.ProtoUDP {
			p = rule.Packet{Family: 4, Src: src, Dst: victim4, Protocol: rule.ProtoUDP, TTL: 46, Length: 28, HasL4: true, SrcPort: 51234, DstPort: port}
		}
		pkts = append(pkts, p)
		reactions = append(reactions, rule.Sample{Time: time.Unix(0, 0), Interface: "eth0", Packet: p, Reaction: "NO_SOCKET"})
	}
	return pkts, reactions
}

func portRange(lo, hi int) []uint16 {
	var out []uint16
	for p := lo; p <= hi; p++ {
		if p != 80 && p != 443 {
			out = append(out, uint16(p))
		}
	}
	return out
}

func TestMineScanners(t *testing.T) {
	baseline := append(ordinaryTraffic(1, 5000), servedClient(client4, 500)...)
	ordinary := ordinaryTraffic(2, 3000)
	gateway := netip.MustParsePrefix("198.51.100.1/32")

	type want struct {
		src, protocol, flags string
		dstPorts             []string
	}
	for _, tc := range []struct {
		name  string
		build func() ([]rule.Packet, []rule.Sample)
		want  []want // nil: no per-source rule
	}{
		{"TCP SYN scan", func() ([]rule.Packet, []rule.Sample) {
			p, r := probes(scanner4, rule.ProtoTCP, portRange(1, 1000))
			return append(append(ordinary, servedClient(client4, 300)...), p...), r
		}, []want{{src: "198.51.100.7/32", protocol: "tcp"}}},
		{"UDP scan beside a TCP one from another source", func() ([]rule.Packet, []rule.Sample) {
			p, r := probes(scanner4, rule.ProtoUDP, portRange(1, 300))
			p2, r2 := probes(netip.MustParseAddr("203.0.113.9"), rule.ProtoTCP, portRange(1000, 1400))
			return append(append(ordinary, p...), p2...), append(r, r2...)
		}, []want{{src: "203.0.113.9/32", protocol: "tcp"}, {src: "198.51.100.7/32", protocol: "udp"}}},
		{"scanner that is mostly a served client", func() ([]rule.Packet, []rule.Sample) {
			p, r := probes(client4, rule.ProtoTCP, portRange(1, 40))
			return append(append(ordinary, servedClient(client4, 400)...), p...), r
		}, nil},
		{"scanner that is a client of port 80 too", func() ([]rule.Packet, []rule.Sample) {
			src := netip.MustParseAddr("198.51.100.8")
			p, r := probes(src, rule.ProtoTCP, portRange(1, 1000))
			return append(append(ordinary, servedClient(src, 50)...), p...), r
		}, []want{{src: "198.51.100.8/32", protocol: "tcp", flags: "syn,!ack", dstPorts: []string{"0-79", "81-65535"}}}},
		{"distributed scan", func() ([]rule.Packet, []rule.Sample) {
			var pkts []rule.Packet
			var rs []rule.Sample
			for i := range 40 {
				p, r := probes(netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)}), rule.ProtoTCP, portRange(i*30+1, i*30+30))
				pkts, rs = append(pkts, p...), append(rs, r...)
			}
			return append(ordinary, pkts...), rs
		}, nil},
		{"a client retrying one closed port", func() ([]rule.Packet, []rule.Sample) {
			var pkts []rule.Packet
			var rs []rule.Sample
			for range 200 {
				p, r := probes(scanner4, rule.ProtoTCP, []uint16{8443})
				pkts, rs = append(pkts, p...), append(rs, r...)
			}
			return append(ordinary, pkts...), rs
		}, nil},
		{"the gateway scanning", func() ([]rule.Packet, []rule.Sample) {
			p, r := probes(gateway.Addr(), rule.ProtoTCP, portRange(1, 1000))
			return append(ordinary, p...), r
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			attack, reactions := tc.build()
			protected := []netip.Prefix{gateway}
			cs := MineScanners(MinerConfig{}, attack, baseline, reactions, protected)
			var got []want
			for _, c := range cs {
				got = append(got, want{c.Rule.Match.Src, c.Rule.Match.Protocol, c.Rule.Match.TCPFlags, c.Rule.Match.DstPorts})
			}
			if !slices.EqualFunc(got, tc.want, func(a, b want) bool {
				return a.src == b.src && a.protocol == b.protocol && a.flags == b.flags && slices.Equal(a.dstPorts, b.dstPorts)
			}) {
				t.Fatalf("rules %+v, want %+v", got, tc.want)
			}
			// Every proposal passes the guardrails, leaves the served
			// client alone and stops the scan's packets.
			vs := DefaultGuardrails.Check(CheckInput{Attack: attack, Baseline: baseline, Protected: protected, RuleTTL: time.Minute, Origin: "builtin"}, rulesOf(cs))
			for _, v := range vs {
				if !v.Accepted {
					t.Errorf("rule %+v rejected: %s", v.Rule.Match, v.Reason)
				}
			}
			if m, total := ServedCollateral(rulesOf(cs), attack, baseline); m != 0 {
				t.Errorf("rules match %d of %d served packets", m, total)
			}
			if len(cs) > 0 {
				var scan []rule.Packet
				for i := range reactions {
					scan = append(scan, reactions[i].Packet)
				}
				if rp := ReplayRules(rulesOf(cs), scan, nil); rp.Coverage < 1 {
					t.Errorf("rules cover %.3f of the probes, want all", rp.Coverage)
				}
			}
			// MineEvidence uses them for a port_scan alert, and only then.
			if ev := MineEvidence(MinerConfig{}, "port_scan", attack, baseline, reactions, protected); len(cs) > 0 && !slices.EqualFunc(ev, cs, func(a, b Candidate) bool { return a.Rule.Match.Src == b.Rule.Match.Src }) {
				t.Errorf("MineEvidence(port_scan) = %+v, want the scanner rules", ev)
			}
			for _, c := range MineEvidence(MinerConfig{}, "syn_flood", attack, baseline, reactions, protected) {
				if strings.Contains(c.Rule.Reason, "closed ports") {
					t.Errorf("a syn_flood alert got a scanner rule: %+v", c.Rule)
				}
			}
		})
	}
}

// TestPromptShowsReactions: the LLM sees the scanners the reactions show
// and the classes the alert labels name.
func TestPromptShowsReactions(t *testing.T) {
	_, r := probes(scanner4, rule.ProtoTCP, portRange(1, 500))
	ev := &Evidence{Alert: AlertInfo{Name: "PacketScopePortScan", Labels: map[string]string{"attack": "port_scan"}}, Reactions: r}
	p := buildPrompt(ev, 16<<10)
	for _, want := range []string{`"closed_port_probes_by_source":[{"src":"198.51.100.7","closed_ports":498`, `"reactions_by_reason":{"NO_SOCKET":498}`, "reaction=NO_SOCKET"} {
		if !strings.Contains(p, want) {
			t.Errorf("prompt lacks %s:\n%s", want, p)
		}
	}
	for _, want := range []string{"port_scan:", "syn_queue_exhaustion:", "NO_SOCKET"} {
		if !strings.Contains(systemPrompt, want) {
			t.Errorf("system prompt does not describe %s", want)
		}
	}
	if len(p) > 16<<10 {
		t.Errorf("prompt of %d bytes", len(p))
	}
}

// TestPortScanAlertRoundTrip: a port_scan alert through the webhook; the
// responder pulls the agent's window with its reactions and pushes a drop
// rule for the scanner, recording the reactions in the evidence.
func TestPortScanAlertRoundTrip(t *testing.T) {
	pkts, reactions := probes(scanner4, rule.ProtoTCP, portRange(1, 1000))
	attack := append(ordinaryTraffic(12, 500), pkts...)
	agent := newFakeAgent(t, ordinaryTraffic(11, 4000), attack)
	now := time.Now()
	for i, r := range reactions {
		r.Time = now.Add(-20 * time.Second).Add(time.Duration(i) * 10 * time.Millisecond)
		agent.window.AddReaction(r)
	}
	tr := startResponder(t, Config{AgentURLs: []string{agent.srv.URL}}, true)
	body := payload(t, "alertmanager-firing.json", func(m map[string]any) {
		a := m["alerts"].([]any)[0].(map[string]any)
		labels := a["labels"].(map[string]any)
		labels["instance"] = strings.TrimPrefix(agent.srv.URL, "http://")
		labels["alertname"], labels["attack"], labels["protocol"] = "PacketScopePortScan", "port_scan", "tcp"
		delete(labels, "interface")
	})
	if code, text := tr.post(t, webhookToken, body); code != 200 {
		t.Fatalf("post: %d %s", code, text)
	}
	d := tr.waitDecision(t, isKind("alert"))
	if d.Outcome != OutcomeApplied {
		t.Fatalf("decision %s err=%q validations=%+v", d.Outcome, d.Error, d.Validations)
	}
	if d.Evidence == nil || d.Evidence.Reactions != len(reactions) {
		t.Errorf("evidence records %+v reactions, want %d", d.Evidence, len(reactions))
	}
	adds := agent.store.Adds()
	if len(adds) != 1 || adds[0].Match.Src != "198.51.100.7/32" || adds[0].Match.Protocol != "tcp" || adds[0].Action != rule.ActionDrop {
		t.Fatalf("pushed %+v, want one drop for 198.51.100.7/32 tcp", adds)
	}
	if !strings.Contains(adds[0].Reason, "probed 998 distinct closed ports") {
		t.Errorf("rule reason %q does not come from the reactions", adds[0].Reason)
	}
}
