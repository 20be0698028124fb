package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/packetscope/packetscope/internal/testnet"
)

// TestNoDefenseAgainstUDPDownload: the node downloads over UDP (iperf3 -R
// standing in for QUIC: a connected UDP socket receiving far more than it
// sends, ~8k datagrams/s). The volume may raise the UDP alerts — by bytes
// and packets it looks like an amplification — but the agent lists the
// connected socket's peer, so the responder takes its datagrams for served
// traffic: no rule, nothing dropped at XDP, the download completes.
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
	fired := promQuery(t, st.prom, `max_over_time(ALERTS{attack!="",alertstate="firing"}[2m])`)
	t.Logf("alerts that fired: %v", fired)
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
	if len(fired) > 0 && len(decisions) == 0 {
		t.Errorf("alerts fired but the responder decided nothing: the test did not exercise it")
	}
}
