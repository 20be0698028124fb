package agentapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/packetscope/packetscope/rule"
)

// memStore is an in-memory RuleStore with the rule table's error contract.
type memStore struct {
	mu    sync.Mutex
	rules map[string]rule.Rule
	order []string
	cap   int
	next  int
	fail  error // returned by every call when set
}

func newMemStore(capacity int) *memStore {
	return &memStore{rules: map[string]rule.Rule{}, cap: capacity}
}

func (s *memStore) Add(r rule.Rule) (rule.Rule, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return rule.Rule{}, s.fail
	}
	if r.ID == "" {
		s.next++
		r.ID = fmt.Sprintf("r%d", s.next)
	}
	if _, ok := s.rules[r.ID]; ok {
		return rule.Rule{}, fmt.Errorf("add rule %q: %w", r.ID, rule.ErrRuleExists)
	}
	if len(s.rules) >= s.cap {
		return rule.Rule{}, fmt.Errorf("add rule %q: %w", r.ID, rule.ErrRuleTableFull)
	}
	r.CreatedAt = time.Now().UTC()
	r.ExpiresAt = r.CreatedAt.Add(time.Duration(r.TTLSeconds) * time.Second)
	s.rules[r.ID] = r
	s.order = append(s.order, r.ID)
	return r, nil
}

func (s *memStore) Delete(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	if _, ok := s.rules[id]; !ok {
		return fmt.Errorf("delete rule %q: %w", id, rule.ErrRuleNotFound)
	}
	delete(s.rules, id)
	for i, o := range s.order {
		if o == id {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
	return nil
}

func (s *memStore) List() []rule.Rule {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]rule.Rule, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.rules[id])
	}
	return out
}

const testToken = "s3cret-token"

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

type apiFixture struct {
	store  *memStore
	window *TrafficWindow
	h      http.Handler
}

func newAPIFixture(t *testing.T, token string, capacity int) *apiFixture {
	t.Helper()
	st := newMemStore(capacity)
	w := NewTrafficWindow(WindowConfig{MaxAge: time.Hour, SampleEvery: 10,
		Protected: func() []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix("10.203.0.1/32")} }})
	now := time.Now()
	for i := range 50 {
		w.Add(tcpSample(now.Add(-time.Duration(i)*time.Second), "198.51.100.1", 80, rule.FlagSYN))
	}
	return &apiFixture{store: st, window: w, h: NewAPI(quietLogger, st, w, token)}
}

func (f *apiFixture) do(t *testing.T, method, target, auth, body string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	resp := rec.Result()
	data, _ := io.ReadAll(resp.Body)
	return resp, data
}

const goodRule = `{"action":"drop","match":{"src":"203.0.113.0/24","protocol":"tcp","dst_ports":["80"],"tcp_flags":"syn,!ack"},"ttl_seconds":600,"reason":"syn flood","origin":"manual"}`

