package responder

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/rule"
)

// recorder is an HTTP server on loopback that records every request's
// headers and answers with a page an attacker controls.
type recorder struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []http.Header
}

const attackerPage = "ATTACKER-PAGE <script>secret internal page</script>"

func newRecorder(tb testing.TB, status int) *recorder {
	tb.Helper()
	rec := &recorder{}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, r.Header.Clone())
		rec.mu.Unlock()
		w.WriteHeader(status)
		io.WriteString(w, attackerPage)
	}))
	tb.Cleanup(rec.srv.Close)
	return rec
}

func (rec *recorder) requests() []http.Header {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]http.Header(nil), rec.reqs...)
}

func withInstance(inst string) func(m map[string]any) {
	return func(m map[string]any) {
		for _, a := range m["alerts"].([]any) {
			a.(map[string]any)["labels"].(map[string]any)["instance"] = inst
		}
	}
}

// TestForgedInstanceContactsNothing: an alert whose instance names a host
// that is not a configured agent gets outcome unknown_agent, and that host
// gets no request, let alone the agent token.
func TestForgedInstanceContactsNothing(t *testing.T) {
	agent := newFakeAgent(t, ordinaryTraffic(1, 2000), hpingICMPFlood(2, 2000, true))
	evil := newRecorder(t, http.StatusOK)
	evilHost := strings.TrimPrefix(evil.srv.URL, "http://")
	targets := filepath.Join(t.TempDir(), "agents.yml")
	writeFile(t, targets, "- targets: ['"+strings.TrimPrefix(agent.srv.URL, "http://")+"']\n  labels: {node: a}\n")
	for _, tc := range []struct {
		name string
		cfg  Config
		inst string
	}{
		{"targets file, host:port", Config{AgentTargetsFile: targets}, evilHost},
		{"targets file, URL with a path", Config{AgentTargetsFile: targets}, evil.srv.URL + "/x"},
		{"two agent urls", Config{AgentURLs: []string{agent.srv.URL, "http://127.0.0.2:9"}}, evilHost},
		{"targets file, no instance", Config{AgentTargetsFile: targets}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := startResponder(t, tc.cfg, true)
			code, text := tr.post(t, webhookToken, payload(t, "alertmanager-firing.json", withInstance(tc.inst)))
			if code != http.StatusOK {
				t.Fatalf("post: %d %s", code, text)
			}
			d := tr.waitDecision(t, isKind("alert"))
			if d.Outcome != OutcomeUnknownAgent {
				t.Errorf("outcome %s (%s), want %s", d.Outcome, d.Error, OutcomeUnknownAgent)
			}
			time.Sleep(100 * time.Millisecond)
			if reqs := evil.requests(); len(reqs) > 0 {
				t.Fatalf("the forged instance got %d requests (first Authorization %q)", len(reqs), reqs[0].Get("Authorization"))
			}
			if n := len(agent.store.Adds()); n != 0 {
				t.Errorf("%d rules added for an alert that named no configured agent", n)
			}
		})
	}
}

// TestInstanceSelectsConfiguredAgent: among several configured agents the
// instance label picks one, by host:port.
func TestInstanceSelectsConfiguredAgent(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "agents.json")
	writeFile(t, file, `[{"targets":["node-a:9436","[fd00::5]:9436"]},{"targets":["node-b:9436"],"labels":{"__scheme__":"https"}}]`)
	at, err := NewAgentTargets(nil, []string{"http://127.0.0.1:9436/"}, file)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ inst, want string }{
		{"node-a:9436", "http://node-a:9436"},
		{"NODE-A:9436", "http://node-a:9436"},
		{"[fd00::5]:9436", "http://[fd00::5]:9436"},
		{"node-b:9436", "https://node-b:9436"},
		{"127.0.0.1:9436", "http://127.0.0.1:9436"},
		{"node-c:9436", ""},
		{"node-a", ""},
		{"http://node-a:9436", ""},
		{"node-a:9436/x", ""},
		{"", ""},
	} {
		got, err := at.Select(map[string]string{"instance": tc.inst})
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("Select(%q) = %q, %v; want %q", tc.inst, got, err, tc.want)
		}
	}

	// A reload picks up a change; a broken file keeps the previous set.
	writeFile(t, file, "- targets: ['node-c:9436']\n")
	if err := at.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := at.Select(map[string]string{"instance": "node-c:9436"}); err != nil {
		t.Errorf("after reload: %v", err)
	}
	writeFile(t, file, "- targets: [node-d:9436\n")
	if err := at.Reload(); err == nil {
		t.Error("a broken targets file reloaded without an error")
	}
	if _, err := at.Select(map[string]string{"instance": "node-c:9436"}); err != nil {
		t.Errorf("a broken file emptied the set: %v", err)
	}

	for _, bad := range []string{
		`[{"targets":["no-port"]}]`,
		`[{"targets":["a:1"],"labels":{"__scheme__":"ftp"}}]`,
		`[{"targets":["a:1"],"extra":1}]`,
		`{"targets":["a:1"]}`,
	} {
		if _, err := ParseTargets([]byte(bad)); err == nil {
			t.Errorf("ParseTargets(%s) accepted", bad)
		}
	}
	if _, err := NewAgentTargets(nil, []string{"http://user:pw@a:1"}, ""); err == nil {
		t.Error("an agent url with credentials in it was accepted")
	}
}

