package agentapi

import (
	"testing"
	"time"

	"github.com/packetscope/packetscope/rule"
)

// TestWindowReactions: the stack's reactions are reported beside the
// samples, in their own list, within [from, to], counted in neither the
// totals nor the top values; the oldest go by age and by count.
func TestWindowReactions(t *testing.T) {
	clk := &fakeClock{t0}
	w := NewTrafficWindow(WindowConfig{MaxAge: time.Minute, Now: clk.now})
	w.Add(tcpSample(t0, "198.51.100.1", 80, rule.FlagSYN))
	for i := range 10 {
		r := tcpSample(t0.Add(time.Duration(i)*time.Second), "203.0.113.9", uint16(1000+i), rule.FlagSYN)
		r.Reaction = "NO_SOCKET"
		w.AddReaction(r)
	}
	rep := w.Report(t0.Add(2*time.Second), t0.Add(5*time.Second), 100)
	if rep.Totals.SampledPackets != 0 || len(rep.Samples) != 0 {
		t.Fatalf("reactions counted as samples: %+v", rep.Totals)
	}
	if len(rep.Reactions) != 4 || rep.Reactions[0].Packet.DstPort != 1002 || rep.Reactions[3].Packet.DstPort != 1005 {
		t.Fatalf("reactions = %+v, want ports 1002-1005 oldest first", rep.Reactions)
	}
	if rep.Reactions[0].Reaction != "NO_SOCKET" {
		t.Fatalf("reaction lost its reason: %+v", rep.Reactions[0])
	}
	if len(rep.Top["dst_port"]) != 0 {
		t.Fatalf("reactions in the top values: %+v", rep.Top["dst_port"])
	}
	// The newest 2 only when fewer are asked for.
	if rep := w.Report(t0, t0.Add(time.Hour), 2); len(rep.Reactions) != 2 || rep.Reactions[1].Packet.DstPort != 1009 {
		t.Fatalf("capped reactions = %+v", rep.Reactions)
	}
	// Age: a minute later only the last ones are left.
	clk.t = t0.Add(time.Minute + 7500*time.Millisecond)
	if rep := w.Report(t0, clk.t, 100); len(rep.Reactions) != 2 {
		t.Fatalf("after aging %d reactions, want 2 (8 s, 9 s)", len(rep.Reactions))
	}
	// Count: the ring keeps the newest DefaultWindowMaxReactions.
	for i := range DefaultWindowMaxReactions + 10 {
		r := tcpSample(clk.t, "203.0.113.9", uint16(i), rule.FlagSYN)
		r.Reaction = "NO_SOCKET"
		w.AddReaction(r)
	}
	rep = w.Report(clk.t, clk.t, DefaultWindowMaxReactions+100)
	if len(rep.Reactions) != DefaultWindowMaxReactions || rep.Reactions[0].Packet.DstPort != 10 {
		t.Fatalf("%d reactions from port %d, want %d from port 10", len(rep.Reactions), rep.Reactions[0].Packet.DstPort, DefaultWindowMaxReactions)
	}
}
