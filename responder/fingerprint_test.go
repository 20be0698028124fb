package responder

import (
	"encoding/json"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/packetscope/packetscope/rule"
)

var captureCache sync.Map

func readCapture(tb testing.TB, name string) []rule.Packet {
	tb.Helper()
	if v, ok := captureCache.Load(name); ok {
		return v.([]rule.Packet)
	}
	pkts, err := ReadCaptureFile("testdata/" + name)
	if err != nil {
		tb.Fatalf("read capture: %v", err)
	}
	captureCache.Store(name, pkts)
	return pkts
}

func TestReadCaptures(t *testing.T) {
	for _, tc := range []struct {
		file  string
		count int
	}{
		{"pkt.TCP.synflood.spoofed.pcap", 37841},
		{"amp.UDP.snmp.src161.pcapng", 4373},
	} {
		pkts := readCapture(t, tc.file)
		if len(pkts) != tc.count {
			t.Errorf("%s: %d packets, want %d", tc.file, len(pkts), tc.count)
		}
		for i, p := range pkts {
			if p.Family != 4 || p.Dst != victim4 {
				t.Fatalf("%s: packet %d parsed as %+v, want IPv4 to %s", tc.file, i+1, p, victim4)
			}
		}
	}
}

// TestMineMitigates: the builtin analyst's rules cover >= 99 % of each attack
// and match <= 1 % of ordinary traffic it has never seen (a different
// sample from the baseline it mined against).
func TestMineMitigates(t *testing.T) {
	baseline := ordinaryTraffic(1, 20000)
	unseen := ordinaryTraffic(2, 50000)
	syn := readCapture(t, "pkt.TCP.synflood.spoofed.pcap")
	snmp := readCapture(t, "amp.UDP.snmp.src161.pcapng")
	for _, tc := range []struct {
		name       string
		attack     []rule.Packet
		window     []rule.Packet // what the agent's attack window holds
		perSource  bool
		wantFields []string // match fields every rule must pin
	}{
		{name: "synflood capture", attack: syn, wantFields: []string{"tcp_flags", "tcp_window"}},
		{name: "synflood capture in ordinary traffic", attack: syn, window: mix(1, syn, ordinaryTraffic(3, 6000)), wantFields: []string{"tcp_flags", "tcp_window"}},
		{name: "snmp amplification capture", attack: snmp},
		{name: "snmp amplification in ordinary traffic", attack: snmp, window: mix(2, snmp, ordinaryTraffic(4, 1500))},
		{name: "hping3 icmp flood spoofed", attack: hpingICMPFlood(1, 5000, true), wantFields: []string{"icmp_type", "length"}},
		{name: "hping3 syn flood spoofed", attack: hpingSYNFlood(1, 5000, true), wantFields: []string{"tcp_flags", "tcp_window"}},
		{name: "hping3 icmp flood one source", attack: hpingICMPFlood(2, 5000, false), window: mix(3, hpingICMPFlood(2, 5000, false), ordinaryTraffic(5, 1000)), perSource: true},
		{name: "hping3 syn flood one source", attack: hpingSYNFlood(2, 5000, false), perSource: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			window := tc.window
			if window == nil {
				window = tc.attack
			}
			cands := Mine(MinerConfig{}, window, baseline, nil)
			if len(cands) == 0 {
				t.Fatal("no candidates")
			}
			var rules []rule.Rule
			for _, c := range cands {
				js, _ := json.Marshal(c.Rule.Match)
				t.Logf("rule %s coverage=%.4f collateral=%.4f reason=%q", js, c.Coverage, c.Collateral, c.Rule.Reason)
				r := c.Rule
				r.TTLSeconds = 600
				if err := r.Validate(); err != nil {
					t.Fatalf("candidate invalid: %v", err)
				}
				if tc.perSource != (r.Match.Src != "") {
					t.Errorf("rule %s: per-source = %v, want %v", js, r.Match.Src != "", tc.perSource)
				}
				var m map[string]any
				_ = json.Unmarshal(js, &m)
				for _, f := range tc.wantFields {
					if _, ok := m[f]; !ok {
						t.Errorf("rule %s does not pin %s", js, f)
					}
				}
				rules = append(rules, r)
			}
			rp := ReplayRules(rules, tc.attack, unseen)
			t.Logf("attack coverage %.4f (%d/%d), collateral on unseen ordinary traffic %.4f (%d/%d)",
				rp.Coverage, rp.AttackMatched, rp.AttackTotal, rp.Collateral, rp.BaselineMatched, rp.BaselineTotal)
			if rp.Coverage < 0.99 {
				t.Errorf("coverage %.4f < 0.99", rp.Coverage)
			}
			if rp.Collateral > 0.01 {
				t.Errorf("collateral %.4f > 0.01", rp.Collateral)
			}
		})
	}
}

