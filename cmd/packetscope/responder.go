package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/alecthomas/units"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/packetscope/packetscope/responder"
)

const defaultResponderListenAddress = ":9437"

// responderConfig holds the responder's own flags: what it accepts from
// Alertmanager, how it decides and what it records. `responder` and `run`
// both add them; where the responder is served and which agent it talks to
// belong to the command (responderCmdConfig, runConfig).
type responderConfig struct {
	neverBlock       []string
	auditMaxSize     units.Base2Bytes
	auditMaxFiles    int
	webhookTokenFile string
	auditFile        string
	analyst          analystConfig
	mode             responder.Mode
	removeOnResolve  bool
	ruleTTL          time.Duration
	baselineGap      time.Duration
	attackWindowMin  time.Duration
}

func (c *responderConfig) addFlags(cmd *kingpin.CmdClause) {
	cmd.Flag("webhook.token-file", "File holding the bearer token Alertmanager must send to /api/v1/alerts.").StringVar(&c.webhookTokenFile)
	cmd.Flag("responder.audit-file", "JSON-lines audit trail of every decision; survives restarts.").Default("/var/lib/packetscope/decisions.jsonl").StringVar(&c.auditFile)
	c.analyst.addFlags(cmd)
	enumVar(cmd.Flag("mode", "enforce installs drop rules; monitor installs them as would-drop counters only."),
		&c.mode, responder.ModeEnforce, responder.Modes...)
	cmd.Flag("responder.remove-on-resolve", "Remove an alert's rules when it resolves, before their TTL.").Default("false").BoolVar(&c.removeOnResolve)
	cmd.Flag("responder.rule-ttl", "TTL of the rules the responder installs.").Default(durationDefault(responder.DefaultRuleTTL)).DurationVar(&c.ruleTTL)
	cmd.Flag("responder.attack-window-min", "The attack window analysed reaches at least this far back from the decision.").Default(durationDefault(responder.DefaultAttackWindowMin)).DurationVar(&c.attackWindowMin)
	cmd.Flag("responder.baseline-gap", "The baseline window ends this long before the alert started (the flood began before its alert).").Default(durationDefault(responder.DefaultBaselineGap)).DurationVar(&c.baselineGap)
	cmd.Flag("responder.never-block", "CIDR no responder rule may cover (repeatable), on top of the node's own addresses, gateways, loopback and link-local.").StringsVar(&c.neverBlock)
	cmd.Flag("responder.audit-max-size", "Rotate the audit file when it reaches this size.").Default("100MB").BytesVar(&c.auditMaxSize)
	cmd.Flag("responder.audit-max-files", "Rotated audit files kept.").Default("5").IntVar(&c.auditMaxFiles)
}

// agentTargets are the only agents a responder talks to, and how.
type agentTargets struct {
	urls        []string
	targetsFile string
	httpConfig  string // Prometheus http_config file
	token       string // bearer token, a shorthand for an http_config authorization
}

// newResponder builds the responder that talks to agents and guards its
// decisions with apiToken; its own token and key files are read here.
func newResponder(logger *slog.Logger, reg prometheus.Registerer, c responderConfig, agents agentTargets, apiToken string) (*responder.Responder, error) {
	neverBlock, err := responder.ParseNeverBlock(c.neverBlock)
	if err != nil {
		return nil, fmt.Errorf("--responder.never-block: %w", err)
	}
	agentHTTP, err := responder.LoadAgentHTTPConfig(agents.httpConfig)
	if err != nil {
		return nil, err
	}
	webhookToken, err := readSecretFile(c.webhookTokenFile, "--webhook.token-file")
	if err != nil {
		return nil, err
	}
	if webhookToken == "" {
		logger.Warn("no --webhook.token-file: the responder refuses every webhook until one is configured")
	}
	llm, err := c.analyst.llmConfig()
	if err != nil {
		return nil, err
	}
	return responder.New(logger, reg, responder.Config{
		AgentURLs:        agents.urls,
		AgentTargetsFile: agents.targetsFile,
		AgentHTTP:        agentHTTP,
		AgentToken:       agents.token,
		APIToken:         apiToken,
		WebhookToken:     webhookToken,
		Guardrails:       responder.Guardrails{NeverBlock: neverBlock},
		AuditMaxSizeMB:   max(1, int(c.auditMaxSize>>20)),
		AuditMaxFiles:    c.auditMaxFiles,
		Analyst:          c.analyst.analyst,
		LLM:              llm,
		Mode:             c.mode,
		AuditFile:        c.auditFile,
		RemoveOnResolve:  c.removeOnResolve,
		RuleTTL:          c.ruleTTL,
		AttackWindowMin:  c.attackWindowMin,
		BaselineGap:      c.baselineGap,
	})
}