func TestAPIStatuses(t *testing.T) {
	bearer := "Bearer " + testToken
	big := `{"action":"drop","match":{},"ttl_seconds":60,"reason":"` + strings.Repeat("x", MaxRuleBodyBytes) + `"}`
	cases := []struct {
		name         string
		token        string // configured on the agent
		capacity     int
		setup        func(*apiFixture)
		method, path string
		auth, body   string
		status       int
		errContains  string
		field        string
	}{
		{name: "list open", method: "GET", path: "/api/v1/rules", status: 200},
		{name: "add", method: "POST", path: "/api/v1/rules", auth: bearer, body: goodRule, status: 201},
		{name: "add without token", method: "POST", path: "/api/v1/rules", body: goodRule, status: 401, errContains: "missing bearer token"},
		{name: "add wrong token", method: "POST", path: "/api/v1/rules", auth: "Bearer nope", body: goodRule, status: 401, errContains: "wrong bearer token"},
		{name: "add token prefix only", method: "POST", path: "/api/v1/rules", auth: "Bearer " + testToken[:4], body: goodRule, status: 401},
		{name: "add basic auth", method: "POST", path: "/api/v1/rules", auth: "Basic " + testToken, body: goodRule, status: 401},
		{name: "no token configured refuses", token: "-", method: "POST", path: "/api/v1/rules", auth: "Bearer ", body: goodRule, status: 401, errContains: "--api.token-file"},
		{name: "no token configured refuses delete", token: "-", method: "DELETE", path: "/api/v1/rules/r1", status: 401, errContains: "--api.token-file"},
		{name: "invalid src", method: "POST", path: "/api/v1/rules", auth: bearer,
			body: `{"action":"drop","match":{"src":"300.1.2.3/8"},"ttl_seconds":60}`, status: 400, errContains: "match.src", field: "match.src"},
		{name: "missing ttl", method: "POST", path: "/api/v1/rules", auth: bearer,
			body: `{"action":"drop","match":{"protocol":"icmp"}}`, status: 400, field: "ttl_seconds"},
		{name: "unknown field", method: "POST", path: "/api/v1/rules", auth: bearer,
			body: `{"action":"drop","match":{"sauce":"x"},"ttl_seconds":60}`, status: 400, field: "match.sauce", errContains: "unknown field"},
		{name: "not json", method: "POST", path: "/api/v1/rules", auth: bearer, body: `drop everything`, status: 400, field: "body"},
		{name: "oversized body", method: "POST", path: "/api/v1/rules", auth: bearer, body: big, status: 413, errContains: "65536"},
		{name: "duplicate id", method: "POST", path: "/api/v1/rules", auth: bearer,
			setup:  func(f *apiFixture) { _, _ = f.store.Add(rule.Rule{ID: "dup", Action: rule.ActionDrop, TTLSeconds: 60}) },
			body:   `{"id":"dup","action":"drop","match":{"protocol":"udp"},"ttl_seconds":60}`,
			status: 409, errContains: "already exists"},
		{name: "table full", capacity: 1, method: "POST", path: "/api/v1/rules", auth: bearer,
			setup:  func(f *apiFixture) { _, _ = f.store.Add(rule.Rule{ID: "x", Action: rule.ActionDrop, TTLSeconds: 60}) },
			body:   goodRule,
			status: 507, errContains: "rule table is full"},
		{name: "store failure", method: "POST", path: "/api/v1/rules", auth: bearer,
			setup: func(f *apiFixture) { f.store.fail = errors.New("update map: boom") }, body: goodRule, status: 500, errContains: "boom"},
		{name: "delete", method: "DELETE", path: "/api/v1/rules/keep", auth: bearer, status: 204,
			setup: func(f *apiFixture) {
				_, _ = f.store.Add(rule.Rule{ID: "keep", Action: rule.ActionDrop, TTLSeconds: 60})
			}},
		{name: "delete unknown", method: "DELETE", path: "/api/v1/rules/nope", auth: bearer, status: 404, errContains: "no rule with that id"},
		{name: "delete without token", method: "DELETE", path: "/api/v1/rules/nope", status: 401},
		{name: "traffic default", method: "GET", path: "/api/v1/traffic", auth: bearer, status: 200},
		{name: "traffic window", method: "GET", path: "/api/v1/traffic?window=60s&samples=5", auth: bearer, status: 200},
		{name: "traffic from to", method: "GET", path: "/api/v1/traffic?from=" + url.QueryEscape(time.Now().Add(-time.Minute).Format(time.RFC3339)) + "&to=" + url.QueryEscape(time.Now().Format(time.RFC3339)), auth: bearer, status: 200},
		{name: "traffic bad window", method: "GET", path: "/api/v1/traffic?window=sixty", auth: bearer, status: 400, errContains: "window"},
		{name: "traffic negative window", method: "GET", path: "/api/v1/traffic?window=-5s", auth: bearer, status: 400, errContains: "window"},
		{name: "traffic huge window", method: "GET", path: "/api/v1/traffic?window=1000h", auth: bearer, status: 400, errContains: "window"},
		{name: "traffic window and from", method: "GET", path: "/api/v1/traffic?window=60s&from=2026-01-01T00:00:00Z", auth: bearer, status: 400, errContains: "not both"},
		{name: "traffic bad from", method: "GET", path: "/api/v1/traffic?from=yesterday", auth: bearer, status: 400, errContains: "from"},
		{name: "traffic to before from", method: "GET", path: "/api/v1/traffic?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", auth: bearer, status: 400, errContains: "before"},
		{name: "traffic to alone", method: "GET", path: "/api/v1/traffic?to=2026-01-02T00:00:00Z", auth: bearer, status: 400},
		{name: "traffic bad samples", method: "GET", path: "/api/v1/traffic?samples=-1", auth: bearer, status: 400, errContains: "samples"},
		{name: "traffic without token", method: "GET", path: "/api/v1/traffic", status: 401, errContains: "missing bearer token"},
		{name: "traffic wrong token", method: "GET", path: "/api/v1/traffic?window=60s", auth: "Bearer nope", status: 401, errContains: "wrong bearer token"},
		{name: "traffic open while no token is configured", token: "-", method: "GET", path: "/api/v1/traffic", status: 200},
		{name: "unknown endpoint", method: "GET", path: "/api/v1/nothing", status: 404},
		{name: "wrong method", method: "PUT", path: "/api/v1/rules", status: 405, errContains: "GET, POST"},
		{name: "wrong method on id", method: "GET", path: "/api/v1/rules/r1", status: 405, errContains: "DELETE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			token := testToken
			if tc.token == "-" {
				token = ""
			}
			capacity := tc.capacity
			if capacity == 0 {
				capacity = 100
			}
			f := newAPIFixture(t, token, capacity)
			if tc.setup != nil {
				tc.setup(f)
			}
			resp, body := f.do(t, tc.method, tc.path, tc.auth, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.status, body)
			}
			if tc.status >= 400 {
				var er ErrorResponse
				if err := json.Unmarshal(body, &er); err != nil || er.Error == "" {
					t.Fatalf("error body %q is not {\"error\": ...}: %v", body, err)
				}
				if !strings.Contains(er.Error, tc.errContains) {
					t.Fatalf("error %q does not mention %q", er.Error, tc.errContains)
				}
				if er.Field != tc.field {
					t.Fatalf("error field %q, want %q", er.Field, tc.field)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Fatalf("Content-Type %q", ct)
				}
			}
			if tc.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
			if tc.status == 401 || tc.status >= 400 && tc.method == "POST" {
				if tc.setup == nil && len(f.store.List()) != 0 {
					t.Fatal("a refused request changed the rule table")
				}
			}
		})
	}
}

