package responder

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/rule"
)

func TestWebhookStatuses(t *testing.T) {
	agent := newFakeAgent(t, ordinaryTraffic(1, 2000), nil)
	deadAgent := httptest.NewServer(http.NotFoundHandler())
	deadURL := deadAgent.URL
	deadAgent.Close()

	good := payload(t, "alertmanager-firing.json", nil)
	for _, tc := range []struct {
		name     string
		cfg      Config
		token    string
		body     []byte
		want     int
		wantText string
	}{
		{name: "no token configured", cfg: Config{WebhookToken: "-"}, token: webhookToken, body: good, want: 401, wantText: "--webhook.token-file"},
		{name: "no token sent", token: "", body: good, want: 401},
		{name: "wrong token", token: "nope", body: good, want: 401},
		{name: "malformed JSON", token: webhookToken, body: []byte(`{"version":"4","alerts":[`), want: 400, wantText: "invalid JSON"},
		{name: "wrong version", token: webhookToken, body: bytes.Replace(good, []byte(`"version":"4"`), []byte(`"version":"3"`), 1), want: 400, wantText: "version"},
		{name: "no alerts", token: webhookToken, body: []byte(`{"version":"4","status":"firing","alerts":[]}`), want: 400, wantText: "no alerts"},
		{name: "bad alert status", token: webhookToken, body: payload(t, "alertmanager-firing.json", func(m map[string]any) { m["alerts"].([]any)[0].(map[string]any)["status"] = "burning" }), want: 400, wantText: "burning"},
		{name: "oversized", token: webhookToken, body: append(append([]byte(`{"version":"4","x":"`), bytes.Repeat([]byte("a"), MaxWebhookBody)...), []byte(`"}`)...), want: 413},
		{name: "agent unreachable", cfg: Config{AgentURL: deadURL}, token: webhookToken, body: good, want: 503, wantText: "unreachable"},
		{name: "accepted", token: webhookToken, body: good, want: 200, wantText: "1 queued"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			if cfg.AgentURL == "" {
				cfg.AgentURL = agent.srv.URL
			}
			tr := startResponder(t, cfg, false)
			if tc.cfg.WebhookToken == "-" {
				tr.cfg.WebhookToken = ""
				tr.webhookToken = agentapi.NewBearerToken("")
			}
			code, text := tr.post(t, tc.token, tc.body)
			if code != tc.want || !strings.Contains(text, tc.wantText) {
				t.Errorf("got %d %s, want %d containing %q", code, text, tc.want, tc.wantText)
			}
		})
	}
}