// TestMineQuietWindow: a window that looks like the baseline yields nothing
// to block.
func TestMineQuietWindow(t *testing.T) {
	if c := Mine(MinerConfig{}, ordinaryTraffic(7, 5000), ordinaryTraffic(8, 5000), nil); len(c) != 0 {
		t.Errorf("got %d candidates for ordinary traffic, want none: %+v", len(c), c)
	}
}

// TestMineWithoutBaseline: an agent that just started has no baseline; the
// flood is still found, and the ordinary traffic beside it is left alone.
func TestMineWithoutBaseline(t *testing.T) {
	flood := hpingSYNFlood(11, 4000, true)
	window := mix(12, flood, ordinaryTraffic(13, 400))
	cands := Mine(MinerConfig{}, window, nil, nil)
	var rules []rule.Rule
	for _, c := range cands {
		rules = append(rules, c.Rule)
	}
	rp := ReplayRules(rules, flood, ordinaryTraffic(14, 20000))
	if len(cands) != 1 || rp.Coverage < 0.99 || rp.Collateral > 0.01 {
		t.Errorf("%d candidates, coverage %.4f, collateral %.4f: %+v", len(cands), rp.Coverage, rp.Collateral, cands)
	}
}

// linuxClientPkt is a segment of a Linux client's HTTP connection as the
// guard samples it: SYNs carry options (60 bytes, window 64240), requests a
// small payload (84), every other segment the timestamp option (52).
func linuxClientPkt(client, server netip.Addr, sport, dport uint16, flags uint8) rule.Packet {
	p := tcpPkt(client, server, sport, dport, flags, 63, 52, 64)
	switch flags {
	case rule.FlagSYN:
		p.Length, p.TCPWindow = 60, 64240
	case rule.FlagPSH | rule.FlagACK:
		p.Length = 84
	}
	return p
}

// TestMineFloodWithRetryingClient: under a SYN flood the served client's own
// SYNs grow (its handshakes are retried), so the window holds more of them
// than the baseline predicts. They are ordinary traffic reacting to the
// flood, not part of it: the fingerprint must not stretch its window, TTL
// and length ranges to cover them, which made it match the client's
// handshakes in the baseline and left no rule at all. (Seen live: the e2e
// spoofed SYN flood, a client retrying against the flooded port.)
func TestMineFloodWithRetryingClient(t *testing.T) {
	client := netip.MustParseAddr("10.221.0.2")
	served := netip.MustParseAddr("10.221.0.1")
	clientPkts := func(seq int, flags uint8, n int) []rule.Packet {
		var out []rule.Packet
		for i := range n {
			out = append(out, linuxClientPkt(client, served, uint16(40000+seq*100+i), 25565, flags))
		}
		return out
	}
	ack, finAck, pshAck := rule.FlagACK, rule.FlagFIN|rule.FlagACK, rule.FlagPSH|rule.FlagACK
	var baseline, window []rule.Packet
	for _, c := range []struct {
		flags       uint8
		base, under int
	}{{ack, 36, 10}, {finAck, 25, 8}, {pshAck, 14, 4}, {rule.FlagSYN, 4, 9}} {
		baseline = append(baseline, clientPkts(0, c.flags, c.base)...)
		window = append(window, clientPkts(1, c.flags, c.under)...)
	}
	flood := readCapture(t, "pkt.TCP.synflood.spoofed.pcap")[:1562]
	window = append(window, flood...)

	cands := MineAlert(MinerConfig{}, "syn_flood", window, baseline, nil)
	if len(cands) == 0 {
		t.Fatal("no candidates")
	}
	var rules []rule.Rule
	for _, c := range cands {
		js, _ := json.Marshal(c.Rule.Match)
		t.Logf("rule %s coverage=%.4f collateral=%.4f", js, c.Coverage, c.Collateral)
		rules = append(rules, c.Rule)
	}
	if rp := ReplayRules(rules, flood, clientPkts(2, rule.FlagSYN, 50)); rp.Coverage < 0.99 || rp.BaselineMatched != 0 {
		t.Errorf("flood coverage %.4f (want >= 0.99), client handshakes matched %d (want 0)", rp.Coverage, rp.BaselineMatched)
	}
}

