package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/internal/testnet"
	"github.com/packetscope/packetscope/rule"
)

// The hostile suite: each way an alert sender, a model or a failing agent
// could turn the defense loop against the node, reproduced with the real
// binary. Fake agents and the fake model are HTTP servers on loopback in
// this test process; traffic, where there is any, stays on veth pairs
// between namespaces the test creates.

// headerRecorder is a loopback HTTP server that records what it is sent.
type headerRecorder struct {
	srv  *httptest.Server
	mu   sync.Mutex
	auth []string
}

func newHeaderRecorder(t *testing.T) *headerRecorder {
	t.Helper()
	h := &headerRecorder{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.auth = append(h.auth, r.Method+" "+r.URL.Path+" auth="+r.Header.Get("Authorization"))
		h.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"rules":[]}`)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *headerRecorder) got() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.auth...)
}

// alertBody is an Alertmanager v4 notification of one firing ICMP flood alert.
func alertBody(t *testing.T, instance string, annotations map[string]string) []byte {
	t.Helper()
	if annotations == nil {
		annotations = map[string]string{"summary": "ICMP flood"}
	}
	labels := map[string]string{"alertname": "PacketScopeICMPFlood", "attack": "icmp_flood", "severity": "critical", "job": "packetscope"}
	if instance != "" {
		labels["instance"] = instance
	}
	msg := map[string]any{
		"version": "4", "status": "firing", "receiver": "packetscope-responder", "groupKey": "{}:{}",
		"alerts": []any{map[string]any{
			"status": "firing", "labels": labels, "annotations": annotations,
			"startsAt": time.Now().Add(-20 * time.Second).UTC().Format(time.RFC3339Nano), "fingerprint": "e2e0hostile0001",
		}},
	}
	b, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decisions reads the responder's newest decisions (with the API token).
func decisions(t *testing.T, base, token string) []map[string]any {
	t.Helper()
	code, body := httpDo(t, http.MethodGet, base+"/api/v1/decisions?limit=50", token, "")
	if code != http.StatusOK {
		t.Fatalf("GET /api/v1/decisions: %d %s", code, body)
	}
	var page struct{ Decisions []map[string]any }
	if err := json.Unmarshal([]byte(body), &page); err != nil {
		t.Fatal(err)
	}
	return page.Decisions
}

func waitDecisionOutcome(t *testing.T, base, token string, pred func(d map[string]any) bool) map[string]any {
	t.Helper()
	var last []map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		last = decisions(t, base, token)
		for _, d := range last {
			if pred(d) {
				return d
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no matching decision; have %v", last)
	return nil
}

// TestHostileForgedInstance: an alert whose instance names a host that is
// not a configured agent gets nothing sent there, no token above all.
func TestHostileForgedInstance(t *testing.T) {
	a, b, evil := newHeaderRecorder(t), newHeaderRecorder(t), newHeaderRecorder(t)
	apiToken := "api-tok-e2e"
	resp := startAgent(t, "responder", "--agent.url", a.srv.URL, "--agent.url", b.srv.URL,
		"--agent.token-file", writeToken(t, "AGENT-SECRET"), "--api.token-file", writeToken(t, apiToken),
		"--webhook.token-file", writeToken(t, "wh"), "--responder.audit-file", filepath.Join(t.TempDir(), "a.jsonl"))
	evilHost := strings.TrimPrefix(evil.srv.URL, "http://")
	for _, inst := range []string{evilHost, evil.srv.URL + "/x"} {
		code, text := httpDo(t, http.MethodPost, resp.URL+"/api/v1/alerts", "wh", string(alertBody(t, inst, nil)))
		if code != http.StatusOK {
			t.Fatalf("post: %d %s", code, text)
		}
	}
	d := waitDecisionOutcome(t, resp.URL, apiToken, func(d map[string]any) bool { return d["outcome"] == "unknown_agent" })
	time.Sleep(500 * time.Millisecond)
	if got := evil.got(); len(got) > 0 {
		t.Fatalf("the forged instance was contacted: %v", got)
	}
	if code, _ := httpDo(t, http.MethodGet, resp.URL+"/api/v1/decisions", "", ""); code != http.StatusUnauthorized {
		t.Errorf("decisions without the API token: %d, want 401", code)
	}
	t.Logf("forged instance → %v; the forged host got no request", d["outcome"])
	// The configured agents got their credential (the baseline poll reads
	// traffic with it), so the token does reach where it belongs.
	deadline := time.Now().Add(10 * time.Second)
	for len(a.got()) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	for _, r := range a.got() {
		if !strings.HasSuffix(r, "auth=Bearer AGENT-SECRET") {
			t.Errorf("configured agent got %q", r)
		}
	}
}

// TestHostileHugeAlertRestart: a notification with 1 MB of annotations,
// then a restart on the same audit file: the responder starts.
func TestHostileHugeAlertRestart(t *testing.T) {
	a, b := newHeaderRecorder(t), newHeaderRecorder(t)
	audit := filepath.Join(t.TempDir(), "audit.jsonl")
	args := []string{"responder", "--agent.url", a.srv.URL, "--agent.url", b.srv.URL,
		"--webhook.token-file", writeToken(t, "wh"), "--responder.audit-file", audit}
	first := startAgent(t, args...)
	body := alertBody(t, "node-x:9436", map[string]string{"description": "HUGE"})
	body = bytes.Replace(body, []byte("HUGE"), bytes.Repeat([]byte("<"), (1<<20)-len(body)-64), 1)
	code, text := httpDo(t, http.MethodPost, first.URL+"/api/v1/alerts", "wh", string(body))
	if code != http.StatusOK {
		t.Fatalf("post %d bytes: %d %s", len(body), code, text)
	}
	waitDecisionOutcome(t, first.URL, "", func(d map[string]any) bool { return d["outcome"] == "unknown_agent" })
	if err := first.Stop(t); err != nil {
		t.Fatalf("stop: %v", err)
	}
	data, err := os.ReadFile(audit)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		if len(line) > 64<<10 {
			t.Errorf("an audit line of %d bytes from a 1 MB alert", len(line))
		}
	}
	second := startAgent(t, args...) // fails the test if it does not get ready
	if ds := decisions(t, second.URL, ""); len(ds) == 0 {
		t.Error("the restarted responder lost the trail")
	}
}

// fakeAgent is the agent API over an in-memory rule table and a traffic
// window holding an ordinary baseline and an ICMP flood; while failAdds is
// set it answers 503 to rule adds.
type fakeAgent struct {
	srv      *httptest.Server
	store    *memRules
	failAdds atomic.Bool
}

func newFakeAgent(t *testing.T, token string) *fakeAgent {
	t.Helper()
	victim := netip.MustParseAddr("10.230.0.1")
	w := agentapi.NewTrafficWindow(agentapi.WindowConfig{MaxSamples: 50_000, MaxAge: 10 * time.Minute, SampleEvery: 1,
		Protected: func() []netip.Prefix { return []netip.Prefix{netip.PrefixFrom(victim, 32)} }})
	r := rand.New(rand.NewPCG(1, 2))
	src := func() netip.Addr {
		return netip.AddrFrom4([4]byte{byte(11 + r.IntN(200)), byte(r.IntN(256)), byte(r.IntN(256)), byte(1 + r.IntN(254))})
	}
	now := time.Now()
	for i := range 3000 { // ordinary: TCP to 443, 6 min to 100 s ago
		w.Add(rule.Sample{Time: now.Add(-6*time.Minute + time.Duration(i)*80*time.Millisecond), Interface: "eth0", Packet: rule.Packet{
			Family: 4, Src: src(), Dst: victim, Protocol: rule.ProtoTCP, TTL: uint8(50 + r.IntN(14)), Length: uint16(52 + r.IntN(1400)),
			HasL4: true, SrcPort: uint16(32768 + r.IntN(28000)), DstPort: 443, TCPFlags: rule.FlagACK, TCPWindow: uint16(500 + r.IntN(60000))}})
	}
	for i := range 3000 { // the flood: hping3 --icmp --rand-source, the last 25 s
		w.Add(rule.Sample{Time: now.Add(-25*time.Second + time.Duration(i)*8*time.Millisecond), Interface: "eth0", Packet: rule.Packet{
			Family: 4, Src: src(), Dst: victim, Protocol: rule.ProtoICMP, TTL: 64, Length: 28, HasL4: true, ICMPType: 8}})
	}
	f := &fakeAgent{store: &memRules{rules: map[string]rule.Rule{}}}
	api := agentapi.NewAPI(slog.New(slog.DiscardHandler), f.store, w, token)
	f.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		if f.failAdds.Load() && req.Method == http.MethodPost {
			http.Error(rw, `{"error":"overloaded"}`, http.StatusServiceUnavailable)
			return
		}
		api.ServeHTTP(rw, req)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

type memRules struct {
	mu    sync.Mutex
	rules map[string]rule.Rule
}

func (s *memRules) Add(r rule.Rule) (rule.Rule, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.rules[r.ID]; ok || r.ID == "" {
		return rule.Rule{}, rule.ErrRuleExists
	}
	r.CreatedAt = time.Now()
	r.ExpiresAt = r.CreatedAt.Add(time.Duration(r.TTLSeconds) * time.Second)
	s.rules[r.ID] = r
	return r, nil
}

func (s *memRules) Delete(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.rules[id]; !ok {
		return rule.ErrRuleNotFound
	}
	delete(s.rules, id)
	return nil
}

func (s *memRules) List() []rule.Rule {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []rule.Rule
	for _, r := range s.rules {
		out = append(out, r)
	}
	return out
}

func (s *memRules) ids() string {
	var ids []string
	for _, r := range s.List() {
		ids = append(ids, r.ID)
	}
	return strings.Join(ids, ",")
}

// TestHostileRefreshAgainstFailingAgent: a repeat that must extend the
// rule while the agent answers 503 leaves the rule in force and answers
// Alertmanager 503, so it retries; the retry extends it.
func TestHostileRefreshAgainstFailingAgent(t *testing.T) {
	agent := newFakeAgent(t, "agent-tok")
	resp := startAgent(t, "responder", "--agent.url", agent.srv.URL, "--agent.token-file", writeToken(t, "agent-tok"),
		"--webhook.token-file", writeToken(t, "wh"), "--responder.audit-file", filepath.Join(t.TempDir(), "a.jsonl"),
		"--responder.rule-ttl", "30s")
	body := string(alertBody(t, "", nil))
	if code, text := httpDo(t, http.MethodPost, resp.URL+"/api/v1/alerts", "wh", body); code != 200 {
		t.Fatalf("post: %d %s", code, text)
	}
	d := waitDecisionOutcome(t, resp.URL, "", func(d map[string]any) bool { return d["kind"] == "alert" })
	if d["outcome"] != "applied" || agent.store.ids() == "" {
		t.Fatalf("first decision %v %v; agent holds %q", d["outcome"], d["error"], agent.store.ids())
	}
	before := agent.store.ids()
	// Past half the 30 s TTL a repeat extends the rule.
	time.Sleep(16 * time.Second)
	agent.failAdds.Store(true)
	code, text := httpDo(t, http.MethodPost, resp.URL+"/api/v1/alerts", "wh", body)
	if code != http.StatusServiceUnavailable {
		t.Errorf("repeat against a failing agent: %d %s, want 503 so Alertmanager retries", code, text)
	}
	if got := agent.store.ids(); got != before {
		t.Fatalf("the failed refresh changed the agent's rules: %q → %q", before, got)
	}
	agent.failAdds.Store(false)
	if code, text := httpDo(t, http.MethodPost, resp.URL+"/api/v1/alerts", "wh", body); code != 200 {
		t.Fatalf("retry: %d %s", code, text)
	}
	if got := agent.store.ids(); got == before || got == "" {
		t.Errorf("the retry did not extend the rule: %q → %q", before, got)
	}
}

// hostileModel answers every request with rules no guardrail should let
// hurt the node: match-everything, whole-domain ranges, a broad prefix, and
// a narrow rule asking for a day-long TTL.
func hostileModel(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		nullMatch := func(over map[string]any) map[string]any {
			m := strictMatch(nil)
			for k, v := range over {
				m[k] = v
			}
			return m
		}
		rules := []any{
			map[string]any{"action": "drop", "rate_pps": nil, "ttl_seconds": 86400, "reason": "everything", "match": nullMatch(nil)},
			map[string]any{"action": "drop", "rate_pps": nil, "ttl_seconds": 86400, "reason": "whole domain", "match": nullMatch(map[string]any{"ttl": "0-255", "length": "0-65535", "dst_ports": nil})},
			map[string]any{"action": "drop", "rate_pps": nil, "ttl_seconds": 86400, "reason": "the world", "match": nullMatch(map[string]any{"src": "0.0.0.0/1"})},
			map[string]any{"action": "drop", "rate_pps": nil, "ttl_seconds": 86400, "reason": "icmp for a day", "match": nullMatch(map[string]any{"protocol": "icmp"})},
		}
		args, _ := json.Marshal(map[string]any{"rationale": "block it all", "rules": rules})
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"id": "chatcmpl-hostile", "object": "chat.completion", "created": time.Now().Unix(), "model": "hostile",
			"choices": []any{map[string]any{"index": 0, "finish_reason": "tool_calls",
				"message": map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{map[string]any{
					"id": "call_1", "type": "function", "function": map[string]any{"name": "propose_rules", "arguments": string(args)}}}}}},
			"usage": map[string]any{"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestHostileModelOnFreshAgent: a fresh agent (no baseline: nothing to
// measure collateral against) under an ICMP flood, and a model that answers
// with everything it should not: nothing that drops is enforced, and no rule
// outlives --responder.rule-ttl.
func TestHostileModelOnFreshAgent(t *testing.T) {
	testnet.RequireRoot(t)
	victim, client := twoHosts(t)
	model := hostileModel(t)
	agent := startAgent(t, "run", "--netns", victim.Path(), "--interfaces", "eth0", "--bpf.pin-path", pinDir(t),
		"--api.token-file", writeToken(t, "agent-tok"), "--webhook.token-file", writeToken(t, "wh"),
		"--responder.audit-file", filepath.Join(t.TempDir(), "a.jsonl"), "--guard.sample-every", "1",
		"--analyst", "llm", "--llm.base-url", model.URL+"/v1", "--llm.model", "hostile", "--llm.api-key-file", writeToken(t, "k"),
		"--no-llm.fallback", "--responder.rule-ttl", "10m", "--responder.attack-window-min", "5s", "--responder.baseline-gap", "1s")
	// The flood, over the veth pair only: 2000 echo requests in about 4 s.
	if out, err := client.Cmd("ping", "-q", "-i", "0.002", "-c", "2000", "-W", "1", "10.210.0.1").CombinedOutput(); err != nil {
		t.Logf("ping: %v\n%s", err, out)
	}
	if code, text := httpDo(t, http.MethodPost, agent.URL+"/api/v1/alerts", "wh", string(alertBody(t, "", nil))); code != 200 {
		t.Fatalf("post: %d %s", code, text)
	}
	d := waitDecisionOutcome(t, agent.URL, "agent-tok", func(d map[string]any) bool { return d["kind"] == "alert" })
	code, body := httpGet(t, agent.URL+"/api/v1/rules")
	if code != 200 {
		t.Fatalf("GET rules: %d %s", code, body)
	}
	var rules struct{ Rules []rule.Rule }
	if err := json.Unmarshal([]byte(body), &rules); err != nil {
		t.Fatal(err)
	}
	for _, r := range rules.Rules {
		if r.Action != rule.ActionMonitor {
			t.Errorf("rule %s enforces (%s %+v) with no baseline to measure collateral", r.ID, r.Action, r.Match)
		}
		if ttl := r.ExpiresAt.Sub(r.CreatedAt); ttl > 10*time.Minute+time.Second {
			t.Errorf("rule %s lives %s, beyond --responder.rule-ttl 10m", r.ID, ttl)
		}
	}
	t.Logf("hostile model on a fresh agent: outcome %v, %d rules installed, all monitor", d["outcome"], len(rules.Rules))
	vs, _ := d["validations"].([]any)
	rejected := 0
	for _, v := range vs {
		if v.(map[string]any)["accepted"] != true {
			rejected++
		}
	}
	if rejected < 3 {
		t.Errorf("%d of the model's rules rejected, want at least the three that match everything: %s", rejected, fmt.Sprint(vs))
	}
}