// responderCmdConfig is `packetscope responder`: the responder served on
// its own, talking to agents over the network.
type responderCmdConfig struct {
	web              *web.FlagConfig
	agentURLs        []string
	agentTargetsFile string
	agentHTTPConfig  string
	agentTokenFile   string
	apiTokenFile     string
	responder        responderConfig
}

func (c *responderCmdConfig) addFlags(cmd *kingpin.CmdClause) {
	c.web = kingpinflag.AddFlags(cmd, defaultResponderListenAddress)
	cmd.Flag("agent.url", "Agent base URL (repeatable). With one and no targets file every alert goes to it; otherwise an alert's instance label (host:port) selects among the configured agents. Nothing an alert carries is ever dialed.").StringsVar(&c.agentURLs)
	cmd.Flag("agent.targets-file", "Agents in Prometheus file_sd format (YAML or JSON list of {targets: [host:port], labels}; label __scheme__ http|https), re-read when it changes.").StringVar(&c.agentTargetsFile)
	cmd.Flag("agent.http-config-file", "Prometheus http_config YAML for calls to agents: authorization (credentials_file), basic_auth, tls_config (client certificates), proxy_url.").StringVar(&c.agentHTTPConfig)
	cmd.Flag("agent.token-file", "File holding the agent API bearer token (the agent's --api.token-file); shorthand for an http config authorization.").StringVar(&c.agentTokenFile)
	cmd.Flag("api.token-file", "File holding the bearer token GET /api/v1/decisions needs; without it the trail is open to whoever reaches the port.").StringVar(&c.apiTokenFile)
	c.responder.addFlags(cmd)
}

func runResponder(ctx context.Context, logger *slog.Logger, c responderCmdConfig) error {
	if err := checkListen(*c.web.WebListenAddresses); err != nil {
		return err
	}
	agentToken, err := readSecretFile(c.agentTokenFile, "--agent.token-file")
	if err != nil {
		return err
	}
	apiToken, err := readSecretFile(c.apiTokenFile, "--api.token-file")
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	registerProgramCollectors(reg)
	agents := agentTargets{urls: c.agentURLs, targetsFile: c.agentTargetsFile, httpConfig: c.agentHTTPConfig, token: agentToken}
	r, err := newResponder(logger, reg, c.responder, agents, apiToken)
	if err != nil {
		return err
	}
	go runWorkers(ctx, logger, r)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ready") })
	mountResponder(mux, r)
	logger.Info("responder ready", "analyst", c.responder.analyst.analyst, "mode", c.responder.mode)
	return serve(ctx, logger, newHTTPServer(mux, defaultServerLimits), c.web)
}

func mountResponder(mux *http.ServeMux, r *responder.Responder) {
	h := r.Handler()
	mux.Handle("/api/v1/alerts", h)
	mux.Handle("/api/v1/decisions", h)
}

// runWorkers runs the responder's decision workers until ctx is done.
func runWorkers(ctx context.Context, logger *slog.Logger, r *responder.Responder) {
	if err := r.Run(ctx); err != nil {
		logger.Error("responder stopped", "err", err)
	}
}