func TestAPIAddReturnsStoredRule(t *testing.T) {
	f := newAPIFixture(t, testToken, 10)
	// Counters and timestamps from the client are ignored: they are the agent's.
	body := strings.Replace(goodRule, `"origin"`, `"packets":99,"expires_at":"2000-01-01T00:00:00Z","origin"`, 1)
	resp, data := f.do(t, "POST", "/api/v1/rules", "Bearer "+testToken, body)
	if resp.StatusCode != 201 {
		t.Fatalf("status %d: %s", resp.StatusCode, data)
	}
	var r rule.Rule
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	if r.ID == "" || r.Packets != 0 || r.ExpiresAt.Sub(r.CreatedAt) != 600*time.Second || r.Match.Src != "203.0.113.0/24" {
		t.Fatalf("added rule %+v", r)
	}
	if loc := resp.Header.Get("Location"); loc != "/api/v1/rules/"+r.ID {
		t.Fatalf("Location %q", loc)
	}
	resp, data = f.do(t, "GET", "/api/v1/rules", "", "")
	var list RulesResponse
	if err := json.Unmarshal(data, &list); err != nil || resp.StatusCode != 200 {
		t.Fatalf("list: %d %s", resp.StatusCode, data)
	}
	if len(list.Rules) != 1 || list.Rules[0].ID != r.ID {
		t.Fatalf("list %+v", list)
	}
}