// TestMineFlagMixBesideThinClient: a multi-vector TCP flood (SYN, ACK,
// xmas and no-flag segments to port 443) beside a web client on port 80
// whose traffic is mostly the ACKs and SYNs the flood grows too. The classes
// that did not grow (the client's PSH-ACKs and FIN-ACKs) are a few samples,
// and here, as sampled in a live run, they fall short of the client's
// traffic in the window: a scale from them alone left the client's ACKs and
// SYNs in the flood's excess, so those two fingerprints took in port 80 and
// the client's lengths and failed on collateral, and the first decision
// covered half of the flood. Every vector must get its rule, on port 443
// only.
func TestMineFlagMixBesideThinClient(t *testing.T) {
	client := netip.MustParseAddr("10.221.0.2")
	node := netip.MustParseAddr("10.221.0.1")
	// Sampled 1 in 16, a connection shows one packet or so: each packet
	// here is from a connection of its own, none of them a served flow.
	port := uint16(40000)
	clientPkts := func(flags uint8, n int) []rule.Packet {
		var out []rule.Packet
		for range n {
			port++
			out = append(out, linuxClientPkt(client, node, port, 80, flags))
		}
		return out
	}
	// The counts of the live run: the client's classes in the baseline
	// (12 s) and in the 3 s window, where the scale is about 0.23.
	var baseline, window []rule.Packet
	for _, c := range []struct {
		flags       uint8
		base, under int
	}{{rule.FlagSYN, 19, 6}, {rule.FlagACK, 35, 9}, {rule.FlagFIN | rule.FlagACK, 7, 2}, {rule.FlagPSH | rule.FlagACK, 17, 1}} {
		baseline = append(baseline, clientPkts(c.flags, c.base)...)
		window = append(window, clientPkts(c.flags, c.under)...)
	}
	flood := classPackets(t, "tcp_flag_mix", 5, 1400+4000)
	window = append(window, flood[:1400]...)

	cands := MineAlert(MinerConfig{}, "tcp_flood", window, baseline, nil)
	var rules []rule.Rule
	for _, c := range cands {
		js, _ := json.Marshal(c.Rule.Match)
		t.Logf("rule %s coverage=%.4f collateral=%.4f", js, c.Coverage, c.Collateral)
		if !slices.Equal(c.Rule.Match.DstPorts, []string{"443"}) {
			t.Errorf("rule %s: want dst_ports [443], the flood's port alone", js)
		}
		rules = append(rules, c.Rule)
	}
	if len(rules) != 4 {
		t.Errorf("%d rules, want one per vector (4)", len(rules))
	}
	if rp := ReplayRules(rules, flood[1400:], append(clientPkts(rule.FlagACK, 50), clientPkts(rule.FlagSYN, 50)...)); rp.Coverage < 0.99 || rp.BaselineMatched != 0 {
		t.Errorf("flood coverage %.4f (want >= 0.99), client packets matched %d (want 0)", rp.Coverage, rp.BaselineMatched)
	}
}

