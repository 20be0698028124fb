package responder

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/rule"
)

// TestServedFlows: established connections are told from floods by their
// own packets — moving headers or a handshake on the same 4-tuple — and
// spoofed or constant floods are not.
func TestServedFlows(t *testing.T) {
	for _, tc := range []struct {
		name   string
		pkts   []rule.Packet
		served int // packets counted as served
	}{
		{"bulk upload", classPackets(t, "bulk_upload", 5, 2000), 2000},
		{"parallel connections", classPackets(t, "parallel_conns", 5, 2000), 2000},
		{"spoofed ack flood", classPackets(t, "ack_flood_spoofed", 5, 2000), 0},
		{"syn-ack reflection with retransmits", classPackets(t, "tcp_reflection", 5, 2000), 0},
		{"one 4-tuple, constant header", func() []rule.Packet {
			p := tcpPkt(victim4, victim4, 1234, 80, rule.FlagACK, 512, 40, 64)
			p.Src = hpingSYNFlood(1, 1, false)[0].Src
			out := make([]rule.Packet, 500)
			for i := range out {
				out[i] = p
			}
			return out
		}(), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServedFlows(nil, tc.pkts)
			if got := len(s.pkts); got < tc.served*95/100 || got > tc.served {
				t.Errorf("%d of %d packets served, want %d", got, len(tc.pkts), tc.served)
			}
		})
	}
}

// TestGuardrailsRefuseServed: a rule that matches the established
// connections the node serves is refused, even where its collateral on
// the baseline as a whole is under the limit.
func TestGuardrailsRefuseServed(t *testing.T) {
	upload := classPackets(t, "bulk_upload", 6, 3000)
	baseline := append(ordinaryTraffic(3, 20000), upload[:150]...)
	in := CheckInput{Attack: mix(1, upload, ordinaryTraffic(4, 1000)), Baseline: baseline, Mode: "enforce", RuleTTL: 600e9, Origin: "builtin"}
	vs := DefaultGuardrails.Check(in, []rule.Rule{
		{Action: rule.ActionDrop, Match: rule.Match{Protocol: "tcp", DstPorts: []string{"443"}, TCPFlags: "ack,!syn,!rst,!fin", Length: "1500"}},
		{Action: rule.ActionDrop, Match: rule.Match{Protocol: "tcp", DstPorts: []string{"443"}, TCPFlags: "syn,!ack", Length: "40"}},
	})
	if vs[0].Accepted || !strings.Contains(vs[0].Reason, "established connections") {
		t.Errorf("rule on the upload's segments: accepted %v, reason %q (collateral %.4f)", vs[0].Accepted, vs[0].Reason, vs[0].Collateral)
	}
	if strings.Contains(vs[1].Reason, "established") {
		t.Errorf("a SYN rule refused as hitting established connections: %q", vs[1].Reason)
	}
}

// servedACKs are the established packets of n connections from one client
// to port 5222 (XMPP): ACKs whose window moves, as a served transfer's do.
func servedACKs(seed, conns, perConn int) []rule.Packet {
	var out []rule.Packet
	for c := range conns {
		for i := range perConn {
			out = append(out, rule.Packet{Family: 4, Src: netip.MustParseAddr("10.221.0.2"), Dst: netip.MustParseAddr("10.221.0.1"),
				Protocol: rule.ProtoTCP, TTL: 64, Length: 52, HasL4: true, SrcPort: uint16(40000 + seed*1000 + c), DstPort: 5222,
				TCPFlags: rule.FlagACK, TCPWindow: uint16(500 + i%7)})
		}
	}
	return out
}

