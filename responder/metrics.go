package responder

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Decision outcomes: the values of packetscope_responder_decisions_total's
// outcome label.
const (
	OutcomeApplied      = "applied"       // rules pushed (drop/rate_limit)
	OutcomeMonitor      = "monitor"       // rules pushed as monitor (mode monitor)
	OutcomeNoAction     = "no_action"     // nothing proposed: no traffic class grew
	OutcomeDeferred     = "deferred"      // nothing proposed yet: the alert is decided again in seconds (recheck)
	OutcomeRejected     = "rejected"      // every proposed rule failed the guardrails
	OutcomeAgentError   = "agent_error"   // the agent could not be reached or refused
	OutcomeRepeat       = "repeat"        // a repeat notification: rules kept (TTL extended)
	OutcomeResolved     = "resolved"      // the alert resolved
	OutcomeExpired      = "expired"       // the decision's rules expired
	OutcomeNoAgent      = "no_agent"      // kept for dashboards of older versions; no longer recorded
	OutcomeUnknownAgent = "unknown_agent" // the alert's instance names no configured agent: nothing contacted
	OutcomeAnalystErr   = "analyst_error" // the LLM failed and fallback is off
	OutcomeWithdrawn    = "withdrawn"     // a rule cut connections the node serves after it went in: deleted
)

var allOutcomes = []string{OutcomeApplied, OutcomeMonitor, OutcomeNoAction, OutcomeDeferred, OutcomeRejected, OutcomeAgentError,
	OutcomeRepeat, OutcomeResolved, OutcomeExpired, OutcomeNoAgent, OutcomeUnknownAgent, OutcomeAnalystErr, OutcomeWithdrawn}

type metrics struct {
	decisions   *prometheus.CounterVec
	llmDuration *prometheus.HistogramVec
	llmTokens   *prometheus.CounterVec
	llmFallback *prometheus.CounterVec
	webhook     *prometheus.CounterVec
	queueDepth  prometheus.Gauge
	latency     *prometheus.HistogramVec
	validations *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		decisions: f.NewCounterVec(prometheus.CounterOpts{
			Name: "packetscope_responder_decisions_total",
			Help: "Decisions the responder recorded, by analyst and outcome.",
		}, []string{"analyst", "outcome"}),
		llmDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "packetscope_responder_llm_request_duration_seconds",
			Help:    "Time the LLM took to answer, by result.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60},
		}, []string{"result"}),
		llmTokens: f.NewCounterVec(prometheus.CounterOpts{
			Name: "packetscope_responder_llm_tokens_total",
			Help: "Tokens the LLM reported using, by kind (prompt, completion).",
		}, []string{"kind"}),
		llmFallback: f.NewCounterVec(prometheus.CounterOpts{
			Name: "packetscope_responder_llm_fallbacks_total",
			Help: "Times the builtin analyst stood in for the LLM, by cause.",
		}, []string{"cause"}),
		webhook: f.NewCounterVec(prometheus.CounterOpts{
			Name: "packetscope_responder_webhook_requests_total",
			Help: "Alertmanager webhook requests by HTTP status code.",
		}, []string{"code"}),
		queueDepth: f.NewGauge(prometheus.GaugeOpts{
			Name: "packetscope_responder_queue_depth",
			Help: "Alerts waiting for a worker.",
		}),
		latency: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "packetscope_responder_decision_latency_seconds",
			Help:    "Time from the webhook's arrival to the last rule pushed to the agent.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"analyst"}),
		validations: f.NewCounterVec(prometheus.CounterOpts{
			Name: "packetscope_responder_rule_validations_total",
			Help: "Proposed rules judged by the guardrails, by analyst and result (accepted, rejected).",
		}, []string{"analyst", "result"}),
	}
	for _, name := range AnalystNames {
		a := string(name)
		for _, o := range allOutcomes {
			m.decisions.WithLabelValues(a, o)
		}
		m.validations.WithLabelValues(a, "accepted")
		m.validations.WithLabelValues(a, "rejected")
	}
	for _, k := range []string{"prompt", "completion"} {
		m.llmTokens.WithLabelValues(k)
	}
	// Every cause an LLMError or an unusable answer can carry, so a
	// dashboard shows 0 fallbacks rather than no data.
	for _, c := range []string{"timeout", "rate_limited", "server_error", "http_error", "no_tool_call", "invalid_answer", "error", "all_rules_rejected", "empty_answer"} {
		m.llmFallback.WithLabelValues(c)
	}
	return m
}
