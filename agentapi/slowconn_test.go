package agentapi

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/packetscope/packetscope/internal/testnet"
	"github.com/packetscope/packetscope/rule"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func TestSlowConnClassify(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := now
	listen := tcpConn{cookie: 1, state: tcpListen, local: netip.MustParseAddrPort("0.0.0.0:80")}
	var conns []tcpConn
	conns = append(conns, listen)
	cookie := uint64(100)
	add := func(n int, src string, sport0 int, dport uint16, recv, sent uint64, lastRecv time.Duration) {
		for i := range n {
			cookie++
			conns = append(conns, tcpConn{cookie: cookie, state: tcpEstablished,
				local:         netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), dport),
				remote:        netip.AddrPortFrom(netip.MustParseAddr(src), uint16(sport0+i)),
				bytesReceived: recv, bytesSent: sent, lastDataRecv: lastRecv})
		}
	}
	// The attacker: 60 incomplete requests on port 80, begun 2 s ago and
	// still in the accept queue (unread), and one served request.
	add(60, "10.0.0.66", 40000, 80, 300, 0, 2*time.Second)
	for i := len(conns) - 60; i < len(conns); i++ {
		conns[i].unread = 300
	}
	add(1, "10.0.0.66", 50000, 80, 300, 5000, time.Second)
	// Keep-alive clients: answered, idle for long (not slow, idle).
	for i := range 20 {
		add(2, fmt.Sprintf("10.1.0.%d", i+1), 40000, 80, 900, 20000, time.Minute)
	}
	// A preconnected browser socket: nothing sent yet (slow, one of a kind).
	add(1, "10.2.0.1", 40000, 80, 0, 0, 10*time.Second)
	// A bulk upload: much received (not slow).
	add(1, "10.3.0.1", 40000, 80, 50<<20, 0, 0)
	// Outbound connections (no listener on their local port) never count.
	conns = append(conns, tcpConn{cookie: 9999, state: tcpEstablished,
		local: netip.MustParseAddrPort("10.0.0.1:55555"), remote: netip.MustParseAddrPort("10.9.9.9:443")})

	tr := newSlowConnTracker(slog.New(slog.DiscardHandler), SlowConnConfig{Now: func() time.Time { return clock }},
		func() ([]tcpConn, error) { return conns, nil })
	r := tr.Report()
	if r.Slow != 1 || r.Inbound != 103 {
		t.Fatalf("first listing: slow %d inbound %d, want 1 (the browser socket silent for 10 s: open at least that long; the attacker's began 2 s ago) and 103", r.Slow, r.Inbound)
	}
	clock = now.Add(time.Second)
	if r = tr.Report(); r.Slow != 61 {
		t.Fatalf("a second later: slow %d, want 61 (the attacker's are 3 s old)", r.Slow)
	}
	clock = now.Add(6 * time.Second)
	lastDataNow := func(cs []tcpConn) { // what a real listing says now: no data since
		for i := range cs {
			cs[i].lastDataRecv += 5 * time.Second
		}
	}
	lastDataNow(conns)
	r = tr.Report()
	if r.Slow != 61 || r.Idle != 40 || r.SlowSources != 2 {
		t.Fatalf("slow %d idle %d sources %d, want 61, 40, 2: %+v", r.Slow, r.Idle, r.SlowSources, r)
	}
	top := r.Sources[0]
	if top.Src != "10.0.0.66" || top.Slow != 60 || top.Normal != 1 || strings.Join(top.DstPorts, ",") != "80" {
		t.Errorf("top source %+v, want 10.0.0.66 with 60 slow, 1 normal on port 80", top)
	}
	if r.TopSource() != 60 || r.TopUnserved != 1 {
		t.Errorf("TopSource %d, TopUnserved %d: want 60, and 1 (the browser: the attacker has a served connection)", r.TopSource(), r.TopUnserved)
	}
	// A scrape within Every reuses the listing.
	clock = clock.Add(DefaultSlowConnEvery / 2)
	all := conns
	conns = conns[:1]
	if r := tr.Report(); r.Slow != 61 {
		t.Errorf("a report within Every listed again: slow %d", r.Slow)
	}
	conns = all
	// A scrape lists afresh unless the last listing is very recent.
	listings := 0
	tr.list = func() ([]tcpConn, error) { listings++; return conns, nil }
	if _, err := testutil.CollectAndLint(tr.Collector()); err != nil || listings != 1 {
		t.Errorf("a scrape %s after the last listing listed %d times (%v), want once", DefaultSlowConnEvery/2, listings, err)
	}
	clock = clock.Add(scrapeMaxAge / 2)
	if _, err := testutil.CollectAndLint(tr.Collector()); err != nil || listings != 1 {
		t.Errorf("a scrape %s after a listing listed again (%d listings, %v)", scrapeMaxAge/2, listings, err)
	}
	if err := testutil.CollectAndCompare(tr.Collector(), strings.NewReader(`
# HELP packetscope_tcp_slow_connections Inbound TCP connections open for a while on which the node has answered nothing and the client sent little (an incomplete request: slowloris).
# TYPE packetscope_tcp_slow_connections gauge
packetscope_tcp_slow_connections 61
# HELP packetscope_tcp_slow_connections_top_source Slow inbound TCP connections held by the single source holding the most.
# TYPE packetscope_tcp_slow_connections_top_source gauge
packetscope_tcp_slow_connections_top_source 60
# HELP packetscope_tcp_slow_connections_top_unserved_source Slow inbound TCP connections held by the single source holding the most among those the node serves on none of their connections (none answered, no large upload).
# TYPE packetscope_tcp_slow_connections_top_unserved_source gauge
packetscope_tcp_slow_connections_top_unserved_source 1
`), "packetscope_tcp_slow_connections", "packetscope_tcp_slow_connections_top_source", "packetscope_tcp_slow_connections_top_unserved_source"); err != nil {
		t.Error(err)
	}
	if probs, err := testutil.CollectAndLint(tr.Collector()); err != nil || len(probs) != 0 {
		t.Errorf("lint: %v %v", probs, err)
	}
	// A drop rule for the attacker closes its slow connections and the 5 it
	// opened since the last listing (incomplete requests too, not slow yet),
	// not its answered one; a rate limit of its new connections closes the
	// slow ones only; another rate limit, a broader source or another port
	// closes none.
	add(5, "10.0.0.66", 45000, 80, 120, 0, 0)
	var destroyed []tcpConn
	tr.destroy = func(cs []tcpConn) (int, error) { destroyed = append(destroyed, cs...); return len(cs), nil }
	mk := func(action rule.Action, src string, ports ...string) rule.Rule {
		r := rule.Rule{Action: action, Match: rule.Match{Src: src, Protocol: "tcp", DstPorts: ports}}
		if action == rule.ActionRateLimit {
			r.RatePPS = 10
		}
		return r
	}
	for _, c := range []struct {
		r    rule.Rule
		want int
	}{
		{mk(rule.ActionRateLimit, "10.0.0.66/32"), 0},
		{func() rule.Rule {
			r := mk(rule.ActionRateLimit, "10.0.0.66/32", "80")
			r.Match.TCPFlags = "syn,!ack"
			return r
		}(), 60},
		{func() rule.Rule {
			r := mk(rule.ActionRateLimit, "10.0.0.66/32", "80")
			r.Match.TCPFlags = "ack"
			return r
		}(), 0},
		{mk(rule.ActionDrop, "10.0.0.0/24"), 0},
		{mk(rule.ActionDrop, "10.0.0.66/32", "443"), 0},
		{mk(rule.ActionDrop, "10.0.0.66/32", "80"), 65},
	} {
		destroyed = nil
		if n := tr.CloseHeldBy(c.r); n != c.want || len(destroyed) != c.want {
			t.Errorf("CloseHeldBy(%s %+v) closed %d (%d asked), want %d", c.r.Action, c.r.Match, n, len(destroyed), c.want)
		}
		for _, d := range destroyed {
			if d.remote.Addr().String() != "10.0.0.66" || d.bytesSent != 0 {
				t.Errorf("closed %+v: not one of the attacker's slow connections", d)
			}
		}
	}
	// Gone connections are forgotten: the next listing counts none.
	conns = conns[:1]
	clock = clock.Add(2 * time.Second)
	if r := tr.Report(); r.Slow != 0 || len(r.Sources) != 0 || len(tr.firstSeen) != 0 {
		t.Errorf("after the connections closed: %+v, %d remembered", r, len(tr.firstSeen))
	}
}

