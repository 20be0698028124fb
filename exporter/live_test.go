package exporter

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestTrafficICMP(t *testing.T) {
	tb := newTestbed(t)
	rx := labels("interface", "eth0", "direction", "rx", "protocol", "icmp")
	tx := labels("interface", "eth0", "direction", "tx", "protocol", "icmp")
	rxBefore := value(t, tb.reg, "packetscope_packets_total", rx)
	txBefore := value(t, tb.reg, "packetscope_packets_total", tx)
	bytesBefore := value(t, tb.reg, "packetscope_bytes_total", rx)

	const n = 10
	tb.b.MustRun("ping", "-c", strconv.Itoa(n), "-i", "0.01", "-s", "100", "-W", "2", addrA)
	// Traffic in another namespace (b's loopback) is not a's.
	tb.b.MustRun("ping", "-c", "5", "-i", "0.01", "127.0.0.1")

	tb.atLeast(t, "packetscope_packets_total", rx, rxBefore, n) // echo requests
	tb.atLeast(t, "packetscope_packets_total", tx, txBefore, n) // echo replies
	// Each request: 14 (Ethernet) + 20 (IP) + 8 (ICMP) + 100 bytes.
	tb.atLeast(t, "packetscope_bytes_total", rx, bytesBefore, n*(14+20+8+100))
	rx6 := labels("interface", "eth0", "direction", "rx", "protocol", "icmpv6")
	rx6Before := value(t, tb.reg, "packetscope_packets_total", rx6)
	tb.b.MustRun("ping", "-6", "-c", strconv.Itoa(n), "-i", "0.01", "-W", "2", addr6A)
	tb.atLeast(t, "packetscope_packets_total", rx6, rx6Before, n)

	if v := value(t, tb.reg, "packetscope_packets_total", labels("interface", "lo")); v != 0 {
		t.Errorf("packets on a's loopback = %v, want 0: b's loopback traffic leaked into a's scope", v)
	}
}

// TestTrafficSeriesFromTheStart: every counted device has its transport
// protocols' series before their first packet, so the first scrape of a
// flood already gives a rate (the alerts' irate needs two samples).
func TestTrafficSeriesFromTheStart(t *testing.T) {
	tb := newTestbed(t)
	mfs, err := tb.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"packetscope_packets_total", "packetscope_bytes_total"} {
		for _, dir := range []string{"rx", "tx"} {
			for _, proto := range []string{"tcp", "udp", "icmp", "icmpv6"} {
				want := labels("interface", "eth0", "direction", dir, "protocol", proto)
				found := false
				for _, mf := range mfs {
					for _, m := range mf.GetMetric() {
						found = found || mf.GetName() == name && hasLabels(m, want)
					}
				}
				if !found {
					t.Errorf("no %s%v series before the first packet", name, want)
				}
			}
		}
	}
}

func TestTrafficUDP(t *testing.T) {
	tb := newTestbed(t)
	const n, size = 20, 200
	srv := listenUDP(t, tb.a, addrA+":5001")
	peer := listenUDP(t, tb.b, addrB+":5002")

	rxLat := latencyCounts(t, tb, "rx")
	rx := labels("interface", "eth0", "direction", "rx", "protocol", "udp")
	rxBefore := value(t, tb.reg, "packetscope_packets_total", rx)
	bytesBefore := value(t, tb.reg, "packetscope_bytes_total", rx)
	c := mustDial(t, tb.b, "udp", addrA+":5001")
	payload := bytes.Repeat([]byte{'x'}, size)
	buf := make([]byte, 2048)
	for range n {
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
		_ = srv.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, _, err := srv.ReadFrom(buf); err != nil {
			t.Fatalf("read on a: %v", err)
		}
	}
	tb.atLeast(t, "packetscope_packets_total", rx, rxBefore, n)
	tb.atLeast(t, "packetscope_bytes_total", rx, bytesBefore, n*size)
	tb.latencyGrew(t, "rx", rxLat)

	// a sends: the tx stages.
	txLat := latencyCounts(t, tb, "tx")
	tx := labels("interface", "eth0", "direction", "tx", "protocol", "udp")
	txBefore := value(t, tb.reg, "packetscope_packets_total", tx)
	dst, _ := net.ResolveUDPAddr("udp", addrB+":5002")
	for range n {
		if _, err := srv.WriteTo(payload, dst); err != nil {
			t.Fatal(err)
		}
		_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, _, err := peer.ReadFrom(buf); err != nil {
			t.Fatalf("read on b: %v", err)
		}
	}
	tb.atLeast(t, "packetscope_packets_total", tx, txBefore, n)
	tb.latencyGrew(t, "tx", txLat)
}

