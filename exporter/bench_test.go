package exporter

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkScrape measures one full scrape (every map read once).
func BenchmarkScrape(b *testing.B) {
	requireKernel(b)
	exp, err := New(nil, Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { exp.Close() })
	reg := prometheus.NewRegistry()
	reg.MustRegister(exp)
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
