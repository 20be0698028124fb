package e2e

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/packetscope/packetscope/internal/testnet"
)

// ordinaryTrafficFor is how long TestNoAlertOnOrdinaryTraffic runs:
// PACKETSCOPE_ORDINARY_TRAFFIC (a Go duration; scripts/bench-defense.sh sets
// 10m), else 90 s.
func ordinaryTrafficFor(tb testing.TB) time.Duration {
	tb.Helper()
	v := os.Getenv("PACKETSCOPE_ORDINARY_TRAFFIC")
	if v == "" {
		return 90 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 30*time.Second {
		tb.Fatalf("PACKETSCOPE_ORDINARY_TRAFFIC=%q: want a duration of at least 30s", v)
	}
	return d
}

// TestNoAlertOnOrdinaryTraffic: a client keeps a busy but ordinary mix going
// against the guarded victim, with the shipped alerts, Prometheus and
// Alertmanager configuration — bulk TCP both ways over parallel streams,
// 64 parallel keep-alive connections, bursts of short HTTP requests (each
// burst thousands of new connections as fast as the victim takes them, over
// the SYN floor for seconds), and DNS-like UDP queries and answers with
// bursts — and no flood alert fires, no rule is applied and the guard drops
// nothing. The flood alerts fire at once on an overwhelming rate and after
// two scrape intervals on a moderate one (#14); the SYN and TCP flood alerts
// count only what the stack does not take (handshakes completed, FINs of
// connections): this is what keeps them honest about ordinary traffic.
//
// A 90 s version of this test, with bursts meant to stay under the SYN
// floor, once failed in a loaded make test: the bursts took longer than a
// scrape interval, the SYN and TCP flood alerts fired on their rate and the
// responder dropped 3,002 of the client's packets. The bursts are now
// deliberately over the floor (for two intervals in a row when the machine
// keeps up), and the test checks that they crossed it.
func TestNoAlertOnOrdinaryTraffic(t *testing.T) {
	noAlertOnOrdinaryTraffic(t)
}

func noAlertOnOrdinaryTraffic(t testing.TB) {
	testnet.RequireRoot(t)
	dur := ordinaryTrafficFor(t)
	st := startDefenseStack(t, "builtin")
	testnet.WaitFor(t, 20*time.Second, "Prometheus to scrape the agent", func() bool {
		return len(promQuery(t, st.prom, `up{job="packetscope"} == 1`)) == 1
	})
	serveUDPEcho(t, st.victim, 53)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()

	var wg sync.WaitGroup
	var stats ordinaryStats
	wg.Go(func() { bulkTCP(ctx, t, st.victim, st.client, &stats) })
	wg.Go(func() { keepAliveConns(ctx, st.client, 64, &stats) })
	wg.Go(func() { requestBursts(ctx, st.client, &stats) })
	wg.Go(func() { dnsLikeUDP(ctx, st.client, &stats) })
	wg.Wait()
	t.Logf("ordinary traffic for %s: %s", time.Since(start).Round(time.Second), stats.String())

	time.Sleep(3 * time.Second) // the last scrapes and evaluations
	window := fmt.Sprintf("%ds", int(time.Since(start).Seconds())+5)
	if fired := promQuery(t, st.prom, `max_over_time(ALERTS{attack!=""}[`+window+`])`); len(fired) != 0 {
		t.Errorf("ordinary traffic raised flood alerts: %v", fired)
	}
	for _, d := range getDecisions(t, st.agent) {
		if len(d.Applied) > 0 {
			t.Errorf("decision %s applied rules against ordinary traffic: %+v", d.ID, d)
		}
	}
	_, m := httpGet(t, st.agent.URL+"/metrics")
	if n := metricValue(m, "packetscope_xdp_packets_total", "interface=eth1", "action=drop"); n != 0 {
		t.Errorf("%.0f packets of ordinary traffic dropped at XDP", n)
	}
	// The traffic must have been there to prove anything.
	peak := promQuery(t, st.prom, `max_over_time(sum by (flags) (irate(packetscope_xdp_tcp_flags_packets_total{interface="eth1"}[10s]))[`+window+`:1s])`)
	peakUDP := promQuery(t, st.prom, `max_over_time(sum(irate(packetscope_xdp_protocol_packets_total{interface="eth1",protocol="udp"}[10s]))[`+window+`:1s])`)
	var parts []string
	for _, p := range peak {
		parts = append(parts, fmt.Sprintf("%s %.0f/s", p.Labels["flags"], p.Value))
	}
	for _, p := range peakUDP {
		parts = append(parts, fmt.Sprintf("udp %.0f/s", p.Value))
	}
	t.Logf("peak rates seen by the guard on eth1 (1 s irate): %s", strings.Join(parts, ", "))
	// What the stack rejected: the evidence the TCP, ACK and UDP flood
	// alerts ask for beside volume.
	parts = parts[:0]
	for _, q := range []struct{ name, expr string }{
		{"resets sent", `sum(irate(packetscope_tcp_resets_total{direction="tx"}[10s]))`},
		{"rejected", `sum by (flags) (irate(packetscope_tcp_rejected_packets_total[10s]))`},
		{"drops", `sum by (protocol, reason) (irate(packetscope_drops_total{protocol=~"tcp|udp"}[10s]))`},
		{"handshakes completed", `sum(irate(packetscope_tcp_passive_opens_total[10s]))`},
		{"udp for connected sockets", `sum(irate(packetscope_udp_connected_packets_total[10s]))`},
	} {
		for _, p := range promQuery(t, st.prom, `max_over_time((`+q.expr+`)[`+window+`:1s]) > 10`) {
			parts = append(parts, fmt.Sprintf("%s %s %.0f/s", q.name, strings.Join(slices.Sorted(maps.Values(p.Labels)), " "), p.Value))
		}
	}
	t.Logf("peak stack reactions (1 s irate): %s", strings.Join(parts, ", "))
	// What the reset injection alert watches: RSTs the stack rejected on its
	// connections (it fires above 10/s over 5 s).
	for _, p := range promQuery(t, st.prom, `max_over_time(sum by (verdict) (rate(packetscope_tcp_rst_verdicts_total[5s]))[`+window+`:1s])`) {
		t.Logf("peak RSTs received, %s: %.1f/s (5 s rate)", p.Labels["verdict"], p.Value)
	}
	// What the slow-connection alert watches (it fires from 50 of one source).
	for _, q := range []string{"packetscope_tcp_slow_connections", "packetscope_tcp_slow_connections_top_source", "packetscope_tcp_inbound_connections"} {
		for _, p := range promQuery(t, st.prom, `max_over_time(`+q+`[`+window+`])`) {
			t.Logf("peak %s: %.0f", q, p.Value)
		}
	}
	// What the 1 s scrape costs the agent under this traffic.
	for _, q := range []string{"avg_over_time", "max_over_time"} {
		for _, p := range promQuery(t, st.prom, q+`(scrape_duration_seconds{job="packetscope"}[`+window+`])`) {
			t.Logf("scrape of the agent, %s: %.1f ms", strings.TrimSuffix(q, "_over_time"), 1000*p.Value)
		}
	}
	// The request bursts must have been over the SYN floor: the rate the
	// SYN flood alert fired on before it counted completed handshakes (two
	// scrapes in a row over it when the machine keeps up; logged).
	sustained := promQuery(t, st.prom, `max_over_time(min_over_time(sum(irate(packetscope_xdp_tcp_flags_packets_total{interface="eth1",flags="syn"}[10s]))[2s:1s])[`+window+`:1s])`)
	peakSYN := promQuery(t, st.prom, `max_over_time(sum(irate(packetscope_xdp_tcp_flags_packets_total{interface="eth1",flags="syn"}[10s]))[`+window+`:1s])`)
	if len(peakSYN) == 0 || peakSYN[0].Value <= 1000 {
		t.Errorf("the request bursts never took the SYN rate over 1000/s (%v): the test proves nothing about them", peakSYN)
	} else if len(sustained) > 0 {
		t.Logf("request bursts: SYN rate at most %.0f/s, over %.0f/s for two scrapes in a row", peakSYN[0].Value, sustained[0].Value)
	}
	if stats.bulkRuns.Load() == 0 || stats.requests.Load() == 0 || stats.udpAnswers.Load() == 0 || stats.keepAlive.Load() == 0 {
		t.Errorf("part of the ordinary traffic did not run: %s", stats.String())
	}
}

type ordinaryStats struct {
	bulkRuns, requests, requestErrs, keepAlive, udpQueries, udpAnswers atomic.Int64
}

func (s *ordinaryStats) String() string {
	return fmt.Sprintf("%d bulk transfers, %d short requests (%d failed), %d keep-alive requests, %d UDP queries (%d answered)",
		s.bulkRuns.Load(), s.requests.Load(), s.requestErrs.Load(), s.keepAlive.Load(), s.udpQueries.Load(), s.udpAnswers.Load())
}

// bulkTCP alternates 8-stream uploads and downloads of 15 s with 10 s pauses.
func bulkTCP(ctx context.Context, t testing.TB, victim, client *testnet.NS, stats *ordinaryStats) {
	for reverse := false; ctx.Err() == nil; reverse = !reverse {
		left := time.Until(deadlineOf(ctx))
		secs := min(15, int(left.Seconds())-2)
		if secs < 3 {
			return
		}
		srv := victim.Cmd("timeout", fmt.Sprint(secs+15), "iperf3", "-s", "-B", victimServeIP, "-1")
		if err := srv.Start(); err != nil {
			t.Errorf("start iperf3 server: %v", err)
			return
		}
		time.Sleep(300 * time.Millisecond)
		args := []string{"timeout", fmt.Sprint(secs + 10), "iperf3", "-c", victimServeIP, "-P", "8", "-t", fmt.Sprint(secs)}
		if reverse {
			args = append(args, "-R")
		}
		if out, err := client.Cmd(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Logf("iperf3 %v: %v\n%s", args, err, out)
		} else {
			stats.bulkRuns.Add(1)
		}
		_ = srv.Wait()
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Second):
		}
	}
}