// TestDecisionBuiltin drives the whole loop with the builtin analyst: the
// SYN flood capture in the agent's attack window, ordinary traffic before
// it; a notification; a rule pushed; repeats add nothing; resolve removes.
func TestDecisionBuiltin(t *testing.T) {
	syn := readCapture(t, "pkt.TCP.synflood.spoofed.pcap")
	agent := newFakeAgent(t, ordinaryTraffic(11, 4000), mix(5, syn[:8000], ordinaryTraffic(12, 500)))
	// Two agents configured: the instance label selects this one.
	tr := startResponder(t, Config{RemoveOnResolve: true, AgentURLs: []string{agent.srv.URL, "http://127.0.0.2:9"}}, true)
	body := payload(t, "alertmanager-firing.json", func(m map[string]any) {
		// The agent is found from the instance label.
		m["alerts"].([]any)[0].(map[string]any)["labels"].(map[string]any)["instance"] = strings.TrimPrefix(agent.srv.URL, "http://")
	})
	if code, text := tr.post(t, webhookToken, body); code != 200 {
		t.Fatalf("post: %d %s", code, text)
	}
	d := tr.waitDecision(t, isKind("alert"))
	if d.Outcome != OutcomeApplied || len(d.Applied) == 0 {
		t.Fatalf("decision %s/%s err=%q validations=%+v", d.Kind, d.Outcome, d.Error, d.Validations)
	}
	t.Logf("decision latency (webhook → rules pushed), builtin analyst: %.1f ms; coverage %.4f collateral %.4f",
		d.LatencySecs*1000, d.Coverage, d.Collateral)
	if d.Coverage < 0.9 || d.Collateral > 0.01 {
		t.Errorf("coverage %.4f collateral %.4f", d.Coverage, d.Collateral)
	}
	adds := agent.store.Adds()
	for _, r := range adds {
		if r.Origin != "builtin" || r.Action != rule.ActionDrop || r.TTLSeconds != 600 || !strings.HasPrefix(r.ID, "ps-7c2b1a9e4f3d5e60-") {
			t.Errorf("pushed rule %+v", r)
		}
	}
	// The pushed rules stop the capture and spare ordinary traffic.
	rp := ReplayRules(adds, syn, ordinaryTraffic(99, 20000))
	if rp.Coverage < 0.99 || rp.Collateral > 0.01 {
		t.Errorf("pushed rules: capture coverage %.4f, collateral %.4f", rp.Coverage, rp.Collateral)
	}
	if d.Evidence == nil || d.Evidence.AttackSamples == 0 || d.Evidence.BaselineSamples == 0 || len(d.Validations) == 0 {
		t.Errorf("decision lacks evidence or validations: %+v", d)
	}

	// Repeats: never a second rule.
	for range 5 {
		if code, text := tr.post(t, webhookToken, body); code != 200 {
			t.Fatalf("repeat: %d %s", code, text)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(agent.store.Adds()); n != len(adds) {
		t.Errorf("repeats added rules: %d adds, want %d", n, len(adds))
	}

	// Resolve: recorded, and with RemoveOnResolve the rules go.
	if code, text := tr.post(t, webhookToken, payload(t, "alertmanager-resolved.json", nil)); code != 200 {
		t.Fatalf("resolve: %d %s", code, text)
	}
	rd := tr.waitDecision(t, isKind("resolved"))
	if rd.Outcome != OutcomeResolved || len(rd.Applied) != len(adds) {
		t.Errorf("resolved decision %+v", rd)
	}
	if n := len(agent.store.List()); n != 0 {
		t.Errorf("%d rules left after resolve", n)
	}

	// GET /api/v1/decisions, newest first.
	resp, err := http.Get(tr.srv.URL + "/api/v1/decisions?limit=10")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct{ Decisions []Decision }
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if len(got.Decisions) < 2 || got.Decisions[0].Kind != "resolved" || got.Decisions[len(got.Decisions)-1].Kind != "alert" {
		t.Errorf("decisions not newest first: %v", tr.decisionSummary())
	}
}

func TestMonitorMode(t *testing.T) {
	agent := newFakeAgent(t, ordinaryTraffic(21, 3000), hpingSYNFlood(3, 3000, true))
	tr := startResponder(t, Config{AgentURL: agent.srv.URL, Mode: "monitor"}, true)
	if code, text := tr.post(t, webhookToken, payload(t, "alertmanager-firing.json", nil)); code != 200 {
		t.Fatalf("post: %d %s", code, text)
	}
	d := tr.waitDecision(t, isKind("alert"))
	if d.Outcome != OutcomeMonitor {
		t.Fatalf("outcome %s, want monitor (%v)", d.Outcome, tr.decisionSummary())
	}
	for _, r := range agent.store.Adds() {
		if r.Action != rule.ActionMonitor {
			t.Errorf("rule %s installed with action %s in monitor mode", r.ID, r.Action)
		}
	}
}

// TestAuditSurvivesRestart: a new responder on the same audit file lists the
// old decisions and treats a repeat of the old alert as a repeat.
func TestAuditSurvivesRestart(t *testing.T) {
	agent := newFakeAgent(t, ordinaryTraffic(31, 3000), hpingICMPFlood(4, 3000, true))
	cfg := Config{AgentURL: agent.srv.URL}
	tr := startResponder(t, cfg, true)
	if code, text := tr.post(t, webhookToken, payload(t, "alertmanager-firing.json", nil)); code != 200 {
		t.Fatalf("post: %d %s", code, text)
	}
	tr.waitDecision(t, isKind("alert"))
	tr.stop()
	adds := len(agent.store.Adds())

	cfg.AuditFile = tr.audit
	tr2 := startResponder(t, cfg, true)
	if len(tr2.Decisions(10)) == 0 {
		t.Fatal("restarted responder lost the audit trail")
	}
	if code, text := tr2.post(t, webhookToken, payload(t, "alertmanager-firing.json", nil)); code != 200 {
		t.Fatalf("post after restart: %d %s", code, text)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(agent.store.Adds()); n != adds {
		t.Errorf("repeat after restart added rules: %d adds, want %d", n, adds)
	}
	lines, _ := os.ReadFile(tr.audit)
	if n := bytes.Count(lines, []byte("\n")); n < 1 {
		t.Errorf("audit file has %d lines", n)
	}
}
