package responder

import (
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestBurst: 1,000 notifications within a minute — 200 distinct alerts,
// each sent 5 times, from 8 concurrent senders that retry on 503 as
// Alertmanager does — into a small queue. None is lost (every alert gets
// exactly one decision), none duplicated (no second rule for one match, no
// second decision for one alert), the LLM is asked once per alert and never
// for a repeat, and memory stays bounded.
func TestBurst(t *testing.T) {
	const distinct, repeats, senders = 200, 5, 8
	llm := newFakeLLM(t, toolAnswer(rulesArgs("icmp echo flood", map[string]any{"protocol": "icmp", "icmp_type": 8, "length": "28"})))
	agent := newFakeAgent(t, ordinaryTraffic(61, 1500), hpingICMPFlood(7, 1500, true))
	tr := startResponder(t, Config{AgentURL: agent.srv.URL, Analyst: "llm", QueueSize: 16, MaxDecisions: 5000,
		LLM: LLMConfig{BaseURL: llm.srv.URL + "/v1", Model: "m", APIKey: llmKey, Timeout: 5 * time.Second}}, true)

	bodies := make([][]byte, 0, distinct*repeats)
	for r := range repeats {
		for i := range distinct {
			_ = r
			bodies = append(bodies, payload(t, "alertmanager-firing.json", setFingerprint(fmt.Sprintf("burst%011d", i))))
		}
	}
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)

	start := time.Now()
	work := make(chan []byte)
	var wg sync.WaitGroup
	var mu sync.Mutex
	retries := 0
	for range senders {
		wg.Go(func() {
			for b := range work {
				for {
					code, text := tr.post(t, webhookToken, b)
					if code == 200 {
						break
					}
					if code != 503 {
						t.Errorf("post: %d %s", code, text)
						break
					}
					mu.Lock()
					retries++
					mu.Unlock()
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	for _, b := range bodies {
		work <- b
	}
	close(work)
	wg.Wait()
	sent := time.Since(start)

	deadline := time.Now().Add(50 * time.Second)
	var alerts []Decision
	for time.Now().Before(deadline) {
		alerts = alerts[:0]
		for _, d := range tr.Decisions(5000) {
			if d.Kind == "alert" {
				alerts = append(alerts, d)
			}
		}
		if len(alerts) >= distinct && len(tr.queue) == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // anything still in hand would show up now
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	t.Logf("1000 notifications sent in %s with %d 503-retries; %d decisions in %s; LLM calls %d; heap %d → %d KiB",
		sent.Round(time.Millisecond), retries, len(alerts), time.Since(start).Round(time.Millisecond), llm.calls.Load(),
		ms0.HeapAlloc>>10, ms1.HeapAlloc>>10)

	seen := map[string]int{}
	for _, d := range tr.Decisions(5000) {
		if d.Kind == "alert" {
			seen[d.Alert.Fingerprint]++
		}
	}
	if len(seen) != distinct {
		t.Errorf("%d alerts decided, want %d (lost some)", len(seen), distinct)
	}
	for fp, n := range seen {
		if n != 1 {
			t.Errorf("alert %s decided %d times", fp, n)
		}
	}
	if n := llm.calls.Load(); n != distinct {
		t.Errorf("LLM called %d times for %d alerts", n, distinct)
	}
	matches := map[string]int{}
	for _, r := range agent.store.List() {
		js, _ := json.Marshal(r.Match)
		matches[string(js)]++
	}
	for m, n := range matches {
		if n > 1 {
			t.Errorf("match %s installed %d times", m, n)
		}
	}
	if len(matches) == 0 {
		t.Error("no rule installed")
	}
	tr.mu.Lock()
	tracked := len(tr.alerts)
	tr.mu.Unlock()
	if tracked > distinct {
		t.Errorf("tracking %d alerts", tracked)
	}
	if grew := int64(ms1.HeapAlloc) - int64(ms0.HeapAlloc); grew > 64<<20 {
		t.Errorf("heap grew by %d MiB", grew>>20)
	}
}
