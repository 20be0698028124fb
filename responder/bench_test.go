package responder

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"
)

// BenchmarkDecisionLatency measures webhook received → last rule pushed to
// the agent (the real agent API handler over an in-memory table, through the
// real client), per analyst. The LLM is the in-process fake answering at
// once, so the llm figure is the responder's own overhead on top of the
// model's think time. Attack window: 5,000 sampled headers of the SYN flood
// capture; baseline: 5,000 of ordinary traffic.
//
//	go test ./responder -run '^$' -bench DecisionLatency -benchtime 30x
func BenchmarkDecisionLatency(b *testing.B) {
	syn := readCapture(b, "pkt.TCP.synflood.spoofed.pcap")
	for _, analyst := range AnalystNames {
		b.Run(string(analyst), func(b *testing.B) {
			agent := newFakeAgent(b, ordinaryTraffic(91, 5000), syn[:5000])
			cfg := Config{AgentURL: agent.srv.URL, Analyst: analyst}
			if analyst == AnalystLLM {
				llm := newFakeLLM(b, toolAnswer(rulesArgs("syn flood", map[string]any{
					"protocol": "tcp", "dst_ports": []string{"25565"}, "tcp_flags": "syn,!ack", "tcp_window": "0", "length": "40"})))
				cfg.LLM = LLMConfig{BaseURL: llm.srv.URL + "/v1", Model: "m", APIKey: llmKey, Timeout: 5 * time.Second}
			}
			tr := startResponder(b, cfg, true)
			var lat []float64
			b.ResetTimer()
			for i := range b.N {
				fp := fmt.Sprintf("bench%011d", i)
				if code, text := tr.post(b, webhookToken, payload(b, "alertmanager-firing.json", setFingerprint(fp))); code != http.StatusOK {
					b.Fatalf("post: %d %s", code, text)
				}
				d := tr.waitDecision(b, func(d Decision) bool { return d.Kind == "alert" && d.Alert.Fingerprint == fp })
				if d.Outcome != OutcomeApplied || d.Analyst != string(analyst) {
					b.Fatalf("decision %s by %s", d.Outcome, d.Analyst)
				}
				lat = append(lat, d.LatencySecs)
				// Make room: the next alert's identical rule would be "existing".
				for _, r := range agent.store.List() {
					_ = agent.store.Delete(r.ID)
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(lat[len(lat)/2]*1000, "ms-median")
			b.ReportMetric(lat[len(lat)*9/10]*1000, "ms-p90")
		})
	}
}