func TestTrafficTCPAndConnections(t *testing.T) {
	tb := newTestbed(t)
	est := labels("state", "established")
	lis := labels("state", "listen")
	estBefore := value(t, tb.reg, "packetscope_tcp_connections", est)
	lisBefore := value(t, tb.reg, "packetscope_tcp_connections", lis)
	rttBefore := value(t, tb.reg, "packetscope_tcp_rtt_seconds", nil)
	rxLat, txLat := latencyCounts(t, tb, "rx"), latencyCounts(t, tb, "tx")
	rx := labels("interface", "eth0", "direction", "rx", "protocol", "tcp")
	tx := labels("interface", "eth0", "direction", "tx", "protocol", "tcp")
	rxBefore := value(t, tb.reg, "packetscope_bytes_total", rx)
	txBefore := value(t, tb.reg, "packetscope_packets_total", tx)

	l := listenTCP(t, tb.a, addrA+":5003")
	tb.atLeast(t, "packetscope_tcp_connections", lis, lisBefore, 1)

	// An echo server in a; b sends requests and waits for each answer, so
	// every segment is its own skb all the way to the reader.
	done := make(chan error, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(conn, conn)
		conn.Close()
		done <- err
	}()
	c := mustDial(t, tb.b, "tcp", addrA+":5003")
	tb.atLeast(t, "packetscope_tcp_connections", est, estBefore, 1)
	const rounds, size = 50, 1000
	msg := bytes.Repeat([]byte{'y'}, size)
	buf := make([]byte, size)
	for range rounds {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("echo: %v", err)
		}
	}
	tb.atLeast(t, "packetscope_bytes_total", rx, rxBefore, rounds*size)
	tb.atLeast(t, "packetscope_packets_total", tx, txBefore, rounds)
	tb.atLeast(t, "packetscope_tcp_rtt_seconds", nil, rttBefore, rounds)
	tb.latencyGrew(t, "rx", rxLat)
	tb.atLeast(t, "packetscope_stack_latency_seconds", labels("direction", "rx", "stage", "socket"), rxLat["socket"], 1)
	tb.latencyGrew(t, "tx", txLat)

	c.Close()
	if err := <-done; err != nil {
		t.Fatalf("echo server: %v", err)
	}
	l.Close()
	waitFor(t, "connections back to their start", func() (bool, string) {
		e := value(t, tb.reg, "packetscope_tcp_connections", est)
		li := value(t, tb.reg, "packetscope_tcp_connections", lis)
		return e == estBefore && li == lisBefore, fmt.Sprintf("established=%v (start %v), listen=%v (start %v)", e, estBefore, li, lisBefore)
	})
	if v := value(t, tb.reg, "packetscope_tcp_rtt_seconds", nil); v <= rttBefore {
		t.Errorf("rtt observations did not grow: %v", v)
	}
}

