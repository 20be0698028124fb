package main

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// runConfig is `packetscope run`: the agent and a responder that talks to it
// over loopback, both served on the agent's --web.listen-address.
type runConfig struct {
	agent     agentConfig
	responder responderConfig
}

func (c *runConfig) addFlags(cmd *kingpin.CmdClause) {
	c.agent.addFlags(cmd)
	c.responder.addFlags(cmd)
}

func runAll(ctx context.Context, logger *slog.Logger, c runConfig) error {
	agentToken, err := readSecretFile(c.agent.apiTokenFile, "--api.token-file")
	if err != nil {
		return err
	}
	// The one agent is this process's own, over loopback; the agent's token
	// is both the credential for it and what the decisions API asks for.
	agents := agentTargets{urls: []string{"http://" + loopbackURLHost((*c.agent.web.WebListenAddresses)[0])}, token: agentToken}
	reg := prometheus.NewRegistry() // one /metrics for both
	r, err := newResponder(logger, reg, c.responder, agents, agentToken)
	if err != nil {
		return err
	}
	go runWorkers(ctx, logger, r)
	return runAgent(ctx, logger, c.agent, reg, func(mux *http.ServeMux) { mountResponder(mux, r) })
}