// TestAgentTargetsFileWatched: a running responder picks up an agent added
// to the targets file.
func TestAgentTargetsFileWatched(t *testing.T) {
	agent := newFakeAgent(t, ordinaryTraffic(3, 2000), hpingICMPFlood(4, 2000, true))
	file := filepath.Join(t.TempDir(), "agents.yml")
	writeFile(t, file, "[]\n")
	tr := startResponder(t, Config{AgentTargetsFile: file, AgentTargetsReload: 20 * time.Millisecond}, true)
	host := strings.TrimPrefix(agent.srv.URL, "http://")
	writeFile(t, file, "- targets: ['"+host+"']\n")
	deadline := time.Now().Add(5 * time.Second)
	for tr.targets.Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if code, text := tr.post(t, webhookToken, payload(t, "alertmanager-firing.json", withInstance(host))); code != 200 {
		t.Fatalf("post: %d %s", code, text)
	}
	if d := tr.waitDecision(t, isKind("alert")); d.Outcome != OutcomeApplied {
		t.Errorf("outcome %s (%s), want applied", d.Outcome, d.Error)
	}
}

// TestAgentErrorsNotEchoed: what an agent's address answers never reaches
// the decisions or the webhook's answer: only a status code and a phrase.
func TestAgentErrorsNotEchoed(t *testing.T) {
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusForbidden, http.StatusInternalServerError} {
		evil := newRecorder(t, status)
		tr := startResponder(t, Config{AgentURL: evil.srv.URL}, true)
		code, text := tr.post(t, webhookToken, payload(t, "alertmanager-firing.json", nil))
		if strings.Contains(text, "ATTACKER") {
			t.Errorf("%d: the webhook answer echoes the agent's body: %s", status, text)
		}
		if code == http.StatusOK {
			tr.waitDecision(t, isKind("alert"))
		}
		resp, err := http.Get(tr.srv.URL + "/api/v1/decisions")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "ATTACKER") || strings.Contains(string(b), "secret internal") {
			t.Errorf("%d: decisions echo the agent's body: %s", status, b)
		}
		audit, _ := os.ReadFile(tr.audit)
		if strings.Contains(string(audit), "ATTACKER") {
			t.Errorf("%d: the audit file holds the agent's body", status)
		}
	}
	// A dial error's text (which says whether a port is open) is not quoted.
	if got := agentFailure("probe agent", &mockURLError{}); strings.Contains(got, "connection refused") {
		t.Errorf("agentFailure quotes the dial error: %s", got)
	}
}

type mockURLError struct{}

func (*mockURLError) Error() string { return "dial tcp 10.0.0.1:22: connection refused" }

// TestAgentCredentialsConfigured: the token goes to the configured agent on
// every call (reads too), and a redirect does not carry it elsewhere.
func TestAgentCredentialsConfigured(t *testing.T) {
	evil := newRecorder(t, http.StatusOK)
	var got atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Get("Authorization"))
		http.Redirect(w, r, evil.srv.URL+"/api/v1/rules", http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	hc, err := NewAgentHTTPClient(mustHTTPConfig(t, "tls_config: {insecure_skip_verify: false}\n"), "tok")
	if err != nil {
		t.Fatal(err)
	}
	_, err = agentapi.NewClient(srv.URL, "", hc).ListRules(context.Background())
	if err == nil {
		t.Error("a redirect was followed")
	}
	if got.Load() != "Bearer tok" {
		t.Errorf("agent got Authorization %q", got.Load())
	}
	if reqs := evil.requests(); len(reqs) > 0 {
		t.Errorf("the redirect target got %d requests", len(reqs))
	}
	if _, err := NewAgentHTTPClient(mustHTTPConfig(t, "authorization: {credentials: x}\n"), "tok"); err == nil {
		t.Error("two credentials accepted")
	}
}

func mustHTTPConfig(t *testing.T, yml string) (c HTTPClientConfig) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "http.yml")
	writeFile(t, file, yml)
	c, err := LoadAgentHTTPConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeFile(tb testing.TB, path, s string) {
	tb.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
}

