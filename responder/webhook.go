package responder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/packetscope/packetscope/agentapi"
)

// MaxWebhookBody bounds an Alertmanager notification.
const MaxWebhookBody = 1 << 20

// refreshTimeout bounds extending one alert's rules inside a webhook call.
const refreshTimeout = 10 * time.Second

// maxAlertsPerMessage bounds the alerts one notification may carry.
const maxAlertsPerMessage = 1000

// DecodeMessage decodes and checks an Alertmanager webhook body (version 4)
// strictly: see checkStrictJSON. The error says what is wrong, for a 400.
func DecodeMessage(body []byte) (*Message, error) {
	if err := checkStrictJSON(body); err != nil {
		return nil, err
	}
	var msg Message
	if err := json.Unmarshal(body, &msg); err != nil {
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	if msg.Alerts == nil {
		return nil, errors.New("not an Alertmanager notification: no alerts")
	}
	if msg.Version != "4" {
		return nil, fmt.Errorf("version %q: only Alertmanager webhook version 4 is understood", msg.Version)
	}
	if len(msg.Alerts) == 0 {
		return nil, errors.New("no alerts in the notification")
	}
	if len(msg.Alerts) > maxAlertsPerMessage {
		return nil, fmt.Errorf("%d alerts: at most %d per notification", len(msg.Alerts), maxAlertsPerMessage)
	}
	for i := range msg.Alerts {
		a := &msg.Alerts[i]
		if a.Status != "firing" && a.Status != "resolved" {
			return nil, fmt.Errorf("alerts[%d].status %q is not firing or resolved", i, a.Status)
		}
		if len(a.Labels) == 0 {
			return nil, fmt.Errorf("alerts[%d] has no labels", i)
		}
		if a.Fingerprint == "" {
			a.Fingerprint = labelsFingerprint(a.Labels)
		}
	}
	return &msg, nil
}

// labelsFingerprint stands in for Alertmanager's fingerprint when a sender
// omits it: a hash of the sorted label set, so it is stable per alert.
func labelsFingerprint(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write([]byte(labels[k]))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Handler serves POST /api/v1/alerts and GET /api/v1/decisions.
func (r *Responder) Handler() http.Handler { return r.handler }

func (r *Responder) newHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/alerts", r.postAlerts)
	mux.HandleFunc("GET /api/v1/decisions", r.getDecisions)
	return mux
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (r *Responder) fail(w http.ResponseWriter, code int, msg string) {
	r.metrics.webhook.WithLabelValues(strconv.Itoa(code)).Inc()
	writeJSON(w, code, map[string]string{"error": msg})
}

func (r *Responder) authorized(w http.ResponseWriter, req *http.Request) bool {
	if !r.webhookToken.Configured() {
		r.fail(w, http.StatusUnauthorized, "no webhook token is configured: set --webhook.token-file")
		return false
	}
	if ok, msg := r.webhookToken.Check(req); !ok {
		agentapi.Challenge(w)
		r.fail(w, http.StatusUnauthorized, msg)
		return false
	}
	return true
}

func (r *Responder) postAlerts(w http.ResponseWriter, req *http.Request) {
	received := r.cfg.Now()
	if !r.authorized(w, req) {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, MaxWebhookBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			r.fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", MaxWebhookBody))
			return
		}
		r.fail(w, http.StatusBadRequest, "read body: "+err.Error())
		return
	}
	msg, err := DecodeMessage(body)
	if err != nil {
		r.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	code, text := r.accept(req.Context(), msg, received)
	if code != http.StatusOK {
		r.fail(w, code, text)
		return
	}
	r.metrics.webhook.WithLabelValues("200").Inc()
	writeJSON(w, http.StatusOK, map[string]string{"status": text})
}

// accept turns a notification into queued work. Each alert is either queued,
// coalesced with work already queued or done for it (a repeat), or refused
// with 503 so Alertmanager sends the notification again; what was queued
// before a refusal is remembered, so the retry duplicates nothing.
func (r *Responder) accept(ctx context.Context, msg *Message, received time.Time) (int, string) {
	var jobs []job
	var probes []string
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return http.StatusServiceUnavailable, "responder is shutting down"
	}
	r.mu.Unlock()
	for _, a := range msg.Alerts {
		info := alertInfoOf(a)
		// The alert selects a configured agent; nothing it carries is dialed.
		url, err := r.targets.Select(a.Labels)
		if a.Status == "resolved" {
			jobs = append(jobs, job{kind: jobResolve, alert: info, agentURL: url, received: received})
			continue
		}
		if err != nil {
			// Retrying will not configure the agent: record, accept.
			r.record(Decision{Kind: "alert", Outcome: OutcomeUnknownAgent, Alert: info, Error: err.Error(), ReceivedAt: received})
			continue
		}
		jobs = append(jobs, job{kind: jobAnalyze, alert: info, agentURL: url, received: received})
		r.baselines.track(url)
		if !slices.Contains(probes, url) {
			probes = append(probes, url)
		}
	}
	// An unreachable agent is a temporary failure Alertmanager should retry,
	// so it is found out now, before the alert is accepted.
	for _, url := range probes {
		if err := r.probe(ctx, url); err != nil {
			return http.StatusServiceUnavailable, agentFailure("probe agent", err)
		}
	}
	queued, repeats := 0, 0
	for _, j := range jobs {
		switch r.admit(&j) {
		case admitQueue:
			if j.kind == jobRefresh {
				// Extending rules is quick and needs no analyst, so it is
				// done before answering: a failure is a 503 and
				// Alertmanager sends the notification again.
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshTimeout)
				err := r.refresh(rctx, j)
				cancel()
				if err != nil {
					return http.StatusServiceUnavailable, "extend the alert's rules: " + err.Error()
				}
				repeats++
				continue
			}
			select {
			case r.queue <- j:
				queued++
				r.metrics.queueDepth.Set(float64(len(r.queue)))
			default:
				r.unadmit(j)
				return http.StatusServiceUnavailable, "queue full: retry later"
			}
		case admitRepeat:
			repeats++
		case admitFull:
			return http.StatusServiceUnavailable, "too many alerts tracked: retry later"
		}
	}
	return http.StatusOK, fmt.Sprintf("accepted: %d queued, %d repeats", queued, repeats)
}

