// Command packetscope exports the Linux network stack to Prometheus and
// OpenTelemetry with eBPF, and defends it with an XDP guard driven by alerts.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"

	"github.com/packetscope/packetscope/guard"
)

// cli is the command line: each command's clause and the config its flags
// fill in.
type cli struct {
	app    *kingpin.Application
	logCfg promslog.Config

	agentCmd, runCmd, responderCmd, analyzeCmd, cleanupCmd, versionCmd *kingpin.CmdClause

	agent          agentConfig
	run            runConfig
	responder      responderCmdConfig
	rules          rulesConfig
	analyze        analyzeConfig
	cleanupPinPath string
}

func newCLI() *cli {
	c := &cli{app: kingpin.New("packetscope", "See inside the Linux network stack and defend it, with eBPF.")}
	c.app.Version(version.Print("packetscope"))
	c.app.HelpFlag.Short('h')
	promslogflag.AddFlags(c.app, &c.logCfg)

	c.agentCmd = c.app.Command("agent", "Exporter, XDP guard and agent API on this node.")
	c.agent.addFlags(c.agentCmd)

	c.runCmd = c.app.Command("run", "Agent and responder in one process: the single-host default.")
	c.run.addFlags(c.runCmd)

	c.responderCmd = c.app.Command("responder", "Alertmanager webhook receiver: alert → analyst → guardrails → rules on the agent.")
	c.responder.addFlags(c.responderCmd)

	c.rules.addFlags(c.app.Command("rules", "Operator CLI over the agent API."))

	c.analyzeCmd = c.app.Command("analyze", "Offline: run the analyst and guardrails on a capture and print the proposed rules.")
	c.analyze.addFlags(c.analyzeCmd)

	c.cleanupCmd = c.app.Command("cleanup", "Remove the pinned XDP guard (programs, links, rules) this host's agent left in force.")
	c.cleanupCmd.Flag("bpf.pin-path", "Where the agent pinned its maps and links.").Default(guard.DefaultPinPath).StringVar(&c.cleanupPinPath)

	c.versionCmd = c.app.Command("version", "Print version and build information.")
	return c
}

// runCommand runs the parsed command cmd (a kingpin full command name).
func (c *cli) runCommand(ctx context.Context, logger *slog.Logger, cmd string) error {
	switch cmd {
	case c.agentCmd.FullCommand():
		return runAgent(ctx, logger, c.agent, nil, nil)
	case c.runCmd.FullCommand():
		return runAll(ctx, logger, c.run)
	case c.responderCmd.FullCommand():
		return runResponder(ctx, logger, c.responder)
	case c.analyzeCmd.FullCommand():
		return runAnalyze(ctx, c.analyze)
	case c.cleanupCmd.FullCommand():
		return runCleanup(logger, c.cleanupPinPath)
	case c.versionCmd.FullCommand():
		fmt.Println(version.Print("packetscope"))
		return nil
	}
	if c.rules.handles(cmd) {
		return runRules(ctx, c.rules, cmd)
	}
	return fmt.Errorf("unknown command %q", cmd)
}

// defaultGCPercent is the garbage collector's GOGC unless the environment
// sets one: the heap may grow to 1.5x what is live instead of 2x. The agent's
// live heap under a flood is ~21 MB, most of it the traffic window's full
// ring; at GOGC 100 it sat at 70 MiB resident, over the 64 MiB a node agent
// is allowed (BenchmarkAgentUnderFlood), at 50 at 61. The price is a
// collection twice as often: a few ms of CPU a second at most, since the
// agent allocates little per packet.
const defaultGCPercent = 50

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	c := newCLI()
	cmd := kingpin.MustParse(c.app.Parse(os.Args[1:]))
	logger := promslog.New(&c.logCfg)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if err := c.runCommand(ctx, logger, cmd); err != nil {
		slog.New(logger.Handler()).Error("run failed", "err", err)
		os.Exit(1)
	}
}
