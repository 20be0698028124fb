package exporter

import (
	"net/netip"
	"testing"

	"github.com/packetscope/packetscope/internal/rstinject"
	"github.com/packetscope/packetscope/internal/testnet"
)

// TestTCPRejected: segments of no connection are counted per flag class
// (a FIN to a closed port and an ACK to a listener are answered with
// resets, flags that mean nothing to a listener are dropped as TCP_FLAGS);
// a connection's own FIN is not.
func TestTCPRejected(t *testing.T) {
	tb := newTestbed(t)
	l := listenTCP(t, tb.a, addrA+":6010")
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 16)
			_, _ = c.Read(buf) // until the client closes
			c.Close()
		}
	}()
	rejected := func(class string) float64 {
		return value(t, tb.reg, "packetscope_tcp_rejected_packets_total", labels("flags", class))
	}
	before := map[string]float64{}
	for _, c := range []string{"syn", "synack", "ack", "rst", "fin", "other"} {
		before[c] = rejected(c)
	}

	// A connection opened and closed by the client: its FIN belongs.
	mustDial(t, tb.b, "tcp", addrA+":6010").Close()

	const finFlags, ackFlags, pshFlags, synAckFlags = 0x11, 0x10, 0x08, 0x12
	sendTCP(t, tb.b, addrA, 40001, 6999, finFlags)    // closed port: reset
	sendTCP(t, tb.b, addrA, 40002, 6010, ackFlags)    // listener, ACK of nothing: reset
	sendTCP(t, tb.b, addrA, 40003, 6010, pshFlags)    // listener, PSH alone: TCP_FLAGS
	sendTCP(t, tb.b, addrA, 40004, 6999, synAckFlags) // an answer nobody asked for: reset
	for class, n := range map[string]float64{"fin": 1, "ack": 1, "other": 1, "synack": 1} {
		tb.atLeast(t, "packetscope_tcp_rejected_packets_total", labels("flags", class), before[class], n)
	}
	for class, want := range map[string]float64{"fin": 1, "syn": 0, "rst": 0} {
		if got := rejected(class) - before[class]; got != want {
			t.Errorf("rejected %s segments grew by %.0f, want %.0f", class, got, want)
		}
	}
}

// sendTCP sends one bare TCP segment (no payload) with flags from ns's
// address addrB to dst through a raw socket.
func sendTCP(t *testing.T, ns *testnet.NS, dst string, sport, dport uint16, flags uint8) {
	t.Helper()
	target := rstinject.Target{
		Src: netip.AddrPortFrom(netip.MustParseAddr(addrB), sport),
		Dst: netip.AddrPortFrom(netip.MustParseAddr(dst), dport),
	}
	err := ns.Do(func() error {
		inj, err := rstinject.Open()
		if err != nil {
			return err
		}
		defer inj.Close()
		return inj.Send(target, 1000, rstinject.Shape{TTL: 64, Window: 1024, Flags: flags})
	})
	if err != nil {
		t.Fatalf("send a TCP segment from %s to %s: %v", ns.Name, target.Dst, err)
	}
}
