package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/packetscope/packetscope/internal/testnet"
)

// The slow-connection service: a victim HTTP server that, like a real one,
// has a bounded number of connection slots and closes a connection whose
// client sent nothing for slowIdle (nginx's client_header_timeout works the
// same way: between two reads, not for the whole request). A slowloris
// client sending a header line every slowLineEvery keeps every slot it holds.
const (
	slowPort      = 8080
	slowSlots     = 100
	slowIdle      = 8 * time.Second
	slowLineEvery = "5" // slowhttptest -i
	// net.core.somaxconn in the victim: how many connections wait for a
	// slot. A small one overflows under the slowloris; the default never
	// does, and only the slow connections give the attack away.
	slowBacklogSmall   = "16"
	slowBacklogDefault = "4096"
)

// TestSlowlorisDefense: `slowhttptest -H` from the attacker against a real
// HTTP server in the isolated victim, with the legitimate client using the
// same service, `packetscope run` guarding it, real Prometheus and
// Alertmanager with the shipped configuration, against a small accept queue
// and the default one. The slowloris denies the service; an alert fires (the
// small accept queue overflowing, or the slow connections), the
// responder installs a rule for the attacker's address, the guard drops its
// packets, the agent closes the connections it held and the legitimate
// client is served again.
func TestSlowlorisDefense(t *testing.T) {
	testnet.RequireRoot(t)
	for _, analyst := range []string{"builtin", "llm"} {
		for _, backlog := range []string{slowBacklogSmall, slowBacklogDefault} {
			t.Run(analyst+"/backlog="+backlog, func(t *testing.T) { runSlowloris(t, analyst, backlog) })
		}
	}
}