func TestDropReasons(t *testing.T) {
	tb := newTestbed(t)
	drops := func(reason string) map[string]string { return labels("reason", reason, "protocol", "udp") }

	t.Run("closed port", func(t *testing.T) {
		before := value(t, tb.reg, "packetscope_drops_total", drops("NO_SOCKET"))
		// Unconnected: a connected socket would stop sending after the
		// first port-unreachable (ECONNREFUSED).
		c := listenUDP(t, tb.b, addrB+":0")
		dst := &net.UDPAddr{IP: net.ParseIP(addrA), Port: 5999}
		for range 5 {
			if _, err := c.WriteTo([]byte("nobody listens"), dst); err != nil {
				t.Fatal(err)
			}
		}
		tb.atLeast(t, "packetscope_drops_total", drops("NO_SOCKET"), before, 5)

		// The same drop in b, which is not observed, does not count.
		before = value(t, tb.reg, "packetscope_drops_total", drops("NO_SOCKET"))
		other := listenUDP(t, tb.a, addrA+":0")
		for range 20 {
			if _, err := other.WriteTo([]byte("nobody listens in b"), &net.UDPAddr{IP: net.ParseIP(addrB), Port: 5999}); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(200 * time.Millisecond) // let b's softirq run
		if v := value(t, tb.reg, "packetscope_drops_total", drops("NO_SOCKET")); v != before {
			t.Errorf("drops in b counted for a: %v -> %v", before, v)
		}
	})

	t.Run("netfilter drop", func(t *testing.T) {
		tb.a.MustRun("iptables", "-A", "INPUT", "-p", "udp", "--dport", "5998", "-j", "DROP")
		listenUDP(t, tb.a, addrA+":5998") // open, so only the rule drops
		before := value(t, tb.reg, "packetscope_drops_total", drops("NETFILTER_DROP"))
		c := mustDial(t, tb.b, "udp", addrA+":5998")
		for range 5 {
			_, _ = c.Write([]byte("filtered"))
		}
		tb.atLeast(t, "packetscope_drops_total", drops("NETFILTER_DROP"), before, 5)
	})

	t.Run("full receive queue", func(t *testing.T) {
		srv := listenUDP(t, tb.a, addrA+":5997")
		raw, err := srv.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		// The kernel doubles and floors it (SOCK_MIN_RCVBUF): a few
		// datagrams fill it; the socket is never read.
		var serr error
		if err := raw.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1)
		}); err != nil || serr != nil {
			t.Fatalf("set SO_RCVBUF: %v %v", err, serr)
		}
		before := value(t, tb.reg, "packetscope_drops_total", drops("SOCKET_RCVBUFF"))
		c := mustDial(t, tb.b, "udp", addrA+":5997")
		payload := bytes.Repeat([]byte{'z'}, 1000)
		for range 50 {
			_, _ = c.Write(payload)
		}
		tb.atLeast(t, "packetscope_drops_total", drops("SOCKET_RCVBUFF"), before, 10)
	})
}

