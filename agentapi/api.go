package agentapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/packetscope/packetscope/rule"
)

// RuleStore is what the agent API needs from the rule table; *RuleTable
// satisfies it. Add returns the rule as stored (id, created and expiry set).
type RuleStore interface {
	Add(rule.Rule) (rule.Rule, error)
	Delete(id string) error
	List() []rule.Rule
}

// API limits.
const (
	MaxRuleBodyBytes     = 64 << 10 // a POSTed rule larger than this is refused with 413
	DefaultTrafficWindow = 60 * time.Second
	MaxTrafficWindow     = 24 * time.Hour
	DefaultReportSamples = 100
	MaxReportSamples     = 10_000
)

// RulesResponse is the body of GET /api/v1/rules.
type RulesResponse struct {
	Rules []rule.Rule `json:"rules"`
}

// ErrorResponse is the body of every API error.
type ErrorResponse struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"` // the invalid rule field, on a 400 for a bad rule
}

type api struct {
	logger    *slog.Logger
	rules     RuleStore
	window    *TrafficWindow
	token     BearerToken
	protected func() []netip.Prefix // for the last gate: the window's Protected
	now       func() time.Time
	added     func(rule.Rule) int // OnRuleAdded
}

// APIOption configures NewAPI.
type APIOption func(*api)

// OnRuleAdded calls f with every rule the API added, after it is in the
// rule table (SlowConnTracker.CloseHeldBy: connections the rule cuts off
// are closed).
func OnRuleAdded(f func(rule.Rule) int) APIOption {
	return func(a *api) { a.added = f }
}

// NewAPI returns the agent API handler:
//
//	GET    /api/v1/rules          active rules with counters and expiry (open)
//	POST   /api/v1/rules          add a rule (bearer token)
//	DELETE /api/v1/rules/{id}     remove a rule (bearer token)
//	GET    /api/v1/traffic        recent traffic: ?window=60s, or ?from=&to= (RFC 3339); &samples=N
//	                              (bearer token once one is configured: it holds sampled headers)
//
// Mutations need "Authorization: Bearer <token>". An empty token disables
// them (401) rather than leaving them open: an agent that can be told to drop
// traffic by anyone who reaches its port is a denial-of-service tool.
//
// Every rule added passes CheckLastGate against the window's Protected list
// (the node's addresses, gateways and never-block CIDRs; with no window, only
// AlwaysProtected): the agent is the last gate whoever calls it.
func NewAPI(logger *slog.Logger, rules RuleStore, window *TrafficWindow, token string, opts ...APIOption) http.Handler {
	a := &api{logger: logger, rules: rules, window: window, token: NewBearerToken(token), now: time.Now}
	for _, o := range opts {
		o(a)
	}
	a.protected = func() []netip.Prefix { return nil }
	if window != nil && window.cfg.Protected != nil {
		a.protected = window.cfg.Protected
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/rules", a.listRules)
	mux.HandleFunc("POST /api/v1/rules", a.requireToken(a.addRule))
	mux.HandleFunc("DELETE /api/v1/rules/{id}", a.requireToken(a.deleteRule))
	mux.HandleFunc("GET /api/v1/traffic", a.tokenIfConfigured(a.traffic))
	// Everything else under /api/v1/ gets a JSON error too, like the rest of the API.
	mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		allow := ""
		switch p := r.URL.Path; {
		case p == "/api/v1/rules":
			allow = "GET, POST"
		case strings.HasPrefix(p, "/api/v1/rules/") && !strings.Contains(p[len("/api/v1/rules/"):], "/"):
			allow = "DELETE"
		case p == "/api/v1/traffic":
			allow = "GET"
		}
		if allow != "" {
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path+"; use "+allow)
			return
		}
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return mux
}

// tokenIfConfigured guards a sensitive read: open while the agent has no
// token (nothing to check it against), the bearer token once it has one.
func (a *api) tokenIfConfigured(next http.HandlerFunc) http.HandlerFunc {
	guarded := a.requireToken(next)
	return func(w http.ResponseWriter, r *http.Request) {
		if !a.token.Configured() {
			next(w, r)
			return
		}
		guarded(w, r)
	}
}

func (a *api) requireToken(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !a.token.Configured() {
			Challenge(w)
			writeError(w, http.StatusUnauthorized,
				"rule changes are disabled: the agent has no API token; start it with --api.token-file")
			return
		}
		if ok, msg := a.token.Check(r); !ok {
			Challenge(w)
			a.logger.Warn("refused unauthenticated request", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "reason", msg)
			writeError(w, http.StatusUnauthorized, msg)
			return
		}
		next(w, r)
	}
}

func (a *api) listRules(w http.ResponseWriter, _ *http.Request) {
	rules := a.rules.List()
	if rules == nil {
		rules = []rule.Rule{}
	}
	writeJSON(w, http.StatusOK, RulesResponse{Rules: rules})
}