func TestAPIEmptyListIsArray(t *testing.T) {
	f := newAPIFixture(t, testToken, 10)
	_, data := f.do(t, "GET", "/api/v1/rules", "", "")
	if strings.TrimSpace(string(data)) != `{"rules":[]}` {
		t.Fatalf("empty list body %s", data)
	}
}

func TestAPITraffic(t *testing.T) {
	f := newAPIFixture(t, testToken, 10)
	resp, data := f.do(t, "GET", "/api/v1/traffic?window=20s&samples=3", "Bearer "+testToken, "")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, data)
	}
	var r TrafficReport
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	// Samples were added 0..49 s ago: a 20 s window holds 20 or 21 of them.
	if n := r.Totals.SampledPackets; n < 20 || n > 21 || r.Totals.EstimatedPackets != 10*n {
		t.Fatalf("totals %+v for a 20 s window at 1-in-10", r.Totals)
	}
	if len(r.Samples) != 3 || r.To.Sub(r.From) != 20*time.Second {
		t.Fatalf("%d samples, window %v", len(r.Samples), r.To.Sub(r.From))
	}
	if got := r.Top["dst_port"]; len(got) != 1 || got[0].Value != "80" {
		t.Fatalf("top dst_port %v", got)
	}
	if len(r.Protected) != 1 || r.Protected[0] != "10.203.0.1/32" {
		t.Fatalf("protected %v", r.Protected)
	}
	// samples is capped.
	for range MaxReportSamples + 10 {
		f.window.Add(tcpSample(time.Now(), "198.51.100.2", 80, rule.FlagSYN))
	}
	_, data = f.do(t, "GET", "/api/v1/traffic?samples=999999", "Bearer "+testToken, "")
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Samples) != MaxReportSamples {
		t.Fatalf("%d samples returned, want the cap %d", len(r.Samples), MaxReportSamples)
	}
}

// TestAPIConcurrentWriters hammers the handler from many goroutines (run
// with -race): every request gets a contract status, and the table ends in the
// state the successful requests imply.
func TestAPIConcurrentWriters(t *testing.T) {
	const capacity = 150
	f := newAPIFixture(t, testToken, capacity)
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close)
	c := NewClient(srv.URL, testToken, srv.Client())

	var mu sync.Mutex
	added, full := 0, 0
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for g := range 8 {
		wg.Go(func() {
			for i := range 40 {
				r := rule.Rule{ID: fmt.Sprintf("g%d-%d", g, i), Action: rule.ActionDrop, TTLSeconds: 60,
					Match: rule.Match{Src: fmt.Sprintf("10.204.%d.%d/32", g, i)}}
				_, err := c.AddRule(t.Context(), r)
				if ae, ok := AsAPIError(err); ok && ae.Status == http.StatusInsufficientStorage {
					mu.Lock()
					full++
					mu.Unlock()
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				added++
				mu.Unlock()
				if i%2 == 0 {
					if err := c.DeleteRule(t.Context(), r.ID); err != nil {
						errs <- err
						return
					}
					mu.Lock()
					added--
					mu.Unlock()
				}
				if _, err := c.ListRules(t.Context()); err != nil {
					errs <- err
					return
				}
				// A duplicate is always refused, never stored twice.
				if i%2 == 1 {
					if _, err := c.AddRule(t.Context(), r); err == nil {
						errs <- fmt.Errorf("duplicate %s accepted", r.ID)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	rules, err := c.ListRules(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range rules {
		if seen[r.ID] {
			t.Fatalf("rule %s listed twice", r.ID)
		}
		seen[r.ID] = true
	}
	if len(rules) != added || len(rules) > capacity {
		t.Fatalf("table holds %d rules, successful adds minus deletes = %d (capacity %d)", len(rules), added, capacity)
	}
	t.Logf("%d rules left, %d adds refused with 507", added, full)
}

func TestAPITrafficWithoutWindow(t *testing.T) {
	h := NewAPI(quietLogger, newMemStore(1), nil, testToken)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/api/v1/traffic", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "not running") {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
}
