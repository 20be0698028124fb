package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/alecthomas/units"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/packetscope/packetscope/responder"
)

type responderConfig struct {
	web              *web.FlagConfig
	agentURLs        []string
	agentTargetsFile string
	agentHTTPConfig  string
	agentTokenFile   string
	apiTokenFile     string
	neverBlock       []string
	auditMaxSize     units.Base2Bytes
	auditMaxFiles    int
	webhookTokenFile string
	auditFile        string
	analyst          string
	llmBaseURL       string
	llmModel         string
	llmAPIKeyFile    string
	llmTimeout       time.Duration
	llmFallback      bool
	mode             string
	removeOnResolve  bool
	ruleTTL          time.Duration
	baselineGap      time.Duration
	attackWindowMin  time.Duration
}

func (c *responderConfig) addFlags(cmd *kingpin.CmdClause) {
	c.web = kingpinflag.AddFlags(cmd, ":9437")
	cmd.Flag("agent.url", "Agent base URL (repeatable). With one and no targets file every alert goes to it; otherwise an alert's instance label (host:port) selects among the configured agents. Nothing an alert carries is ever dialed.").StringsVar(&c.agentURLs)
	cmd.Flag("agent.targets-file", "Agents in Prometheus file_sd format (YAML or JSON list of {targets: [host:port], labels}; label __scheme__ http|https), re-read when it changes.").StringVar(&c.agentTargetsFile)
	cmd.Flag("agent.http-config-file", "Prometheus http_config YAML for calls to agents: authorization (credentials_file), basic_auth, tls_config (client certificates), proxy_url.").StringVar(&c.agentHTTPConfig)
	cmd.Flag("agent.token-file", "File holding the agent API bearer token (the agent's --api.token-file); shorthand for an http config authorization.").StringVar(&c.agentTokenFile)
	cmd.Flag("api.token-file", "File holding the bearer token GET /api/v1/decisions needs; without it the trail is open to whoever reaches the port.").StringVar(&c.apiTokenFile)
	cmd.Flag("webhook.token-file", "File holding the bearer token Alertmanager must send to /api/v1/alerts.").StringVar(&c.webhookTokenFile)
	cmd.Flag("responder.audit-file", "JSON-lines audit trail of every decision; survives restarts.").Default("/var/lib/packetscope/decisions.jsonl").StringVar(&c.auditFile)
	c.addAnalystFlags(cmd)
}

// addAnalystFlags adds the flags the responder shares with `run`.
func (c *responderConfig) addAnalystFlags(cmd *kingpin.CmdClause) {
	cmd.Flag("analyst", "Who proposes rules: builtin (fingerprint mining) or llm (OpenAI-compatible API).").Default("builtin").EnumVar(&c.analyst, "builtin", "llm")
	cmd.Flag("llm.base-url", "OpenAI-compatible API base URL.").Default("https://api.openai.com/v1").StringVar(&c.llmBaseURL)
	cmd.Flag("llm.model", "Model name.").Default("gpt-4o-mini").StringVar(&c.llmModel)
	cmd.Flag("llm.api-key-file", "File holding the API key; default: the OPENAI_API_KEY environment variable.").StringVar(&c.llmAPIKeyFile)
	cmd.Flag("llm.timeout", "Longest wait for the model's answer before falling back.").Default("20s").DurationVar(&c.llmTimeout)
	cmd.Flag("llm.fallback", "Fall back to the builtin analyst when the LLM fails or its answer is rejected.").Default("true").BoolVar(&c.llmFallback)
	cmd.Flag("mode", "enforce installs drop rules; monitor installs them as would-drop counters only.").Default("enforce").EnumVar(&c.mode, "enforce", "monitor")
	cmd.Flag("responder.remove-on-resolve", "Remove an alert's rules when it resolves, before their TTL.").Default("false").BoolVar(&c.removeOnResolve)
	cmd.Flag("responder.rule-ttl", "TTL of the rules the responder installs.").Default("10m").DurationVar(&c.ruleTTL)
	cmd.Flag("responder.attack-window-min", "The attack window analysed reaches at least this far back from the decision.").Default("30s").DurationVar(&c.attackWindowMin)
	cmd.Flag("responder.never-block", "CIDR no responder rule may cover (repeatable), on top of the node's own addresses, gateways, loopback and link-local.").StringsVar(&c.neverBlock)
	cmd.Flag("responder.audit-max-size", "Rotate the audit file when it reaches this size.").Default("100MB").BytesVar(&c.auditMaxSize)
	cmd.Flag("responder.audit-max-files", "Rotated audit files kept.").Default("5").IntVar(&c.auditMaxFiles)
	cmd.Flag("responder.baseline-gap", "The baseline window ends this long before the alert started (the flood began before its alert).").Default("1m").DurationVar(&c.baselineGap)
}

