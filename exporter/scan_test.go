package exporter

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// TestClosedPortProbes: SYNs and UDP datagrams to closed ports count as
// probes, their distinct ports as the window's probed ports (a port probed
// many times counts once), and each becomes a reaction with its headers;
// an open port's traffic counts nowhere.
func TestClosedPortProbes(t *testing.T) {
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

	open := listenTCP(t, tb.a, addrA+":6000")
	go func() {
		for {
			c, err := open.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	tcpBefore := value(t, tb.reg, "packetscope_closed_port_probes_total", labels("protocol", "tcp"))
	udpBefore := value(t, tb.reg, "packetscope_closed_port_probes_total", labels("protocol", "udp"))
	// 40 closed TCP ports over IPv4, 10 more over IPv6, one of them 20 times
	// more, and the open port 20 times.
	for p := 6001; p <= 6040; p++ {
		if _, err := dial(t, tb.b, "tcp", fmt.Sprintf("%s:%d", addrA, p)); err == nil {
			t.Fatalf("port %d is open", p)
		}
	}
	for p := 6041; p <= 6050; p++ {
		if _, err := dial(t, tb.b, "tcp", fmt.Sprintf("[%s]:%d", addr6A, p)); err == nil {
			t.Fatalf("port %d is open", p)
		}
	}
	for range 20 {
		_, _ = dial(t, tb.b, "tcp", addrA+":6001")
		mustDial(t, tb.b, "tcp", addrA+":6000")
	}
	// 30 closed UDP ports.
	c := listenUDP(t, tb.b, addrB+":0")
	for p := 7001; p <= 7030; p++ {
		if _, err := c.WriteTo([]byte("probe"), &net.UDPAddr{IP: net.ParseIP(addrA), Port: p}); err != nil {
			t.Fatal(err)
		}
	}
	tb.atLeast(t, "packetscope_closed_port_probes_total", labels("protocol", "tcp"), tcpBefore, 70)
	tb.atLeast(t, "packetscope_closed_port_probes_total", labels("protocol", "udp"), udpBefore, 30)
	// The scrape that counts the probes has their ports too: it does not
	// wait for the window's next tick.
	tcp := value(t, tb.reg, "packetscope_closed_ports_probed", labels("protocol", "tcp"))
	udp := value(t, tb.reg, "packetscope_closed_ports_probed", labels("protocol", "udp"))
	if tcp != 50 || udp != 30 {
		t.Errorf("distinct closed ports: tcp %v (want 50), udp %v (want 30)", tcp, udp)
	}
	if v := value(t, tb.reg, "packetscope_closed_port_probes_total", labels("protocol", "tcp")) - tcpBefore; v > 75 {
		t.Errorf("%v TCP probes counted, want 70 (+ retries): the open port's SYNs count?", v)
	}

	waitFor(t, "reactions", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		ports := map[string]bool{}
		for _, r := range reactions {
			if r.ReasonName != "NO_SOCKET" || r.Interface != "eth0" || r.DstPort == 6000 {
				return false, fmt.Sprintf("unexpected reaction %+v", r)
			}
			want := netip.MustParseAddr(addrB)
			if r.Family == 6 {
				want = netip.MustParseAddr(addr6B)
			}
			if r.Src != want {
				return false, fmt.Sprintf("reaction from %v, want %v", r.Src, want)
			}
			ports[fmt.Sprintf("%d/%d", r.Protocol, r.DstPort)] = true
		}
		return len(ports) == 80, fmt.Sprintf("%d distinct protocol/ports in %d reactions, want 80", len(ports), len(reactions))
	})
}

// TestListenQueueEvents: a listener whose queues are full, in the observed
// namespace only, shows in the listen queue counters: SYN cookies sent (the
// namespace sends them for every SYN with tcp_syncookies=2) and accept-queue
// overflows (somaxconn 1, nobody accepting).
func TestListenQueueEvents(t *testing.T) {
	tb := newTestbed(t)
	tb.a.MustRun("sysctl", "-qw", "net.ipv4.tcp_syncookies=2")
	ev := func(e string) map[string]string { return labels("event", e) }
	before := value(t, tb.reg, "packetscope_tcp_listen_queue_events_total", ev("syncookie_sent"))
	listenTCP(t, tb.a, addrA+":6100") // never accepts
	for range 3 {
		mustDial(t, tb.b, "tcp", addrA+":6100")
	}
	tb.atLeast(t, "packetscope_tcp_listen_queue_events_total", ev("syncookie_sent"), before, 3)

	tb.a.MustRun("sysctl", "-qw", "net.ipv4.tcp_syncookies=1", "net.core.somaxconn=1")
	before = value(t, tb.reg, "packetscope_tcp_listen_queue_events_total", ev("listen_overflow"))
	listenTCP(t, tb.a, addrA+":6101")
	// The dials wait (up to their 3 s timeout) for a queue that never
	// drains; they must end before the test does, since a thread inside b
	// when b is removed would take the test process with it.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = tb.b.Do(func() error {
				if c, err := net.DialTimeout("tcp", addrA+":6101", 3*time.Second); err == nil {
					c.Close()
				}
				return nil
			})
		}()
	}
	tb.atLeast(t, "packetscope_tcp_listen_queue_events_total", ev("listen_overflow"), before, 1)
	wg.Wait()

	// b is not observed: its counters do not leak into a's.
	before = value(t, tb.reg, "packetscope_tcp_listen_queue_events_total", ev("syncookie_sent"))
	tb.b.MustRun("sysctl", "-qw", "net.ipv4.tcp_syncookies=2")
	listenTCP(t, tb.b, addrB+":6102")
	for range 3 {
		mustDial(t, tb.a, "tcp", addrB+":6102")
	}
	time.Sleep(300 * time.Millisecond)
	if v := value(t, tb.reg, "packetscope_tcp_listen_queue_events_total", ev("syncookie_sent")); v != before {
		t.Errorf("b's SYN cookies counted for a: %v -> %v", before, v)
	}
}