// TestGuardrailsRateLimitServedOverlap (#12 item 7): a spoofed ACK flood
// whose packets look like the served clients' ACKs to the same port. A drop
// would cut the served connections; the rule goes in as a rate_limit at the
// served flows' baseline rate (times the headroom) instead, and only where
// the rule's hits are the flood: when they are the served traffic itself
// (a bulk upload), it is still refused, and without sample rates to derive
// a rate from, too.
func TestGuardrailsRateLimitServedOverlap(t *testing.T) {
	flood := make([]rule.Packet, 2000)
	for i := range flood {
		flood[i] = rule.Packet{Family: 4, Src: netip.AddrFrom4([4]byte{byte(1 + i%200), byte(i / 200), 7, byte(i)}), Dst: netip.MustParseAddr("10.221.0.1"),
			Protocol: rule.ProtoTCP, TTL: 64, Length: 52, HasL4: true, SrcPort: uint16(1024 + i*7919%64000), DstPort: 5222,
			TCPFlags: rule.FlagACK, TCPWindow: uint16(500 + i%7)}
	}
	baseline := append(ordinaryTraffic(3, 2000), servedACKs(1, 10, 30)...) // 300 served packets in 60 s at 1 in 16: 80 pps
	attack := mix(1, flood, servedACKs(2, 10, 5))
	ackRule := rule.Rule{Action: rule.ActionDrop, Match: rule.Match{Protocol: "tcp", DstPorts: []string{"5222"}, TCPFlags: "ack,!syn,!rst,!fin,!psh", Length: "52"}}
	in := CheckInput{Attack: attack, Baseline: baseline, Mode: ModeEnforce, RuleTTL: 600e9, Origin: "builtin", SampleEvery: 16, BaselineSeconds: 60}

	v := DefaultGuardrails.Check(in, []rule.Rule{ackRule})[0]
	if !v.Accepted || v.Rule.Action != rule.ActionRateLimit || v.Rule.RatePPS != 160 {
		t.Errorf("ACK flood over served ACKs: accepted %v, action %s at %d pps (want rate_limit at 160: 2 x 80 pps), reason %q, notes %q",
			v.Accepted, v.Rule.Action, v.Rule.RatePPS, v.Reason, v.Notes)
	}

	in.SampleEvery = 0
	if v := DefaultGuardrails.Check(in, []rule.Rule{ackRule})[0]; v.Accepted || !strings.Contains(v.Reason, "established connections") {
		t.Errorf("without a baseline rate: accepted %v (%s), reason %q; want refused", v.Accepted, v.Rule.Action, v.Reason)
	}

	// The miner keeps the overlapping fingerprint for the guardrails to
	// rate-limit, instead of leaving the flood without a rule.
	cands := MineAlert(MinerConfig{}, "ack_flood", attack, baseline, nil)
	var rules []rule.Rule
	for _, c := range cands {
		rules = append(rules, c.Rule)
	}
	in.SampleEvery = 16
	limited := 0
	for _, v := range DefaultGuardrails.Check(in, rules) {
		if v.Accepted && v.Rule.Action == rule.ActionRateLimit {
			limited++
		}
	}
	if limited == 0 {
		t.Errorf("miner: no rate-limited rule for the flood among %+v", cands)
	}
}

// TestServedUDPPeers: a QUIC download (heavy UDP from a CDN's port 443 to
// the node's ephemeral port) looks like a reflection from one source to the
// miner. When the agent lists the connected UDP socket's peer, its packets
// are served traffic: no candidate for them, and a rule matching them is
// refused. Without the peer list the miner proposes one (what the list
// prevents).
func TestServedUDPPeers(t *testing.T) {
	cdn := netip.MustParseAddrPort("198.51.100.20:443")
	quic := make([]rule.Packet, 3000)
	for i := range quic {
		quic[i] = rule.Packet{Family: 4, Src: cdn.Addr(), Dst: victim4, Protocol: rule.ProtoUDP, TTL: 55, HasL4: true,
			Length: uint16(1200 + i*37%150), SrcPort: cdn.Port(), DstPort: 51000}
	}
	baseline := ordinaryTraffic(3, 2000)
	attack := mix(1, quic, ordinaryTraffic(4, 500))
	peers := []agentapi.UDPPeer{{Remote: cdn, LocalPort: 51000}}
	hitsDownload := func(cs []Candidate) bool {
		for _, c := range cs {
			if m, err := c.Rule.Match.Compile(); err == nil && countMatched([]*rule.Matcher{m}, quic) > 0 {
				return true
			}
		}
		return false
	}
	if !hitsDownload(MineAlert(MinerConfig{}, "udp_amplification", attack, baseline, nil)) {
		t.Fatal("without the peer list the miner proposes nothing for the download: this test shows nothing")
	}
	if cs := MineAlert(MinerConfig{}, "udp_amplification", attack, baseline, nil, peers...); hitsDownload(cs) {
		t.Errorf("with the peer listed, candidates still match the download: %+v", cs)
	}
	in := CheckInput{Attack: attack, Baseline: baseline, Mode: ModeEnforce, RuleTTL: 600e9, Origin: "llm", SampleEvery: 16, BaselineSeconds: 60, UDPPeers: peers}
	v := DefaultGuardrails.Check(in, []rule.Rule{{Action: rule.ActionDrop, Match: rule.Match{Protocol: "udp", SrcPorts: []string{"443"}, Length: "1200-1350"}}})[0]
	if v.Accepted || !strings.Contains(v.Reason, "connections the node serves") {
		t.Errorf("a rule on the download: accepted %v as %s, reason %q", v.Accepted, v.Rule.Action, v.Reason)
	}
}