// newResponder builds the responder from flags; the token files are read here.
func newResponder(logger *slog.Logger, reg prometheus.Registerer, c responderConfig, agentToken, apiToken string) (*responder.Responder, error) {
	neverBlock, err := responder.ParseNeverBlock(c.neverBlock)
	if err != nil {
		return nil, fmt.Errorf("--responder.never-block: %w", err)
	}
	agentHTTP, err := responder.LoadAgentHTTPConfig(c.agentHTTPConfig)
	if err != nil {
		return nil, err
	}
	webhookToken, err := readToken(c.webhookTokenFile, "--webhook.token-file")
	if err != nil {
		return nil, err
	}
	if webhookToken == "" {
		logger.Warn("no --webhook.token-file: the responder refuses every webhook until one is configured")
	}
	apiKey := os.Getenv("OPENAI_API_KEY")
	if c.llmAPIKeyFile != "" {
		if apiKey, err = readToken(c.llmAPIKeyFile, "--llm.api-key-file"); err != nil {
			return nil, err
		}
	}
	if c.analyst == "llm" && apiKey == "" {
		return nil, errors.New("--analyst llm needs an API key: set --llm.api-key-file or OPENAI_API_KEY")
	}
	return responder.New(logger, reg, responder.Config{
		AgentURLs:        c.agentURLs,
		AgentTargetsFile: c.agentTargetsFile,
		AgentHTTP:        agentHTTP,
		AgentToken:       agentToken,
		APIToken:         apiToken,
		WebhookToken:     webhookToken,
		Guardrails:       responder.Guardrails{NeverBlock: neverBlock},
		AuditMaxSizeMB:   max(1, int(c.auditMaxSize>>20)),
		AuditMaxFiles:    c.auditMaxFiles,
		Analyst:          c.analyst,
		LLM: responder.LLMConfig{
			BaseURL:           c.llmBaseURL,
			Model:             c.llmModel,
			APIKey:            apiKey,
			Timeout:           c.llmTimeout,
			FallbackToBuiltin: c.llmFallback,
		},
		Mode:            c.mode,
		AuditFile:       c.auditFile,
		RemoveOnResolve: c.removeOnResolve,
		RuleTTL:         c.ruleTTL,
		AttackWindowMin: c.attackWindowMin,
		BaselineGap:     c.baselineGap,
	})
}

func runResponder(ctx context.Context, logger *slog.Logger, c responderConfig) error {
	if err := checkListen(*c.web.WebListenAddresses); err != nil {
		return err
	}
	agentToken, err := readToken(c.agentTokenFile, "--agent.token-file")
	if err != nil {
		return err
	}
	apiToken, err := readToken(c.apiTokenFile, "--api.token-file")
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	registerProgramCollectors(reg)
	r, err := newResponder(logger, reg, c, agentToken, apiToken)
	if err != nil {
		return err
	}
	go runWorkers(ctx, logger, r)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ready") })
	mountResponder(mux, r)
	logger.Info("responder ready", "analyst", c.analyst, "mode", c.mode)
	return serve(ctx, logger, mux, c.web)
}

func mountResponder(mux *http.ServeMux, r *responder.Responder) {
	h := r.Handler()
	mux.Handle("/api/v1/alerts", h)
	mux.Handle("/api/v1/decisions", h)
}

// runConfig is `packetscope run`: the agent and a responder that talks to it
// over loopback.
type runConfig struct {
	agent     agentConfig
	responder responderConfig
}

func runAll(ctx context.Context, logger *slog.Logger, c runConfig) error {
	agentToken, err := readToken(c.agent.apiTokenFile, "--api.token-file")
	if err != nil {
		return err
	}
	rc := c.responder
	// The one agent is this process's own, over loopback; the agent's token
	// is both the credential for it and what the decisions API asks for.
	rc.agentURLs = []string{"http://" + loopbackURLHost((*c.agent.web.WebListenAddresses)[0])}
	rc.agentTargetsFile, rc.agentHTTPConfig = "", ""
	reg := prometheus.NewRegistry() // one /metrics for both
	r, err := newResponder(logger, reg, rc, agentToken, agentToken)
	if err != nil {
		return err
	}
	go runWorkers(ctx, logger, r)
	return runAgent(ctx, logger, c.agent, reg, func(mux *http.ServeMux) { mountResponder(mux, r) })
}

// runWorkers runs the responder's decision workers until ctx is done.
func runWorkers(ctx context.Context, logger *slog.Logger, r *responder.Responder) {
	if err := r.Run(ctx); err != nil {
		logger.Error("responder stopped", "err", err)
	}
}
