package agentapi

import "github.com/prometheus/client_golang/prometheus"

// windowCollector exposes how full the traffic window is and what it has
// thrown away, so an operator can see that its memory stays bounded under a
// flood and size --guard.traffic-max-samples.
type windowCollector struct {
	w                           *TrafficWindow
	samples, maxSamples         *prometheus.Desc
	added, evicted, sampleEvery *prometheus.Desc
}

// Collector returns a Prometheus collector for the window's state.
func (w *TrafficWindow) Collector() prometheus.Collector {
	fq := func(name string) string { return prometheus.BuildFQName("packetscope", "guard_window", name) }
	return &windowCollector{
		w:          w,
		samples:    prometheus.NewDesc(fq("samples"), "Sampled packet headers held in the traffic window.", nil, nil),
		maxSamples: prometheus.NewDesc(fq("max_samples"), "Most sampled headers the traffic window holds.", nil, nil),
		added:      prometheus.NewDesc(fq("samples_added_total"), "Sampled packet headers added to the traffic window.", nil, nil),
		evicted: prometheus.NewDesc(fq("samples_evicted_total"),
			"Sampled packet headers dropped from the traffic window, by reason: capacity (window full) or age.", []string{"reason"}, nil),
		sampleEvery: prometheus.NewDesc(fq("sample_every"), "The guard's 1-in-N header sampling rate.", nil, nil),
	}
}

func (c *windowCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.samples
	ch <- c.maxSamples
	ch <- c.added
	ch <- c.evicted
	ch <- c.sampleEvery
}

func (c *windowCollector) Collect(ch chan<- prometheus.Metric) {
	c.w.mu.Lock()
	st, every, maxN := c.w.stats, c.w.every, c.w.cfg.MaxSamples
	st.Samples = c.w.n
	c.w.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.samples, prometheus.GaugeValue, float64(st.Samples))
	ch <- prometheus.MustNewConstMetric(c.maxSamples, prometheus.GaugeValue, float64(maxN))
	ch <- prometheus.MustNewConstMetric(c.added, prometheus.CounterValue, float64(st.Added))
	ch <- prometheus.MustNewConstMetric(c.evicted, prometheus.CounterValue, float64(st.EvictedCount), "capacity")
	ch <- prometheus.MustNewConstMetric(c.evicted, prometheus.CounterValue, float64(st.EvictedAge), "age")
	ch <- prometheus.MustNewConstMetric(c.sampleEvery, prometheus.GaugeValue, float64(every))
}
