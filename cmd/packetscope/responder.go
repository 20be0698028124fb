package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/alecthomas/kingpin/v2"
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
}

// newResponder builds the responder that talks to the agent at agentURL
// with agentToken; its own token and key files are read here.
func newResponder(logger *slog.Logger, reg prometheus.Registerer, c responderConfig, agentURL, agentToken string) (*responder.Responder, error) {
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
		AgentURL:        agentURL,
		AgentToken:      agentToken,
		WebhookToken:    webhookToken,
		Analyst:         c.analyst.analyst,
		LLM:             llm,
		Mode:            c.mode,
		AuditFile:       c.auditFile,
		RemoveOnResolve: c.removeOnResolve,
		RuleTTL:         c.ruleTTL,
		AttackWindowMin: c.attackWindowMin,
		BaselineGap:     c.baselineGap,
	})
}

// responderCmdConfig is `packetscope responder`: the responder served on
// its own, talking to agents over the network.
type responderCmdConfig struct {
	web            *web.FlagConfig
	agentURL       string
	agentTokenFile string
	responder      responderConfig
}

func (c *responderCmdConfig) addFlags(cmd *kingpin.CmdClause) {
	c.web = kingpinflag.AddFlags(cmd, defaultResponderListenAddress)
	cmd.Flag("agent.url", "Agent base URL; default: derived from each alert's instance label.").StringVar(&c.agentURL)
	cmd.Flag("agent.token-file", "File holding the agent API bearer token (the agent's --api.token-file).").StringVar(&c.agentTokenFile)
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
	reg := prometheus.NewRegistry()
	registerProgramCollectors(reg)
	r, err := newResponder(logger, reg, c.responder, c.agentURL, agentToken)
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