func runSlowloris(t *testing.T, analyst, backlog string) {
	st := startDefenseStack(t, analyst)
	srv := serveLimitedHTTP(t, st.victim, slowPort, slowSlots, slowIdle, backlog)
	legit := startLegitClient(t, st.client, slowPort)
	testnet.WaitFor(t, 20*time.Second, "Prometheus to scrape the agent", func() bool {
		return len(promQuery(t, st.prom, `up{job="packetscope"} == 1`)) == 1
	})
	time.Sleep(12 * time.Second) // baseline: the legitimate client alone

	watch := testnet.WatchFirstSent(t, st.attacker)
	start := time.Now()
	okAtStart, failedAtStart := legit.ok.Load(), legit.failed.Load()
	_, out := st.attacker.Start("timeout", "70", "slowhttptest", "-H", "-c", "300", "-r", "100", "-i", slowLineEvery, "-l", "60",
		"-u", fmt.Sprintf("http://%s:%d/", victimAttackIP, slowPort))

	// The rule for the attacker's address.
	var r *agentRule
	testnet.WaitFor(t, 40*time.Second, "a responder rule for the attacker's address", func() bool {
		r = findRule(t, st.agent, attackerIP+"/32")
		return r != nil
	})
	// Seconds count from the attack's first packet.
	start = firstPacket(t, watch, start)
	ruleAfter := time.Since(start)
	okAtRule, failedAtRule := legit.ok.Load(), legit.failed.Load()
	t.Logf("%s analyst: slowloris start → rule %s (%s, origin %s) in %.1fs; legitimate client so far: %d served, %d failed; server: %d accepted",
		analyst, r.ID, r.Action, r.Origin, ruleAfter.Seconds(), okAtRule, failedAtRule, srv.accepted.Load())
	if r.Action != "drop" || r.Origin != analyst {
		t.Errorf("rule %+v: want a drop from the %s analyst", r, analyst)
	}
	if ruleAfter > 15*time.Second {
		t.Errorf("the rule came %.1fs after the attack started: want within 15 s", ruleAfter.Seconds())
	}

	// Served again: the agent closes the attacker's connections when the
	// rule goes in, and the legitimate client gets their slots.
	var servedAgain time.Duration
	testnet.WaitFor(t, 40*time.Second, "the server to serve the legitimate client again", func() bool {
		ok0, f0 := legit.ok.Load(), legit.failed.Load()
		time.Sleep(time.Second)
		if legit.ok.Load() > ok0+5 && legit.failed.Load() == f0 {
			servedAgain = time.Since(start)
			return true
		}
		return false
	})
	// The attack was real: it held every slot of the server until the rule
	// freed them (a defense this fast frees them before the legitimate
	// client's 2 s timeout, so the client's failures do not prove it).
	full := time.Duration(srv.fullNS.Load())
	t.Logf("%s analyst: the server's accept loop waited %.1fs with every slot held", analyst, full.Seconds())
	if full < 500*time.Millisecond {
		t.Errorf("the server ran out of slots for %s only: the slowloris did not deny the service (slowhttptest: %s)", full, out.String())
	}
	ok0, f0 := legit.ok.Load(), legit.failed.Load()
	time.Sleep(8 * time.Second)
	ok, failed := legit.ok.Load()-ok0, legit.failed.Load()-f0
	t.Logf("%s analyst: served again %.1fs after the attack started (%.1fs after the rule); then %d served, %d failed",
		analyst, servedAgain.Seconds(), (servedAgain - ruleAfter).Seconds(), ok, failed)
	if servedAgain-ruleAfter > 5*time.Second {
		t.Errorf("served again %.1fs after the rule: want within 5 s (the agent closes the held connections when the rule goes in)", (servedAgain - ruleAfter).Seconds())
	}
	if ok == 0 || float64(failed) > 0.01*float64(ok+failed) {
		t.Errorf("legitimate client after the rule: %d served, %d failed: want >= 99%% served", ok, failed)
	}

	t.Logf("%s analyst: legitimate client from the attack's start: %d served, %d failed (the failures are the denial before the rule)",
		analyst, legit.ok.Load()-okAtStart, legit.failed.Load()-failedAtStart)
	logTimeline(t, st.prom, st.agent, "slowloris, backlog "+backlog, analyst, start, ruleAfter)
	logSlowCounts(t, st.prom, start, ruleAfter)
	logFigures(t, st, "slowloris (slowhttptest -H, backlog "+backlog+")", analyst, start, ruleAfter, "rule in: its connections closed", legit.ok.Load()-okAtStart, legit.failed.Load()-failedAtStart)
	// The connections waiting for a slot overflow a small accept queue
	// (PacketScopeSYNQueueExhaustion), a default one they do not; the held
	// ones are slow a second in (PacketScopeSlowConnections). Whichever
	// fires first gets the rule for the attacker, which ends the attack.
	// Either is the right alert for it.
	fired := promQuery(t, st.prom, `max_over_time(ALERTS{alertname=~"PacketScopeSlowConnections|PacketScopeSYNQueueExhaustion",alertstate="firing"}[2m])`)
	if len(fired) == 0 {
		t.Errorf("neither PacketScopeSlowConnections nor PacketScopeSYNQueueExhaustion fired")
	}
	for _, f := range fired {
		t.Logf("%s analyst: %s fired", analyst, f.Labels["alertname"])
	}
	// The agent may have closed every connection the attacker had (all of
	// them waited in a default-sized queue), after which slowhttptest sends
	// nothing: a new connection from the attacker shows the drop at XDP.
	if err := st.attacker.Do(func() error {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", victimAttackIP, slowPort), time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}); err == nil {
		t.Errorf("the attacker connected to the server again under its rule")
	}
	if r = findRule(t, st.agent, attackerIP+"/32"); r == nil || r.Packets == 0 {
		t.Errorf("the attacker's rule dropped nothing at XDP: %+v", r)
	}
	for _, d := range getDecisions(t, st.agent) {
		if d.Kind == "alert" && len(d.Applied) > 0 && d.Analyst != analyst {
			t.Errorf("decision %s made by %q, want %q (no fallback)", d.ID, d.Analyst, analyst)
		}
	}
	_, m := httpGet(t, st.agent.URL+"/metrics")
	t.Logf("rule hits %d; agent: %s", r.Packets, strings.ReplaceAll(grepLines(m, "packetscope_tcp_slow"), "\n", "; "))
	if n := metricValue(m, "packetscope_tcp_slow_connections_closed_total"); n < 50 {
		t.Errorf("the agent closed %.0f of the attacker's slow connections: want the ones it held (>= 50)", n)
	}
}

// TestNoSlowAlertOnOrdinaryConnections: ordinary connection-heavy traffic —
// 200 HTTP keep-alive connections from one client, idle between requests,
// and a 16-stream bulk upload beside them — raises no slow-connection
// alert and gets no rule.
func TestNoSlowAlertOnOrdinaryConnections(t *testing.T) {
	testnet.RequireRoot(t)
	st := startDefenseStack(t, "builtin")
	serveLimitedHTTP(t, st.victim, slowPort, 1000, time.Minute, slowBacklogDefault)
	testnet.WaitFor(t, 20*time.Second, "Prometheus to scrape the agent", func() bool {
		return len(promQuery(t, st.prom, `up{job="packetscope"} == 1`)) == 1
	})

	st.victim.Start("iperf3", "-s", "-B", victimServeIP, "-1")
	var conns []net.Conn
	if err := st.client.Do(func() error {
		for range 200 {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", victimServeIP, slowPort), 2*time.Second)
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	}); err != nil {
		t.Fatalf("open keep-alive connections: %v", err)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	var served, failed atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i, c := range conns {
		wg.Go(func() {
			br := bufio.NewReader(c)
			// Each connection asks at once, then every 6 s (spread over the
			// connections) and idles between.
			for n := 0; ; n++ {
				if n == 1 {
					time.Sleep(time.Duration(i) * 30 * time.Millisecond)
				}
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: victim\r\n\r\n"); err != nil {
					failed.Add(1)
					return
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					failed.Add(1)
					return
				}
				_, _ = bufio.NewReader(resp.Body).ReadString('\n')
				resp.Body.Close()
				served.Add(1)
				select {
				case <-stop:
					return
				case <-time.After(6 * time.Second):
				}
			}
		})
	}
	out := st.client.MustRun("timeout", "60", "iperf3", "-c", victimServeIP, "-P", "16", "-t", "20", "-f", "m")
	if !strings.Contains(out, "receiver") {
		t.Errorf("the upload did not complete:\n%s", out)
	}
	time.Sleep(6 * time.Second) // the last scrapes and evaluations
	close(stop)
	wg.Wait()
	t.Logf("keep-alive clients: %d requests served, %d failed", served.Load(), failed.Load())
	if failed.Load() != 0 || served.Load() < 600 {
		t.Errorf("keep-alive clients: %d served, %d failed: want >= 600 served (200 connections, 3+ requests each) and none failed", served.Load(), failed.Load())
	}
	inbound := promQuery(t, st.prom, `max_over_time(packetscope_tcp_inbound_connections[2m])`)
	top := promQuery(t, st.prom, `max_over_time(packetscope_tcp_slow_connections_top_source[2m])`)
	t.Logf("max inbound connections %v, max slow connections of one source %v", inbound, top)
	if len(inbound) != 1 || inbound[0].Value < 200 {
		t.Errorf("the agent saw %v inbound connections at most: want >= 200 (the keep-alive clients)", inbound)
	}
	if len(top) != 1 || top[0].Value >= 10 {
		t.Errorf("slow connections of the busiest source reached %v: keep-alive and bulk connections are not slow", top)
	}
	if fired := promQuery(t, st.prom, `max_over_time(ALERTS{attack!=""}[2m])`); len(fired) != 0 {
		t.Errorf("ordinary connections raised alerts: %v", fired)
	}
	for _, d := range getDecisions(t, st.agent) {
		if len(d.Applied) > 0 {
			t.Errorf("decision %s applied rules against ordinary connections: %+v", d.ID, d)
		}
	}
}

type agentRule struct {
	ID      string `json:"id"`
	Action  string `json:"action"`
	Origin  string `json:"origin"`
	Packets uint64 `json:"packets"`
	Match   struct {
		Src string `json:"src"`
	} `json:"match"`
}

// findRule returns the agent's responder rule for src, or nil.
func findRule(t testing.TB, agent *agentProc, src string) *agentRule {
	t.Helper()
	_, body := httpGet(t, agent.URL+"/api/v1/rules")
	var resp struct {
		Rules []agentRule `json:"rules"`
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatalf("decode rules: %v: %s", err, body)
	}
	for i := range resp.Rules {
		if r := &resp.Rules[i]; r.Match.Src == src && (r.Origin == "builtin" || r.Origin == "llm") {
			return r
		}
	}
	return nil
}

// limitedServer counts what the slow-connection service accepted, and how
// long it had no free slot while a connection waited for one.
type limitedServer struct {
	accepted atomic.Int64
	fullNS   atomic.Int64 // time Accept waited for a slot, in ns
}

// serveLimitedHTTP serves a tiny HTTP answer on port in ns (every address)
// with at most slots connections at a time; a connection waits in the
// kernel's accept queue (backlog long) for a slot, and one whose client
// sends nothing for idle is closed.
func serveLimitedHTTP(t testing.TB, ns *testnet.NS, port, slots int, idle time.Duration, backlog string) *limitedServer {
	t.Helper()
	ns.MustRun("sysctl", "-q", "-w", "net.core.somaxconn="+backlog)
	var l net.Listener
	if err := ns.Do(func() (err error) {
		l, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	s := &limitedServer{}
	ll := &limitListener{Listener: l, slots: make(chan struct{}, slots), idle: idle, s: s}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "served")
	})}
	go srv.Serve(ll)
	t.Cleanup(func() { srv.Close() })
	return s
}