func TestTCPResetsAndRetransmits(t *testing.T) {
	tb := newTestbed(t)

	t.Run("reset sent", func(t *testing.T) {
		before := value(t, tb.reg, "packetscope_tcp_resets_total", labels("direction", "tx"))
		if _, err := dial(t, tb.b, "tcp", addrA+":6999"); err == nil {
			t.Fatal("connect to a closed port succeeded")
		}
		tb.atLeast(t, "packetscope_tcp_resets_total", labels("direction", "tx"), before, 1)
	})

	t.Run("reset received", func(t *testing.T) {
		before := value(t, tb.reg, "packetscope_tcp_resets_total", labels("direction", "rx"))
		if _, err := dial(t, tb.a, "tcp", "["+addr6B+"]:6999"); err == nil {
			t.Fatal("connect to a closed port succeeded")
		}
		tb.atLeast(t, "packetscope_tcp_resets_total", labels("direction", "rx"), before, 1)
	})

	// Handshakes completed with a's listener count; a SYN to a closed port
	// (the reset-sent subtest) does not.
	t.Run("passive opens", func(t *testing.T) {
		l := listenTCP(t, tb.a, addrA+":6002")
		go func() {
			for {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				conn.Close()
			}
		}()
		before := value(t, tb.reg, "packetscope_tcp_passive_opens_total", nil)
		for range 3 {
			mustDial(t, tb.b, "tcp", addrA+":6002").Close()
		}
		tb.atLeast(t, "packetscope_tcp_passive_opens_total", nil, before, 3)
		if got := value(t, tb.reg, "packetscope_tcp_passive_opens_total", nil) - before; got > 3 {
			t.Errorf("3 handshakes counted as %.0f passive opens", got)
		}
	})

	t.Run("retransmits", func(t *testing.T) {
		l := listenTCP(t, tb.b, addrB+":6001")
		go func() {
			if conn, err := l.Accept(); err == nil {
				t.Cleanup(func() { conn.Close() })
			}
		}()
		c := mustDial(t, tb.a, "tcp", addrB+":6001")
		before := value(t, tb.reg, "packetscope_tcp_retransmits_total", nil)
		// b stops hearing a: a's data goes unacknowledged and is resent
		// after the retransmission timeout (200 ms at least).
		tb.b.MustRun("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "6001", "-j", "DROP")
		if _, err := c.Write([]byte(strings.Repeat("r", 100))); err != nil {
			t.Fatal(err)
		}
		tb.atLeast(t, "packetscope_tcp_retransmits_total", nil, before, 1)
	})
}

// TestTrafficInterfacesSharingACell: interfaces whose indexes are 256
// apart share a direct-mapped counter cell in the kernel; the second one is
// counted in the overflow hash, and each keeps its own counts.
func TestTrafficInterfacesSharingACell(t *testing.T) {
	tb := newTestbed(t)
	const idx = 300
	links := []struct {
		name, addrA, addrB string
		index, n           int
	}{
		{"cell0", "10.201.5.1", "10.201.5.2", idx, 5},
		{"cell1", "10.201.6.1", "10.201.6.2", idx + 256, 9},
	}
	for _, l := range links {
		tb.a.MustRun("ip", "link", "add", l.name, "index", strconv.Itoa(l.index), "type", "veth",
			"peer", "name", l.name, "netns", tb.b.Name)
		tb.a.MustRun("ip", "addr", "add", l.addrA+"/24", "dev", l.name)
		tb.b.MustRun("ip", "addr", "add", l.addrB+"/24", "dev", l.name)
		tb.a.MustRun("ip", "link", "set", l.name, "up")
		tb.b.MustRun("ip", "link", "set", l.name, "up")
	}
	for _, l := range links {
		srv := listenUDP(t, tb.a, l.addrA+":5041")
		c := mustDial(t, tb.b, "udp", l.addrA+":5041")
		buf := make([]byte, 64)
		for range l.n {
			if _, err := c.Write([]byte("cell")); err != nil {
				t.Fatal(err)
			}
			_ = srv.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, _, err := srv.ReadFrom(buf); err != nil {
				t.Fatalf("read on %s: %v", l.name, err)
			}
		}
	}
	for _, l := range links {
		rx := labels("interface", l.name, "direction", "rx", "protocol", "udp")
		tb.atLeast(t, "packetscope_packets_total", rx, 0, float64(l.n))
		if v := value(t, tb.reg, "packetscope_packets_total", rx); v != float64(l.n) {
			t.Errorf("%s (ifindex %d) received %v UDP packets, want %d", l.name, l.index, v, l.n)
		}
	}
}

// TestUDPConnected: datagrams a connected UDP socket of a receives from
// its peer are counted (a UDP download's answers), estimated from one
// datagram in 16 per CPU; datagrams for an unconnected socket (a server's
// queries) never are.
func TestUDPConnected(t *testing.T) {
	tb := newTestbed(t)
	server := listenUDP(t, tb.a, addrA+":5061")     // unconnected, on a
	peer := listenUDP(t, tb.b, addrB+":5062")       // what a connects to
	conn := mustDial(t, tb.a, "udp", addrB+":5062") // connected, on a
	packets := func() float64 { return value(t, tb.reg, "packetscope_udp_connected_packets_total", nil) }
	bytes := func() float64 { return value(t, tb.reg, "packetscope_udp_connected_bytes_total", nil) }
	const n, size = 160, 1000
	buf := make([]byte, 2048)

	// Queries to a's server, from b: never counted.
	before := packets()
	query := mustDial(t, tb.b, "udp", addrA+":5061")
	for range n {
		if _, err := query.Write([]byte("query")); err != nil {
			t.Fatal(err)
		}
		_ = server.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, _, err := server.ReadFrom(buf); err != nil {
			t.Fatalf("server read: %v", err)
		}
	}
	if got := packets() - before; got != 0 {
		t.Errorf("counted %.0f datagrams of an unconnected socket as a connected one's", got)
	}

	// Answers to a's connected socket, from its peer: counted, 16 for each
	// one looked up, so within 16 per CPU of the truth.
	before, beforeBytes := packets(), bytes()
	for range n {
		if _, err := peer.WriteTo(make([]byte, size), conn.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := conn.Read(buf); err != nil {
			t.Fatalf("connected read: %v", err)
		}
	}
	got := packets() - before
	if slack := float64(16 * runtime.NumCPU()); got < n-slack || got > n+slack {
		t.Errorf("counted %.0f datagrams for connected sockets, want %d ± %.0f", got, n, slack)
	}
	// As packetscope_bytes_total counts them at tc ingress: with the
	// Ethernet, IPv4 and UDP headers.
	if gotBytes := bytes() - beforeBytes; gotBytes != got*(size+14+28) {
		t.Errorf("counted %.0f bytes for %.0f datagrams, want %.0f", gotBytes, got, got*(size+14+28))
	}
}
