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
	agentURL := "http://" + loopbackURLHost((*c.agent.web.WebListenAddresses)[0])
	reg := prometheus.NewRegistry() // one /metrics for both
	r, err := newResponder(logger, reg, c.responder, agentURL, agentToken)
	if err != nil {
		return err
	}
	go runWorkers(ctx, logger, r)
	return runAgent(ctx, logger, c.agent, reg, func(mux *http.ServeMux) { mountResponder(mux, r) })
}
