package responder

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRecheckAfterNoAction: an alert that fires before the window shows its
// flood gets no rule; the responder decides it again by itself, without a
// repeat from Alertmanager, and the flood that has since arrived is blocked.
func TestRecheckAfterNoAction(t *testing.T) {
	agent := newFakeAgent(t, ordinaryTraffic(61, 3000), nil)
	tr := startResponder(t, Config{AgentURL: agent.srv.URL, Recheck: 300 * time.Millisecond}, true)
	if code, text := tr.post(t, webhookToken, payload(t, "alertmanager-firing.json", nil)); code != 200 {
		t.Fatalf("post: %d %s", code, text)
	}
	first := tr.waitDecision(t, isKind("alert"))
	if first.Outcome != OutcomeDeferred {
		t.Fatalf("first decision %s, want deferred on a window without the flood", first.Outcome)
	}
	now := time.Now()
	fill(agent.window, hpingICMPFlood(62, 3000, true), now.Add(-2*time.Second), now)
	d := tr.waitDecision(t, func(d Decision) bool { return d.Kind == "alert" && d.Outcome == OutcomeApplied })
	if len(d.Notes) == 0 || len(agent.store.List()) == 0 {
		t.Fatalf("recheck applied %d rules, notes %q", len(agent.store.List()), d.Notes)
	}
}

// TestRecheckBounded: an alert whose window never shows anything to block is
// decided recheckLimit more times, then left to Alertmanager's repeats; a
// resolved alert is not rechecked at all.
func TestRecheckBounded(t *testing.T) {
	agent := newFakeAgent(t, ordinaryTraffic(63, 3000), nil)
	tr := startResponder(t, Config{AgentURL: agent.srv.URL, Recheck: 50 * time.Millisecond}, true)
	if code, text := tr.post(t, webhookToken, payload(t, "alertmanager-firing.json", nil)); code != 200 {
		t.Fatalf("post: %d %s", code, text)
	}
	// Every decision but the last is deferred; the last says no_action.
	countAlerts := func() (n, deferred int) {
		for _, d := range tr.Decisions(100) {
			switch {
			case d.Kind != "alert":
			case d.Outcome == OutcomeDeferred:
				deferred++
			case d.Outcome != OutcomeNoAction:
				t.Fatalf("decision %s on a window with nothing to block", d.Outcome)
			}
			if d.Kind == "alert" {
				n++
			}
		}
		return n, deferred
	}
	deadline := time.Now().Add(5 * time.Second)
	for n, _ := countAlerts(); n < 1+recheckLimit && time.Now().Before(deadline); n, _ = countAlerts() {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // longer than a fourth recheck would wait (400 ms)
	if n, deferred := countAlerts(); n != 1+recheckLimit || deferred != recheckLimit {
		t.Fatalf("%d decisions (%d deferred), want 1 + %d rechecks, all but the last deferred", n, deferred, recheckLimit)
	}
	// The waits double: 50, 100, 200 ms.
	var waits []string
	for _, d := range tr.Decisions(100) { // newest first
		if d.Outcome == OutcomeDeferred && len(d.Notes) > 0 {
			waits = append(waits, d.Notes[len(d.Notes)-1])
		}
	}
	want := []string{"200ms", "100ms", "50ms"}
	ok := len(waits) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = strings.HasSuffix(waits[i], "decided again in "+want[i])
	}
	if !ok {
		t.Errorf("deferred decisions' notes %q: want waits of %v, newest first", waits, want)
	}

	// A second alert resolves right after its first decision: no recheck.
	other := setFingerprint("resolves-soon")
	if code, text := tr.post(t, webhookToken, payload(t, "alertmanager-firing.json", other)); code != 200 {
		t.Fatalf("post: %d %s", code, text)
	}
	tr.waitDecision(t, func(d Decision) bool { return d.Kind == "alert" && d.Alert.Fingerprint == "resolves-soon" })
	if code, text := tr.post(t, webhookToken, payload(t, "alertmanager-resolved.json", other)); code != 200 {
		t.Fatalf("resolve: %d %s", code, text)
	}
	tr.waitDecision(t, func(d Decision) bool { return d.Kind == "resolved" && d.Alert.Fingerprint == "resolves-soon" })
	time.Sleep(300 * time.Millisecond)
	n := 0
	for _, d := range tr.Decisions(100) {
		if d.Kind == "alert" && d.Alert.Fingerprint == "resolves-soon" {
			n++
		}
	}
	if n > 2 {
		t.Fatalf("%d decisions of an alert that resolved after its first", n)
	}
}

// TestRecheckAfterAgentError: the agent fails the first decision's request
// for the traffic (restarting, say); the responder decides again by itself
// and applies the rule, with no repeat from Alertmanager.
func TestRecheckAfterAgentError(t *testing.T) {
	agent := newFakeAgent(t, ordinaryTraffic(64, 3000), hpingICMPFlood(65, 3000, true))
	// Down from the alert on: the first traffic request it fails brings
	// it back 50 ms later.
	var down atomic.Bool
	var back sync.Once
	proxy := httputil.NewSingleHostReverseProxy(mustURL(t, agent.srv.URL))
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/api/v1/traffic" && down.Load() {
			back.Do(func() { time.AfterFunc(50*time.Millisecond, func() { down.Store(false) }) })
			http.Error(w, "restarting", http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(flaky.Close)
	tr := startResponder(t, Config{AgentURL: flaky.URL, Recheck: 100 * time.Millisecond}, true)
	down.Store(true)
	if code, text := tr.post(t, webhookToken, payload(t, "alertmanager-firing.json", nil)); code != 200 {
		t.Fatalf("post: %d %s", code, text)
	}
	first := tr.waitDecision(t, isKind("alert"))
	if first.Outcome != OutcomeAgentError || !strings.Contains(strings.Join(first.Notes, "; "), "decided again in 100ms") {
		t.Fatalf("first decision %s, notes %q: want agent_error, decided again", first.Outcome, first.Notes)
	}
	d := tr.waitDecision(t, func(d Decision) bool { return d.Kind == "alert" && d.Outcome == OutcomeApplied })
	if len(agent.store.List()) == 0 {
		t.Fatalf("the recheck applied no rule: %+v", d)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
