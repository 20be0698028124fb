// Command packetscope exports the Linux network stack to Prometheus and
// OpenTelemetry with eBPF, and defends it with an XDP guard driven by alerts.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
)

const defaultListenAddress = ":9436"

func main() {
	app := kingpin.New("packetscope", "See inside the Linux network stack and defend it, with eBPF.")
	app.Version(version.Print("packetscope"))
	app.HelpFlag.Short('h')
	logCfg := &promslog.Config{}
	promslogflag.AddFlags(app, logCfg)

	agentCmd := app.Command("agent", "Exporter, XDP guard and agent API on this node.")
	var agentCfg agentConfig
	agentCfg.addFlags(agentCmd)

	runCmd := app.Command("run", "Agent and responder in one process: the single-host default.")
	var runCfg runConfig
	runCfg.agent.addFlags(runCmd)
	runCfg.responder.addAnalystFlags(runCmd)
	runCmd.Flag("webhook.token-file", "File holding the bearer token Alertmanager must send to /api/v1/alerts.").StringVar(&runCfg.responder.webhookTokenFile)
	runCmd.Flag("responder.audit-file", "JSON-lines audit trail of every decision; survives restarts.").Default("/var/lib/packetscope/decisions.jsonl").StringVar(&runCfg.responder.auditFile)

	responderCmd := app.Command("responder", "Alertmanager webhook receiver: alert → analyst → guardrails → rules on the agent.")
	var responderCfg responderConfig
	responderCfg.addFlags(responderCmd)

	rulesCmd := app.Command("rules", "Operator CLI over the agent API.")
	var rulesCfg rulesConfig
	rulesCfg.addFlags(rulesCmd)

	analyzeCmd := app.Command("analyze", "Offline: run the analyst and guardrails on a capture and print the proposed rules.")
	var analyzeCfg analyzeConfig
	analyzeCfg.addFlags(analyzeCmd)

	cleanupCmd := app.Command("cleanup", "Remove the pinned XDP guard (programs, links, rules) this host's agent left in force.")
	pinPath := cleanupCmd.Flag("bpf.pin-path", "Where the agent pinned its maps and links.").Default(defaultPinPath).String()

	versionCmd := app.Command("version", "Print version and build information.")

	cmd := kingpin.MustParse(app.Parse(os.Args[1:]))
	logger := promslog.New(logCfg)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var err error
	switch cmd {
	case agentCmd.FullCommand():
		err = runAgent(ctx, logger, agentCfg, nil, nil)
	case runCmd.FullCommand():
		err = runAll(ctx, logger, runCfg)
	case responderCmd.FullCommand():
		err = runResponder(ctx, logger, responderCfg)
	case analyzeCmd.FullCommand():
		err = runAnalyze(ctx, analyzeCfg)
	case cleanupCmd.FullCommand():
		err = runCleanup(logger, *pinPath)
	case versionCmd.FullCommand():
		fmt.Println(version.Print("packetscope"))
	default:
		if rulesCfg.handles(cmd) {
			err = runRules(ctx, rulesCfg, cmd)
		}
	}
	if err != nil {
		slog.New(logger.Handler()).Error("run failed", "err", err)
		os.Exit(1)
	}
}
