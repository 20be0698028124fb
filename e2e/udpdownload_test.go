package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/packetscope/packetscope/internal/testnet"
)

// TestNoDefenseAgainstUDPDownload: the node downloads over UDP (iperf3 -R
// standing in for QUIC: a connected UDP socket receiving far more than it
// sends, ~8k datagrams/s). By bytes and packets it looks like an
// amplification, but the datagrams are answers to the node's connected
// socket, which the agent counts (packetscope_udp_connected_*) and the UDP
// alerts leave out: no alert, no rule, nothing dropped at XDP, the download
// completes. (Were an alert to fire anyway, the responder would still take
// the socket's peer, listed in udp_peers, for served traffic: the
// responder's unit tests cover that.)
func TestNoDefenseAgainstUDPDownload(t *testing.T) {
	const downloadServerIP = "10.221.0.3"
	testnet.RequireRoot(t)
	st := startDefenseStack(t, "builtin")
	testnet.WaitFor(t, 20*time.Second, "Prometheus to scrape the agent", func() bool {
		return len(promQuery(t, st.prom, `up{job="packetscope"} == 1`)) == 1
	})
	legit := startLegitClient(t, st.client, 80)
	time.Sleep(12 * time.Second) // a baseline of the legitimate client alone
	// The server the node downloads from is a host the baseline never saw:
	// to the guardrails' replay its source is new, as a reflector's is.
	st.client.MustRun("ip", "addr", "add", downloadServerIP+"/24", "dev", "eth0")
	st.client.Start("iperf3", "-s", "-B", downloadServerIP, "-1")
	time.Sleep(500 * time.Millisecond)
	out := st.victim.MustRun("timeout", "60", "iperf3", "-c", downloadServerIP, "-u", "-R", "-b", "80M", "-l", "1200", "-t", "20", "-f", "m")
	var summary string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "receiver") {
			summary = l
		}
	}
	t.Logf("download: %s", summary)
	if summary == "" {
		t.Errorf("the download did not complete:\n%s", out)
	}
	time.Sleep(4 * time.Second) // the last evaluations and decisions
	ok, failed := legit.stop()
	t.Logf("legitimate client: %d served, %d failed", ok, failed)
	if fired := promQuery(t, st.prom, `max_over_time(ALERTS{attack!=""}[2m])`); len(fired) != 0 {
		t.Errorf("the node's own UDP download raised attack alerts: %v", fired)
	}
	connected := promQuery(t, st.prom, `max_over_time(irate(packetscope_udp_connected_packets_total[10s])[2m:1s])`)
	if len(connected) == 0 || connected[0].Value < 1000 {
		t.Errorf("the agent never counted the download's datagrams for its connected socket: %v", connected)
	} else {
		t.Logf("peak of the datagrams counted for connected sockets: %.0f/s", connected[0].Value)
	}
	decisions := getDecisions(t, st.agent)
	for _, d := range decisions {
		t.Logf("decision %s: %s %s, %d rules", d.ID, d.Kind, d.Outcome, len(d.Applied))
		if d.Kind == "alert" && len(d.Applied) > 0 {
			t.Errorf("decision %s applied rules against the node's own download: %+v", d.ID, d)
		}
	}
	_, m := httpGet(t, st.agent.URL+"/metrics")
	for _, action := range []string{"drop", "rate_limited"} {
		if n := metricValue(m, "packetscope_xdp_packets_total", "interface=eth1", "action="+action); n != 0 {
			t.Errorf("%.0f packets of the download %s at XDP", n, action)
		}
	}
}
