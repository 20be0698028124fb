package e2e

import (
	"fmt"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/internal/testframe"
	"github.com/packetscope/packetscope/internal/testnet"
	"github.com/packetscope/packetscope/rule"
)

const (
	floodVictimIP   = "10.233.0.1"
	floodAttackerIP = "10.233.0.2"
	floodToken      = "flood-token"
)

// BenchmarkAgentUnderFlood is the agent itself (`packetscope agent`, the
// binary a node runs, stack tracing included) guarding a veth under
// trafgen's flood (64-byte ICMP echo requests from random sources, a drop
// rule in force), read from its own /metrics once its traffic window holds
// its full 200,000 samples, as after seconds of any flood: packets dropped,
// samples read and lost per second, CPU, heap and resident memory; then its
// memory again after the two traffic reports a responder pulls (the attack
// window and the baseline). It runs once whatever b.N is (-benchtime 1x).
func BenchmarkAgentUnderFlood(b *testing.B) {
	for _, every := range []int{100, 1} {
		b.Run(fmt.Sprintf("sample_every=%d", every), func(b *testing.B) {
			victim := testnet.NewNS(b, "ps-fl-v")
			attacker := testnet.NewNS(b, "ps-fl-a")
			testnet.Link(b, victim, "eth0", floodVictimIP+"/24", attacker, "eth0", floodAttackerIP+"/24")
			agent := startAgent(b, "agent", "--netns", victim.Path(), "--interfaces", "eth0",
				"--bpf.pin-path", pinDir(b), "--api.token-file", writeToken(b, floodToken),
				"--guard.sample-every", strconv.Itoa(every))
			if code, body := httpDo(b, "POST", agent.URL+"/api/v1/rules", floodToken,
				`{"action":"drop","match":{"protocol":"icmp","icmp_type":8},"ttl_seconds":600,"reason":"flood bench"}`); code != 201 {
				b.Fatalf("add the drop rule: %d %s", code, body)
			}
			f := testframe.Frame{Src: netip.MustParseAddr("10.233.30.2"), Dst: netip.MustParseAddr(floodVictimIP),
				Proto: rule.ProtoICMP, TTL: 64, L4: append(testframe.ICMP(8), make([]byte, 64-14-20-8)...)}
			cfg := testnet.TrafgenConfig(b, testnet.MAC(b, victim, "eth0"), testnet.MAC(b, attacker, "eth0"), f.Build(), 4)

			scrape := func() string {
				code, body := httpGet(b, agent.URL+"/metrics")
				if code != 200 {
					b.Fatalf("scrape: %d", code)
				}
				return body
			}
			var m0, m1 string
			var t0, t1 time.Time
			for attempt := 1; ; attempt++ {
				stop := testnet.StartTrafgen(b, attacker, "eth0", cfg)
				if fillAgentWindow(scrape) {
					m0, t0 = scrape(), time.Now()
					time.Sleep(4 * time.Second)
					m1, t1 = scrape(), time.Now()
					if rate(m0, m1, t1.Sub(t0), "packetscope_xdp_packets_total", "action=drop") >= 100_000 {
						break
					}
				}
				stop()
				if attempt == 3 {
					b.Fatalf("trafgen stalled three times (window: %.0f samples)", metricValue(scrape(), "packetscope_guard_window_samples"))
				}
				b.Logf("trafgen stalled; starting it again")
			}
			secs := t1.Sub(t0)
			// The reports a responder pulls, under the same flood.
			for _, q := range []string{"window=30s&samples=5000", "window=60s&samples=5000"} {
				if code, body := httpDo(b, "GET", agent.URL+"/api/v1/traffic?"+q, floodToken, ""); code != 200 {
					b.Fatalf("traffic report: %d %.200s", code, body)
				}
			}
			m2 := scrape()
			mib := func(m, family string) float64 { return metricValue(m, family) / (1 << 20) }
			b.ReportMetric(rate(m0, m1, secs, "packetscope_xdp_packets_total", "action=drop"), "dropped_pps")
			b.ReportMetric(rate(m0, m1, secs, "packetscope_guard_samples_total"), "samples/s")
			b.ReportMetric(rate(m0, m1, secs, "packetscope_xdp_samples_lost_total"), "kernel_lost/s")
			b.ReportMetric(rate(m0, m1, secs, "packetscope_guard_samples_dropped_total"), "agent_dropped/s")
			b.ReportMetric(100*rate(m0, m1, secs, "process_cpu_seconds_total"), "cpu_%")
			b.ReportMetric(mib(m1, "go_memstats_heap_inuse_bytes"), "heap_MiB")
			b.ReportMetric(mib(m1, "process_resident_memory_bytes"), "rss_MiB")
			b.ReportMetric(mib(m2, "process_resident_memory_bytes"), "rss_after_reports_MiB")
		})
	}
}

// rate is the per-second increase of a counter between two scrapes.
func rate(m0, m1 string, d time.Duration, family string, labels ...string) float64 {
	return (metricValue(m1, family, labels...) - metricValue(m0, family, labels...)) / d.Seconds()
}

// fillAgentWindow waits until the agent's traffic window holds its default
// bound; false if it stopped growing for 3 s (trafgen stalled) or is not
// full after a minute.
func fillAgentWindow(scrape func() string) bool {
	last, lastAt := -1.0, time.Now()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		m := scrape()
		if metricValue(m, "packetscope_guard_window_samples") >= agentapi.DefaultWindowMaxSamples {
			return true
		}
		if added := metricValue(m, "packetscope_guard_window_samples_added_total"); added != last {
			last, lastAt = added, time.Now()
		} else if time.Since(lastAt) > 3*time.Second {
			return false
		}
	}
	return false
}