type admission int

const (
	admitQueue  admission = iota // queue the job
	admitRepeat                  // already handled or in hand: nothing to queue
	admitFull                    // cannot track another alert now
)

// admit decides, under the lock, what a job means given the alert's state,
// and marks the state so concurrent notifications do not queue it twice.
func (r *Responder) admit(j *job) admission {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.Now()
	fp := j.alert.Fingerprint
	s, ok := r.alerts[fp]
	if j.kind == jobResolve {
		return admitQueue
	}
	if !ok {
		if len(r.alerts) >= r.cfg.MaxAlerts {
			return admitFull
		}
		r.alerts[fp] = &alertState{status: statusPending, agentURL: j.agentURL, lastSeen: now, alert: j.alert}
		return admitQueue
	}
	s.lastSeen = now
	s.resolved = false // it fires again: a decision in flight keeps its rules
	switch s.status {
	case statusPending:
		r.metrics.decisions.WithLabelValues(string(r.cfg.Analyst), OutcomeRepeat).Inc()
		return admitRepeat
	case statusFailed:
		s.status = statusPending
		return admitQueue
	}
	// Done, but collateral could not be measured: decide again after a
	// while, which replaces the monitor rules with enforcing ones if a
	// baseline can now be had (promotion), or keeps them monitor.
	if s.unmeasured && now.Sub(s.decidedAt) >= r.cfg.Reanalyze && !s.refreshing {
		s.status = statusPending
		return admitQueue
	}
	// Done. Rules still live: extend them once they are past half their TTL.
	if len(s.rules) > 0 {
		r.metrics.decisions.WithLabelValues(s.analyst, OutcomeRepeat).Inc()
		own, soonest := false, time.Time{}
		for _, a := range s.rules {
			if !a.Existing && (!own || a.ExpiresAt.Before(soonest)) {
				own, soonest = true, a.ExpiresAt
			}
		}
		if own && !s.refreshing && soonest.Sub(now) < r.cfg.RuleTTL/2 {
			s.refreshing = true
			j.kind = jobRefresh
			return admitQueue
		}
		return admitRepeat
	}
	// Decided without rules: look again only after a while, so a repeat
	// never means another LLM call.
	if now.Sub(s.decidedAt) >= r.cfg.Reanalyze {
		s.status = statusPending
		return admitQueue
	}
	r.metrics.decisions.WithLabelValues(s.analyst, OutcomeRepeat).Inc()
	return admitRepeat
}

// unadmit undoes admit for a job the queue had no room for.
func (r *Responder) unadmit(j job) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.alerts[j.alert.Fingerprint]
	if !ok {
		return
	}
	switch j.kind {
	case jobAnalyze:
		if s.decidedAt.IsZero() {
			delete(r.alerts, j.alert.Fingerprint)
		} else {
			s.status = statusFailed
		}
	case jobRefresh:
		s.refreshing = false
	}
}

// probe checks that the agent answers, remembering success for a while so a
// burst of notifications costs one request.
func (r *Responder) probe(ctx context.Context, url string) error {
	r.mu.Lock()
	last, ok := r.healthy[url]
	r.mu.Unlock()
	if ok && r.cfg.Now().Sub(last) < 10*time.Second {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := r.agentFor(url).ListRules(ctx); err != nil && !isPermanent(err) {
		return err
	}
	r.mu.Lock()
	if len(r.healthy) >= 1024 {
		clear(r.healthy)
	}
	r.healthy[url] = r.cfg.Now()
	r.mu.Unlock()
	return nil
}