// flakyAgent serves a fake agent's API but answers 503 to rule adds while
// failing is set.
func flakyAgent(tb testing.TB, a *fakeAgent, failing *atomic.Bool) *httptest.Server {
	tb.Helper()
	h := a.srv.Config.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() && r.Method == http.MethodPost {
			http.Error(w, `{"error":"overloaded"}`, http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	}))
	tb.Cleanup(srv.Close)
	return srv
}

// TestRefreshFailureKeepsRule: a refresh whose add fails leaves the rule in
// force and answers 503, so Alertmanager sends the notification again; the
// retry extends it.
func TestRefreshFailureKeepsRule(t *testing.T) {
	clock := &fakeClock{}
	agent := newFakeAgent(t, ordinaryTraffic(5, 2000), hpingICMPFlood(6, 2000, true))
	var failing atomic.Bool
	srv := flakyAgent(t, agent, &failing)
	tr := startResponder(t, Config{AgentURL: srv.URL, Now: clock.Now}, true)
	body := payload(t, "alertmanager-firing.json", nil)
	if code, text := tr.post(t, webhookToken, body); code != 200 {
		t.Fatalf("post: %d %s", code, text)
	}
	d := tr.waitDecision(t, isKind("alert"))
	if d.Outcome != OutcomeApplied {
		t.Fatalf("outcome %s: %s", d.Outcome, d.Error)
	}
	before := agent.store.List()
	clock.Advance(6 * time.Minute)
	failing.Store(true)
	code, text := tr.post(t, webhookToken, body)
	if code != http.StatusServiceUnavailable {
		t.Errorf("refresh against a failing agent answered %d %s, want 503", code, text)
	}
	after := agent.store.List()
	if len(after) != len(before) || len(after) == 0 || after[0].ID != before[0].ID {
		t.Fatalf("the failed refresh changed the agent's rules: before %v, after %v", ids(before), ids(after))
	}
	failing.Store(false)
	if code, text := tr.post(t, webhookToken, body); code != 200 {
		t.Fatalf("retry: %d %s", code, text)
	}
	final := agent.store.List()
	if len(final) != len(before) || final[0].ID == before[0].ID {
		t.Errorf("the retry did not extend the rules: %v → %v", ids(before), ids(final))
	}
}

func ids(rs []rule.Rule) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