func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// keepAliveConns keeps n connections open, each asking for a page every
// 200 ms over the same connection.
func keepAliveConns(ctx context.Context, client *testnet.NS, n int, stats *ordinaryStats) {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			var conn net.Conn
			if err := client.Do(func() (err error) {
				conn, err = net.DialTimeout("tcp", victimServeIP+":80", 2*time.Second)
				return err
			}); err != nil {
				return
			}
			defer conn.Close()
			buf := make([]byte, 4096)
			for ctx.Err() == nil {
				_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
				if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: victim\r\n\r\n"); err != nil {
					return
				}
				if _, err := conn.Read(buf); err != nil {
					return
				}
				stats.keepAlive.Add(1)
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
		})
	}
	wg.Wait()
}

// requestBursts: every 3 s, 4000 short HTTP requests (a fresh connection
// each) from 200 workers, as fast as the victim answers: over the SYN floor
// (1000/s) for two scrape intervals and more when the machine keeps up (a
// reconnect storm, a load balancer refilling its pool); between bursts, one
// request every 50 ms.
func requestBursts(ctx context.Context, client *testnet.NS, stats *ordinaryStats) {
	addr := fmt.Sprintf("%s:%d", victimServeIP, 80)
	one := func() {
		if err := client.Do(func() error { return httpOnce(addr) }); err != nil {
			stats.requestErrs.Add(1)
		}
		stats.requests.Add(1)
	}
	for ctx.Err() == nil {
		jobs := make(chan struct{}, 4000)
		for range 4000 {
			jobs <- struct{}{}
		}
		close(jobs)
		var wg sync.WaitGroup
		for range 200 {
			wg.Go(func() {
				for range jobs {
					one()
				}
			})
		}
		wg.Wait()
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end) && ctx.Err() == nil; {
			one()
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// dnsLikeUDP sends small queries to the victim's UDP echo on port 53: 500 a
// second, with a burst of 6000 back to back every 5 s (a resolver's burst:
// over the UDP floor, 5000/s, within one scrape interval, not in two).
func dnsLikeUDP(ctx context.Context, client *testnet.NS, stats *ordinaryStats) {
	var conn net.Conn
	if err := client.Do(func() (err error) {
		conn, err = net.Dial("udp", victimServeIP+":53")
		return err
	}); err != nil {
		return
	}
	defer conn.Close()
	go func() {
		buf := make([]byte, 512)
		for {
			if _, err := conn.Read(buf); err != nil {
				return
			}
			stats.udpAnswers.Add(1)
		}
	}()
	query := make([]byte, 40)
	send := func() {
		query[0], query[1] = byte(stats.udpQueries.Load()>>8), byte(stats.udpQueries.Load())
		if _, err := conn.Write(query); err == nil {
			stats.udpQueries.Add(1)
		}
	}
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ctx.Err() == nil; i++ {
		<-tick.C
		send()
		if i%2500 == 2499 { // every 5 s
			for range 6000 {
				send()
			}
		}
	}
}

// serveUDPEcho answers every datagram to port inside ns with 100 bytes.
func serveUDPEcho(t testing.TB, ns *testnet.NS, port int) {
	t.Helper()
	var pc net.PacketConn
	if err := ns.Do(func() (err error) {
		pc, err = net.ListenPacket("udp", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		answer := make([]byte, 100)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			copy(answer, buf[:min(n, 2)])
			_, _ = pc.WriteTo(answer, from)
		}
	}()
}
