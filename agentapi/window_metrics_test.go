package agentapi

import (
	"strings"
	"testing"
	"time"

	"github.com/packetscope/packetscope/rule"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestWindowCollector(t *testing.T) {
	clk := &fakeClock{t0}
	w := NewTrafficWindow(WindowConfig{MaxSamples: 3, MaxAge: time.Minute, SampleEvery: 64, Now: clk.now})
	for i := range 5 {
		w.Add(tcpSample(t0.Add(time.Duration(i)*time.Second), "198.51.100.1", 80, rule.FlagSYN))
	}
	clk.t = t0.Add(time.Minute + 3500*time.Millisecond) // samples at 0..2 s are now too old
	w.Add(tcpSample(clk.t, "198.51.100.1", 80, rule.FlagSYN))

	c := w.Collector()
	want := `
# HELP packetscope_guard_window_max_samples Most sampled headers the traffic window holds.
# TYPE packetscope_guard_window_max_samples gauge
packetscope_guard_window_max_samples 3
# HELP packetscope_guard_window_sample_every The guard's 1-in-N header sampling rate.
# TYPE packetscope_guard_window_sample_every gauge
packetscope_guard_window_sample_every 64
# HELP packetscope_guard_window_samples Sampled packet headers held in the traffic window.
# TYPE packetscope_guard_window_samples gauge
packetscope_guard_window_samples 2
# HELP packetscope_guard_window_samples_added_total Sampled packet headers added to the traffic window.
# TYPE packetscope_guard_window_samples_added_total counter
packetscope_guard_window_samples_added_total 6
# HELP packetscope_guard_window_samples_evicted_total Sampled packet headers dropped from the traffic window, by reason: capacity (window full) or age.
# TYPE packetscope_guard_window_samples_evicted_total counter
packetscope_guard_window_samples_evicted_total{reason="age"} 2
packetscope_guard_window_samples_evicted_total{reason="capacity"} 2
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) != 0 {
		t.Fatalf("lint: %v %v", err, problems)
	}
}