// TestSlowConnSockDiag: the sock_diag listing sees a real listener and an
// incomplete request on it, and not a connection that was answered.
func TestSlowConnSockDiag(t *testing.T) {
	for _, lo := range []string{"127.0.0.1", "::1"} {
		t.Run(lo, func(t *testing.T) { testSlowConnSockDiag(t, lo) })
	}
}

func testSlowConnSockDiag(t *testing.T, lo string) {
	l, err := net.Listen("tcp", net.JoinHostPort(lo, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				n, _ := c.Read(buf)
				if strings.Contains(string(buf[:n]), "\r\n\r\n") {
					_, _ = c.Write([]byte("HTTP/1.0 200 OK\r\n\r\n"))
				}
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	slow, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	_, _ = slow.Write([]byte("GET / HTTP/1.1\r\n"))
	served, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer served.Close()
	_, _ = served.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	if _, err := served.Read(make([]byte, 64)); err != nil {
		t.Fatal(err)
	}

	list := sockDiagLister(netns.None())
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	var conns []tcpConn
	deadline := time.Now().Add(5 * time.Second)
	for {
		conns, err = list()
		if err != nil {
			t.Fatalf("sock_diag: %v", err)
		}
		var got []tcpConn
		for _, c := range conns {
			if c.local.Port() == port && c.state == tcpEstablished {
				got = append(got, c)
			}
		}
		if len(got) == 2 && got[0].bytesReceived > 0 && got[1].bytesReceived > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	clock := time.Now()
	// Only this test's listener: the host namespace holds other loopback
	// connections (other tests, the machine's own services) that may be slow too.
	ours := func() ([]tcpConn, error) {
		cs, err := list()
		return slices.DeleteFunc(cs, func(c tcpConn) bool { return c.local.Port() != port }), err
	}
	tr := newSlowConnTracker(slog.New(slog.DiscardHandler), SlowConnConfig{MinAge: time.Second, Now: func() time.Time { return clock }}, ours)
	tr.Report()
	clock = clock.Add(3 * time.Second)
	r := tr.Report()
	var src *SlowSource
	for i := range r.Sources {
		if r.Sources[i].Src == lo {
			src = &r.Sources[i]
		}
	}
	if src == nil || src.Slow != 1 || src.Normal < 1 || !strings.Contains(strings.Join(src.DstPorts, ","), fmt.Sprint(port)) {
		t.Fatalf("want %s holding 1 slow connection on port %d and the served one normal: %+v", lo, port, r)
	}

	// A listing gone stale (the connection closed and its 4-tuple came
	// back) names another socket: its cookie no longer matches, and the
	// kernel leaves the connection alone.
	destroy := sockDestroyer(netns.None())
	stale := slices.Clone(tr.slowConns)
	for i := range stale {
		stale[i].cookie++
	}
	if n, err := destroy(stale); n != 0 || err == nil {
		t.Fatalf("destroy by a stale cookie closed %d (err %v), want 0 and an error", n, err)
	}
	// A drop rule for the source closes the slow connection (the client
	// sees it reset), not the served one.
	tr.destroy = destroy
	if n := tr.CloseHeldBy(rule.Rule{Action: rule.ActionDrop, Match: rule.Match{Src: netip.PrefixFrom(netip.MustParseAddr(lo), netip.MustParseAddr(lo).BitLen()).String(), Protocol: "tcp", DstPorts: []string{fmt.Sprint(port)}}}); n != 1 {
		t.Fatalf("CloseHeldBy closed %d connections, want 1 (the slow one)", n)
	}
	_ = slow.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := slow.Read(make([]byte, 1)); err == nil || os.IsTimeout(err) {
		t.Errorf("the slow connection is still open after CloseHeldBy: read %v", err)
	}
	if _, err := served.Write([]byte("x")); err != nil {
		t.Errorf("the served connection was closed too: %v", err)
	}
}

// TestAPIRuleAddedHookAndSlowReport: the API calls OnRuleAdded with each
// rule it stored (not with a refused one), and a traffic report carries the
// window's slow-connection report.
func TestAPIRuleAddedHookAndSlowReport(t *testing.T) {
	var got []rule.Rule
	rep := &SlowConnReport{Inbound: 3, Slow: 2, SlowSources: 1, Sources: []SlowSource{{Src: "198.51.100.9", Slow: 2, DstPorts: []string{"80"}}}}
	w := NewTrafficWindow(WindowConfig{MaxAge: time.Hour, SlowConnections: func() *SlowConnReport { return rep }})
	f := &apiFixture{store: newMemStore(4), window: w}
	f.h = NewAPI(quietLogger, f.store, w, testToken, OnRuleAdded(func(r rule.Rule) int { got = append(got, r); return 0 }))
	bearer := "Bearer " + testToken
	if resp, body := f.do(t, "POST", "/api/v1/rules", bearer, goodRule); resp.StatusCode != 201 {
		t.Fatalf("add: %d %s", resp.StatusCode, body)
	}
	if resp, _ := f.do(t, "POST", "/api/v1/rules", bearer, `{"action":"drop","match":{"src":"0.0.0.0/0"},"ttl_seconds":60}`); resp.StatusCode != 400 {
		t.Fatalf("a refused rule: %d", resp.StatusCode)
	}
	if len(got) != 1 || got[0].ID == "" || got[0].Match.Src != "203.0.113.0/24" {
		t.Errorf("hook saw %+v, want the one stored rule with its id", got)
	}
	resp, body := f.do(t, "GET", "/api/v1/traffic?window=60s", bearer, "")
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"slow_connections":{`) || !strings.Contains(string(body), `"src":"198.51.100.9"`) {
		t.Errorf("traffic report lacks slow_connections: %d %s", resp.StatusCode, body)
	}
}

// TestSlowConnHalfOpen: a client whose handshake never completes (it drops
// the node's SYN-ACKs) leaves a request socket in SYN_RECV on the node's
// listener: the listing counts it half-open, and not as a connection.
func TestSlowConnHalfOpen(t *testing.T) {
	testnet.RequireRoot(t)
	node := testnet.NewNS(t, "ps-halfopen-node")
	client := testnet.NewNS(t, "ps-halfopen-client")
	testnet.Link(t, node, "eth0", "10.231.0.1/24", client, "eth0", "10.231.0.2/24")
	var l net.Listener
	if err := node.Do(func() (err error) {
		l, err = net.Listen("tcp", "10.231.0.1:8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client.MustRun("iptables", "-A", "INPUT", "-p", "tcp", "--tcp-flags", "SYN,ACK", "SYN,ACK", "-j", "DROP")
	// The dials end (time out) before the namespaces go: a thread still
	// inside one at cleanup would be killed with its namespace's processes.
	var dials sync.WaitGroup
	t.Cleanup(dials.Wait)
	for range 3 {
		dials.Go(func() {
			_ = client.Do(func() error {
				c, err := net.DialTimeout("tcp", "10.231.0.1:8080", 2*time.Second)
				if err == nil {
					c.Close()
				}
				return err
			})
		})
	}
	h, err := netns.GetFromPath(node.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	tr := newSlowConnTracker(slog.New(slog.DiscardHandler), SlowConnConfig{}, sockDiagLister(h))
	var r *SlowConnReport
	testnet.WaitFor(t, 3*time.Second, "3 half-open handshakes", func() bool {
		tr.mu.Lock()
		tr.listed = time.Time{} // list again
		tr.mu.Unlock()
		r = tr.Report()
		return r.HalfOpen == 3
	})
	if r.Inbound != 0 {
		t.Errorf("half-open handshakes counted as %d inbound connections", r.Inbound)
	}
}

// BenchmarkSlowConnListing: one sock_diag listing of the namespace's TCP
// sockets, with 8,000 established loopback connections (16,000 sockets)
// in a namespace of their own: the cost the tracker pays each interval.
func BenchmarkSlowConnListing(b *testing.B) {
	testnet.RequireRoot(b)
	ns := testnet.NewNS(b, "ps-slowb")
	const n = 8000
	// Both ends of every connection are this process's files (Go raises
	// the soft limit to the hard one, 20,000 on the machines this ran on).
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < 2*n+512 {
		b.Fatalf("open files limit %d (%v): want >= %d", lim.Cur, err, 2*n+512)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn // both ends
	)
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()
	err := ns.Do(func() error {
		l, err := net.Listen("tcp", "127.0.0.1:7300")
		if err != nil {
			return err
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
		for range n {
			c, err := net.Dial("tcp", "127.0.0.1:7300")
			if err != nil {
				return err
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	h, err := netns.GetFromPath(ns.Path())
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	list := sockDiagLister(h)
	b.ResetTimer()
	var got int
	for range b.N {
		cs, err := list()
		if err != nil {
			b.Fatal(err)
		}
		got = len(cs)
	}
	b.StopTimer()
	if got < n {
		b.Fatalf("listed %d sockets, want >= %d", got, n)
	}
	b.ReportMetric(float64(got), "sockets")
}

// TestAcceptQueueLongest: connections a listener completed and its
// application has not accepted are counted on the listener, IPv4 and IPv6;
// once accepted they leave the queue; a queue as long as its backlog is
// full.
func TestAcceptQueueLongest(t *testing.T) {
	testnet.RequireRoot(t)
	node := testnet.NewNS(t, "ps-acceptq-node")
	node.MustRun("sysctl", "-q", "-w", "net.core.somaxconn=5")
	var l4, l6 net.Listener
	if err := node.Do(func() (err error) {
		if l4, err = net.Listen("tcp", "127.0.0.1:8080"); err != nil {
			return err
		}
		l6, err = net.Listen("tcp", "[::1]:8081")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer l4.Close()
	defer l6.Close()
	h, err := netns.GetFromPath(node.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	list := listenQueueLister(h)
	check := func(what string, want acceptQueues) {
		t.Helper()
		if q, err := list(); err != nil || q != want {
			t.Fatalf("%s: %+v, %v: want %+v", what, q, err, want)
		}
	}
	check("idle listeners", acceptQueues{})
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	dial := func(addr string, n int) {
		t.Helper()
		if err := node.Do(func() error {
			for range n {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					return err
				}
				conns = append(conns, c)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	dial("127.0.0.1:8080", 3)
	dial("[::1]:8081", 5) // the IPv6 listener has the most, as many as its backlog
	check("5 and 3 waiting", acceptQueues{Longest: 5, Full: 1})
	for range 5 {
		c, err := l6.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	check("the IPv6 ones accepted", acceptQueues{Longest: 3})
}

// TestAcceptQueueSettles: a queue found holding connections, or full, is
// read again a moment later and the smaller numbers count, so a burst the
// application drains at once reads as what is left of it.
func TestAcceptQueueSettles(t *testing.T) {
	q := func(longest, full int) acceptQueues { return acceptQueues{Longest: longest, Full: full} }
	for _, c := range []struct {
		reads []acceptQueues
		want  acceptQueues
	}{
		{[]acceptQueues{q(0, 0)}, q(0, 0)},
		{[]acceptQueues{q(5, 0)}, q(5, 0)},                // under the recheck threshold: one read
		{[]acceptQueues{q(150, 0), q(2, 0)}, q(2, 0)},     // a burst, drained
		{[]acceptQueues{q(100, 0), q(130, 0)}, q(100, 0)}, // a queue still growing: what waited all along
		{[]acceptQueues{q(4, 1), q(4, 1)}, q(4, 1)},       // a small queue full at both reads
		{[]acceptQueues{q(4, 1), q(1, 0)}, q(1, 0)},       // full for a moment
	} {
		tr := newSlowConnTracker(slog.New(slog.DiscardHandler), SlowConnConfig{}, nil)
		i := 0
		tr.acceptQueue = func() (acceptQueues, error) {
			if i >= len(c.reads) {
				t.Fatalf("reads %v: read %d times", c.reads, i+1)
			}
			i++
			return c.reads[i-1], nil
		}
		if got, ok := tr.acceptQueues(); !ok || got != c.want || i != len(c.reads) {
			t.Errorf("reads %v: got %+v (%v) after %d reads, want %+v after %d", c.reads, got, ok, i, c.want, len(c.reads))
		}
	}
}

// TestSlowConnYoungIncompleteIsNotServed: a slowloris source's connections
// too young to call slow (its latest ones, queued behind the server's full
// slots) do not make it look like a client being served; an answered
// connection does.
func TestSlowConnYoungIncompleteIsNotServed(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := now
	conns := []tcpConn{{cookie: 1, state: tcpListen, local: netip.MustParseAddrPort("0.0.0.0:80")}}
	cookie := uint64(100)
	add := func(n int, sent uint64) {
		for range n {
			cookie++
			conns = append(conns, tcpConn{cookie: cookie, state: tcpEstablished,
				local:         netip.MustParseAddrPort("10.0.0.1:80"),
				remote:        netip.AddrPortFrom(netip.MustParseAddr("10.0.0.66"), uint16(cookie)),
				bytesReceived: 200, bytesSent: sent})
		}
	}
	add(100, 0)
	tr := newSlowConnTracker(slog.New(slog.DiscardHandler), SlowConnConfig{Now: func() time.Time { return clock }},
		func() ([]tcpConn, error) { return conns, nil })
	tr.Report()
	add(50, 0) // young, incomplete
	clock = now.Add(4 * time.Second)
	if r := tr.Report(); len(r.Sources) != 1 || r.Sources[0].Slow != 100 || r.Sources[0].Normal != 0 {
		t.Fatalf("sources %+v: want 10.0.0.66 with 100 slow and none served", r.Sources)
	}
	add(1, 5000) // answered
	clock = clock.Add(2 * time.Second)
	if r := tr.Report(); len(r.Sources) != 1 || r.Sources[0].Normal != 1 {
		t.Fatalf("sources %+v: want 1 served connection", r.Sources)
	}
}

// TestSlowConnLastDataCountsFromHandshake: the age bound the classifier
// takes from tcp_info's last_data_recv holds on the running kernel: on a
// connection that has received nothing, the clock runs from the handshake,
// and data restarts it. The listing says how much of it the service has
// not read (here: all, it never accepted the connection).
func TestSlowConnLastDataCountsFromHandshake(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	listed := func() tcpConn {
		conns, err := sockDiagLister(netns.None())()
		if err != nil {
			t.Fatalf("sock_diag: %v", err)
		}
		for _, c := range conns {
			if c.local.Port() == port && c.state == tcpEstablished {
				return c
			}
		}
		t.Fatal("the connection is not listed")
		return tcpConn{}
	}
	time.Sleep(1200 * time.Millisecond)
	if d := listed().lastDataRecv; d < 1100*time.Millisecond || d > 5*time.Second {
		t.Errorf("1.2 s after the handshake, no data: last_data_recv %s, want about 1.2 s", d)
	}
	req := "GET / HTTP/1.1\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if got := listed(); got.lastDataRecv > time.Second || got.unread != uint32(len(req)) || got.bytesReceived != uint64(len(req)) {
		t.Errorf("just after the request: last_data_recv %s, unread %d, received %d: want under a second, %d, %d",
			got.lastDataRecv, got.unread, got.bytesReceived, len(req), len(req))
	}
}

// TestSlowConnReadRequestIsSlowSooner: a request the service has read and
// not answered (it waits for the client: a slowloris's held slot) is slow
// from MinAgeRead; one still unread in the accept queue (it waits for the
// service) and one that sent nothing keep MinAge.
func TestSlowConnReadRequestIsSlowSooner(t *testing.T) {
	clock := time.Unix(1_700_000_000, 0)
	conns := []tcpConn{{cookie: 1, state: tcpListen, local: netip.MustParseAddrPort("0.0.0.0:80")}}
	add := func(src string, n int, recv uint64, unread uint32) {
		for i := range n {
			conns = append(conns, tcpConn{cookie: uint64(len(conns) + 1), state: tcpEstablished,
				local:  netip.MustParseAddrPort("10.0.0.1:80"),
				remote: netip.AddrPortFrom(netip.MustParseAddr(src), uint16(40000+i)), bytesReceived: recv, unread: unread,
				lastDataRecv: 1200 * time.Millisecond})
		}
	}
	add("10.0.0.66", 60, 300, 0)  // read, unanswered: waits for its client
	add("10.0.0.77", 60, 300, 80) // part of it unread: in the queue, or read in pieces
	add("10.0.0.88", 60, 0, 0)    // sent nothing yet
	tr := newSlowConnTracker(slog.New(slog.DiscardHandler), SlowConnConfig{Now: func() time.Time { return clock }},
		func() ([]tcpConn, error) { return conns, nil })
	r := tr.Report()
	if r.Slow != 60 || r.TopSource() != 60 || r.TopUnserved != 60 || r.Sources[0].Src != "10.0.0.66" || r.MinAgeReadS != 1 {
		t.Fatalf("1.2 s in: %d slow, top %+v: want the 60 read ones of 10.0.0.66 only (read from 1 s)", r.Slow, r.Sources)
	}
	clock = clock.Add(2 * time.Second)
	if r = tr.Report(); r.Slow != 180 {
		t.Fatalf("3.2 s in: %d slow, want all 180", r.Slow)
	}
}
