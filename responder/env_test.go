package responder

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/internal/testnet"
	"github.com/packetscope/packetscope/rule"
)

// memStore is an in-memory rule table behind the real agent API handler
// (guard.NewAPI): the responder talks to it through the real client.
type memStore struct {
	mu    sync.Mutex
	rules map[string]rule.Rule
	order []string
	adds  []rule.Rule // every successful Add, in order
	seq   int
}

func newMemStore() *memStore { return &memStore{rules: map[string]rule.Rule{}} }

func (s *memStore) Add(r rule.Rule) (rule.Rule, error) {
	if err := r.Validate(); err != nil {
		return rule.Rule{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.ID == "" {
		s.seq++
		r.ID = fmt.Sprintf("r%d", s.seq)
	}
	if _, ok := s.rules[r.ID]; ok {
		return rule.Rule{}, rule.ErrRuleExists
	}
	r.CreatedAt = time.Now()
	r.ExpiresAt = r.CreatedAt.Add(time.Duration(r.TTLSeconds) * time.Second)
	s.rules[r.ID] = r
	s.order = append(s.order, r.ID)
	s.adds = append(s.adds, r)
	return r, nil
}

func (s *memStore) Delete(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.rules[id]; !ok {
		return rule.ErrRuleNotFound
	}
	delete(s.rules, id)
	s.order = slices.DeleteFunc(s.order, func(x string) bool { return x == id })
	return nil
}

func (s *memStore) List() []rule.Rule {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []rule.Rule
	for _, id := range s.order {
		if r, ok := s.rules[id]; ok {
			out = append(out, r)
		}
	}
	return out
}

func (s *memStore) Adds() []rule.Rule {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]rule.Rule(nil), s.adds...)
}

// The node the fake agent runs on: its address is the captures' victim.
var (
	nodeAddr    = netip.MustParsePrefix("10.10.10.10/32")
	nodeGateway = netip.MustParsePrefix("10.10.10.1/32")
)

const agentToken = "agent-secret-token"

type fakeAgent struct {
	srv    *httptest.Server
	store  *memStore
	window *agentapi.TrafficWindow
}

// newFakeAgent serves the real agent API over an in-memory rule store and a
// real traffic window holding baseline packets from 6 min to 95 s ago (the
// baseline window ends BaselineGap before the attack window) and
// attack packets in the last 30 s.
func newFakeAgent(tb testing.TB, baseline, attack []rule.Packet) *fakeAgent {
	tb.Helper()
	w := agentapi.NewTrafficWindow(agentapi.WindowConfig{
		MaxSamples: 200_000, MaxAge: 10 * time.Minute, SampleEvery: 1,
		Protected: func() []netip.Prefix { return []netip.Prefix{nodeAddr, nodeGateway} },
	})
	now := time.Now()
	fill(w, baseline, now.Add(-6*time.Minute), now.Add(-95*time.Second))
	fill(w, attack, now.Add(-29*time.Second), now.Add(-100*time.Millisecond))
	st := newMemStore()
	srv := httptest.NewServer(agentapi.NewAPI(slog.New(slog.DiscardHandler), st, w, agentToken))
	tb.Cleanup(srv.Close)
	return &fakeAgent{srv: srv, store: st, window: w}
}

func fill(w *agentapi.TrafficWindow, pkts []rule.Packet, from, to time.Time) {
	if len(pkts) == 0 {
		return
	}
	step := to.Sub(from) / time.Duration(len(pkts))
	for i, p := range pkts {
		w.Add(rule.Sample{Time: from.Add(time.Duration(i) * step), Interface: "eth0", Packet: p})
	}
}

type testResponder struct {
	*Responder
	srv    *httptest.Server
	logs   *testnet.SyncBuffer
	reg    *prometheus.Registry
	audit  string
	cancel context.CancelFunc
	done   chan struct{}
}

const webhookToken = "webhook-secret-token"

// startResponder builds a responder (audit file in a temp dir unless set),
// serves its handler and runs its workers until the test ends.
func startResponder(tb testing.TB, cfg Config, run bool) *testResponder {
	tb.Helper()
	if cfg.AuditFile == "" {
		cfg.AuditFile = filepath.Join(tb.TempDir(), "decisions.jsonl")
	}
	if cfg.WebhookToken == "" {
		cfg.WebhookToken = webhookToken
	}
	if cfg.AgentToken == "" {
		cfg.AgentToken = agentToken
	}
	logs := &testnet.SyncBuffer{}
	reg := prometheus.NewRegistry()
	r, err := New(slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), reg, cfg)
	if err != nil {
		tb.Fatalf("new responder: %v", err)
	}
	srv := httptest.NewServer(r.Handler())
	tr := &testResponder{Responder: r, srv: srv, logs: logs, reg: reg, audit: cfg.AuditFile, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	tr.cancel = cancel
	if run {
		go func() {
			defer close(tr.done)
			if err := r.Run(ctx); err != nil {
				tb.Errorf("run: %v", err)
			}
		}()
	} else {
		close(tr.done)
	}
	tb.Cleanup(func() {
		srv.Close()
		tr.stop()
	})
	return tr
}

func (tr *testResponder) stop() {
	tr.cancel()
	<-tr.done
	_ = tr.Responder.audit.Close()
}

// payload loads a saved Alertmanager notification and points it at now.
func payload(tb testing.TB, file string, mutate func(m map[string]any)) []byte {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		tb.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		tb.Fatal(err)
	}
	for _, a := range m["alerts"].([]any) {
		a.(map[string]any)["startsAt"] = time.Now().Add(-30 * time.Second).UTC().Format(time.RFC3339Nano)
	}
	if mutate != nil {
		mutate(m)
	}
	out, _ := json.Marshal(m)
	return out
}

func setFingerprint(fp string) func(m map[string]any) {
	return func(m map[string]any) {
		for _, a := range m["alerts"].([]any) {
			a.(map[string]any)["fingerprint"] = fp
		}
	}
}

func (tr *testResponder) post(tb testing.TB, token string, body []byte) (int, string) {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodPost, tr.srv.URL+"/api/v1/alerts", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("post alerts: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitDecision waits for a decision matching pred.
func (tr *testResponder) waitDecision(tb testing.TB, pred func(Decision) bool) Decision {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, d := range tr.Decisions(10000) {
			if pred(d) {
				return d
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	tb.Fatalf("no matching decision; have: %s", strings.Join(tr.decisionSummary(), "; "))
	return Decision{}
}

func (tr *testResponder) decisionSummary() []string {
	var out []string
	for _, d := range tr.Decisions(50) {
		out = append(out, fmt.Sprintf("%s/%s/%s err=%q", d.Kind, d.Outcome, d.Analyst, d.Error))
	}
	return out
}

func isKind(kind string) func(Decision) bool {
	return func(d Decision) bool { return d.Kind == kind }
}
