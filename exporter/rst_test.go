package exporter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/packetscope/packetscope/internal/rstinject"
)

// TestRSTVerdicts: crafted RSTs from the peer's address into an established
// connection of the observed namespace. In-window ones (not at rcv_nxt) are
// challenged, out-of-window ones dropped, both with their headers as
// reactions; the one at rcv_nxt resets the connection (accepted). RSTs a
// listener drops (no connection of theirs) count nowhere.
func TestRSTVerdicts(t *testing.T) {
	tb := newTestbed(t)
	var (
		mu        sync.Mutex
		reactions []Reaction
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- tb.exp.Reactions(ctx, func(r Reaction) {
			mu.Lock()
			reactions = append(reactions, r)
			mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Reactions: %v", err)
		}
	})

	l := listenTCP(t, tb.a, addrA+":6200")
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	client := mustDial(t, tb.b, "tcp", addrA+":6200").(*net.TCPConn)
	server := <-accepted
	t.Cleanup(func() { server.Close() })
	target, err := rstinject.TargetOf(client)
	if err != nil {
		t.Fatal(err)
	}
	seq := target.RcvNxt
	var inj *rstinject.Injector
	if err := tb.b.Do(func() (err error) { inj, err = rstinject.Open(); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inj.Close() })

	verdict := func(v string) float64 {
		return value(t, tb.reg, "packetscope_tcp_rst_verdicts_total", labels("verdict", v))
	}
	before := map[string]float64{}
	for _, v := range []string{"accepted", "challenged", "out_of_window"} {
		before[v] = verdict(v)
	}
	shape := rstinject.Shape{TTL: 99, Window: 1234}
	// A RST to the listener's port that matches no connection: the
	// listener drops it (TCP_RESET as well), aimed at no connection.
	stray := rstinject.Target{Src: netip.AddrPortFrom(target.Src.Addr(), 1), Dst: target.Dst}
	for range 5 {
		if err := inj.Send(stray, 12345, shape); err != nil {
			t.Fatal(err)
		}
	}
	for k := range 30 {
		if err := inj.Send(target, seq+1+uint32(k)*100, shape); err != nil {
			t.Fatal(err)
		}
	}
	for k := range 40 {
		if err := inj.Send(target, seq+1<<31+uint32(k)*1000, shape); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "challenged and out-of-window RSTs", func() (bool, string) {
		c, o := verdict("challenged")-before["challenged"], verdict("out_of_window")-before["out_of_window"]
		return c == 30 && o == 40, fmt.Sprintf("challenged %v (want 30), out_of_window %v (want 40)", c, o)
	})
	if a := verdict("accepted") - before["accepted"]; a != 0 {
		t.Errorf("accepted %v before the exact RST, want 0", a)
	}
	// The connection survived them all.
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	_ = server.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := server.Read(buf); err != nil {
		t.Fatalf("the connection did not survive the rejected RSTs: %v", err)
	}
	// Exactly at rcv_nxt (one byte later now): the connection is reset.
	if err := inj.Send(target, seq+1, shape); err != nil {
		t.Fatal(err)
	}
	tb.atLeast(t, "packetscope_tcp_rst_verdicts_total", labels("verdict", "accepted"), before["accepted"], 1)
	if _, err := server.Read(buf); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read after the exact RST: %v, want ECONNRESET", err)
	}

	waitFor(t, "RST reactions", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		n := map[string]int{}
		for _, r := range reactions {
			if r.Src != target.Src.Addr() || r.DstPort != 6200 || r.TTL != 99 || r.Window != 1234 || r.TCPFlags != 0x04 || r.Length != 40 {
				return false, fmt.Sprintf("unexpected reaction %+v", r)
			}
			n[r.ReasonName]++
		}
		out := n["TCP_OLD_SEQUENCE"] + n["TCP_INVALID_SEQUENCE"] + n["TCP_INVALID_END_SEQUENCE"]
		return n["TCP_RESET"] == 30 && out == 40, fmt.Sprintf("reactions by reason %v: want 30 TCP_RESET, 40 out of window", n)
	})
}
