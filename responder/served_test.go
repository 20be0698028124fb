package responder

import (
	"strings"
	"testing"

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
			s := newServedFlows(tc.pkts)
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