type limitListener struct {
	net.Listener
	slots chan struct{}
	idle  time.Duration
	s     *limitedServer
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	default: // every slot is held: wait, and count how long
		start := time.Now()
		l.slots <- struct{}{}
		l.s.fullNS.Add(int64(time.Since(start)))
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	l.s.accepted.Add(1)
	return &idleConn{Conn: c, idle: l.idle, release: func() { <-l.slots }}, nil
}

// idleConn closes the connection when a read waits longer than idle: the
// only read timeout the server has (net/http's own deadlines are ignored,
// except the past deadline it uses to interrupt a read).
type idleConn struct {
	net.Conn
	idle    time.Duration
	once    sync.Once
	release func()
}

func (c *idleConn) Read(p []byte) (int, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	return c.Conn.Read(p)
}

func (c *idleConn) SetReadDeadline(t time.Time) error {
	if !t.IsZero() && t.Before(time.Now()) {
		return c.Conn.SetReadDeadline(t)
	}
	return nil
}

func (c *idleConn) SetDeadline(t time.Time) error {
	_ = c.SetReadDeadline(t)
	return c.Conn.SetWriteDeadline(t)
}

func (c *idleConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// logSlowCounts logs what the slow-connection alert saw, scrape by scrape,
// from the attack's first packet to its rule: the busiest source's slow
// connections, at the scrape's time.
func logSlowCounts(t *testing.T, prom *service, start time.Time, until time.Duration) {
	t.Helper()
	var parts []string
	seen := map[float64]bool{}
	for at := start; at.Before(start.Add(until + time.Second)); at = at.Add(250 * time.Millisecond) {
		ts := promQueryAt(t, prom, `timestamp(packetscope_tcp_slow_connections_top_source)`, at)
		v := promQueryAt(t, prom, `packetscope_tcp_slow_connections_top_source`, at)
		if len(ts) != 1 || len(v) != 1 || seen[ts[0].Value] {
			continue
		}
		seen[ts[0].Value] = true
		scraped := time.UnixMilli(int64(ts[0].Value * 1000))
		parts = append(parts, fmt.Sprintf("%.1fs:%.0f", scraped.Sub(start).Seconds(), v[0].Value))
	}
	t.Logf("slow connections of the busiest source, by scrape: %s", strings.Join(parts, " "))
}