// blockingAgent holds AddRule until released.
type blockingAgent struct {
	Agent
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (b *blockingAgent) AddRule(ctx context.Context, r rule.Rule) (rule.Rule, error) {
	b.once.Do(func() { close(b.entered) })
	<-b.release
	return b.Agent.AddRule(ctx, r)
}

// TestResolveDuringDecision: an alert that resolves while its decision is
// pushing rules leaves no rules (RemoveOnResolve) and no state behind.
func TestResolveDuringDecision(t *testing.T) {
	agent := newFakeAgent(t, ordinaryTraffic(7, 2000), hpingICMPFlood(8, 2000, true))
	ba := &blockingAgent{entered: make(chan struct{}), release: make(chan struct{})}
	tr := startResponder(t, Config{AgentURL: agent.srv.URL, RemoveOnResolve: true,
		NewAgent: func(u, tok string) Agent { ba.Agent = agentapi.NewClient(u, tok, nil); return ba }}, true)
	if code, text := tr.post(t, webhookToken, payload(t, "alertmanager-firing.json", nil)); code != 200 {
		t.Fatalf("post: %d %s", code, text)
	}
	select {
	case <-ba.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the decision never pushed")
	}
	if code, text := tr.post(t, webhookToken, payload(t, "alertmanager-resolved.json", nil)); code != 200 {
		t.Fatalf("resolve: %d %s", code, text)
	}
	time.Sleep(200 * time.Millisecond)
	close(ba.release)
	tr.waitDecision(t, isKind("resolved"))
	tr.waitDecision(t, isKind("alert"))
	deadline := time.Now().Add(5 * time.Second)
	for len(agent.store.List()) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(agent.store.List()); n != 0 {
		t.Errorf("%d rules left on the agent after the alert resolved", n)
	}
	tr.mu.Lock()
	_, ok := tr.alerts["7c2b1a9e4f3d5e60"]
	tr.mu.Unlock()
	if ok {
		t.Error("the resolved alert's state was recreated")
	}
}

// TestDecisionsNeedToken: with an API token, the trail is not for everyone.
func TestDecisionsNeedToken(t *testing.T) {
	agent := newFakeAgent(t, nil, nil)
	tr := startResponder(t, Config{AgentURL: agent.srv.URL, APIToken: "api-tok"}, false)
	for _, tc := range []struct {
		token string
		want  int
	}{{"", 401}, {"wrong", 401}, {"api-tok", 200}} {
		req, _ := http.NewRequest(http.MethodGet, tr.srv.URL+"/api/v1/decisions", nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("token %q: %d, want %d", tc.token, resp.StatusCode, tc.want)
		}
	}
}

// TestDecisionsPaginated: pages are bounded in count and bytes and chain
// through next.
func TestDecisionsPaginated(t *testing.T) {
	agent := newFakeAgent(t, nil, nil)
	tr := startResponder(t, Config{AgentURL: agent.srv.URL, MaxDecisions: 1000}, false)
	big := strings.Repeat("x", maxAnnotationLen)
	for i := range 600 {
		ann := map[string]string{}
		for k := range maxAlertAnnotations {
			ann["a"+string(rune('a'+k))] = big
		}
		tr.record(Decision{Kind: "alert", Outcome: OutcomeNoAction, Alert: AlertInfo{Name: "n", Fingerprint: "f" + string(rune('a'+i%26)), Annotations: ann}})
	}
	seen, pages, before := map[string]bool{}, 0, ""
	for {
		resp, err := http.Get(tr.srv.URL + "/api/v1/decisions?limit=1000&before=" + before)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if len(b) > maxDecisionsBytes+64<<10 {
			t.Fatalf("page of %d bytes, bound %d", len(b), maxDecisionsBytes)
		}
		var page struct {
			Decisions []Decision
			Next      string
		}
		if err := json.Unmarshal(b, &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Decisions) > maxDecisionsPage {
			t.Fatalf("page of %d decisions", len(page.Decisions))
		}
		for _, d := range page.Decisions {
			if seen[d.ID] {
				t.Fatalf("decision %s on two pages", d.ID)
			}
			seen[d.ID] = true
		}
		pages++
		if page.Next == "" || pages > 100 {
			break
		}
		before = page.Next
	}
	if len(seen) != 600 || pages < 3 {
		t.Errorf("%d decisions over %d pages, want 600 over at least 3", len(seen), pages)
	}
}

// TestStrictWebhookDecoding: what encoding/json would quietly accept.
func TestStrictWebhookDecoding(t *testing.T) {
	good := string(payload(t, "alertmanager-firing.json", nil))
	for _, tc := range []struct{ name, body, want string }{
		{"duplicate top-level key", strings.Replace(good, `"version":"4"`, `"version":"4","version":"4"`, 1), "duplicate key"},
		{"duplicate label", strings.Replace(good, `"alertname":"PacketScopeSYNFlood"`, `"alertname":"PacketScopeSYNFlood","alertname":"Other"`, 1), "duplicate key"},
		{"case-folded key", strings.Replace(good, `"version":"4"`, `"Version":"4"`, 1), "case-sensitive"},
		{"case-folded alert key", strings.Replace(good, `"status":"firing"`, `"STATUS":"firing"`, 1), "case-sensitive"},
		{"trailing data", good + `{}`, "trailing data"},
		{"trailing garbage", good + `x`, "trailing data"},
		{"too deep", `{"version":"4","alerts":[{"labels":{"a":"b"},"x":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}]}`, "deeper"},
	} {
		_, err := DecodeMessage([]byte(tc.body))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
	for _, f := range []string{"alertmanager-firing.json", "alertmanager-resolved.json", "alertmanager-injection.json"} {
		b, _ := os.ReadFile(filepath.Join("testdata", f))
		if _, err := DecodeMessage(b); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestOldTrailAgentNotDialed: an audit trail written before agents came
// from configuration may name an agent an alert chose; a restarted
// responder neither sweeps nor resolves there.
func TestOldTrailAgentNotDialed(t *testing.T) {
	agent := newFakeAgent(t, nil, nil)
	evil := newRecorder(t, http.StatusOK)
	path := filepath.Join(t.TempDir(), "decisions.jsonl")
	old, err := OpenAuditLog(nil, AuditConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	fp := "7c2b1a9e4f3d5e60"
	if err := old.Record(Decision{ID: "old-1", Kind: "alert", Outcome: OutcomeApplied, Agent: evil.srv.URL, Time: time.Now(),
		Alert:   AlertInfo{Name: "PacketScopeSYNFlood", Fingerprint: fp},
		Applied: []AppliedRule{{ID: "ps-x-0", Action: "drop", ExpiresAt: time.Now().Add(time.Hour)}}}); err != nil {
		t.Fatal(err)
	}
	old.Close()
	tr := startResponder(t, Config{AgentURL: agent.srv.URL, AuditFile: path, RemoveOnResolve: true}, true)
	tr.sweep(context.Background())
	if code, text := tr.post(t, webhookToken, payload(t, "alertmanager-resolved.json", nil)); code != 200 {
		t.Fatalf("resolve: %d %s", code, text)
	}
	tr.waitDecision(t, isKind("resolved"))
	if reqs := evil.requests(); len(reqs) > 0 {
		t.Fatalf("an agent from an old trail got %d requests (Authorization %q)", len(reqs), reqs[0].Get("Authorization"))
	}
}
