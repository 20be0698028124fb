package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/internal/rstinject"
	"github.com/packetscope/packetscope/internal/testnet"
)

// Reset injection: the attacker knows the 4-tuples of the legitimate
// client's long-lived connections to the victim (port 7000) and where the
// victim's receive windows begin (read off the client's sockets: what an
// observer of the handshakes knows), and sends RSTs spoofing the client
// from a raw socket, guessing sequence numbers in and out of the windows
// at injectPPS, never exactly. The shape is scapy's defaults (TTL 64,
// window 8192).
const (
	longLivedPort = 7000
	longLivedConn = 4
	injectPPS     = 500 // under the RST flood alert's 1000/s floor
)

// TestResetInjectionDefense: the reset injection alert must fire, the
// responder's rule drop at least 95 % of the injected RSTs at XDP within
// 15 s of the first (a rate limit lets a few through), the long-lived
// connections survive and the client's requests succeed (>= 99 %).
func TestResetInjectionDefense(t *testing.T) {
	testnet.RequireRoot(t)
	for _, analyst := range []string{"builtin", "llm"} {
		t.Run(analyst, func(t *testing.T) { runResetInjection(t, analyst) })
	}
}

func runResetInjection(t *testing.T, analyst string) {
	st := startDefenseStack(t, analyst)
	// The attacker reaches the victim's serving address through the
	// victim's other interface (still inside the test subnets), so its
	// packets are eth0's alone. Reverse-path filtering, which would drop a
	// client's address arriving there, stays off (the namespace default,
	// set to be sure): an attacker on the client's path gets past it anyway.
	st.attacker.MustRun("ip", "route", "add", victimServeIP+"/32", "via", victimAttackIP)
	st.victim.MustRun("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.eth0.rp_filter=0")
	serveLines(t, st.victim, longLivedPort)
	legit := startLegitClient(t, st.client, 80)
	var conns []*net.TCPConn
	for range longLivedConn {
		var c net.Conn
		if err := st.client.Do(func() (err error) {
			c, err = net.DialTimeout("tcp", fmt.Sprintf("%s:%d", victimServeIP, longLivedPort), 2*time.Second)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c.(*net.TCPConn))
	}
	waitBaseline(t, st)

	var targets []rstinject.Target
	for _, c := range conns {
		tg, err := rstinject.TargetOf(c)
		if err != nil {
			t.Fatal(err)
		}
		targets = append(targets, tg)
	}
	var inj *rstinject.Injector
	if err := st.attacker.Do(func() (err error) { inj, err = rstinject.Open(); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inj.Close() })
	ctx, stop := context.WithTimeout(context.Background(), 45*time.Second)
	defer stop()
	sent := make(chan int, 1)
	okAtStart, failedAtStart := legit.ok.Load(), legit.failed.Load()
	watch := testnet.WatchFirstSent(t, st.attacker)
	startedAt := time.Now()
	go func() {
		n, err := inj.Blind(ctx, targets, rstinject.Shape{TTL: 64, Window: 8192}, injectPPS, 0.3)
		if err != nil {
			t.Errorf("inject: %v", err)
		}
		sent <- n
	}()

	mitigatedAfter := waitDropped(t, st.agent, startedAt, 30*time.Second, 100, 0.95)
	attackAt := firstPacket(t, watch, startedAt)
	mitigatedAfter -= attackAt.Sub(startedAt)
	t.Logf("reset injection, %s analyst: first RST → 95%% dropped at XDP in %.1fs", analyst, mitigatedAfter.Seconds())
	if mitigatedAfter > 15*time.Second {
		t.Errorf("95%% dropped after %.1fs, want within 15 s", mitigatedAfter.Seconds())
	}
	if fired := promQuery(t, st.prom, `ALERTS{alertname="PacketScopeResetInjection",alertstate="firing"}`); len(fired) == 0 {
		t.Errorf("PacketScopeResetInjection never fired")
	}
	_, m0 := httpGet(t, st.agent.URL+"/metrics")
	time.Sleep(3 * time.Second)
	_, m1 := httpGet(t, st.agent.URL+"/metrics")
	total := metricValue(m1, "packetscope_xdp_packets_total", "interface=eth0") - metricValue(m0, "packetscope_xdp_packets_total", "interface=eth0")
	drop := xdpDropped(m1) - xdpDropped(m0)
	t.Logf("reset injection, %s analyst: %.2f%% of %.0f RSTs dropped at XDP while the rule holds", analyst, 100*ratio(drop, total), total)
	if ratio(drop, total) < 0.95 {
		t.Errorf("%.0f of %.0f packets dropped while the rule holds, want >= 95 %%", drop, total)
	}
	// The RSTs reached the connections before the rule: the stack rejected
	// them (none was exact, so none was accepted).
	t.Logf("RST verdicts: %s", strings.ReplaceAll(grepLines(m1, "packetscope_tcp_rst_verdicts_total"), "\n", "; "))
	challenged := metricValue(m1, "packetscope_tcp_rst_verdicts_total", "verdict=challenged")
	outOfWindow := metricValue(m1, "packetscope_tcp_rst_verdicts_total", "verdict=out_of_window")
	if challenged < 50 || outOfWindow < 100 || metricValue(m1, "packetscope_tcp_rst_verdicts_total", "verdict=accepted") != 0 {
		t.Errorf("RST verdicts: challenged %v (want >= 50), out_of_window %v (want >= 100), accepted: want 0", challenged, outOfWindow)
	}
	stop()
	t.Logf("%d RSTs injected", <-sent)

	checkResetRule(t, st.agent)
	// The long-lived connections survived: each still answers.
	for i, c := range conns {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := fmt.Fprintf(c, "ping\n"); err != nil {
			t.Errorf("long-lived connection %d: %v", i, err)
			continue
		}
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "ok\n" {
			t.Errorf("long-lived connection %d: %q, %v", i, line, err)
		}
	}
	ok, failed := legit.stop()
	ok, failed = ok-okAtStart, failed-failedAtStart
	t.Logf("legitimate client: %d served, %d failed since %s", ok, failed, time.Since(startedAt).Round(time.Second))
	if ok == 0 || float64(failed) > 0.01*float64(ok+failed) {
		t.Errorf("legitimate client: %d served, %d failed: want >= 99%% served; first failures: %v", ok, failed, legit.errs)
	}
	checkNoFloodAlert(t, st)
	checkApplied(t, st, analyst, "PacketScopeResetInjection")
	logTimeline(t, st.prom, st.agent, "reset injection", analyst, attackAt, mitigatedAfter)
	logFigures(t, st, "reset injection (spoofed RSTs, 500/s)", analyst, attackAt, mitigatedAfter, ">= 95 % dropped", ok, failed)
}

// checkResetRule: the responder's rule matches RSTs only, never the
// client's whole traffic.
func checkResetRule(t *testing.T, agent *agentProc) {
	t.Helper()
	code, body := httpDo(t, http.MethodGet, agent.URL+"/api/v1/rules", defenseAPIToken, "")
	if code != http.StatusOK {
		t.Fatalf("GET /api/v1/rules: %d %s", code, body)
	}
	var rules agentapi.RulesResponse
	if err := json.Unmarshal([]byte(body), &rules); err != nil {
		t.Fatalf("decode rules: %v", err)
	}
	for _, r := range rules.Rules {
		if r.Action != "monitor" && strings.Contains(r.Match.TCPFlags, "rst") && !strings.Contains(r.Match.TCPFlags, "!rst") {
			t.Logf("rule %s: %s %+v: %s", r.ID, r.Action, r.Match, r.Reason)
			return
		}
	}
	t.Errorf("no rule matching RSTs: %s", body)
}

// serveLines answers each line of each connection with "ok" on port inside
// ns, with no idle timeout: the long-lived connections' server.
func serveLines(t testing.TB, ns *testnet.NS, port int) {
	t.Helper()
	var l net.Listener
	if err := ns.Do(func() (err error) {
		l, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := c.Write([]byte("ok\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
}
