package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/rule"
)

// cliFakeRuleStore is an in-memory agentapi.RuleStore.
type cliFakeRuleStore struct {
	mu    sync.Mutex
	rules []rule.Rule
	n     int
}

func (f *cliFakeRuleStore) Add(r rule.Rule) (rule.Rule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.ID == "" {
		f.n++
		r.ID = fmt.Sprintf("rule-%d", f.n)
	}
	for _, o := range f.rules {
		if o.ID == r.ID {
			return rule.Rule{}, rule.ErrRuleExists
		}
	}
	r.CreatedAt = time.Now()
	r.ExpiresAt = r.CreatedAt.Add(time.Duration(r.TTLSeconds) * time.Second)
	r.Packets, r.Bytes = 1234, 56789
	f.rules = append(f.rules, r)
	return r, nil
}

func (f *cliFakeRuleStore) Delete(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, o := range f.rules {
		if o.ID == id {
			f.rules = append(f.rules[:i], f.rules[i+1:]...)
			return nil
		}
	}
	return rule.ErrRuleNotFound
}

func (f *cliFakeRuleStore) List() []rule.Rule {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]rule.Rule(nil), f.rules...)
}

type rulesHarness struct {
	store     *cliFakeRuleStore
	url       string
	tokenFile string
}

func newRulesHarness(t *testing.T) *rulesHarness {
	t.Helper()
	store := &cliFakeRuleStore{}
	w := agentapi.NewTrafficWindow(agentapi.WindowConfig{})
	srv := httptest.NewServer(agentapi.NewAPI(slog.New(slog.NewTextHandler(io.Discard, nil)), store, w, "tok-123"))
	t.Cleanup(srv.Close)
	tf := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tf, []byte("tok-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &rulesHarness{store: store, url: srv.URL, tokenFile: tf}
}

// run parses args the way main does and runs the rules command.
func (h *rulesHarness) run(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	app := kingpin.New("packetscope", "")
	var cfg rulesConfig
	cfg.addFlags(app.Command("rules", ""))
	cmd, err := app.Parse(args)
	if err != nil {
		return "", fmt.Errorf("parse flags: %w", err)
	}
	if !cfg.handles(cmd) {
		return "", fmt.Errorf("handles(%q) is false", cmd)
	}
	var out bytes.Buffer
	cfg.out, cfg.in = &out, strings.NewReader(stdin)
	err = runRules(t.Context(), cfg, cmd)
	return out.String(), err
}

func TestRulesCLI(t *testing.T) {
	h := newRulesHarness(t)
	agent, token := "--agent.url="+h.url, "--api.token-file="+h.tokenFile

	out, err := h.run(t, "", "rules", "add", agent, token, "--src=203.0.113.0/24", "--protocol=tcp",
		"--dst-port=80,443", "--dst-port=8000-8080", "--tcp-flags=syn,!ack", "--ip-ttl=200-255", "--ttl=5m", "--reason=syn flood", "--id=syn1")
	if err != nil {
		t.Fatalf("rules add: %v", err)
	}
	if !strings.Contains(out, "syn1") || !strings.Contains(out, "dst_ports=80,443,8000-8080") {
		t.Fatalf("rules add printed:\n%s", out)
	}
	got := h.store.List()
	if len(got) != 1 {
		t.Fatalf("store holds %d rules", len(got))
	}
	r := got[0]
	if r.TTLSeconds != 300 || r.Match.TTL != "200-255" || r.Origin != "manual" || r.Action != rule.ActionDrop ||
		strings.Join(r.Match.DstPorts, " ") != "80 443 8000-8080" || r.Match.TCPFlags != "syn,!ack" {
		t.Fatalf("stored rule %+v", r)
	}

	// From JSON on stdin.
	js := `{"action":"rate_limit","rate_pps":100,"match":{"protocol":"icmp","icmp_type":8},"ttl_seconds":60,"reason":"ping flood"}`
	if _, err := h.run(t, js, "rules", agent, token, "add", "--stdin", "-o", "json"); err != nil {
		t.Fatalf("rules add --stdin: %v", err)
	}

	// list, table and JSON.
	out, err = h.run(t, "", "rules", "list", agent)
	if err != nil {
		t.Fatalf("rules list: %v", err)
	}
	for _, want := range []string{"ID", "EXPIRES IN", "syn1", "rate_limit(100 pps)", "icmp_type=8", "1234", "ping flood"} {
		if !strings.Contains(out, want) {
			t.Fatalf("rules list table lacks %q:\n%s", want, out)
		}
	}
	out, err = h.run(t, "", "rules", "list", agent, "--output=json")
	if err != nil {
		t.Fatalf("rules list -o json: %v", err)
	}
	var listed []rule.Rule
	if err := json.Unmarshal([]byte(out), &listed); err != nil || len(listed) != 2 {
		t.Fatalf("rules list -o json: %v\n%s", err, out)
	}

	// delete, then delete again: 404 surfaces.
	if _, err := h.run(t, "", "rules", "delete", agent, token, "syn1"); err != nil {
		t.Fatalf("rules delete: %v", err)
	}
	_, err = h.run(t, "", "rules", "delete", agent, token, "syn1")
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("second delete: %v", err)
	}
	if n := len(h.store.List()); n != 1 {
		t.Fatalf("store holds %d rules after delete, want 1", n)
	}
}

func TestRulesCLIErrors(t *testing.T) {
	h := newRulesHarness(t)
	agent, token := "--agent.url="+h.url, "--api.token-file="+h.tokenFile
	badToken := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(badToken, []byte("nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"add without token", "", []string{"rules", "add", agent, "--protocol=icmp"}, "--api.token-file"},
		{"delete without token", "", []string{"rules", "delete", agent, "x"}, "--api.token-file"},
		{"wrong token", "", []string{"rules", "add", agent, "--api.token-file=" + badToken, "--protocol=icmp"}, "401"},
		{"no match", "", []string{"rules", "add", agent, token}, "no match given"},
		{"bad field", "", []string{"rules", "add", agent, token, "--src=10.0.0.300"}, "match.src"},
		{"bad icmp type", "", []string{"rules", "add", agent, token, "--icmp-type=echo"}, "--icmp-type"},
		{"json and flags", "{}", []string{"rules", "add", agent, token, "--stdin", "--protocol=udp"}, "not both"},
		{"bad json", `{"action":"explode"}`, []string{"rules", "add", agent, token, "--stdin"}, "action"},
		{"agent down", "", []string{"rules", "list", "--agent.url=http://127.0.0.1:1"}, "is the agent running"},
		{"ttl fraction", "", []string{"rules", "add", agent, token, "--protocol=udp", "--ttl=1500ms"}, "--ttl"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.run(t, tc.stdin, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	if n := len(h.store.List()); n != 0 {
		t.Fatalf("failed commands left %d rules", n)
	}
}