// TestGuardrailsSlowlorisIsNoServedClient: of a slowloris's hundreds of
// connections the sample now and then catches one's handshake and then its
// partial request, which is how a served flow looks, and a drop for the
// attacker went in as a rate limit at the served rate (which closes none of
// the connections it holds). Where the agent lists the source holding slow
// connections and no answered one, its flows are not served.
func TestGuardrailsSlowlorisIsNoServedClient(t *testing.T) {
	slow := netip.MustParseAddr("198.51.100.80")
	var attack []rule.Packet
	for c := range 300 {
		sport := uint16(30000 + c)
		attack = append(attack, tcpPkt(slow, victim4, sport, 8080, rule.FlagSYN, 64240, 60, 64))
		if c == 7 { // this one's handshake ACK and partial request were sampled too
			attack = append(attack, tcpPkt(slow, victim4, sport, 8080, rule.FlagACK, 502, 52, 64),
				tcpPkt(slow, victim4, sport, 8080, rule.FlagACK|rule.FlagPSH, 502, 120, 64))
		}
	}
	attack = append(attack, servedClient(client4, 400)...)
	baseline := append(ordinaryTraffic(5, 3000), servedClient(client4, 400)...)
	in := CheckInput{Attack: attack, Baseline: baseline, Protected: []netip.Prefix{nodeAddr}, Mode: "enforce", RuleTTL: 600e9,
		Origin: "builtin", SampleEvery: 16, BaselineSeconds: 10}
	drop := rule.Rule{Action: rule.ActionDrop, Match: rule.Match{Src: slow.String() + "/32", Protocol: "tcp", DstPorts: []string{"8080"}}}

	v := DefaultGuardrails.Check(in, []rule.Rule{drop})[0]
	if !v.Accepted || v.Rule.Action != rule.ActionRateLimit {
		t.Fatalf("without the agent's listing: accepted %v as %s (%s): the case needs the sampled flow taken for a served one", v.Accepted, v.Rule.Action, v.Reason)
	}
	in.Unserved = unservedSources(&agentapi.SlowConnReport{Slow: 100, Sources: []agentapi.SlowSource{{Src: slow.String(), Slow: 100}}})
	if v = DefaultGuardrails.Check(in, []rule.Rule{drop})[0]; !v.Accepted || v.Rule.Action != rule.ActionDrop {
		t.Errorf("listed with 100 slow connections and none answered: accepted %v as %s (%s, notes %v), want a drop", v.Accepted, v.Rule.Action, v.Reason, v.Notes)
	}
	// A source with an answered connection, or a handful of slow ones, is
	// no such proof.
	for _, s := range []agentapi.SlowSource{{Src: slow.String(), Slow: 100, Normal: 1}, {Src: slow.String(), Slow: slowMinConns - 1}} {
		if got := unservedSources(&agentapi.SlowConnReport{Slow: 100, Sources: []agentapi.SlowSource{s}}); len(got) != 0 {
			t.Errorf("%+v counted unserved", s)
		}
	}
}