// TestOrdinaryScale: the ordinary traffic's scale comes from the cells
// ordinary traffic fills, and neither a cell the attack floods (SYNs to the
// served port) nor a flow that ended before the window (a download's
// packets to its ephemeral port, the baseline's largest cell) moves it,
// nor do cells the baseline holds a packet or two of by chance.
func TestOrdinaryScale(t *testing.T) {
	client := netip.MustParseAddr("10.221.0.2")
	node := netip.MustParseAddr("10.221.0.1")
	pkts := func(flags uint8, dport uint16, n int) []rule.Packet {
		out := make([]rule.Packet, n)
		for i := range out {
			out[i] = tcpPkt(client, node, uint16(40000+i), dport, flags, 502, 52, 64)
		}
		return out
	}
	ack, pshAck := rule.FlagACK, rule.FlagPSH|rule.FlagACK
	var baseline, window []rule.Packet
	for _, c := range []struct {
		flags       uint8
		dport       uint16
		base, under int
	}{
		{ack, 80, 40, 10}, {pshAck, 80, 20, 5}, {rule.FlagSYN, 80, 20, 5 + 2000}, // the flood's SYNs join the clients'
		{pshAck, 51234, 200, 0},                                  // a download that ended
		{rule.FlagSYN, 1234, 2, 30}, {rule.FlagSYN, 4321, 1, 25}, // flood SYNs in cells the baseline holds by chance
	} {
		baseline = append(baseline, pkts(c.flags, c.dport, c.base)...)
		window = append(window, pkts(c.flags, c.dport, c.under)...)
	}
	got, ok := ordinaryScale(window, baseline)
	if !ok || got < 0.2 || got > 0.3 {
		t.Errorf("ordinaryScale = %.3f, %v; want about 0.25 (the clients' cells), true", got, ok)
	}
	if _, ok := ordinaryScale(window, pkts(ack, 80, 4)); ok {
		t.Errorf("a baseline without a cell of %d packets gave a scale", minOrdinaryCell)
	}
}

// TestMineSpreadSourcePortsFromFewSamples: hping3 against a small listen
// queue sends 100 SYNs/s from one address with a source port that grows by
// one each packet; sampled 1 in 16, a short window holds 12 SYNs, each from
// its own port. The rule must not list those 12 ports (hping3's next SYNs
// carry others, and a loaded CI run saw exactly that rule miss them): it
// must match SYNs with the ports that follow.
func TestMineSpreadSourcePortsFromFewSamples(t *testing.T) {
	attacker := netip.MustParseAddr("10.220.0.2")
	node := netip.MustParseAddr("10.220.0.1")
	client := netip.MustParseAddr("10.221.0.2")
	syn := func(sport uint16) rule.Packet {
		return rule.Packet{Family: 4, Src: attacker, Dst: node, Protocol: rule.ProtoTCP, TTL: 64, HasL4: true,
			SrcPort: sport, DstPort: 8080, TCPFlags: rule.FlagSYN, Length: 40, TCPWindow: 512}
	}
	var window, baseline, later []rule.Packet
	for i := range 12 {
		window = append(window, syn(uint16(2000+16*i)))
		later = append(later, syn(uint16(2400+16*i)))
	}
	for i := range 80 {
		baseline = append(baseline, rule.Packet{Family: 4, Src: client, Dst: node, Protocol: rule.ProtoTCP, TTL: 64, HasL4: true,
			SrcPort: uint16(50000 + i), DstPort: 80, TCPFlags: rule.FlagACK, Length: 52, TCPWindow: 502})
	}
	cands := MineAlert(MinerConfig{}, "syn_queue_exhaustion", window, baseline, nil)
	if len(cands) == 0 {
		t.Fatal("no candidates")
	}
	var rules []rule.Rule
	for _, c := range cands {
		js, _ := json.Marshal(c.Rule.Match)
		t.Logf("rule %s coverage=%.4f collateral=%.4f", js, c.Coverage, c.Collateral)
		if len(c.Rule.Match.SrcPorts) > 1 {
			t.Errorf("rule lists %d source ports the sample happened to hold: %v", len(c.Rule.Match.SrcPorts), c.Rule.Match.SrcPorts)
		}
		rules = append(rules, c.Rule)
	}
	if rp := ReplayRules(rules, later, baseline); rp.Coverage < 0.99 {
		t.Errorf("the rules match %.2f of the SYNs that follow, want >= 0.99", rp.Coverage)
	}
}

// TestPortSetOfSpreadPorts: ports a small sample holds once each (an
// incrementing source port) make no set and no range; ports seen again
// and again do.
func TestPortSetOfSpreadPorts(t *testing.T) {
	spread := map[uint32]float64{}
	for i := range 12 {
		spread[uint32(2000+16*i)] = 1
	}
	if got := portSet(11, spread); got != nil {
		t.Errorf("12 ports seen once each: %v, want no port predicate", got)
	}
	if got := portSet(11, map[uint32]float64{53: 8, 5353: 4}); !slices.Equal(got, []string{"53", "5353"}) {
		t.Errorf("ports seen 8 and 4 times: %v, want [53 5353]", got)
	}
}