func (a *api) addRule(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRuleBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("rule body exceeds %d bytes", MaxRuleBodyBytes))
			return
		}
		writeError(w, http.StatusBadRequest, "read body: "+err.Error())
		return
	}
	rule, err := rule.ParseRule(body)
	if err != nil {
		a.writeStoreError(w, err)
		return
	}
	if err := CheckLastGate(rule, a.protected()); err != nil {
		a.logger.Warn("rule refused by the last gate", "rule_id", rule.ID, "action", rule.Action,
			"origin", rule.Origin, "remote", r.RemoteAddr, "err", err)
		a.writeStoreError(w, err)
		return
	}
	// What the agent reports is not the client's to set.
	rule.CreatedAt, rule.ExpiresAt, rule.Packets, rule.Bytes = time.Time{}, time.Time{}, 0, 0
	added, err := a.rules.Add(rule)
	if err != nil {
		a.logger.Info("rule refused", "rule_id", rule.ID, "remote", r.RemoteAddr, "err", err)
		a.writeStoreError(w, err)
		return
	}
	a.logger.Info("rule added", "rule_id", added.ID, "action", added.Action, "origin", added.Origin,
		"ttl_seconds", added.TTLSeconds, "remote", r.RemoteAddr)
	if a.added != nil {
		a.added(added)
	}
	w.Header().Set("Location", "/api/v1/rules/"+added.ID)
	writeJSON(w, http.StatusCreated, added)
}

func (a *api) deleteRule(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := a.rules.Delete(id); err != nil {
		a.writeStoreError(w, err)
		return
	}
	a.logger.Info("rule deleted", "rule_id", id, "remote", r.RemoteAddr)
	w.WriteHeader(http.StatusNoContent)
}

// writeStoreError maps rule parsing and rule table errors to statuses.
func (a *api) writeStoreError(w http.ResponseWriter, err error) {
	if fe, ok := errors.AsType[*rule.FieldError](err); ok {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: "invalid rule: " + fe.Error(), Field: fe.Field})
		return
	}
	switch {
	case errors.Is(err, rule.ErrRuleNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, rule.ErrRuleExists):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, rule.ErrRuleTableFull):
		writeError(w, http.StatusInsufficientStorage, err.Error())
	default:
		a.logger.Error("rule table operation failed", "err", err)
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

func (a *api) traffic(w http.ResponseWriter, r *http.Request) {
	if a.window == nil {
		writeError(w, http.StatusServiceUnavailable, "traffic sampling is not running on this agent")
		return
	}
	from, to, samples, err := a.trafficParams(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, a.window.Report(from, to, samples))
}

// trafficParams reads ?window=60s (ending now), or ?from=&to= (RFC 3339; to
// defaults to now), and ?samples=N (capped at MaxReportSamples).
func (a *api) trafficParams(r *http.Request) (from, to time.Time, samples int, err error) {
	q := r.URL.Query()
	now := a.now()
	samples = DefaultReportSamples
	if s := q.Get("samples"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return from, to, 0, fmt.Errorf("samples: %q is not a count >= 0", s)
		}
		samples = min(n, MaxReportSamples)
	}
	ws, fs, ts := q.Get("window"), q.Get("from"), q.Get("to")
	if ws != "" && (fs != "" || ts != "") {
		return from, to, 0, errors.New("give either window or from/to, not both")
	}
	if fs == "" && ts != "" {
		return from, to, 0, errors.New("to needs from")
	}
	if fs != "" {
		if from, err = time.Parse(time.RFC3339Nano, fs); err != nil {
			return from, to, 0, fmt.Errorf("from: %q is not an RFC 3339 time", fs)
		}
		to = now
		if ts != "" {
			if to, err = time.Parse(time.RFC3339Nano, ts); err != nil {
				return from, to, 0, fmt.Errorf("to: %q is not an RFC 3339 time", ts)
			}
		}
		if to.Before(from) {
			return from, to, 0, errors.New("to is before from")
		}
		if to.Sub(from) > MaxTrafficWindow {
			return from, to, 0, fmt.Errorf("from/to span more than %s", MaxTrafficWindow)
		}
		return from, to, samples, nil
	}
	d := DefaultTrafficWindow
	if ws != "" {
		if d, err = time.ParseDuration(ws); err != nil {
			return from, to, 0, fmt.Errorf("window: %q is not a duration like 60s or 5m", ws)
		}
		if d <= 0 || d > MaxTrafficWindow {
			return from, to, 0, fmt.Errorf("window: %s is not within (0, %s]", ws, MaxTrafficWindow)
		}
	}
	return now.Add(-d), now, samples, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v) // the status is sent; a failed write means the client left
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, ErrorResponse{Error: msg})
}
